"""ReadWriteMany on GKE: Filestore instances on flstack's own VPC, through GKE's Filestore CSI driver.

GKE's built-in classes (standard-rwx, ...) create instances on the `default` network, which an flstack
cluster does not use; this class names the cluster's network instead.
"""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import kube

from .classes import storage_class

CLASS = "shared-filestore"
PROVISIONER = "filestore.csi.storage.gke.io"
TIER = "standard"  # BASIC_HDD
MINIMUM_SIZE = "1Ti"  # the smallest BASIC_HDD instance; a smaller claim is rounded up (and billed) to it


class Filestore(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        provider: k8s.Provider,
        network: pulumi.Input[str],
        kms_key: str | None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:storage:Filestore", name, None, opts)
        parameters: dict[str, pulumi.Input[str]] = {"tier": TIER, "network": network, "connect-mode": "DIRECT_PEERING"}
        if kms_key:
            parameters["instance-encryption-kms-key"] = kms_key
        # One instance per claim; Retain: the shared data outlives its claim and a `pulumi destroy`.
        shared_class = kube.apply(
            storage_class(CLASS, PROVISIONER, parameters, "Retain", "WaitForFirstConsumer"),
            pulumi.ResourceOptions(parent=self, provider=provider),
        )
        kube.storage_ready(provider, CLASS, shared_class)
        self.class_name = CLASS
        self.register_outputs({"storageClass": CLASS, "tier": TIER, "minimumSize": MINIMUM_SIZE})
