"""The FLTK testbed (fltk-testbed) on Kubeflow Training Operator v1: one stack-config entry, least privilege.

FLTK's orchestrator reads an experiment (arrival) file and a cluster configuration, then creates one
PyTorchJob per experiment (Master = federator, Workers = clients) and ConfigMaps for the nodes, in the
namespace `test`, which it hard-codes. The Master writes TensorBoard logs to the `fl-log-claim` volume,
which a TensorBoard extractor serves. Here: the orchestrator is a Job with its own ServiceAccount and
only the rights it uses (upstream binds `*` on `*/*` to `default`), both claims sit on the stack's
ReadWriteMany storage, the extractor shuts down on SIGTERM (upstream's preStop is one malformed exec
argument), and the jobs the experiment will make are checked before anything is registered.
FLTK itself needs Python <= 3.9 and torch 1.12 and publishes no image: `image` is the user's build.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pulumi

from components import kube
from components.config import FederationConfig
from components.config.model import CIDR_HELP, QUANTITY, QUANTITY_HELP, Egress, Resources, is_cidr, is_open_cidr
from components.config.schema import rule

from . import kubeflow_checks
from .kubeflow import IMAGE_HELP, is_pinned_image

NAMESPACE = "test"  # fltk/util/cluster/client.py: construct() and wait_for_jobs_to_complete()
WORK_DIR = "/opt/federation-lab"  # the image's WORKDIR; configs, logs and output live under it
CONFIG_DIR = "config"
CONFIGURATION_FILE = "configuration.fltk.json"
EXPERIMENT_FILE = "experiment.fltk.json"
UID = 1001  # FLTK's images build on bitnami/pytorch, whose user is 1001
TENSORBOARD_PORT = 6006
TAINT_KEY = "fltk.node"  # training nodes carry fltk.node=normal:NoSchedule; FLTK's jobs tolerate it
WORKER_LABELS = {"training.kubeflow.org/operator-name": "pytorchjob-controller"}  # set by the operator

# Exactly what the orchestrator does with the API (fltk/util/cluster/client.py): read nodes and pods
# cluster-wide (ClusterManager), and in `test` manage its PyTorchJobs and their node ConfigMaps.
CLUSTER_RULES = [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}]
NAMESPACE_RULES = [
    {
        "apiGroups": ["kubeflow.org"],
        "resources": ["pytorchjobs"],
        "verbs": ["create", "delete", "get", "list", "watch"],
    },
    {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete", "get"]},
]

# FLTK's example cluster configuration (configs/example_cloud_experiment.json) without image and namespace,
# which flstack fills in.
DEFAULT_CONFIGURATION: dict[str, Any] = {
    "cluster": {
        "orchestrator": {"orchestrator_type": "simulated"},
        "client": {"prefix": "client", "tensorboard_active": False},
    },
    "execution_config": {
        "duration": 60,
        "experiment_prefix": "cloud_experiment",
        "cuda": False,
        "tensorboard": {"active": True, "record_dir": "logging"},
        "net": {
            "save_model": False,
            "save_temp_model": False,
            "save_epoch_interval": 1,
            "save_model_path": "models",
            "epoch_save_start_suffix": "start",
            "epoch_save_end_suffix": "end",
        },
        "reproducibility": {"seeds": [42], "parallel_execution": True},
    },
}


@dataclass(frozen=True)
class FltkVolumes:
    """The two ReadWriteMany claims FLTK names: `fl-log-claim` (TensorBoard logs), `fl-server-claim` (output)."""

    log_size: str = rule("2Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    output_size: str = rule("5Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)


@dataclass(frozen=True)
class ApiServer:
    """Where the orchestrator reaches the Kubernetes API, as the CNI sees it (most match NetworkPolicy after
    kube-proxy's DNAT: the API server's own address and port, e.g. minikube's node IP and 8443)."""

    cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    ports: list[int] = rule(default_factory=lambda: [443, 6443, 8443], min=1, max=65535)

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.cidrs:
            yield (
                "cidrs",
                (
                    "required: the API server's addresses (minikube: `minikube ip`/32 and the kubernetes Service's "
                    "10.96.0.1/32; EKS: the VPC CIDR), so the orchestrator reaches the API and nothing else"
                ),
            )
        for i, cidr in enumerate(self.cidrs):
            if cidr is not None and is_open_cidr(cidr):
                yield f"cidrs[{i}]", f"{cidr!r} is the whole internet: list the API server's addresses"
        if not self.ports:
            yield "ports", "required: the API server's ports (443, 6443 or minikube's 8443)"


@dataclass(frozen=True)
class FltkSettings:
    operator: ClassVar[str] = "trainingOperator"  # flstack:operators.trainingOperator, for PyTorchJobs
    required_namespace: ClassVar[str] = NAMESPACE
    required_namespace_reason: ClassVar[str] = "FLTK's orchestrator hard-codes it for its jobs and ConfigMaps"

    image: str = rule(valid=is_pinned_image, pattern_help=IMAGE_HELP)  # FLTK publishes none: your build
    experiment: str = rule()  # FLTK's arrival config, JSON text (e.g. configs/federated_tasks/*.json)
    api_server: ApiServer = rule()  # the orchestrator's only egress besides DNS
    configuration: str | None = None  # FLTK's cluster configuration, JSON text; default: FLTK's example
    orchestrator_resources: Resources = field(default_factory=lambda: Resources(cpu="500m", memory="512Mi"))
    extractor_resources: Resources = field(default_factory=lambda: Resources(cpu="100m", memory="512Mi"))
    volumes: FltkVolumes = field(default_factory=FltkVolumes)
    # Where FLTK's pods may connect besides each other, DNS and (the orchestrator) the API: default nowhere.
    egress: Egress = field(default_factory=Egress)

    def shared_storage_keys(self) -> list[str]:
        return ["volumes"]  # FLTK always needs its two ReadWriteMany claims

    def shared_storage_claims(self) -> list[tuple[str, str]]:
        return [("volumes.logSize", self.volumes.log_size), ("volumes.outputSize", self.volumes.output_size)]

    def check(self) -> Iterator[tuple[str, str]]:
        for key, text in (("experiment", self.experiment), ("configuration", self.configuration)):
            if text is None:
                continue
            try:
                json.loads(text)
            except json.JSONDecodeError as err:
                yield key, f"expected JSON text (FLTK reads it as JSON): {err.msg} at line {err.lineno}"
        for key in ("orchestratorResources", "extractorResources"):
            resources = getattr(self, "orchestrator_resources" if key.startswith("orch") else "extractor_resources")
            if not resources.memory:
                yield f"{key}.memory", "required: every container gets a memory request and limit"

    def cluster_configuration(self) -> dict[str, Any]:
        config = json.loads(self.configuration) if self.configuration else json.loads(json.dumps(DEFAULT_CONFIGURATION))
        cluster = config.setdefault("cluster", {})
        cluster["image"] = self.image
        cluster["namespace"] = NAMESPACE
        return dict(config)

    def manifest_problems(self, name: str, namespace: str) -> Iterator[tuple[str, str]]:
        if self.configuration:
            try:
                given = json.loads(self.configuration).get("cluster", {})
            except (json.JSONDecodeError, AttributeError):
                return  # reported by check()
            for key, wanted in (("image", self.image), ("namespace", NAMESPACE)):
                if key in given and given[key] != wanted:
                    yield "configuration", f"cluster.{key} is {given[key]!r} but must be {wanted!r}: flstack sets it"
        try:
            jobs = expected_jobs(self)
        except (json.JSONDecodeError, ValueError, TypeError, AttributeError, KeyError) as err:
            yield "experiment", f"not an FLTK arrival config flstack can read: {err}"
            return
        for i, job in enumerate(jobs):
            for problem in kubeflow_checks.custom_resource_problems(job) or []:
                yield "experiment", f"the PyTorchJob FLTK would create for job class {i} is invalid: {problem}"


def expected_jobs(s: FltkSettings) -> list[dict[str, Any]]:
    """The PyTorchJob FLTK's orchestrator builds for each job class (fltk/util/cluster/client.py construct_job).

    Master = federator, `dataParallelism - 1` Workers, per-type requests = limits from `configurations`,
    the `pytorch` container, restartPolicy Never, the fltk.node toleration. The name stands in for FLTK's
    `trainjob-<uuid>`.
    """
    tasks = json.loads(s.experiment)
    if not isinstance(tasks, list):
        raise ValueError("expected a JSON list of train tasks")
    jobs: list[dict[str, Any]] = []
    for task in tasks:
        for params in task["jobClassParameters"]:
            system = params["systemParameters"]
            parallelism = int(system["dataParallelism"])
            specs: dict[str, Any] = {}
            for kind, replicas in (("Master", 1), ("Worker", parallelism - 1)):
                if replicas < 1:
                    continue
                shape = system["configurations"].get(kind) or system["configurations"]["default"]
                quantities = {"cpu": shape["cores"], "memory": shape["memory"]}
                for what, value in quantities.items():
                    if not isinstance(value, str) or not re.fullmatch(QUANTITY, value):
                        raise ValueError(f"{kind} {what} {value!r} is not {QUANTITY_HELP}")
                container = {
                    "name": "pytorch",
                    "image": s.image,
                    "imagePullPolicy": "IfNotPresent",
                    "command": ["python3", "-m", "fltk", "remote", "experiments/node.config.yaml"],
                    "resources": {"requests": quantities, "limits": quantities},
                }
                tolerations = [{"key": TAINT_KEY, "operator": "Exists", "effect": "NoSchedule"}]
                specs[kind] = {
                    "replicas": replicas,
                    "restartPolicy": "Never",
                    "template": {
                        "metadata": {"labels": {"app": "fltk-worker"}},
                        "spec": {"containers": [container], "tolerations": tolerations},
                    },
                }
            jobs.append(
                {
                    "apiVersion": "kubeflow.org/v1",
                    "kind": "PyTorchJob",
                    "metadata": {"name": f"trainjob-{len(jobs)}", "namespace": NAMESPACE},
                    "spec": {"runPolicy": {"cleanPodPolicy": "None"}, "pytorchReplicaSpecs": specs},
                }
            )
    return jobs


def rbac(ns: str, labels: dict[str, str]) -> list[dict[str, Any]]:
    """ServiceAccount, ClusterRole + binding (nodes, pods: read), Role + binding (its jobs and ConfigMaps)."""
    sa = kube.service_account("fltk-orchestrator", ns, labels, automount=True)  # it drives the API
    subject = [{"kind": "ServiceAccount", "name": "fltk-orchestrator", "namespace": ns}]
    rbac_group = "rbac.authorization.k8s.io/v1"
    meta = {"name": "fltk-orchestrator", "labels": labels}
    return [
        sa,
        {"apiVersion": rbac_group, "kind": "ClusterRole", "metadata": meta, "rules": CLUSTER_RULES},
        {
            "apiVersion": rbac_group,
            "kind": "ClusterRoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "fltk-orchestrator"},
            "subjects": subject,
        },
        {"apiVersion": rbac_group, "kind": "Role", "metadata": {**meta, "namespace": ns}, "rules": NAMESPACE_RULES},
        {
            "apiVersion": rbac_group,
            "kind": "RoleBinding",
            "metadata": {**meta, "namespace": ns},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "fltk-orchestrator"},
            "subjects": subject,
        },
    ]


def _rwx_claim(name: str, ns: str, size: str, storage_class: str, labels: dict[str, str]) -> dict[str, Any]:
    claim = kube.claim(name, ns, size, storage_class, labels)
    claim["spec"]["accessModes"] = ["ReadWriteMany"]  # Master pods on any node write, the extractor reads
    return claim


def _pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    return {"securityContext": kube.pod_security(UID), "containers": containers, "volumes": volumes, **extra}


HOME = "/home/fltk"
# Writable scratch under the read-only root: HOME and /tmp (emptyDirs).
SCRATCH_MOUNTS, SCRATCH_VOLUMES = kube.scratch_volumes(HOME)


def _container(name: str, image: str, resources: Resources, **fields: Any) -> dict[str, Any]:
    return {
        "name": name,
        "image": image,
        "workingDir": WORK_DIR,
        "resources": resources.manifest(),
        "securityContext": kube.container_security(),
        **fields,
    }


def orchestrator_job(ns: str, s: FltkSettings, labels: dict[str, str]) -> dict[str, Any]:
    config_dir = f"{WORK_DIR}/{CONFIG_DIR}"
    container = _container(
        "orchestrator",
        s.image,
        s.orchestrator_resources,
        command=["python3", "-m", "fltk"],
        args=["cluster", f"{CONFIG_DIR}/{CONFIGURATION_FILE}", f"{CONFIG_DIR}/{EXPERIMENT_FILE}"],
        # FLTK gives its jobs the image named here.
        env=kube.env(("PYTHONUNBUFFERED", "1"), ("IMAGE_NAME", s.image), ("HOME", HOME)),
        volumeMounts=[
            {"name": "output", "mountPath": f"{WORK_DIR}/output"},  # the orchestrator writes its results here
            {"name": "config", "mountPath": config_dir, "readOnly": True},
            # Its own TensorBoard records (execution_config.tensorboard.record_dir), kept with the pod.
            {"name": "logging", "mountPath": f"{WORK_DIR}/logging"},
            *SCRATCH_MOUNTS,
        ],
    )
    volumes = [
        *SCRATCH_VOLUMES,
        {"name": "logging", "emptyDir": {}},
        {"name": "output", "persistentVolumeClaim": {"claimName": "fl-server-claim"}},
        {
            "name": "config",
            "projected": {
                "sources": [
                    {"configMap": {"name": "fltk-orchestrator-config"}},
                    {"configMap": {"name": "fltk-experiment-config"}},
                ]
            },
        },
    ]
    pod = _pod([container], volumes, serviceAccountName="fltk-orchestrator", restartPolicy="Never")
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "fltk-orchestrator", "namespace": ns, "labels": labels},
        # A rerun would submit every experiment again: one attempt, kept for its logs.
        "spec": {"backoffLimit": 0, "template": {"metadata": {"labels": labels}, "spec": pod}},
    }


# TensorBoard as PID 1 ignores SIGTERM (no handler, and PID 1 gets no default action): exit on it instead.
TENSORBOARD = (
    "import signal, sys\n"
    "signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\n"
    "from tensorboard.main import run_main\n"
    "sys.argv = ['tensorboard'] + sys.argv[1:]\n"
    "run_main()\n"
)


def extractor(ns: str, s: FltkSettings, labels: dict[str, str]) -> dict[str, Any]:
    container = _container(
        "tensorboard",
        s.image,
        s.extractor_resources,
        command=["python3", "-c", TENSORBOARD],
        args=["--logdir", "logging", "--host", "0.0.0.0", "--port", str(TENSORBOARD_PORT)],
        ports=[{"name": "tensorboard", "containerPort": TENSORBOARD_PORT, "protocol": "TCP"}],
        readinessProbe={"httpGet": {"path": "/", "port": "tensorboard"}, "periodSeconds": 10},
        env=kube.env(("HOME", HOME)),
        volumeMounts=[
            {"name": "logs", "mountPath": f"{WORK_DIR}/logging", "readOnly": True},
            {"name": "output", "mountPath": f"{WORK_DIR}/output", "readOnly": True},
            *SCRATCH_MOUNTS,
        ],
    )
    volumes = [
        *SCRATCH_VOLUMES,
        {"name": "logs", "persistentVolumeClaim": {"claimName": "fl-log-claim", "readOnly": True}},
        {"name": "output", "persistentVolumeClaim": {"claimName": "fl-server-claim", "readOnly": True}},
    ]
    pod = _pod([container], volumes, automountServiceAccountToken=False, terminationGracePeriodSeconds=15)
    return kube.deployment("fl-extractor", ns, labels, kube.selector(labels), pod)


def extractor_service(ns: str, labels: dict[str, str]) -> dict[str, Any]:
    port = {"name": "tensorboard", "port": TENSORBOARD_PORT, "targetPort": "tensorboard", "protocol": "TCP"}
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "fl-extractor", "namespace": ns, "labels": labels},
        "spec": {"type": "ClusterIP", "selector": kube.selector(labels), "ports": [port]},
    }


def policies(ns: str, orchestrator_labels: dict[str, str], api: ApiServer) -> list[dict[str, Any]]:
    """On top of the baseline: FLTK's job pods reach each other (TensorPipe picks its ports at run time),
    and the orchestrator reaches the Kubernetes API server's listed addresses and ports."""
    workers = [{"podSelector": {"matchLabels": WORKER_LABELS}}]
    api_peers = [{"ipBlock": {"cidr": cidr}} for cidr in sorted(set(api.cidrs))]
    api_ports = kube.tcp(*sorted(set(api.ports)))
    return [
        kube.network_policy("fltk-job-peers", ns, WORKER_LABELS, ingress=[{"from": workers}], egress=[{"to": workers}]),
        kube.network_policy(
            "fltk-orchestrator-api",
            ns,
            kube.selector(orchestrator_labels),
            egress=[{"to": api_peers, "ports": api_ports}],
        ),
    ]


class FltkFederation(pulumi.ComponentResource):
    Settings = FltkSettings

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Fltk", name, None, opts)
        s: FltkSettings = federation.settings
        ns = federation.home_namespace
        self.name = name
        operator = platform.operators.require(FltkSettings.operator)
        shared = platform.storage.require_shared("FLTK")
        orchestrator_labels = kube.labels("fltk", "orchestrator", name)
        extractor_labels = kube.labels("fltk", "extractor", name)

        # FLTK's job pods set no securityContext: `restricted` would reject them, so `baseline` here.
        namespace_object = kube.namespace(ns, {"pod-security.kubernetes.io/enforce": "baseline"})
        # Retained like the claims in it: deleting a namespace deletes its volumes.
        namespace = kube.apply(namespace_object, platform.opts(self, retain_on_delete=True))
        in_namespace = platform.opts(self, depends_on=[namespace])
        kept = platform.opts(self, depends_on=[namespace], retain_on_delete=True)
        waits = [
            # Default-deny both ways, DNS, the LimitRange backstop and the listed egress; then FLTK's own.
            *(kube.apply(obj, in_namespace) for obj in kube.baseline(ns, s.egress)),
            *(kube.apply(p, in_namespace) for p in policies(ns, orchestrator_labels, s.api_server)),
            kube.apply(_rwx_claim("fl-log-claim", ns, s.volumes.log_size, shared, extractor_labels), kept),
            kube.apply(_rwx_claim("fl-server-claim", ns, s.volumes.output_size, shared, orchestrator_labels), kept),
            *(kube.apply(obj, in_namespace) for obj in rbac(ns, orchestrator_labels)),
            kube.apply(self._config_map("fltk-orchestrator-config", ns, CONFIGURATION_FILE, s), in_namespace),
            kube.apply(self._config_map("fltk-experiment-config", ns, EXPERIMENT_FILE, s), in_namespace),
        ]
        kube.apply(extractor(ns, s, extractor_labels), in_namespace)
        kube.apply(extractor_service(ns, extractor_labels), in_namespace)
        # The operator's webhook rejects PyTorchJobs until it is ready: the orchestrator starts after it.
        kube.apply(
            orchestrator_job(ns, s, orchestrator_labels),
            platform.opts(self, depends_on=[namespace, *waits, *operator.depends_on]),
        )

        port = TENSORBOARD_PORT
        self.outputs: dict[str, Any] = {
            "namespace": ns,
            "image": s.image,
            "tensorboardPortForward": f"kubectl -n {ns} port-forward svc/fl-extractor {port}:{port}",
            "apiServer": {"cidrs": sorted(set(s.api_server.cidrs)), "ports": sorted(set(s.api_server.ports))},
            "orchestratorLogs": f"kubectl -n {ns} logs -f job/fltk-orchestrator",
            "jobs": f"kubectl -n {ns} get pytorchjobs",
        }
        self.register_outputs(self.outputs)

    def _config_map(self, name: str, ns: str, key: str, s: FltkSettings) -> dict[str, Any]:
        if key == CONFIGURATION_FILE:
            text = json.dumps(s.cluster_configuration(), indent=2, sort_keys=True)
        else:
            text = json.dumps(json.loads(s.experiment), indent=2, sort_keys=True)
        labels = kube.labels("fltk", "orchestrator", self.name)
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "data": {key: text + "\n"},
        }
