"""Targets: each kind yields one Kubernetes provider that every Kubernetes resource uses.

Adding a target = adding a module with a settings dataclass and a ComponentResource satisfying `Target`
whose `Settings` attribute names that dataclass, then one line in KINDS below.
"""

from __future__ import annotations

from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from components.config import TargetConfig

from . import eks, existing, minikube


class Target(Protocol):
    provider: k8s.Provider
    kubernetes_version: str
    default_data_class: str | None  # the cluster's ReadWriteOnce class when storage.dataClass is unset
    # Annotations a LoadBalancer Service needs here to keep client source IPs (NetworkPolicy ipBlocks).
    load_balancer_annotations: dict[str, str]
    outputs: dict[str, pulumi.Input[str]]


# target kind (the `kind:` value and its settings key) -> component; the one registration.
KINDS: dict[str, Any] = {
    "minikube": minikube.MinikubeCluster,
    "existing": existing.ExistingCluster,
    "eks": eks.EksCluster,
}
SETTINGS: dict[str, type] = {kind: component.Settings for kind, component in KINDS.items()}


def provision(config: TargetConfig, name: str) -> Target:
    component: Target = KINDS[config.kind](name, config.settings)
    return component
