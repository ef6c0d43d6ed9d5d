"""Kubeflow Trainer v2: one TrainJob per federation on flstack's ClusterTrainingRuntime.

Every node runs the same image and command; node 0 aggregates. Trainer v2 tells each node who it is
through PET_NNODES, PET_NODE_RANK, PET_NPROC_PER_NODE, PET_MASTER_ADDR (`<job>-node-0-0.<job>`) and
PET_MASTER_PORT (29500); `examples/kubeflow-fedavg` is a FedAvg program that reads exactly those.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field, replace
from typing import Any, ClassVar

import pulumi

from components import checks, kube, operators, verify
from components.config import FederationConfig
from components.config.model import Egress, Resources
from components.config.schema import rule

from . import kubeflow_checks

# An image with a tag or a digest: a registry path, then `:tag` (not `latest`) and/or `@sha256:...`.
IMAGE = r"[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[0-9a-f]{64})?"
IMAGE_HELP = "an image with a tag or a digest, e.g. ghcr.io/org/app:1.0 or ...@sha256:<64 hex>"
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_.-]*"
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"  # JobSet labels every pod of the TrainJob's JobSet with it
NODE_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"  # the node's rank (PET_NODE_RANK)
MAX_NAME = 54  # node 0's hostname `<name>-node-0-0` must stay a 63-character DNS label
VERIFY_JOIN_SECONDS = 300  # from a verification node's start: the others may still be pulling the image
VERIFY_DEADLINE_SECONDS = 900  # the whole verification TrainJob, Pending pods included: then Failed


def is_pinned_image(image: str) -> bool:
    if not re.fullmatch(IMAGE, image):
        return False
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


@dataclass(frozen=True)
class KubeflowSettings:
    operator: ClassVar[str] = "trainer"  # flstack:operators.trainer is installed for this framework

    image: str = rule(valid=is_pinned_image, pattern_help=IMAGE_HELP)
    command: list[str] = field(default_factory=list)
    args: list[str] = field(default_factory=list)
    num_nodes: int = rule(2, min=2, max=512)  # node 0 aggregates; every node trains on its own data
    resources_per_node: Resources = field(default_factory=lambda: Resources(cpu="500m", memory="1Gi"))
    env: dict[str, str] = field(default_factory=dict)
    # Where the nodes may connect besides each other and DNS (datasets, object stores; default: nowhere).
    egress: Egress = field(default_factory=Egress)

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.command:
            yield "command", "required: the program every node runs, e.g. [python3, -m, fedavg]"
        if not self.resources_per_node.memory:
            yield "resourcesPerNode.memory", "required: every container gets a memory request and limit"
        for name in self.env:
            if name.startswith("PET_"):
                yield f"env.{name}", "PET_* variables are set by Kubeflow Trainer for each node (it rejects them)"
            elif not re.fullmatch(ENV_NAME, name):
                yield f"env.{name}", f"expected a variable name of letters, digits, '_', '.' or '-', got {name!r}"

    def manifest_problems(self, name: str, namespace: str) -> Iterator[tuple[str, str]]:
        if not re.fullmatch(kubeflow_checks.DNS_1035, name) or len(name) > MAX_NAME:
            yield (
                "",
                f"the TrainJob is named after the federation: {name!r} must start with a letter, at most {MAX_NAME}",
            )
            return
        for job in (train_job(name, namespace, self), verification_train_job(name, namespace, self)):
            for problem in kubeflow_checks.trainer_model_problems(job):
                yield "", f"the TrainJob flstack would render is invalid: {problem}"
        for problem in kubeflow_checks.pod_template_problems(node_pod_template(name, self), "the node"):
            yield "", problem


def train_job(name: str, ns: str, s: KubeflowSettings) -> dict[str, Any]:
    trainer: dict[str, Any] = {
        "image": s.image,
        "command": list(s.command),
        "numNodes": s.num_nodes,
        "numProcPerNode": 1,  # one process per node: the FedAvg program is one party
        "resourcesPerNode": s.resources_per_node.manifest(),
    }
    if s.args:
        trainer["args"] = list(s.args)
    if s.env:
        trainer["env"] = kube.env(*sorted(s.env.items()))
    return {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": name, "namespace": ns, "labels": kube.labels("kubeflow", "trainjob", name)},
        "spec": {
            "runtimeRef": {
                "apiGroup": "trainer.kubeflow.org",
                "kind": "ClusterTrainingRuntime",
                "name": operators.RUNTIME,
            },
            "trainer": trainer,
        },
    }


def verification_name(name: str, s: KubeflowSettings) -> str:
    """`<name>-verify-<digest of what it verifies>`: a changed federation is a new TrainJob (re-verified on `up`),
    an unchanged one the same; cut to stay within MAX_NAME like the federation's own."""
    digest = verify.digest({"settings": asdict(s), "check": verify.digest(checks.script("kubeflow_ranks"))})
    return f"{name[: MAX_NAME - len(digest) - 8]}-verify-{digest}"


def verification_train_job(name: str, ns: str, s: KubeflowSettings) -> dict[str, Any]:
    """The smallest real job of this federation: a TrainJob on the same runtime, image, node count, resources and
    env whose nodes all rendezvous at node 0 and all-reduce over gloo (checks/kubeflow_ranks.py).

    Why a TrainJob and not a batch/v1 Job: what can break a TrainJob federation is the path its nodes take --
    the Trainer and JobSet controllers and webhooks, the runtime's pod template (non-root, read-only root, the
    pinned gloo ports), node 0's name under JobSet's headless Service, the peer NetworkPolicy, scheduling N
    nodes with their resources, the image. A batch/v1 Job would exercise none of it. And the federation's own
    TrainJob is a training run of any length, too long to hold `pulumi up` on. Pulumi awaits this one's
    `Complete` condition (`pulumi.com/waitFor`); a node that never joins fails it within its deadline.
    """
    check = replace(s, command=["python3", "-c", checks.script("kubeflow_ranks")], args=[])
    job = train_job(verification_name(name, s), ns, check)
    job["spec"]["trainer"]["args"] = ["--join-seconds", str(VERIFY_JOIN_SECONDS)]
    job["spec"]["activeDeadlineSeconds"] = VERIFY_DEADLINE_SECONDS
    job["metadata"]["labels"] = verify.labels("kubeflow", name)
    job["metadata"]["annotations"] = {
        "pulumi.com/waitFor": "condition=Complete",
        # waitFor knows only Complete: a TrainJob Failed at its deadline ends Pulumi's wait at this timeout.
        "pulumi.com/timeoutSeconds": str(VERIFY_DEADLINE_SECONDS + 60),
    }
    return job


def node_pod_template(name: str, s: KubeflowSettings) -> dict[str, Any]:
    """The pod each node gets: the runtime's template with the TrainJob's trainer fields applied."""
    runtime = operators.runtime_manifest()
    job = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]
    pod = copy.deepcopy(job["spec"]["template"]["spec"])
    container = pod["containers"][0]
    container.update(image=s.image, command=list(s.command), resources=s.resources_per_node.manifest())
    if s.args:
        container["args"] = list(s.args)
    container["env"] = [*container.get("env", []), *kube.env(*sorted(s.env.items()))]
    return {"metadata": {"labels": {JOBSET_LABEL: name, **job["metadata"]["labels"]}}, "spec": pod}


def master_address(name: str) -> str:
    """PET_MASTER_ADDR as Trainer v2 sets it: node 0's pod under the JobSet's headless Service."""
    return f"{name}-node-0-0.{name}"


def peer_policy(name: str, ns: str, federation: str | None = None) -> dict[str, Any]:
    """Nodes of TrainJob `name` (of `federation`, default the same name) reach each other on the rendezvous port
    and gloo's pinned port range only."""
    peers = [{"podSelector": {"matchLabels": {JOBSET_LABEL: name}}}]
    low, high = operators.DATA_PORTS
    ports = [
        {"protocol": "TCP", "port": operators.RENDEZVOUS_PORT},
        {"protocol": "TCP", "port": low, "endPort": high},
    ]
    return kube.network_policy(
        f"{name}-peers",
        ns,
        {JOBSET_LABEL: name},
        ingress=[{"from": peers, "ports": ports}],
        egress=[{"to": peers, "ports": ports}],
        labels=kube.labels("kubeflow", "trainjob" if federation is None else "verify", federation or name),
    )


class KubeflowFederation(pulumi.ComponentResource):
    Settings = KubeflowSettings
    VERIFIES = True  # `verify`: a TrainJob of its own whose nodes all join and all-reduce (not a batch/v1 Job)

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Kubeflow", name, None, opts)
        s: KubeflowSettings = federation.settings
        ns = federation.home_namespace
        trainer = platform.operators.require(KubeflowSettings.operator)

        namespace = kube.apply(kube.namespace(ns), platform.opts(self))
        in_namespace = platform.opts(self, depends_on=[namespace])
        # Default-deny both ways, DNS, the LimitRange backstop and the listed egress; then the peers.
        baseline = [*kube.baseline(ns, s.egress), peer_policy(name, ns)]
        policies = [kube.apply(obj, in_namespace) for obj in baseline]
        # The trainer's webhooks fail closed, and the nodes must never run before their policies exist.
        federation_job = kube.apply(
            train_job(name, ns, s), platform.opts(self, depends_on=[namespace, *policies, *trainer.depends_on])
        )

        self.outputs: dict[str, Any] = {
            "namespace": ns,
            "trainJob": name,
            "numNodes": s.num_nodes,
            "masterAddress": f"{master_address(name)}:{operators.RENDEZVOUS_PORT}",
            "status": f"kubectl -n {ns} get trainjob {name}",
            "aggregatorLogs": f"kubectl -n {ns} logs -f -l {JOBSET_LABEL}={name},{NODE_INDEX_LABEL}=0",
        }
        if federation.verify:
            check = verification_train_job(name, ns, s)
            check_name = check["metadata"]["name"]
            # Its nodes reach each other as the federation's do, and nothing else: a policy of their own.
            check_policy = kube.apply(peer_policy(check_name, ns, name), in_namespace)
            after = [namespace, *policies, check_policy, federation_job, *trainer.depends_on]
            kube.apply(check, platform.opts(self, depends_on=after))
            self.outputs["verificationLog"] = f"kubectl -n {ns} logs -l {JOBSET_LABEL}={check_name} --prefix"
        self.register_outputs(self.outputs)
