"""Storage on GKE (mock-verified): retained pd-balanced for state, Filestore on flstack's VPC for shared data."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError
from tests.helpers import EKS, by_name, gke, render, render_stack, schema_errors

STACK = "gke-flower"
KEY = "projects/p-12345/locations/europe-west4/keyRings/flstack/cryptoKeys/disks"
FLOWER = {"name": "demo", "framework": "flower", "flower": {"supernodes": 2}}


def with_shared_data(size: str) -> dict[str, Any]:
    return {**FLOWER, "flower": {"supernodes": 2, "sharedData": {"size": size}}}


@pytest.fixture(scope="module")
def rendering() -> Any:
    return render_stack(STACK)


def test_state_goes_on_a_retained_pd_balanced_class(rendering: Any) -> None:
    cls = rendering.find("StorageClass", "pd-balanced-retain")
    assert (cls["provisioner"], cls["reclaimPolicy"], cls["volumeBindingMode"]) == (
        "pd.csi.storage.gke.io",
        "Retain",
        "WaitForFirstConsumer",
    )
    assert cls["allowVolumeExpansion"] is True
    assert cls["parameters"] == {"type": "pd-balanced", "csi.storage.k8s.io/fstype": "ext4"}
    assert "annotations" not in cls["metadata"]  # GKE's standard-rwo stays the default class
    assert schema_errors(cls, "1.34.0") == []
    claim = rendering.find("PersistentVolumeClaim", "superlink-state", "demo")
    assert claim["spec"]["storageClassName"] == "pd-balanced-retain"
    assert rendering.outputs()["storage"]["dataClass"] == "pd-balanced-retain"


def test_the_cluster_runs_both_csi_drivers(rendering: Any) -> None:
    (cluster,) = by_name(rendering.resources(), "gcp:container/cluster:Cluster").values()
    assert cluster["inputs"]["addonsConfig"] == {
        "gcePersistentDiskCsiDriverConfig": {"enabled": True},
        "gcpFilestoreCsiDriverConfig": {"enabled": True},
    }


def test_filestore_class_names_flstacks_own_network_not_default(rendering: Any) -> None:
    cls = rendering.find("StorageClass", "shared-filestore")
    assert cls["provisioner"] == "filestore.csi.storage.gke.io"
    assert cls["parameters"] == {"tier": "standard", "network": "flstack-vpc", "connect-mode": "DIRECT_PEERING"}
    assert (cls["reclaimPolicy"], cls["volumeBindingMode"]) == ("Retain", "WaitForFirstConsumer")
    assert schema_errors(cls, "1.34.0") == []
    assert rendering.outputs()["storage"]["sharedClass"] == "shared-filestore"
    (network,) = by_name(rendering.resources(), "gcp:compute/network:Network").values()
    assert network["inputs"]["name"] == cls["parameters"]["network"]


def test_cmek_reaches_the_disk_and_filestore_classes() -> None:
    rendering = render({"target": gke(kmsKey=KEY), "storage": {"shared": {"kind": "filestore"}}})
    assert rendering.find("StorageClass", "pd-balanced-retain")["parameters"]["disk-encryption-kms-key"] == KEY
    assert rendering.find("StorageClass", "shared-filestore")["parameters"]["instance-encryption-kms-key"] == KEY


def test_a_claim_below_the_filestore_minimum_is_refused_with_the_minimum_and_nfs() -> None:
    with pytest.raises(ConfigError) as err:
        render(
            {"target": gke(), "storage": {"shared": {"kind": "filestore"}}, "federations": [with_shared_data("10Gi")]}
        )
    message = str(err.value)
    assert "flstack:federations[0].flower.sharedData.size: '10Gi' is below the smallest 'filestore' volume (1Ti)" in (
        message
    )
    assert "use storage.shared.kind 'nfs'" in message


def test_a_claim_at_the_minimum_gets_the_filestore_class() -> None:
    rendering = render(
        {"target": gke(), "storage": {"shared": {"kind": "filestore"}}, "federations": [with_shared_data("1Ti")]}
    )
    claim = rendering.find("PersistentVolumeClaim", "shared-data", "demo")
    assert claim["spec"]["storageClassName"] == "shared-filestore"
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]


def test_nfs_on_gke_keeps_its_volume_on_the_retained_disk_class() -> None:
    rendering = render({"target": gke(), "storage": {"shared": {"kind": "nfs"}}, "federations": [FLOWER]})
    (chart,) = by_name(rendering.resources(), "kubernetes:helm.sh/v4:Chart").values()
    assert chart["inputs"]["values"]["persistence"]["storageClass"] == "pd-balanced-retain"


@pytest.mark.parametrize(
    ("target", "kind", "expected"),
    [
        (EKS, "filestore", "'filestore' needs the gke target (target is 'eks')"),
        (
            gke(),
            "efs",
            "'efs' needs the eks target (target is 'gke'); allowed here: 'none', 'existing', 'nfs', 'filestore'",
        ),
    ],
)
def test_each_target_allows_only_its_own_shared_kinds(target: dict[str, Any], kind: str, expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        render({"target": target, "storage": {"shared": {"kind": kind}}})
    assert f"flstack:storage.shared.kind: {expected}" in str(err.value)
