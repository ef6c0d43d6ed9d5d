"""GPU node groups on EKS (rendered inputs only): the NVIDIA device plugin, only where GPUs are."""

from __future__ import annotations

from typing import Any

from tests.helpers import by_name, eks, render, render_stack

GENERAL = {"name": "general"}


def charts(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return by_name(rows, "kubernetes:helm.sh/v4:Chart")


def test_a_gpu_group_gets_the_pinned_device_plugin_tolerating_its_taint_only() -> None:
    plugin = charts(render_stack("eks-flower").resources())["cluster-nvidia-device-plugin"]
    assert plugin["provider"] == "pulumi:providers:kubernetes::cluster-k8s"
    inputs = plugin["inputs"]
    assert (inputs["chart"], inputs["version"]) == ("nvidia-device-plugin", "0.19.1")
    assert inputs["repositoryOpts"] == {"repo": "https://nvidia.github.io/k8s-device-plugin"}
    assert inputs["namespace"] == "kube-system"
    values = inputs["values"]
    # The stack's gpu group is tainted nvidia.com/gpu=true:NoSchedule; the `fl` group's taint is not tolerated.
    assert values["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Equal", "value": "true", "effect": "NoSchedule"}
    ]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term == {"matchExpressions": [{"key": "flstack.dev/node-group", "operator": "In", "values": ["gpu"]}]}
    assert values["resources"]["requests"] and values["resources"]["limits"]["memory"]


def test_no_gpu_group_no_device_plugin() -> None:
    rows = render({"target": eks(nodeGroups=[GENERAL])}).resources()
    assert "cluster-nvidia-device-plugin" not in charts(rows)


def test_every_gpu_groups_taints_are_tolerated() -> None:
    groups = [
        GENERAL,
        {"name": "t4", "gpu": True, "instanceTypes": ["g4dn.xlarge"], "taints": ["nvidia.com/gpu:NoSchedule"]},
        {"name": "a10", "gpu": True, "instanceTypes": ["g5.2xlarge"], "taints": ["team=ml:NoExecute"]},
        {"name": "arm", "gpu": True, "instanceTypes": ["g5g.xlarge"]},
    ]
    rows = render({"target": eks(nodeGroups=groups)}).resources()
    values = charts(rows)["cluster-nvidia-device-plugin"]["inputs"]["values"]
    assert values["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "team", "operator": "Equal", "value": "ml", "effect": "NoExecute"},
    ]
    (term,) = values["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    assert term["matchExpressions"][0]["values"] == ["a10", "arm", "t4"]
    amis = {name: g["inputs"]["amiType"] for name, g in by_name(rows, "aws:eks/nodeGroup:NodeGroup").items()}
    assert amis == {
        "cluster-general": "AL2023_x86_64_STANDARD",
        "cluster-t4": "AL2023_x86_64_NVIDIA",
        "cluster-a10": "AL2023_x86_64_NVIDIA",
        "cluster-arm": "AL2023_ARM_64_NVIDIA",
    }
