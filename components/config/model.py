"""The typed stack config: everything under the `flstack:` namespace.

Targets and frameworks contribute their own settings dataclasses through the registries in
`components.targets` and `components.federations`; this module holds only what every stack shares.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from . import registry
from .schema import camel, rule

DNS_LABEL = r"[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?"
DNS_LABEL_HELP = "a DNS-1123 label (lowercase letters, digits and '-', at most 63 characters)"
QUANTITY = r"[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|m|k|M|G|T|P)?"
QUANTITY_HELP = "a Kubernetes quantity such as 10Gi or 500m"
# A fully qualified Pulumi stack name, as `pulumi.StackReference` takes it (the cross-silo links).
STACK_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*/[A-Za-z0-9][A-Za-z0-9_.-]*"
STACK_NAME_HELP = "a fully qualified stack name ORG/PROJECT/STACK (`pulumi stack ls --all` shows them)"
KUBE_VERSION = r"1\.[0-9]{2}(\.[0-9]+)?"
KUBE_VERSION_HELP = "a Kubernetes version such as 1.34.0"
UNITS = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
UNITS.update({f"{p}i": 1024.0**n for n, p in enumerate("KMGTP", start=1)})


def quantity_bytes(text: str) -> float:
    """`1Ti` -> 1099511627776.0: a QUANTITY-shaped string as a number (for size floors)."""
    number, unit = re.fullmatch(r"([0-9.]+)([A-Za-z]*)", text).groups()  # type: ignore[union-attr]
    return float(number) * UNITS[unit]


# Every target offers these ReadWriteMany kinds; a target registers any others it brings (SHARED_STORAGE).
COMMON_SHARED_KINDS = ("none", "existing", "nfs")


def _target_kinds() -> Mapping[str, type]:
    return registry.target_settings()


def _frameworks() -> Mapping[str, type]:
    return registry.framework_settings()


@dataclass(frozen=True)
class TargetConfig:
    """Where the federations run: `kind` picks the target, the block named after it configures it."""

    kind: str
    settings: Any = rule(None, variants=_target_kinds, tag="kind")


# The image of the nfs-server-provisioner chart flstack deploys (chart 1.8.0's appVersion).
NFS_IMAGE = "registry.k8s.io/sig-storage/nfs-provisioner:v4.0.8"


@dataclass(frozen=True)
class SharedStorageConfig:
    """ReadWriteMany storage that federations ask for by the name `shared`.

    `existing`: a class the cluster already has; `nfs`: an in-cluster NFS server (any target) backed by
    the data class; or a kind the target brings (`efs` on eks, `filestore` on gke): StackConfig checks it.
    """

    kind: str = "none"
    storage_class: str | None = None
    # The NFS server's own volume (kind nfs): every shared volume lives inside it. Default 20Gi.
    size: str | None = rule(None, pattern=QUANTITY, pattern_help=QUANTITY_HELP)

    def check(self) -> Iterator[tuple[str, str]]:
        if self.kind == "existing" and not self.storage_class:
            yield "storageClass", "required when kind is 'existing': the name of a ReadWriteMany StorageClass"
        if self.kind != "existing" and self.storage_class:
            yield "storageClass", f"only used when kind is 'existing' (kind is {self.kind!r})"
        if self.kind != "nfs" and self.size:
            yield "size", f"only used when kind is 'nfs' (kind is {self.kind!r})"

    def images(self) -> list[str]:
        return [NFS_IMAGE] if self.kind == "nfs" else []


@dataclass(frozen=True)
class StorageConfig:
    # ReadWriteOnce class for federation state (databases, workspaces); None = the target's default.
    data_class: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    shared: SharedStorageConfig = field(default_factory=SharedStorageConfig)


@dataclass(frozen=True)
class FederationConfig:
    """One federation: a framework deployed into its own namespace (and more, for per-party ones)."""

    name: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    framework: str = rule()
    namespace: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    # The post-deploy verification Job (components/verify.py). Unset: the target's default (true on the
    # local minikube target, false elsewhere); `parse` resolves it, so after loading it is a bool.
    verify: bool | None = None
    settings: Any = rule(None, variants=_frameworks, tag="framework")

    @property
    def home_namespace(self) -> str:
        # A framework that hard-codes its namespace (FLTK: `test`) names it as `required_namespace`.
        return self.namespace or getattr(self.settings, "required_namespace", None) or self.name

    def party_namespaces(self) -> list[tuple[str, str]]:
        """(settings key, namespace) for every namespace a per-party framework adds to its home namespace."""
        of = getattr(self.settings, "party_namespaces", None)
        return list(of(self.home_namespace)) if callable(of) else []

    def check(self) -> Iterator[tuple[str, str]]:
        # Frameworks that render custom resources check them (models, webhook rules, pod schemas) here,
        # before anything is registered.
        required = getattr(self.settings, "required_namespace", None)
        if required and self.namespace not in (None, required):
            why = getattr(self.settings, "required_namespace_reason", "the framework hard-codes it")
            yield "namespace", f"{self.framework} runs only in namespace {required!r} ({why}): remove the key"
        if self.verify and not registry.verifies(self.framework):
            yield "verify", f"{self.framework} has no verification Job yet: remove the key or set it to false"
        refusal = getattr(self.settings, "verify_refusal", None)
        why = refusal() if self.verify and callable(refusal) else None
        if why:
            yield "verify", why
        rendered = getattr(self.settings, "manifest_problems", None)
        if callable(rendered):
            for key, message in rendered(self.name, self.home_namespace):
                yield (f"{self.framework}.{key}" if key else self.framework), message
        for key, ns in self.party_namespaces():
            if len(ns) > 63:
                yield (
                    f"{self.framework}.{key}",
                    f"its namespace {ns!r} is longer than 63 characters: shorten it or the federation's namespace",
                )


@dataclass(frozen=True)
class TrainerOperatorConfig:
    """Kubeflow Trainer v2 (TrainJob), for `framework: kubeflow`. `existing`: the cluster already runs it."""

    version: Literal["2.3.0"] = "2.3.0"  # Helm chart version; flstack knows what each version needs
    existing: bool = False


@dataclass(frozen=True)
class TrainingOperatorConfig:
    """Kubeflow Training Operator v1 (PyTorchJob), for `framework: fltk`. `existing`: already installed."""

    version: Literal["v1.9.4"] = "v1.9.4"
    existing: bool = False


@dataclass(frozen=True)
class OperatorsConfig:
    """Cluster add-ons, installed once per stack and only when a federation's framework needs them."""

    trainer: TrainerOperatorConfig = field(default_factory=TrainerOperatorConfig)
    training_operator: TrainingOperatorConfig = field(default_factory=TrainingOperatorConfig)


# operator (the key under flstack:operators) -> version -> the lowest Kubernetes minor version it supports.
OPERATOR_MIN_KUBERNETES = {
    "trainer": {"2.3.0": (1, 31)},
    "trainingOperator": {"v1.9.4": (1, 25)},  # its README: "Version >= 1.25 of Kubernetes"
}
OPERATOR_TITLES = {"trainer": "Kubeflow Trainer", "trainingOperator": "Kubeflow Training Operator"}


# Namespaces a federation must never claim: the cluster's own, and the one flstack's NFS server lives in.
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
NFS_NAMESPACE = "flstack-nfs"


IMAGE_DIGEST = r"sha256:[0-9a-f]{64}"
IMAGE_DIGEST_HELP = "an image digest such as sha256: followed by 64 hex digits"


@dataclass(frozen=True)
class StackConfig:
    target: TargetConfig
    storage: StorageConfig = field(default_factory=StorageConfig)
    federations: list[FederationConfig] = field(default_factory=list)
    operators: OperatorsConfig = field(default_factory=OperatorsConfig)

    def needed_operators(self) -> dict[str, int]:
        """Operator key -> index of the first federation needing it (a framework's settings name it: `operator`)."""
        needed: dict[str, int] = {}
        for i, fed in enumerate(self.federations):
            operator = getattr(getattr(fed, "settings", None), "operator", None)
            if operator:
                needed.setdefault(operator, i)
        return needed

    def _operator_versions(self) -> Iterator[tuple[str, str]]:
        version = getattr(self.target.settings, "kubernetes_version", None)
        if not isinstance(version, str):
            return
        have = tuple(int(part) for part in version.split(".")[:2])
        for operator, i in self.needed_operators().items():
            wanted = getattr(self.operators, _snake(operator)).version
            low = OPERATOR_MIN_KUBERNETES[operator][wanted]
            if have < low:
                yield (
                    f"target.{self.target.kind}.kubernetesVersion",
                    f"{version!r} is below {low[0]}.{low[1]}, the lowest Kubernetes {OPERATOR_TITLES[operator]} "
                    f"{wanted} supports (federations[{i}] uses framework {self.federations[i].framework!r}): "
                    f"raise it to {low[0]}.{low[1]} or later",
                )

    # `repository:tag` of an image flstack runs -> its digest: pods then pull exactly those bytes.
    image_digests: dict[str, str] = rule(default_factory=dict, pattern=IMAGE_DIGEST, pattern_help=IMAGE_DIGEST_HELP)

    def images(self) -> list[str]:
        """Every image this stack runs (`repository:tag`), as the settings blocks that run them list them."""
        blocks: list[Any] = [self.storage.shared, *(fed.settings for fed in self.federations if fed is not None)]
        return sorted({ref for block in blocks for ref in _images_of(block)})

    def _unknown_digests(self) -> Iterator[tuple[str, str]]:
        used = self.images()
        for ref in self.image_digests:
            if ref not in used:
                allowed = ", ".join(used) or "none"
                yield f"imageDigests.{ref}", f"this stack runs no image {ref!r}; images it runs: {allowed}"

    def _reserved_namespaces(self) -> Iterator[tuple[str, str]]:
        for i, fed in enumerate(self.federations):
            if fed is None:
                continue
            owned = [("namespace", fed.home_namespace)]
            owned += [(f"{fed.framework}.{key}", ns) for key, ns in fed.party_namespaces()]
            for key, ns in owned:
                if ns in SYSTEM_NAMESPACES or ns.startswith("kube-"):
                    yield f"federations[{i}].{key}", f"{ns!r} belongs to Kubernetes itself: pick another namespace"
                elif ns == NFS_NAMESPACE and self.storage.shared.kind == "nfs":
                    yield f"federations[{i}].{key}", f"{ns!r} is where flstack runs the NFS server: pick another"

    def _shared_kinds(self) -> tuple[str, ...]:
        return (*COMMON_SHARED_KINDS, *registry.shared_storage(self.target.kind))

    def _shared_kind_offered(self) -> Iterator[tuple[str, str]]:
        kind = self.storage.shared.kind
        if kind in self._shared_kinds():
            return
        owners = sorted(k for k in registry.TARGETS if kind in registry.shared_storage(k))
        allowed = ", ".join(repr(k) for k in self._shared_kinds())
        if owners:
            yield (
                "storage.shared.kind",
                f"{kind!r} needs the {' or '.join(owners)} target (target is {self.target.kind!r}); "
                f"allowed here: {allowed} ('nfs' is an in-cluster NFS server)",
            )
        else:
            yield "storage.shared.kind", f"expected one of {allowed} (the {self.target.kind} target's), got {kind!r}"

    def _shared_storage_users(self) -> Iterator[tuple[str, str]]:
        kind = self.storage.shared.kind
        if kind == "none":
            allowed = ", ".join(k for k in self._shared_kinds() if k != "none")
            for i, fed in enumerate(self.federations):
                keys: list[str] = getattr(getattr(fed, "settings", None), "shared_storage_keys", list)()
                for key in keys:
                    yield (
                        f"federations[{i}].{fed.framework}.{key}",
                        f"needs ReadWriteMany storage: set flstack:storage.shared.kind ({allowed})",
                    )
            return
        minimum = registry.shared_storage(self.target.kind).get(kind)
        if minimum is None:
            return
        for i, fed in enumerate(self.federations):
            claims: list[tuple[str, str]] = getattr(getattr(fed, "settings", None), "shared_storage_claims", list)()
            for key, size in claims:
                if quantity_bytes(size) < quantity_bytes(minimum):
                    yield (
                        f"federations[{i}].{fed.framework}.{key}",
                        f"{size!r} is below the smallest {kind!r} volume ({minimum}), which would be billed in full: "
                        f"ask for at least {minimum}, or use storage.shared.kind 'nfs' for small shared data",
                    )

    def _load_balancers(self) -> Iterator[tuple[str, str]]:
        refusal = registry.load_balancer_refusal(self.target.kind)
        if refusal is None:
            return
        for i, fed in enumerate(self.federations):
            for key, exposure in _exposures(getattr(fed, "settings", None)):
                if exposure.type == "LoadBalancer":
                    yield (
                        f"federations[{i}].{fed.framework}.{key}.type",
                        f"'LoadBalancer' on {self.target.kind}: {refusal}",
                    )

    def check(self) -> Iterator[tuple[str, str]]:
        yield from self._reserved_namespaces()
        yield from self._load_balancers()
        yield from self._shared_kind_offered()
        yield from self._shared_storage_users()
        yield from self._operator_versions()
        yield from self._unknown_digests()
        seen_names: dict[str, int] = {}
        seen_namespaces: dict[str, int] = {}
        for i, fed in enumerate(self.federations):
            if fed is None:
                continue
            if fed.name in seen_names:
                yield f"federations[{i}].name", f"{fed.name!r} is already used by federations[{seen_names[fed.name]}]"
            seen_names.setdefault(fed.name, i)
            owned = [("namespace", fed.home_namespace)]
            owned += [(f"{fed.framework}.{key}", ns) for key, ns in fed.party_namespaces()]
            for key, ns in owned:
                # Twice in one federation (a duplicate site): its settings check reports that, once.
                if ns in seen_namespaces and seen_namespaces[ns] != i:
                    yield (
                        f"federations[{i}].{key}",
                        f"{ns!r} is already used by federations[{seen_namespaces[ns]}]; each federation needs its own",
                    )
                seen_namespaces.setdefault(ns, i)


def _snake(key: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", key).lower()


def _exposures(settings: Any, path: str = "") -> Iterator[tuple[str, Exposure]]:
    """(camelCase key path, Exposure) of every exposure in a settings block."""
    if not dataclasses.is_dataclass(settings) or isinstance(settings, type):
        return
    for f in dataclasses.fields(settings):
        value = getattr(settings, f.name)
        key = f"{path}{camel(f.name)}"
        if isinstance(value, Exposure):
            yield key, value
        elif isinstance(value, list):  # per-party blocks (fate.parties[i].exposure)
            for i, item in enumerate(value):
                yield from _exposures(item, f"{key}[{i}].")
        else:
            yield from _exposures(value, f"{key}.")


def _images_of(settings: Any) -> list[str]:
    of = getattr(settings, "images", None)
    return list(of()) if callable(of) else []


# Building blocks that several frameworks' settings share.

CIDR_HELP = "a CIDR such as 203.0.113.0/24"
HOST_NAME = r"(([a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9\-]*[a-zA-Z0-9])\.)*([A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9\-]*[A-Za-z0-9])"
HOST_HELP = "a DNS name or an IP address (no wildcards)"


def is_cidr(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def is_open_cidr(text: str) -> bool:
    """0.0.0.0/0, ::/0 (or any other spelling of a /0): every address there is."""
    return is_cidr(text) and ipaddress.ip_network(text, strict=False).prefixlen == 0


def open_cidrs(key: str, cidrs: list[str], acknowledged: bool, ack_key: str) -> Iterator[tuple[str, str]]:
    """Refuses a /0 in `cidrs` unless the user set `ack_key`: "anyone on the internet" must be said on purpose."""
    if acknowledged:
        return
    for i, cidr in enumerate(cidrs):
        if cidr is not None and is_open_cidr(cidr):
            yield (
                f"{key}[{i}]",
                f"{cidr!r} means every address on the internet; list the networks that need access, "
                f"or set {ack_key}: true to accept that on purpose",
            )


def is_host(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return re.fullmatch(HOST_NAME, text) is not None and len(text) <= 253
    return True


@dataclass(frozen=True)
class Resources:
    """Container requests (= limits for memory and GPUs, so pods are never OOM-surprised)."""

    cpu: str | None = rule(None, pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    memory: str | None = rule(None, pattern=QUANTITY, pattern_help=QUANTITY_HELP)
    gpus: int = rule(0, min=0, max=16)

    def over(self, default: Resources) -> Resources:
        """These resources, with cpu and memory taken from `default` where unset: no container without either."""
        return Resources(cpu=self.cpu or default.cpu, memory=self.memory or default.memory, gpus=self.gpus)

    def manifest(self) -> dict[str, Any]:
        requests: dict[str, Any] = {}
        limits: dict[str, Any] = {}
        if self.cpu:
            requests["cpu"] = self.cpu
        if self.memory:
            requests["memory"] = limits["memory"] = self.memory
        if self.gpus:
            requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = self.gpus
        return {k: v for k, v in (("requests", requests), ("limits", limits)) if v}


@dataclass(frozen=True)
class Toleration:
    key: str
    operator: Literal["Equal", "Exists"] = "Equal"
    value: str | None = None
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None

    def check(self) -> Iterator[tuple[str, str]]:
        if self.operator == "Exists" and self.value is not None:
            yield "value", "must be empty when operator is 'Exists' (it matches any value)"

    def manifest(self) -> dict[str, Any]:
        out: dict[str, Any] = {"key": self.key, "operator": self.operator}
        if self.value is not None:
            out["value"] = self.value
        if self.effect is not None:
            out["effect"] = self.effect
        return out


@dataclass(frozen=True)
class Exposure:
    """How a coordinator is reached from outside the cluster (ClusterIP = not at all)."""

    type: Literal["ClusterIP", "LoadBalancer", "NodePort"] = "ClusterIP"
    # Who may connect through the load balancer (spec.loadBalancerSourceRanges).
    source_ranges: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    node_port: int | None = rule(None, min=30000, max=32767)
    # External DNS names or IPs clients dial: they go into the server certificate.
    hostnames: list[str] = rule(default_factory=list, valid=is_host, pattern_help=HOST_HELP)
    # The acknowledgement that sourceRanges (and a framework's allowedCidrs) may hold 0.0.0.0/0 or ::/0.
    allow_internet: bool = False

    def check(self) -> Iterator[tuple[str, str]]:
        yield from open_cidrs("sourceRanges", self.source_ranges, self.allow_internet, "exposure.allowInternet")
        if self.source_ranges and self.type != "LoadBalancer":
            yield "sourceRanges", f"only used with type 'LoadBalancer' (type is {self.type!r})"
        if self.node_port is not None and self.type != "NodePort":
            yield "nodePort", f"only used with type 'NodePort' (type is {self.type!r})"
        if self.type == "LoadBalancer" and not self.source_ranges:
            yield "sourceRanges", "required with type 'LoadBalancer': list the CIDRs allowed to connect"


@dataclass(frozen=True)
class Egress:
    """Where a federation's pods may connect beyond cluster DNS and their own peers (default: nowhere else)."""

    # Destinations outside the federation (a dataset server, an object store's range, a metrics endpoint).
    cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Limit those destinations to these TCP ports (empty: any port).
    ports: list[int] = rule(default_factory=list, min=1, max=65535)
    # The acknowledgement that cidrs may hold 0.0.0.0/0 or ::/0 (egress to anywhere).
    allow_internet: bool = False

    def check(self) -> Iterator[tuple[str, str]]:
        yield from open_cidrs("cidrs", self.cidrs, self.allow_internet, "egress.allowInternet")
        if self.ports and not self.cidrs:
            yield "ports", "only used with cidrs: list the destinations these ports are for"
