"""Pods on one machine: each gets its own network namespace (own loopback, own ports), as in a cluster.

Nothing binds a host port, so concurrent runs and busy ports on the machine don't matter. The server
pod is the hub: each client pod has a veth link to it, and `forward` plays kube-proxy, so inside a
client pod the Service address the test maps to (127.0.0.1:PORT) reaches the server pod.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

FORWARDER = Path(__file__).with_name("forward.py")


def available() -> str | None:
    """None when namespaces can be made here, else why not."""
    if os.geteuid() != 0:
        return "network namespaces need root (CI runs as root)"
    if subprocess.run(["ip", "-V"], capture_output=True, check=False).returncode != 0:
        return "iproute2 (`ip`) is not installed"
    return None


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@dataclass(frozen=True)
class Pod:
    name: str  # the network namespace

    def command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def forward(
        self, listen_port: int, target_host: str, target_port: int, guard: list[str] | None = None
    ) -> list[str]:
        """A forwarder inside this pod: 127.0.0.1:listen_port -> target_host:target_port. `guard` (from
        tests/e2e/policy.py Enforcement.guard) makes it admit only what the rendered NetworkPolicies allow."""
        forwarder = [sys.executable, str(FORWARDER), str(listen_port), target_host, str(target_port)]
        return self.command([*forwarder, *(guard or [])])


@contextmanager
def pods(names: list[str], routed: bool = False) -> Iterator[dict[str, Pod]]:
    """Network namespaces for `names` (unique per test process); the first is the hub the others link to.

    Link i uses 10.213.i.0/30: addresses inside namespaces this test made, reachable from nowhere else.
    `routed`: the hub forwards between its spokes, so every pod reaches every other (a flat pod network,
    for peers that all dial each other, like gloo's ranks).
    """
    tag = f"fl{os.getpid() % 100000}"
    made = {n: Pod(f"{tag}-{n}") for n in names}
    with ExitStack() as cleanup:
        for pod in made.values():
            subprocess.run(["ip", "netns", "del", pod.name], capture_output=True, check=False)
            _ip("netns", "add", pod.name)
            cleanup.callback(subprocess.run, ["ip", "netns", "del", pod.name], capture_output=True, check=False)
            _ip("-n", pod.name, "link", "set", "lo", "up")
        hub, *spokes = made.values()
        for i, pod in enumerate(spokes, start=1):
            hub_if, pod_if = f"{tag}h{i}"[-15:], f"{tag}p{i}"[-15:]
            _ip("link", "add", hub_if, "netns", hub.name, "type", "veth", "peer", "name", pod_if, "netns", pod.name)
            _ip("-n", hub.name, "addr", "add", f"10.213.{i}.1/30", "dev", hub_if)
            _ip("-n", pod.name, "addr", "add", f"10.213.{i}.2/30", "dev", pod_if)
            _ip("-n", hub.name, "link", "set", hub_if, "up")
            _ip("-n", pod.name, "link", "set", pod_if, "up")
            if routed:
                _ip("-n", pod.name, "route", "add", "10.213.0.0/16", "via", hub_address(i))
        if routed:
            sysctl(hub, "net.ipv4.ip_forward", "1")
        yield made


def wire(a: Pod, b: Pod, a_address: str, b_addresses: list[str], name: str) -> None:
    """A point-to-point link between two pods of different sets (two clusters meeting over the internet):
    `a_address` on a's end, `b_addresses` on b's (the first is its source address towards a), host routes
    between them and nothing else."""
    a_if, b_if = f"{name}a"[-15:], f"{name}b"[-15:]
    _ip("link", "add", a_if, "netns", a.name, "type", "veth", "peer", "name", b_if, "netns", b.name)
    _ip("-n", a.name, "addr", "add", f"{a_address}/32", "dev", a_if)
    for address in b_addresses:
        _ip("-n", b.name, "addr", "add", f"{address}/32", "dev", b_if)
    _ip("-n", a.name, "link", "set", a_if, "up")
    _ip("-n", b.name, "link", "set", b_if, "up")
    for address in b_addresses:
        _ip("-n", a.name, "route", "add", f"{address}/32", "dev", a_if, "src", a_address)
    _ip("-n", b.name, "route", "add", f"{a_address}/32", "dev", b_if, "src", b_addresses[0])


def address(index: int) -> str:
    """Pod `index`'s address (0 = the hub, by its first link), as its peers dial it in a routed set."""
    return hub_address(1) if index == 0 else f"10.213.{index}.2"


def sysctl(pod: Pod, name: str, value: str) -> None:
    """A namespaced sysctl inside the pod's network namespace (as a pod's securityContext.sysctls sets it)."""
    path = "/proc/sys/" + name.replace(".", "/")
    subprocess.run(pod.command(["sh", "-c", f'echo "$1" > {path}', "sysctl", value]), check=True, timeout=20)


@contextmanager
def etc_hosts(pod: Pod, entries: dict[str, str]) -> Iterator[None]:
    """/etc/hosts as the pod sees it: name -> address.

    Resolution through files, so it holds for C libraries too (torch's TCPStore and gloo), not only Python.
    """
    lines = ["127.0.0.1 localhost", *(f"{addr} {name}" for name, addr in entries.items())]
    with etc_file(pod, "hosts", "\n".join(lines) + "\n"):
        yield


@contextmanager
def etc_file(pod: Pod, name: str, text: str) -> Iterator[None]:
    """/etc/NAME as the pod sees it (`ip netns exec` mounts /etc/netns/POD/NAME over it): hosts, resolv.conf."""
    directory = Path("/etc/netns") / pod.name
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(text)
    try:
        yield
    finally:
        (directory / name).unlink(missing_ok=True)
        with suppress(OSError):  # another of the pod's files is still there
            directory.rmdir()


def routed_addresses(names: list[str]) -> dict[str, list[str]]:
    """Every address of each pod of `pods(names, routed=True)`: the hub has one per link, each spoke one."""
    hub, *spokes = names
    return {
        hub: [hub_address(i) for i in range(1, len(names))],
        **{name: [spoke_address(i)] for i, name in enumerate(spokes, start=1)},
    }


def hub_address(spoke_index: int) -> str:
    """The hub's address on the link to its `spoke_index`-th (1-based) client pod."""
    return f"10.213.{spoke_index}.1"


def spoke_address(spoke_index: int) -> str:
    """The `spoke_index`-th (1-based) client pod's address on its link to the hub."""
    return f"10.213.{spoke_index}.2"
