"""`--diff`: added, removed and changed resources, with the changed field paths."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from tests.helpers import MINIKUBE, render
from tools import diff, stack_files
from tools import render as render_tool


def test_field_paths_point_at_the_change() -> None:
    old = {"inputs": {"spec": {"replicas": 2, "args": ["a", "b"]}, "x": 1}}
    new = {"inputs": {"spec": {"replicas": 3, "args": ["a", "c"]}, "y": 1}}
    assert diff.field_paths(old, new) == ["inputs.spec.args[1]", "inputs.spec.replicas", "inputs.x", "inputs.y"]


def test_same_config_renders_no_changes() -> None:
    a = render({"target": MINIKUBE}).resources()
    b = render({"target": MINIKUBE}).resources()
    assert diff.compare(a, b).empty


def test_changed_cpus_shows_only_the_start_command() -> None:
    before = render({"target": MINIKUBE}).resources()
    bigger = {**MINIKUBE, "minikube": {**MINIKUBE["minikube"], "cpus": 6}}
    changes = diff.compare(before, render({"target": bigger}).resources())
    assert changes.added == [] and changes.removed == []
    assert changes.changed == {
        ("command:local:Command", "cluster-start"): ["inputs.create", "inputs.triggers[0]"],
    }


def test_cli_diff_prints_changes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert render_tool.main(["local", "--out", str(tmp_path / "old")]) == 0
    rows = diff.load(tmp_path / "old")
    rows[0]["inputs"]["extra"] = 1  # pretend the old render differed
    (tmp_path / "old" / "resources.json").write_text(__import__("json").dumps(rows))
    capsys.readouterr()
    assert render_tool.main(["local", "--out", str(tmp_path / "new"), "--diff", str(tmp_path / "old")]) == 0
    out = capsys.readouterr().out
    assert f"~ {rows[0]['type']}  {rows[0]['name']}\n    inputs.extra" in out
    assert "0 added, 0 removed, 1 changed" in out


def test_secure_values_become_visible_placeholders(tmp_path: Path) -> None:
    (tmp_path / "stacks").mkdir()
    (tmp_path / "Pulumi.yaml").write_text((stack_files.ROOT / "Pulumi.yaml").read_text())
    (tmp_path / "stacks" / "Pulumi.ci.yaml").write_text(
        "config:\n  flstack:target:\n    kind: existing\n    existing:\n      kubeconfig:\n        secure: AAABAx==\n"
    )
    files = stack_files.load("ci", tmp_path)
    rendering = render_tool.render_config(replace(files, root=stack_files.ROOT))
    assert files.secret_keys == {"flstack:target"}
    assert "[secret flstack:target.existing.kubeconfig]" in files.config["flstack:target"]
    assert files.config["pulumi:disable-default-providers"] == '["aws", "command", "gcp", "kubernetes"]'
    provider = rendering.of_type("pulumi:providers:kubernetes")[0]
    assert provider["inputs"]["kubeconfig"] == "[secret]"  # kept secret all the way into the provider
