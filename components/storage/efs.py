"""ReadWriteMany on EKS: an encrypted EFS file system, a mount target per private subnet, and the EFS CSI driver."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components import kube

from .classes import storage_class
from .csi_addon import csi_driver

if TYPE_CHECKING:  # the eks target builds this: no import back at run time
    from components.targets.eks import EksCluster

CLASS = "shared-efs"
# The controller creates access points; the node plugin mounts them and, with IAM-authorised mounts,
# needs the same role (the add-on's trust policy covers both).
SERVICE_ACCOUNTS = ["efs-csi-controller-sa", "efs-csi-node-sa"]
NFS_PORT = 2049


class Efs(pulumi.ComponentResource):
    def __init__(self, name: str, cluster: EksCluster, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:storage:Efs", name, None, opts)
        network = cluster.network
        aws_opts = pulumi.ResourceOptions(parent=self, provider=cluster.aws_provider)
        mounts_sg = aws.ec2.SecurityGroup(
            f"{name}-mounts",
            vpc_id=network.vpc.id,
            description=f"NFS to the {cluster.settings.name} EFS mount targets from inside the VPC",
            opts=aws_opts,
        )
        aws.vpc.SecurityGroupIngressRule(
            f"{name}-nfs",
            security_group_id=mounts_sg.id,
            cidr_ipv4=network.cidr,
            ip_protocol="tcp",
            from_port=NFS_PORT,
            to_port=NFS_PORT,
            description="NFS from nodes and pods (VPC CNI pod addresses are VPC addresses)",
            opts=aws_opts,
        )
        # The shared data itself: kept when the stack goes, and `pulumi destroy` refuses until unprotected.
        self.file_system = aws.efs.FileSystem(
            f"{name}-fs",
            encrypted=True,
            performance_mode="generalPurpose",
            throughput_mode="elastic",
            tags={"Name": f"{cluster.settings.name}-shared"},
            opts=pulumi.ResourceOptions.merge(aws_opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True)),
        )
        mounts = [
            aws.efs.MountTarget(
                f"{name}-mount-{i}",
                file_system_id=self.file_system.id,
                subnet_id=subnet.id,
                security_groups=[mounts_sg.id],
                opts=aws_opts,
            )
            for i, subnet in enumerate(network.private_subnets)
        ]
        self.role, self.addon = csi_driver(
            name,
            cluster,
            "aws-efs-csi-driver",
            SERVICE_ACCOUNTS,
            "service-role/AmazonEFSCSIDriverPolicy",
            aws_opts,
            wait_for=mounts,
        )
        # efs-ap: one access point (own directory, own POSIX owner) per volume, all in one file system.
        parameters: dict[str, pulumi.Input[str]] = {
            "provisioningMode": "efs-ap",
            "fileSystemId": self.file_system.id,
            "directoryPerms": "700",
            "basePath": "/flstack",
        }
        shared_class = kube.apply(
            # EFS is elastic and the driver does not implement expansion: no allowVolumeExpansion.
            storage_class(CLASS, "efs.csi.aws.com", parameters, "Retain", "Immediate", expandable=False),
            pulumi.ResourceOptions(parent=self, provider=cluster.provider),
        )
        kube.storage_ready(cluster.provider, CLASS, shared_class, self.addon)
        self.class_name = CLASS
        self.register_outputs({"fileSystemId": self.file_system.id, "roleArn": self.role.arn, "storageClass": CLASS})
