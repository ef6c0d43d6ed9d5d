"""Pods on one machine: each gets its own network namespace (own loopback, own ports), like in a cluster.

A veth pair links the namespace to the host; `forward` plays kube-proxy, so inside the namespace
the Service address the test maps to (127.0.0.1:PORT) reaches the host-side server.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
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


@dataclass(frozen=True)
class Namespace:
    name: str
    host_ip: str  # the host end of the veth pair, as seen from inside the namespace

    def command(self, args: list[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *args]

    def forward(self, listen_port: int, target_port: int) -> list[str]:
        """Command line of a forwarder: 127.0.0.1:listen_port inside -> host_ip:target_port."""
        return self.command([sys.executable, str(FORWARDER), str(listen_port), self.host_ip, str(target_port)])


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@contextmanager
def namespace(name: str, index: int) -> Iterator[Namespace]:
    """A namespace `name` linked to the host over 10.213.INDEX.0/30 (addresses of our own test hosts)."""
    host_if, ns_if = f"{name[:8]}h{index}", f"{name[:8]}n{index}"
    host_ip, ns_ip = f"10.213.{index}.1", f"10.213.{index}.2"
    subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)  # a leftover from a crash
    _ip("netns", "add", name)
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", name)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("-n", name, "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _ip("-n", name, "link", "set", ns_if, "up")
        _ip("-n", name, "link", "set", "lo", "up")
        yield Namespace(name, host_ip)
    finally:
        subprocess.run(["ip", "link", "del", host_if], capture_output=True, check=False)
        subprocess.run(["ip", "netns", "del", name], capture_output=True, check=False)
