"""ReadWriteMany anywhere: the in-cluster NFS server chart, pinned, persistent, on the data class."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError, parse
from components.storage import Storage, nfs
from tests.helpers import EKS, MINIKUBE, by_name, render, schema_errors
from tools import render as render_tool

FEDERATION = {"name": "demo", "framework": "flower", "flower": {"supernodes": 2}}


def nfs_render(target: dict[str, Any], **shared: Any) -> render_tool.Rendering:
    return render({"target": target, "storage": {"shared": {"kind": "nfs", **shared}}, "federations": [FEDERATION]})


def chart(rendering: render_tool.Rendering) -> dict[str, Any]:
    return by_name(rendering.resources(), "kubernetes:helm.sh/v4:Chart")["storage-nfs"]


def test_chart_is_pinned_and_persistent_on_the_minikube_data_class() -> None:
    rendering = nfs_render(MINIKUBE, size="50Gi")
    row = chart(rendering)
    assert row["provider"] == "pulumi:providers:kubernetes::cluster-k8s"
    inputs = row["inputs"]
    assert inputs["chart"] == "nfs-server-provisioner"
    assert inputs["version"] == "1.8.0"
    assert inputs["repositoryOpts"] == {
        "repo": "https://kubernetes-sigs.github.io/nfs-ganesha-server-and-external-provisioner/"
    }
    assert inputs["namespace"] == "flstack-nfs"
    assert inputs["values"]["persistence"] == {
        "enabled": True,
        "accessMode": "ReadWriteOnce",
        "size": "50Gi",
        "storageClass": "standard",
    }
    assert inputs["values"]["storageClass"]["name"] == "shared-nfs"
    assert inputs["values"]["storageClass"]["defaultClass"] is False
    assert rendering.outputs()["storage"] == {"dataClass": "standard", "sharedClass": "shared-nfs"}


def test_default_size_and_the_existing_clusters_class() -> None:
    target = {"kind": "existing", "existing": {"context": "lab", "defaultStorageClass": "local-path"}}
    persistence = chart(nfs_render(target))["inputs"]["values"]["persistence"]
    assert persistence["size"] == nfs.DEFAULT_SIZE == "20Gi"
    assert persistence["storageClass"] == "local-path"


def test_on_eks_the_server_volume_is_a_retained_gp3_volume() -> None:
    assert chart(nfs_render(EKS))["inputs"]["values"]["persistence"]["storageClass"] == "gp3-retain"


def test_namespace_is_privileged_for_the_nfs_server_only() -> None:
    rendering = nfs_render(MINIKUBE)
    ns = rendering.find("Namespace", "flstack-nfs")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "privileged"
    assert rendering.find("Namespace", "demo")["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == (
        "restricted"
    )
    assert schema_errors(ns, "1.34.0") == []
    assert "kubernetes:core/v1:Namespace::namespace:flstack-nfs" in chart(rendering)["options"]["dependsOn"]


def test_flower_is_unchanged_by_shared_storage() -> None:
    """Shared storage is for components that ask for it; the Flower federation's objects stay the same."""
    with_nfs = nfs_render(MINIKUBE).manifests()
    without = render({"target": MINIKUBE, "federations": [FEDERATION]}).manifests()
    assert [m for m in with_nfs if m["metadata"].get("namespace") == "demo"] == [
        m for m in without if m["metadata"].get("namespace") == "demo"
    ]


@pytest.mark.parametrize(
    ("shared", "expected"),
    [
        ({"kind": "none", "size": "5Gi"}, "flstack:storage.shared.size: only used when kind is 'nfs' (kind is 'none')"),
        ({"kind": "nfs", "size": "lots"}, "flstack:storage.shared.size: expected a Kubernetes quantity"),
        (
            {"kind": "nfs", "storageClass": "x"},
            "flstack:storage.shared.storageClass: only used when kind is 'existing'",
        ),
        (
            {"kind": "s3"},
            "flstack:storage.shared.kind: expected one of 'none', 'existing', 'nfs' (the minikube target's), got 's3'",
        ),
    ],
)
def test_bad_shared_storage_config(shared: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"target": MINIKUBE, "storage": {"shared": shared}})
    assert expected in str(err.value)


def test_components_ask_for_shared_storage_by_name() -> None:
    assert Storage("standard", "shared-nfs").require_shared("a trainer") == "shared-nfs"
    with pytest.raises(ValueError, match=r"a trainer needs ReadWriteMany storage: set flstack:storage\.shared"):
        Storage("standard", None).require_shared("a trainer")
