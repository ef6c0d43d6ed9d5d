"""Cross-silo FATE: parties 9999 and 10000 from two stacks (fate-silo-a, fate-silo-b), each rendered with the
other's outputs in the documented `pulumi up` order, run as two "clusters" that reach each other only at their
exchanges; the toy job must succeed over mutual TLS with each stack's own certificates.

Real: everything tests/e2e/test_fate_federation.py runs (each party's files as its pods mount them, RabbitMQ,
nginx, fate_flow 2.2.0), with each party's files from its own stack's render, and certificates made from each
stack's pulumi-tls inputs and kept across that stack's renders as Pulumi's state keeps them.
Mapped, and only this:
- each party's stack is one "cluster": its broker, proxy and fate_flow each in a pod (network namespace) of a
  routed pod network with a kube-dns pod answering the render's names, every pod under a packet filter derived
  from its own stack's rendered NetworkPolicies (tests/e2e/policy.py `pod_network`, as the local-fate e2e);
- the clusters meet only at their proxies, over two links (netns.wire) standing in for the internet: A's proxy
  dials B's load balancer address (198.51.100.10) from A's NAT address (203.0.113.20), B's proxy dials A's load
  balancer (203.0.113.40) from B's NAT (198.51.100.20), all inside the CIDRs the stack files list. Each side's
  filters judge the other side's addresses as ipBlock peers: a proxy's egress to the peer's load balancer by its
  own stack's policies, and the connection arriving from the peer's NAT by the receiving stack's ingress policy,
  so the exchange link is judged by both sides. Each kube-dns answers the peer's public exchange name with the
  peer's load balancer address (CoreDNS forwarding it upstream);
- StackReferences: each render is given the other stack's outputs, as the engine would read them.
After the toy job, three connections the policies do not admit are refused, each named: A's proxy to B's
fate_flow port (A's egress), B's proxy to A's broker port (B's egress), and A's proxy from an address of A's
network that B does not list (B's ingress).
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest

from components.federations import fate_files
from tests.e2e import netns
from tests.e2e.policy import Enforcement, Outside
from tests.e2e.processes import Processes, framework_bin
from tests.e2e.real_tls import mocks_with_real_tls
from tests.e2e.test_fate_federation import (
    COMPONENTS,
    FLOW_CLI,
    TOY_SECONDS,
    assert_traffic_went_through_the_mtls_links,
    in_pod,
    placement,
    start_parties,
    stop_brokers,
)
from tests.e2e.test_flower_cross_silo import connects
from tests.federations.silos import FATE_SILOS, NOT_DEPLOYED, everything, private_keys, render_silo
from tools.render import Rendering

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
]

A, B = FATE_SILOS
GUEST, HOST = 9999, 10000
# Each stack's public addresses, inside the CIDRs the other stack lists for it (stacks/Pulumi.fate-silo-*.yaml).
LB = {GUEST: "203.0.113.40", HOST: "198.51.100.10"}  # A's exchangeCidrs 203.0.113.32/28; B's in 198.51.100.0/24
NAT = {GUEST: "203.0.113.20", HOST: "198.51.100.20"}  # A's proxy connects from 203.0.113.16/28; B's, the /24
UNLISTED = "203.0.113.9"  # another address of A's network: B lists only A's NAT range
ADDRESSES = {GUEST: [NAT[GUEST], UNLISTED, LB[GUEST]], HOST: [LB[HOST], NAT[HOST]]}  # each proxy's link ends


def exchange_party(rendering: Rendering, party_id: int) -> fate_files.Party:
    """The party as its own stack deploys it (namespace) and as the other stack dials it (exported exchange)."""
    party = rendering.outputs(reveal=True)["federations"]["fate"]["parties"][str(party_id)]
    exchange = party["exchange"]
    return fate_files.Party(party_id, party["namespace"], exchange["host"], exchange["port"], exchange["amqpsPort"])


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
    enforcement = {party: Enforcement(r.manifests(), tmp_path / f"netpol-{party}") for party, r in renderings.items()}
    local = {party: placement([exchange_party(renderings[party], party)]) for party in renderings}
    fate_bin = framework_bin("fate")
    procs = Processes(tmp_path)
    with (
        netns.pods([*local[GUEST], f"dns{GUEST}"], routed=True) as a_pods,
        netns.pods([*local[HOST], f"dns{HOST}"], routed=True) as b_pods,
    ):
        pods = {GUEST: a_pods, HOST: b_pods}
        proxy = {party: pods[party][f"p{party}-proxy"] for party in pods}
        tag = proxy[GUEST].name[2:7]
        netns.wire(proxy[HOST], proxy[GUEST], LB[HOST], [NAT[GUEST], UNLISTED], f"f{tag}1")
        netns.wire(proxy[GUEST], proxy[HOST], LB[GUEST], [NAT[HOST]], f"f{tag}2")
        peer_of = {GUEST: host, HOST: guest}
        outside = {
            party: Outside(
                links={f"p{party}-proxy": own},
                addresses=[a for other, addresses in ADDRESSES.items() if other != party for a in addresses],
                names={peer_of[party].proxy_host: [LB[peer_of[party].id]]},
            )
            for party, own in ADDRESSES.items()
        }
        try:
            with (
                enforcement[GUEST].pod_network(a_pods, local[GUEST], f"dns{GUEST}", outside[GUEST]),
                enforcement[HOST].pod_network(b_pods, local[HOST], f"dns{HOST}", outside[HOST]),
            ):
                by_party = {p: {c: pods[p][f"p{p}-{c}"] for c in COMPONENTS} for p in pods}
                envs = {}
                for party in (guest, host):
                    envs.update(start_parties(renderings[party.id], [party], by_party, procs, tmp_path, fate_bin))
                flow = by_party[GUEST]["fateflow"]
                init = [*FLOW_CLI, "init", "--ip", "127.0.0.1", "--port", str(fate_files.FLOW_HTTP_PORT)]
                done = in_pod(flow, init, 60, envs[GUEST])
                assert done.returncode == 0, done.stdout + done.stderr
                toy_started = time.monotonic()
                toy = in_pod(
                    flow, [*FLOW_CLI, "test", "toy", "-gid", str(GUEST), "-hid", str(HOST)], TOY_SECONDS, envs[GUEST]
                )
                output = toy.stdout + toy.stderr
                assert re.search(r"toy test job \S+ is success", output), f"{output}\n{procs.logs()}"
                toy_seconds = time.monotonic() - toy_started
                # Between the "clusters", only the exchange: the peer's fate_flow and broker ports are refused by the
                # dialling side's egress, and an address of A's network that B does not list by B's ingress.
                assert reachable(proxy[GUEST], host.proxy_host, fate_files.PROXY_TLS_PORT)
                assert not reachable(proxy[GUEST], host.proxy_host, fate_files.FLOW_HTTP_PORT)
                assert not reachable(proxy[HOST], guest.proxy_host, fate_files.AMQP_PORT)
                assert not connects(proxy[GUEST], LB[HOST], fate_files.PROXY_TLS_PORT, source=UNLISTED)
                procs.check_alive()
                stop_brokers(procs, [guest, host])
        finally:
            procs.stop_all()
    print(f"\nFATE cross-silo toy: {toy_seconds:.1f} s; whole test {time.monotonic() - started:.1f} s")
    assert_traffic_went_through_the_mtls_links(procs, [guest, host], lambda me, peer: link_port(renderings, me, peer))
    assert_the_exchange_was_judged_by_both_sides(enforcement, renderings, guest, host)


def assert_the_exchange_was_judged_by_both_sides(
    enforcement: dict[int, Enforcement],
    renderings: dict[int, Rendering],
    guest: fate_files.Party,
    host: fate_files.Party,
) -> None:
    """Every pod looked names up through its own kube-dns; each proxy's links to the peer were admitted by its own
    stack's egress and by the peer stack's ingress (from the NAT address); only the three probes were refused."""
    a, b = f"fate-{GUEST}/proxy-0", f"fate-{HOST}/proxy-0"
    assert sorted(r.split("\n")[0] for party in enforcement for r in enforcement[party].refusals()) == sorted(
        [
            f"REFUSED {a} -> ip {LB[HOST]} TCP/{fate_files.FLOW_HTTP_PORT}",  # A's egress
            f"REFUSED {b} -> ip {LB[GUEST]} TCP/{fate_files.AMQP_PORT}",  # B's egress
            f"REFUSED ip {UNLISTED} -> {b} TCP/{fate_files.PROXY_TLS_PORT}",  # B's ingress
        ]
    )
    (unlisted,) = [r for r in enforcement[HOST].refusals() if r.startswith(f"REFUSED ip {UNLISTED}")]
    assert f"DROPPED: no ingress rule of fate-{HOST}/default-deny, fate-{HOST}/proxy (isolating {b})" in unlisted
    for party, peer in ((guest, host), (host, guest)):
        admitted = enforcement[party.id].admitted()
        for component in COMPONENTS:
            lookup = f"admitted {party.namespace}/{component}-0 -> kube-system/coredns-0 UDP/53\n"
            assert any(a.startswith(lookup) for a in admitted), (lookup, admitted)
        # Inside the party: fate_flow's calls and the broker's link to the peer go to its own proxy.
        for component, port in (
            ("fateflow", fate_files.PROXY_HTTP_PORT),
            ("rabbitmq", link_port(renderings, party, peer)),
        ):
            inside = f"admitted {party.namespace}/{component}-0 -> {party.namespace}/proxy-0 TCP/{port}\n"
            assert any(a.startswith(inside) for a in admitted), (inside, admitted)
        peer_admitted = enforcement[peer.id].admitted()
        for port in (fate_files.PROXY_TLS_PORT, fate_files.PROXY_AMQPS_PORT):
            out = f"admitted {party.namespace}/proxy-0 -> ip {LB[peer.id]} TCP/{port}\n"
            assert any(a.startswith(out) for a in admitted), (out, admitted)
            into = f"admitted ip {NAT[party.id]} -> {peer.namespace}/proxy-0 TCP/{port}\n"
            assert any(a.startswith(into) for a in peer_admitted), (into, peer_admitted)
