"""The typed stack config: everything under the `flstack:` namespace.

Targets and frameworks contribute their own settings dataclasses through the registries in
`components.targets` and `components.federations`; this module holds only what every stack shares.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from .schema import rule

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL_HELP = "a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
QUANTITY = r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|m|k|M|G|T|P)?"
QUANTITY_HELP = "a Kubernetes quantity such as 10Gi or 500m"
KUBE_VERSION = r"1\.[0-9]{2}(\.[0-9]+)?"
KUBE_VERSION_HELP = "a Kubernetes version such as 1.34.0"


def _target_kinds() -> Mapping[str, type]:
    from components.targets import SETTINGS

    return SETTINGS


def _frameworks() -> Mapping[str, type]:
    from components.federations import SETTINGS

    return SETTINGS


@dataclass(frozen=True)
class TargetConfig:
    """Where the federations run: `kind` picks the target, the block named after it configures it."""

    kind: str
    settings: Any = rule(None, variants=_target_kinds, tag="kind")


@dataclass(frozen=True)
class SharedStorageConfig:
    """ReadWriteMany storage that federations ask for by the name `shared`."""

    kind: Literal["none", "existing"] = "none"
    storage_class: str | None = None

    def check(self) -> Iterator[tuple[str, str]]:
        if self.kind == "existing" and not self.storage_class:
            yield "storageClass", "required when kind is 'existing': the name of a ReadWriteMany StorageClass"
        if self.kind != "existing" and self.storage_class:
            yield "storageClass", f"only used when kind is 'existing' (kind is {self.kind!r})"


@dataclass(frozen=True)
class StorageConfig:
    # ReadWriteOnce class for federation state (databases, workspaces); None = the target's default.
    data_class: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    shared: SharedStorageConfig = field(default_factory=SharedStorageConfig)


@dataclass(frozen=True)
class FederationConfig:
    """One federation: a framework deployed into its own namespace (and more, for per-party ones)."""

    name: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    framework: str = rule()
    namespace: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    settings: Any = rule(None, variants=_frameworks, tag="framework")

    @property
    def home_namespace(self) -> str:
        return self.namespace or self.name


@dataclass(frozen=True)
class StackConfig:
    target: TargetConfig
    storage: StorageConfig = field(default_factory=StorageConfig)
    federations: list[FederationConfig] = field(default_factory=list)

    def check(self) -> Iterator[tuple[str, str]]:
        seen_names: dict[str, int] = {}
        seen_namespaces: dict[str, int] = {}
        for i, fed in enumerate(self.federations):
            if fed is None:
                continue
            if fed.name in seen_names:
                yield f"federations[{i}].name", f"{fed.name!r} is already used by federations[{seen_names[fed.name]}]"
            seen_names.setdefault(fed.name, i)
            ns = fed.home_namespace
            if ns in seen_namespaces:
                yield (
                    f"federations[{i}].namespace",
                    f"{ns!r} is already used by federations[{seen_namespaces[ns]}]; each federation needs its own",
                )
            seen_namespaces.setdefault(ns, i)
