"""EBS on EKS: the aws-ebs-csi-driver add-on with its IRSA role, and encrypted gp3 classes."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

from components import iam, kube
from components.targets.eks import EksCluster

from .classes import storage_class

DEFAULT_CLASS = "gp3"  # the cluster default: scratch volumes, deleted with their claim
RETAIN_CLASS = "gp3-retain"  # federation state: the volume outlives its claim (and a `pulumi destroy`)
SERVICE_ACCOUNT = "ebs-csi-controller-sa"

GP3_PARAMETERS = {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}


class EbsCsi(pulumi.ComponentResource):
    def __init__(self, name: str, cluster: EksCluster, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:storage:EbsCsi", name, None, opts)
        aws_opts = pulumi.ResourceOptions(parent=self, provider=cluster.aws_provider)
        self.role, attachment = iam.service_account_role(
            f"{name}-controller",
            cluster.oidc_provider,
            "kube-system",
            SERVICE_ACCOUNT,
            cluster.managed_policy("service-role/AmazonEBSCSIDriverPolicy"),
            aws_opts,
        )
        self.addon = aws.eks.Addon(
            f"{name}-driver",
            cluster_name=cluster.cluster.name,
            addon_name="aws-ebs-csi-driver",
            service_account_role_arn=self.role.arn,
            resolve_conflicts_on_create="OVERWRITE",
            resolve_conflicts_on_update="OVERWRITE",
            # The add-on turns ACTIVE only once its controller runs: it needs nodes and its policy.
            opts=pulumi.ResourceOptions.merge(
                aws_opts, pulumi.ResourceOptions(depends_on=[attachment, *cluster.node_groups])
            ),
        )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        # WaitForFirstConsumer: an EBS volume lives in one zone, so create it where the pod lands.
        kube.apply(
            storage_class(
                DEFAULT_CLASS, "ebs.csi.aws.com", dict(GP3_PARAMETERS), "Delete", "WaitForFirstConsumer", default=True
            ),
            k8s_opts,
        )
        kube.apply(
            storage_class(RETAIN_CLASS, "ebs.csi.aws.com", dict(GP3_PARAMETERS), "Retain", "WaitForFirstConsumer"),
            k8s_opts,
        )
        self.default_class = DEFAULT_CLASS
        self.retain_class = RETAIN_CLASS
        self.register_outputs({"roleArn": self.role.arn, "defaultClass": DEFAULT_CLASS, "retainClass": RETAIN_CLASS})
