"""Isolation of every shipped stack, read from its rendered NetworkPolicies by tools/netpol.py.

- Each federation's own clients reach its coordinator's Service (DNS lookup included).
- No flow enters a federation from another federation's namespaces (shipped stacks hold one federation
  each, so a stack with a Flower and an NVFlare federation side by side is checked too).
- Every federation namespace has default-deny egress, and its pods reach only cluster DNS (53), their own
  federation's pods, and the CIDRs the stack config lists for that federation.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable
from typing import Any

import pytest

from components import kube
from tests.helpers import MINIKUBE, render, render_stack
from tools import netpol, stack_files
from tools import render as render_tool

PART_OF = "app.kubernetes.io/part-of"
COMPONENT = "app.kubernetes.io/component"
JOBSET = "jobset.sigs.k8s.io/jobset-name"
FATE_PARTY = "flstack.dev/fate-party"
Dial = tuple[netpol.Pod, str]  # a pod and the `host:port` it dials


def _coordinator(output_key: str, dials: Callable[[netpol.Pod, str], bool]) -> Callable[..., list[Dial]]:
    def flows(cluster: netpol.Cluster, name: str, outputs: dict[str, Any]) -> list[Dial]:
        return [(p, outputs[output_key]) for p in cluster.pods if dials(p, name)]

    return flows


def _fate(cluster: netpol.Cluster, name: str, outputs: dict[str, Any]) -> list[Dial]:
    """Each party's proxy dials every other party's proxy Service (the only cross-party link), and the exchange
    of every peer in another stack, at an address of its listed network, on the exchange's two ports."""
    proxies = [p for p in cluster.pods if _component(p, name) == "proxy"]
    outside = [
        f"{ipaddress.ip_network(cidr).network_address}:{port}"
        for peer in outputs.get("peerConfigs", [])
        for cidr in peer.get("exchangeCidrs") or peer["cidrs"]
        for port in (9443, 5671)
    ]
    return [
        (proxy, party["proxy"])
        for party_id, party in outputs["parties"].items()
        for proxy in proxies
        if proxy.labels.get(FATE_PARTY) != party_id
    ] + [(proxy, address) for proxy in proxies for address in outside]


def _fltk(cluster: netpol.Cluster, name: str, outputs: dict[str, Any]) -> list[Dial]:
    """FLTK's job pods are made by its orchestrator at run time; the orchestrator dials the API server."""
    api = outputs["apiServer"]
    addresses = [str(ipaddress.ip_network(c).network_address) for c in api["cidrs"]]
    orchestrators = [p for p in cluster.pods if _component(p, name) == "orchestrator"]
    return [(pod, f"{address}:{port}") for pod in orchestrators for address in addresses for port in api["ports"]]


# Per framework: which of a federation's pods dial which of its stack outputs' addresses.
CLIENTS: dict[str, Callable[[netpol.Cluster, str, dict[str, Any]], list[Dial]]] = {
    "flower": _coordinator(
        "superlinkAddress", lambda pod, name: _component(pod, name) in {"supernode", "superexec", "verify"}
    ),
    "nvflare": _coordinator("serverAddress", lambda pod, name: _component(pod, name) in {"site", "admin", "verify"}),
    "kubeflow": _coordinator("masterAddress", lambda pod, name: pod.labels.get(JOBSET) == name),  # node 0 too
    "fate": _fate,
    "fltk": _fltk,
    "fedml": _coordinator("serverAddress", lambda pod, name: _component(pod, name) == "client"),
}


def _component(pod: netpol.Pod, federation: str) -> str | None:
    return pod.labels.get(COMPONENT) if pod.labels.get(PART_OF) == federation else None


def _federations(config: dict[str, str]) -> list[dict[str, Any]]:
    return list(json.loads(config.get("flstack:federations", "[]")))


SHIPPED = [s for s in stack_files.stack_names() if _federations(stack_files.load(s).config)]
SIDE_BY_SIDE = "flower+nvflare side by side"


def _side_by_side() -> tuple[render_tool.Rendering, list[dict[str, Any]]]:
    federations = [
        {"name": "demo", "framework": "flower", "flower": {"supernodes": 2, "allowedCidrs": ["198.51.100.0/24"]}},
        {"name": "flare", "framework": "nvflare", "nvflare": {"sites": ["site-1", "site-2"]}},
    ]
    return render({"target": MINIKUBE, "federations": federations}), federations


def _stack(stack: str) -> tuple[netpol.Cluster, dict[str, Any], list[dict[str, Any]]]:
    if stack == SIDE_BY_SIDE:
        rendering, federations = _side_by_side()
    else:
        rendering, federations = render_stack(stack), _federations(stack_files.load(stack).config)
    cluster = netpol.Cluster.from_manifests(rendering.manifests())
    return cluster, rendering.outputs(reveal=True).get("federations", {}), federations


def _federation_of(cluster: netpol.Cluster) -> dict[str, str]:
    """namespace -> the federation whose pods (or, for pods made by an operator, policies) are there."""
    owners: dict[str, set[str]] = {}
    for labels, ns in [
        *((p.labels, p.namespace) for p in cluster.pods),
        *((p.labels, p.namespace) for p in cluster.policies),
    ]:
        if PART_OF in labels:
            owners.setdefault(ns, set()).add(labels[PART_OF])
    assert all(len(o) == 1 for o in owners.values()), f"a namespace shared by federations: {owners}"
    return {ns: next(iter(o)) for ns, o in owners.items()}


def _listed_cidrs(federation: dict[str, Any]) -> list[str]:
    """Every CIDR the stack config lists for one federation (allowedCidrs, sourceRanges, ...Cidrs)."""
    found: list[str] = []

    def walk(value: Any, key: str = "") -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, k)
        elif isinstance(value, list):
            for v in value:
                walk(v, key)
        elif isinstance(value, str) and re.search(r"cidr|sourceranges", key, re.IGNORECASE):
            found.append(value)

    walk(federation.get(federation["framework"], {}))
    return found


def _resolved_outside(federation: dict[str, Any], host: str) -> str:
    """A cross-silo participant dials the hub's public name: it resolves into the config's superlinkCidrs
    (Flower) or the site's egress CIDRs (NVFlare: its only way out is the hub's address)."""
    settings = federation.get(federation["framework"], {})
    if not settings.get("join"):
        return host
    cidrs = settings["join"].get("superlinkCidrs") or settings["egress"]["cidrs"]
    return str(ipaddress.ip_network(cidrs[0]).network_address)


@pytest.mark.parametrize("stack", [*SHIPPED, SIDE_BY_SIDE])
def test_each_federations_clients_reach_its_coordinator_by_service_name(stack: str) -> None:
    cluster, outputs, federations = _stack(stack)
    checked = 0
    for federation in federations:
        exported = outputs[federation["name"]]
        if federation["framework"] == "fate":  # peers in other stacks: only the config says where they are
            exported = {**exported, "peerConfigs": federation["fate"].get("peers", [])}
        dials = CLIENTS[federation["framework"]](cluster, federation["name"], exported)
        assert dials, f"{federation['name']}: no client pods"
        for pod, address in dials:
            host, _, port = address.rpartition(":")
            host = _resolved_outside(federation, host)
            connection = cluster.connect(pod, host, int(port))
            assert connection.allowed, connection.explain()
            checked += 1
    # An NVFlare site stack runs one site: its one dial is all there is.
    assert checked >= (1 if stack == "onprem-nvflare-site" else 2)


def cross_federation_flows(cluster: netpol.Cluster) -> list[str]:
    """Every flow from a namespace of one federation into a namespace of another, with its ports."""
    owner = _federation_of(cluster)
    everyone = netpol.parties(cluster)
    leaks = []
    for source in everyone:
        for destination in everyone:
            ours, theirs = owner.get(source.namespace or ""), owner.get(destination.namespace or "")
            if ours and theirs and ours != theirs:
                ports = [
                    f"{p.protocol}/{p.port}"
                    for p in destination.ports
                    if any(
                        cluster.allowed(s, d, p.port, p.protocol)
                        for s in source.endpoints
                        for d in destination.endpoints
                    )
                ]
                if ports:
                    leaks.append(f"{source.label} -> {destination.label}: {ports}")
    return leaks


@pytest.mark.parametrize("stack", [*SHIPPED, SIDE_BY_SIDE])
def test_no_flow_enters_a_federation_from_another_federations_namespace(stack: str) -> None:
    cluster, _, _ = _stack(stack)
    assert cross_federation_flows(cluster) == []
    if stack == SIDE_BY_SIDE:
        assert len(set(_federation_of(cluster).values())) == 2  # the check compared two federations


def test_the_cross_federation_check_sees_namespaces_left_open() -> None:
    rendering, _ = _side_by_side()
    opened = {"demo", "flare-site-1"}  # every policy of these two namespaces dropped
    manifests = [
        o for o in rendering.manifests() if not (o["kind"] == "NetworkPolicy" and o["metadata"]["namespace"] in opened)
    ]
    leaks = cross_federation_flows(netpol.Cluster.from_manifests(manifests))
    assert "flare-site-1/Deployment/site-1 -> demo/StatefulSet/supernodes-default: ['TCP/8081']" in leaks, leaks
    assert all(leak.startswith(("flare-site-1/", "demo/")) for leak in leaks), leaks  # and nothing else opened


def egress_leaks(cluster: netpol.Cluster, federations: list[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(namespaces with default-deny egress that were checked, what their pods may reach beyond DNS, their own
    federation and its listed CIDRs)."""
    owner = _federation_of(cluster)
    listed = {f["name"]: [ipaddress.ip_network(c, strict=False) for c in _listed_cidrs(f)] for f in federations}
    denied = sorted(
        {
            p.namespace
            for p in cluster.policies
            if "Egress" in p.types and p.spec.get("podSelector") == {} and not p.spec.get("egress")
        }
    )
    dns = set(cluster.cluster_dns())
    leaks = []
    for (source_label, destination_label), ports in netpol.connectivity(cluster).items():
        source = next(p for p in netpol.parties(cluster) if p.label == source_label)
        if source.namespace not in denied:
            continue
        destination = next(p for p in netpol.parties(cluster) if p.label == destination_label)
        federation = owner.get(source.namespace, "")
        if set(destination.endpoints) <= dns:
            if set(ports) <= {"UDP/53", "TCP/53"}:
                continue
        elif destination.namespace is not None:
            if owner.get(destination.namespace) == federation:
                continue
        elif all(
            any(ipaddress.ip_address(ip) in net for net in listed.get(federation, []))
            for ip in destination.endpoints
            if isinstance(ip, str)
        ):
            continue
        leaks.append(f"{source_label} -> {destination_label}: {ports}")
    return denied, leaks


@pytest.mark.parametrize("stack", [*SHIPPED, SIDE_BY_SIDE])
def test_default_deny_egress_leaves_only_dns_own_peers_and_listed_cidrs(stack: str) -> None:
    cluster, _, federations = _stack(stack)
    checked, leaks = egress_leaks(cluster, federations)
    assert leaks == [], f"checked namespaces {checked}"
    assert checked == sorted(set(_federation_of(cluster))), "every federation namespace has default-deny egress"


def test_the_egress_check_sees_a_leak_and_passes_the_allowed() -> None:
    """The check above on the Flower stack's pods with its policies replaced by hand (kube.deny_all/allow_dns,
    a rule to the SuperLink), then one egress rule too many: the check finds exactly that one."""
    rendering = render_stack("local-flower")
    federations = _federations(stack_files.load("local-flower").config)
    superlink = {"podSelector": {"matchLabels": {COMPONENT: "superlink"}}}
    to_superlink = {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "to-superlink", "namespace": "demo"},
        "spec": {"podSelector": {}, "policyTypes": ["Egress"], "egress": [{"to": [superlink]}]},
    }
    pods_only = [o for o in rendering.manifests() if o["kind"] != "NetworkPolicy"]
    hardened = [*pods_only, kube.deny_all("demo"), kube.allow_dns("demo"), to_superlink]
    checked, leaks = egress_leaks(netpol.Cluster.from_manifests(hardened), federations)
    assert checked == ["demo"] and leaks == []

    anywhere = json.loads(json.dumps(to_superlink))
    anywhere["metadata"]["name"] = "to-anywhere"
    anywhere["spec"]["egress"] = [{"to": [{"ipBlock": {"cidr": "0.0.0.0/0"}}], "ports": [{"port": 8443}]}]
    _, leaks = egress_leaks(netpol.Cluster.from_manifests([*hardened, anywhere]), federations)
    assert leaks and all("outside 192.0.2.10: ['TCP/8443']" in leak for leak in leaks), leaks


def test_connectivity_cli_prints_the_matrix(capsys: pytest.CaptureFixture[str], tmp_path: Any) -> None:
    assert render_tool.main(["local-nvflare", "--out", str(tmp_path / "r"), "--connectivity"]) == 0
    out = capsys.readouterr().out
    matrix = out[out.index("from \\ to") :].splitlines()
    cells = [re.split(r"\s{2,}", line) for line in matrix[1:]]
    rows = {cell[0].split(" ", 1)[1]: cell[1:] for cell in cells}
    server = next(i for i, label in enumerate(rows) if label == "demo/Deployment/nvflare-server")
    for client in (
        "demo-site-1/Deployment/site-1",
        "demo-site-2/Deployment/site-2",
        "demo-admin/Deployment/nvflare-admin",
    ):
        assert rows[client][server] == "TCP/8002", matrix
    assert rows["demo-site-1/Deployment/site-1"][list(rows).index("demo-site-2/Deployment/site-2")] in {"-", "."}
    assert rows["outside 192.0.2.10"][server] == "-"


def test_trainjob_nodes_reach_their_own_master_by_pod_hostname_only() -> None:
    """Trainer's nodes dial `<trainjob>-node-0-0.<trainjob>` (a pod under JobSet's headless Service)."""
    cluster, outputs, _ = _stack("local-kubeflow")
    host, _, port = outputs["fedavg"]["masterAddress"].rpartition(":")
    assert [p.name for p in cluster.pods_of("fedavg", "TrainJob/fedavg")] == [f"fedavg-node-0-{i}" for i in range(3)]
    own = cluster.connect(cluster.pod("fedavg", "fedavg-node-0-2"), host, int(port))
    assert own.allowed and str(own.flows[-1].destination) == "fedavg/fedavg-node-0-0", own.explain()
    stranger = cluster.pod("fedavg-small", "fedavg-small-node-0-1")
    assert "no DNS answer" in str(cluster.connect(stranger, host, int(port)).problem)  # search path: own namespace
    other = cluster.connect(stranger, f"{host}.fedavg.svc.cluster.local", int(port))  # the full name resolves
    assert not other.allowed
    policies = "fedavg-small/allow-dns, fedavg-small/default-deny, fedavg-small/fedavg-small-peers"
    assert f"TCP/29500 DROPPED: no egress rule of {policies}" in other.explain()


def _verification_pods(cluster: netpol.Cluster, federation: str) -> list[netpol.Pod]:
    """A federation's verification pods: FATE's Job (labelled), or a verification TrainJob's nodes (named)."""
    return [
        p
        for p in cluster.pods
        if _component(p, federation) == "verify" or p.workload.startswith(f"TrainJob/{federation}-verify-")
    ]


def _fate_verifier_connections(manifests: list[dict[str, Any]]) -> dict[tuple[str, int], netpol.Connection]:
    cluster = netpol.Cluster.from_manifests(manifests)
    (job,) = _verification_pods(cluster, "fate")
    assert job.namespace == "fate-9999" and job.workload.startswith("Job/fate-toy-")  # the initiating party's
    targets = [
        ("fateflow", 9380),
        ("proxy", 9300),
        ("fateflow", 9360),
        ("rabbitmq", 5672),
        ("rabbitmq", 15672),
        ("proxy", 9443),
        ("proxy.fate-10000.svc.cluster.local", 9443),
        ("proxy.fate-10000.svc.cluster.local", 9300),
        ("fateflow.fate-10000.svc.cluster.local", 9380),
    ]
    return {(host, port): cluster.connect(job, host, port) for host, port in targets}


def test_fates_verification_job_reaches_its_fate_flow_and_proxy_by_name_and_nothing_else() -> None:
    """It submits to its party's fate_flow and asks every party through its own proxy's plain port."""
    rendering = render_stack("local-fate")
    connections = _fate_verifier_connections(rendering.manifests())
    allowed = sorted(target for target, connection in connections.items() if connection.allowed)
    assert allowed == [("fateflow", 9380), ("proxy", 9300)], {t: c.explain() for t, c in connections.items()}

    # The proxy admits the Job by an ingress rule of its own: without it, the Job's flow is dropped there.
    def without_verifier_rule(obj: dict[str, Any]) -> dict[str, Any]:
        if obj["kind"] == "NetworkPolicy" and obj["metadata"] == {**obj["metadata"], "name": "proxy"}:
            obj = json.loads(json.dumps(obj))
            obj["spec"]["ingress"] = [r for r in obj["spec"]["ingress"] if "verify" not in json.dumps(r)]
        return obj

    holed = _fate_verifier_connections([without_verifier_rule(o) for o in rendering.manifests()])
    assert not holed[("proxy", 9300)].allowed
    assert "DROPPED: no ingress rule of fate-9999/default-deny, fate-9999/proxy" in holed[("proxy", 9300)].explain()


def test_kubeflows_verification_nodes_reach_their_own_master_only() -> None:
    cluster, outputs, _ = _stack("local-kubeflow")
    for federation, nodes in (("fedavg", 3), ("fedavg-small", 2)):
        check = _verification_pods(cluster, federation)
        assert len(check) == nodes, check
        name = check[0].labels[JOBSET]
        assert outputs[federation]["verificationLog"].endswith(f"-l {JOBSET}={name} --prefix")
        own = cluster.connect(check[-1], f"{name}-node-0-0.{name}", 29500)
        assert own.allowed and str(own.flows[-1].destination) == f"{federation}/{name}-node-0-0", own.explain()
        host, _, port = outputs[federation]["masterAddress"].rpartition(":")
        assert not cluster.connect(check[-1], host, int(port)).allowed  # not the federation's own training


@pytest.mark.parametrize(
    ("stack", "output_key"), [("local-flower", "superlinkAddress"), ("local-nvflare", "serverAddress")]
)
def test_the_verification_pod_is_admitted_by_name_only_while_verification_is_on(stack: str, output_key: str) -> None:
    """The verification Job's pod reaches its coordinator (the test above); the same pod beside the same federation
    rendered with `verify: false` is refused: the admission is its own rule, nothing the federation had anyway."""
    rendering = render_stack(stack)
    (job,) = [o for o in rendering.manifests() if o["kind"] == "Job" and o["metadata"]["name"].startswith("verify-")]
    address = rendering.outputs(reveal=True)["federations"]["demo"][output_key]
    host, _, port = address.rpartition(":")
    on = netpol.Cluster.from_manifests(rendering.manifests())
    pod = on.pod(job["metadata"]["namespace"], job["metadata"]["name"] + "-0")
    assert on.connect(pod, host, int(port)).allowed

    raw = stack_files.load(stack).config
    config = {k.removeprefix("flstack:"): json.loads(v) for k, v in raw.items() if k.startswith("flstack:")}
    config["federations"] = [{**fed, "verify": False} for fed in config["federations"]]
    without = render(config).manifests()
    assert not [o for o in without if o["kind"] == "Job" and o["metadata"]["name"].startswith("verify-")]
    off = netpol.Cluster.from_manifests([*without, job])
    refused = off.connect(off.pod(job["metadata"]["namespace"], job["metadata"]["name"] + "-0"), host, int(port))
    assert not refused.allowed
    assert f"TCP/{port} DROPPED: no ingress rule of " in refused.explain(), refused.explain()
