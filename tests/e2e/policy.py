"""The rendered NetworkPolicies, enforced on a local federation: kube-proxy's stand-in asks them per connection.

A local federation connects through forwarders (tests/e2e/forward.py) where a cluster has kube-proxy. Given
the render, each forwarder knows which pod it serves and which Service name that pod dialled, and on every
connection asks tools.netpol whether the cluster would let it through: the DNS lookup of the Service name
(UDP 53 to kube-dns in kube-system), then the pod's egress and each endpoint's ingress on the target port.
A refused connection is closed at once and logged with the flow and the reason.

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

Pods are named as tools.netpol models them: `<workload>-<index>` (StatefulSet ordinals, Deployment replicas).
To show that enforcement bites, give it a changed render: `without_peer(...)` or `relabel(...)`.
"""

from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.e2e.netns import FORWARDER
from tools.netpol import WORKLOAD_KINDS, Cluster
from tools.stack_files import ROOT

MODEL_KINDS = {"Namespace", "Service", "NetworkPolicy", *WORKLOAD_KINDS}


class Enforcement:
    def __init__(self, manifests: list[dict[str, Any]], workdir: Path) -> None:
        self.workdir = workdir
        workdir.mkdir(parents=True, exist_ok=True)
        model = [obj for obj in manifests if obj["kind"] in MODEL_KINDS]  # no Secrets in the guard files
        self.cluster = Cluster.from_manifests(model)
        self.model = workdir / "model.json"
        self.model.write_text(json.dumps(model))
        self.routes: list[subprocess.Popen[bytes]] = []

    def guard(self, source: tuple[str, str], host: str, port: int) -> list[str]:
        """forward.py options that make it admit only what the policies allow `source` (namespace, pod)."""
        self.cluster.pod(*source)  # a pod the model lacks is the test's mistake: say so now, not per connection
        name = f"{source[0]}.{source[1]}.{host}.{port}"
        spec = {
            "root": str(ROOT),
            "model": str(self.model),
            "source": list(source),
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

    def refusals(self) -> list[str]:
        """Every connection a forwarder refused: the flow, and why the policies drop it."""
        return [e["text"] for e in self._entries() if not e["admitted"]]

    def admitted(self) -> list[str]:
        return [e["text"] for e in self._entries() if e["admitted"]]

    def _entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for log in sorted(self.workdir.glob("*.decisions")) for line in log.open()]

    def close(self) -> None:
        for process in self.routes:
            process.terminate()
        for process in self.routes:
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
