"""EBS on EKS: the aws-ebs-csi-driver add-on with its IRSA role, and encrypted gp3 classes."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pulumi

from components import kube

from .classes import storage_class
from .csi_addon import csi_driver

if TYPE_CHECKING:  # the eks target builds this: no import back at run time
    from components.targets.eks import EksCluster

DEFAULT_CLASS = "gp3"  # the cluster default: scratch volumes, deleted with their claim
RETAIN_CLASS = "gp3-retain"  # federation state: the volume outlives its claim (and a `pulumi destroy`)
SERVICE_ACCOUNT = "ebs-csi-controller-sa"

GP3_PARAMETERS = {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}


class EbsCsi(pulumi.ComponentResource):
    def __init__(self, name: str, cluster: EksCluster, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:storage:EbsCsi", name, None, opts)
        aws_opts = pulumi.ResourceOptions(parent=self, provider=cluster.aws_provider)
        self.role, self.addon = csi_driver(
            name, cluster, "aws-ebs-csi-driver", [SERVICE_ACCOUNT], "service-role/AmazonEBSCSIDriverPolicy", aws_opts
        )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=cluster.provider)
        # WaitForFirstConsumer: an EBS volume lives in one zone, so create it where the pod lands.
        default = kube.apply(
            storage_class(
                DEFAULT_CLASS, "ebs.csi.aws.com", dict(GP3_PARAMETERS), "Delete", "WaitForFirstConsumer", default=True
            ),
            k8s_opts,
        )
        retain = kube.apply(
            storage_class(RETAIN_CLASS, "ebs.csi.aws.com", dict(GP3_PARAMETERS), "Retain", "WaitForFirstConsumer"),
            k8s_opts,
        )
        kube.storage_ready(cluster.provider, DEFAULT_CLASS, default, self.addon)
        kube.storage_ready(cluster.provider, RETAIN_CLASS, retain, self.addon)
        self.default_class = DEFAULT_CLASS
        self.retain_class = RETAIN_CLASS
        self.register_outputs({"roleArn": self.role.arn, "defaultClass": DEFAULT_CLASS, "retainClass": RETAIN_CLASS})
