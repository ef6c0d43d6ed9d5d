"""Validators of the flstack policy pack. Importable and unit-testable: `__main__.py` only assembles them.

Each takes the resource's type and Kubernetes object (the resource inputs) and yields violation messages.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

WORKLOADS = {
    "kubernetes:apps/v1:Deployment",
    "kubernetes:apps/v1:StatefulSet",
    "kubernetes:apps/v1:DaemonSet",
    "kubernetes:batch/v1:Job",
}


def _pod_spec(obj: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = obj.get("spec", {}).get("template", {}).get("spec", {})
    return spec


def _containers(pod: dict[str, Any]) -> list[dict[str, Any]]:
    return [*pod.get("initContainers", []), *pod.get("containers", [])]


def non_root_pods(resource_type: str, obj: dict[str, Any]) -> Iterator[str]:
    """Pods run as non-root, without privilege escalation and with every capability dropped."""
    if resource_type not in WORKLOADS:
        return
    pod = _pod_spec(obj)
    name = obj.get("metadata", {}).get("name")
    if not pod.get("securityContext", {}).get("runAsNonRoot"):
        yield f"{name}: pod securityContext.runAsNonRoot must be true"
    for c in _containers(pod):
        sc = c.get("securityContext", {})
        if sc.get("allowPrivilegeEscalation") is not False:
            yield f"{name}/{c.get('name')}: securityContext.allowPrivilegeEscalation must be false"
        if "ALL" not in sc.get("capabilities", {}).get("drop", []):
            yield f"{name}/{c.get('name')}: securityContext.capabilities.drop must include ALL"


def pinned_images(resource_type: str, obj: dict[str, Any]) -> Iterator[str]:
    """Images name a version (tag or digest), never `latest`: a rebuild must deploy the same software."""
    if resource_type not in WORKLOADS:
        return
    for c in _containers(_pod_spec(obj)):
        image = str(c.get("image", ""))
        last = image.rsplit("/", 1)[-1]
        if "@sha256:" in image:
            continue
        if ":" not in last or last.endswith(":latest"):
            yield f"{obj['metadata']['name']}/{c.get('name')}: image {image!r} must be pinned to a version"


def restricted_load_balancers(resource_type: str, obj: dict[str, Any]) -> Iterator[str]:
    """A LoadBalancer Service lists who may connect (loadBalancerSourceRanges)."""
    spec = obj.get("spec", {})
    is_load_balancer = resource_type == "kubernetes:core/v1:Service" and spec.get("type") == "LoadBalancer"
    if is_load_balancer and not spec.get("loadBalancerSourceRanges"):
        yield f"{obj['metadata']['name']}: LoadBalancer Service needs spec.loadBalancerSourceRanges"


def no_keys_in_config_maps(resource_type: str, obj: dict[str, Any]) -> Iterator[str]:
    """Private keys belong in Secrets (encrypted in state and at rest), never in ConfigMaps."""
    if resource_type != "kubernetes:core/v1:ConfigMap":
        return
    for key, value in (obj.get("data") or {}).items():
        if "PRIVATE KEY" in str(value):
            yield f"{obj['metadata']['name']}: data.{key} holds a private key; use a Secret"


RULES = {
    "flstack-non-root-pods": non_root_pods,
    "flstack-pinned-images": pinned_images,
    "flstack-restricted-load-balancers": restricted_load_balancers,
    "flstack-no-keys-in-config-maps": no_keys_in_config_maps,
}
