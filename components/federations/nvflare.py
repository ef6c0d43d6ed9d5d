"""NVIDIA FLARE: one server, one Deployment per site (each in its own namespace by default), an admin pod.

The admin pod and its kit (the project admin's credential) live in their own namespace `<home>-admin`:
with the Kubernetes job launcher, the server's launcher account may create pods and write Secrets in the
home namespace, and must not be able to mount or overwrite that kit.

Startup kits come from nvflare's own provisioning (`nvflare_kits`), made once and kept in the stack
state: a pod gets its kit's startup/ from a Secret and local/ from a ConfigMap, mounted into its
workspace exactly where nvflare looks for them. Sites dial the server's Service FQDN over mTLS on
one port; NetworkPolicies let only this federation's sites (and its admin pod) reach it.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pulumi

from components import checks, kube, stack_refs, verify
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

from . import nvflare_kits

# A site name is a pod label, object names and (with the Kubernetes job launcher) a Service name.
SITE_NAME = r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?"
SITE_NAME_HELP = "a DNS-1035 label (lowercase letters, digits and '-', starting with a letter, at most 63 characters)"
ORG = r"[A-Za-z0-9_]+"  # nvflare's own rule for org names
ADMIN_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}"  # nvflare admins are named by email
IMAGE_REPOSITORY = r"[a-z0-9]+([._/-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*"

# The image runs as root; we run as an unprivileged UID owning nothing in it: all writes go to volumes.
UID = 10001
FL_PORT = 8002  # since 2.7 one port for FL and admin connections
PARENT_PORT = 8102  # job pods dial their parent process here (Kubernetes job launcher only)
SERVER = "nvflare-server"  # Deployment and Service name; its FQDN is the server's identity
ADMIN = "nvflare-admin"
WORKSPACE = "/var/tmp/nvflare/workspace"  # nvflare's own Kubernetes convention
ADMIN_WORKSPACE = "/var/tmp/nvflare/admin"
HOME = "/home/nvflare"
# The one resource that held every kit before kits were per participant: the CA takes over its state.
LEGACY_KITS = nvflare_kits.LEGACY_TYPE
SERVER_MODULE = "nvflare.private.fed.app.server.server_train"
CLIENT_MODULE = "nvflare.private.fed.app.client.client_train"
ADMIN_MODULE = "nvflare.fuel.hci.tools.admin"
VERIFY = "nvflare-verify"  # the verification kit's objects, in the admin namespace
VERIFY_WORKSPACE = "/var/tmp/nvflare/verify"
VERIFY_DIR = "/etc/flstack/verify"
VERIFY_WAIT_SECONDS = 60  # sites run before the Job starts; registering takes them seconds
SITE_LABEL = "flstack.dev/nvflare-site"
# On every site namespace: the server's NetworkPolicy admits site pods from namespaces carrying it.
SITES_OF_LABEL = "flstack.dev/nvflare-sites-of"
# On the admin namespace: the server's NetworkPolicy admits the admin pod from the namespace carrying it.
ADMIN_OF_LABEL = "flstack.dev/nvflare-admin-of"
# On every pod template: a digest of the kit it mounts, so a changed kit (new hostnames, a new CA generation,
# re-issued certificates) rolls the Deployment instead of waiting for the kubelet to refresh the files under a
# process that read them at start.
KIT_HASH_ANNOTATION = "flstack.dev/kit-sha256"
# Site names that would take another object's name: the value says whose.
RESERVED_SITE_NAMES = {
    SERVER: "the name of the server's objects",
    ADMIN: "the name of the admin's objects",
    "admin": "taken: `<namespace>-admin` is the admin's namespace",
}
# Kubernetes job launcher rights, from the API calls in nvflare 2.9's k8s_launcher.py: pods are created,
# read and deleted; events listed (pending-pod diagnostics); per-job Secrets created, replaced, patched
# (owner reference) and deleted. nvflare's Helm chart also grants pods list/watch, events get/watch and
# secrets get, which the launcher never calls.
# Defaults when a resources block leaves cpu or memory out (every container gets requests and a memory limit).
FL_RESOURCES = Resources(cpu="500m", memory="1Gi")
ADMIN_RESOURCES = Resources(cpu="100m", memory="256Mi")
VERIFY_RESOURCES = Resources(cpu="100m", memory="512Mi")  # an admin session: nvflare's client stack in memory
# The Kubernetes API server, for the job launcher: its address differs per cluster and is reached after DNAT
# (no pod selector matches it), so launcher pods may open these ports to any address.
API_SERVER_PORTS = (443, 6443)
LAUNCHER_RULES = [
    {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get"]},
    {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
    {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "patch", "update"]},
]


@dataclass(frozen=True)
class NvflareJoin:
    """A site stack's link to the hub stack that provisioned its kit (NVFlare's model: the project admin
    makes every startup kit and hands it out): this stack deploys only that site."""

    stack: str = rule(pattern=STACK_NAME, pattern_help=STACK_NAME_HELP)  # the hub's ORG/PROJECT/STACK
    federation: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)  # its name in the hub's config
    site: str = rule(pattern=SITE_NAME, pattern_help=SITE_NAME_HELP)  # one of the hub's remoteSites


@dataclass(frozen=True)
class NvflareSettings:
    version: str = rule("2.9.0", pattern=r"[0-9]+\.[0-9]+\.[0-9]+", pattern_help="an NVFlare release such as 2.9.0")
    image: str = rule("nvflare/nvflare", pattern=IMAGE_REPOSITORY, pattern_help="an image repository (no tag)")
    sites: list[str] = rule(default_factory=list, pattern=SITE_NAME, pattern_help=SITE_NAME_HELP)
    org: str = rule("flstack", pattern=ORG, pattern_help="letters, digits and '_' (nvflare's rule for orgs)")
    admin: str = rule("admin@flstack.dev", pattern=ADMIN_EMAIL, pattern_help="an email address (nvflare's admin names)")
    # separate: `<namespace>-<site>` per site, so one party's pods, Secrets and PVCs never share a namespace.
    site_namespaces: Literal["separate", "shared"] = "separate"
    # process: jobs run inside the server and site pods (no Kubernetes API access); kubernetes: nvflare's
    # K8s job launcher starts a pod per job (needs the API: ServiceAccount token and a Role).
    job_launcher: Literal["process", "kubernetes"] = "process"
    workspace_size: str = rule("2Gi", pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    server_resources: Resources = field(default_factory=lambda: FL_RESOURCES)
    site_resources: Resources = field(default_factory=lambda: FL_RESOURCES)
    exposure: Exposure = field(default_factory=Exposure)
    # Site or admin networks outside the cluster that may reach the server (with exposure).
    allowed_cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Where the server and sites (and their job pods) may connect besides each other and DNS (default: nowhere).
    egress: Egress = field(default_factory=Egress)
    # Raise it to start over with a new root CA: every kit is re-issued (e.g. to cut off a removed site,
    # as nvflare has no certificate revocation).
    ca_generation: int = rule(1, min=1, max=1000)
    # Certificates (nvflare issues them for 360 days) this close to expiry are re-issued by the next `up`,
    # under the same root CA; the root itself (3650 days) is renewed only by a new caGeneration.
    renew_within_days: int = rule(30, min=1, max=300)
    # Hub: sites deployed by other stacks in other clusters. Their kits are provisioned here and exported
    # (secret) as `siteKits`; they dial exposure.hostnames[0], admitted from the exposure's CIDRs only.
    remote_sites: list[str] = rule(default_factory=list, pattern=SITE_NAME, pattern_help=SITE_NAME_HELP)
    # Site stack: deploy only this site of a hub stack's federation, with the kit the hub exports.
    join: NvflareJoin | None = None

    def check(self) -> Iterator[tuple[str, str]]:
        if self.join is not None:
            yield from self._check_join()
        elif not self.sites and not self.remote_sites:
            yield "sites", "required: list at least one site, e.g. [site-1, site-2]"
        first: dict[str, str] = {}
        for key, names in (("sites", self.sites), ("remoteSites", self.remote_sites)):
            for i, site in enumerate(names):
                if site is None:
                    continue
                if site in first:
                    yield f"{key}[{i}]", f"{site!r} is already {first[site]}: site names must be unique"
                first.setdefault(site, f"{key}[{i}]")
                if site in RESERVED_SITE_NAMES:
                    yield f"{key}[{i}]", f"{site!r} is {RESERVED_SITE_NAMES[site]}: pick another"
        if self.remote_sites:
            yield from self._check_hub()
        ack = self.exposure.allow_internet
        yield from open_cidrs("allowedCidrs", self.allowed_cidrs, ack, "exposure.allowInternet")
        if self.exposure.type == "NodePort" and not self.allowed_cidrs:
            # externalTrafficPolicy Local keeps client IPs: without listed CIDRs the NetworkPolicy admits nobody.
            yield (
                "allowedCidrs",
                "required with exposure type 'NodePort': list the CIDRs of the sites (and admins) outside",
            )
        if self.job_launcher == "kubernetes" and self.site_namespaces == "shared":
            yield (
                "jobLauncher",
                "'kubernetes' needs siteNamespaces 'separate': in one shared namespace every site's parent would "
                "use the same launcher account, which can start pods mounting the other sites' keys",
            )
        if self.admin == verifier_name(self.admin):
            yield "admin", f"{self.admin!r} is the verification Job's identity: pick another admin name"
        installed = _installed_nvflare()
        if installed != self.version:
            yield (
                "version",
                f"kits are provisioned by the nvflare package of the Pulumi program ({installed or 'not installed'}); "
                f"to deploy {self.version}, pin nvflare=={self.version} in requirements.txt",
            )

    def _check_hub(self) -> Iterator[tuple[str, str]]:
        exposure = self.exposure
        if exposure.type == "ClusterIP":
            yield "exposure.type", "remoteSites dial the server from other clusters: use 'LoadBalancer' or 'NodePort'"
        if not exposure.hostnames:
            yield (
                "exposure.hostnames",
                "required with remoteSites: the public name they dial (it goes into the server's certificate)",
            )
        if exposure.type == "NodePort" and exposure.node_port is None:
            yield "exposure.nodePort", "required with remoteSites and type 'NodePort': their kits name the port"
        if self.job_launcher != "process":
            yield (
                "jobLauncher",
                "remoteSites need 'process': a Kubernetes launcher's kit names the namespaces and image of the "
                "cluster it runs in, which the hub does not manage",
            )

    def _check_join(self) -> Iterator[tuple[str, str]]:
        for key, value in (("sites", self.sites), ("remoteSites", self.remote_sites)):
            if value:
                yield key, "not used with join: a site stack deploys only join.site (the hub lists the sites)"
        if self.exposure.type != "ClusterIP":
            yield "exposure.type", "not used with join: a site listens on nothing, it dials the hub's server"
        if self.job_launcher != "process":
            yield "jobLauncher", "join needs 'process': the hub provisions the site's kit for in-pod jobs"
        if not self.egress.cidrs:
            yield (
                "egress.cidrs",
                "required with join: the hub server's public address range (and ports [8002] or its nodePort), "
                "the only place this site may dial besides DNS",
            )

    def public_port(self) -> int:
        """The port sites outside the hub's cluster dial."""
        return self.exposure.node_port if self.exposure.type == "NodePort" and self.exposure.node_port else FL_PORT

    def site_namespace(self, site: str, home: str) -> str:
        return f"{home}-{site}" if self.site_namespaces == "separate" else home

    def admin_namespace(self, home: str) -> str:
        return f"{home}-admin"

    def party_namespaces(self, home: str) -> list[tuple[str, str]]:
        if self.join is not None:
            return [("join.site", self.site_namespace(self.join.site, home))] if self.join.site else []
        admin = [("admin", self.admin_namespace(home))]
        if self.site_namespaces == "shared":
            return admin
        return [*admin, *((f"sites[{i}]", self.site_namespace(site, home)) for i, site in enumerate(self.sites))]

    def image_ref(self) -> str:
        return f"{self.image}:{self.version}"

    def images(self) -> list[str]:
        return [self.image_ref()]


def _installed_nvflare() -> str | None:
    try:
        return importlib.metadata.version("nvflare")
    except importlib.metadata.PackageNotFoundError:
        return None


def server_args(org: str) -> list[str]:
    return [
        *_module(SERVER_MODULE, "fed_server.json"),
        "--set",
        "secure_train=true",
        f"org={org}",
        "config_folder=config",
    ]


def site_args(site: str, org: str) -> list[str]:
    sets = ["secure_train=true", f"uid={site}", f"org={org}", "config_folder=config"]
    return [*_module(CLIENT_MODULE, "fed_client.json"), "--set", *sets]


def admin_console_args() -> list[str]:
    return ["-m", ADMIN_MODULE, "-m", ADMIN_WORKSPACE, "-s", "fed_admin.json"]


def _module(module: str, config: str) -> list[str]:
    return ["-u", "-m", module, "-m", WORKSPACE, "-s", config]


HOME_ENV = kube.env(("HOME", HOME))
SCRATCH_MOUNTS, SCRATCH_VOLUMES = kube.scratch_volumes(HOME)


def _kit_mounts(workspace: str) -> list[dict[str, Any]]:
    """startup/ and local/ mounted straight into the workspace: nvflare finds its files by walking it."""
    return [
        {"name": "startup", "mountPath": f"{workspace}/startup", "readOnly": True},
        {"name": "local", "mountPath": f"{workspace}/local", "readOnly": True},
    ]


def _kit_volumes(prefix: str) -> list[dict[str, Any]]:
    return [
        {"name": "startup", "secret": {"secretName": f"{prefix}-startup", "defaultMode": 0o440}},
        {"name": "local", "configMap": {"name": f"{prefix}-local"}},
    ]


def verifier_name(admin: str) -> str:
    """The verification kit's identity: an admin name (nvflare names admins by email) beside the project admin's."""
    return f"flstack-verify@{admin.rpartition('@')[2]}"


class NvflareFederation(pulumi.ComponentResource):
    Settings = NvflareSettings
    VERIFIES = True  # `verify`: a Job with its own least-role admin kit checks every site registered

    def __init__(
        self,
        name: str,
        federation: FederationConfig,
        platform: Any,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:federations:Nvflare", name, None, opts)
        s: NvflareSettings = federation.settings
        self.name = name
        self.settings = s
        self._platform = platform
        ns = federation.home_namespace
        self.namespace = ns
        self.verify = bool(federation.verify)
        self.kubernetes_launcher = s.job_launcher == "kubernetes"
        dns_names = kube.service_dns_names(SERVER, ns)
        self.server_fqdn = dns_names[-1]
        site_ns = {site: s.site_namespace(site, ns) for site in s.sites}
        self.site_namespaces = site_ns
        admin_ns = s.admin_namespace(ns)
        self.admin_namespace = admin_ns
        self.outputs: dict[str, Any]
        if s.join is not None:
            self.outputs = self._joined_site(s.join, ns)
            self.register_outputs(self.outputs)
            return

        # Provisioned locally by the Python dynamic provider (its default provider: it touches no cluster or cloud).
        ca = nvflare_kits.NvflareCa(
            f"{name}-ca",
            self._ca_inputs(ns, dns_names),
            # Stacks from before per-participant kits keep their root CA and server certificate (README: NVFlare).
            pulumi.ResourceOptions(parent=self, aliases=[pulumi.Alias(name=f"{name}-kits", type_=LEGACY_KITS)]),
        )
        self.ca = ca

        # Each of these namespaces holds a retained workspace PVC: deleting the namespace would delete the PVC
        # with it, so `pulumi destroy` leaves them too.
        kept = platform.opts(self, retain_on_delete=True)
        namespaces = {ns: kube.apply(kube.namespace(ns), kept)}
        for site_namespace in sorted(set(site_ns.values()) - {ns}):
            manifest = kube.namespace(site_namespace, {SITES_OF_LABEL: name})
            namespaces[site_namespace] = kube.apply(manifest, kept)
        for namespace, resource in namespaces.items():
            in_ns = platform.opts(self, depends_on=[resource])
            for obj in [*kube.baseline(namespace, s.egress), *self._fl_egress(namespace)]:
                kube.apply(obj, in_ns)
            kube.apply(self._fl_service_account(namespace), in_ns)
            if self.kubernetes_launcher:  # every namespace runs a parent that launches job pods
                kube.apply(self._launcher_role(namespace), in_ns)
                kube.apply(self._launcher_binding(namespace), in_ns)

        home = platform.opts(self, depends_on=[namespaces[ns]])
        server_kit = self._kit(ns, SERVER, ca.server_kit, home)
        workspace = kube.apply(self._workspace_claim(ns, SERVER, "server"), self._retained(namespaces[ns]))
        workloads = [kube.apply(self._server(ns, server_kit), platform.opts(self, depends_on=[workspace]))]
        kube.apply(self._server_service(ns), home)
        kube.apply(self._server_policy(ns), home)

        # The admin's namespace: no Role, no API token, no PVC; nothing else runs there.
        admin_namespace = kube.apply(kube.namespace(admin_ns, {ADMIN_OF_LABEL: name}), platform.opts(self))
        in_admin = platform.opts(self, depends_on=[admin_namespace])
        for obj in kube.baseline(admin_ns):
            kube.apply(obj, in_admin)
        admin_to_server = [kube.in_namespace(ns, _selector(self._labels("server")))]
        kube.apply(kube.allow_egress(admin_ns, "admin-to-server", {}, admin_to_server, kube.tcp(FL_PORT)), in_admin)
        kube.apply(self._service_account(admin_ns, "nvflare", automount=False), in_admin)
        admin_kit = self._kit(admin_ns, ADMIN, self._participant_kit("admin", s.admin, "admin", admin_ns).kit, in_admin)
        # People scale the admin pod up and down themselves (the adminStart/adminStop outputs): Pulumi sets
        # replicas 0 when it creates the Deployment and then leaves the field alone, so the next `pulumi up`
        # neither scales a running console away nor conflicts with kubectl over `.spec.replicas`.
        scaled_by_hand = platform.opts(self, depends_on=[admin_namespace], ignore_changes=["spec.replicas"])
        kube.apply(self._admin(admin_ns, admin_kit), scaled_by_hand)

        for site, namespace in site_ns.items():
            in_ns = platform.opts(self, depends_on=[namespaces[namespace]])
            site_kit = self._kit(namespace, site, self._participant_kit(site, site, "client", namespace).kit, in_ns)
            claim = kube.apply(self._workspace_claim(namespace, site, "site"), self._retained(namespaces[namespace]))
            workloads.append(kube.apply(self._site(namespace, site, site_kit), platform.opts(self, depends_on=[claim])))
            if self.kubernetes_launcher:
                kube.apply(self._site_service(namespace, site), in_ns)
                kube.apply(self._site_policy(namespace, site), in_ns)

        verification: dict[str, Any] = {}
        if self.verify:
            verifier = self._participant_kit(
                "verify", verifier_name(s.admin), "admin", admin_ns, role=nvflare_kits.VERIFIER_ROLE
            )
            verifier_kit = self._kit(admin_ns, VERIFY, verifier.kit, in_admin)
            kube.apply(self._verify_script(admin_ns), in_admin)
            job = verify.verification_job(
                "verify",
                admin_ns,
                **self._verification(verifier_kit),
                depends_on=workloads,
                opts=in_admin,
                labels=verify.labels("nvflare", name),
                uid=UID,
                service_account="nvflare",
            )
            verification = {"verificationLog": verify.log_command(job)}

        # Sites of other stacks: provisioned here (the project admin makes every kit), deployed there.
        public = {"host": s.exposure.hostnames[0], "port": s.public_port()} if s.remote_sites else None
        remote_kits = {
            site: self._participant_kit(site, site, "client", ns, connect_to=public).kit for site in s.remote_sites
        }

        admin_exec = f"kubectl -n {admin_ns} exec -it deploy/{ADMIN} --"
        self.outputs = {
            "namespace": ns,
            "adminNamespace": admin_ns,
            "serverAddress": f"{self.server_fqdn}:{FL_PORT}",
            "sites": {site: site_ns[site] for site in s.sites},
            "jobLauncher": s.job_launcher,
            "rootCa": ca.root_ca,
            # The admin kit is the project admin's credential: its pod only runs while someone uses it.
            "adminStart": f"kubectl -n {admin_ns} scale deploy/{ADMIN} --replicas=1 && "
            f"kubectl -n {admin_ns} rollout status deploy/{ADMIN}",
            "adminConsole": f"{admin_exec} python3 {' '.join(admin_console_args())}",
            "adminUser": s.admin,  # the console asks for it: the name in the admin kit's certificate
            "systemStatus": f"kubectl -n {admin_ns} exec deploy/{ADMIN} -- python3 -m nvflare.cli system status "
            f"--startup-kit {ADMIN_WORKSPACE}",
            "adminStop": f"kubectl -n {admin_ns} scale deploy/{ADMIN} --replicas=0",
            **verification,
        }
        if public:
            self.outputs["publicAddress"] = f"{public['host']}:{public['port']}"
            # What each site stack reads (`join`): its private key inside, so secret (and with it, as the engine
            # keeps secrecy per top-level output, the whole `federations` output when read from another stack).
            self.outputs["siteKits"] = pulumi.Output.secret(remote_kits)
        self.register_outputs(self.outputs)

    def _joined_site(self, join: NvflareJoin, home: str) -> dict[str, Any]:
        """A site stack: one site, its kit read from the hub stack's outputs; no server, CA or admin here."""
        s, platform, site = self.settings, self._platform, join.site
        ns = s.site_namespace(site, home)
        self.site_namespaces = {site: ns}
        namespace = kube.apply(kube.namespace(ns), platform.opts(self, retain_on_delete=True))
        in_ns = platform.opts(self, depends_on=[namespace])
        # Default-deny, DNS, and egress only to egress.cidrs: the hub server's public address.
        for obj in kube.baseline(ns, s.egress):
            kube.apply(obj, in_ns)
        kube.apply(self._fl_service_account(ns), in_ns)
        key = f"{stack_refs.federation_key(self.name)}.nvflare.join.stack"
        kit = stack_refs.stack_output(join.stack, "federations", join.federation, "siteKits", site, key=key)
        kit_hash = self._kit(ns, site, kit, in_ns)
        claim = kube.apply(self._workspace_claim(ns, site, "site"), self._retained(namespace))
        kube.apply(self._site(ns, site, kit_hash), platform.opts(self, depends_on=[claim]))
        address = stack_refs.stack_output(join.stack, "federations", join.federation, "publicAddress", key=key)
        return {"namespace": ns, "site": site, "hub": join.stack, "serverAddress": address}

    # --- provisioning --------------------------------------------------------------------------

    def _common_inputs(self) -> dict[str, Any]:
        s = self.settings
        return {
            "project": self.name,
            "version": s.version,
            "org": s.org,
            "server": self.server_fqdn,  # what sites dial: the server's identity and first certificate SAN
            "flPort": FL_PORT,
            "workspace": WORKSPACE,
            "caGeneration": s.ca_generation,
            "renewWithinDays": s.renew_within_days,
        }

    def _launcher_inputs(self, namespace: str) -> dict[str, Any]:
        """How the kit of a process in `namespace` starts jobs (nvflare's k8s preparation needs the details)."""
        if not self.kubernetes_launcher:
            return {"kind": "process"}
        return {
            "kind": "kubernetes",
            "namespace": namespace,
            "serverService": SERVER,
            "image": self._image(),
            "parentPort": PARENT_PORT,
            "jobPodSecurityContext": kube.pod_security(UID),
            "studyRuntime": self._study_runtime(),
        }

    def _ca_inputs(self, ns: str, dns_names: list[str]) -> dict[str, Any]:
        host_names = list(dict.fromkeys([*dns_names[:-1], *self.settings.exposure.hostnames]))
        return {**self._common_inputs(), "hostNames": host_names, "jobLauncher": self._launcher_inputs(ns)}

    def _participant_kit(
        self,
        key: str,
        name: str,
        kind: str,
        ns: str,
        role: str | None = None,
        connect_to: dict[str, Any] | None = None,
    ) -> nvflare_kits.NvflareKit:
        """`name`'s own kit, signed by the CA: adding a participant provisions and stores only its kit.
        `connect_to`: the public host and port a site in another cluster dials."""
        launcher = kind == "client" and connect_to is None  # the admin and remote sites run no launcher of ours
        inputs = {
            **self._common_inputs(),
            "participant": {"name": name, "type": kind, **({"role": role} if role else {})},
            "connectTo": connect_to,
            "jobLauncher": self._launcher_inputs(ns) if launcher else {"kind": "process"},
            "rootCa": self.ca.root_ca,
            "caKey": self.ca.ca_key.apply(pulumi.Output.secret),  # secret whatever the engine does with outputs
        }
        return nvflare_kits.NvflareKit(f"{self.name}-kit-{key}", inputs, pulumi.ResourceOptions(parent=self))

    def _study_runtime(self) -> dict[str, Any]:
        """nvflare's local/study_runtime.yaml: job pods of the default study pass the `restricted` standard."""
        pod_template = {
            "metadata": {"labels": self._labels("job")},
            "spec": {
                "automountServiceAccountToken": False,
                # User training code writes caches anywhere: job pods keep a writable root filesystem.
                "containers": [
                    {"name": "nvflare_job", "securityContext": kube.container_security(read_only_root=False)}
                ],
            },
        }
        return {
            "format_version": 2,
            "studies": {"default": {"container": {"image": self._image()}, "pod_template": pod_template}},
        }

    # --- objects -------------------------------------------------------------------------------

    def _labels(self, component: str, site: str | None = None) -> dict[str, str]:
        labels = kube.labels("nvflare", component, self.name)
        if site:
            labels[SITE_LABEL] = site
        return labels

    def _image(self) -> str:
        return str(self._platform.image(self.settings.image_ref()))

    def _fl_egress(self, namespace: str) -> list[dict[str, Any]]:
        """Egress of this federation's pods in `namespace` (server, sites, job pods): the server's FL port; with
        the Kubernetes launcher also their parent's port (job pods) and the API server (the parents)."""
        federation = {"app.kubernetes.io/name": "nvflare", "app.kubernetes.io/part-of": self.name}
        server = kube.in_namespace(self.namespace, _selector(self._labels("server")))
        rules = [kube.allow_egress(namespace, "nvflare-to-server", federation, [server], kube.tcp(FL_PORT))]
        if self.kubernetes_launcher:
            parents = [{"podSelector": {"matchLabels": federation}}]
            rules.append(kube.allow_egress(namespace, "jobs-to-parent", federation, parents, kube.tcp(PARENT_PORT)))
            api = kube.tcp(*API_SERVER_PORTS)
            here = {"server": namespace == self.namespace, "site": namespace in self.site_namespaces.values()}
            for component in (c for c, present in here.items() if present):
                launcher = kube.selector(self._labels(component))
                rules.append(kube.allow_egress(namespace, f"{component}-to-api-server", launcher, [], api))
        return rules

    def _retained(self, namespace: pulumi.Resource) -> pulumi.ResourceOptions:
        # Workspaces (job results, server job store) outlive pods, replacements and `pulumi destroy`.
        opts: pulumi.ResourceOptions = self._platform.opts(self, depends_on=[namespace], retain_on_delete=True)
        return opts

    def _fl_service_account(self, namespace: str) -> dict[str, Any]:
        """The server's or sites' account: no Kubernetes API access at all, unless they launch job pods."""
        if self.kubernetes_launcher:
            return self._service_account(namespace, "nvflare-launcher", automount=True)
        return self._service_account(namespace, "nvflare", automount=False)

    def _service_account(self, ns: str, name: str, automount: bool) -> dict[str, Any]:
        return kube.service_account(name, ns, kube.labels("nvflare", "identity", self.name), automount)

    def _launcher_role(self, ns: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": "nvflare-job-launcher", "namespace": ns, "labels": self._labels("identity")},
            "rules": LAUNCHER_RULES,
        }

    def _launcher_binding(self, ns: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": "nvflare-job-launcher", "namespace": ns, "labels": self._labels("identity")},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "nvflare-job-launcher"},
            "subjects": [{"kind": "ServiceAccount", "name": "nvflare-launcher", "namespace": ns}],
        }

    def _kit(
        self, ns: str, prefix: str, kit: pulumi.Output[dict[str, Any]], opts: pulumi.ResourceOptions
    ) -> pulumi.Output[str]:
        """The kit's Secret and ConfigMap; returns the kit's digest for the pod template that mounts them."""
        # Private keys: secret whatever the engine does with additional_secret_outputs.
        startup: pulumi.Output[dict[str, str]] = kit.apply(lambda k: pulumi.Output.secret(k["startup"]))
        kube.apply(self._kit_secret(ns, prefix, startup), opts)
        # local/ holds no key: plain in its ConfigMap even when the kit arrives as one secret (the kit resource's
        # secret output, or the hub's secret export read by a site stack).
        kube.apply(self._kit_config(ns, prefix, pulumi.Output.unsecret(kit.apply(lambda k: k["local"]))), opts)
        # A one-way digest of the files, not the files: shown in plain text so previews say which pods roll.
        return pulumi.Output.unsecret(kit.apply(kit_digest))

    def _kit_secret(self, ns: str, prefix: str, files: pulumi.Input[dict[str, str]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": f"{prefix}-startup", "namespace": ns, "labels": self._labels("kit")},
            "type": "Opaque",
            "stringData": files,
        }

    def _kit_config(self, ns: str, prefix: str, files: pulumi.Input[dict[str, str]]) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{prefix}-local", "namespace": ns, "labels": self._labels("kit")},
            "data": files,
        }

    def _workspace_claim(self, ns: str, prefix: str, component: str) -> dict[str, Any]:
        size, storage_class = self.settings.workspace_size, self._platform.storage.data_class
        return kube.claim(f"{prefix}-workspace", ns, size, storage_class, self._labels(component))

    def _pod(self, containers: list[dict[str, Any]], volumes: list[dict[str, Any]], launcher: bool) -> dict[str, Any]:
        return {
            "serviceAccountName": "nvflare-launcher" if launcher else "nvflare",
            # Only the job launcher talks to the Kubernetes API.
            "automountServiceAccountToken": launcher,
            "securityContext": kube.pod_security(UID),
            "containers": containers,
            "volumes": volumes,
        }

    def _deployment(
        self,
        ns: str,
        name: str,
        labels: dict[str, str],
        pod: dict[str, Any],
        kit: pulumi.Input[str],
        replicas: int = 1,
    ) -> dict[str, Any]:
        # One process per workspace (ReadWriteOnce volume): never two at once, even during a rollout.
        annotations = {KIT_HASH_ANNOTATION: kit}
        return kube.deployment(name, ns, labels, _selector(labels), pod, annotations, replicas, recreate=True)

    def _fl_container(self, name: str, args: list[str], resources: Resources) -> dict[str, Any]:
        return {
            "name": name,
            "image": self._image(),
            # The 2.9 images have no shell: run the module nvflare's start scripts would run.
            "command": ["python3"],
            "args": args,
            "workingDir": WORKSPACE,
            "env": HOME_ENV,
            "volumeMounts": [{"name": "workspace", "mountPath": WORKSPACE}, *_kit_mounts(WORKSPACE), *SCRATCH_MOUNTS],
            "resources": resources.manifest(),
            "securityContext": kube.container_security(),
        }

    def _server(self, ns: str, kit: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        container = self._fl_container("server", server_args(s.org), s.server_resources.over(FL_RESOURCES))
        container["ports"] = [{"name": "fl", "containerPort": FL_PORT, "protocol": "TCP"}]
        if self.kubernetes_launcher:
            container["ports"].append({"name": "parent", "containerPort": PARENT_PORT, "protocol": "TCP"})
        # mTLS on the FL port: an HTTP or gRPC probe has no client certificate, a TCP connect proves the listener.
        container["startupProbe"] = _tcp_probe(period=5, failures=24)
        container["readinessProbe"] = _tcp_probe(period=10, failures=3)
        container["livenessProbe"] = _tcp_probe(period=20, failures=3)
        volumes = [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": f"{SERVER}-workspace"}},
            *_kit_volumes(SERVER),
            *SCRATCH_VOLUMES,
        ]
        pod = self._pod([container], volumes, self.kubernetes_launcher)
        return self._deployment(ns, SERVER, self._labels("server"), pod, kit)

    def _site(self, ns: str, site: str, kit: pulumi.Input[str]) -> dict[str, Any]:
        s = self.settings
        # No probes: a site listens on nothing (it dials the server); if the process exits the pod restarts,
        # and the admin's `check_status client` shows whether it is registered.
        container = self._fl_container("site", site_args(site, s.org), s.site_resources.over(FL_RESOURCES))
        if self.kubernetes_launcher:
            container["ports"] = [{"name": "parent", "containerPort": PARENT_PORT, "protocol": "TCP"}]
        volumes = [
            {"name": "workspace", "persistentVolumeClaim": {"claimName": f"{site}-workspace"}},
            *_kit_volumes(site),
            *SCRATCH_VOLUMES,
        ]
        pod = self._pod([container], volumes, self.kubernetes_launcher)
        return self._deployment(ns, site, self._labels("site", site), pod, kit)

    def _admin(self, ns: str, kit: pulumi.Input[str]) -> dict[str, Any]:
        """The admin console's home: scaled to zero, started with the `adminStart` output when needed."""
        idle = "import signal, sys; signal.signal(signal.SIGTERM, lambda *_: sys.exit(0)); signal.pause()"
        container = {
            "name": "admin",
            "image": self._image(),
            "command": ["python3", "-c", idle],  # PID 1 waits; people `kubectl exec` the console into it
            "workingDir": ADMIN_WORKSPACE,
            "env": HOME_ENV,
            "volumeMounts": [
                {"name": "workspace", "mountPath": ADMIN_WORKSPACE},
                *_kit_mounts(ADMIN_WORKSPACE),
                # The console refuses to start without its upload/download folder (fed_admin.json: transfer).
                {"name": "transfer", "mountPath": f"{ADMIN_WORKSPACE}/transfer"},
                *SCRATCH_MOUNTS,
            ],
            "resources": ADMIN_RESOURCES.manifest(),
            "securityContext": kube.container_security(),
        }
        volumes = [
            {"name": "workspace", "emptyDir": {}},
            *_kit_volumes(ADMIN),
            {"name": "transfer", "emptyDir": {}},
            *SCRATCH_VOLUMES,
        ]
        pod = self._pod([container], volumes, launcher=False)
        return self._deployment(ns, ADMIN, self._labels("admin"), pod, kit, replicas=0)

    def _verify_script(self, ns: str) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": f"{VERIFY}-script", "namespace": ns, "labels": verify.labels("nvflare", self.name)},
            "data": {"verify.py": checks.script("nvflare_verify")},
        }

    def _verification(self, kit: pulumi.Output[str]) -> dict[str, Any]:
        """The Job's container, volumes and subject: `check_status` as the least-role verification admin."""
        s = self.settings
        username = verifier_name(s.admin)
        sites = json.dumps(sorted(s.sites))
        command = ["python3", f"{VERIFY_DIR}/verify.py", VERIFY_WORKSPACE, username, sites, str(VERIFY_WAIT_SECONDS)]
        container = {
            "name": "verify",
            "image": self._image(),
            "command": command,
            "workingDir": VERIFY_WORKSPACE,
            "env": HOME_ENV,
            "volumeMounts": [
                {"name": "workspace", "mountPath": VERIFY_WORKSPACE},
                *_kit_mounts(VERIFY_WORKSPACE),
                {"name": "transfer", "mountPath": f"{VERIFY_WORKSPACE}/transfer"},
                {"name": "script", "mountPath": VERIFY_DIR, "readOnly": True},
                *SCRATCH_MOUNTS,
            ],
            "resources": VERIFY_RESOURCES.manifest(),
        }
        volumes = [
            {"name": "workspace", "emptyDir": {}},
            *_kit_volumes(VERIFY),
            {"name": "transfer", "emptyDir": {}},
            {"name": "script", "configMap": {"name": f"{VERIFY}-script"}},
            *SCRATCH_VOLUMES,
        ]
        subject = {
            "server": f"{self.server_fqdn}:{FL_PORT}",
            "sites": sorted(s.sites),
            "kitSha256": kit,  # the verification kit (re-issued certificates, a new CA generation) and its trust
            "image": container["image"],
            "command": command,
            "script": verify.digest(checks.script("nvflare_verify")),
        }
        return {"subject": subject, "container": container, "volumes": volumes}

    def _server_service(self, ns: str) -> dict[str, Any]:
        ports = [{"name": "fl", "port": FL_PORT, "targetPort": "fl", "protocol": "TCP"}]
        if self.kubernetes_launcher:
            ports.append({"name": "parent", "port": PARENT_PORT, "targetPort": "parent", "protocol": "TCP"})
        labels = self._labels("server")
        exposure, annotations = self.settings.exposure, self._platform.load_balancer_annotations
        return kube.exposed_service(SERVER, ns, labels, _selector(labels), ports, exposure, annotations)

    def _site_peers(self, component: str) -> list[dict[str, Any]]:
        """This federation's `component` pods of every site, wherever the site namespaces are: no list of sites,
        so adding a site never changes the server's policy."""
        pods = {"podSelector": {"matchLabels": _selector(self._labels(component))}}
        if self.settings.site_namespaces == "shared":
            return [pods]
        return [{"namespaceSelector": {"matchLabels": {SITES_OF_LABEL: self.name}}, **pods}]

    def _server_policy(self, ns: str) -> dict[str, Any]:
        s = self.settings
        admin = {
            "namespaceSelector": {"matchLabels": {ADMIN_OF_LABEL: self.name}},
            "podSelector": {"matchLabels": _selector(self._labels("admin"))},
        }
        peers = [*self._site_peers("site"), admin]
        if self.verify:  # the verification Job's pod in the admin namespace, and only while verification is on
            peers.append(verify.peer("nvflare", self.name, self.admin_namespace))
        rules: list[dict[str, Any]] = []
        if self.kubernetes_launcher:
            # Job pods (labelled by the study pod template) join the server's backbone and their parent's port.
            peers += self._site_peers("job")
            local_jobs = {"podSelector": {"matchLabels": _selector(self._labels("job"))}}
            peers.append(local_jobs)
            rules.append({"from": [local_jobs], "ports": [{"protocol": "TCP", "port": PARENT_PORT}]})
        peers += [{"ipBlock": {"cidr": cidr}} for cidr in sorted({*s.allowed_cidrs, *s.exposure.source_ranges})]
        rules.insert(0, {"from": peers, "ports": [{"protocol": "TCP", "port": FL_PORT}]})
        return kube.network_policy(
            f"{SERVER}-ingress", ns, _selector(self._labels("server")), ingress=rules, labels=self._labels("server")
        )

    def _site_service(self, ns: str, site: str) -> dict[str, Any]:
        """With the Kubernetes launcher a site's job pods dial their parent at `<site>:8102` (nvflare's naming)."""
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": site, "namespace": ns, "labels": self._labels("site", site)},
            "spec": {
                "selector": _selector(self._labels("site", site)),
                "ports": [{"name": "parent", "port": PARENT_PORT, "targetPort": "parent", "protocol": "TCP"}],
            },
        }

    def _site_policy(self, ns: str, site: str) -> dict[str, Any]:
        jobs = {"podSelector": {"matchLabels": _selector(self._labels("job"))}}
        return kube.network_policy(
            f"{site}-ingress",
            ns,
            _selector(self._labels("site", site)),
            ingress=[{"from": [jobs], "ports": kube.tcp(PARENT_PORT)}],
            labels=self._labels("site", site),
        )


def kit_digest(kit: dict[str, Any]) -> str:
    """sha256 of a participant's kit files (startup/ and local/), independent of key order."""
    return hashlib.sha256(json.dumps(kit, sort_keys=True).encode()).hexdigest()


def _selector(labels: dict[str, str]) -> dict[str, str]:
    """Each site's Deployment selects only its own pod."""
    return kube.selector(labels, SITE_LABEL)


def _tcp_probe(period: int, failures: int) -> dict[str, Any]:
    return {"tcpSocket": {"port": "fl"}, "periodSeconds": period, "failureThreshold": failures}
