"""Cross-silo Flower: the SuperLink in a hub stack, each organisation's SuperNodes in its own participant stack.

The stacks meet only through `pulumi.StackReference` outputs, and each keeps its secrets:
- the hub exports the SuperLink's public address, its CA certificate (public) and whether node auth is on;
- a participant (`flower.join`) reads those, deploys SuperNodes only, generates its own SuperNode keys and
  exports their public halves;
- the hub lists its participants (`flower.participants`): it admits their CIDRs (NetworkPolicy ipBlocks and
  the load balancer's source ranges) and, with node auth, registers their public keys.

Order of `pulumi up`s: hub, then each participant, then the hub again (it reads the new public keys).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pulumi

from components.config.model import CIDR_HELP, DNS_LABEL, DNS_LABEL_HELP, is_cidr, open_cidrs
from components.config.schema import rule
from components.stack_refs import STACK_NAME_HELP, STACK_NAME_PATTERN, federation_key, stack_output


@dataclass(frozen=True)
class FlowerJoin:
    """This stack's SuperNodes join the SuperLink of federation `federation` of the hub stack `stack`."""

    stack: str = rule(pattern=STACK_NAME_PATTERN, pattern_help=STACK_NAME_HELP)
    federation: str = rule(pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)
    # Where the hub's public address resolves (its load balancer's addresses): the SuperNodes' only egress.
    superlink_cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Partition ids of this stack's SuperNodes start here (the hub's take 0..; see flower.numPartitions).
    first_partition: int = rule(0, min=0)

    def check(self) -> Iterator[tuple[str, str]]:
        if not self.superlink_cidrs:
            yield "superlinkCidrs", "required: list the addresses the hub's public SuperLink address resolves to"


@dataclass(frozen=True)
class FlowerParticipant:
    """A participant stack whose SuperNodes this hub admits (and, with node auth, registers)."""

    stack: str = rule(pattern=STACK_NAME_PATTERN, pattern_help=STACK_NAME_HELP)
    # Where its SuperNodes connect from (its NAT or egress addresses).
    cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    # Its federation's name in its own stack (default: this federation's name).
    federation: str | None = rule(None, pattern=DNS_LABEL, pattern_help=DNS_LABEL_HELP)


def check(settings: Any) -> Iterator[tuple[str, str]]:
    """Cross-silo rules of a FlowerSettings (keys relative to the `flower` block)."""
    s = settings
    first = s.join.first_partition if s.join is not None else 0
    total = sum(g.replicas for g in s.supernode_groups())
    if s.num_partitions is not None and first + total > s.num_partitions:
        yield (
            "numPartitions",
            f"{s.num_partitions} is too few: this stack's {total} SuperNodes take partitions "
            f"{first}..{first + total - 1}",
        )
    if s.join is not None:
        if s.participants:
            yield "participants", "a participant stack (join) runs no SuperLink: list participants in the hub's stack"
        if s.insecure:
            yield "insecure", "SuperNodes in another cluster reach the hub over the network: TLS is required"
        if s.exposure.type != "ClusterIP" or s.allowed_cidrs:
            key = "exposure" if s.exposure.type != "ClusterIP" else "allowedCidrs"
            yield key, "a participant stack (join) runs no SuperLink to expose: remove it"
        ack = s.egress.allow_internet
        yield from open_cidrs("join.superlinkCidrs", s.join.superlink_cidrs, ack, "egress.allowInternet")
    if not s.participants:
        return
    if s.insecure:
        yield "insecure", "participants reach the SuperLink from other networks: TLS is required"
    if s.exposure.type == "ClusterIP":
        yield "exposure.type", "participants need the SuperLink exposed: LoadBalancer or NodePort"
    if not s.exposure.hostnames:
        yield (
            "exposure.hostnames",
            "required with participants: the public name they dial (it goes into the certificate)",
        )
    if s.exposure.type == "NodePort" and s.exposure.node_port is None:
        yield "exposure.nodePort", "required with participants: their SuperNodes dial a fixed port"
    stacks = [p.stack for p in s.participants if p is not None]
    for i, participant in enumerate(s.participants):
        if participant is None:
            continue
        if not participant.cidrs:
            yield f"participants[{i}].cidrs", "required: the addresses this participant's SuperNodes connect from"
        ack = s.exposure.allow_internet
        yield from open_cidrs(f"participants[{i}].cidrs", participant.cidrs, ack, "exposure.allowInternet")
        if stacks.count(participant.stack) > 1 and stacks.index(participant.stack) < i:
            yield f"participants[{i}].stack", f"{participant.stack!r} is listed twice"


def participant_cidrs(settings: Any) -> list[str]:
    return sorted({cidr for p in settings.participants for cidr in p.cidrs})


def hub_exports(settings: Any, port: int) -> dict[str, Any]:
    """What participant stacks read besides the CA certificate. The public address is where they dial the
    SuperLink: the first exposure hostname (it is in the certificate), on the port the exposure publishes."""
    exports: dict[str, Any] = {"nodeAuth": settings.node_auth, "participants": [p.stack for p in settings.participants]}
    exposure = settings.exposure
    if exposure.hostnames and exposure.type != "ClusterIP" and (exposure.type != "NodePort" or exposure.node_port):
        published = exposure.node_port if exposure.type == "NodePort" else port
        exports["publicAddress"] = f"{exposure.hostnames[0]}:{published}"
    return exports


def participant_keys(settings: Any, federation: str) -> pulumi.Output[dict[str, str]]:
    """Every participant's exported SuperNode public keys, as registration files `<participant>-node-<i>.pub`."""
    per_participant = [
        stack_output(
            p.stack,
            "federations",
            p.federation or federation,
            "supernodePublicKeys",
            key=f"{federation_key(federation)}.flower.participants[{i}].stack",
        )
        for i, p in enumerate(settings.participants)
    ]

    def files(key_lists: list[list[str]]) -> dict[str, str]:
        return {f"participant-{i}-node-{k}.pub": key for i, keys in enumerate(key_lists) for k, key in enumerate(keys)}

    return pulumi.Output.all(*per_participant).apply(files)


def checked_address(join: FlowerJoin, address: Any, hub_node_auth: Any, node_auth: bool, key: str) -> str:
    """The hub's public address, once the hub's outputs say the SuperNodes here can join it as configured."""
    hub = f"federation {join.federation} of stack {join.stack}"
    if bool(hub_node_auth) != node_auth:
        raise pulumi.RunError(
            f"{key}: {hub} has nodeAuth {bool(hub_node_auth)}, this stack {node_auth}: set the same nodeAuth on both"
        )
    return str(address)


def hub_output(join: FlowerJoin, name: str, key: str) -> pulumi.Output[Any]:
    """One output of the hub's federation (`federations.<federation>.<name>`)."""
    return stack_output(join.stack, "federations", join.federation, name, key=key)
