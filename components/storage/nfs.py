"""ReadWriteMany anywhere: an in-cluster NFS server (nfs-server-provisioner) whose data sits on one RWO volume."""

from __future__ import annotations

from collections.abc import Mapping

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config.model import NFS_IMAGE, NFS_NAMESPACE

CLASS = "shared-nfs"
NAMESPACE = NFS_NAMESPACE
CHART = "nfs-server-provisioner"
CHART_VERSION = "1.8.0"
REPOSITORY = "https://kubernetes-sigs.github.io/nfs-ganesha-server-and-external-provisioner/"
DEFAULT_SIZE = "20Gi"


def chart_values(
    data_class: str | None, size: str, image_digests: Mapping[str, str] | None = None
) -> dict[str, object]:
    persistence: dict[str, object] = {"enabled": True, "accessMode": "ReadWriteOnce", "size": size}
    if data_class:
        persistence["storageClass"] = data_class
    repository = NFS_IMAGE.rpartition(":")[0]
    # The chart writes `repository:tag`: a pinned digest rides on the tag (`v4.0.8@sha256:...`).
    pinned = kube.image(NFS_IMAGE, image_digests or {}).removeprefix(f"{repository}:")
    return {
        "image": {"repository": repository, "tag": pinned},
        # The chart sets none: one server for every shared volume must not be squeezed out by neighbours.
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        # Without persistence the exported data lives in an emptyDir and dies with the pod.
        "persistence": persistence,
        "storageClass": {
            "create": True,
            "name": CLASS,
            "defaultClass": False,  # the chart's default is true: it would take over every unnamed claim
            "reclaimPolicy": "Retain",
            "allowVolumeExpansion": True,
        },
    }


class NfsServer(pulumi.ComponentResource):
    def __init__(
        self,
        name: str,
        provider: k8s.Provider,
        data_class: str | None,
        size: str | None,
        image_digests: Mapping[str, str] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:storage:Nfs", name, None, opts)
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=provider)
        # NFS-Ganesha runs as root with DAC_READ_SEARCH and SYS_RESOURCE: not allowed even by `baseline`,
        # so this namespace (and only this one) is privileged. It holds the export's volume, which the retained
        # claims of every federation point into: retained like them (deleting it would delete the data).
        namespace = kube.apply(
            kube.namespace(
                NAMESPACE,
                {"pod-security.kubernetes.io/enforce": "privileged", "pod-security.kubernetes.io/warn": "privileged"},
            ),
            pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(retain_on_delete=True)),
        )
        # No NetworkPolicy here: kubelets on every node mount the exports. The LimitRange is the backstop.
        in_namespace = pulumi.ResourceOptions.merge(k8s_opts, pulumi.ResourceOptions(depends_on=[namespace]))
        kube.apply(kube.limit_range(NAMESPACE), in_namespace)
        self.chart = kube.chart(
            name,
            CHART,
            CHART_VERSION,
            REPOSITORY,
            NAMESPACE,
            chart_values(data_class, size or DEFAULT_SIZE, image_digests),
            in_namespace,
        )
        # Claims of the class wait for the server (its chart makes the class) and are destroyed before it.
        kube.storage_ready(provider, CLASS, self.chart)
        self.class_name = CLASS
        self.register_outputs({"storageClass": CLASS, "namespace": NAMESPACE, "chartVersion": CHART_VERSION})
