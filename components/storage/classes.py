"""StorageClass manifests shared by the storage modules."""

from __future__ import annotations

from typing import Any, Literal

import pulumi

DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def storage_class(
    name: str,
    provisioner: str,
    parameters: dict[str, pulumi.Input[str]],
    reclaim_policy: Literal["Delete", "Retain"],
    binding_mode: Literal["Immediate", "WaitForFirstConsumer"],
    default: bool = False,
    expandable: bool = True,
) -> dict[str, Any]:
    metadata: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "flstack"}}
    if default:
        metadata["annotations"] = {DEFAULT_CLASS_ANNOTATION: "true"}
    sc: dict[str, Any] = {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": metadata,
        "provisioner": provisioner,
        "parameters": parameters,
        "reclaimPolicy": reclaim_policy,
        "volumeBindingMode": binding_mode,
    }
    if expandable:
        sc["allowVolumeExpansion"] = True
    return sc
