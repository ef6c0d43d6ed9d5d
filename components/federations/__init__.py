"""Federations: one module per FL framework.

Adding a framework = adding a module with a settings dataclass and a ComponentResource taking
`(name, FederationConfig, Platform, opts)`, then one line in each table below.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import pulumi
import pulumi_kubernetes as k8s

from components.config import FederationConfig
from components.storage import Storage


@dataclass(frozen=True)
class Platform:
    """What a federation gets from the layers below it."""

    provider: k8s.Provider
    kubernetes_version: str
    storage: Storage

    def opts(self, parent: pulumi.Resource, **kwargs: Any) -> pulumi.ResourceOptions:
        return pulumi.ResourceOptions(parent=parent, provider=self.provider, **kwargs)


class Federation(Protocol):
    outputs: dict[str, Any]


SETTINGS: dict[str, type] = {}

_COMPONENTS: dict[str, Any] = {}


def deploy(federations: list[FederationConfig], platform: Platform) -> dict[str, Federation]:
    return {fed.name: _COMPONENTS[fed.framework](fed.name, fed, platform) for fed in federations}
