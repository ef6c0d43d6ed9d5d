"""What the engine does with the program over a stack's life: replaced clusters, destroy, up again, updates."""

from __future__ import annotations

import pytest

from tests.helpers import MINIKUBE, by_name, eks, render, render_stack
from tools import stack_files
from tools.render import Rendering

STACKS = stack_files.stack_names()


def provider_row(rendering: Rendering) -> dict[str, object]:
    (row,) = rendering.of_type("pulumi:providers:kubernetes")
    return row


def kubernetes_rows(rendering: Rendering) -> list[dict[str, object]]:
    return [r for r in rendering.resources() if r["type"].startswith("kubernetes:")]


def target_kind(stack: str) -> str:
    return str(render_stack(stack).outputs()["target"]["kind"])


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_and_configmaps_update_in_place_and_retained_objects_are_adopted(stack: str) -> None:
    """Renewed certificates and kits update Secrets/ConfigMaps (no delete-then-create); an `up` after
    `destroy` adopts the retained namespaces and claims instead of failing on them (pulumi-kubernetes >= 4.29)."""
    inputs = provider_row(render_stack(stack))["inputs"]  # provider config travels as strings
    assert inputs["enableSecretMutable"] == "true"  # type: ignore[index]
    assert inputs["enableConfigMapMutable"] == "true"  # type: ignore[index]
    assert inputs["upsertExistingObjects"] == "true"  # type: ignore[index]


def test_a_replaced_minikube_cluster_replaces_the_provider_and_every_object() -> None:
    """delete + start under the same profile is an empty cluster: nothing may stay "in place" in state."""
    rendering = render({"target": MINIKUBE})
    assert provider_row(rendering)["options"]["replaceWith"] == ["command:local:Command::cluster-start"]  # type: ignore[index]


def test_a_replaced_eks_cluster_replaces_the_provider_and_every_object() -> None:
    rendering = render({"target": eks()})
    assert provider_row(rendering)["options"]["replaceWith"] == ["aws:eks/cluster:Cluster::cluster-eks"]  # type: ignore[index]


@pytest.mark.parametrize("stack", [s for s in STACKS if s.startswith("local")])
def test_minikube_objects_go_with_the_cluster_on_destroy(stack: str) -> None:
    """`destroy` would reach them with the last up's kubeconfig (stale after a restart) before `minikube delete`."""
    assert target_kind(stack) == "minikube"
    rows = kubernetes_rows(render_stack(stack))
    if not rows:
        pytest.skip(f"{stack} has no Kubernetes objects")
    assert {r["options"].get("deletedWith") for r in rows} == {"command:local:Command::cluster-start"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("stack", [s for s in STACKS if not s.startswith("local")])
def test_objects_on_clusters_that_outlive_them_are_deleted_through_the_api(stack: str) -> None:
    """EKS: a LoadBalancer Service must be deleted through Kubernetes, or its NLB outlives the VPC's destroy."""
    assert target_kind(stack) != "minikube"
    assert all("deletedWith" not in r["options"] for r in kubernetes_rows(render_stack(stack)))  # type: ignore[operator]


def test_existing_target_is_adopted_not_replaced() -> None:
    rendering = render({"target": {"kind": "existing", "existing": {"context": "lab"}}})
    row = provider_row(rendering)
    assert "replaceWith" not in row["options"]  # type: ignore[operator]
    assert by_name(rendering.resources(), "pulumi:providers:kubernetes")["cluster-k8s"]["inputs"]["context"] == "lab"
