"""Pods given as (namespace, labels) asked against the rendered NetworkPolicies: a test view of tools/netpol.py.

Full Kubernetes semantics (tools/netpol.py: selectors with matchExpressions, ipBlock with except, named ports,
endPort, policyTypes defaults, egress AND ingress). Pods built here have no IP, so ipBlocks never match them.
"""

from __future__ import annotations

from typing import Any

from tools.netpol import Cluster
from tools.netpol import Pod as ModelPod

Pod = tuple[str, dict[str, str]]  # (namespace, labels)


def _pod(pod: Pod) -> ModelPod:
    namespace, labels = pod
    return ModelPod(namespace, "probe", "probe", labels)


class Network:
    def __init__(self, manifests: list[dict[str, Any]]) -> None:
        self.cluster = Cluster.from_manifests(manifests)
        self.namespaces = self.cluster.namespaces  # name -> labels (kubernetes.io/metadata.name included)

    def connects(self, src: Pod, dst: Pod, port: int) -> bool:
        """src may open a connection to dst's `port`: src's egress and dst's ingress both allow it."""
        return self.cluster.allowed(_pod(src), _pod(dst), port)

    def reaches_address(self, src: Pod, address: str, port: int) -> bool:
        """src's egress lets it open a connection to `address` (outside the cluster's pods) on `port`."""
        return self.cluster.allowed(_pod(src), address, port)
