"""The rendered NetworkPolicies, enforced on a local federation, in one of two ways, both asking tools.netpol.

Clients that reach a server through a Service connect through forwarders (tests/e2e/forward.py) where a
cluster has kube-proxy. Given the render, each forwarder knows which pod it serves and which Service name that
pod dialled, and on every connection asks tools.netpol whether the cluster would let it through: the DNS
lookup of the Service name (UDP 53 to kube-dns in kube-system), then the pod's egress and each endpoint's
ingress on the target port. Pods that dial each other directly, on ports no forwarder can know in advance
(gloo's), get a packet filter each instead (`pod_network`). Either way a refused connection is closed at once
and logged with the flow and the reason.

How a framework's e2e opts in (it is off unless the test passes the render):

    enforcement = Enforcement(rendering.manifests(), tmp_path / "netpol")

    # pods in network namespaces (tests/e2e/netns.py): add the guard to the forwarder of each client pod
    guard = enforcement.guard(("demo", "supernodes-default-0"), "superlink.demo.svc.cluster.local", 8000)
    processes.start("forward-node0", pods["node0"].forward(8000, netns.hub_address(1), 8000, guard), env)

    # pods on loopback (tests/e2e/local_pods.py): one guarded address per client pod; point the pod's name
    # mapping (tests/e2e/loopback: FLSTACK_E2E_HOSTS) at it
    address = enforcement.loopback_route(("demo-site-1", "site-1-0"), server_fqdn, 8002, upstream_port=8002)
    ...
    enforcement.close()                     # stops the loopback forwarders it started

    enforcement.refusals()                  # every refused connection, with the flow and the reason

    # pods that dial each other directly on a routed pod network (netns.pods(names, routed=True), one of them
    # standing in for kube-dns): each pod's own packet filter from the evaluator (tests/e2e/packet_filter.py),
    # and names resolved by a DNS server in the kube-dns pod (tests/e2e/cluster_dns.py), so a lookup is a real
    # UDP/53 flow the filter judges too
    with enforcement.pod_network(pods, {"node-0": ("fedavg", "fedavg-node-0-0"), ...}, dns="kube-dns"):
        ...

    # two such pod networks, one per cluster (cross-silo), wired together (netns.wire) at a pod of each: each
    # side's filters judge the other side's addresses as ipBlock peers (`Outside`)
    with enforcement.pod_network(pods, placement, dns="kube-dns", outside=Outside(links, addresses, names)):
        ...

Pods are named as tools.netpol models them: `<workload>-<index>` (StatefulSet ordinals, Deployment replicas,
a TrainJob's `<job>-node-0-<rank>`). To show that enforcement bites, give it a changed render:
`without_peer(...)`, `without_rule(...)` or `relabel(...)`.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.e2e import netns, packet_filter
from tests.e2e.netns import FORWARDER
from tools.netpol import WORKLOAD_KINDS, Cluster, Pod
from tools.stack_files import ROOT

MODEL_KINDS = {"Namespace", "Service", "NetworkPolicy", "TrainJob", "ClusterTrainingRuntime", *WORKLOAD_KINDS}
CLUSTER_DNS = Path(__file__).with_name("cluster_dns.py")


@dataclass(frozen=True)
class Outside:
    """Where a pod network meets another cluster (cross-silo): `links`, a local pod's addresses on its links there
    (its load balancer's and NAT's: traffic to or from them is that pod's); `addresses`, the other side's, which
    the packet filters judge as ipBlock peers (egress to them, ingress from them); `names`, the public names
    kube-dns answers by forwarding upstream (name -> addresses)."""

    links: dict[str, list[str]] = field(default_factory=dict)
    addresses: list[str] = field(default_factory=list)
    names: dict[str, list[str]] = field(default_factory=dict)


class Enforcement:
    def __init__(self, manifests: list[dict[str, Any]], workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        model = [obj for obj in manifests if obj["kind"] in MODEL_KINDS]  # no Secrets in the guard files
        self.cluster = Cluster.from_manifests(model)
        self.model = workdir / "model.json"
        self.model.write_text(json.dumps(model))
        self.routes: list[subprocess.Popen[bytes]] = []
        self.filtered: dict[str, tuple[netns.Pod, Pod]] = {}  # live packet filters: local name -> (pod, model pod)
        self.by_address: dict[str, Pod] = {}

    def guard(self, source: tuple[str, str] | None, host: str, port: int) -> list[str]:
        """forward.py options that make it admit only what the policies allow `source` (namespace, pod); None: an
        outside client, judged by its own address (host is then the pod the load balancer delivers to)."""
        if source is not None:
            self.cluster.pod(*source)  # a pod the model lacks is the test's mistake: say so now, not per connection
        name = f"{source[0]}.{source[1]}.{host}.{port}" if source else f"outside.{host}.{port}"
        spec = {
            "root": str(ROOT),
            "model": str(self.model),
            "source": list(source) if source else None,
            "host": host,
            "port": port,
            "log": str(self.workdir / f"{name}.decisions"),
        }
        path = self.workdir / f"{name}.guard.json"
        path.write_text(json.dumps(spec))
        return ["--policy", str(path)]

    def loopback_route(
        self, source: tuple[str, str], host: str, port: int, upstream_port: int, upstream_host: str = "127.0.0.1"
    ) -> str:
        """A guarded forwarder on a loopback address of `source`'s own to upstream_host:upstream_port; its address."""
        address = f"127.{80 + len(self.routes)}.{os.getpid() % 250 + 1}.1"  # unlikely to be another run's
        argv = [sys.executable, str(FORWARDER), str(port), upstream_host, str(upstream_port), "--listen-host", address]
        log = (self.workdir / f"forward-{source[1]}.log").open("wb")
        process = subprocess.Popen(
            [*argv, *self.guard(source, host, port)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.routes.append(process)
        _wait_listening(address, port, process)
        return address

    @contextmanager
    def pod_network(
        self,
        pods: dict[str, netns.Pod],
        placement: dict[str, tuple[str, str]],
        dns: str,
        outside: Outside | None = None,
    ) -> Iterator[None]:
        """Enforces the policies on `pods` (from netns.pods(names, routed=True)): `placement` names the model pod
        (namespace, pod) each local pod is; the local pod `dns` becomes kube-dns. Every pod resolves names
        through it and gets a packet filter admitting only what the evaluator allows it to open. Enter it again
        with another placement to run other pods (a verification Job's) in the same namespaces afterwards.
        `outside`: how this cluster meets another (cross-silo), whose addresses the filters judge as ipBlocks."""
        outside = outside or Outside()
        if subprocess.run(["nft", "--version"], capture_output=True, check=False).returncode != 0:
            raise RuntimeError("nftables (`nft`) is not installed: run `./dev test` (it installs it)")
        addresses = netns.routed_addresses(list(pods))
        for name, extra in outside.links.items():
            addresses[name] = [*addresses[name], *extra]
        placed = {name: self.cluster.pod(*source) for name, source in placement.items()}
        placed[dns] = self.cluster.cluster_dns()[0]
        self.by_address = {address: placed[name] for name in placed for address in addresses[name]}
        names = self._dns_names({pod: addresses[name][0] for name, pod in placed.items()}) | outside.names
        (self.workdir / "dns-names.json").write_text(json.dumps(names, indent=1))
        hostname = socket.gethostname()  # the pods share the machine's; the kubelet maps a pod's to its own IP
        with ExitStack() as stack:
            for name, pod in placed.items():
                own = addresses[name][0]
                stack.enter_context(netns.etc_file(pods[name], "hosts", f"127.0.0.1 localhost\n{own} {hostname}\n"))
                search = f"{pod.namespace}.svc.cluster.local svc.cluster.local cluster.local"
                resolv = f"nameserver {addresses[dns][0]}\nsearch {search}\noptions ndots:5\n"
                stack.enter_context(netns.etc_file(pods[name], "resolv.conf", resolv))
                local = {placed[n]: addresses[n] for n in placed}
                table = packet_filter.ruleset(self.cluster, pod, local, outside.addresses)
                (self.workdir / f"{name}.nft").write_text(table)
                packet_filter.install(pods[name].command([]), table)
                self.filtered[name] = (pods[name], pod)
            stack.callback(self._stop_filters)
            self._start_dns(stack, pods[dns])
            yield

    def _dns_names(self, address_of: dict[Pod, str]) -> dict[str, list[str]]:
        """What cluster DNS answers: each Service's name -> its local endpoints (their addresses stand in for the
        Service's: kube-proxy would pick one of them), and `<pod>.<service>` for headless Services."""
        names: dict[str, list[str]] = {}
        for service in self.cluster.services:
            endpoints = [pod for pod in self.cluster.endpoints(service) if pod in address_of]
            fqdn = service.dns_names()[-1]
            if endpoints:
                names[fqdn] = [address_of[pod] for pod in endpoints]
            if service.headless:
                names |= {f"{pod.name}.{fqdn}": [address_of[pod]] for pod in endpoints}
        return names

    def _start_dns(self, stack: ExitStack, pod: netns.Pod) -> None:
        log = stack.enter_context((self.workdir / "cluster-dns.log").open("wb"))
        argv = pod.command([sys.executable, str(CLUSTER_DNS), str(self.workdir / "dns-names.json")])
        process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        stack.callback(_stop, process)
        deadline = time.monotonic() + 20
        while ":53 " not in _udp_listeners(pod):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"cluster DNS did not start:\n{(self.workdir / 'cluster-dns.log').read_text()}")
            time.sleep(0.1)

    def _record_filters(self) -> None:
        """The live packet filters' recorded flows, as decisions like the forwarders'."""
        for name, (pod, model_pod) in self.filtered.items():
            entries = []
            for admitted, set_name in ((True, "admitted"), (False, "refused")):
                flows = packet_filter.recorded(pod.command([]), set_name)
                entries += packet_filter.decisions(self.cluster, flows, self.by_address, admitted)
            log = self.workdir / f"{name}.{model_pod.namespace}.{model_pod.name}.filter.decisions"
            log.write_text("".join(json.dumps(e) + "\n" for e in entries))

    def _stop_filters(self) -> None:
        self._record_filters()
        for pod, _ in self.filtered.values():
            packet_filter.remove(pod.command([]))
        self.filtered = {}

    def refusals(self) -> list[str]:
        """Every connection a forwarder or packet filter refused: the flow, and why the policies drop it."""
        return [e["text"] for e in self._entries() if not e["admitted"]]

    def admitted(self) -> list[str]:
        return [e["text"] for e in self._entries() if e["admitted"]]

    def await_refused_sources(self, sources: int, check_alive: Callable[[], None], timeout: float = 60) -> None:
        """Waits (at most `timeout` s, while `check_alive` passes) until connections from `sources` distinct pods
        were refused: a bite test's clients have each tried and failed."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and len({r.split(" ->")[0] for r in self.refusals()}) < sources:
            check_alive()
            time.sleep(0.5)

    def _entries(self) -> list[dict[str, Any]]:
        self._record_filters()
        return [json.loads(line) for log in sorted(self.workdir.glob("*.decisions")) for line in log.open()]

    def close(self) -> None:
        for process in self.routes:
            process.terminate()
        for process in self.routes:
            _stop(process)


def _udp_listeners(pod: netns.Pod) -> str:
    return subprocess.run(pod.command(["ss", "-Huln"]), capture_output=True, text=True, timeout=10, check=False).stdout


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=5)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def _wait_listening(address: str, port: int, process: subprocess.Popen[bytes], timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the forwarder for {address}:{port} exited with {process.returncode}")
        try:
            socket.create_connection((address, port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"the forwarder for {address}:{port} did not listen in {timeout}s")


def without_peer(
    manifests: list[dict[str, Any]], namespace: str, policy: str, peer: int, rule: int = 0
) -> list[dict[str, Any]]:
    """The render with one peer taken out of one ingress rule of one NetworkPolicy."""
    changed = copy.deepcopy(manifests)
    obj = _find(changed, "NetworkPolicy", namespace, policy)
    del obj["spec"]["ingress"][rule]["from"][peer]
    return changed


def without_rule(
    manifests: list[dict[str, Any]], namespace: str, policy: str, direction: str = "ingress", rule: int = 0
) -> list[dict[str, Any]]:
    """The render with one rule (`direction`: ingress/egress) taken out of one NetworkPolicy. (Taking the only
    peer out of a rule would open it to everyone: an empty `from` admits all.)"""
    changed = copy.deepcopy(manifests)
    obj = _find(changed, "NetworkPolicy", namespace, policy)
    del obj["spec"][direction][rule]
    return changed


def relabel(
    manifests: list[dict[str, Any]], kind: str, namespace: str | None, name: str, label: str, value: str
) -> list[dict[str, Any]]:
    """The render with one label changed: on a workload's pod template, or on a Namespace (namespace None)."""
    changed = copy.deepcopy(manifests)
    obj = _find(changed, kind, namespace, name)
    meta = obj["metadata"] if kind == "Namespace" else obj["spec"]["template"]["metadata"]
    meta.setdefault("labels", {})[label] = value
    return changed


def _find(manifests: list[dict[str, Any]], kind: str, namespace: str | None, name: str) -> dict[str, Any]:
    for obj in manifests:
        meta = obj["metadata"]
        if obj["kind"] == kind and meta["name"] == name and meta.get("namespace") == namespace:
            return obj
    raise KeyError(f"no {kind} {namespace}/{name} in the render")
