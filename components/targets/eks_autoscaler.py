"""Cluster Autoscaler for EKS managed node groups: IRSA role, node-template tags, the pinned chart.

Managed node groups tag their Auto Scaling groups `k8s.io/cluster-autoscaler/enabled` and
`k8s.io/cluster-autoscaler/<cluster>`; the autoscaler discovers them by those tags and may only resize
groups that carry both. A group at 0 nodes has no node to copy labels and taints from, so each group's
labels and taints are also put on its Auto Scaling group as node-template tags (scale from zero).
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components import iam, kube

from .eks_nodes import GROUP_LABEL, NodeGroupSettings
from .taints import TAINT

CHART = "cluster-autoscaler"
CHART_VERSION = "9.59.0"  # appVersion 1.35.0
REPOSITORY = "https://kubernetes.github.io/autoscaler"
NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"
TEMPLATE_LABEL = "k8s.io/cluster-autoscaler/node-template/label/"
TEMPLATE_TAINT = "k8s.io/cluster-autoscaler/node-template/taint/"


def policy(cluster_name: str) -> str:
    """The autoscaler's rights: read everything it plans with; resize only this cluster's tagged groups."""
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Action": [
                        "autoscaling:DescribeAutoScalingGroups",
                        "autoscaling:DescribeAutoScalingInstances",
                        "autoscaling:DescribeLaunchConfigurations",
                        "autoscaling:DescribeScalingActivities",
                        "autoscaling:DescribeTags",
                        "ec2:DescribeImages",
                        "ec2:DescribeInstanceTypes",
                        "ec2:DescribeLaunchTemplateVersions",
                        "ec2:GetInstanceTypesFromInstanceRequirements",
                        "eks:DescribeNodegroup",
                    ],
                    "Resource": "*",
                },
                {
                    "Effect": "Allow",
                    "Action": ["autoscaling:SetDesiredCapacity", "autoscaling:TerminateInstanceInAutoScalingGroup"],
                    "Resource": "*",
                    "Condition": {
                        "StringEquals": {
                            "aws:ResourceTag/k8s.io/cluster-autoscaler/enabled": "true",
                            f"aws:ResourceTag/k8s.io/cluster-autoscaler/{cluster_name}": "owned",
                        }
                    },
                },
            ],
        },
        sort_keys=True,
    )


def template_tags(group: NodeGroupSettings) -> dict[str, str]:
    """The node-template tags that describe a group's nodes before any exists."""
    tags = {f"{TEMPLATE_LABEL}{k}": v for k, v in {**group.labels, GROUP_LABEL: group.name}.items()}
    for text in group.taints:
        match = re.fullmatch(TAINT, text)
        assert match, text  # validated in the config
        tags[f"{TEMPLATE_TAINT}{match.group(1)}"] = f"{match.group(3) or ''}:{match.group(4)}"
    return dict(sorted(tags.items()))


def chart_values(
    cluster_name: str, region: str, kubernetes_version: str, role_arn: pulumi.Input[str]
) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,  # pods cannot read it from instance metadata (hop limit 1)
        "autoDiscovery": {"clusterName": cluster_name},
        # The autoscaler's minor version must match the cluster's.
        "image": {"tag": f"v{kubernetes_version}.0"},
        "rbac": {
            "serviceAccount": {
                "create": True,
                "name": SERVICE_ACCOUNT,
                "annotations": {"eks.amazonaws.com/role-arn": role_arn},
            }
        },
        "extraArgs": {"balance-similar-node-groups": True, "expander": "least-waste"},
        "resources": {"requests": {"cpu": "100m", "memory": "300Mi"}, "limits": {"memory": "600Mi"}},
        "securityContext": {"runAsNonRoot": True, "runAsUser": 65534, "seccompProfile": {"type": "RuntimeDefault"}},
        "containerSecurityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def autoscaling_group_name(resources: Sequence[aws.eks.outputs.NodeGroupResource]) -> str:
    """The Auto Scaling group EKS made for a managed node group (one per group)."""
    groups = resources[0].autoscaling_groups if resources else None
    if not groups or not groups[0].name:
        raise ValueError("the EKS node group reported no Auto Scaling group")
    return groups[0].name


class ClusterAutoscaler(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        cluster_name: str,
        region: str,
        kubernetes_version: str,
        oidc: aws.iam.OpenIdConnectProvider,
        groups: Sequence[tuple[NodeGroupSettings, aws.eks.NodeGroup]],
        aws_provider: aws.Provider,
        k8s_provider: k8s.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:targets:EksClusterAutoscaler", name, None, opts)
        aws_opts = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        self.role = aws.iam.Role(
            f"{name}-role",
            assume_role_policy=iam.service_account_trust(oidc, NAMESPACE, [SERVICE_ACCOUNT]),
            description=f"IRSA role for {NAMESPACE}/{SERVICE_ACCOUNT}",
            opts=aws_opts,
        )
        rights = aws.iam.RolePolicy(f"{name}-policy", role=self.role.id, policy=policy(cluster_name), opts=aws_opts)
        for settings, group in groups:
            asg = group.resources.apply(autoscaling_group_name)
            for key, value in template_tags(settings).items():
                aws.autoscaling.Tag(
                    f"{name}-{settings.name}-{re.sub(r'[^A-Za-z0-9-]+', '-', key.rpartition('node-template/')[2])}",
                    autoscaling_group_name=asg,
                    tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                    opts=aws_opts,
                )
        values = chart_values(cluster_name, region, kubernetes_version, self.role.arn)
        chart_opts = pulumi.ResourceOptions(parent=self, provider=k8s_provider, depends_on=[rights])
        self.chart = kube.chart(name, CHART, CHART_VERSION, REPOSITORY, NAMESPACE, values, chart_opts)
        self.register_outputs({"roleArn": self.role.arn, "chartVersion": CHART_VERSION})
