"""The packet filter's port ranges agree with the evaluator on every port, and its table says what it admits.

Over the conformance world of tests/tools/test_netpol.py (namespaces x, y, z with pods a, b, c), with policies
that name numbered ports, named ports, endPort ranges, overlapping ingress and egress ranges, rules without
ports and UDP: for every pod pair and protocol, a port is in `allowed_ports` exactly when tools.netpol allows it,
checked at every range edge, one off each edge, and a spread of ports between.
"""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.e2e import packet_filter
from tests.tools.test_netpol import egress, ingress, ns_sel, sel, world

RANGE = {"protocol": "TCP", "port": 1000, "endPort": 2000}
POLICIES: dict[str, list[tuple[str, dict[str, Any]]]] = {
    "numbered, named and ranged ingress ports": [
        ("x", ingress(sel(pod="a"), {"ports": [{"port": 80}, {"port": "serve-81-tcp"}, RANGE]})),
    ],
    "egress range overlapping the ingress range": [
        ("x", ingress(sel(pod="a"), {"ports": [RANGE]})),
        ("y", egress(sel(pod="b"), {"ports": [{"protocol": "TCP", "port": 1500, "endPort": 3000}]})),
    ],
    "a rule without ports, from one namespace only, and UDP": [
        ("x", ingress(sel(pod="a"), {"from": [{"namespaceSelector": ns_sel("y")}]})),
        ("z", ingress(sel(pod="c"), {"ports": [{"protocol": "UDP", "port": 80}]})),
    ],
}


def probe_ports(pieces: list[tuple[int, int]]) -> set[int]:
    edges = {edge + off for start, end in pieces for edge in (start, end) for off in (-1, 0, 1)}
    spread = set(random.Random(15).sample(range(1, 65536), 200))
    return {p for p in edges | spread if 1 <= p <= 65535}


@pytest.mark.parametrize("case", list(POLICIES))
def test_allowed_ports_are_exactly_what_the_evaluator_allows(case: str) -> None:
    cluster = world(POLICIES[case])
    checked = 0
    for source in cluster.pods:
        for destination in cluster.pods:
            if source == destination:
                continue
            pieces = packet_filter.port_pieces(cluster, destination)
            for protocol in packet_filter.PROTOCOLS:
                allowed = packet_filter.allowed_ports(cluster, source, destination, protocol)
                for port in probe_ports(pieces):
                    inside = any(start <= port <= end for start, end in allowed)
                    assert inside == cluster.allowed(source, destination, port, protocol.upper()), (
                        case,
                        str(source),
                        str(destination),
                        protocol,
                        port,
                        allowed,
                    )
                    checked += 1
    assert checked > 1000


def test_the_table_admits_the_allowed_ranges_and_resets_the_rest() -> None:
    cluster = world(POLICIES["egress range overlapping the ingress range"])
    a, b, c = (cluster.pod(ns, f"{pod}-0") for ns, pod in (("x", "a"), ("y", "b"), ("x", "c")))
    table = packet_filter.ruleset(cluster, b, {a: ["10.0.0.1"], b: ["10.0.0.2"], c: ["10.0.0.3", "10.0.0.4"]})
    # y/b may open only 1500-2000 to x/a (its egress and a's ingress overlap there) and 1500-3000 to x/c.
    assert "ip daddr { 10.0.0.1 } meta l4proto tcp th dport { 1500-2000 } add @admitted" in table
    assert "ip daddr { 10.0.0.3, 10.0.0.4 } meta l4proto tcp th dport { 1500-3000 } add @admitted" in table
    assert "10.0.0.2" not in table  # itself: loopback
    assert "l4proto udp th dport" not in table  # b's egress names TCP only
    assert table.rstrip().endswith("reject\n  }\n}".rstrip())
    assert "policy drop;" in table and 'oifname "lo" accept' in table


def test_another_clusters_addresses_are_judged_as_ipblock_peers_both_ways() -> None:
    """Cross-silo: traffic to the other side's addresses by the pod's egress, from them (input hook) by its
    ingress; an outside address no rule lists gets no rule, so it meets the reset like any unlisted flow."""
    listed = {"from": [{"ipBlock": {"cidr": "198.51.100.0/24", "except": ["198.51.100.128/25"]}}]}
    cluster = world(
        [
            ("x", ingress(sel(pod="a"), {**listed, "ports": [{"port": 443}]})),
            ("x", egress(sel(pod="a"), {"to": [{"ipBlock": {"cidr": "198.51.100.0/24"}}], "ports": [{"port": 5671}]})),
        ]
    )
    a, b = cluster.pod("x", "a-0"), cluster.pod("x", "b-0")
    outside = ["198.51.100.10", "198.51.100.200"]
    table = packet_filter.ruleset(cluster, a, {a: ["10.0.0.1", "192.0.2.20"], b: ["10.0.0.2"]}, outside)
    assert "ip daddr { 198.51.100.10 } meta l4proto tcp th dport { 5671 } add @admitted" in table
    assert "ip daddr { 198.51.100.200 } meta l4proto tcp th dport { 5671 } add @admitted" in table
    input_chain = table[table.index("chain input") :]
    assert "ip saddr { 10.0.0.1, 192.0.2.20, 10.0.0.2 } accept" in input_chain  # this cluster's: judged at output
    assert "ip saddr 198.51.100.10 meta l4proto tcp th dport { 443 } add @admitted" in input_chain
    assert "198.51.100.200" not in input_chain  # in the except: refused, and recorded as refused
    assert 'iifname "lo" accept' in input_chain and input_chain.count("reject") == 2
    assert "chain input" not in packet_filter.ruleset(cluster, a, {a: ["10.0.0.1"], b: ["10.0.0.2"]})
