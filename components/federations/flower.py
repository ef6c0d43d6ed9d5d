"""Flower: a SuperLink and N SuperNodes in the federation's namespace, TLS on by default.

The SuperNodes of a group are one StatefulSet: the pod index (from `spec.ordinals.start` = the group's
first partition) is the partition id, so the number of Kubernetes resources does not grow with N.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import pulumi
import pulumi_tls as tls

from components import checks, kube, pki, stack_refs, verify
from components.config import FederationConfig
from components.config.model import (
    CIDR_HELP,
    DNS_LABEL,
    DNS_LABEL_HELP,
    QUANTITY,
    QUANTITY_HELP,
    Egress,
    Exposure,
    Resources,
    Toleration,
    is_cidr,
    open_cidrs,
)
from components.config.schema import rule
from components.federations import flower_silo
from components.federations.flower_silo import FlowerJoin, FlowerParticipant

UID = 49999  # the `app` user of the flwr images
PORT = 8000  # one HTTP(S) port for the Fleet, Control and Runtime APIs since Flower 1.40
HEALTH_PORT = 8081  # SuperNode gRPC health server (its own runtime API stays on 127.0.0.1:9094)
SERVICE = "superlink"
STATE_DIR = "/var/lib/flwr"
TLS_DIR = "/etc/flwr/tls"
CA_DIR = "/etc/flwr/ca"
AUTH_DIR = "/etc/flwr/auth"
HOME = "/home/app"  # an emptyDir: the root filesystem is read-only, Flower writes to HOME and FLWR_HOME
GROUP_LABEL = "flstack.dev/supernode-group"
PARTITION_LABEL = "flstack.dev/partition"  # with node auth: one StatefulSet per partition
CA_FILE_PLACEHOLDER = "@CA_FILE@"
VERIFY_DIR = "/etc/flstack/verify"  # the verification Job's script and the smoke app (a ConfigMap)
SMOKE_APP = Path(__file__).resolve().parents[2] / "examples" / "flower-smoke"  # the in-repo app the Job runs
NodeConfigValue = str | int | float | bool
# Defaults when a resources block leaves cpu or memory out (every container gets requests and a memory limit).
SUPERLINK_RESOURCES = Resources(cpu="250m", memory="512Mi")
SUPERNODE_RESOURCES = Resources(cpu="500m", memory="1Gi")
SERVERAPP_RESOURCES = Resources(cpu="250m", memory="512Mi")
# A process that only relays messages: the SuperNode beside its ClientApp sidecar, the registration Job.
AGENT_RESOURCES = Resources(cpu="100m", memory="512Mi")


@dataclass(frozen=True)
class SupernodeGroup:
    """SuperNodes sharing a shape (GPU vs CPU silos); partition ids continue from the previous group."""

    name: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    replicas: int = rule(1, min=1)
    resources: Resources = field(default_factory=Resources)
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: list[Toleration] = field(default_factory=list)
    node_config: dict[str, NodeConfigValue] = field(default_factory=dict)


@dataclass(frozen=True)
class SharedData:
    """A ReadWriteMany volume (the stack's `shared` storage) mounted into every SuperNode, e.g. datasets."""

    size: str = rule("10Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    mount_path: str = rule("/data", pattern=r"/[A-Za-z0-9_./-]*", pattern_help="an absolute path such as /data")
    read_only: bool = True


@dataclass(frozen=True)
class FlowerSettings:
    version: str = rule("1.41.0", pattern=r"[0-9]+\.[0-9]+\.[0-9]+", pattern_help="a Flower release such as 1.41.0")
    supernodes: int | None = rule(None, min=1)  # one group called `default`; or use `groups`
    groups: list[SupernodeGroup] = field(default_factory=list)
    insecure: bool = False  # plaintext: must be asked for
    isolation: Literal["subprocess", "process"] = "subprocess"
    # Off by default: pods have read-only root filesystems and apps should ship their dependencies.
    install_app_dependencies: bool = False
    node_auth: bool = False
    node_config: dict[str, NodeConfigValue] = field(default_factory=dict)  # added to every SuperNode
    database_size: str = rule("1Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    superlink_resources: Resources = field(default_factory=lambda: SUPERLINK_RESOURCES)
    # The training: the SuperNode container, or with `isolation: process` its ClientApp (superexec) sidecar.
    supernode_resources: Resources = field(default_factory=lambda: SUPERNODE_RESOURCES)
    # With `isolation: process`: the superexec-serverapp Deployment that runs the ServerApps.
    serverapp_resources: Resources = field(default_factory=lambda: SERVERAPP_RESOURCES)
    exposure: Exposure = field(default_factory=Exposure)
    # SuperNodes or `flwr` users outside this federation's namespace that may reach the SuperLink.
    allowed_cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Where ClientApps and ServerApps may connect besides the SuperLink and DNS (default: nowhere).
    egress: Egress = field(default_factory=Egress)
    shared_data: SharedData | None = None
    # Cross-silo (components/federations/flower_silo.py): SuperNodes only, joining another stack's SuperLink...
    join: FlowerJoin | None = None
    # ... or, on the hub, the participant stacks whose SuperNodes it admits and registers.
    participants: list[FlowerParticipant] = field(default_factory=list)
    # Partitions of the whole federation (each ClientApp's num-partitions); default: this stack's SuperNodes.
    num_partitions: int | None = rule(None, min=1)

    def images(self) -> list[str]:
        kinds = ["superlink", "supernode", *(["superexec"] if self.isolation == "process" else [])]
        return [image(kind, self.version) for kind in kinds]

    def shared_storage_keys(self) -> list[str]:
        """The settings that need the stack's ReadWriteMany `shared` storage (checked before anything exists)."""
        return ["sharedData"] if self.shared_data is not None else []

    def shared_storage_claims(self) -> list[tuple[str, str]]:
        """(settings key, requested size) of each claim on the `shared` class: checked against the kind's floor."""
        return [("sharedData.size", self.shared_data.size)] if self.shared_data is not None else []

    def check(self) -> Iterator[tuple[str, str]]:
        yield from _check_node_config("nodeConfig", self.node_config)
        for i, group in enumerate(self.groups):
            if group is not None:
                yield from _check_node_config(f"groups[{i}].nodeConfig", group.node_config)
        ack = self.exposure.allow_internet
        yield from open_cidrs("allowedCidrs", self.allowed_cidrs, ack, "exposure.allowInternet")
        if self.exposure.type == "NodePort" and not self.allowed_cidrs:
            # externalTrafficPolicy Local keeps client IPs: without listed CIDRs the NetworkPolicy admits nobody.
            yield "allowedCidrs", "required with exposure type 'NodePort': list the CIDRs of the SuperNodes outside"
        if self.supernodes is not None and self.groups:
            yield "supernodes", "set either supernodes (one default group) or groups, not both"
        names = [g.name for g in self.groups if g is not None]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            yield "groups", f"group name {dup!r} is used twice"
        yield from flower_silo.check(self)

    def supernode_groups(self) -> list[SupernodeGroup]:
        """The groups, each with cpu and memory (a group's own, else supernodeResources, else the defaults)."""
        resources = self.supernode_resources.over(SUPERNODE_RESOURCES)
        if self.groups:
            return [replace(g, resources=g.resources.over(resources)) for g in self.groups]
        return [SupernodeGroup(name="default", replicas=self.supernodes or 2, resources=resources)]


NODE_CONFIG_KEY = r"[A-Za-z0-9_.-]+"
RESERVED_NODE_CONFIG = ("partition-id", "num-partitions")  # set per pod by flstack


def _check_node_config(key: str, values: dict[str, NodeConfigValue]) -> Iterator[tuple[str, str]]:
    for name in values:
        if name in RESERVED_NODE_CONFIG:
            yield f"{key}.{name}", "is set by flstack for each SuperNode (its partition): remove it"
        elif not re.fullmatch(NODE_CONFIG_KEY, name):
            yield f"{key}.{name}", f"expected a key of letters, digits, '_', '.' or '-', got {name!r}"


def image(kind: str, version: str) -> str:
    return f"flwr/{kind}:{version}"


def node_config_text(values: dict[str, NodeConfigValue]) -> str:
    """Flower's `--node-config` syntax: space-separated key=value, strings quoted."""

    def value(v: NodeConfigValue) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        return json.dumps(v) if isinstance(v, str) else str(v)

    return " ".join(f"{k}={value(v)}" for k, v in values.items())


HOME_ENV = kube.env(
    ("HOME", HOME),
    ("FLWR_HOME", f"{HOME}/.flwr"),
    # No phoning home from inside the cluster: no telemetry, no update check.
    ("FLWR_TELEMETRY_ENABLED", "0"),
    ("FLWR_DISABLE_UPDATE_CHECK", "1"),
)
SCRATCH_MOUNTS, SCRATCH_VOLUMES = kube.scratch_volumes(HOME)


class FlowerFederation(pulumi.ComponentResource):
    Settings = FlowerSettings
    VERIFIES = True  # `verify`: a Job runs the smoke app and checks every partition took part

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Flower", name, None, opts)
        s: FlowerSettings = federation.settings
        ns = federation.home_namespace
        self.namespace = ns
        self.settings = s
        self.verify = bool(federation.verify)
        self._platform = platform
        self.name = name
        fqdn = f"{SERVICE}.{ns}.svc.cluster.local"
        self.address = f"{fqdn}:{PORT}"
        self._dial: pulumi.Input[str] = self.address  # where SuperNodes dial: the hub's public address when joining

        # Retained like the state volume inside it: deleting a namespace deletes its claims.
        namespace = kube.apply(kube.namespace(ns), platform.opts(self, retain_on_delete=True))
        namespace_opts = platform.opts(self, depends_on=[namespace])  # everything below lives in it
        self._namespace, self._namespace_opts = namespace, namespace_opts
        for obj in kube.baseline(ns, s.egress):
            kube.apply(obj, namespace_opts)
        # Pods roll when the files they mount change (a re-issued certificate must reach the process).
        self._superlink_files: pulumi.Input[str] | None = None
        self._supernode_files: pulumi.Input[str] | None = None
        # Flower never talks to the Kubernetes API: no token.
        kube.apply(kube.service_account("flower", ns, self._labels("superlink")), namespace_opts)
        if s.shared_data is not None:
            kube.apply(
                self._shared_data_claim(ns, s.shared_data, platform.storage.require_shared("Flower's sharedData")),
                platform.opts(self, depends_on=[namespace], retain_on_delete=True),
            )
        if s.join is not None:
            self.outputs = self._participant(ns, s.join)
        else:
            self.outputs = self._hub(ns, fqdn)
        self.register_outputs(self.outputs)

    def _hub(self, ns: str, fqdn: str) -> dict[str, Any]:
        """The SuperLink and this stack's own SuperNodes (and, cross-silo, the participants it admits)."""
        s, name, platform, namespace_opts = self.settings, self.name, self._platform, self._namespace_opts
        kube.apply(self._superlink_egress(ns), namespace_opts)
        ca_pem: pulumi.Input[str] | None = None
        if not s.insecure:
            tls_opts = pulumi.ResourceOptions(parent=self, provider=platform.tls)
            ca = pki.CertificateAuthority(f"{name}-flower", f"{name} Flower CA", tls_opts)
            # The subprocess SuperExec inside the SuperLink pod dials 127.0.0.1: it must be a SAN too.
            hosts = [*kube.service_dns_names(SERVICE, ns), "127.0.0.1", *s.exposure.hostnames]
            server = ca.server_certificate(f"{name}-superlink", fqdn, hosts)
            ca_pem = ca.cert.cert_pem
            self._superlink_files = kube.content_hash(server.cert.cert_pem, ca_pem)
            self._supernode_files = kube.content_hash(ca_pem)
            kube.apply(self._tls_secret(ns, server, ca_pem), namespace_opts)
            kube.apply(self._ca_config_map(ns, ca_pem), namespace_opts)

        node_keys = self._node_keys(ns)
        registered: pulumi.Input[dict[str, str]] | None = None
        if node_keys:
            registered = self._registered_keys(node_keys)
            kube.apply(self._public_keys(ns, registered), namespace_opts)

        state = kube.apply(
            kube.claim("superlink-state", ns, s.database_size, platform.storage.data_class, self._labels("superlink")),
            # The SuperLink database outlives the pods, `pulumi destroy` and replacements.
            platform.opts(self, depends_on=[self._namespace], retain_on_delete=True),
        )
        superlink = kube.apply(self._superlink(ns), platform.opts(self, depends_on=[state]))
        workloads: list[pulumi.Resource] = [superlink]  # what the verification Job waits for
        kube.apply(self._superlink_service(ns), namespace_opts)
        kube.apply(self._superlink_policy(ns), namespace_opts)
        if s.isolation == "process":
            workloads.append(kube.apply(self._serverapp_superexec(ns), namespace_opts))
        if registered is not None:
            # Keys can only be registered with a running SuperLink (the Deployment is awaited until ready).
            register = self._register_job(ns, registered)
            workloads.append(kube.apply(register, platform.opts(self, depends_on=[superlink])))
        workloads += self._deploy_supernodes(ns, node_keys, first_partition=0, num_partitions=s.num_partitions)
        total = sum(g.replicas for g in s.supernode_groups())
        verification: dict[str, Any] = {}
        if self.verify:
            kube.apply(self._verify_files(ns), namespace_opts)
            job = verify.verification_job(
                "verify",
                ns,
                **self._verification(ns, total, ca_pem),
                depends_on=workloads,
                opts=namespace_opts,
                labels=verify.labels("flower", name),
                uid=UID,
                service_account="flower",
            )
            verification = {"verificationLog": verify.log_command(job)}

        return {
            "namespace": ns,
            "superlinkAddress": self.address,
            "supernodes": total,
            "tls": not s.insecure,
            "caCertificate": ca_pem,
            "flwrConfig": self._flwr_config(name, self.address),
            # From a laptop: the certificate also holds 127.0.0.1, so a port-forward just works.
            "portForward": f"kubectl -n {ns} port-forward svc/{SERVICE} {PORT}:{PORT}",
            "flwrConfigPortForward": self._flwr_config(name, f"127.0.0.1:{PORT}"),
            **verification,
            # What participant stacks read (flower.join): all public. publicAddress only when exposed by name.
            **flower_silo.hub_exports(s, PORT),
        }

    def _participant(self, ns: str, join: FlowerJoin) -> dict[str, Any]:
        """SuperNodes only, dialling the hub stack's SuperLink with the hub's CA; their keys never leave here."""
        s, namespace_opts = self.settings, self._namespace_opts
        key = f"{stack_refs.federation_key(self.name)}.flower.join"
        ca_pem = flower_silo.hub_output(join, "caCertificate", key)
        self._dial = pulumi.Output.all(
            flower_silo.hub_output(join, "publicAddress", key), flower_silo.hub_output(join, "nodeAuth", key)
        ).apply(lambda hub: flower_silo.checked_address(join, hub[0], hub[1], s.node_auth, key))
        self._supernode_files = kube.content_hash(ca_pem)
        kube.apply(self._ca_config_map(ns, ca_pem), namespace_opts)
        kube.apply(self._hub_egress(ns, join), namespace_opts)
        node_keys = self._node_keys(ns)
        # No verification Job here: it drives the smoke app through a SuperLink's Control API (the hub's).
        self._deploy_supernodes(ns, node_keys, join.first_partition, s.num_partitions)
        total = sum(g.replicas for g in s.supernode_groups())
        return {
            "namespace": ns,
            "joins": join.stack,
            "superlinkAddress": self._dial,
            "supernodes": total,
            "tls": True,
            "partitions": [join.first_partition, join.first_partition + total - 1],
            # Only public keys leave this stack: the hub registers them (its second `pulumi up`).
            "supernodePublicKeys": [k.public_key_openssh for k in node_keys],
        }

    def _node_keys(self, ns: str) -> list[tls.PrivateKey]:
        """With node auth: one key per SuperNode, each in its own Secret mounted by that SuperNode only."""
        s, name = self.settings, self.name
        if not s.node_auth:
            return []
        total = sum(g.replicas for g in s.supernode_groups())
        keys = [
            tls.PrivateKey(
                f"{name}-supernode-{i}-auth",
                algorithm="ECDSA",
                ecdsa_curve="P384",
                opts=pulumi.ResourceOptions(parent=self, provider=self._platform.tls),
            )
            for i in range(total)
        ]
        for i, key in enumerate(keys):
            kube.apply(self._auth_secret(ns, i + self._first_partition(), key), self._namespace_opts)
        return keys

    def _first_partition(self) -> int:
        return self.settings.join.first_partition if self.settings.join is not None else 0

    def _registered_keys(self, node_keys: list[tls.PrivateKey]) -> pulumi.Output[dict[str, str]]:
        """The public keys the hub registers: its own SuperNodes' and every listed participant's."""
        own = pulumi.Output.all(*[k.public_key_openssh for k in node_keys]).apply(
            lambda keys: {f"node-{i}.pub": key for i, key in enumerate(keys)}
        )
        if not self.settings.participants:
            return own
        theirs = flower_silo.participant_keys(self.settings, self.name)
        return pulumi.Output.all(own, theirs).apply(lambda both: {**both[0], **both[1]})

    def _deploy_supernodes(
        self, ns: str, node_keys: list[tls.PrivateKey], first_partition: int, num_partitions: int | None
    ) -> list[pulumi.Resource]:
        """The SuperNode StatefulSets; partitions first_partition.. in group order."""
        s, namespace_opts = self.settings, self._namespace_opts
        total = sum(g.replicas for g in s.supernode_groups())
        num_partitions = num_partitions or first_partition + total
        kube.apply(self._supernode_service(ns), namespace_opts)
        workloads: list[pulumi.Resource] = []
        offset = first_partition
        for group in s.supernode_groups():
            if node_keys:  # a StatefulSet per node: each pod mounts its own key, so N objects here
                for partition in range(offset, offset + group.replicas):
                    key = node_keys[partition - first_partition]
                    key_files = kube.content_hash(key.public_key_openssh)  # same key, not secret
                    obj = self._supernodes(ns, group, partition, 1, num_partitions, key_files)
                    workloads.append(kube.apply(obj, namespace_opts))
            else:
                obj = self._supernodes(ns, group, offset, group.replicas, num_partitions)
                workloads.append(kube.apply(obj, namespace_opts))
            offset += group.replicas
        return workloads

    # --- objects -------------------------------------------------------------------------------

    def _labels(self, component: str) -> dict[str, str]:
        return kube.labels("flower", component, self.name)

    def _tls_secret(self, ns: str, server: pki.ServerCertificate, ca_pem: pulumi.Input[str]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "superlink-tls", "namespace": ns, "labels": self._labels("superlink")},
            "type": "kubernetes.io/tls",
            "stringData": {
                "tls.crt": server.cert.cert_pem,
                "tls.key": pulumi.Output.secret(server.key.private_key_pem),
                "ca.crt": ca_pem,
            },
        }

    def _ca_config_map(self, ns: str, ca_pem: pulumi.Input[str]) -> dict[str, Any]:
        # SuperNodes only need to trust the CA: they never see the server's key.
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flower-ca", "namespace": ns, "labels": self._labels("supernode")},
            "data": {"ca.crt": ca_pem},
        }

    def _auth_secret(self, ns: str, partition: int, key: tls.PrivateKey) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"supernode-{partition}-auth", "namespace": ns, "labels": self._labels("supernode")},
            "type": "Opaque",
            # Flower reads SuperNode keys in OpenSSH format (EC, NIST curve).
            "stringData": {"node.key": pulumi.Output.secret(key.private_key_openssh)},
        }

    def _public_keys(self, ns: str, keys: pulumi.Input[dict[str, str]]) -> dict[str, Any]:
        """What the registration Job needs: public keys only (this stack's and its participants')."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "supernode-public-keys", "namespace": ns, "labels": self._labels("superexec")},
            "data": keys,
        }

    def _shared_data_claim(self, ns: str, data: SharedData, storage_class: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": "shared-data", "namespace": ns, "labels": self._labels("supernode")},
            "spec": {
                "accessModes": ["ReadWriteMany"],  # every SuperNode, on any node, at once
                "storageClassName": storage_class,
                "resources": {"requests": {"storage": data.size}},
            },
        }

    def superlink_args(self) -> list[str]:
        s = self.settings
        args = ["--host", "0.0.0.0", "--port", str(PORT), "--database", f"{STATE_DIR}/state.db"]
        args += ["--isolation", s.isolation]
        if s.insecure:
            args.append("--insecure")
        else:
            args += [
                "--ssl-ca-certfile",
                f"{TLS_DIR}/ca.crt",
                "--ssl-certfile",
                f"{TLS_DIR}/tls.crt",
                "--ssl-keyfile",
                f"{TLS_DIR}/tls.key",
            ]
        if not s.install_app_dependencies:
            args.append("--disable-runtime-dependency-installation")
        if s.node_auth:
            args.append("--enable-supernode-auth")
        return args

    def _superlink(self, ns: str) -> dict[str, Any]:
        s = self.settings
        labels = self._labels("superlink")
        scheme = "HTTP" if s.insecure else "HTTPS"
        mounts = [{"name": "state", "mountPath": STATE_DIR}, *SCRATCH_MOUNTS]
        volumes: list[dict[str, Any]] = [
            {"name": "state", "persistentVolumeClaim": {"claimName": "superlink-state"}},
            *SCRATCH_VOLUMES,
        ]
        if not s.insecure:
            mounts.append({"name": "tls", "mountPath": TLS_DIR, "readOnly": True})
            volumes.append({"name": "tls", "secret": {"secretName": "superlink-tls", "defaultMode": 0o440}})
        container = {
            "name": "superlink",
            "image": self._image("superlink"),
            "args": self.superlink_args(),
            "env": HOME_ENV,
            "ports": [{"name": "flower", "containerPort": PORT, "protocol": "TCP"}],
            "volumeMounts": mounts,
            "resources": s.superlink_resources.over(SUPERLINK_RESOURCES).manifest(),
            "securityContext": kube.container_security(),
            "startupProbe": _http_probe(scheme, period=5, failures=24),
            "readinessProbe": _http_probe(scheme, period=10, failures=3),
            "livenessProbe": _http_probe(scheme, period=20, failures=3),
        }
        annotations = _files_annotation(self._superlink_files).get("annotations")
        # Recreate: one writer on a ReadWriteOnce database volume.
        pod = _pod([container], volumes)
        return kube.deployment("superlink", ns, labels, _selector(labels), pod, annotations, recreate=True)

    def _superlink_service(self, ns: str) -> dict[str, Any]:
        port = {
            "name": "flower",
            "port": PORT,
            "targetPort": "flower",
            "protocol": "TCP",
            "appProtocol": "http" if self.settings.insecure else "https",
        }
        labels = self._labels("superlink")
        exposure, annotations = self.settings.exposure, self._platform.load_balancer_annotations
        if exposure.type == "LoadBalancer" and self.settings.participants:  # the participants may connect too
            ranges = sorted({*exposure.source_ranges, *flower_silo.participant_cidrs(self.settings)})
            exposure = replace(exposure, source_ranges=ranges)
        return kube.exposed_service(SERVICE, ns, labels, _selector(labels), [port], exposure, annotations)

    def _superlink_policy(self, ns: str) -> dict[str, Any]:
        s = self.settings
        peers: list[dict[str, Any]] = [
            {"podSelector": {"matchLabels": _selector(self._labels("supernode"))}},
            {"podSelector": {"matchLabels": _selector(self._labels("superexec"))}},
        ]
        if self.verify:  # the verification Job's pod, and only while verification is on
            peers.append(verify.peer("flower", self.name))
        cidrs = sorted({*s.allowed_cidrs, *s.exposure.source_ranges, *flower_silo.participant_cidrs(s)})
        peers += [{"ipBlock": {"cidr": cidr}} for cidr in cidrs]
        return kube.network_policy(
            "superlink-ingress",
            ns,
            _selector(self._labels("superlink")),
            ingress=[{"from": peers, "ports": kube.tcp(PORT)}],
            labels=self._labels("superlink"),
        )

    def _superlink_egress(self, ns: str) -> dict[str, Any]:
        """Every Flower pod of this federation may dial the SuperLink (SuperNodes, ServerApp SuperExec, the Job)."""
        everyone = {"app.kubernetes.io/name": "flower", "app.kubernetes.io/part-of": self.name}
        superlink = {"podSelector": {"matchLabels": _selector(self._labels("superlink"))}}
        return kube.allow_egress(ns, "flower-to-superlink", everyone, [superlink], kube.tcp(PORT))

    def _hub_egress(self, ns: str, join: FlowerJoin) -> dict[str, Any]:
        """A participant's SuperNodes may dial the hub's public SuperLink address, and nothing else outside."""
        supernodes = _selector(self._labels("supernode"))
        peers = [{"ipBlock": {"cidr": cidr}} for cidr in join.superlink_cidrs]
        port = pulumi.Output.from_input(self._dial).apply(lambda address: int(address.rpartition(":")[2]))
        return kube.allow_egress(ns, "supernodes-to-hub", supernodes, peers, [{"protocol": "TCP", "port": port}])

    def _image(self, kind: str) -> str:
        return str(self._platform.image(image(kind, self.settings.version)))

    def _trust_args(self) -> list[str]:
        return ["--insecure"] if self.settings.insecure else ["--root-certificates", f"{CA_DIR}/ca.crt"]

    def supernode_args(self, group: SupernodeGroup, total: int) -> list[pulumi.Input[str]]:
        s = self.settings
        # $(PARTITION_ID) is expanded by the kubelet from the pod's env (its StatefulSet index): no shell.
        node_config = node_config_text(
            {"partition-id": "$(PARTITION_ID)", "num-partitions": total, **s.node_config, **group.node_config}
        ).replace('"$(PARTITION_ID)"', "$(PARTITION_ID)")
        args: list[pulumi.Input[str]] = ["--superlink", self._dial, *self._trust_args(), "--node-config", node_config]
        args += ["--isolation", s.isolation, "--health-server-address", f"0.0.0.0:{HEALTH_PORT}"]
        if s.install_app_dependencies:
            args.append("--allow-runtime-dependency-installation")
        if s.node_auth:
            args += ["--auth-supernode-private-key", f"{AUTH_DIR}/node.key"]
        return args

    def _supernodes(
        self,
        ns: str,
        group: SupernodeGroup,
        first: int,
        replicas: int,
        total: int,
        key_files: pulumi.Input[str] | None = None,
    ) -> dict[str, Any]:
        """Partitions first..first+replicas-1 of `group`; with node auth, one node and its own key Secret."""
        s = self.settings
        labels = {**self._labels("supernode"), GROUP_LABEL: group.name}
        name = f"supernodes-{group.name}"
        if s.node_auth:
            labels[PARTITION_LABEL] = str(first)
            name = f"{name}-{first}"
        mounts = list(SCRATCH_MOUNTS)
        volumes: list[dict[str, Any]] = list(SCRATCH_VOLUMES)
        if not s.insecure:
            mounts.append({"name": "ca", "mountPath": CA_DIR, "readOnly": True})
            volumes.append({"name": "ca", "configMap": {"name": "flower-ca"}})
        if s.node_auth:
            mounts.append({"name": "auth", "mountPath": AUTH_DIR, "readOnly": True})
            auth = {"secretName": f"supernode-{first}-auth", "defaultMode": 0o440}
            volumes.append({"name": "auth", "secret": auth})
        data_mounts = []
        if s.shared_data is not None:
            data = s.shared_data
            data_mounts = [{"name": "data", "mountPath": data.mount_path, "readOnly": data.read_only}]
            mounts += data_mounts
            volumes.append({"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}})
        env = [
            {
                "name": "PARTITION_ID",
                "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['apps.kubernetes.io/pod-index']"}},
            },
            *HOME_ENV,
        ]
        # The ClientApp (the training) runs in the SuperNode, or with `isolation: process` in its superexec
        # sidecar: that container gets the group's resources and GPUs, the SuperNode only what relaying needs.
        process = s.isolation == "process"
        containers: list[dict[str, Any]] = [
            {
                "name": "supernode",
                "image": self._image("supernode"),
                "args": self.supernode_args(group, total),
                "env": env,
                "volumeMounts": mounts,
                "resources": (AGENT_RESOURCES if process else group.resources).manifest(),
                "securityContext": kube.container_security(),
                "readinessProbe": {"grpc": {"port": HEALTH_PORT}, "periodSeconds": 10},
                "livenessProbe": {"grpc": {"port": HEALTH_PORT}, "periodSeconds": 20, "failureThreshold": 3},
            }
        ]
        if process:
            sidecar = self._superexec_container("127.0.0.1:9094", insecure=True, resources=group.resources)
            sidecar["volumeMounts"] += data_mounts  # the ClientApp reads the data
            containers.append(sidecar)
        pod = _pod(containers, volumes)
        if group.node_selector:
            pod["nodeSelector"] = group.node_selector
        if group.tolerations:
            pod["tolerations"] = [t.manifest() for t in group.tolerations]
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": name, "namespace": ns, "labels": labels},
            "spec": {
                "serviceName": "supernodes",
                "replicas": replicas,
                # Pod index = partition id: groups take consecutive ranges of partitions.
                "ordinals": {"start": first},
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": _selector(labels)},
                "template": {
                    "metadata": {"labels": labels, **_files_annotation(self._supernode_files, key_files)},
                    "spec": pod,
                },
            },
        }

    def _supernode_service(self, ns: str) -> dict[str, Any]:
        """Headless: gives the StatefulSets' pods stable DNS names; SuperNodes accept no connections."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "supernodes", "namespace": ns, "labels": self._labels("supernode")},
            "spec": {
                "clusterIP": "None",
                "selector": _selector(self._labels("supernode")),
                "ports": [{"name": "health", "port": HEALTH_PORT, "protocol": "TCP"}],
            },
        }

    def _superexec_container(self, runtime_address: str, insecure: bool, resources: Resources) -> dict[str, Any]:
        trust = ["--insecure"] if insecure else ["--root-certificates", f"{CA_DIR}/ca.crt"]
        return {
            "name": "superexec",
            "image": self._image("superexec"),
            "args": ["--runtime-api-address", runtime_address, *trust],
            "env": HOME_ENV,
            "volumeMounts": [*SCRATCH_MOUNTS] + ([] if insecure else [{"name": "ca", "mountPath": CA_DIR}]),
            "resources": resources.manifest(),
            "securityContext": kube.container_security(),
        }

    def _serverapp_superexec(self, ns: str) -> dict[str, Any]:
        """With `isolation: process`, ServerApps run in this Deployment instead of inside the SuperLink pod."""
        s = self.settings
        labels = self._labels("superexec")
        volumes: list[dict[str, Any]] = list(SCRATCH_VOLUMES)
        if not s.insecure:
            volumes.append({"name": "ca", "configMap": {"name": "flower-ca"}})
        resources = s.serverapp_resources.over(SERVERAPP_RESOURCES)
        pod = _pod([self._superexec_container(self.address, insecure=s.insecure, resources=resources)], volumes)
        return kube.deployment("superexec-serverapp", ns, labels, _selector(labels), pod)

    def _register_job(self, ns: str, keys: pulumi.Input[dict[str, str]]) -> dict[str, Any]:
        """Registers every SuperNode's public key with the SuperLink once it is ready (node auth)."""
        s = self.settings
        labels = self._labels("superexec")  # allowed through the SuperLink's NetworkPolicy
        # Idempotent, so the Job may retry: a key that is already registered counts as done. Every mounted
        # key file: this stack's SuperNodes and the participants' (a second hub `up` adds theirs).
        script = (
            "import json, pathlib, subprocess, sys\n"
            f"home = pathlib.Path('{HOME}/.flwr')\n"
            "home.mkdir(parents=True, exist_ok=True)\n"
            "(home / 'config.toml').write_text(sys.argv[1])\n"
            f"keys = sorted(pathlib.Path('{AUTH_DIR}').glob('*.pub'))\n"
            "if not keys:\n"
            "    sys.exit('no public keys mounted')\n"
            "for key in keys:\n"
            "    cmd = ['flwr', 'supernode', 'register', str(key), 'cluster', '--format', 'json']\n"
            "    out = subprocess.run(cmd, capture_output=True, text=True)\n"
            "    print(f'{key.stem}:', out.stdout.strip(), out.stderr.strip(), flush=True)\n"
            "    if out.returncode and 'already in use' not in out.stdout + out.stderr:\n"
            "        sys.exit(f'registering {key.stem} failed')\n"
        )
        mounts = [*SCRATCH_MOUNTS, {"name": "auth", "mountPath": AUTH_DIR, "readOnly": True}]
        volumes = [*SCRATCH_VOLUMES, {"name": "auth", "configMap": {"name": "supernode-public-keys"}}]
        if not s.insecure:
            mounts.append({"name": "ca", "mountPath": CA_DIR, "readOnly": True})
            volumes.append({"name": "ca", "configMap": {"name": "flower-ca"}})
        register = {
            "name": "register",
            "image": self._image("superlink"),
            "command": ["python3", "-c", script, self._cli_config("cluster", f"{CA_DIR}/ca.crt")],
            "env": HOME_ENV,
            "volumeMounts": mounts,
            "resources": AGENT_RESOURCES.manifest(),
            "securityContext": kube.container_security(),
        }
        return {
            "apiVersion": "batch/v1",
            "kind": "Job",
            "metadata": {"name": "register-supernodes", "namespace": ns, "labels": labels},
            "spec": {
                "backoffLimit": 6,
                "template": {
                    # A new key changes the template, which a Job cannot take: it is replaced and runs again.
                    "metadata": {"labels": labels, **_files_annotation(kube.content_hash(_key_texts(keys)))},
                    "spec": {
                        "restartPolicy": "OnFailure",
                        **_pod([register], volumes),
                    },
                },
            },
        }

    def _verify_files(self, ns: str) -> dict[str, Any]:
        """The verification script and the in-repo smoke app, for the Job to mount."""
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "flower-verify", "namespace": ns, "labels": verify.labels("flower", self.name)},
            "data": {"verify.py": checks.script("flower_verify"), **{key: text for key, (_, text) in _smoke_app()}},
        }

    def _verification(self, ns: str, partitions: int, ca_pem: pulumi.Input[str] | None) -> dict[str, Any]:
        """The Job's container, volumes and subject: the smoke app through the Control API, as a `flwr` user.

        Flower 1.41 (OSS) has no accounts on the Control API: account authentication is an OIDC plugin only
        the Enterprise distribution ships (flwr/superlink/config_loader.py: without FLWR_OIDC_ENABLED every
        caller is the no-op account; with it, "OIDC account authentication is unavailable in this Flower
        distribution"). So the Job is an authorised user the way the SuperLink can tell: it trusts the
        federation's CA, and the SuperLink's NetworkPolicy admits its pod by label. With node auth on, the
        SuperNodes it needs are the registered ones (the Job waits for the registration Job).
        """
        s = self.settings
        config = self._cli_config(self.name, f"{CA_DIR}/ca.crt")
        command = ["python3", f"{VERIFY_DIR}/verify.py", f"{VERIFY_DIR}/app", self.name, str(partitions), config]
        items = [{"key": "verify.py", "path": "verify.py"}]
        items += [{"key": key, "path": f"app/{path}"} for key, (path, _) in _smoke_app()]
        mounts = [*SCRATCH_MOUNTS, {"name": "verify", "mountPath": VERIFY_DIR, "readOnly": True}]
        volumes = [*SCRATCH_VOLUMES, {"name": "verify", "configMap": {"name": "flower-verify", "items": items}}]
        if not s.insecure:
            mounts.append({"name": "ca", "mountPath": CA_DIR, "readOnly": True})
            volumes.append({"name": "ca", "configMap": {"name": "flower-ca"}})
        container = {
            "name": "verify",
            "image": self._image("superlink"),  # it ships the `flwr` CLI and the app's dependencies (numpy)
            "command": command,
            "env": HOME_ENV,
            "volumeMounts": mounts,
            "resources": AGENT_RESOURCES.manifest(),
        }
        subject = {
            "superlink": self.address,
            "partitions": partitions,
            "caSha256": kube.content_hash(ca_pem) if ca_pem is not None else None,
            "nodeAuth": s.node_auth,
            "isolation": s.isolation,
            "image": container["image"],
            "command": command,
            "files": verify.digest([checks.script("flower_verify"), *(text for _, (_, text) in _smoke_app())]),
        }
        return {"subject": subject, "container": container, "volumes": volumes}

    def _cli_config(self, federation: str, ca_path: str, address: str | None = None) -> str:
        trust = "insecure = true" if self.settings.insecure else f'root-certificates = "{ca_path}"'
        address = address or self.address
        return f'[superlink]\ndefault = "{federation}"\n\n[superlink.{federation}]\naddress = "{address}"\n{trust}\n'

    def _flwr_config(self, name: str, address: str) -> str:
        """A `config.toml` for `flwr run APP NAME`. flwr wants an absolute CA path, which only the user knows."""
        header = "# $FLWR_HOME/config.toml: save the caCertificate output and put its absolute path for @CA_FILE@\n"
        return header + self._cli_config(name, CA_FILE_PLACEHOLDER, address)


def _smoke_app() -> list[tuple[str, tuple[str, str]]]:
    """(ConfigMap key, (path in the app, text)) of every file of examples/flower-smoke, sorted."""
    files = sorted(p for p in SMOKE_APP.rglob("*") if p.is_file() and p.suffix in {".py", ".toml"})
    found = []
    for path in files:
        relative = path.relative_to(SMOKE_APP).as_posix()
        found.append(("app-" + relative.replace("/", "-"), (relative, path.read_text())))
    return found


def _key_texts(keys: pulumi.Input[dict[str, str]]) -> pulumi.Output[str]:
    return pulumi.Output.from_input(keys).apply(lambda files: "".join(f"{k}={v}" for k, v in sorted(files.items())))


def _pod(containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
    """Every Flower pod: its own service account without an API token, non-root as the images' `app` user."""
    return {
        "serviceAccountName": "flower",
        "automountServiceAccountToken": False,  # Flower never talks to the Kubernetes API
        "securityContext": kube.pod_security(UID),
        "containers": containers,
        "volumes": volumes,
    }


def _files_annotation(*hashes: pulumi.Input[str] | None) -> dict[str, Any]:
    present = [h for h in hashes if h is not None]
    if not present:
        return {}
    return {"annotations": {"flstack.dev/files-sha256": pulumi.Output.concat(*present)}}


def _selector(labels: dict[str, str]) -> dict[str, str]:
    """Each group's (with node auth: each node's) StatefulSet selects only its own pods."""
    return kube.selector(labels, GROUP_LABEL, PARTITION_LABEL)


def _http_probe(scheme: str, period: int, failures: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": "/health", "port": "flower", "scheme": scheme},
        "periodSeconds": period,
        "failureThreshold": failures,
    }
