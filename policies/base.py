"""What a rule of the flstack pack is: a validator plus its level, severity and config knobs.

Validators are plain functions over (resource type, inputs, config), so they are unit-tested without
the policy engine; `__main__.py` turns them into pulumi_policy policies.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Config = Mapping[str, Any]
Props = Mapping[str, Any]
Resource = tuple[str, Props]  # (type token, inputs), what a stack policy sees of each resource


Severity = Literal["low", "medium", "high", "critical"]
Level = Literal["mandatory", "advisory"]


class _Policy:
    name: str
    check: Callable[..., Iterator[str]]
    config: dict[str, dict[str, Any]]

    @property
    def description(self) -> str:
        """The validator's docstring, first line: what the rule asks for."""
        return (self.check.__doc__ or self.name).strip().split("\n")[0]

    def defaults(self) -> dict[str, Any]:
        return {key: schema["default"] for key, schema in self.config.items()}


@dataclass(frozen=True)
class Rule(_Policy):
    """A resource policy: `check(type, props, config)` yields violation messages."""

    name: str
    check: Callable[[str, Props, Config], Iterator[str]]
    severity: Severity
    level: Level = "mandatory"
    # Config knobs: property -> JSON schema, each with its "default".
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, resource_type: str, props: Props, config: Config | None = None) -> list[str]:
        return list(self.check(resource_type, props, {**self.defaults(), **(config or {})}))


@dataclass(frozen=True)
class StackRule(_Policy):
    """A stack policy: `check(resources, config)` sees every resource at once."""

    name: str
    check: Callable[[list[Resource], Config], Iterator[str]]
    severity: Severity
    level: Level = "mandatory"
    config: dict[str, dict[str, Any]] = field(default_factory=dict)

    def run(self, resources: list[Resource], config: Config | None = None) -> list[str]:
        return list(self.check(resources, {**self.defaults(), **(config or {})}))


def kind_of(resource_type: str) -> str | None:
    """`kubernetes:apps/v1:Deployment` -> `Deployment`; None for anything that is not a Kubernetes object."""
    if not resource_type.startswith("kubernetes:"):
        return None
    return resource_type.rsplit(":", 1)[-1]


def name_of(props: Props) -> str:
    meta = props.get("metadata") or {}
    return f"{meta['namespace']}/{meta.get('name')}" if meta.get("namespace") else str(meta.get("name"))


def is_open(cidr: str) -> bool:
    """A /0: every address there is."""
    try:
        return ipaddress.ip_network(cidr, strict=False).prefixlen == 0
    except ValueError:
        return False


def truthy(value: Any) -> bool:
    """pulumi-aws takes some booleans as strings ("true")."""
    return value is True or (isinstance(value, str) and value.lower() == "true")


def string_list(default: list[str], description: str, **item: Any) -> dict[str, Any]:
    """The JSON schema of a list-of-strings config knob."""
    return {"type": "array", "items": {"type": "string", **item}, "default": default, "description": description}


def flag(description: str) -> dict[str, Any]:
    """The JSON schema of an off-by-default boolean config knob."""
    return {"type": "boolean", "default": False, "description": description}


# Namespaces of upstream charts flstack installs whose pods cannot meet `restricted`: nfs-server-provisioner
# (flstack-nfs: root with DAC_READ_SEARCH and SYS_RESOURCE), the EKS add-ons in kube-system (the NVIDIA device
# plugin mounts host paths), the Kubeflow operators (kubeflow-system, kubeflow: not every chart pod sets all of
# `restricted`, so flstack enforces `baseline` there). Their children are only seen by a real preview.
EXEMPT_NAMESPACES = string_list(
    ["flstack-nfs", "kube-system", "kubeflow-system", "kubeflow"],
    "Namespaces this rule does not apply to (by default those of the upstream charts flstack installs)",
)
# `restricted` only: FLTK's namespace `test` enforces `baseline`, because FLTK's orchestrator creates
# PyTorchJobs whose pods set no securityContext; flstack's own pods there still meet every pod rule.
RESTRICTED_EXEMPT_NAMESPACES = string_list(
    [*EXEMPT_NAMESPACES["default"], "test"],
    "Namespaces that need not enforce `restricted` (upstream charts' and FLTK's `test`)",
)
