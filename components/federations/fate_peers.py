"""FATE parties deployed by other stacks (cross-silo): what this stack reads of them through StackReferences.

A peer stack exports, per federation, its CA certificate and each party's exchange endpoint (the public
address and the two mTLS ports of its proxy); nothing secret. This stack reads them to route to the peer and
to trust the certificates the peer's CA signed. The references are mutual, so the first `pulumi up` of either
stack meets a peer that has exported nothing yet: that peer is left out (no route, a warning) until the next
`up` after the peer's own.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pulumi

from components import stack_refs

from . import fate_files as files

if TYPE_CHECKING:
    from .fate import FatePeerConfig


@dataclass(frozen=True)
class Remote:
    """A peer party as read from its stack: where its exchange is and which CA vouches for it."""

    party: files.Party
    ca_certificate: str


@dataclass(frozen=True)
class Peers:
    configs: Sequence[FatePeerConfig]
    # Every configured peer, known or not yet: positions (the broker link ports) never depend on the outputs.
    roster: list[files.Party]
    # The peers whose stacks have exported this federation, in config order.
    remotes: pulumi.Output[list[Remote]]


def peer_key(federation: str, index: int) -> str:
    """The full config key of a peer's `stack`, as config errors name keys (federations by position)."""
    federations = pulumi.Config("flstack").get_object("federations") or []
    position = next(
        (i for i, fed in enumerate(federations) if isinstance(fed, dict) and fed.get("name") == federation), 0
    )
    return f"flstack:federations[{position}].fate.peers[{index}].stack"


def read(federation: str, configs: Sequence[FatePeerConfig], own_ids: Sequence[int]) -> Peers:
    roster = [files.Party(peer.party_id, None) for peer in configs]
    if not configs:
        return Peers(configs, roster, pulumi.Output.from_input([]))
    exported = [_federation_outputs(peer.stack, peer.federation or federation) for peer in configs]
    remotes = pulumi.Output.all(*exported).apply(lambda found: _remotes(federation, configs, own_ids, found))
    return Peers(configs, roster, remotes)


def _federation_outputs(stack: str, federation: str) -> pulumi.Output[Any]:
    """The peer stack's `federations.<federation>` output, or None when that stack has not exported it yet (its
    first `up` has not run): then this stack comes up without the peer, where stack_output would stop it."""
    exported = stack_refs.reference(stack).get_output("federations")
    return exported.apply(lambda federations: federations.get(federation) if isinstance(federations, dict) else None)


def _remotes(
    federation: str, configs: Sequence[FatePeerConfig], own_ids: Sequence[int], found: list[Any]
) -> list[Remote]:
    remotes: list[Remote] = []
    owners: dict[int, str] = {}  # party id -> the peer stack that deploys it
    for i, (peer, outputs) in enumerate(zip(configs, found, strict=True)):
        key = peer_key(federation, i)
        name = peer.federation or federation
        if outputs is None:
            pulumi.log.warn(
                f"{key}: stack {peer.stack} has not deployed FATE federation {name!r} yet: no route to party "
                f"{peer.party_id} until `pulumi up` runs here again after that stack's"
            )
            continue
        parties = outputs.get("parties") if isinstance(outputs, dict) else None
        if not isinstance(parties, dict):
            raise pulumi.RunError(f"{key}: stack {peer.stack} exports no federations.{name}.parties (is it FATE?)")
        for party_id in sorted(int(p) for p in parties):
            if party_id in own_ids:
                raise pulumi.RunError(
                    f"{key}: stack {peer.stack} also deploys party {party_id}, which this stack deploys: "
                    "each party id belongs to exactly one stack"
                )
            if owners.setdefault(party_id, peer.stack) != peer.stack:
                raise pulumi.RunError(
                    f"{key}: stack {peer.stack} and stack {owners[party_id]} both deploy party {party_id}: "
                    "each party id belongs to exactly one stack"
                )
        remotes.append(_remote(key, peer, name, parties, outputs.get("caCertificate")))
    return remotes


def _remote(key: str, peer: FatePeerConfig, name: str, parties: dict[str, Any], ca: Any) -> Remote:
    where = f"stack {peer.stack}, output federations.{name}"
    if str(peer.party_id) not in parties:
        listed = ", ".join(sorted(parties)) or "none"
        raise pulumi.RunError(f"{key}: {where}.parties has no party {peer.party_id} (it deploys: {listed})")
    exchange = parties[str(peer.party_id)].get("exchange")
    if not isinstance(exchange, dict) or not {"host", "port", "amqpsPort"} <= exchange.keys():
        raise pulumi.RunError(
            f"{key}: {where}.parties.{peer.party_id}.exchange is missing: that stack must expose the party "
            "(fate.parties[].exposure with type LoadBalancer and hostnames) and list this stack's party as a peer"
        )
    if not isinstance(ca, str) or "BEGIN CERTIFICATE" not in ca:
        raise pulumi.RunError(f"{key}: {where}.caCertificate is missing or not a PEM certificate")
    party = files.Party(
        peer.party_id,
        None,
        address=str(exchange["host"]),
        https_port=int(exchange["port"]),
        amqps_port=int(exchange["amqpsPort"]),
    )
    return Remote(party, ca)


def trust_bundle(own_ca: str, remotes: Sequence[Remote]) -> str:
    """The proxy's ca.crt: this stack's CA and each peer stack's (each once), the only issuers it accepts."""
    bundle = [own_ca.strip()]
    for remote in remotes:
        if remote.ca_certificate.strip() not in bundle:
            bundle.append(remote.ca_certificate.strip())
    return "\n".join(bundle) + "\n"
