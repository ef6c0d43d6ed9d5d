"""Targets: each kind yields one Kubernetes provider that every Kubernetes resource uses, and brings the
cluster's own storage (its block-storage class and any ReadWriteMany kinds beyond nfs/existing).

Adding a target = adding a module with a settings dataclass and a ComponentResource satisfying `Target`
whose `Settings` attribute names that dataclass, then one line in KINDS below.
"""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import pulumi
import pulumi_kubernetes as k8s

from components.config import TargetConfig, registry

from . import eks, existing, gke, minikube


class Target(Protocol):
    provider: k8s.Provider
    kubernetes_version: str
    # Annotations a LoadBalancer Service needs here to keep client source IPs (NetworkPolicy ipBlocks).
    load_balancer_annotations: dict[str, str]
    outputs: dict[str, pulumi.Input[str]]
    # ReadWriteMany kinds this target brings (storage.shared.kind) -> the smallest claim it serves (None: any).
    SHARED_STORAGE: ClassVar[dict[str, str | None]]

    def block_storage(self) -> str | None:
        """The ReadWriteOnce class for federation state when storage.dataClass is unset (None: the cluster's
        default), after installing whatever the target needs for it."""

    def shared_storage(self, kind: str) -> str:
        """Provisions ReadWriteMany storage of a kind in SHARED_STORAGE; returns its StorageClass."""


# target kind (the `kind:` value and its settings key) -> component; the one registration.
KINDS: dict[str, Any] = {
    "minikube": minikube.MinikubeCluster,
    "existing": existing.ExistingCluster,
    "eks": eks.EksCluster,
    "gke": gke.GkeCluster,
}
SETTINGS: dict[str, type] = {kind: component.Settings for kind, component in KINDS.items()}
registry.TARGETS.update(KINDS)


def provision(config: TargetConfig, name: str) -> Target:
    component: Target = KINDS[config.kind](name, config.settings)
    return component
