"""The minikube target: what `pulumi up` runs to start the cluster, and how the provider reaches it."""

from __future__ import annotations

from typing import Any

from pulumi.runtime import mocks

from tests.helpers import render
from tools.mock_runtime import OfflineMocks

SETTINGS = {"profile": "lab", "cpus": 6, "memory": "12g", "kubernetesVersion": "1.33.2", "addons": ["ingress"]}


class CallRecorder(OfflineMocks):
    def __init__(self) -> None:
        super().__init__()
        self.seen: list[dict[str, Any]] = []

    def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]] | None]:
        self.seen.append({"token": args.token, **dict(args.args)})
        return super().call(args)


def test_start_and_delete_commands_come_from_the_config() -> None:
    rendering = render({"target": {"kind": "minikube", "minikube": SETTINGS}})
    (start,) = [r for r in rendering.of_type("command:local:Command") if r["name"] == "cluster-start"]
    assert start["inputs"]["create"] == (
        "minikube start -p lab --cpus=6 --memory=12g --kubernetes-version=v1.33.2 --driver=docker --cni=calico "
        "--addons=ingress"
    )
    assert start["inputs"]["delete"] == "minikube delete -p lab"
    # A changed start line replaces the cluster: the old profile must go first (same name).
    assert start["inputs"]["triggers"] == [start["inputs"]["create"]]
    assert start["options"]["deleteBeforeReplace"] is True


def test_kubeconfig_is_read_on_every_run_after_start_and_kept_secret() -> None:
    recorder = CallRecorder()
    rendering = render({"target": {"kind": "minikube", "minikube": SETTINGS}}, mock=recorder)
    reads = [c for c in recorder.seen if c["token"] == "command:local:run"]
    assert [c["command"] for c in reads] == ["kubectl config view --raw --minify --flatten --context lab"]
    (provider,) = rendering.of_type("pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    # The cluster's identity, not the kubeconfig text, decides whether every object gets replaced.
    assert provider["inputs"]["clusterIdentifier"] == "minikube/lab"


def test_first_preview_does_not_read_the_kubeconfig_before_minikube_started() -> None:
    """pulumi-command gives the planned start an ID in a preview, so `depends_on` alone let the read run
    (PreviewMocks fails it, as kubectl does on a fresh machine); it must wait on the start's output."""
    rendering = render({"target": {"kind": "minikube", "minikube": SETTINGS}}, preview=True)
    assert rendering.unconfigured_providers() == ["cluster-k8s"]


def test_kubeconfig_read_is_not_logged() -> None:
    """The flattened kubeconfig holds the client key: the run invoke's default logging would print it."""
    recorder = CallRecorder()
    render({"target": {"kind": "minikube", "minikube": SETTINGS}}, mock=recorder)
    (read,) = [c for c in recorder.seen if c["token"] == "command:local:run"]
    assert read["logging"] == "none"
