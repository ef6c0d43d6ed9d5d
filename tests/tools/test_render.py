"""Every shipped stack renders offline, deterministically, into schema-valid Kubernetes objects."""

from __future__ import annotations

import filecmp
import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from components.config import parse
from tests.helpers import render_shipped, render_stack, schema_errors
from tools import render as render_tool
from tools import stack_files

STACKS = stack_files.stack_names()
# Packages whose resources compute locally (certificates, random values, the NVFlare kits' dynamic provider).
# Packages whose resources reach no cluster or cloud; `pulumi` is the engine's builtin provider (StackReferences).
LOCAL_PACKAGES = {"tls", "random", "pulumi-python", "pulumi"}


def test_there_are_stacks() -> None:
    assert "local" in STACKS


@pytest.mark.parametrize("stack", STACKS)
def test_render_twice_is_byte_identical(stack: str, tmp_path: Path) -> None:
    """One render in a fresh process with another hash seed, one here: same bytes, file for file."""
    first, second = tmp_path / "a", tmp_path / "b"
    result = run_cli(stack, "--out", str(first), "--linked", env={"PYTHONHASHSEED": "1"})
    assert result.returncode == 0, result.stderr
    render_shipped(stack).write(second)
    files = sorted(p.relative_to(first) for p in first.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(second) for p in second.rglob("*") if p.is_file())
    _, mismatch, errors = filecmp.cmpfiles(first, second, [str(f) for f in files], shallow=False)
    assert mismatch == [] and errors == []


def test_two_resources_for_one_object_is_an_error() -> None:
    rendering = render_tool.render("local-flower")
    deployment = next(r for r in rendering.recording.resources.values() if r.type.endswith(":Deployment"))
    rendering.recording.resources["urn:copy"] = replace(deployment, urn="urn:copy", name="copy")
    with pytest.raises(ValueError, match=r"more than one resource manages demo/Deployment\.superlink\.yaml"):
        rendering.manifests()


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_object_is_schema_valid(stack: str) -> None:
    rendering = render_stack(stack)
    version = parse_version(stack)
    errors = [e for obj in rendering.manifests() for e in schema_errors(obj, version)]
    assert errors == []


@pytest.mark.parametrize("stack", STACKS)
def test_every_kubernetes_resource_uses_the_one_explicit_provider(stack: str) -> None:
    rows = render_stack(stack).resources()
    providers = [r for r in rows if r["type"] == "pulumi:providers:kubernetes"]
    assert len(providers) == 1
    provider = f"pulumi:providers:kubernetes::{providers[0]['name']}"
    assert providers[0]["inputs"]["clusterIdentifier"]
    k8s_rows = [r for r in rows if r["type"].startswith("kubernetes:")]
    assert all(r["provider"] == provider for r in k8s_rows), [r["name"] for r in k8s_rows if r["provider"] != provider]
    # pulumi:pulumi:StackReference: a read the engine itself answers (another stack's outputs), no provider.
    custom = [r for r in rows if not r["type"].startswith(("flstack:", "pulumi:providers:", "pulumi:pulumi:"))]
    disabled = set(json.loads(stack_files.load(stack).config["pulumi:disable-default-providers"]))
    # Every package that can reach a cluster or a cloud is in the list, so each of its resources names a provider.
    assert {r["type"].split(":")[0] for r in custom} - disabled <= LOCAL_PACKAGES
    unnamed = [r["name"] for r in custom if r["type"].split(":")[0] in disabled and not r["provider"]]
    assert unnamed == [], "default providers are disabled for these packages: every resource names one"


def parse_version(stack: str) -> str:
    files = stack_files.load(stack)
    import json

    raw = {k.partition(":")[2]: json.loads(v) for k, v in files.config.items() if k.startswith("flstack:")}
    config = parse(raw, files.secret_keys)
    version: str = config.target.settings.kubernetes_version
    return version


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tools.render", *args],
        check=False,
        env={**os.environ, **(env or {})},
        cwd=stack_files.ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_writes_files_and_prints_counts(tmp_path: Path) -> None:
    result = run_cli("local", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "pulumi:providers:kubernetes" in result.stdout and "total" in result.stdout
    assert (tmp_path / "r" / "resources.json").is_file()


def test_cli_unknown_stack_is_a_clear_error() -> None:
    result = run_cli("nosuch")
    assert result.returncode == 2
    assert "no stack named 'nosuch'" in result.stderr and "local" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_bad_config_is_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((stack_files.ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "__main__.py").write_text((stack_files.ROOT / "__main__.py").read_text())
    (tmp_path / "stacks" / "Pulumi.bad.yaml").write_text(
        "config:\n  flstack:target:\n    kind: minikube\n    minikube:\n      cpus: two\n      profle: x\n"
    )
    monkeypatch.setattr(stack_files, "ROOT", tmp_path)
    assert render_tool.main(["bad", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "flstack:target.minikube.cpus: expected an integer >= 2 and <= 64, got 'two'" in err
    assert "flstack:target.minikube.profle: unknown key; did you mean 'profile'?" in err
    assert not (tmp_path / "out").exists()
