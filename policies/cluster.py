"""Rules for the objects around the pods: RBAC, namespaces, Services, ConfigMaps, and the namespaces' defaults."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.base import (
    EXEMPT_NAMESPACES,
    RESTRICTED_EXEMPT_NAMESPACES,
    Config,
    Props,
    Resource,
    Rule,
    StackRule,
    flag,
    is_open,
    kind_of,
    name_of,
    string_list,
)
from policies.pods import pod_spec

ROLE_KINDS = {"Role", "ClusterRole"}
BINDING_KINDS = {"RoleBinding", "ClusterRoleBinding"}
READ_VERBS = {"get", "list", "watch", "*"}


def _rules(resource_type: str, props: Props) -> list[dict[str, Any]]:
    if kind_of(resource_type) not in ROLE_KINDS:
        return []
    return list(props.get("rules") or [])


def rbac_no_wildcards(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Roles name their verbs and resources: no `*` (a wildcard grants what later API versions add, too)."""
    for i, rule in enumerate(_rules(resource_type, props)):
        for key in ("verbs", "resources"):
            if "*" in (rule.get(key) or []):
                yield f"{name_of(props)}: rules[{i}].{key} contains '*'"


def rbac_no_secret_reads(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Roles do not get, list or watch Secrets (a reader gets every key in its scope) unless configured."""
    if name_of(props) in (config.get("allowedRoles") or []):
        return
    for i, rule in enumerate(_rules(resource_type, props)):
        on_secrets = {"secrets", "*"} & set(rule.get("resources") or [])
        reads = sorted(READ_VERBS & set(rule.get("verbs") or []))
        if on_secrets and reads:
            yield f"{name_of(props)}: rules[{i}] lets it {'/'.join(reads)} Secrets"


def rbac_no_cluster_admin(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Nothing is bound to cluster-admin."""
    if kind_of(resource_type) in BINDING_KINDS and (props.get("roleRef") or {}).get("name") == "cluster-admin":
        yield f"{name_of(props)}: binds cluster-admin"


def namespace_pod_security(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Namespaces enforce the `restricted` Pod Security Standard (configurable exemptions)."""
    if kind_of(resource_type) != "Namespace":
        return
    meta = props.get("metadata") or {}
    if meta.get("name") in config.get("exemptNamespaces", []):
        return
    level = (meta.get("labels") or {}).get("pod-security.kubernetes.io/enforce")
    if level != "restricted":
        yield f"{meta.get('name')}: label pod-security.kubernetes.io/enforce must be 'restricted' (got {level!r})"


def restricted_load_balancers(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """LoadBalancer Services list who may connect (loadBalancerSourceRanges), never 0.0.0.0/0 or ::/0."""
    spec = props.get("spec") or {}
    if kind_of(resource_type) != "Service" or spec.get("type") != "LoadBalancer":
        return
    ranges = spec.get("loadBalancerSourceRanges") or []
    if not ranges:
        yield f"{name_of(props)}: LoadBalancer Service needs spec.loadBalancerSourceRanges"
    if not config.get("allowInternet"):
        for cidr in ranges:
            if is_open(cidr):
                yield f"{name_of(props)}: loadBalancerSourceRanges {cidr!r} admits the whole internet"


def no_keys_in_config_maps(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Private keys belong in Secrets (encrypted in state and at rest), never in ConfigMaps."""
    if kind_of(resource_type) != "ConfigMap":
        return
    for key, value in (props.get("data") or {}).items():
        if "PRIVATE KEY" in str(value):
            yield f"{name_of(props)}: data.{key} holds a private key; use a Secret"


def _is_default_deny(props: Props) -> bool:
    spec = props.get("spec") or {}
    selects_all = not (spec.get("podSelector") or {}).get("matchLabels") and not (spec.get("podSelector") or {}).get(
        "matchExpressions"
    )
    both_ways = {"Ingress", "Egress"} <= set(spec.get("policyTypes") or [])
    return selects_all and both_ways and not spec.get("ingress") and not spec.get("egress")


def namespaces_default_deny(resources: list[Resource], config: Config) -> Iterator[str]:
    """Every namespace with workloads has a default-deny ingress AND egress NetworkPolicy."""
    with_workloads = {
        (props.get("metadata") or {}).get("namespace") or "default"
        for resource_type, props in resources
        if pod_spec(resource_type, props) is not None
    }
    denied = {
        (props.get("metadata") or {}).get("namespace")
        for resource_type, props in resources
        if kind_of(resource_type) == "NetworkPolicy" and _is_default_deny(props)
    }
    for ns in sorted(with_workloads - denied - set(config.get("exemptNamespaces", []))):
        yield f"namespace {ns}: runs workloads without a default-deny (podSelector {{}}, Ingress and Egress) policy"


RULES = [
    Rule("flstack-rbac-no-wildcards", rbac_no_wildcards, "high"),
    Rule(
        "flstack-rbac-no-secret-reads",
        rbac_no_secret_reads,
        "high",
        config={
            "allowedRoles": string_list([], "Roles (namespace/name, or name for ClusterRoles) that may read Secrets")
        },
    ),
    Rule("flstack-rbac-no-cluster-admin", rbac_no_cluster_admin, "critical"),
    Rule(
        "flstack-namespaces-restricted",
        namespace_pod_security,
        "high",
        config={"exemptNamespaces": RESTRICTED_EXEMPT_NAMESPACES},
    ),
    Rule(
        "flstack-restricted-load-balancers",
        restricted_load_balancers,
        "critical",
        config={"allowInternet": flag("Accept 0.0.0.0/0 or ::/0 source ranges (the stack's exposure.allowInternet)")},
    ),
    Rule("flstack-no-keys-in-config-maps", no_keys_in_config_maps, "critical"),
]
STACK_RULES = [
    StackRule(
        "flstack-namespaces-default-deny",
        namespaces_default_deny,
        "high",
        config={"exemptNamespaces": EXEMPT_NAMESPACES},
    ),
]
