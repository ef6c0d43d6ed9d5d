"""Kubernetes NetworkPolicy semantics over a render: which connections the rendered policies let through.

    cluster = Cluster.from_manifests(rendering.manifests())
    cluster.allowed(cluster.pod("demo", "supernodes-default-0"), cluster.pod("demo", "superlink-0"), 8000)
    cluster.connect(source_pod, "superlink.demo.svc.cluster.local", 8000)   # DNS lookup + Service + policies

The model, from the networking.k8s.io/v1 API reference and the upstream conformance tests
(test/e2e/network/netpol):
- Namespaces carry their labels plus `kubernetes.io/metadata.name` (the API server sets it).
- Pods come from the workloads' pod templates (Deployment, StatefulSet, Job, DaemonSet as one pod), one per
  replica, at least one: a workload scaled to 0 (NVFlare's admin pod) is modelled as it runs when scaled up.
  StatefulSet pods also carry `apps.kubernetes.io/pod-index`. Deployment pods are named `<name>-<i>` (the real
  ones get a hash; no selector here can see the name). Pod IPs are stable stand-ins from POD_CIDR.
- A pod is isolated for ingress (egress) when some policy of its namespace selects it with that policy type;
  policyTypes defaults to Ingress, plus Egress when the policy has egress rules. Isolated traffic is allowed
  when at least one rule of those policies matches; a connection needs its source's egress AND its
  destination's ingress to allow it. No policy = allowed.
- Peers: podSelector (in the policy's namespace), namespaceSelector, both in one peer (AND), ipBlock with
  except (matched against pod IPs too, as the conformance CIDR tests do). Empty or absent `from`/`to` = all.
- Ports: numbered, named (resolved against the destination pod's container ports of the same protocol), endPort
  ranges, protocol defaulting to TCP, an entry without a port = every port of its protocol.
- Cluster DNS is part of the cluster: kube-dns pods (label k8s-app=kube-dns) in kube-system, UDP and TCP 53,
  behind Service kube-system/kube-dns. Resolving a Service name is a UDP/53 flow to them.
Not modelled: traffic from the pod's own node (kubelet probes), hostNetwork pods, loopback inside a pod.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

POD_INDEX_LABEL = "apps.kubernetes.io/pod-index"
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"
POD_CIDR = ipaddress.ip_network("10.244.0.0/16")
DNS_NAMESPACE, DNS_SERVICE, DNS_LABELS = "kube-system", "kube-dns", {"k8s-app": "kube-dns"}
CLUSTER_DOMAIN = "svc.cluster.local"
WORKLOAD_KINDS = ("Deployment", "StatefulSet", "Job", "DaemonSet", "ReplicaSet")
JOBSET_LABEL = "jobset.sigs.k8s.io/jobset-name"


@dataclass(frozen=True)
class ContainerPort:
    port: int
    protocol: str = "TCP"
    name: str | None = None


@dataclass(frozen=True)
class Pod:
    namespace: str
    name: str
    workload: str  # `Kind/name` of what made it
    labels: dict[str, str] = field(hash=False, compare=False)
    ip: str = ""
    ports: tuple[ContainerPort, ...] = ()

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


Endpoint = Pod | str  # a pod, or an IP address outside the cluster


@dataclass(frozen=True)
class Verdict:
    allowed: bool
    reason: str

    def __bool__(self) -> bool:
        return self.allowed


def _label(endpoint: Endpoint) -> str:
    return str(endpoint) if isinstance(endpoint, Pod) else f"ip {endpoint}"


def matches(selector: dict[str, Any] | None, labels: dict[str, str]) -> bool:
    """A metav1.LabelSelector: matchLabels AND every matchExpression; {} selects everything."""
    if selector is None:
        return False
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for expression in selector.get("matchExpressions") or []:
        key, operator, values = expression["key"], expression["operator"], expression.get("values") or []
        present = key in labels
        ok = {
            "In": present and labels.get(key) in values,
            "NotIn": not present or labels.get(key) not in values,
            "Exists": present,
            "DoesNotExist": not present,
        }.get(operator)
        if ok is None:
            raise ValueError(f"unknown label selector operator {operator!r}")
        if not ok:
            return False
    return True


def in_block(ip: str, block: dict[str, Any]) -> bool:
    address = ipaddress.ip_address(ip)
    cidr = ipaddress.ip_network(block["cidr"], strict=False)
    if address.version != cidr.version or address not in cidr:
        return False
    return not any(address in ipaddress.ip_network(e, strict=False) for e in block.get("except") or [])


@dataclass(frozen=True)
class Policy:
    namespace: str
    name: str
    spec: dict[str, Any] = field(hash=False, compare=False)
    labels: dict[str, str] = field(default_factory=dict, hash=False, compare=False)  # its own, not its pods'

    @property
    def types(self) -> set[str]:
        declared = self.spec.get("policyTypes")
        if declared:
            return set(declared)
        return {"Ingress", "Egress"} if self.spec.get("egress") else {"Ingress"}

    def selects(self, pod: Pod) -> bool:
        return pod.namespace == self.namespace and matches(self.spec.get("podSelector", {}), pod.labels)

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass
class Service:
    namespace: str
    name: str
    selector: dict[str, str] | None
    ports: list[dict[str, Any]]
    headless: bool = False  # pods are reachable as `<pod>.<service>` on any port

    def dns_names(self) -> list[str]:
        n, ns = self.name, self.namespace
        return [n, f"{n}.{ns}", f"{n}.{ns}.svc", f"{n}.{ns}.{CLUSTER_DOMAIN}"]


@dataclass(frozen=True)
class Flow:
    source: Endpoint
    destination: Endpoint
    port: int
    protocol: str
    verdict: Verdict

    def __str__(self) -> str:
        state = "allowed" if self.verdict.allowed else "DROPPED"
        return (
            f"{_label(self.source)} -> {_label(self.destination)} {self.protocol}/{self.port} "
            f"{state}: {self.verdict.reason}"
        )


@dataclass
class Connection:
    """A connection by name: the DNS lookup (if the host is a Service name) and then the Service's endpoints."""

    flows: list[Flow]
    problem: str | None = None  # no such Service, no endpoints, no such port

    @property
    def allowed(self) -> bool:
        return self.problem is None and all(f.verdict.allowed for f in self.flows)

    def refused(self) -> list[Flow]:
        return [f for f in self.flows if not f.verdict.allowed]

    def explain(self) -> str:
        lines = [self.problem] if self.problem else []
        return "\n".join([*lines, *(str(f) for f in self.flows)])


@dataclass
class Cluster:
    namespaces: dict[str, dict[str, str]]  # name -> labels (with kubernetes.io/metadata.name)
    pods: list[Pod]
    services: list[Service]
    policies: list[Policy]

    @classmethod
    def from_manifests(cls, manifests: Iterable[dict[str, Any]], cluster_dns: bool = True) -> Cluster:
        manifests = list(manifests)
        namespaces: dict[str, dict[str, str]] = {}
        runtimes = {
            (o["kind"], o["metadata"].get("namespace"), o["metadata"]["name"]): o
            for o in manifests
            if o["kind"] in ("ClusterTrainingRuntime", "TrainingRuntime")
        }
        pods: list[Pod] = []
        services: list[Service] = []
        policies: list[Policy] = []
        for obj in manifests:
            meta = obj["metadata"]
            kind = obj["kind"]
            if kind == "Namespace":
                namespaces[meta["name"]] = {**(meta.get("labels") or {}), NAMESPACE_NAME_LABEL: meta["name"]}
            elif kind in WORKLOAD_KINDS:
                pods += _workload_pods(obj)
            elif kind == "TrainJob":
                train_pods = list(_train_job_pods(obj, runtimes))
                pods += train_pods
                # JobSet's headless Service, named after it: pods are `<hostname>.<jobset>` to each other.
                selector = {JOBSET_LABEL: meta["name"]}
                services.append(Service(meta["namespace"], meta["name"], selector, [], headless=True))
            elif kind == "Service":
                spec = obj.get("spec") or {}
                headless = spec.get("clusterIP") == "None"  # its pods get `<pod>.<service>` names (StatefulSets)
                ports = spec.get("ports", [])
                services.append(Service(meta["namespace"], meta["name"], spec.get("selector"), ports, headless))
            elif kind == "NetworkPolicy":
                policies.append(Policy(meta["namespace"], meta["name"], obj["spec"], meta.get("labels") or {}))
        for ns in {p.namespace for p in pods} | {s.namespace for s in services} | {p.namespace for p in policies}:
            namespaces.setdefault(ns, {NAMESPACE_NAME_LABEL: ns})  # `default` and others the render assumes
        if cluster_dns and not any(matches({"matchLabels": DNS_LABELS}, p.labels) for p in pods):
            namespaces.setdefault(DNS_NAMESPACE, {NAMESPACE_NAME_LABEL: DNS_NAMESPACE})
            dns_ports = (ContainerPort(53, "UDP", "dns"), ContainerPort(53, "TCP", "dns-tcp"))
            pods.append(Pod(DNS_NAMESPACE, "coredns-0", f"Deployment/{DNS_SERVICE}", dict(DNS_LABELS), "", dns_ports))
            dns_service_ports = [{"name": p.name, "port": 53, "protocol": p.protocol} for p in dns_ports]
            services.append(Service(DNS_NAMESPACE, DNS_SERVICE, dict(DNS_LABELS), dns_service_ports))
        network = POD_CIDR.network_address
        pods = [
            Pod(p.namespace, p.name, p.workload, p.labels, str(network + i + 10), p.ports)
            for i, p in enumerate(sorted(pods, key=lambda p: (p.namespace, p.name)))
        ]
        return cls(namespaces, pods, services, policies)

    # --- looking things up

    def pod(self, namespace: str, name: str) -> Pod:
        for pod in self.pods:
            if pod.namespace == namespace and pod.name == name:
                return pod
        raise KeyError(f"no pod {namespace}/{name} in the model (pods: {', '.join(map(str, self.pods))})")

    def pods_of(self, namespace: str, workload: str) -> list[Pod]:
        """The pods of a workload, by `Kind/name` or by name alone."""
        return [p for p in self.pods if p.namespace == namespace and workload in (p.workload, p.workload.split("/")[1])]

    def service(self, host: str, from_namespace: str) -> Service | None:
        """The Service a DNS name means to a pod in `from_namespace` (a bare name is its own namespace's)."""
        for service in self.services:
            names = service.dns_names()
            if host in names[1:] or (host == service.name and service.namespace == from_namespace):
                return service
        return None

    def endpoints(self, service: Service) -> list[Pod]:
        if service.selector is None:
            return []
        selector = {"matchLabels": service.selector}
        return [p for p in self.pods if p.namespace == service.namespace and matches(selector, p.labels)]

    def cluster_dns(self) -> list[Pod]:
        service = next((s for s in self.services if (s.namespace, s.name) == (DNS_NAMESPACE, DNS_SERVICE)), None)
        return self.endpoints(service) if service else []

    # --- the semantics

    def verdict(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> Verdict:
        """Whether `source` may open `protocol`/`port` to `destination`: its egress AND the destination's ingress."""
        egress = self._egress(source, destination, port, protocol) if isinstance(source, Pod) else None
        if egress is not None and not egress.allowed:
            return egress
        ingress = self._ingress(source, destination, port, protocol) if isinstance(destination, Pod) else None
        if ingress is not None and not ingress.allowed:
            return ingress
        reasons = [v.reason for v in (egress, ingress) if v is not None]
        return Verdict(True, "; ".join(reasons) or "outside the cluster on both ends")

    def allowed(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> bool:
        return self.verdict(source, destination, port, protocol).allowed

    def flow(self, source: Endpoint, destination: Endpoint, port: int, protocol: str = "TCP") -> Flow:
        return Flow(source, destination, port, protocol, self.verdict(source, destination, port, protocol))

    def connect(self, source: Endpoint, host: str, port: int, protocol: str = "TCP") -> Connection:
        """`source` dials `host:port`. A Service name costs a DNS lookup (UDP 53 to cluster DNS) first; then
        every endpoint of the Service must admit the connection on the target port (kube-proxy may pick any)."""
        try:
            ipaddress.ip_address(host)
            by_address = True
        except ValueError:
            by_address = False
        if by_address:
            destination: Endpoint = next((p for p in self.pods if p.ip == host), host)
            return Connection([self.flow(source, destination, port, protocol)])
        from_ns = source.namespace if isinstance(source, Pod) else ""
        service = self.service(host, from_ns)
        hostname, _, rest = host.partition(".")
        subdomain = self.service(rest, from_ns) if service is None and rest else None
        if subdomain is not None and subdomain.headless:  # `<pod>.<headless service>`: that one pod
            pod = next((p for p in self.endpoints(subdomain) if p.name == hostname), None)
            if pod is None:
                return Connection([], f"{host}: no pod {hostname} behind headless Service {subdomain.name}")
            lookup = self._dns_lookup(source)
            if not isinstance(lookup, Flow) or not lookup.verdict.allowed:
                return lookup if isinstance(lookup, Connection) else Connection([lookup])
            return Connection([lookup, self.flow(source, pod, port, protocol)])
        if service is None:
            return Connection([], f"{host} is no Service of the render (no DNS answer)")
        lookup = self._dns_lookup(source)
        if isinstance(lookup, Connection):
            return lookup
        flows = [lookup]
        if not lookup.verdict.allowed:
            return Connection(flows)  # no address, no connection
        service_port = next(
            (p for p in service.ports if p["port"] == port and p.get("protocol", "TCP") == protocol), None
        )
        if service_port is None:
            return Connection(flows, f"Service {service.namespace}/{service.name} has no {protocol} port {port}")
        endpoints = self.endpoints(service)
        if not endpoints:
            return Connection(flows, f"Service {service.namespace}/{service.name} selects no pod: no endpoints")
        for pod in endpoints:
            target = _target_port(service_port, pod)
            if target is None:
                return Connection(flows, f"{pod} has no port {service_port.get('targetPort')!r} for the Service")
            flows.append(self.flow(source, pod, target, protocol))
        return Connection(flows)

    def _dns_lookup(self, source: Endpoint) -> Flow | Connection:
        dns = self.cluster_dns()
        if not dns:
            return Connection([], "the model has no cluster DNS")
        return self.flow(source, dns[0], 53, "UDP")

    def _ingress(self, source: Endpoint, destination: Pod, port: int, protocol: str) -> Verdict:
        return self._isolation("Ingress", destination, source, destination, port, protocol)

    def _egress(self, source: Pod, destination: Endpoint, port: int, protocol: str) -> Verdict:
        return self._isolation("Egress", source, destination, destination, port, protocol)

    def _isolation(
        self, direction: str, pod: Pod, peer: Endpoint, destination: Endpoint, port: int, protocol: str
    ) -> Verdict:
        """Whether the policies isolating `pod` in `direction` let `peer` through (to `destination`'s port)."""
        rules_key, peers_key = ("ingress", "from") if direction == "Ingress" else ("egress", "to")
        policies = [p for p in self.policies if direction in p.types and p.selects(pod)]
        if not policies:
            return Verdict(True, f"no policy isolates {pod} for {rules_key}")
        for policy in policies:
            for i, rule in enumerate(policy.spec.get(rules_key) or []):
                if self._peers_match(rule.get(peers_key), peer, policy) and _ports_match(
                    rule.get("ports"), destination, port, protocol
                ):
                    return Verdict(True, f"{rules_key} allowed by {policy} rule {i}")
        names = ", ".join(str(p) for p in policies)
        return Verdict(False, f"no {rules_key} rule of {names} (isolating {pod}) admits {_label(peer)}")

    def _peers_match(self, peers: list[dict[str, Any]] | None, endpoint: Endpoint, policy: Policy) -> bool:
        if not peers:
            return True  # absent or empty: every source/destination
        return any(self._peer_matches(peer, endpoint, policy) for peer in peers)

    def _peer_matches(self, peer: dict[str, Any], endpoint: Endpoint, policy: Policy) -> bool:
        if "ipBlock" in peer:
            ip = endpoint.ip if isinstance(endpoint, Pod) else endpoint
            return bool(ip) and in_block(ip, peer["ipBlock"])
        if not isinstance(endpoint, Pod):
            return False  # selectors only ever match pods
        namespace_selector = peer.get("namespaceSelector")
        if namespace_selector is None:
            in_namespace = endpoint.namespace == policy.namespace
        else:
            in_namespace = matches(namespace_selector, self.namespaces.get(endpoint.namespace, {}))
        pod_selector = peer.get("podSelector")
        return in_namespace and (pod_selector is None or matches(pod_selector, endpoint.labels))


def _ports_match(ports: list[dict[str, Any]] | None, destination: Endpoint, port: int, protocol: str) -> bool:
    if not ports:
        return True
    return any(_port_matches(entry, destination, port, protocol) for entry in ports)


def _port_matches(entry: dict[str, Any], destination: Endpoint, port: int, protocol: str) -> bool:
    entry_protocol = entry.get("protocol", "TCP")
    if entry_protocol != protocol:
        return False
    wanted = entry.get("port")
    if wanted is None:
        return True
    if isinstance(wanted, str) and not wanted.isdigit():  # a named port: the destination pod's own
        if not isinstance(destination, Pod):
            return False
        return any(p.name == wanted and p.protocol == protocol and p.port == port for p in destination.ports)
    start = int(wanted)
    end = entry.get("endPort")
    return start <= port <= int(end) if end is not None else port == start


def _target_port(service_port: dict[str, Any], pod: Pod) -> int | None:
    target = service_port.get("targetPort", service_port["port"])
    if isinstance(target, int) or str(target).isdigit():
        return int(target)
    protocol = service_port.get("protocol", "TCP")
    return next((p.port for p in pod.ports if p.name == target and p.protocol == protocol), None)


def _workload_pods(workload: dict[str, Any]) -> Iterator[Pod]:
    meta, spec = workload["metadata"], workload.get("spec") or {}
    template = spec["template"]
    labels = dict((template.get("metadata") or {}).get("labels") or {})
    ports = tuple(
        ContainerPort(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
        for c in template["spec"].get("containers", [])
        for p in c.get("ports") or []
    )
    kind = workload["kind"]
    replicas = max(1, int(spec.get("replicas", 1) if kind != "Job" else spec.get("parallelism", 1)))
    start = (spec.get("ordinals") or {}).get("start", 0)
    for i in range(replicas):
        pod_labels = dict(labels)
        if kind == "StatefulSet":
            pod_labels[POD_INDEX_LABEL] = str(start + i)
        name = f"{meta['name']}-{start + i}"
        yield Pod(meta["namespace"], name, f"{kind}/{meta['name']}", pod_labels, "", ports)


# --- the connectivity matrix: who may reach whom, per workload

OUTSIDE = "192.0.2.10"  # TEST-NET-1: an address no stack lists, standing in for "anywhere outside"
OUTSIDE_PORT = ContainerPort(443, "TCP")  # what the outside is probed on (egress to it), with every egress rule's port


@dataclass(frozen=True)
class Party:
    """A row or column of the matrix: a workload's pods, or an address outside the cluster."""

    label: str
    endpoints: tuple[Endpoint, ...]
    ports: tuple[ContainerPort, ...]
    namespace: str | None = None


def parties(cluster: Cluster) -> list[Party]:
    """Every workload (its pods), then the outside: an unlisted address and each CIDR the policies list."""
    by_workload: dict[tuple[str, str], list[Pod]] = {}
    for pod in cluster.pods:
        by_workload.setdefault((pod.namespace, pod.workload), []).append(pod)
    rows = [
        Party(f"{ns}/{workload}", tuple(pods), _listening(cluster, pods), ns)
        for (ns, workload), pods in sorted(by_workload.items())
    ]
    outside_ports = _egress_ports(cluster)
    rows.append(Party(f"outside {OUTSIDE}", (OUTSIDE,), outside_ports))
    for cidr in sorted(listed_cidrs(cluster)):
        network = ipaddress.ip_network(cidr, strict=False)
        address = str(next(iter(network.hosts()), network.network_address))  # a /32: hosts() is a list
        rows.append(Party(f"cidr {cidr}", (address,), outside_ports))
    return rows


def _egress_ports(cluster: Cluster) -> tuple[ContainerPort, ...]:
    """HTTPS, plus every numbered port an egress rule names (the start of a range): where egress could leak."""
    ports = {OUTSIDE_PORT}
    for policy in cluster.policies:
        for rule in policy.spec.get("egress") or []:
            for entry in rule.get("ports") or []:
                if isinstance(entry.get("port"), int):
                    ports.add(ContainerPort(entry["port"], entry.get("protocol", "TCP")))
    return tuple(sorted(ports, key=lambda p: (p.port, p.protocol)))


def _listening(cluster: Cluster, pods: list[Pod]) -> tuple[ContainerPort, ...]:
    """The ports a workload's pods declare, plus the numbered target ports of the Services that select them and
    the numbered ports (range starts) the policies selecting them open: probes, Services and peers may reach
    ports a container never declares."""
    ports = set(pods[0].ports)
    for service in cluster.services:
        if pods[0] in cluster.endpoints(service):
            for p in service.ports:
                target = p.get("targetPort", p["port"])
                if isinstance(target, int):
                    ports.add(ContainerPort(target, p.get("protocol", "TCP")))
    for policy in cluster.policies:  # ports a policy opens to these pods (Trainer's nodes declare none)
        if "Ingress" in policy.types and policy.selects(pods[0]):
            for rule in policy.spec.get("ingress") or []:
                for entry in rule.get("ports") or []:
                    if isinstance(entry.get("port"), int):
                        ports.add(ContainerPort(entry["port"], entry.get("protocol", "TCP")))
    unnamed = {(p.port, p.protocol) for p in ports if p.name}
    ports = {p for p in ports if p.name or (p.port, p.protocol) not in unnamed}
    return tuple(sorted(ports, key=lambda p: (p.port, p.protocol)))


def listed_cidrs(cluster: Cluster) -> set[str]:
    """Every ipBlock CIDR a policy names (what the stack's users listed), except the all-covering ones."""
    cidrs = set()
    for policy in cluster.policies:
        for rule in [*(policy.spec.get("ingress") or []), *(policy.spec.get("egress") or [])]:
            for peer in [*(rule.get("from") or []), *(rule.get("to") or [])]:
                block = peer.get("ipBlock")
                if block and ipaddress.ip_network(block["cidr"], strict=False).prefixlen > 0:
                    cidrs.add(block["cidr"])
    return cidrs


def connectivity(cluster: Cluster) -> dict[tuple[str, str], list[str]]:
    """(source, destination) -> the destination's ports every source pod may open to every destination pod
    (`PROTO/port`, with ` (some pods)` when only some pod pairs may). Pairs with nothing allowed are left out."""
    everyone = parties(cluster)
    result: dict[tuple[str, str], list[str]] = {}
    for source in everyone:
        for destination in everyone:
            if source is destination and source.namespace is None:
                continue
            cells = []
            for port in destination.ports:
                verdicts = [
                    cluster.allowed(s, d, port.port, port.protocol)
                    for s in source.endpoints
                    for d in destination.endpoints
                    if s is not d
                ]
                if any(verdicts):
                    cells.append(f"{port.protocol}/{port.port}" + ("" if all(verdicts) else " (some pods)"))
            if cells:
                result[(source.label, destination.label)] = cells
    return result


def format_matrix(cluster: Cluster) -> str:
    """Rows are sources, columns destinations (numbered as the rows); a cell lists the allowed ports,
    `-` nothing, `.` the destination listens on no declared port."""
    everyone = parties(cluster)
    flows = connectivity(cluster)
    header = ["from \\ to", *(f"[{i}]" for i in range(1, len(everyone) + 1))]
    rows = [header]
    for i, source in enumerate(everyone, start=1):
        row = [f"[{i}] {source.label}"]
        for destination in everyone:
            if not destination.ports:
                row.append(".")
            else:
                pairs = [(s, d) for s in source.endpoints for d in destination.endpoints if s is not d]
                cell = ",".join(flows.get((source.label, destination.label), []))
                row.append(cell or ("-" if pairs else "(self)"))
        rows.append(row)
    widths = [max(len(r[c]) for r in rows) for c in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join(lines)


def _train_job_pods(train_job: dict[str, Any], runtimes: dict[tuple[str, str | None, str], Any]) -> Iterator[Pod]:
    """The pods Kubeflow Trainer's JobSet makes for a TrainJob: one Job per replicated job of its runtime, the
    `node` job with numNodes pods; each pod labelled as JobSet and the Job controller label them."""
    meta, spec = train_job["metadata"], train_job["spec"]
    ref = spec["runtimeRef"]
    namespace = None if ref.get("kind", "ClusterTrainingRuntime") == "ClusterTrainingRuntime" else meta["namespace"]
    runtime = runtimes.get((ref.get("kind", "ClusterTrainingRuntime"), namespace, ref["name"]))
    if runtime is None:
        return  # a runtime from outside the render: its pods are not known here
    nodes = (spec.get("trainer") or {}).get("numNodes") or runtime["spec"].get("mlPolicy", {}).get("numNodes", 1)
    for replicated in runtime["spec"]["template"]["spec"]["replicatedJobs"]:
        job_spec = replicated["template"]["spec"]
        pod_template = job_spec["template"]
        count = nodes if replicated["name"] == "node" else job_spec.get("parallelism", 1)
        ports = tuple(
            ContainerPort(p["containerPort"], p.get("protocol", "TCP"), p.get("name"))
            for c in pod_template["spec"].get("containers", [])
            for p in c.get("ports") or []
        )
        job = f"{meta['name']}-{replicated['name']}-0"
        for index in range(count):
            labels = {
                **((pod_template.get("metadata") or {}).get("labels") or {}),
                JOBSET_LABEL: meta["name"],
                "jobset.sigs.k8s.io/replicatedjob-name": replicated["name"],
                "jobset.sigs.k8s.io/job-index": "0",
                "batch.kubernetes.io/job-name": job,
                "batch.kubernetes.io/job-completion-index": str(index),
            }
            yield Pod(meta["namespace"], f"{job}-{index}", f"TrainJob/{meta['name']}", labels, "", ports)
