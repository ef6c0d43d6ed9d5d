"""Any cluster you already have (kind, microk8s, on-premises): a kubeconfig file or secret, and a context."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Literal

import pulumi

from components import kube
from components.config.model import KUBE_VERSION, KUBE_VERSION_HELP
from components.config.schema import Secret, rule


@dataclass(frozen=True)
class ExistingSettings:
    # Path to a kubeconfig file; unset = the usual KUBECONFIG / ~/.kube/config lookup.
    kubeconfig_path: str | None = None
    # Or the kubeconfig text itself, as a Pulumi secret (for CI): `pulumi config set --secret --path ...`.
    kubeconfig: Secret | None = None
    context: str | None = None
    # Names the cluster for Pulumi; keep it when the kubeconfig changes so nothing is replaced.
    cluster_identifier: str | None = None
    kubernetes_version: str = rule("1.34.0", pattern=KUBE_VERSION, pattern_help=KUBE_VERSION_HELP)
    default_storage_class: str | None = None
    # LoadBalancer Services wait for an address (10 minutes, then the up fails, and every later up waits
    # again) unless the cluster allocates one (cloud controller, MetalLB). Without one: `skip` (pulumi-kubernetes'
    # skipAwait annotation: created, not awaited), or a shorter wait in seconds (its timeoutSeconds).
    load_balancer_await: Literal["wait", "skip"] = "wait"
    load_balancer_timeout_seconds: int | None = rule(None, min=30, max=3600)

    def check(self) -> list[tuple[str, str]]:
        problems = []
        if self.kubeconfig is not None and self.kubeconfig_path is not None:
            problems.append(("kubeconfigPath", "set either kubeconfigPath or kubeconfig (secret text), not both"))
        if self.load_balancer_timeout_seconds is not None and self.load_balancer_await == "skip":
            problems.append(("loadBalancerTimeoutSeconds", "not used with loadBalancerAwait: skip (nothing waits)"))
        return problems

    def load_balancer_annotations(self) -> dict[str, str]:
        """pulumi-kubernetes' documented await annotations for a LoadBalancer Service on this cluster."""
        if self.load_balancer_await == "skip":
            return {"pulumi.com/skipAwait": "true"}
        if self.load_balancer_timeout_seconds is not None:
            return {"pulumi.com/timeoutSeconds": str(self.load_balancer_timeout_seconds)}
        return {}


class ExistingCluster(pulumi.ComponentResource):
    Settings = ExistingSettings
    SHARED_STORAGE: ClassVar[dict[str, str | None]] = {}  # ReadWriteMany: nfs, or a class it has (existing)

    def __init__(self, name: str, settings: ExistingSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:targets:Existing", name, None, opts)
        s = self.settings = settings
        kubeconfig: Any = s.kubeconfig.output() if s.kubeconfig is not None else s.kubeconfig_path
        identifier = s.cluster_identifier or s.context or "existing"
        self.provider = kube.ClusterProvider(
            f"{name}-k8s", kubeconfig, identifier, pulumi.ResourceOptions(parent=self), context=s.context
        )
        self.kubernetes_version = s.kubernetes_version
        self.load_balancer_annotations = s.load_balancer_annotations()
        self.outputs: dict[str, pulumi.Input[str]] = {
            "kind": "existing",
            "clusterIdentifier": identifier,
            "kubernetesVersion": s.kubernetes_version,
        }
        self.register_outputs(self.outputs)

    def block_storage(self) -> str | None:
        return self.settings.default_storage_class  # None: the cluster's own default class

    def shared_storage(self, kind: str) -> str:
        raise ValueError(f"an existing cluster brings no ReadWriteMany storage of kind {kind!r}")
