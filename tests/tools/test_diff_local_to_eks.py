"""Moving the same federation from minikube to EKS changes the target and storage, nothing else."""

from __future__ import annotations

from typing import Any

from tests.helpers import render_stack
from tools import diff

Key = tuple[str, str]
PLATFORM = ("flstack:targets:", "flstack:storage:")


def root_component(key: Key, rows: dict[Key, dict[str, Any]]) -> str:
    """The type of the top-level component a resource sits under (itself, if it has no parent)."""
    by_short = {f"{t}::{n}": (t, n) for t, n in rows}
    current = key
    while rows[current]["parent"] is not None:
        current = by_short[rows[current]["parent"]]
    return current[0]


def is_platform(key: Key, rows: dict[Key, dict[str, Any]]) -> bool:
    root = root_component(key, rows)
    return root.startswith(PLATFORM) or key[0].startswith(("aws:", "pulumi:providers:aws"))


def test_switching_local_flower_to_eks_flower_changes_only_target_and_storage() -> None:
    local = render_stack("local-flower").resources()
    cloud = render_stack("eks-flower").resources()
    before = {(r["type"], r["name"]): r for r in local}
    after = {(r["type"], r["name"]): r for r in cloud}
    changes = diff.compare(local, cloud)

    assert [k for k in changes.removed if not is_platform(k, before)] == []
    assert [k for k in changes.added if not is_platform(k, after)] == []
    # Changed rows that belong to a federation may differ only where they name a storage class, and in
    # the lifecycle link to the cluster (minikube's objects go with `minikube delete`; EKS's are deleted).
    federation_changes = {
        k: [p for p in paths if p != "options.deletedWith"]
        for k, paths in changes.changed.items()
        if not is_platform(k, after)
    }
    federation_changes = {k: paths for k, paths in federation_changes.items() if paths}
    assert federation_changes == {
        ("kubernetes:core/v1:PersistentVolumeClaim", "persistentvolumeclaim:demo/superlink-state"): [
            "inputs.spec.storageClassName"
        ]
    }
    claim = ("kubernetes:core/v1:PersistentVolumeClaim", "persistentvolumeclaim:demo/superlink-state")
    assert before[claim]["inputs"]["spec"]["storageClassName"] == "standard"
    assert after[claim]["inputs"]["spec"]["storageClassName"] == "gp3-retain"

    # Not vacuous: the platform really did change, and the federation really is there in both.
    assert ("flstack:targets:Minikube", "cluster") in changes.removed
    assert ("flstack:targets:Eks", "cluster") in changes.added
    assert ("aws:eks/cluster:Cluster", "cluster-eks") in changes.added
    assert ("flstack:storage:Efs", "storage-efs") in changes.added
    assert ("pulumi:providers:kubernetes", "cluster-k8s") in changes.changed  # same name: same provider reference
    federation = [k for k in before if root_component(k, before) == "flstack:federations:Flower"]
    assert len(federation) > 10 and all(k in after for k in federation)
    assert all(after[k]["provider"] == before[k]["provider"] for k in federation)
