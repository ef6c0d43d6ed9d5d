"""FedML: a self-hosted cross-silo federation over gRPC (default), or FedML's hosted-platform edge agents.

crossSilo (FedML 0.9.6, no hosted platform): the user's app image runs as one server Deployment (rank 0)
and one client StatefulSet whose pod index is the rank (1..N), so the number of Kubernetes objects does
not grow with N. flstack writes `fedml_config.yaml` and the gRPC ip-config CSV into a ConfigMap. Every
FedML node is also a gRPC server the others dial: peers are named by Service DNS names. FedML's gRPC has
no TLS or authentication and unpickles what it receives, so the namespace denies all traffic but DNS and
the federation's own peers, and exposure outside the cluster is refused.

agents: what FedML's edge charts deploy (a login daemon per device that registers with the hosted
platform under an account id), pinned and hardened. It needs the hosted service: render-tested only.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

import pulumi
import yaml

from components import checks, kube, verify
from components.config import FederationConfig
from components.config.model import Egress, Exposure, Resources
from components.config.schema import Secret, rule

from .flower import SharedData

UID = 10001  # an unprivileged UID owning nothing in the image: writes go to the HOME and /tmp emptyDirs
PORT = 8890  # every pod binds the same port on its own IP (FedML's default base port)
SERVER = "fedml-server"  # Deployment and Service
CLIENTS = "fedml-clients"  # StatefulSet and its headless Service: pod fedml-clients-<rank>
CONFIG_MAP = "fedml-config"
CONFIG_DIR = "/etc/fedml"
CONFIG_FILE = "fedml_config.yaml"
IPCONFIG_FILE = "grpc_ipconfig.csv"
HOME = "/home/fedml"
ACCOUNT_SECRET = "fedml-account"
ROLE_LABEL = "flstack.dev/fedml-agent"
POD_INDEX = "metadata.labels['apps.kubernetes.io/pod-index']"
VERIFY = "fedml-verify"  # the verification's ConfigMap and headless Service (its pods' subdomain)
VERIFY_SCRIPT = "fedml_round.py"
VERIFY_SECONDS = 600  # the verification round, image pulls and FedML's start-up included
# fedml.init() probes the hosted platform even with using_mlops false: `local` points it at a loopback port
# nothing listens on, so it gives up at once instead of calling open.fedml.ai (apps also pass check_env=False).
PLATFORM_ENV = kube.env(
    ("FEDML_ENV_VERSION", "local"),
    ("FEDML_ENV_LOCAL_ON_PREMISE_PLATFORM_HOST", "127.0.0.1"),
    ("FEDML_ENV_LOCAL_ON_PREMISE_PLATFORM_PORT", "18080"),
    ("HOME", HOME),
    ("WANDB_MODE", "disabled"),
)
SCRATCH_MOUNTS, SCRATCH_VOLUMES = kube.scratch_volumes(HOME)

# A pinned image: `repo:tag` or `repo@sha256:<digest>`.
IMAGE = (
    r"[a-z0-9]+([._/:-][a-z0-9]+)*(/[a-z0-9]+([._-][a-z0-9]+)*)*"
    r"(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}|@sha256:[0-9a-f]{64})"
)
IMAGE_HELP = "an image with a tag or an @sha256: digest, e.g. registry.example/fedml-app:1.0"
MOVING_TAGS = ("latest", "release")  # what FedML's charts pull: they move under a running deployment

# What flstack writes into fedml_config.yaml. FedML flattens every section into one namespace, so these
# keys are refused in any of the user's sections, not only in the one flstack writes them to.
OWNED_KEYS = {
    "training_type": "is cross_silo: flstack runs a cross-silo federation",
    "scenario": "is horizontal: flstack runs a horizontal cross-silo federation",
    "using_mlops": "is false: the hosted platform is never used in crossSilo mode",
    "backend": "is GRPC: flstack writes the gRPC ip-config for it",
    "grpc_ipconfig_path": "is the file flstack mounts from its ConfigMap",
    "comm_round": "comes from `rounds`",
    "client_num_in_total": "comes from `clients`",
    "client_num_per_round": "comes from `clients`",
    "worker_num": "comes from `clients`",
    "rank": "comes from each pod (0 for the server, the pod index for clients)",
    "role": "comes from each pod",
    "enable_wandb": "is false: pods have no egress but DNS and their peers",
    "using_gpu": "is false: crossSilo pods request no GPUs",
}
ARG_KEY = r"[A-Za-z_][A-Za-z0-9_]*"  # FedML turns every key into an attribute of `args`
ArgValue = str | int | float | bool

# The init container: the first thing a client does is dial the server, and a 0.9.6 client that finds
# nobody there hangs forever instead of exiting; so it starts only once the server's port answers.
WAIT_SCRIPT = (
    "import socket, sys, time\n"
    "host, port = sys.argv[1], int(sys.argv[2])\n"
    "while True:\n"
    "    try:\n"
    "        socket.create_connection((host, port), timeout=3).close()\n"
    "        break\n"
    "    except OSError as err:\n"
    "        print(f'waiting for {host}:{port}: {err}', flush=True)\n"
    "        time.sleep(2)\n"
)
# The client's liveness probe: a client that lost its server never notices (FedML has no resume), so the
# kubelet restarts it, and its init container waits for the server again.
PROBE_SCRIPT = "import socket, sys\nsocket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=3).close()\n"


@dataclass(frozen=True)
class FedmlAgents:
    """FedML's hosted-platform edge agents: login daemons that register devices under an account."""

    # The FedML account the devices register under: a Pulumi secret only (it lets anyone claim devices).
    account_id: Secret
    image: str = rule(pattern=IMAGE, pattern_help=IMAGE_HELP)
    servers: int = rule(1, min=0, max=100)
    clients: int = rule(2, min=0, max=1000)
    # Which hosted platform the agents log in to (FedML's FEDML_VERSION / `-v`): release = open.fedml.ai.
    platform: Literal["release", "test", "dev"] = "release"
    resources: Resources = field(default_factory=lambda: Resources(cpu="500m", memory="2Gi"))

    def check(self) -> Iterator[tuple[str, str]]:
        yield from _check_image("image", self.image)
        if self.servers + self.clients == 0:
            yield "clients", "no agents: set servers and/or clients above 0"


@dataclass(frozen=True)
class FedmlSettings:
    mode: Literal["crossSilo", "agents"] = "crossSilo"
    # crossSilo: the user's app image (fedml==0.9.6 inside) and the command that starts one node; flstack
    # appends `--cf <config> --rank <rank> --role server|client`.
    image: str = rule("", pattern=IMAGE, pattern_help=IMAGE_HELP)
    command: list[str] = field(default_factory=list)
    clients: int = rule(2, min=1, max=10000)
    rounds: int = rule(3, min=1, max=100000)
    train_args: dict[str, ArgValue] = field(default_factory=dict)
    model_args: dict[str, ArgValue] = field(default_factory=dict)
    data_args: dict[str, ArgValue] = field(default_factory=dict)
    server_resources: Resources = field(default_factory=lambda: Resources(cpu="500m", memory="1Gi"))
    client_resources: Resources = field(default_factory=lambda: Resources(cpu="500m", memory="1Gi"))
    exposure: Exposure = field(default_factory=Exposure)  # only ClusterIP: see check()
    # Where the pods may connect besides their peers and DNS (a dataset server; default: nowhere).
    egress: Egress = field(default_factory=Egress)
    shared_data: SharedData | None = None
    agents: FedmlAgents | None = None

    def images(self) -> list[str]:
        """The `repository:tag` images this federation runs (flstack:imageDigests may pin them)."""
        ref = self.agents.image if self.mode == "agents" and self.agents is not None else self.image
        return [ref] if ref and "@" not in ref else []

    def shared_storage_keys(self) -> list[str]:
        return ["sharedData"] if self.shared_data is not None else []

    def shared_storage_claims(self) -> list[tuple[str, str]]:
        return [("sharedData.size", self.shared_data.size)] if self.shared_data is not None else []

    def verify_refusal(self) -> str | None:
        """Why `verify` cannot be on (None: it can)."""
        if self.mode == "agents":
            return (
                "not with mode 'agents': the hosted platform runs the jobs and flstack cannot see which agents "
                "took part; remove the key or set it to false"
            )
        return None

    def check(self) -> Iterator[tuple[str, str]]:
        if self.exposure.type != "ClusterIP":
            yield (
                "exposure.type",
                f"{self.exposure.type!r} refused: FedML 0.9.6 gRPC has no TLS or authentication and unpickles every "
                "message, so anyone who reaches a port can run code in the pod; only 'ClusterIP' (peers inside the "
                "cluster, behind NetworkPolicies) is allowed",
            )
        if self.mode == "agents":
            if self.agents is None:
                yield "agents", "required with mode 'agents': accountId (a Pulumi secret) and image"
            for key, value in (("image", self.image), ("command", self.command), ("sharedData", self.shared_data)):
                if value:
                    yield key, "only used with mode 'crossSilo' (mode is 'agents')"
            return
        if self.agents is not None:
            yield "agents", "only used with mode 'agents' (mode is 'crossSilo')"
        if not self.image:
            yield "image", f"required with mode 'crossSilo': your FedML app image, {IMAGE_HELP}"
        else:
            yield from _check_image("image", self.image)
        if not self.command:
            yield (
                "command",
                "required with mode 'crossSilo': how your image starts a node, e.g. [python3, /app/node.py]",
            )
        user_args = {"trainArgs": self.train_args, "modelArgs": self.model_args, "dataArgs": self.data_args}
        for section, values in user_args.items():
            for key in values:
                if key in OWNED_KEYS:
                    yield f"{section}.{key}", f"is set by flstack: it {OWNED_KEYS[key]}; remove it"
                elif not re.fullmatch(ARG_KEY, key):
                    yield f"{section}.{key}", f"expected a Python identifier (FedML makes it an attribute), got {key!r}"


def _check_image(key: str, image: str) -> Iterator[tuple[str, str]]:
    tag = image.rpartition(":")[2] if "@" not in image else None
    if tag in MOVING_TAGS:
        yield key, f"tag {tag!r} moves under a running deployment: pin a version tag or an @sha256: digest"


def fedml_config(s: FedmlSettings) -> str:
    """fedml_config.yaml: FedML's sections, the user's args merged into theirs (owned keys refused earlier)."""
    config = {
        "common_args": {"training_type": "cross_silo", "scenario": "horizontal", "using_mlops": False},
        "data_args": dict(s.data_args),
        "model_args": dict(s.model_args),
        "train_args": {
            "federated_optimizer": "FedAvg",
            "client_id_list": "[]",
            **s.train_args,
            "client_num_in_total": s.clients,
            "client_num_per_round": s.clients,
            "comm_round": s.rounds,
        },
        "validation_args": {"frequency_of_the_test": 1},
        "device_args": {"worker_num": s.clients, "using_gpu": False},
        "comm_args": {"backend": "GRPC", "grpc_ipconfig_path": f"{CONFIG_DIR}/{IPCONFIG_FILE}"},
        "tracking_args": {"enable_wandb": False, "log_file_dir": f"{HOME}/log"},
    }
    return str(yaml.safe_dump(config, sort_keys=False))


def server_host(ns: str) -> str:
    return f"{SERVER}.{ns}.svc.cluster.local"


def verification_host(job: str, rank: int, ns: str) -> str:
    """An Indexed Job's pod `<job>-<index>` under its subdomain (the headless Service VERIFY)."""
    return f"{job}-{rank}.{VERIFY}.{ns}.svc.cluster.local"


def verification_csv(job: str, clients: int, ns: str) -> str:
    """The ip-config of the verification round: the same shape as the federation's, its own pods."""
    rows = ["eid,rank,grpc_server_ip,grpc_server_port,ingress_ip"]
    rows += [f"{rank},{rank},0.0.0.0,{PORT},{verification_host(job, rank, ns)}" for rank in range(clients + 1)]
    return "\n".join(rows) + "\n"


def client_host(rank: int, ns: str) -> str:
    return f"{CLIENTS}-{rank}.{CLIENTS}.{ns}.svc.cluster.local"


def ipconfig_csv(clients: int, ns: str) -> str:
    """FedML 0.9.6's gRPC ip-config: each process binds its row's ip:port; peers dial the row's ingress_ip."""
    rows = ["eid,rank,grpc_server_ip,grpc_server_port,ingress_ip", f"0,0,0.0.0.0,{PORT},{server_host(ns)}"]
    rows += [f"{rank},{rank},0.0.0.0,{PORT},{client_host(rank, ns)}" for rank in range(1, clients + 1)]
    return "\n".join(rows) + "\n"


class FedmlFederation(pulumi.ComponentResource):
    Settings = FedmlSettings
    VERIFIES = True  # `verify` (crossSilo): one real round with every client, as an Indexed Job

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Fedml", name, None, opts)
        s: FedmlSettings = federation.settings
        ns = federation.home_namespace
        self.name, self.settings = name, s
        # Agents (hosted-platform mode) run nothing flstack could start a round of: no verification there.
        self.verifies = bool(federation.verify) and s.mode == "crossSilo"
        namespace = kube.apply(kube.namespace(ns), platform.opts(self, retain_on_delete=True))
        namespace_opts = platform.opts(self, depends_on=[namespace])
        self._platform = platform
        # Default-deny both ways, DNS, the LimitRange backstop and the listed egress; then each mode's peers.
        for obj in kube.baseline(ns, s.egress):
            kube.apply(obj, namespace_opts)
        # FedML never talks to the Kubernetes API: an account without a token.
        kube.apply(kube.service_account("fedml", ns, self._labels("federation")), namespace_opts)
        if s.mode == "agents":
            assert s.agents is not None  # check() refused the config otherwise
            self.outputs = self._agents(ns, s.agents, namespace_opts)
        else:
            self.outputs = self._cross_silo(ns, s, platform, namespace, namespace_opts)
        self.register_outputs(self.outputs)

    # --- crossSilo -----------------------------------------------------------------------------

    def _cross_silo(
        self, ns: str, s: FedmlSettings, platform: Any, namespace: pulumi.Resource, opts: pulumi.ResourceOptions
    ) -> dict[str, Any]:
        config = {CONFIG_FILE: fedml_config(s), IPCONFIG_FILE: ipconfig_csv(s.clients, ns)}
        files_hash = kube.content_hash(*config.values())
        kube.apply(self._config_map(ns, config), opts)
        if s.shared_data is not None:
            shared_class = platform.storage.require_shared("FedML's sharedData")
            kube.apply(
                self._shared_data_claim(ns, s.shared_data, shared_class),
                platform.opts(self, depends_on=[namespace], retain_on_delete=True),
            )
        workloads = [kube.apply(self._server(ns, files_hash), opts)]
        kube.apply(self._server_service(ns), opts)
        kube.apply(self._clients_service(ns), opts)
        workloads.append(kube.apply(self._clients(ns, files_hash), opts))
        kube.apply(self._policy(ns, "server", peer="client"), opts)
        kube.apply(self._policy(ns, "client", peer="server"), opts)
        outputs: dict[str, Any] = {
            "namespace": ns,
            "mode": "crossSilo",
            "serverAddress": f"{server_host(ns)}:{PORT}",
            "clients": s.clients,
            "rounds": s.rounds,
            "logs": f"kubectl -n {ns} logs deploy/{SERVER} -f",
        }
        if self.verifies:
            outputs["verificationLog"] = self._verification(ns, s, workloads, opts)
        return outputs

    def _verification(
        self, ns: str, s: FedmlSettings, workloads: Sequence[pulumi.Resource], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """One real FedAvg round of the federation's image, command, settings and client count, as an Indexed Job
        (index = rank): it completes only when the server and every client finished the round.

        Its own pods, not the federation's: FedML 0.9.6 runs are one-shot and peer-to-peer over pickled gRPC,
        with no API that tells a bystander which clients took part; the Job's pods take the federation's network
        path (Service DNS names under a headless Service, the namespace's policies, the same port) instead.
        """
        script = checks.script(VERIFY_SCRIPT.removesuffix(".py"))
        subject = {"settings": asdict(s), "check": verify.digest(script)}
        job = verify.job_name(f"{self.name}-round", subject)  # what the builder names it: its pods' DNS names
        files: dict[str, pulumi.Input[str]] = {
            CONFIG_FILE: fedml_config(replace(s, rounds=1)),
            IPCONFIG_FILE: job.apply(lambda name: verification_csv(name, s.clients, ns)),
            VERIFY_SCRIPT: script,
        }
        config_map = kube.apply(self._config_map(ns, files, VERIFY, "verify"), opts)
        labels = verify.labels("fedml", self.name)
        headless = {**self._clients_service(ns), "metadata": {"name": VERIFY, "namespace": ns, "labels": labels}}
        headless["spec"] = {**headless["spec"], "selector": kube.selector(labels)}
        service = kube.apply(headless, opts)
        policy = kube.apply(self._policy(ns, "verify", peer="verify"), opts)
        # The federation's node container, started through the wrapper, with the verification's files at CONFIG_DIR.
        container = self._node("node", None, s.server_resources)  # the wrapper gives the rank (the Job's index)
        container.pop("readinessProbe")
        wrapper = ["python3", f"{CONFIG_DIR}/{VERIFY_SCRIPT}", "--ipconfig", f"{CONFIG_DIR}/{IPCONFIG_FILE}"]
        container["command"] = [*wrapper, "--seconds", str(VERIFY_SECONDS), "--", *s.command]
        container["args"] = ["--cf", f"{CONFIG_DIR}/{CONFIG_FILE}"]
        volumes = self._pod([container])["volumes"]
        volumes[0] = {"name": "config", "configMap": {"name": VERIFY}}
        verify.verification_job(
            f"{self.name}-round",
            ns,
            subject=subject,
            container=container,
            volumes=volumes,
            depends_on=[*workloads, config_map, service, policy],
            opts=opts,
            labels=labels,
            uid=UID,
            deadline_seconds=VERIFY_SECONDS + 120,  # the wrapper's bound ends first, with its message
            backoff_limit=0,  # a rank that failed cannot rejoin its round: run it again on the next `up`
            indexed=verify.Indexed(s.clients + 1, VERIFY),
        )
        # Every rank's pod (the builder's `logs job/NAME` shows one of them).
        return job.apply(lambda name: f"kubectl -n {ns} logs -l batch.kubernetes.io/job-name={name} --prefix")

    def _labels(self, component: str) -> dict[str, str]:
        return kube.labels("fedml", component, self.name)

    def _config_map(
        self, ns: str, files: Mapping[str, pulumi.Input[str]], name: str = CONFIG_MAP, component: str = "federation"
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns, "labels": self._labels(component)},
            "data": dict(files),
        }

    def _shared_data_claim(self, ns: str, data: SharedData, storage_class: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared-data", "namespace": ns, "labels": self._labels("federation")},
            "spec": {
                "accessModes": ["ReadWriteMany"],  # the server and every client, on any node, at once
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": data.size}},
            },
        }

    def node_args(self, role: str) -> list[str]:
        """What flstack appends to the user's command; $(FEDML_RANK) is expanded by the kubelet."""
        return ["--cf", f"{CONFIG_DIR}/{CONFIG_FILE}", "--rank", "$(FEDML_RANK)", "--role", role]

    def _node(self, role: str, rank_env: dict[str, Any] | None, resources: Resources) -> dict[str, Any]:
        s = self.settings
        mounts = [{"name": "config", "mountPath": CONFIG_DIR, "readOnly": True}, *SCRATCH_MOUNTS]
        if s.shared_data is not None:
            mounts.append({"name": "data", "mountPath": s.shared_data.mount_path, "readOnly": s.shared_data.read_only})
        return {
            "name": role,
            "image": self._platform.image(s.image),
            "imagePullPolicy": "IfNotPresent",
            "command": list(s.command),
            "args": self.node_args(role),
            "workingDir": HOME,  # writable: FedML and apps write relative paths
            "env": [rank_env, *PLATFORM_ENV] if rank_env else list(PLATFORM_ENV),
            "ports": [{"name": "grpc", "containerPort": PORT, "protocol": "TCP"}],
            "volumeMounts": mounts,
            "resources": resources.manifest(),
            "securityContext": kube.container_security(),
            "readinessProbe": {"tcpSocket": {"port": "grpc"}, "periodSeconds": 10},
        }

    def _pod(self, containers: list[dict[str, Any]], init: list[dict[str, Any]] | None = None) -> dict[str, Any]:
        s = self.settings
        volumes: list[dict[str, Any]] = [{"name": "config", "configMap": {"name": CONFIG_MAP}}, *SCRATCH_VOLUMES]
        if s.shared_data is not None:
            volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}})
        pod: dict[str, Any] = {
            "serviceAccountName": "fedml",
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security(UID),
            "containers": containers,
            "volumes": volumes,
        }
        if init:
            pod["initContainers"] = init
        return pod

    def _server(self, ns: str, files_hash: pulumi.Input[str]) -> dict[str, Any]:
        labels = self._labels("server")
        container = self._node("server", {"name": "FEDML_RANK", "value": "0"}, self.settings.server_resources)
        container["livenessProbe"] = {"tcpSocket": {"port": "grpc"}, "periodSeconds": 20, "failureThreshold": 3}
        annotations = {"flstack.dev/files-sha256": files_hash}  # a changed config restarts the run
        # Recreate: never two servers of one federation (the clients would split between them).
        return kube.deployment(
            SERVER, ns, labels, kube.selector(labels), self._pod([container]), annotations, recreate=True
        )

    def _server_service(self, ns: str) -> dict[str, Any]:
        labels = self._labels("server")
        port = {"name": "grpc", "port": PORT, "targetPort": "grpc", "protocol": "TCP", "appProtocol": "grpc"}
        return kube.exposed_service(SERVER, ns, labels, kube.selector(labels), [port], self.settings.exposure)

    def _clients_service(self, ns: str) -> dict[str, Any]:
        """Headless: a DNS name per client pod, the address the server dials back (before it is Ready, too)."""
        labels = self._labels("client")
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": CLIENTS, "namespace": ns, "labels": labels},
            "spec": {
                "clusterIP": "None",
                "publishNotReadyAddresses": True,
                "selector": kube.selector(labels),
                "ports": [{"name": "grpc", "port": PORT, "protocol": "TCP", "appProtocol": "grpc"}],
            },
        }

    def _python(self, name: str, script: str, *argv: str) -> dict[str, Any]:
        """A small python3 step in the user's image (which has Python: it runs FedML)."""
        return {
            "name": name,
            "image": self._platform.image(self.settings.image),
            "imagePullPolicy": "IfNotPresent",
            "command": ["python3", "-c", script, *argv],
            "resources": Resources(cpu="10m", memory="64Mi").manifest(),
            "securityContext": kube.container_security(),
        }

    def _clients(self, ns: str, files_hash: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        labels = self._labels("client")
        rank = {"name": "FEDML_RANK", "valueFrom": {"fieldRef": {"fieldPath": POD_INDEX}}}
        container = self._node("client", rank, s.client_resources)
        probe = self._python("probe", PROBE_SCRIPT, server_host(ns), str(PORT))["command"]
        container["livenessProbe"] = {
            "exec": {"command": probe},
            "periodSeconds": 20,
            "timeoutSeconds": 5,
            "failureThreshold": 3,
        }
        wait = self._python("wait-for-server", WAIT_SCRIPT, server_host(ns), str(PORT))
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": CLIENTS, "namespace": ns, "labels": labels},
            "spec": {
                "serviceName": CLIENTS,
                "replicas": s.clients,
                "ordinals": {"start": 1},  # pod index = FedML rank (the server is rank 0)
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": kube.selector(labels)},
                "template": {
                    "metadata": {"labels": labels, "annotations": {"flstack.dev/files-sha256": files_hash}},
                    "spec": self._pod([container], init=[wait]),
                },
            },
        }

    def _policy(self, ns: str, component: str, peer: str) -> dict[str, Any]:
        """Ingress from and egress to the federation's peers on the gRPC port only (DNS: allow-dns)."""
        peers = [{"podSelector": {"matchLabels": kube.selector(self._labels(peer))}}]
        ports = [{"protocol": "TCP", "port": PORT}]
        return kube.network_policy(
            f"fedml-{component}",
            ns,
            kube.selector(self._labels(component)),
            ingress=[{"from": peers, "ports": ports}],
            egress=[{"to": peers, "ports": ports}],
            labels=self._labels(component),
        )

    # --- agents --------------------------------------------------------------------------------

    def _agents(self, ns: str, agents: FedmlAgents, opts: pulumi.ResourceOptions) -> dict[str, Any]:
        kube.apply(self._account_secret(ns, agents), opts)
        kube.apply(self._agents_policy(ns), opts)
        names = [f"fedml-edge-server-{i}" for i in range(agents.servers)]
        names += [f"fedml-edge-client-{i}" for i in range(agents.clients)]
        for name in names:
            kube.apply(self._agent(ns, agents, name), opts)
        return {"namespace": ns, "mode": "agents", "agents": names, "platform": agents.platform}

    def _account_secret(self, ns: str, agents: FedmlAgents) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": ACCOUNT_SECRET, "namespace": ns, "labels": self._labels("agent")},
            "type": "Opaque",
            "stringData": {"account-id": agents.account_id.output()},
        }

    def _agent(self, ns: str, agents: FedmlAgents, name: str) -> dict[str, Any]:
        role = "server" if "-server-" in name else "client"
        prefix = role.upper()
        labels = {**self._labels("agent"), ROLE_LABEL: name}
        account = {"secretKeyRef": {"name": ACCOUNT_SECRET, "key": "account-id"}}
        # The env of both FedML chart families: ACCOUNT_ID + ROLE (fedml-edge-client-server), and
        # FEDML_VERSION + *_OS_NAME + *_DEVICE_ID (the edge-client/edge-server agent images).
        env = [
            {"name": "ACCOUNT_ID", "valueFrom": account},
            *kube.env(
                ("ROLE", role),
                ("FEDML_VERSION", agents.platform),
                (f"{prefix}_OS_NAME", "Linux"),
                (f"{prefix}_DEVICE_ID", f"{self.name}-{name}"),  # stable across restarts: one device, not many
                ("HOME", HOME),
            ),
        ]
        container = {
            "name": "agent",
            "image": self._platform.image(agents.image),
            "imagePullPolicy": "IfNotPresent",
            "env": env,
            # HOME holds what the charts keep on a hostPath (/home/fedml/fedml-client|server).
            "volumeMounts": [*SCRATCH_MOUNTS],
            "resources": agents.resources.manifest(),
            # Read-only root like every flstack pod: a run's packages must be in the image, not pip-installed.
            "securityContext": kube.container_security(),
        }
        pod = {
            "serviceAccountName": "fedml",
            "automountServiceAccountToken": False,
            "securityContext": kube.pod_security(UID),
            "containers": [container],
            "volumes": SCRATCH_VOLUMES,  # emptyDirs, not the charts' hostPath
        }
        return kube.deployment(name, ns, labels, kube.selector(labels, ROLE_LABEL), pod, recreate=True)

    def _agents_policy(self, ns: str) -> dict[str, Any]:
        """Agents accept nothing and dial only the hosted platform: HTTPS (API, S3) and MQTT, outside the cluster."""
        private = ["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "169.254.0.0/16", "100.64.0.0/10"]
        return kube.network_policy(
            "fedml-agents",
            ns,
            kube.selector(self._labels("agent")),
            ingress=[],
            egress=[{"to": [{"ipBlock": {"cidr": "0.0.0.0/0", "except": private}}], "ports": kube.tcp(443, 1883)}],
            labels=self._labels("agent"),
        )
