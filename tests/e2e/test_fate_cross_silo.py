"""Cross-silo FATE: parties 9999 and 10000 from two stacks (fate-silo-a, fate-silo-b), each rendered with the
other's outputs in the documented `pulumi up` order, run as two "clusters" that reach each other only at their
exchanges; the toy job must succeed over mutual TLS with each stack's own certificates.

Real: everything tests/e2e/test_fate_federation.py runs (each party's files as its pods mount them, RabbitMQ,
nginx, fate_flow 2.2.0), with each party's files from its own stack's render, and certificates made from each
stack's pulumi-tls inputs and kept across that stack's renders as Pulumi's state keeps them.
Mapped, and only this:
- each party's stack is one network namespace; the peer's exported exchange name resolves to the peer
  namespace's address (its /etc/hosts), and a firewall in each namespace admits from outside only the ports
  of the party's rendered `exchange` Service (the load balancer's), so nothing else is reachable between them;
- StackReferences: each render is given the other stack's outputs, as the engine would read them.
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from components.federations import fate_files
from tests.e2e import netns
from tests.e2e.processes import Processes, framework_bin
from tests.e2e.real_tls import mocks_with_real_tls
from tests.e2e.test_fate_federation import (
    FLOW_CLI,
    TOY_SECONDS,
    assert_traffic_went_through_the_mtls_links,
    in_pod,
    party_namespaces,
    start_parties,
    stop_brokers,
)
from tests.federations.silos import FATE_SILOS, NOT_DEPLOYED, everything, private_keys, render_silo
from tools.render import Rendering

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
]

A, B = FATE_SILOS
GUEST, HOST = 9999, 10000


def exchange_party(rendering: Rendering, party_id: int) -> fate_files.Party:
    """The party as its own stack deploys it (namespace) and as the other stack dials it (exported exchange)."""
    party = rendering.outputs(reveal=True)["federations"]["fate"]["parties"][str(party_id)]
    exchange = party["exchange"]
    return fate_files.Party(party_id, party["namespace"], exchange["host"], exchange["port"], exchange["amqpsPort"])


def admit_only_the_exchange(pod: netns.Pod, rendering: Rendering, namespace: str) -> None:
    """The namespace's firewall: from outside, only the ports its load balancer exposes (the exchange Service)."""
    ports = sorted(p["port"] for p in rendering.find("Service", fate_files.EXCHANGE, namespace)["spec"]["ports"])
    rules = f"""
table inet cluster {{
    chain input {{
        type filter hook input priority 0; policy drop;
        iif lo accept
        ct state established,related accept
        tcp dport {{ {", ".join(map(str, ports))} }} accept
    }}
}}
"""
    subprocess.run(pod.command(["nft", "-f", "-"]), input=rules, text=True, check=True, timeout=20)


def reachable(pod: netns.Pod, host: str, port: int) -> bool:
    probe = f"import socket; socket.create_connection(({host!r}, {port}), timeout=2).close()"
    return in_pod(pod, ["python3", "-c", probe], 10, {}).returncode == 0


def link_port(renderings: dict[int, Rendering], me: fate_files.Party, peer: fate_files.Party) -> int:
    """The local port party `me`'s broker dials for `peer`, from `me`'s own rendered route table."""
    import yaml

    routes = renderings[me.id].find("ConfigMap", "fate-routes", me.namespace)["data"]["rabbitmq_route_table.yaml"]
    port: int = yaml.safe_load(routes)[peer.id]["port"]
    return port


def up_in_order() -> tuple[Rendering, Rendering, dict[str, Any]]:
    """The README's order: A up (B not deployed yet: no route to it), B up (reads A), A up again (reads B)."""
    states: dict[str, dict[str, Any]] = {A: {}, B: {}}
    first_a = render_silo(A, {B: NOT_DEPLOYED}, mocks_with_real_tls(states[A]))
    b = render_silo(B, {A: first_a.stack_outputs()}, mocks_with_real_tls(states[B]))
    a = render_silo(A, {B: b.stack_outputs()}, mocks_with_real_tls(states[A]))
    return a, b, {"first_a": first_a}


def test_two_stacks_run_the_toy_job_through_their_exchanges(tmp_path: Path) -> None:
    started = time.monotonic()
    a, b, earlier = up_in_order()
    first_a = earlier["first_a"]
    ca = {s: r.outputs(reveal=True)["federations"]["fate"]["caCertificate"] for s, r in ((A, a), (B, b))}
    assert ca[A] != ca[B]  # two stacks, two CAs
    # A's second up kept its certificates (B trusts the CA it read after A's first up).
    assert first_a.outputs(reveal=True)["federations"]["fate"]["caCertificate"] == ca[A]
    assert (
        "Not deployed yet (no route until the next update): 10000"
        in first_a.find("ConfigMap", "proxy-config", "fate-9999")["data"]["nginx.conf"]
    )
    # No private key of either stack in the other's render.
    for mine, other in ((a, b), (b, a)):
        assert private_keys(mine) and not [key for key in private_keys(mine) if key in everything(other)]

    guest, host = exchange_party(a, GUEST), exchange_party(b, HOST)
    renderings = {GUEST: a, HOST: b}
    fate_bin = framework_bin("fate")
    procs = Processes(tmp_path)
    try:
        with party_namespaces([guest, host]) as pods:
            for party in (guest, host):
                admit_only_the_exchange(pods[party.id], renderings[party.id], party.namespace or "")
            envs = {}
            for party in (guest, host):
                envs.update(start_parties(renderings[party.id], [party], pods, procs, tmp_path, fate_bin))
            # Between the "clusters", only the exchange: the peer's fate_flow and broker are out of reach.
            assert reachable(pods[GUEST], host.proxy_host, fate_files.PROXY_TLS_PORT)
            assert not reachable(pods[GUEST], host.proxy_host, fate_files.FLOW_HTTP_PORT)
            assert not reachable(pods[HOST], guest.proxy_host, fate_files.AMQP_PORT)
            init = [*FLOW_CLI, "init", "--ip", "127.0.0.1", "--port", str(fate_files.FLOW_HTTP_PORT)]
            done = in_pod(pods[GUEST], init, 60, envs[GUEST])
            assert done.returncode == 0, done.stdout + done.stderr
            toy_started = time.monotonic()
            toy = in_pod(
                pods[GUEST], [*FLOW_CLI, "test", "toy", "-gid", str(GUEST), "-hid", str(HOST)], TOY_SECONDS, envs[GUEST]
            )
            output = toy.stdout + toy.stderr
            assert re.search(r"toy test job \S+ is success", output), f"{output}\n{procs.logs()}"
            print(
                f"\nFATE cross-silo toy: {time.monotonic() - toy_started:.1f} s; "
                f"whole test {time.monotonic() - started:.1f} s"
            )
            procs.check_alive()
            stop_brokers(procs, [guest, host])
    finally:
        procs.stop_all()
    assert_traffic_went_through_the_mtls_links(procs, [guest, host], lambda me, peer: link_port(renderings, me, peer))
