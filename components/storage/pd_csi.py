"""Persistent Disk on GKE: flstack's retained pd-balanced class for federation state (GKE runs the driver)."""

from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components import kube

from .classes import storage_class

PROVISIONER = "pd.csi.storage.gke.io"
RETAIN_CLASS = "pd-balanced-retain"  # federation state: the disk outlives its claim (and a `pulumi destroy`)


def parameters(kms_key: str | None) -> dict[str, pulumi.Input[str]]:
    params: dict[str, pulumi.Input[str]] = {"type": "pd-balanced", "csi.storage.k8s.io/fstype": "ext4"}
    if kms_key:
        params["disk-encryption-kms-key"] = kms_key  # the Compute Engine service agent may use it (the target grants)
    return params


class PdCsi(pulumi.ComponentResource):
    def __init__(
        self, name: str, provider: k8s.Provider, kms_key: str | None, opts: pulumi.ResourceOptions | None = None
    ) -> None:
        super().__init__("flstack:storage:PdCsi", name, None, opts)
        # WaitForFirstConsumer: a zonal disk is created in the zone the pod lands in. GKE's own default class
        # (standard-rwo) is left as it is: flstack names its class on every claim.
        retain = kube.apply(
            storage_class(RETAIN_CLASS, PROVISIONER, parameters(kms_key), "Retain", "WaitForFirstConsumer"),
            pulumi.ResourceOptions(parent=self, provider=provider),
        )
        kube.storage_ready(provider, RETAIN_CLASS, retain)
        self.retain_class = RETAIN_CLASS
        self.register_outputs({"retainClass": RETAIN_CLASS})
