"""Scaling on EKS (rendered inputs only): desiredSize left to the autoscaler, Cluster Autoscaler with IRSA."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.helpers import by_name, eks, render, render_stack
from tools.mock_runtime import MOCK_ACCOUNT


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack("eks-flower").resources()


def test_an_up_never_resets_a_groups_current_size(rows: list[dict[str, Any]]) -> None:
    groups = by_name(rows, "aws:eks/nodeGroup:NodeGroup")
    assert len(groups) == 3
    assert all(g["options"]["ignoreChanges"] == ["scalingConfig.desiredSize"] for g in groups.values())


def test_autoscaler_role_is_trusted_by_its_service_account_only_and_resizes_only_this_cluster(
    rows: list[dict[str, Any]],
) -> None:
    role = by_name(rows, "aws:iam/role:Role")["cluster-autoscaler-role"]
    (trust,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    host = "oidc.eks.mock/id/flstack"
    assert trust["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert trust["Condition"] == {
        "StringEquals": {
            f"{host}:aud": "sts.amazonaws.com",
            f"{host}:sub": "system:serviceaccount:kube-system:cluster-autoscaler",
        }
    }
    policy = json.loads(by_name(rows, "aws:iam/rolePolicy:RolePolicy")["cluster-autoscaler-policy"]["inputs"]["policy"])
    read, resize = policy["Statement"]
    assert "eks:DescribeNodegroup" in read["Action"] and "autoscaling:SetDesiredCapacity" not in read["Action"]
    assert resize["Action"] == ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"]
    assert resize["Condition"] == {
        "StringEquals": {
            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
            "aws:ResourceTag/k8s.io/cluster-autoscaler/flstack": "owned",
        }
    }


def test_autoscaler_chart_is_pinned_discovers_this_cluster_and_uses_the_role(rows: list[dict[str, Any]]) -> None:
    chart = by_name(rows, "kubernetes:helm.sh/v4:Chart")["cluster-autoscaler"]
    inputs = chart["inputs"]
    assert (inputs["chart"], inputs["version"]) == ("cluster-autoscaler", "9.59.0")
    assert inputs["repositoryOpts"] == {"repo": "https://kubernetes.github.io/autoscaler"}
    values = inputs["values"]
    assert values["autoDiscovery"] == {"clusterName": "flstack"}
    assert values["awsRegion"] == "eu-west-1" and values["cloudProvider"] == "aws"
    assert values["image"] == {"tag": "v1.35.0"}  # the autoscaler's minor follows the cluster's
    account = values["rbac"]["serviceAccount"]
    assert account["name"] == "cluster-autoscaler"
    assert account["annotations"] == {
        "eks.amazonaws.com/role-arn": f"arn:aws:iam::{MOCK_ACCOUNT}:role/cluster-autoscaler-role"
    }
    assert values["resources"]["requests"] and values["resources"]["limits"]["memory"]
    assert "aws:iam/rolePolicy:RolePolicy::cluster-autoscaler-policy" in chart["options"]["dependsOn"]


def test_groups_starting_at_zero_describe_their_nodes_in_node_template_tags(rows: list[dict[str, Any]]) -> None:
    tags = {
        (t["inputs"]["autoscalingGroupName"], t["inputs"]["tag"]["key"]): t["inputs"]["tag"]["value"]
        for t in by_name(rows, "aws:autoscaling/tag:Tag").values()
    }
    gpu_asg = "<autoscaling group of cluster-gpu>"  # the mock's stand-in for the group's real ASG name
    prefix = "k8s.io/cluster-autoscaler/node-template/"
    assert tags[(gpu_asg, f"{prefix}taint/nvidia.com/gpu")] == "true:NoSchedule"
    assert tags[(gpu_asg, f"{prefix}label/nvidia.com/gpu.present")] == "true"
    assert tags[(gpu_asg, f"{prefix}label/flstack.dev/node-group")] == "gpu"
    assert tags[("<autoscaling group of cluster-fl>", f"{prefix}taint/fltk.node")] == "normal:NoSchedule"


def test_autoscaler_none_installs_nothing() -> None:
    rows = render({"target": eks(autoscaler="none")}).resources()
    assert "cluster-autoscaler" not in by_name(rows, "kubernetes:helm.sh/v4:Chart")
    assert "cluster-autoscaler-role" not in by_name(rows, "aws:iam/role:Role")
    assert by_name(rows, "aws:autoscaling/tag:Tag") == {}
    # Still, a later `up` leaves a manually scaled group alone.
    (group,) = by_name(rows, "aws:eks/nodeGroup:NodeGroup").values()
    assert group["options"]["ignoreChanges"] == ["scalingConfig.desiredSize"]
