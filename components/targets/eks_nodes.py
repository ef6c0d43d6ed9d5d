"""EKS managed node groups: one launch template each (IMDSv2, encrypted gp3 root volume) and its scaling."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Literal

import pulumi
import pulumi_aws as aws

from components.config.model import DNS_LABEL, DNS_LABEL_HELP
from components.config.schema import rule

from .taints import TAINT, TAINT_HELP, is_tainted, parse_taint

GROUP_LABEL = "flstack.dev/node-group"  # stable even though EKS names the group with a random suffix
INSTANCE_TYPE = r"[a-z][a-z0-9-]*\.[0-9a-z]+"


def architecture(instance_type: str) -> str:
    """Graviton families carry a `g` right after the generation digit (m7g, c6gd, g5g)."""
    return "arm64" if re.match(r"[a-z]+[0-9]+g", family(instance_type)) else "x86_64"


# GPU families whose GPUs are not NVIDIA's: the NVIDIA AMI and device plugin cannot drive them.
NON_NVIDIA_GPU_FAMILIES = frozenset({"g4ad"})  # AMD Radeon Pro V520


def family(instance_type: str) -> str:
    return instance_type.split(".")[0]


def is_gpu(instance_type: str) -> bool:
    """NVIDIA GPU families: g4dn, g5, g5g, g6, g6e, gr6, p4d, p5, ... (every g/p family but AMD's g4ad)."""
    return instance_type.startswith(("g", "p")) and family(instance_type) not in NON_NVIDIA_GPU_FAMILIES


@dataclass(frozen=True)
class NodeGroupSettings:
    name: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    instance_types: list[str] = rule(
        default_factory=lambda: ["m6i.large"],
        pattern=INSTANCE_TYPE,
        pattern_help="an EC2 instance type such as m6i.large",
    )
    capacity_type: Literal["ON_DEMAND", "SPOT"] = "ON_DEMAND"
    min_size: int = rule(1, min=0, max=1000)
    max_size: int = rule(3, min=1, max=1000)
    desired_size: int = rule(2, min=0, max=1000)
    disk_size: int = rule(50, min=20, max=16384)  # GiB, root volume (images and emptyDirs live here)
    labels: dict[str, str] = field(default_factory=dict)
    taints: list[str] = rule(default_factory=list, pattern=TAINT, pattern_help=TAINT_HELP)
    # The NVIDIA AMI (drivers, container toolkit) and the NVIDIA device plugin, which advertises nvidia.com/gpu.
    gpu: bool = False

    def check(self) -> Iterator[tuple[str, str]]:
        if self.min_size > self.desired_size or self.desired_size > self.max_size:
            yield (
                "minSize",
                f"need minSize <= desiredSize <= maxSize, got "
                f"{self.min_size} <= {self.desired_size} <= {self.max_size}",
            )
        types = [t for t in self.instance_types or [] if t is not None]  # bad items are reported already
        if self.instance_types == []:
            yield "instanceTypes", "list at least one instance type"
        if len({architecture(t) for t in types}) > 1:
            yield "instanceTypes", f"mixes x86_64 and arm64 (Graviton) types {types}: one AMI serves a group"
        amd = [t for t in types if family(t) in NON_NVIDIA_GPU_FAMILIES]
        if self.gpu and amd:
            yield "instanceTypes", f"gpu is true but {amd} carry AMD GPUs: the NVIDIA AMI and device plugin need NVIDIA"
        elif self.gpu and not all(is_gpu(t) for t in types):
            yield "instanceTypes", f"gpu is true but {[t for t in types if not is_gpu(t)]} have no NVIDIA GPU"
        if GROUP_LABEL in (self.labels or {}):
            yield f"labels.{GROUP_LABEL}", "set by flstack to the group name"

    @property
    def ami_type(self) -> str:
        arch = architecture(self.instance_types[0]) if self.instance_types else "x86_64"
        prefix = "AL2023_ARM_64" if arch == "arm64" else "AL2023_x86_64"
        return f"{prefix}_NVIDIA" if self.gpu else f"{prefix}_STANDARD"

    @property
    def tainted(self) -> bool:
        return is_tainted(self.taints)


def taint(text: str) -> aws.eks.NodeGroupTaintArgs:
    """`fltk.node=normal:NoSchedule` -> the EKS API's {key, value, effect: NO_SCHEDULE}."""
    key, value, effect = parse_taint(text)
    return aws.eks.NodeGroupTaintArgs(key=key, value=value, effect=effect)


def launch_template(
    name: str, cluster_name: str, group: NodeGroupSettings, hop_limit: int, opts: pulumi.ResourceOptions
) -> aws.ec2.LaunchTemplate:
    return aws.ec2.LaunchTemplate(
        name,
        description=f"flstack {cluster_name} node group {group.name}",
        metadata_options={
            "http_endpoint": "enabled",
            "http_tokens": "required",  # IMDSv2 only: no credential theft through SSRF with plain GETs
            # 1: the token's response cannot cross the extra network hop into a pod, so pods cannot
            # borrow the node role; they get AWS access only through IRSA. (2 would let every pod in.)
            "http_put_response_hop_limit": hop_limit,
            "instance_metadata_tags": "disabled",
        },
        block_device_mappings=[
            {
                "device_name": "/dev/xvda",  # the AL2023 root volume
                "ebs": {
                    "volume_size": group.disk_size,
                    "volume_type": "gp3",
                    "encrypted": "true",
                    "delete_on_termination": "true",
                },
            }
        ],
        tag_specifications=[{"resource_type": "instance", "tags": {"Name": f"{cluster_name}-{group.name}"}}],
        update_default_version=True,
        opts=opts,
    )


def node_group(
    name: str,
    cluster: aws.eks.Cluster,
    kubernetes_version: pulumi.Input[str],
    group: NodeGroupSettings,
    role_arn: pulumi.Input[str],
    subnet_ids: Sequence[pulumi.Input[str]],
    template: aws.ec2.LaunchTemplate,
    opts: pulumi.ResourceOptions,
) -> aws.eks.NodeGroup:
    # No node_group_name: Pulumi's auto-name lets a replacement (new instance types) start before the
    # old group goes. Select groups by the GROUP_LABEL label instead.
    return aws.eks.NodeGroup(
        name,
        cluster_name=cluster.name,
        node_role_arn=role_arn,
        subnet_ids=list(subnet_ids),
        instance_types=group.instance_types,
        capacity_type=group.capacity_type,
        ami_type=group.ami_type,
        # The cluster's version: bumping kubernetesVersion rolls the nodes after the control plane.
        version=kubernetes_version,
        scaling_config=aws.eks.NodeGroupScalingConfigArgs(
            min_size=group.min_size, max_size=group.max_size, desired_size=group.desired_size
        ),
        update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        labels={**group.labels, GROUP_LABEL: group.name},
        taints=[taint(t) for t in group.taints],
        launch_template=aws.eks.NodeGroupLaunchTemplateArgs(id=template.id, version=template.latest_version.apply(str)),
        # desiredSize is where a group starts; afterwards the autoscaler (or a person) owns it, and the
        # next `up` must not undo that.
        opts=pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(ignore_changes=["scalingConfig.desiredSize"])),
    )
