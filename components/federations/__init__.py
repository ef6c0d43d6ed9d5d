"""Federations: one module per FL framework.

Adding a framework = adding a module with a settings dataclass and a ComponentResource taking
`(name, FederationConfig, Platform, opts)` whose `Settings` attribute names that dataclass, then one line
in FRAMEWORKS below.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s
import pulumi_tls as tls

from components import kube
from components.config import FederationConfig, registry
from components.config.model import OperatorsConfig
from components.operators import Operators
from components.storage import Storage
from components.targets import Target

from . import fate, fedml, flower, fltk, kubeflow, nvflare


@dataclass(frozen=True)
class Platform:
    """What a federation gets from the layers below it."""

    provider: k8s.Provider
    storage: Storage
    tls: tls.Provider  # certificates and keys: pulumi-tls, generated once and kept in state
    load_balancer_annotations: dict[str, str]  # what this target's LoadBalancer Services need
    operators: Operators  # cluster add-ons (Kubeflow operators), installed on a federation's first request
    image_digests: Mapping[str, str] = field(default_factory=dict)  # flstack:imageDigests

    def image(self, ref: str) -> str:
        """The image reference a container gets for `repository:tag`: with its digest when the stack pins one."""
        return kube.image(ref, self.image_digests)

    def opts(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)


class Federation(Protocol):
    outputs: dict[str, Any]


# framework name (the `framework:` value and its settings key) -> component; the one registration.
FRAMEWORKS: dict[str, Any] = {
    "flower": flower.FlowerFederation,
    "nvflare": nvflare.NvflareFederation,
    "kubeflow": kubeflow.KubeflowFederation,
    "fate": fate.FateFederation,
    "fltk": fltk.FltkFederation,
    "fedml": fedml.FedmlFederation,
}
SETTINGS: dict[str, type] = {name: component.Settings for name, component in FRAMEWORKS.items()}
registry.FRAMEWORKS.update(FRAMEWORKS)


def platform(
    cluster: Target,
    storage: Storage,
    operators: OperatorsConfig | None = None,
    image_digests: Mapping[str, str] | None = None,
) -> Platform:
    addons = Operators(operators or OperatorsConfig(), cluster.provider)
    annotations = cluster.load_balancer_annotations
    return Platform(cluster.provider, storage, tls.Provider("tls"), annotations, addons, dict(image_digests or {}))


def deploy(federations: list[FederationConfig], platform: Platform) -> dict[str, Federation]:
    return {fed.name: FRAMEWORKS[fed.framework](fed.name, fed, platform) for fed in federations}
