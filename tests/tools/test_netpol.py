"""NetworkPolicy semantics, as a table: each case is a fact from the Kubernetes documentation (the
NetworkPolicy concept page and the networking/v1 API reference) or an upstream conformance case
(kubernetes test/e2e/network/netpol), restated over the same little world the conformance tests use:
namespaces x, y, z with pods a, b, c each, serving TCP 80 and 81 and UDP 80 (ports named like upstream's).

Every case lists the pod pairs whose reachability differs from its default; every other pair of the
3x3 world (plus two outside addresses) is checked against the default, so a case also fails when a
policy leaks beyond what it should touch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from tools.netpol import Cluster, Endpoint, Pod, matches

NAMESPACES = ["x", "y", "z"]
PODS = ["a", "b", "c"]
INSIDE_LIST = "192.168.7.7"  # an outside address inside the ipBlock cases' CIDR
OUTSIDE_LIST = "203.0.113.9"
LISTED_HOLE = "192.168.1.0/24"


def world(policies: list[tuple[str, dict[str, Any]]], pod_labels: dict[str, dict[str, str]] | None = None) -> Cluster:
    manifests: list[dict[str, Any]] = []
    for ns in NAMESPACES:
        manifests.append({"kind": "Namespace", "metadata": {"name": ns, "labels": {"team": f"team-{ns}"}}})
        for pod in PODS:
            labels = {"pod": pod, **(pod_labels or {}).get(f"{ns}/{pod}", {})}
            ports = [
                {"name": "serve-80-tcp", "containerPort": 80, "protocol": "TCP"},
                {"name": "serve-81-tcp", "containerPort": 81},  # protocol defaults to TCP
                {"name": "serve-80-udp", "containerPort": 80, "protocol": "UDP"},
            ]
            manifests.append(
                {
                    "kind": "Deployment",
                    "metadata": {"name": pod, "namespace": ns},
                    "spec": {
                        "replicas": 1,
                        "template": {
                            "metadata": {"labels": labels},
                            "spec": {"containers": [{"name": "c", "ports": ports}]},
                        },
                    },
                }
            )
    for i, (ns, spec) in enumerate(policies):
        manifests.append({"kind": "NetworkPolicy", "metadata": {"name": f"p{i}", "namespace": ns}, "spec": spec})
    return Cluster.from_manifests(manifests, cluster_dns=False)


def sel(**labels: str) -> dict[str, Any]:
    return {"matchLabels": labels}


def ns_sel(name: str) -> dict[str, Any]:
    return {"matchLabels": {"kubernetes.io/metadata.name": name}}


def expr(key: str, operator: str, *values: str) -> dict[str, Any]:
    return {"matchExpressions": [{"key": key, "operator": operator, "values": list(values)}]}


NOT_X = expr("kubernetes.io/metadata.name", "NotIn", "x")


def ingress(pod: dict[str, Any], *rules: dict[str, Any], types: list[str] | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"podSelector": pod, "ingress": list(rules)}
    if types is not None:
        spec["policyTypes"] = types
    return spec


def egress(pod: dict[str, Any], *rules: dict[str, Any]) -> dict[str, Any]:
    return {"podSelector": pod, "policyTypes": ["Egress"], "egress": list(rules)}


@dataclass
class Case:
    source: str  # where the fact comes from
    policies: list[tuple[str, dict[str, Any]]]
    flipped: set[tuple[str, str]]  # (from, to) pairs whose reachability is the opposite of `default`
    port: int = 80
    protocol: str = "TCP"
    default: bool = True
    pod_labels: dict[str, dict[str, str]] = field(default_factory=dict)


ALL = [f"{ns}/{p}" for ns in NAMESPACES for p in PODS]
EXTERNAL = [INSIDE_LIST, OUTSIDE_LIST]


def into(targets: list[str], sources: list[str] | None = None) -> set[tuple[str, str]]:
    return {(s, t) for t in targets for s in (sources if sources is not None else ALL + EXTERNAL) if s != t}


def out_of(sources: list[str], targets: list[str] | None = None) -> set[tuple[str, str]]:
    return {(s, t) for s in sources for t in (targets if targets is not None else ALL + EXTERNAL) if s != t}


X = [f"x/{p}" for p in PODS]
Y = [f"y/{p}" for p in PODS]
Z = [f"z/{p}" for p in PODS]

CASES: dict[str, Case] = {
    "no policy: everything reaches everything": Case("concepts: non-isolated by default", [], set()),
    "default-deny ingress isolates every pod of the namespace": Case(
        "conformance: should support a default-deny-ingress policy",
        [("x", ingress({}))],
        into(X),
    ),
    "default-deny all (ingress+egress)": Case(
        "conformance: should support a 'default-deny-all' policy",
        [("x", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})],
        into(X) | out_of(X),
    ),
    "podSelector peer: same namespace only": Case(
        "conformance: allow traffic from pods within server namespace based on PodSelector",
        [("x", ingress(sel(pod="a"), {"from": [{"podSelector": sel(pod="b")}]}))],
        into(["x/a"]) - {("x/b", "x/a")},
    ),
    "namespaceSelector peer on kubernetes.io/metadata.name": Case(
        "conformance: allow traffic only from a different namespace, based on NamespaceSelector",
        [("x", ingress(sel(pod="a"), {"from": [{"namespaceSelector": ns_sel("y")}]}))],
        into(["x/a"]) - into(["x/a"], Y),
    ),
    "namespaceSelector {}: every pod of every namespace, no outside address": Case(
        "conformance: allow ingress traffic from pods in all namespaces",
        [("x", ingress(sel(pod="a"), {"from": [{"namespaceSelector": {}}]}))],
        into(["x/a"], EXTERNAL),
    ),
    "podSelector with matchExpressions In": Case(
        "conformance: policy based on PodSelector with MatchExpressions",
        [
            (
                "x",
                ingress(
                    sel(pod="a"),
                    {
                        "from": [
                            {"podSelector": {"matchExpressions": [{"key": "pod", "operator": "In", "values": ["b"]}]}}
                        ]
                    },
                ),
            )
        ],
        into(["x/a"]) - {("x/b", "x/a")},
    ),
    "two peers are OR: other namespaces, or x/b": Case(
        "conformance: policy based on PodSelector or NamespaceSelector",
        [
            (
                "x",
                ingress(
                    sel(pod="a"),
                    {
                        "from": [
                            {"namespaceSelector": NOT_X},
                            {"podSelector": sel(pod="b")},
                        ]
                    },
                ),
            )
        ],
        into(["x/a"], ["x/c", *EXTERNAL]),
    ),
    "both selectors in one peer are AND": Case(
        "conformance: policy based on PodSelector and NamespaceSelector",
        [
            (
                "x",
                ingress(
                    sel(pod="a"),
                    {
                        "from": [
                            {
                                "namespaceSelector": NOT_X,
                                "podSelector": sel(pod="b"),
                            }
                        ]
                    },
                ),
            )
        ],
        into(["x/a"]) - {("y/b", "x/a"), ("z/b", "x/a")},
    ),
    "namespaceSelector on a custom namespace label, Exists/DoesNotExist": Case(
        "API reference: LabelSelectorRequirement operators",
        [
            (
                "x",
                ingress(
                    sel(pod="a"),
                    {
                        "from": [
                            {
                                "namespaceSelector": sel(team="team-z"),
                                "podSelector": {
                                    "matchExpressions": [
                                        {"key": "pod", "operator": "Exists"},
                                        {"key": "quarantine", "operator": "DoesNotExist"},
                                    ]
                                },
                            }
                        ]
                    },
                ),
            )
        ],
        into(["x/a"]) - {("z/a", "x/a"), ("z/b", "x/a")},
        pod_labels={"z/c": {"quarantine": "yes"}},
    ),
    "numbered port: other ports stay closed": Case(
        "conformance: allow ingress access on one named port (numbered form), probed on 81",
        [("x", ingress(sel(pod="a"), {"ports": [{"port": 80, "protocol": "TCP"}]}))],
        into(["x/a"]),
        port=81,
    ),
    "named port resolves on the destination pod": Case(
        "conformance: should allow ingress access on one named port",
        [("x", ingress({}, {"ports": [{"port": "serve-81-tcp"}]}))],
        set(),
        port=81,
    ),
    "named port: another port is not it": Case(
        "conformance: should allow ingress access on one named port (probe 80)",
        [("x", ingress({}, {"ports": [{"port": "serve-81-tcp"}]}))],
        into(X),
        port=80,
    ),
    "named port of the wrong protocol does not match": Case(
        "API reference: NetworkPolicyPort.protocol defaults to TCP; the name is a UDP port, probed on TCP/80",
        [("x", ingress({}, {"ports": [{"port": "serve-80-udp"}]}))],
        into(X),
        port=80,
    ),
    "endPort: a range of ports": Case(
        "concepts: targeting a range of ports (port 32000 endPort 32768), here 79-81",
        [("x", ingress({}, {"ports": [{"port": 79, "endPort": 81}]}))],
        set(),
        port=81,
    ),
    "endPort: outside the range": Case(
        "concepts: targeting a range of ports, probe outside it",
        [("x", ingress({}, {"ports": [{"port": 82, "endPort": 90}]}))],
        into(X),
        port=81,
    ),
    "protocol-only port entry: every TCP port, no UDP": Case(
        "conformance: ingress policy allowing any port traffic to a server on a specific protocol",
        [("x", ingress(sel(pod="a"), {"ports": [{"protocol": "TCP"}]}))],
        into(["x/a"]),
        protocol="UDP",
    ),
    "an empty rule allows all, and allow-all wins over a narrower policy": Case(
        "conformance: multiple ingress policies with ingress allow-all policy taking precedence",
        [("x", ingress({}, {"ports": [{"port": 80}]})), ("x", ingress({}, {}))],
        set(),
        port=81,
    ),
    "policyTypes defaults to Ingress when there are no egress rules": Case(
        "API reference: policyTypes default",
        [("x", {"podSelector": {}})],
        into(X),
    ),
    "policyTypes defaults to Ingress+Egress with egress rules": Case(
        "API reference: policyTypes default (Egress set if the policy has egress rules)",
        [("x", {"podSelector": sel(pod="a"), "egress": [{"to": [{"podSelector": {}}]}]})],
        into(["x/a"]) | (out_of(["x/a"]) - out_of(["x/a"], X)),
    ),
    "egress only: policyTypes [Egress] leaves ingress open": Case(
        "conformance: should deny egress from pods based on PodSelector",
        [("x", egress(sel(pod="a")))],
        out_of(["x/a"]),
    ),
    "egress denied at the client even when the server admits": Case(
        "conformance: denying of egress traffic on the client side (even if the server explicitly allows it)",
        [
            ("x", egress(sel(pod="a"), {"to": [{"namespaceSelector": ns_sel("y"), "podSelector": sel(pod="a")}]})),
            ("y", ingress(sel(pod="a"), {"from": [{"namespaceSelector": ns_sel("x"), "podSelector": sel(pod="a")}]})),
            ("y", ingress(sel(pod="b"), {"from": [{"namespaceSelector": ns_sel("x"), "podSelector": sel(pod="a")}]})),
        ],
        (out_of(["x/a"]) | into(["y/a", "y/b"])) - {("x/a", "y/a")},
    ),
    "Ingress and Egress in one policy, port 81": Case(
        "conformance: should work with Ingress, Egress specified together",
        [
            (
                "x",
                {
                    "podSelector": sel(pod="a"),
                    "policyTypes": ["Ingress", "Egress"],
                    "ingress": [{"from": [{"podSelector": sel(pod="b")}]}],
                    "egress": [{"ports": [{"port": 80}]}],
                },
            )
        ],
        (into(["x/a"]) - {("x/b", "x/a")}) | out_of(["x/a"]),
        port=81,
    ),
    "ipBlock with except, ingress from outside": Case(
        "concepts: ipBlock cidr 192.168.0.0/16 except a /24",
        [
            (
                "x",
                ingress(sel(pod="a"), {"from": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": [LISTED_HOLE]}}]}),
            )
        ],
        into(["x/a"]) - {(INSIDE_LIST, "x/a")},
    ),
    "ipBlock except carves out the listed address": Case(
        "conformance: should enforce except clause while egress access to server in CIDR block",
        [("x", egress(sel(pod="a"), {"to": [{"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.7.0/24"]}}]}))],
        out_of(["x/a"]),
    ),
    "ipBlock matches pod IPs (egress to a server in a CIDR block)": Case(
        "conformance: should allow egress access to server in CIDR block",
        [("x", egress(sel(pod="a"), {"to": [{"ipBlock": {"cidr": "10.244.0.0/16"}}]}))],
        out_of(["x/a"], EXTERNAL),
    ),
    "selectors never match addresses outside the cluster": Case(
        "concepts: podSelector/namespaceSelector select pods",
        [("x", egress(sel(pod="a"), {"to": [{"namespaceSelector": {}}]}))],
        out_of(["x/a"], EXTERNAL),
    ),
    "a policy selects pods of its own namespace only": Case(
        "concepts: NetworkPolicies are namespaced",
        [("y", ingress(sel(pod="a")))],
        into(["y/a"]),
    ),
    "a changed pod label takes the pod out of a policy's peers": Case(
        "conformance: should allow ingress access from updated pod (and the reverse)",
        [("x", ingress(sel(pod="a"), {"from": [{"podSelector": sel(pod="b", pod2="updated")}]}))],
        into(["x/a"]) - {("x/b", "x/a")},
        pod_labels={"x/b": {"pod2": "updated"}},
    ),
}


def _endpoint(cluster: Cluster, name: str) -> Endpoint:
    if "/" not in name:
        return name
    ns, pod = name.split("/")
    return cluster.pod(ns, f"{pod}-0")


@pytest.mark.parametrize("name", list(CASES))
def test_semantics_table(name: str) -> None:
    case = CASES[name]
    cluster = world(case.policies, case.pod_labels)
    wrong = []
    for source in ALL + EXTERNAL:
        for destination in ALL + EXTERNAL:
            if source == destination or ("/" not in source and "/" not in destination):
                continue
            expected = case.default != ((source, destination) in case.flipped)
            verdict = cluster.verdict(
                _endpoint(cluster, source), _endpoint(cluster, destination), case.port, case.protocol
            )
            if verdict.allowed != expected:
                wrong.append(f"{source} -> {destination}: expected {expected}, got {verdict}")
    assert not wrong, f"{case.source}\n" + "\n".join(wrong)


def test_label_selector_operators() -> None:
    labels = {"app": "web", "tier": "front"}
    assert matches({}, labels) and not matches(None, labels)
    assert matches(
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "NotIn", "values": ["db"]}]},
        labels,
    )
    assert not matches(
        {"matchLabels": {"app": "web"}, "matchExpressions": [{"key": "tier", "operator": "In", "values": ["db"]}]},
        labels,
    )
    assert matches({"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}, labels)  # absent key
    assert not matches({"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}, labels)
    with pytest.raises(ValueError, match="Gt"):
        matches({"matchExpressions": [{"key": "n", "operator": "Gt", "values": ["1"]}]}, labels)


def _dns_world(policies: list[tuple[str, dict[str, Any]]]) -> Cluster:
    manifests: list[dict[str, Any]] = [
        {"kind": "Namespace", "metadata": {"name": "app"}},
        {
            "kind": "StatefulSet",
            "metadata": {"name": "node", "namespace": "app"},
            "spec": {
                "replicas": 2,
                "template": {"metadata": {"labels": {"role": "node"}}, "spec": {"containers": [{"name": "c"}]}},
            },
        },
        {
            "kind": "Deployment",
            "metadata": {"name": "server", "namespace": "app"},
            "spec": {
                "replicas": 0,
                "template": {
                    "metadata": {"labels": {"role": "server"}},
                    "spec": {"containers": [{"name": "c", "ports": [{"name": "api", "containerPort": 9000}]}]},
                },
            },
        },
        {
            "kind": "Service",
            "metadata": {"name": "server", "namespace": "app"},
            "spec": {"selector": {"role": "server"}, "ports": [{"port": 443, "targetPort": "api"}]},
        },
    ]
    for i, (ns, spec) in enumerate(policies):
        manifests.append({"kind": "NetworkPolicy", "metadata": {"name": f"p{i}", "namespace": ns}, "spec": spec})
    return Cluster.from_manifests(manifests)


DENY_ALL = ("app", {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]})
TO_SERVER = ("app", egress(sel(role="node"), {"to": [{"podSelector": sel(role="server")}], "ports": [{"port": 9000}]}))
SERVER_IN = ("app", ingress(sel(role="server"), {"from": [{"podSelector": sel(role="node")}]}))
DNS_OUT = (
    "app",
    egress(
        {},
        {
            "to": [{"namespaceSelector": ns_sel("kube-system"), "podSelector": sel(**{"k8s-app": "kube-dns"})}],
            "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}],
        },
    ),
)


def test_statefulset_pods_carry_their_index_and_a_scaled_down_workload_is_modelled() -> None:
    cluster = _dns_world([])
    assert [p.labels["apps.kubernetes.io/pod-index"] for p in cluster.pods_of("app", "node")] == ["0", "1"]
    assert [p.name for p in cluster.pods_of("app", "server")] == ["server-0"]
    assert len({p.ip for p in cluster.pods}) == len(cluster.pods)


def test_a_service_name_costs_a_dns_lookup_then_reaches_the_target_port() -> None:
    node = _dns_world([]).pod("app", "node-1")
    for host in ("server", "server.app", "server.app.svc", "server.app.svc.cluster.local"):
        connection = _dns_world([DENY_ALL, TO_SERVER, SERVER_IN, DNS_OUT]).connect(node, host, 443)
        assert connection.allowed, connection.explain()
        dns, server = connection.flows
        assert (str(dns.destination), dns.port, dns.protocol) == ("kube-system/coredns-0", 53, "UDP")
        assert (str(server.destination), server.port) == ("app/server-0", 9000)  # named targetPort resolved


def test_without_the_dns_rule_the_lookup_is_the_refused_flow() -> None:
    cluster = _dns_world([DENY_ALL, TO_SERVER, SERVER_IN])
    connection = cluster.connect(cluster.pod("app", "node-0"), "server.app", 443)
    assert not connection.allowed
    (refused,) = connection.refused()
    assert (refused.destination, refused.port, refused.protocol) == (cluster.cluster_dns()[0], 53, "UDP")
    assert "app/p0" in refused.verdict.reason


def test_dns_needs_the_namespace_and_the_pod_selector() -> None:
    wrong_namespace = (
        "app",
        egress({}, {"to": [{"namespaceSelector": ns_sel("default"), "podSelector": sel(**{"k8s-app": "kube-dns"})}]}),
    )
    cluster = _dns_world([DENY_ALL, TO_SERVER, SERVER_IN, wrong_namespace])
    assert not cluster.connect(cluster.pod("app", "node-0"), "server.app", 443).allowed


def test_a_bare_service_name_only_resolves_in_its_own_namespace_and_bad_names_are_problems() -> None:
    cluster = _dns_world([])
    outside_pod = Pod("other", "p-0", "Deployment/p", {}, "10.244.9.9")
    assert cluster.connect(outside_pod, "server", 443).problem == "server is no Service of the render (no DNS answer)"
    assert cluster.connect(outside_pod, "server.app", 443).allowed
    assert "no TCP port 80" in str(cluster.connect(cluster.pod("app", "node-0"), "server.app", 80).problem)


def test_a_service_whose_selector_matches_no_pod_has_no_endpoints() -> None:
    cluster = _dns_world([])
    cluster.pods = [p for p in cluster.pods if p.labels.get("role") != "server"]
    connection = cluster.connect(cluster.pod("app", "node-0"), "server.app", 443)
    assert not connection.allowed and "no endpoints" in str(connection.problem)
