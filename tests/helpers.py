"""Shared test helpers: render in-memory configs and check objects against the Kubernetes schema."""

from __future__ import annotations

import functools
import json
from typing import Any

import kubernetes_validate
import pulumi

from components.federations import kubeflow_checks
from tools import linked, stack_files
from tools import render as render_tool
from tools.stack_files import StackFiles


def files(config: dict[str, Any], secret_keys: set[str] | None = None, stack: str = "test") -> StackFiles:
    """A StackFiles from `flstack:` values given as Python data (keys without the namespace)."""
    return StackFiles(
        project="flstack",
        stack=stack,
        config={f"flstack:{k}": v if isinstance(v, str) else json.dumps(v) for k, v in config.items()},
        secret_keys=frozenset(secret_keys or ()),
    )


def render(
    config: dict[str, Any], mock: pulumi.runtime.Mocks | None = None, preview: bool = False, **kwargs: Any
) -> render_tool.Rendering:
    return render_tool.render_config(files(config, **kwargs), mock, preview)


# Shipped stacks that other shipped stacks reference (cross-silo), by the name the references use.
LINKED_STACKS = stack_files.PEER_STACKS  # the FATE pair: each stack's name for the other


def render_shipped(stack: str, preview: bool = False) -> render_tool.Rendering:
    """A shipped stack, its references answered by the shipped stacks standing in for them (tools/linked.py)."""
    return linked.render(stack, preview=preview)


@functools.cache
def render_stack(stack: str) -> render_tool.Rendering:
    """Shipped stacks render once per test session."""
    return render_shipped(stack)


MINIKUBE: dict[str, Any] = {"kind": "minikube", "minikube": {"profile": "t", "kubernetesVersion": "1.34.0"}}
# A cluster that allocates LoadBalancer addresses (minikube refuses LoadBalancer exposure).
EXISTING: dict[str, Any] = {"kind": "existing", "existing": {"context": "lab", "kubernetesVersion": "1.34.0"}}
EKS: dict[str, Any] = {
    "kind": "eks",
    "eks": {
        "region": "eu-central-1",
        "name": "t",
        "adminPrincipals": ["arn:aws:iam::111122223333:role/admin"],
        "publicAccessCidrs": ["198.51.100.0/24"],
    },
}


def eks(**settings: Any) -> dict[str, Any]:
    """The EKS target config with some settings changed."""
    return {**EKS, "eks": {**EKS["eks"], **settings}}


GKE: dict[str, Any] = {
    "kind": "gke",
    "gke": {"project": "p-12345", "region": "europe-west4", "authorizedNetworks": ["198.51.100.0/24"]},
}


def gke(**settings: Any) -> dict[str, Any]:
    """The GKE target config with some settings changed."""
    return {**GKE, "gke": {**GKE["gke"], **settings}}


def one(rows: list[dict[str, Any]], type_token: str) -> dict[str, Any]:
    """The single `resources()` row of one type."""
    found = [r for r in rows if r["type"] == type_token]
    assert len(found) == 1, [r["name"] for r in found]
    return found[0]


def by_name(rows: list[dict[str, Any]], type_token: str) -> dict[str, dict[str, Any]]:
    """`resources()` rows of one type, by logical name."""
    return {r["name"]: r for r in rows if r["type"] == type_token}


def schema_errors(obj: dict[str, Any], kubernetes_version: str) -> list[str]:
    """Errors from validating one object against the Kubernetes OpenAPI schema (strict: no unknown fields)."""
    try:
        kubernetes_validate.validate(obj, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as err:
        return [f"{obj['kind']} {obj['metadata'].get('name')}: {err.message} at {list(err.path)}"]
    except kubernetes_validate.SchemaNotFoundError as err:
        # Custom resources: their own models (and webhook rules) plus every pod template they embed.
        problems = kubeflow_checks.custom_resource_problems(obj)
        if problems is None:
            return [f"{obj['kind']} {obj['metadata'].get('name')}: no schema ({err})"]
        return problems
    return []
