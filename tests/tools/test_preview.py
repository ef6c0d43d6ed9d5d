"""The preview-mode render: the program as the first `pulumi preview` on an empty stack runs it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pulumi.runtime import mocks

from tests.helpers import EKS, MINIKUBE, render, render_shipped
from tests.tools.test_render import run_cli
from tools import render as render_tool
from tools import stack_files
from tools.mock_runtime import UNKNOWN_SHOWN, PreviewMocks

STACKS = stack_files.stack_names()


def registered(rendering: render_tool.Rendering) -> list[tuple[str, str]]:
    return sorted((r["type"], r["name"]) for r in rendering.resources())


@pytest.mark.parametrize("stack", STACKS)
def test_every_stack_previews_and_registers_what_up_registers(stack: str) -> None:
    """A resource registered only once an output is known (inside an apply) would be missing here."""
    preview = render_shipped(stack, preview=True)
    assert preview.recording.preview
    assert registered(preview) == registered(render_shipped(stack))


def args(typ: str, name: str, **inputs: Any) -> mocks.MockResourceArgs:
    return mocks.MockResourceArgs(typ=typ, name=name, inputs=inputs, custom=True)


def test_a_planned_create_has_only_its_inputs_and_no_id() -> None:
    mock = PreviewMocks()
    assert mock.new_resource(args("tls:index/privateKey:PrivateKey", "key", algorithm="ECDSA")) == (
        "",
        {"algorithm": "ECDSA"},
    )
    # Python dynamic providers have no preview: nothing they compute is known either.
    assert mock.new_resource(args("pulumi-python:dynamic/flstack:NvflareCa", "ca", project="p")) == (
        "",
        {"project": "p"},
    )
    assert mock.new_resource(args("pulumi:providers:kubernetes", "k8s", clusterIdentifier="c"))[0] == ""


def test_pulumi_command_returns_an_id_in_preview_but_no_output() -> None:
    assert PreviewMocks().new_resource(args("command:local:Command", "start", create="minikube start")) == (
        "start-id",
        {"create": "minikube start"},
    )


def test_bridged_auto_names_are_known_in_preview() -> None:
    _, state = PreviewMocks().new_resource(args("aws:iam/role:Role", "node-role", assumeRolePolicy="{}"))
    assert state == {"assumeRolePolicy": "{}", "name": "node-role"}


def test_a_local_run_that_really_runs_in_preview_fails_as_on_a_fresh_machine() -> None:
    result, failures = PreviewMocks().call(
        mocks.MockCallArgs(token="command:local:run", args={"command": "kubectl config view"}, provider="")
    )
    assert result == {}
    assert failures and "before any Command created what it reads" in failures[0][1]


def test_outputs_of_planned_creates_show_as_unknown() -> None:
    rendering = render({"target": EKS}, preview=True)
    outputs = rendering.outputs()
    assert outputs["target"]["endpoint"] == UNKNOWN_SHOWN  # an EKS endpoint exists only after the create
    assert outputs["target"]["region"] == "eu-central-1"  # config: known


def test_the_kubernetes_provider_is_unconfigured_while_the_cluster_is_planned() -> None:
    assert render({"target": EKS}, preview=True).unconfigured_providers() == ["cluster-k8s"]
    assert render({"target": MINIKUBE}, preview=True).unconfigured_providers() == ["cluster-k8s"]
    existing = {"kind": "existing", "existing": {"kubeconfigPath": "/k", "context": "c"}}
    assert render({"target": existing}, preview=True).unconfigured_providers() == []  # the file exists already
    assert render({"target": EKS}).unconfigured_providers() == []  # up: the cluster was created


def test_cli_preview_writes_unknowns_and_names_the_unconfigured_provider(tmp_path: Path) -> None:
    result = run_cli("local-nvflare", "--preview", "--out", str(tmp_path / "r"))
    assert result.returncode == 0, result.stderr
    assert "Kubernetes provider cluster-k8s runs unconfigured" in result.stdout
    outputs = json.loads((tmp_path / "r" / "outputs.json").read_text())
    assert outputs["target"]["kind"] == "minikube"
    # The kits are built by a dynamic provider at create time: their content is unknown in the preview.
    kit = (tmp_path / "r" / "manifests" / "demo" / "ConfigMap.nvflare-server-local.yaml").read_text()
    assert f"data: '{UNKNOWN_SHOWN}'" in kit
