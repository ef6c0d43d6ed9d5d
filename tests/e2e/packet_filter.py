"""The rendered NetworkPolicies as a packet filter: one nftables table per pod, derived from tools.netpol.

For pods that dial each other directly on a routed pod network (gloo's ranks pick their ports at run time, so
no forwarder can stand in front of them), every new connection a pod opens is checked in its own network
namespace's output hook: accepted only to the (pod, protocol, port) the evaluator allows this pod to reach
(its egress AND the destination's ingress), else refused and recorded. Replies and loopback pass. The table
is exact, not a sample: the port space is cut at every port and range edge that any policy or the destination
pod names, and the evaluator is asked once per piece, so between two cuts its answer cannot change.

A refused connection gets a reset (TCP) or a port-unreachable (UDP) at once, as forward.py closes a refused
connection at once: the run fails in seconds instead of waiting out connect timeouts (a real CNI drops
silently; what is admitted is the same). Each new connection's (source, destination, protocol, port) goes
into the table's set `admitted` or `refused`, which `decisions` turns back into flows with the evaluator's
reason.

Cross-silo, two such pod networks meet over links between one pod of each (the load balancer's and NAT's
addresses): given the other side's addresses, a pod's table judges a connection to one of them by the pod's
egress alone and, in an input chain, a connection from one of them by the pod's ingress alone (ipBlock peers),
so a link between the clusters is judged by both sides, each by its own render.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterable
from itertools import pairwise
from typing import Any

from tools.netpol import Cluster, Endpoint, Pod

TABLE = "flstack"
PROTOCOLS = ("tcp", "udp")
FLOW_KEY = "ip saddr . ip daddr . meta l4proto . th dport"


def port_pieces(cluster: Cluster, destination: Endpoint) -> list[tuple[int, int]]:
    """1..65535 cut where any policy port or range, or the destination's own (named) ports, begin or end."""
    cuts = {1, 65536}
    for policy in cluster.policies:
        for rule in [*(policy.spec.get("ingress") or []), *(policy.spec.get("egress") or [])]:
            for entry in rule.get("ports") or []:
                port = entry.get("port")
                if isinstance(port, int) or (isinstance(port, str) and port.isdigit()):
                    cuts |= {int(port), int(entry.get("endPort", port)) + 1}
    own = destination.ports if isinstance(destination, Pod) else ()
    cuts |= {edge for p in own for edge in (p.port, p.port + 1)}
    return [(start, end - 1) for start, end in pairwise(sorted(cuts))]


def allowed_ports(cluster: Cluster, source: Endpoint, destination: Endpoint, protocol: str) -> list[tuple[int, int]]:
    """The port ranges `source` may open to `destination` over `protocol` ("tcp"/"udp"), merged."""
    allowed: list[tuple[int, int]] = []
    for start, end in port_pieces(cluster, destination):
        if cluster.allowed(source, destination, start, protocol.upper()):
            if allowed and allowed[-1][1] == start - 1:
                allowed[-1] = (allowed[-1][0], end)
            else:
                allowed.append((start, end))
    return allowed


def ruleset(cluster: Cluster, source: Pod, addresses: dict[Pod, list[str]], outside: Iterable[str] = ()) -> str:
    """The nftables table for `source`'s network namespace; `addresses`: every local pod's addresses; `outside`:
    addresses of another cluster routed to this one. A connection to one of those is judged by `source`'s egress
    alone; one from one of those (input hook) by `source`'s ingress alone, as an ipBlock peer."""
    outside = list(outside)
    destinations: list[tuple[Endpoint, list[str]]] = [*addresses.items(), *((a, [a]) for a in outside)]
    rules = []
    for destination, daddrs in destinations:
        if destination != source:  # a pod reaching itself is loopback, which no policy governs
            rules += _admitting(cluster, source, destination, f"ip daddr {{ {', '.join(daddrs)} }}")
    chains = _chain("output", rules)
    if outside:
        local = ", ".join(a for daddrs in addresses.values() for a in daddrs)
        inbound = [f"ip saddr {{ {local} }} accept"]  # from this cluster's pods: judged at their own output
        for address in outside:
            inbound += _admitting(cluster, address, source, f"ip saddr {address}")
        chains += _chain("input", inbound)
    flow_set = f"type ipv4_addr . ipv4_addr . inet_proto . inet_service; flags dynamic; size {2**16}"
    lines = [
        f"table inet {TABLE} {{",
        f"  set admitted {{ {flow_set}; }}",
        f"  set refused {{ {flow_set}; }}",
        *chains,
        "}",
    ]
    return "\n".join(lines) + "\n"


def _admitting(cluster: Cluster, source: Endpoint, destination: Endpoint, where: str) -> list[str]:
    """Rules accepting (and recording) what `source` may open to `destination`, matched by `where`."""
    rules = []
    for protocol in PROTOCOLS:
        ports = allowed_ports(cluster, source, destination, protocol)
        if ports:
            match = f"{where} meta l4proto {protocol}"
            if ports != [(1, 65535)]:
                match += f" th dport {{ {', '.join(str(a) if a == b else f'{a}-{b}' for a, b in ports)} }}"
            rules.append(f"{match} add @admitted {{ {FLOW_KEY} }} accept")
    return rules


def _chain(hook: str, rules: list[str]) -> list[str]:
    """A chain that passes loopback and replies, accepts `rules`, and refuses (recording) every other new flow."""
    return [
        f"  chain {hook} {{",
        f"    type filter hook {hook} priority 0; policy drop;",
        f'    {"oifname" if hook == "output" else "iifname"} "lo" accept',
        "    ct state established,related accept",
        *(f"    {rule}" for rule in rules),
        f"    meta l4proto tcp add @refused {{ {FLOW_KEY} }} reject with tcp reset",
        f"    meta l4proto udp add @refused {{ {FLOW_KEY} }} reject",
        "  }",
    ]


def install(command: list[str], table: str) -> None:
    """Loads `table` with `nft -f -` run by `command` (the pod's `ip netns exec` prefix)."""
    subprocess.run([*command, "nft", "-f", "-"], input=table, text=True, check=True, capture_output=True, timeout=30)


def remove(command: list[str]) -> None:
    """Deletes the pod's table (another pod may run in its namespace next)."""
    subprocess.run([*command, "nft", "delete", "table", "inet", TABLE], check=True, capture_output=True, timeout=30)


def recorded(command: list[str], name: str) -> list[tuple[str, str, str, int]]:
    """The flows in set `name` (admitted/refused) of the pod's table: (source ip, destination ip, protocol, port)."""
    out = subprocess.run(
        [*command, "nft", "-j", "list", "set", "inet", TABLE, name],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    flows = []
    for item in json.loads(out.stdout)["nftables"]:
        for element in (item.get("set") or {}).get("elem") or []:
            saddr, daddr, protocol, port = _concat(element)
            flows.append((saddr, daddr, _protocol(protocol), int(port)))
    return sorted(flows)


def _concat(element: Any) -> list[Any]:
    if isinstance(element, dict) and "elem" in element:  # an element with a timeout or counter
        element = element["elem"]["val"]
    return list(element["concat"])


def _protocol(value: str | int) -> str:
    return {6: "TCP", 17: "UDP"}.get(value, str(value).upper()) if isinstance(value, int) else value.upper()


def decisions(
    cluster: Cluster, flows: Iterable[tuple[str, str, str, int]], by_address: dict[str, Pod], admitted: bool
) -> list[dict[str, Any]]:
    """Recorded flows as forward.py logs its decisions: the flow and the evaluator's reason."""
    entries = []
    for saddr, daddr, protocol, port in flows:
        source: Pod | str = by_address.get(saddr, saddr)
        destination: Pod | str = by_address.get(daddr, daddr)
        verdict = "admitted" if admitted else "REFUSED"
        flow = cluster.flow(source, destination, port, protocol)
        text = f"{verdict} {_name(source)} -> {_name(destination)} {protocol}/{port}\n  {flow}"
        entries.append({"admitted": admitted, "text": text})
    return entries


def _name(endpoint: Pod | str) -> str:
    return str(endpoint) if isinstance(endpoint, Pod) else f"ip {endpoint}"
