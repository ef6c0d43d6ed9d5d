"""Cluster add-ons that federations build on: the Kubeflow training operators.

Each is installed at most once per stack, and only when a federation's framework asks for it (the first
request installs it; later ones get the same resources). `existing: true` installs nothing and trusts the
cluster's own. Jobs depend on what is returned: both operators' admission webhooks fail closed, so a job
created before the operator is ready would be rejected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components import kube
from components.config.model import OperatorsConfig, TrainerOperatorConfig, TrainingOperatorConfig

TRAINER_NAMESPACE = "kubeflow-system"
TRAINER_CHART = "oci://ghcr.io/kubeflow/charts/kubeflow-trainer"
# The Training Operator v1 standalone overlay (namespace `kubeflow`); its CRDs are far larger than the
# 256 KiB last-applied annotation, so they go through server-side apply (the provider's default, never
# turned off here: see targets).
TRAINING_OPERATOR_OVERLAY = "https://github.com/kubeflow/trainer/tree/{version}/manifests/overlays/standalone"
TRAINING_OPERATOR_NAMESPACE = "kubeflow"

# flstack's own ClusterTrainingRuntime for `framework: kubeflow` (the chart's runtimes are off: Helm
# hooks install them, and Pulumi does not run hooks the way helm does).
RUNTIME = "flstack-torch"
RUNTIME_UID = 1000
RENDEZVOUS_PORT = 29500  # PET_MASTER_PORT: the c10d store on node 0
# Gloo's pairwise connections bind ephemeral ports: the pod's (namespaced, "safe") ip_local_port_range
# pins them to this range, so a NetworkPolicy can name them.
DATA_PORTS = (29501, 29999)


def trainer_values() -> dict[str, Any]:
    return {
        "runtimes": {"defaultEnabled": False, "torchDistributed": {"enabled": False}},
        "jobset": {"install": True},  # Trainer v2 runs every TrainJob as a JobSet
        "namespace": {"create": False},  # flstack owns the namespace (Pod Security labels)
    }


def runtime_manifest() -> dict[str, Any]:
    """One torch runtime for every kubeflow federation: hardened pod, image/command/resources per TrainJob."""
    low, high = DATA_PORTS
    container = {
        "name": "node",  # the trainer's container: Trainer v2 injects PET_* here and applies the TrainJob
        "image": "pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime",  # placeholder; every TrainJob sets its own
        "securityContext": kube.container_security(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}, {"name": "home", "mountPath": "/home/trainer"}],
        "env": kube.env(("HOME", "/home/trainer")),
    }
    pod = {
        "securityContext": {
            **kube.pod_security(RUNTIME_UID),
            "sysctls": [{"name": "net.ipv4.ip_local_port_range", "value": f"{low} {high}"}],
        },
        "automountServiceAccountToken": False,  # training code never talks to the Kubernetes API
        "restartPolicy": "Never",  # FedAvg state lives in memory: a restarted rank cannot rejoin its group
        "containers": [container],
        "volumes": [{"name": "tmp", "emptyDir": {}}, {"name": "home", "emptyDir": {}}],
    }
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "ClusterTrainingRuntime",
        "metadata": {
            "name": RUNTIME,
            "labels": {"trainer.kubeflow.org/framework": "torch", "app.kubernetes.io/managed-by": "flstack"},
        },
        "spec": {
            "mlPolicy": {"numNodes": 1, "torch": {}},
            "template": {
                "spec": {
                    "replicatedJobs": [
                        {
                            "name": "node",
                            "template": {
                                "metadata": {"labels": {"trainer.kubeflow.org/trainjob-ancestor-step": "trainer"}},
                                "spec": {"template": {"spec": pod}},
                            },
                        }
                    ]
                }
            },
        },
    }


@dataclass
class Installed:
    """What a job needs from an operator: resources to depend on (empty when `existing`)."""

    depends_on: list[pulumi.Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


class KubeflowTrainer(pulumi.ComponentResource):
    """Kubeflow Trainer v2 (chart, with JobSet) plus flstack's ClusterTrainingRuntime."""

    def __init__(self, name: str, config: TrainerOperatorConfig, provider: k8s.Provider) -> None:
        super().__init__("flstack:operators:KubeflowTrainer", name, None)
        opts = pulumi.ResourceOptions(parent=self, provider=provider)
        waits: list[pulumi.Resource] = []
        if not config.existing:
            # The controller and JobSet run non-root with seccomp but not every chart pod sets all of
            # `restricted`: enforce baseline, warn on restricted.
            ns = kube.namespace(TRAINER_NAMESPACE, {"pod-security.kubernetes.io/enforce": "baseline"})
            namespace = kube.apply(ns, opts)
            chart = k8s.helm.v4.Chart(
                name,
                chart=TRAINER_CHART,
                version=config.version,
                namespace=TRAINER_NAMESPACE,
                values=trainer_values(),
                opts=kube.bound(pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=[namespace]))),
            )
            waits.append(chart)
        # The runtime's own admission webhook is the trainer's: it waits for the chart too.
        runtime = kube.apply(
            runtime_manifest(), pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(depends_on=waits))
        )
        self.installed = Installed(
            [*waits, runtime],
            {"version": config.version, "existing": config.existing, "runtime": RUNTIME},
        )
        self.register_outputs(self.installed.outputs)


class TrainingOperator(pulumi.ComponentResource):
    """Kubeflow Training Operator v1 (PyTorchJob), from its standalone kustomize overlay."""

    def __init__(self, name: str, config: TrainingOperatorConfig, provider: k8s.Provider) -> None:
        super().__init__("flstack:operators:TrainingOperator", name, None)
        waits: list[pulumi.Resource] = []
        if not config.existing:
            waits.append(
                k8s.kustomize.v2.Directory(
                    name,
                    directory=TRAINING_OPERATOR_OVERLAY.format(version=config.version),
                    opts=kube.bound(pulumi.ResourceOptions(parent=self, provider=provider)),
                )
            )
        self.installed = Installed(waits, {"version": config.version, "existing": config.existing})
        self.register_outputs(self.installed.outputs)


class Operators:
    """Installs each operator on first request, once per stack."""

    def __init__(self, config: OperatorsConfig, provider: k8s.Provider) -> None:
        self._config = config
        self._provider = provider
        self._installed: dict[str, Installed] = {}

    def require(self, operator: str) -> Installed:
        if operator not in self._installed:
            if operator == "trainer":
                self._installed[operator] = KubeflowTrainer(
                    "kubeflow-trainer", self._config.trainer, self._provider
                ).installed
            elif operator == "trainingOperator":
                self._installed[operator] = TrainingOperator(
                    "kubeflow-training-operator", self._config.training_operator, self._provider
                ).installed
            else:
                raise KeyError(f"unknown operator {operator!r}")  # a framework module's bug, not user input
        return self._installed[operator]

    @property
    def outputs(self) -> dict[str, Any]:
        return {name: installed.outputs for name, installed in sorted(self._installed.items())}
