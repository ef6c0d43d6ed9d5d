"""FATE 2.2 (`framework: fate`): each party in its own namespace, one `FateParty` component per party.

Per party, a shape with no Java: fate_flow (standalone computing and storage, sqlite, on a retained volume),
RabbitMQ as the federation transport, and a stock nginx proxy that is the party's only door to the others
(see `fate_files` for the routing). Every byte between parties goes proxy to proxy over mutual TLS, with
certificates from a federation CA made by pulumi-tls; NetworkPolicies hold each party's pods to their own
namespace and let only the proxies talk across. Optionally, a FATEBoard per party (`fateboard.enabled`).
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import pulumi
import pulumi_random as random

from components import checks, kube, pki, verify
from components.config import FederationConfig
from components.config.model import (
    CIDR_HELP,
    DNS_LABEL,
    DNS_LABEL_HELP,
    QUANTITY,
    QUANTITY_HELP,
    STACK_NAME,
    STACK_NAME_HELP,
    Egress,
    Exposure,
    Resources,
    is_cidr,
    open_cidrs,
)
from components.config.schema import rule

from . import fate_files as files
from . import fate_peers

IMAGE_REPOSITORY = r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"
IMAGE_REF = r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})"
IMAGE_REF_HELP = "an image with a tag, such as rabbitmq:3.13.7-management"
MAX_PARTIES = 100  # one proxy port per peer: 5700..5799
PARTY_ID_MAX = 2**31 - 1  # FATE keeps party ids as strings of integers; stay inside a signed int

# The image's layout, as KubeFATE's charts and FATE's docker-compose use it (not inspected here: see README).
FATE_HOME = "/data/projects/fate"
FLOW_DIR = f"{FATE_HOME}/fate_flow"
FLOW_CONF = f"{FLOW_DIR}/conf"
# What fate_flow writes, all on the party's volume: logs, job workspaces, models, standalone tables, sqlite.
FLOW_STATE_DIRS = ("logs", "jobs", "model", "data", "db")
SQLITE_PATH = f"{FLOW_DIR}/db/fate_flow_sqlite.db"
RABBITMQ_CONF = "/etc/flstack/rabbitmq"
RABBITMQ_HOME = "/var/lib/rabbitmq"
NGINX_CONF = "/etc/flstack/nginx"

# Who runs what. The fateflow and RabbitMQ images' own users are assumed (not inspected); nginx's is 101.
FLOW_UID = 10001  # owns nothing in the image: every write goes to the volume or /tmp
RABBITMQ_UID = 999  # the official image's rabbitmq user
NGINX_UID = 101  # the official image's nginx user
BOARD_UID = 10001  # FATEBoard image's user is not known here (not inspected): any non-root uid
BOARD_HOME = f"{FATE_HOME}/fateboard"  # where KubeFATE mounts application.properties

PARTY_LABEL = "flstack.dev/fate-party"
# On every party namespace: the proxies admit and dial the proxies of namespaces carrying it, so adding a
# party never changes another party's NetworkPolicies.
FEDERATION_LABEL = "flstack.dev/fate-federation"
CONFIG_HASH_ANNOTATION = "flstack.dev/config-sha256"
VERIFY_DIR = "/etc/flstack/verify"
VERIFY_SCRIPT = "fate_toy.py"
# The toy took 65-115 s here; the script's own limits (30 s to reach every party, 900 s for the jobs) end first.
VERIFY_DEADLINE_SECONDS = 1200


@dataclass(frozen=True)
class FatePartyConfig:
    id: int = rule(min=1, max=PARTY_ID_MAX)
    # Default `<federation namespace>-<id>`.
    namespace: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    # How parties in other stacks reach this party's exchange (its proxy's two mTLS ports, nothing else):
    # required when the federation has peers. hostnames[0] is the address this stack exports for them.
    exposure: Exposure = field(default_factory=Exposure)


@dataclass(frozen=True)
class FatePeerConfig:
    """A party deployed by another stack (another organisation's cluster): this stack reads its exchange
    endpoint and CA certificate from that stack's outputs, and admits and dials only its `cidrs`."""

    party_id: int = rule(min=1, max=PARTY_ID_MAX)
    stack: str = rule(pattern=STACK_NAME, pattern_help=STACK_NAME_HELP)
    # The federation's name in that stack (default: this federation's name).
    federation: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    # Where the peer's proxy connects from: the only sources this party's proxy admits from outside the
    # cluster (NetworkPolicy ipBlock; each exposure's sourceRanges must cover them).
    cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Where the peer's exchange is (its load balancer's addresses): the only destinations outside the cluster
    # this party's proxy dials for it. Default: `cidrs` (one network both ways, as on-premises).
    exchange_cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # The acknowledgement that cidrs or exchangeCidrs may hold 0.0.0.0/0 or ::/0.
    allow_internet: bool = False

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.cidrs:
            yield "cidrs", "required: list the CIDRs the peer's proxy connects from"
        yield from open_cidrs("cidrs", self.cidrs, self.allow_internet, "allowInternet")
        yield from open_cidrs("exchangeCidrs", self.exchange_cidrs, self.allow_internet, "allowInternet")

    @property
    def destinations(self) -> list[str]:
        return self.exchange_cidrs or self.cidrs


@dataclass(frozen=True)
class FateboardSettings:
    """FATE's Java web UI, one per party, reached by `kubectl port-forward` (no Service leaves the namespace)."""

    enabled: bool = False
    # The FATEBoard FATE's 2.2.0 docker-compose deploys beside fateflow 2.2.0 (no 2.2 FATEBoard exists).
    image: str = rule("federatedai/fateboard:2.1.1-release", pattern=IMAGE_REF, pattern_help=IMAGE_REF_HELP)
    username: str = rule("admin", pattern=r"[A-Za-z0-9_.-]{1,64}", pattern_help="1-64 letters, digits, '_', '.', '-'")
    # Not measured here (a JVM that does not run on this machine): a Spring Boot app's usual footprint.
    resources: Resources = field(default_factory=lambda: Resources(cpu="250m", memory="1Gi"))

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.resources.memory:
            yield "resources.memory", "required: every container gets a memory request and limit"
        if self.resources.gpus:
            yield "resources.gpus", "FATEBoard is a web UI: it uses no GPUs"


@dataclass(frozen=True)
class FateSettings:
    version: Literal["2.2.0"] = "2.2.0"
    image: str = rule("federatedai/fateflow", pattern=IMAGE_REPOSITORY, pattern_help="an image repository (no tag)")
    rabbitmq_image: str = rule("rabbitmq:3.13.7-management", pattern=IMAGE_REF, pattern_help=IMAGE_REF_HELP)
    proxy_image: str = rule("nginx:1.28.0-alpine", pattern=IMAGE_REF, pattern_help=IMAGE_REF_HELP)
    # The parties this stack deploys.
    parties: list[FatePartyConfig] = field(default_factory=list)
    # Parties other stacks deploy (cross-silo): each read through a StackReference.
    peers: list[FatePeerConfig] = field(default_factory=list)
    # fate_flow's scheduling budget (computing.standalone.cores): each job asks for 4 by default
    # (job_cores), and a job waits while the budget is spent. Not a CPU limit.
    cores: int = rule(8, min=4, max=1024)
    data_size: str = rule("10Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    # Measured peaks (resident memory, tests/e2e/test_fate_federation.py, toy job): fate_flow with its task
    # processes 1.05 GiB, RabbitMQ 140 MiB, nginx 17 MiB. Memory requests are also the limits.
    flow_resources: Resources = field(default_factory=lambda: Resources(cpu="1", memory="2Gi"))
    rabbitmq_resources: Resources = field(default_factory=lambda: Resources(cpu="250m", memory="768Mi"))
    proxy_resources: Resources = field(default_factory=lambda: Resources(cpu="100m", memory="64Mi"))
    # Destinations beyond the party's own pods, DNS and its peers' proxies (a data source), for every pod.
    egress: Egress = field(default_factory=Egress)
    fateboard: FateboardSettings = field(default_factory=FateboardSettings)

    def check(self) -> Iterator[tuple[str, str]]:
        parties = self.parties  # invalid entries (None) are reported on their own keys, and still count here
        if self.peers and not parties:
            yield "parties", "a stack with peers deploys at least one party of its own, e.g. [{id: 9999}]"
        elif len(parties) + len(self.peers) < 2:
            yield (
                "parties",
                f"a federation needs at least 2 parties (got {len(parties)}), e.g. [{{id: 9999}}, {{id: 10000}}], "
                "or 1 here and peers in other stacks",
            )
        if len(parties) + len(self.peers) > MAX_PARTIES:
            yield (
                "parties",
                f"at most {MAX_PARTIES} parties with the peers (got {len(parties) + len(self.peers)}): "
                "each peer takes one proxy port",
            )
        ids: dict[int, int] = {}
        namespaces: dict[str, int] = {}
        for i, party in enumerate(self.parties):
            if party is None:
                continue
            if party.id in ids:
                yield f"parties[{i}].id", f"{party.id} is already parties[{ids[party.id]}].id: party ids must be unique"
            ids.setdefault(party.id, i)
            if party.namespace is not None:
                if party.namespace in namespaces:
                    yield (
                        f"parties[{i}].namespace",
                        f"{party.namespace!r} is already the namespace of parties[{namespaces[party.namespace]}]: "
                        "each party needs its own",
                    )
                namespaces.setdefault(party.namespace, i)
        yield from self._check_peers(ids)
        for key in ("flow_resources", "rabbitmq_resources", "proxy_resources"):
            resources: Resources = getattr(self, key)
            camel = key.split("_")[0] + "Resources"
            if not resources.memory:
                yield f"{camel}.memory", "required: every container gets a memory request and limit"
            if resources.gpus:
                yield f"{camel}.gpus", "FATE's standalone computing runs on CPUs only"

    def _check_peers(self, own_ids: dict[int, int]) -> Iterator[tuple[str, str]]:
        """Party ids unique across the stacks this one knows of; every own party reachable from the peers."""
        seen: dict[int, int] = {}
        for i, peer in enumerate(self.peers):
            if peer is None:
                continue
            if peer.party_id in own_ids:
                yield (
                    f"peers[{i}].partyId",
                    f"{peer.party_id} is parties[{own_ids[peer.party_id]}].id, deployed by this stack: "
                    "each party id belongs to exactly one stack",
                )
            elif peer.party_id in seen:
                yield f"peers[{i}].partyId", f"{peer.party_id} is already peers[{seen[peer.party_id]}].partyId"
            seen.setdefault(peer.party_id, i)
        if not self.peers:
            for i, party in enumerate(self.parties):
                if party is not None and party.exposure.type != "ClusterIP":
                    yield f"parties[{i}].exposure.type", "only used with peers: parties of one stack meet in-cluster"
            return
        cidrs = [(i, j, c) for i, p in enumerate(self.peers) if p is not None for j, c in enumerate(p.cidrs)]
        for i, party in enumerate(self.parties):
            if party is None:
                continue
            exposure = party.exposure
            if exposure.type != "LoadBalancer":
                yield (
                    f"parties[{i}].exposure.type",
                    f"'LoadBalancer' required with peers (got {exposure.type!r}): peers in other clusters dial "
                    "this party's exchange at a stable address",
                )
                continue
            if not exposure.hostnames:
                yield (
                    f"parties[{i}].exposure.hostnames",
                    "required with peers: the DNS name peers dial (it goes into the proxy's certificate)",
                )
            elif pki.is_ip(exposure.hostnames[0]):
                yield (
                    f"parties[{i}].exposure.hostnames[0]",
                    f"{exposure.hostnames[0]!r} is an IP address: peers' proxies (nginx) check this party's "
                    "certificate by DNS name only; give the DNS name of the load balancer's address",
                )
            ranges = [ipaddress.ip_network(r, strict=False) for r in exposure.source_ranges if is_cidr(r)]
            for p, j, cidr in cidrs:
                if not is_cidr(cidr):
                    continue
                net = ipaddress.ip_network(cidr, strict=False)
                if not any(net.version == r.version and net.subnet_of(r) for r in ranges):  # type: ignore[arg-type]
                    yield (
                        f"parties[{i}].exposure.sourceRanges",
                        f"does not admit peers[{p}].cidrs[{j}] ({cidr}): the load balancer would drop that peer",
                    )

    def verify_refusal(self) -> str | None:
        """Why `verify` cannot be on (None: it can)."""
        if self.peers:
            return (
                "not with fate.peers yet: the toy Job would hold `pulumi up` until the peer stack is up too; "
                "set it to false and run the `toy` output once both stacks are up"
            )
        return None

    def party_namespace(self, party: FatePartyConfig, home: str) -> str:
        return party.namespace or f"{home}-{party.id}"

    def party_namespaces(self, home: str) -> list[tuple[str, str]]:
        return [(f"parties[{i}]", self.party_namespace(p, home)) for i, p in enumerate(self.parties) if p is not None]

    def flow_image(self) -> str:
        return f"{self.image}:{self.version}-release"

    def images(self) -> list[str]:
        board = [self.fateboard.image] if self.fateboard.enabled else []
        return [self.flow_image(), self.rabbitmq_image, self.proxy_image, *board]


class FateFederation(pulumi.ComponentResource):
    Settings = FateSettings
    VERIFIES = True  # `verify`: a Job runs the toy example between the first party and every other

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Fate", name, None, opts)
        s: FateSettings = federation.settings
        home = federation.home_namespace
        parties = [files.Party(p.id, s.party_namespace(p, home)) for p in s.parties]
        # Each stack has its own CA: its key never leaves this stack; peers get only its certificate. Across
        # stacks the CAs' names must differ (TLS finds a certificate's issuer by name): the stack's is in it.
        common_name = _stack_ca_name(name) if s.peers else f"{name} FATE federation CA"
        ca = pki.CertificateAuthority(
            f"{name}-fate", common_name, pulumi.ResourceOptions(parent=self, provider=platform.tls)
        )
        peers = fate_peers.read(name, s.peers, [p.id for p in parties])
        # Default providers are disabled for every package: this federation's passwords come from its own.
        passwords = random.Provider(f"{name}-random", opts=pulumi.ResourceOptions(parent=self))
        # The first party initiates: it submits the verification's toy jobs (and `toy` below) to its fate_flow.
        verifies = bool(federation.verify)
        self.parties = {
            p.id: FateParty(
                f"{name}-{p.id}",
                name,
                p,
                config,
                parties,
                peers,
                s,
                ca,
                passwords,
                platform,
                self,
                initiator=verifies and i == 0,
            )
            for i, (p, config) in enumerate(zip(parties, s.parties, strict=True))
        }
        self.outputs: dict[str, Any] = {
            "caCertificate": ca.cert.cert_pem,
            "parties": {str(p.id): party.outputs for p, party in zip(parties, self.parties.values(), strict=True)},
        }
        guest = parties[0] if parties else None
        host = parties[1].id if len(parties) >= 2 else (s.peers[0].party_id if s.peers else None)
        if guest is not None and host is not None:
            # The check KubeFATE users run by hand, from the guest's fateflow pod (its image's `flow` CLI).
            self.outputs["toy"] = (
                f"kubectl -n {guest.namespace} exec statefulset/{files.FLOW} -- sh -c "
                f"'flow init --ip 127.0.0.1 --port {files.FLOW_HTTP_PORT} && "
                f"flow test toy -gid {guest.id} -hid {host}'"
            )
            if verifies:
                workloads = [w for party in self.parties.values() for w in party.workloads]
                self.outputs["verificationLog"] = self.parties[guest.id].verification(parties, workloads)
        self.register_outputs({})


class FateParty(pulumi.ComponentResource):
    """One party: its namespace, fate_flow, RabbitMQ, proxy and policies."""

    def __init__(
        self,
        name: str,
        federation: str,
        me: files.Party,
        config: FatePartyConfig,
        parties: list[files.Party],
        peers: fate_peers.Peers,
        settings: FateSettings,
        ca: pki.CertificateAuthority,
        passwords: random.Provider,
        platform: Any,
        parent: pulumi.Resource,
        initiator: bool = False,
    ) -> None:
        super().__init__("flstack:federations:FateParty", name, None, pulumi.ResourceOptions(parent=parent))
        if me.namespace is None:
            raise ValueError(f"party {me.id} is another stack's: this stack deploys only its own")
        self.federation = federation
        self.me = me
        self.ns: str = me.namespace
        self.config = config
        self.peers = peers
        self.settings = settings
        self.initiator = initiator  # runs the verification Job: its proxy and fate_flow admit it
        self._platform = platform
        self._name = name
        ns = self.ns

        # The namespace holds the retained fate_flow volume: deleting it would delete the volume too.
        namespace = kube.apply(
            kube.namespace(ns, {FEDERATION_LABEL: federation, PARTY_LABEL: str(me.id)}),
            platform.opts(self, retain_on_delete=True),
        )
        in_ns = platform.opts(self, depends_on=[namespace])
        self.policies = [kube.apply(p, in_ns) for p in [*kube.baseline(ns, settings.egress), *self._policies()]]
        kube.apply(kube.service_account(files.FLOW, ns, self._labels("identity")), in_ns)

        password = random.RandomPassword(
            f"{name}-rabbitmq", length=32, special=False, opts=pulumi.ResourceOptions(parent=self, provider=passwords)
        )
        secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        hosts = [*kube.service_dns_names(files.PROXY, ns), *config.exposure.hostnames]
        certificate = ca.server_certificate(f"{name}-proxy", f"fate-party-{me.id}", hosts, client_auth=True)
        # Own parties, then every configured peer (known or not yet): positions fix the broker link ports.
        roster = [*parties, *peers.roster]

        # fate_flow
        service_conf = secret_password.apply(lambda pw: files.service_conf(me, pw, SQLITE_PATH, settings.cores))
        routes = files.route_table(me, roster)
        kube.apply(self._secret("fateflow-conf", "fateflow", {"service_conf.yaml": service_conf}), in_ns)
        kube.apply(self._config_map("fate-routes", "fateflow", {"rabbitmq_route_table.yaml": routes}), in_ns)
        claim = kube.claim(
            "fateflow-data", ns, settings.data_size, platform.storage.data_class, self._labels("fateflow")
        )
        volume = kube.apply(claim, platform.opts(self, depends_on=[namespace], retain_on_delete=True))
        flow_hash = _digest(service_conf, routes)
        self.workloads = [kube.apply(self._flow(flow_hash), platform.opts(self, depends_on=[volume]))]
        kube.apply(self._service(files.FLOW, self._flow_ports(), headless=True), in_ns)

        # RabbitMQ
        default_user = secret_password.apply(files.rabbitmq_default_user)
        rabbitmq_conf = files.rabbitmq_conf()
        kube.apply(self._secret("rabbitmq-default-user", "rabbitmq", {"20-default-user.conf": default_user}), in_ns)
        kube.apply(
            self._config_map(
                "rabbitmq-config",
                "rabbitmq",
                {"10-flstack.conf": rabbitmq_conf, "enabled_plugins": files.RABBITMQ_PLUGINS},
            ),
            in_ns,
        )
        rabbitmq_hash = _digest(default_user, rabbitmq_conf, files.RABBITMQ_PLUGINS)
        self.workloads.append(kube.apply(self._rabbitmq(rabbitmq_hash), in_ns))
        kube.apply(self._service(files.RABBITMQ, self._rabbitmq_ports()), in_ns)

        # Proxy
        nginx_conf: pulumi.Input[str]
        trusted: pulumi.Input[str]
        if peers.configs:
            nginx_conf = peers.remotes.apply(
                lambda remotes: files.nginx_conf(me, [*parties, *_resolved(peers, remotes)])
            )
            trusted = pulumi.Output.all(ca.cert.cert_pem, peers.remotes).apply(
                lambda found: fate_peers.trust_bundle(found[0], found[1])
            )
        else:
            nginx_conf, trusted = files.nginx_conf(me, parties), ca.cert.cert_pem
        tls_files: dict[str, pulumi.Input[str]] = {
            "tls.crt": certificate.cert.cert_pem,
            "tls.key": pulumi.Output.secret(certificate.key.private_key_pem),
            "ca.crt": trusted,
        }
        kube.apply(self._secret("proxy-tls", "proxy", tls_files, kind="kubernetes.io/tls"), in_ns)
        kube.apply(self._config_map("proxy-config", "proxy", {"nginx.conf": nginx_conf}), in_ns)
        proxy_hash = _digest(nginx_conf, certificate.cert.cert_pem, trusted)
        self.workloads.append(kube.apply(self._proxy(proxy_hash), in_ns))
        kube.apply(self._service(files.PROXY, self._proxy_ports(roster)), in_ns)

        self.outputs: dict[str, Any] = {
            "namespace": ns,
            "proxy": f"{me.proxy_host}:{files.PROXY_TLS_PORT}",
            "fateflow": f"{files.FLOW}.{ns}.svc.cluster.local:{files.FLOW_HTTP_PORT}",
        }
        exposure = config.exposure
        if exposure.type != "ClusterIP":
            kube.apply(self._exchange_service(), in_ns)
        if exposure.type == "LoadBalancer" and exposure.hostnames:
            # What peer stacks read (fate_peers): public, and nothing else of this party.
            self.outputs["exchange"] = {
                "host": exposure.hostnames[0],
                "port": files.PROXY_TLS_PORT,
                "amqpsPort": files.PROXY_AMQPS_PORT,
            }
        if settings.fateboard.enabled:
            self.outputs["fateboard"] = self._add_fateboard(name, passwords, in_ns)
        self.register_outputs({})

    def _add_fateboard(self, name: str, passwords: random.Provider, opts: pulumi.ResourceOptions) -> dict[str, str]:
        board = self.settings.fateboard
        password = random.RandomPassword(
            f"{name}-fateboard", length=24, special=False, opts=pulumi.ResourceOptions(parent=self, provider=passwords)
        )
        secret_password: pulumi.Output[str] = pulumi.Output.secret(password.result)
        properties = secret_password.apply(lambda pw: files.fateboard_properties(board.username, pw))
        kube.apply(self._secret("fateboard-config", files.BOARD, {"application.properties": properties}), opts)
        kube.apply(self._fateboard(_digest(properties)), opts)
        ports = [{"name": "http", "port": files.BOARD_PORT, "targetPort": "http", "protocol": "TCP"}]
        kube.apply(self._service(files.BOARD, ports), opts)
        return {
            # The Service admits only its own namespace; a port-forward arrives through the API server instead.
            "portForward": f"kubectl -n {self.ns} port-forward svc/{files.BOARD} {files.BOARD_PORT}:{files.BOARD_PORT}",
            "username": board.username,
            # A command, not the password: a secret output would turn the whole federations output secret.
            "password": f"kubectl -n {self.ns} get secret fateboard-config "
            "-o jsonpath='{.data.application\\.properties}' | base64 -d | "
            "sed -n 's/^server.board.login.password=//p'",
        }

    def verification(self, parties: list[files.Party], workloads: Sequence[pulumi.Resource]) -> pulumi.Output[str]:
        """The toy example between this (initiating) party and every other, as a Job `pulumi up` awaits; returns
        the command that reads its log."""
        ns = self.ns
        script = checks.script(VERIFY_SCRIPT.removesuffix(".py"))
        opts = self._platform.opts(self, depends_on=self.policies)
        files_map = self._config_map("fate-verify", "verify", {VERIFY_SCRIPT: script})
        files_map["metadata"]["labels"] = verify.labels("fate", self.federation)
        config_map = kube.apply(files_map, opts)
        hosts = [arg for p in parties if p.id != self.me.id for arg in ("--host", f"{p.id}={p.namespace}")]
        container = {
            "name": "verify",
            "image": self._platform.image(self.settings.flow_image()),  # its Python; the script needs no more
            "command": ["python", f"{VERIFY_DIR}/{VERIFY_SCRIPT}"],
            "args": [
                "--flow",
                f"http://{files.FLOW}:{files.FLOW_HTTP_PORT}",
                "--proxy",
                f"http://{files.PROXY}:{files.PROXY_HTTP_PORT}",
                "--guest",
                f"{self.me.id}={ns}",
                *hosts,
            ],
            "env": kube.env(("PYTHONDONTWRITEBYTECODE", "1")),
            "volumeMounts": [{"name": "check", "mountPath": VERIFY_DIR, "readOnly": True}],
            # A stdlib HTTP client polling every 3 s.
            "resources": Resources(cpu="50m", memory="64Mi").manifest(),
        }
        job = verify.verification_job(
            f"{self.federation}-toy",
            ns,
            # What it verifies: the whole federation's settings (parties, images, sizes) and the check itself.
            subject={"settings": asdict(self.settings), "check": verify.digest(script)},
            container=container,
            volumes=[{"name": "check", "configMap": {"name": "fate-verify"}}],
            depends_on=[*workloads, config_map],
            opts=opts,
            labels=verify.labels("fate", self.federation),
            uid=FLOW_UID,  # the fateflow image's user
            deadline_seconds=VERIFY_DEADLINE_SECONDS,
        )
        return verify.log_command(job)

    # --- objects -------------------------------------------------------------------------------

    def _labels(self, component: str) -> dict[str, str]:
        return {**kube.labels("fate", component, self.federation), PARTY_LABEL: str(self.me.id)}

    def _selector(self, component: str) -> dict[str, str]:
        return kube.selector(self._labels(component), PARTY_LABEL)

    def _secret(
        self, name: str, component: str, data: dict[str, pulumi.Input[str]], kind: str = "Opaque"
    ) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": name, "namespace": self.ns, "labels": self._labels(component)},
            "type": kind,
            "stringData": data,
        }

    def _config_map(self, name: str, component: str, data: dict[str, pulumi.Input[str]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": self.ns, "labels": self._labels(component)},
            "data": data,
        }

    def _pod(self, uid: int, containers: list[dict[str, Any]], volumes: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "serviceAccountName": files.FLOW,
            "automountServiceAccountToken": False,  # nothing here talks to the Kubernetes API
            "enableServiceLinks": False,  # no FATEFLOW_PORT-style variables colliding with fate's own settings
            "securityContext": kube.pod_security(uid),
            "containers": containers,
            "volumes": volumes,
        }

    def _flow_ports(self) -> list[dict[str, Any]]:
        return [
            {"name": "http", "port": files.FLOW_HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
            {"name": "grpc", "port": files.FLOW_GRPC_PORT, "targetPort": "grpc", "protocol": "TCP"},
        ]

    def _flow(self, config_hash: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        probe = {"httpGet": {"path": "/v2/server/fateflow", "port": "http"}}
        state_mounts = [{"name": "data", "mountPath": f"{FLOW_DIR}/{d}", "subPath": d} for d in FLOW_STATE_DIRS]
        container = {
            "name": files.FLOW,
            "image": self._platform.image(s.flow_image()),
            # The server itself, as FATE's compose and KubeFATE start it, minus their `pip install` at every start.
            "command": ["python", "fate_flow/python/fate_flow/fate_flow_server.py"],
            "workingDir": FATE_HOME,
            "env": kube.env(("FATE_PROJECT_BASE", FATE_HOME), ("HOME", "/tmp")),
            "ports": [
                {"name": "http", "containerPort": files.FLOW_HTTP_PORT, "protocol": "TCP"},
                {"name": "grpc", "containerPort": files.FLOW_GRPC_PORT, "protocol": "TCP"},
            ],
            "volumeMounts": [
                {"name": "conf", "mountPath": f"{FLOW_CONF}/service_conf.yaml", "subPath": "service_conf.yaml"},
                {
                    "name": "routes",
                    "mountPath": f"{FLOW_CONF}/rabbitmq_route_table.yaml",
                    "subPath": "rabbitmq_route_table.yaml",
                },
                *state_mounts,
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            # fate_flow listens after 15-20 s here; allow 2 minutes on a busy node.
            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 24},
            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
            "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 5},
            "resources": s.flow_resources.manifest(),
            "securityContext": kube.container_security(),
        }
        volumes = [
            {"name": "conf", "secret": {"secretName": "fateflow-conf", "defaultMode": 0o440}},
            {"name": "routes", "configMap": {"name": "fate-routes"}},
            {"name": "data", "persistentVolumeClaim": {"claimName": "fateflow-data"}},
            {"name": "tmp", "emptyDir": {}},
        ]
        labels = self._labels("fateflow")
        return {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": files.FLOW, "namespace": self.ns, "labels": labels},
            "spec": {
                "replicas": 1,  # one sqlite writer
                "serviceName": files.FLOW,
                "selector": {"matchLabels": self._selector("fateflow")},
                "template": {
                    "metadata": {"labels": labels, "annotations": {CONFIG_HASH_ANNOTATION: config_hash}},
                    "spec": self._pod(FLOW_UID, [container], volumes),
                },
            },
        }

    def _rabbitmq_ports(self) -> list[dict[str, Any]]:
        return [
            {"name": "amqp", "port": files.AMQP_PORT, "targetPort": "amqp", "protocol": "TCP"},
            {"name": "management", "port": files.MANAGEMENT_PORT, "targetPort": "management", "protocol": "TCP"},
        ]

    def _rabbitmq(self, config_hash: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        probe = {"tcpSocket": {"port": "amqp"}}
        container = {
            "name": files.RABBITMQ,
            "image": self._platform.image(s.rabbitmq_image),
            "env": kube.env(
                ("RABBITMQ_CONFIG_FILES", f"{RABBITMQ_CONF}/conf.d"),
                ("RABBITMQ_ENABLED_PLUGINS_FILE", f"{RABBITMQ_CONF}/enabled_plugins"),
                # One node per party: a fixed node name, so nothing hangs on the pod's host name.
                ("RABBITMQ_NODENAME", "rabbit@localhost"),
                ("RABBITMQ_MNESIA_BASE", f"{RABBITMQ_HOME}/mnesia"),
                ("RABBITMQ_LOG_BASE", f"{RABBITMQ_HOME}/log"),
                ("HOME", RABBITMQ_HOME),  # the Erlang cookie
            ),
            "ports": [
                {"name": "amqp", "containerPort": files.AMQP_PORT, "protocol": "TCP"},
                {"name": "management", "containerPort": files.MANAGEMENT_PORT, "protocol": "TCP"},
            ],
            "volumeMounts": [
                {"name": "config", "mountPath": RABBITMQ_CONF, "readOnly": True},
                {"name": "home", "mountPath": RABBITMQ_HOME},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 24},
            "readinessProbe": {**probe, "periodSeconds": 10},
            "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3},
            "resources": s.rabbitmq_resources.manifest(),
            "securityContext": kube.container_security(),
        }
        config = {
            "projected": {
                "sources": [
                    {
                        "configMap": {
                            "name": "rabbitmq-config",
                            "items": [
                                {"key": "10-flstack.conf", "path": "conf.d/10-flstack.conf"},
                                {"key": "enabled_plugins", "path": "enabled_plugins"},
                            ],
                        }
                    },
                    {
                        "secret": {
                            "name": "rabbitmq-default-user",
                            "items": [{"key": "20-default-user.conf", "path": "conf.d/20-default-user.conf"}],
                        }
                    },
                ],
                "defaultMode": 0o440,
            }
        }
        # Queues live only as long as a task: the broker's state is scratch.
        volumes = [{"name": "config", **config}, {"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
        labels = self._labels("rabbitmq")
        pod = self._pod(RABBITMQ_UID, [container], volumes)
        annotations = {CONFIG_HASH_ANNOTATION: config_hash}
        return kube.deployment(
            files.RABBITMQ, self.ns, labels, self._selector("rabbitmq"), pod, annotations, recreate=True
        )

    def _proxy_ports(self, parties: list[files.Party]) -> list[dict[str, Any]]:
        ports = [
            {"name": "http", "port": files.PROXY_HTTP_PORT, "targetPort": files.PROXY_HTTP_PORT, "protocol": "TCP"},
            {"name": "https", "port": files.PROXY_TLS_PORT, "targetPort": files.PROXY_TLS_PORT, "protocol": "TCP"},
            {"name": "amqps", "port": files.PROXY_AMQPS_PORT, "targetPort": files.PROXY_AMQPS_PORT, "protocol": "TCP"},
        ]
        for i, party in enumerate(parties):
            if party.id != self.me.id:
                port = files.peer_amqp_port(i)
                ports.append({"name": f"amqp-{i}", "port": port, "targetPort": port, "protocol": "TCP"})
        return ports

    def _exchange_service(self) -> dict[str, Any]:
        """The party's door for peers in other clusters: the proxy's two mTLS ports, nothing plain."""
        ports = [
            {"name": "https", "port": files.PROXY_TLS_PORT, "targetPort": files.PROXY_TLS_PORT, "protocol": "TCP"},
            {"name": "amqps", "port": files.PROXY_AMQPS_PORT, "targetPort": files.PROXY_AMQPS_PORT, "protocol": "TCP"},
        ]
        return kube.exposed_service(
            files.EXCHANGE,
            self.ns,
            self._labels("proxy"),
            self._selector("proxy"),
            ports,
            self.config.exposure,
            self._platform.load_balancer_annotations,
        )

    def _proxy(self, config_hash: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        container = {
            "name": files.PROXY,
            "image": self._platform.image(s.proxy_image),
            "command": ["nginx", "-c", f"{NGINX_CONF}/nginx.conf", "-e", "stderr", "-g", "daemon off;"],
            "ports": [
                {"name": "http", "containerPort": files.PROXY_HTTP_PORT, "protocol": "TCP"},
                {"name": "https", "containerPort": files.PROXY_TLS_PORT, "protocol": "TCP"},
                {"name": "amqps", "containerPort": files.PROXY_AMQPS_PORT, "protocol": "TCP"},
            ],
            "volumeMounts": [
                {"name": "config", "mountPath": NGINX_CONF, "readOnly": True},
                {"name": "tls", "mountPath": files.TLS_DIR, "readOnly": True},
                {"name": "tmp", "mountPath": files.TMP},
            ],
            "readinessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 10},
            "livenessProbe": {"tcpSocket": {"port": "http"}, "periodSeconds": 20, "failureThreshold": 3},
            "resources": s.proxy_resources.manifest(),
            "securityContext": kube.container_security(),
        }
        volumes = [
            {"name": "config", "configMap": {"name": "proxy-config"}},
            {"name": "tls", "secret": {"secretName": "proxy-tls", "defaultMode": 0o440}},
            {"name": "tmp", "emptyDir": {}},
        ]
        labels = self._labels("proxy")
        pod = self._pod(NGINX_UID, [container], volumes)
        return kube.deployment(
            files.PROXY, self.ns, labels, self._selector("proxy"), pod, {CONFIG_HASH_ANNOTATION: config_hash}
        )

    def _fateboard(self, config_hash: pulumi.Input[str]) -> dict[str, Any]:
        board = self.settings.fateboard
        probe = {"httpGet": {"path": "/", "port": "http"}}
        container = {
            "name": files.BOARD,
            "image": self._platform.image(board.image),
            "ports": [{"name": "http", "containerPort": files.BOARD_PORT, "protocol": "TCP"}],
            "volumeMounts": [
                {
                    "name": "config",
                    "mountPath": f"{BOARD_HOME}/conf/application.properties",
                    "subPath": "application.properties",
                },
                # Tomcat's work files and the board's own logs; the root filesystem stays read-only.
                {"name": "logs", "mountPath": f"{BOARD_HOME}/logs"},
                {"name": "tmp", "mountPath": "/tmp"},
            ],
            # A JVM: allow 2 minutes to listen on a busy node.
            "startupProbe": {**probe, "periodSeconds": 5, "failureThreshold": 24},
            "readinessProbe": {**probe, "periodSeconds": 10},
            "livenessProbe": {**probe, "periodSeconds": 20, "failureThreshold": 3, "timeoutSeconds": 5},
            "resources": board.resources.manifest(),
            "securityContext": kube.container_security(),
        }
        volumes = [
            {"name": "config", "secret": {"secretName": "fateboard-config", "defaultMode": 0o440}},
            {"name": "logs", "emptyDir": {}},
            {"name": "tmp", "emptyDir": {}},
        ]
        labels = self._labels(files.BOARD)
        pod = self._pod(BOARD_UID, [container], volumes)
        return kube.deployment(
            files.BOARD,
            self.ns,
            labels,
            self._selector(files.BOARD),
            pod,
            {CONFIG_HASH_ANNOTATION: config_hash},
        )

    def _service(self, name: str, ports: list[dict[str, Any]], headless: bool = False) -> dict[str, Any]:
        spec: dict[str, Any] = {"selector": self._selector(name), "ports": ports}
        if headless:
            spec["clusterIP"] = "None"  # the StatefulSet's governing Service; one pod, its own address
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": name, "namespace": self.ns, "labels": self._labels(name)},
            "spec": spec,
        }

    # --- network policies ----------------------------------------------------------------------

    def _pods(self, component: str) -> dict[str, Any]:
        return {"podSelector": {"matchLabels": self._selector(component)}}

    def _peer_proxies(self) -> dict[str, Any]:
        """Every other party's proxy of this federation, by label: no list, so new parties change nothing here."""
        return {
            "namespaceSelector": {
                "matchLabels": {FEDERATION_LABEL: self.federation},
                "matchExpressions": [{"key": PARTY_LABEL, "operator": "NotIn", "values": [str(self.me.id)]}],
            },
            "podSelector": {"matchLabels": kube.selector(kube.labels("fate", "proxy", self.federation))},
        }

    def _policy(self, component: str, ingress: list[dict[str, Any]], egress: list[dict[str, Any]]) -> dict[str, Any]:
        return kube.network_policy(
            component,
            self.ns,
            self._selector(component),
            ingress=ingress,
            egress=egress,
            labels=self._labels(component),
        )

    def _policies(self) -> list[dict[str, Any]]:
        def tcp(*ports: int, end: int | None = None) -> list[dict[str, Any]]:
            return [{"protocol": "TCP", "port": p, **({"endPort": end} if end else {})} for p in ports]

        flow, rabbitmq, proxy = self._pods("fateflow"), self._pods("rabbitmq"), self._pods("proxy")
        peer_links = tcp(files.PEER_AMQP_PORT_BASE, end=files.peer_amqp_port(MAX_PARTIES - 1))
        board = []
        if self.settings.fateboard.enabled:
            # Browsers come in by port-forward (through the API server) or from a pod of the namespace; the board
            # itself only ever calls its party's fate_flow API.
            board = [
                self._policy(
                    files.BOARD,
                    ingress=[{"from": [{"podSelector": {}}], "ports": tcp(files.BOARD_PORT)}],
                    egress=[{"to": [flow], "ports": tcp(files.FLOW_HTTP_PORT)}],
                )
            ]
        verifier, from_verifier = [], []
        if self.initiator:
            # The verification Job submits the toy jobs to fate_flow (admitted by the rule for the namespace's
            # pods) and asks every party, itself included, through the proxy's plain port.
            job = verify.labels("fate", self.federation)
            egress = [
                {"to": [flow], "ports": tcp(files.FLOW_HTTP_PORT)},
                {"to": [proxy], "ports": tcp(files.PROXY_HTTP_PORT)},
            ]
            ns = self.ns
            verifier = [kube.network_policy("verify", ns, kube.selector(job), ingress=[], egress=egress, labels=job)]
            from_verifier = [{"from": [verify.peer("fate", self.federation)], "ports": tcp(files.PROXY_HTTP_PORT)}]
        return [
            *board,
            *verifier,
            self._policy(
                "fateflow",
                # Its own proxy (calls from other parties) and whoever in the namespace runs `flow`/pipelines.
                ingress=[{"from": [{"podSelector": {}}], "ports": tcp(files.FLOW_HTTP_PORT, files.FLOW_GRPC_PORT)}],
                egress=[
                    {"to": [proxy], "ports": tcp(files.PROXY_HTTP_PORT)},
                    {"to": [rabbitmq], "ports": tcp(files.AMQP_PORT, files.MANAGEMENT_PORT)},
                ],
            ),
            self._policy(
                "rabbitmq",
                ingress=[
                    {"from": [flow], "ports": tcp(files.AMQP_PORT, files.MANAGEMENT_PORT)},
                    {"from": [proxy], "ports": tcp(files.AMQP_PORT)},  # peers' brokers, through the proxy
                ],
                egress=[{"to": [proxy], "ports": peer_links}],  # federation links to peers' brokers
            ),
            self._policy(
                "proxy",
                ingress=[
                    {"from": [flow], "ports": tcp(files.PROXY_HTTP_PORT)},
                    *from_verifier,
                    {"from": [rabbitmq], "ports": peer_links},
                    {"from": [self._peer_proxies()], "ports": tcp(files.PROXY_TLS_PORT, files.PROXY_AMQPS_PORT)},
                    *self._other_stacks_in(),
                ],
                egress=[
                    {"to": [flow], "ports": tcp(files.FLOW_HTTP_PORT)},
                    {"to": [rabbitmq], "ports": tcp(files.AMQP_PORT)},
                    {"to": [self._peer_proxies()], "ports": tcp(files.PROXY_TLS_PORT, files.PROXY_AMQPS_PORT)},
                    *self._other_stacks_out(),
                ],
            ),
        ]

    def _ip_blocks(self, cidrs: list[str]) -> list[dict[str, Any]]:
        return [{"ipBlock": {"cidr": cidr}} for cidr in sorted(set(cidrs))]

    def _other_stacks_in(self) -> list[dict[str, Any]]:
        """Peers' proxies in other clusters, from their listed CIDRs only, to the exchange's two mTLS ports."""
        if not self.peers.configs:
            return []
        sources = self._ip_blocks([cidr for peer in self.peers.configs for cidr in peer.cidrs])
        return [{"from": sources, "ports": kube.tcp(files.PROXY_TLS_PORT, files.PROXY_AMQPS_PORT)}]

    def _other_stacks_out(self) -> list[dict[str, Any]]:
        """To peers' exchanges in other clusters: their listed CIDRs, on the ports their stacks export."""
        if not self.peers.configs:
            return []

        def ports(remotes: list[fate_peers.Remote]) -> list[dict[str, Any]]:
            # Until a peer has exported its ports, the ports every exchange listens on (never "any port").
            found = {n for r in remotes for n in (r.party.https_port, r.party.amqps_port)}
            return kube.tcp(*sorted(found or {files.PROXY_TLS_PORT, files.PROXY_AMQPS_PORT}))

        exchanges = self._ip_blocks([cidr for peer in self.peers.configs for cidr in peer.destinations])
        return [{"to": exchanges, "ports": self.peers.remotes.apply(ports)}]


def _stack_ca_name(federation: str) -> str:
    """The CA's common name in a cross-silo stack: the stack's own name, unique among the stacks that reference
    each other; shortened with a digest when longer than a common name may be (64 characters)."""
    stack = f"{pulumi.get_organization()}/{pulumi.get_project()}/{pulumi.get_stack()}"
    name = f"{federation} FATE CA {stack}"
    if len(name) <= 64:
        return name
    return f"{name[:47]} {hashlib.sha256(stack.encode()).hexdigest()[:16]}"


def _resolved(peers: fate_peers.Peers, remotes: list[fate_peers.Remote]) -> list[files.Party]:
    """The roster's peers with the addresses their stacks exported; a peer not yet deployed stays unresolved."""
    known = {remote.party.id: remote.party for remote in remotes}
    return [known.get(party.id, party) for party in peers.roster]


def _digest(*files: pulumi.Input[str]) -> pulumi.Output[str]:
    """A pod template's config digest, in plain text: a one-way hash, so previews show which pods roll even when
    the files hold secrets (the broker password), and the workload's spec does not turn secret as a whole."""
    return pulumi.Output.unsecret(kube.content_hash(*files))
