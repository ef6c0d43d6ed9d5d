"""Moving the same federation from minikube to EKS or GKE changes the target and storage, nothing else."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components import verify
from tests.helpers import render_stack
from tools import diff, render

Key = tuple[str, str]
PLATFORM = ("flstack:targets:", "flstack:storage:")
CLAIM = ("kubernetes:core/v1:PersistentVolumeClaim", "persistentvolumeclaim:demo/superlink-state")
VERIFICATION = [
    ("kubernetes:batch/v1:Job", "job:demo/verify"),
    ("kubernetes:core/v1:ConfigMap", "configmap:demo/flower-verify"),
]
SUPERLINK_POLICY = ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "networkpolicy:demo/superlink-ingress")
CLOUDS = ("aws:", "gcp:", "pulumi:providers:aws", "pulumi:providers:gcp")


def root_component(key: Key, rows: dict[Key, dict[str, Any]]) -> str:
    """The type of the top-level component a resource sits under (itself, if it has no parent)."""
    by_short = {f"{t}::{n}": (t, n) for t, n in rows}
    current = key
    while rows[current]["parent"] is not None:
        current = by_short[rows[current]["parent"]]
    return current[0]


def is_platform(key: Key, rows: dict[Key, dict[str, Any]]) -> bool:
    root = root_component(key, rows)
    # Each stack also reads its own last outputs (components/retention.py): that reference names the stack.
    return root.startswith(PLATFORM) or key[0].startswith(CLOUDS) or key[0] == "pulumi:pulumi:StackReference"


@pytest.mark.parametrize(
    ("stack", "state_class", "platform"),
    [
        (
            "eks-flower",
            "gp3-retain",
            [
                ("flstack:targets:Eks", "cluster"),
                ("aws:eks/cluster:Cluster", "cluster-eks"),
                ("flstack:storage:Efs", "storage-efs"),
            ],
        ),
        (
            "gke-flower",
            "pd-balanced-retain",
            [
                ("flstack:targets:Gke", "cluster"),
                ("gcp:container/cluster:Cluster", "cluster-gke"),
                ("flstack:storage:PdCsi", "storage-pd"),
                ("flstack:storage:Filestore", "storage-filestore"),
            ],
        ),
    ],
)
def test_moving_local_flower_to_a_cloud_changes_only_target_and_storage(
    stack: str, state_class: str, platform: list[Key]
) -> None:
    local = render_stack("local-flower").resources()
    cloud = render_stack(stack).resources()
    before = {(r["type"], r["name"]): r for r in local}
    after = {(r["type"], r["name"]): r for r in cloud}
    changes = diff.compare(local, cloud)

    # `verify` follows the target when unset (on for minikube, off for the clouds): the verification Job, its
    # files and the SuperLink policy's admission of its pod go, and nothing else of the federation.
    assert [k for k in changes.removed if not is_platform(k, before)] == VERIFICATION
    assert [k for k in changes.added if not is_platform(k, after)] == []
    # Changed rows that belong to a federation may differ only where they name a storage class, and in
    # the lifecycle links to the target: minikube's objects go with `minikube delete` (a cloud's are deleted),
    # and a claim waits for the target's storage class (dependsOn).
    federation_changes = {
        k: [p for p in paths if p != "options.deletedWith"]
        for k, paths in changes.changed.items()
        if not is_platform(k, after)
    }
    federation_changes = {k: paths for k, paths in federation_changes.items() if paths}
    assert federation_changes == {
        CLAIM: ["inputs.spec.storageClassName", "options.dependsOn"],
        SUPERLINK_POLICY: ["inputs.spec.ingress[0].from"],
    }
    peers_before = before[SUPERLINK_POLICY]["inputs"]["spec"]["ingress"][0]["from"]
    peers_after = after[SUPERLINK_POLICY]["inputs"]["spec"]["ingress"][0]["from"]
    assert [p for p in peers_before if p not in peers_after] == [verify.peer("flower", "demo")]
    assert all(p in peers_before for p in peers_after)
    assert before[CLAIM]["inputs"]["spec"]["storageClassName"] == "standard"
    assert after[CLAIM]["inputs"]["spec"]["storageClassName"] == state_class

    # Not vacuous: the platform really did change, and the federation really is there in both.
    assert ("flstack:targets:Minikube", "cluster") in changes.removed
    assert all(k in changes.added for k in platform)
    assert ("pulumi:providers:kubernetes", "cluster-k8s") in changes.changed  # same name: same provider reference
    federation = [k for k in before if root_component(k, before) == "flstack:federations:Flower"]
    federation = [k for k in federation if k not in VERIFICATION]
    assert len(federation) > 10 and all(k in after for k in federation)
    assert all(after[k]["provider"] == before[k]["provider"] for k in federation)


def test_render_cli_diff_shows_the_same_change(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The comparison a reviewer runs: `python -m tools.render gke-flower --diff OLD`."""
    assert render.main(["local-flower", "--out", str(tmp_path / "local")]) == 0
    assert render.main(["gke-flower", "--out", str(tmp_path / "gke"), "--diff", str(tmp_path / "local")]) == 0
    printed = capsys.readouterr().out.splitlines()
    claim = printed.index("~ kubernetes:core/v1:PersistentVolumeClaim  persistentvolumeclaim:demo/superlink-state")
    assert printed[claim + 1].strip() == "inputs.spec.storageClassName"
    assert "+ gcp:container/cluster:Cluster  cluster-gke" in printed
    assert "- flstack:targets:Minikube  cluster" in printed
