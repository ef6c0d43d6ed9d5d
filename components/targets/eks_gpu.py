"""The NVIDIA device plugin on EKS GPU node groups: without it no node advertises `nvidia.com/gpu`.

The AL2023 NVIDIA AMI ships the driver and the container toolkit but not the plugin, so GPU pods would
stay Pending. The plugin runs only on flstack's GPU groups and tolerates exactly their taints.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import kube

from .eks_nodes import GROUP_LABEL, NodeGroupSettings
from .taints import TAINT

CHART = "nvidia-device-plugin"
CHART_VERSION = "0.19.1"
REPOSITORY = "https://nvidia.github.io/k8s-device-plugin"
NAMESPACE = "kube-system"  # the plugin needs host paths and privileges no flstack namespace allows


def toleration(taint: str) -> dict[str, str]:
    """`nvidia.com/gpu=true:NoSchedule` -> the toleration that matches exactly that taint."""
    match = re.fullmatch(TAINT, taint)
    assert match, taint  # validated in the config
    key, value, effect = match.group(1), match.group(3), match.group(4)
    if value is None:
        return {"key": key, "operator": "Exists", "effect": effect}
    return {"key": key, "operator": "Equal", "value": value, "effect": effect}


def chart_values(groups: Sequence[NodeGroupSettings]) -> dict[str, Any]:
    gpu_groups = [g for g in groups if g.gpu]
    tolerations = list({repr(t): t for g in gpu_groups for t in map(toleration, g.taints)}.values())
    return {
        # The chart's default affinity wants labels from Node Feature Discovery, which EKS nodes lack:
        # select flstack's GPU groups by their group label instead.
        "affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {
                    "nodeSelectorTerms": [
                        {
                            "matchExpressions": [
                                {"key": GROUP_LABEL, "operator": "In", "values": sorted(g.name for g in gpu_groups)}
                            ]
                        }
                    ]
                }
            }
        },
        "tolerations": sorted(tolerations, key=lambda t: (t["key"], t.get("value", ""), t["effect"])),
        "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "128Mi"}},
    }


def device_plugin(
    name: str, groups: Sequence[NodeGroupSettings], opts: pulumi.ResourceOptions
) -> k8s.helm.v4.Chart | None:
    """The pinned chart, or None when no group has GPUs (nothing to advertise)."""
    if not any(g.gpu for g in groups):
        return None
    return kube.chart(name, CHART, CHART_VERSION, REPOSITORY, NAMESPACE, chart_values(groups), opts)
