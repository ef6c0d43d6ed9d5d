"""A small NetworkPolicy evaluator for rendered objects: may this pod reach that pod (or address) on a port?

Kubernetes semantics for what flstack writes: a pod selected by no policy of a direction is open in that
direction; selected pods admit only what some rule allows; a connection needs the source's egress AND the
destination's ingress. Selectors: matchLabels only (anything else is refused, not guessed).
"""

from __future__ import annotations

import ipaddress
from typing import Any

Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    if set(selector) - {"matchLabels"}:
        raise ValueError(f"selector not supported by this evaluator: {selector}")
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


class Network:
    def __init__(self, manifests: list[dict[str, Any]]) -> None:
        self.policies = [o for o in manifests if o["kind"] == "NetworkPolicy"]
        # The API server adds kubernetes.io/metadata.name to every namespace; kube-system exists everywhere.
        self.namespaces = {"kube-system": {"kubernetes.io/metadata.name": "kube-system"}}
        for o in manifests:
            if o["kind"] == "Namespace":
                name = o["metadata"]["name"]
                self.namespaces[name] = {**o["metadata"].get("labels", {}), "kubernetes.io/metadata.name": name}

    def _selecting(self, pod: Pod, direction: str) -> list[dict[str, Any]]:
        ns, labels = pod
        return [
            p
            for p in self.policies
            if p["metadata"]["namespace"] == ns
            and direction in p["spec"].get("policyTypes", ["Ingress"])
            and _matches(p["spec"]["podSelector"], labels)
        ]

    def _peer_is_pod(self, peer: dict[str, Any], policy_ns: str, other: Pod) -> bool:
        if "ipBlock" in peer:
            return False  # pod IPs are not modelled
        other_ns, other_labels = other
        if "namespaceSelector" in peer:
            in_ns = _matches(peer["namespaceSelector"], self.namespaces[other_ns])
        else:
            in_ns = other_ns == policy_ns
        return in_ns and _matches(peer.get("podSelector", {}), other_labels)

    def _allows(self, pod: Pod, direction: str, port: int, peer_ok: Any) -> bool:
        policies = self._selecting(pod, direction)
        if not policies:
            return True
        key = "egress" if direction == "Egress" else "ingress"
        side = "to" if direction == "Egress" else "from"
        for policy in policies:
            for rule in policy["spec"].get(key, []):
                ports = [p["port"] for p in rule.get("ports", [])]
                if ports and port not in ports:
                    continue
                peers = rule.get(side, [])
                if not peers or any(peer_ok(peer, policy["metadata"]["namespace"]) for peer in peers):
                    return True
        return False

    def connects(self, src: Pod, dst: Pod, port: int) -> bool:
        """src may open a connection to dst's `port`: src's egress and dst's ingress both allow it."""
        out = self._allows(src, "Egress", port, lambda peer, ns: self._peer_is_pod(peer, ns, dst))
        return out and self._allows(dst, "Ingress", port, lambda peer, ns: self._peer_is_pod(peer, ns, src))

    def reaches_address(self, src: Pod, address: str, port: int) -> bool:
        """src's egress lets it open a connection to `address` (outside the cluster's pods) on `port`."""

        def in_block(peer: dict[str, Any], _ns: str) -> bool:
            block = peer.get("ipBlock")
            if block is None:
                return False
            ip = ipaddress.ip_address(address)
            net = ipaddress.ip_network(block["cidr"], strict=False)
            excluded = any(ip in ipaddress.ip_network(e, strict=False) for e in block.get("except", []))
            return ip.version == net.version and ip in net and not excluded

        return self._allows(src, "Egress", port, in_block)
