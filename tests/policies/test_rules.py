"""The policy pack's rules: shipped stacks comply, and each rule catches what it is for."""

from __future__ import annotations

from typing import Any

import pytest

from policies import rules
from tests.helpers import render_stack
from tools import stack_files


@pytest.mark.parametrize("stack", stack_files.stack_names())
def test_shipped_stacks_comply(stack: str) -> None:
    violations = [
        message
        for row in render_stack(stack).resources()
        for rule in rules.RULES.values()
        for message in rule(row["type"], row["inputs"])
    ]
    assert violations == []


def deployment(container: dict[str, Any], pod_security: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "metadata": {"name": "d"},
        "spec": {"template": {"spec": {"securityContext": pod_security or {}, "containers": [container]}}},
    }


def test_root_and_privileged_pods_are_caught() -> None:
    found = list(rules.non_root_pods("kubernetes:apps/v1:Deployment", deployment({"name": "c", "image": "x:1"})))
    assert found == [
        "d: pod securityContext.runAsNonRoot must be true",
        "d/c: securityContext.allowPrivilegeEscalation must be false",
        "d/c: securityContext.capabilities.drop must include ALL",
    ]


@pytest.mark.parametrize(
    ("image", "ok"),
    [
        ("flwr/superlink:1.41.0", True),
        ("registry:5000/x@sha256:ab", True),
        ("flwr/superlink", False),
        ("registry:5000/flwr/superlink", False),
        ("nvflare/nvflare:latest", False),
    ],
)
def test_unpinned_images_are_caught(image: str, ok: bool) -> None:
    found = list(rules.pinned_images("kubernetes:batch/v1:Job", deployment({"name": "c", "image": image})))
    assert (found == []) is ok


def test_open_load_balancers_and_keys_in_config_maps_are_caught() -> None:
    svc = {"metadata": {"name": "s"}, "spec": {"type": "LoadBalancer"}}
    assert list(rules.restricted_load_balancers("kubernetes:core/v1:Service", svc)) == [
        "s: LoadBalancer Service needs spec.loadBalancerSourceRanges"
    ]
    cm = {"metadata": {"name": "m"}, "data": {"k": "-----BEGIN EC PRIVATE KEY-----"}}
    assert list(rules.no_keys_in_config_maps("kubernetes:core/v1:ConfigMap", cm)) == [
        "m: data.k holds a private key; use a Secret"
    ]
