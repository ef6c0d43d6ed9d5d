"""Upgrades on EKS (rendered inputs only): nodes and add-ons follow the cluster version; add-ons survive replacement."""

from __future__ import annotations

from typing import Any

import pytest

from tests.helpers import by_name, eks, render, render_stack

ADDONS = {
    "cluster-vpc-cni": "vpc-cni",
    "cluster-kube-proxy": "kube-proxy",
    "cluster-coredns": "coredns",
    "storage-ebs-driver": "aws-ebs-csi-driver",
    "storage-efs-driver": "aws-efs-csi-driver",
}


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack("eks-flower").resources()


def addons(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_name(rows, "aws:eks/addon:Addon")


def test_node_groups_run_the_clusters_version(rows: list[dict[str, Any]]) -> None:
    groups = by_name(rows, "aws:eks/nodeGroup:NodeGroup").values()
    assert [g["inputs"]["version"] for g in groups] == ["1.35"] * 3
    bumped = render({"target": eks(kubernetesVersion="1.36")}).resources()
    (group,) = by_name(bumped, "aws:eks/nodeGroup:NodeGroup").values()
    assert group["inputs"]["version"] == "1.36"


def test_kube_proxy_coredns_cni_and_csi_are_managed_add_ons_kept_on_the_cluster(rows: list[dict[str, Any]]) -> None:
    found = addons(rows)
    assert {name: a["inputs"]["addonName"] for name, a in found.items()} == ADDONS
    for addon in found.values():
        # preserve: deleting or replacing the resource leaves the add-on's objects on the live cluster.
        assert addon["inputs"]["preserve"] is True
        assert addon["inputs"]["resolveConflictsOnCreate"] == "OVERWRITE"


def test_add_on_versions_are_explicit_and_follow_the_kubernetes_version(rows: list[dict[str, Any]]) -> None:
    # Unpinned: EKS's default version for the cluster's Kubernetes version (the mock names what it stands for).
    assert {a["inputs"]["addonVersion"] for a in addons(rows).values()} == {
        f"<default {addon} for 1.35>" for addon in ADDONS.values()
    }
    bumped = addons(render({"target": eks(kubernetesVersion="1.36")}).resources())
    assert bumped["cluster-coredns"]["inputs"]["addonVersion"] == "<default coredns for 1.36>"


def test_pinned_add_on_versions_win() -> None:
    pins = {"vpc-cni": "v1.20.4-eksbuild.2", "coredns": "v1.12.4-eksbuild.1"}
    found = addons(render({"target": eks(addonVersions=pins)}).resources())
    assert found["cluster-vpc-cni"]["inputs"]["addonVersion"] == "v1.20.4-eksbuild.2"
    assert found["cluster-coredns"]["inputs"]["addonVersion"] == "v1.12.4-eksbuild.1"
    assert found["cluster-kube-proxy"]["inputs"]["addonVersion"] == "<default kube-proxy for 1.35>"


def test_nodes_join_only_after_the_cni_and_kube_proxy_and_coredns_waits_for_nodes(rows: list[dict[str, Any]]) -> None:
    groups = by_name(rows, "aws:eks/nodeGroup:NodeGroup")
    for group in groups.values():
        assert {"aws:eks/addon:Addon::cluster-vpc-cni", "aws:eks/addon:Addon::cluster-kube-proxy"} <= set(
            group["options"]["dependsOn"]
        )
    coredns = addons(rows)["cluster-coredns"]
    assert {f"aws:eks/nodeGroup:NodeGroup::{name}" for name in groups} <= set(coredns["options"]["dependsOn"])


def test_extended_support_only_when_asked() -> None:
    cluster = by_name(render({"target": eks(supportType="EXTENDED")}).resources(), "aws:eks/cluster:Cluster")
    assert cluster["cluster-eks"]["inputs"]["upgradePolicy"] == {"supportType": "EXTENDED"}
    default = by_name(render({"target": eks()}).resources(), "aws:eks/cluster:Cluster")["cluster-eks"]
    assert default["inputs"]["version"] == "1.35"
    assert default["inputs"]["upgradePolicy"] == {"supportType": "STANDARD"}
