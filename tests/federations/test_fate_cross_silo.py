"""Cross-silo FATE as rendered offline: one stack per party, joined by StackReferences (stacks fate-silo-a/-b)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pulumi
import pytest
import yaml

from components.config import ConfigError, parse
from components.federations import fate_files, fate_peers
from tests.e2e.real_tls import mocks_with_real_tls
from tests.federations.silos import FATE_SILOS, NOT_DEPLOYED, REFERENCES, everything, private_keys, render_silo
from tests.helpers import EXISTING, MINIKUBE, schema_errors
from tests.tools.test_render import run_cli
from tools.render import Rendering
from tools.stack_files import ROOT

A, B = FATE_SILOS
PEER = {"partyId": 10000, "stack": "org/flstack/b", "cidrs": ["198.51.100.0/24"]}
EXPOSED = {"type": "LoadBalancer", "hostnames": ["fate-9999.example.org"], "sourceRanges": ["198.51.100.0/24"]}


@pytest.fixture(scope="module")
def first_a() -> Rendering:
    """Stack A's first `up`: B has deployed nothing yet."""
    return render_silo(A, {B: NOT_DEPLOYED})


@pytest.fixture(scope="module")
def b(first_a: Rendering) -> Rendering:
    return render_silo(B, {A: first_a.stack_outputs()})


@pytest.fixture(scope="module")
def a(b: Rendering) -> Rendering:
    """Stack A's second `up`, after B's."""
    return render_silo(A, {B: b.stack_outputs()})


def nginx(rendering: Rendering, ns: str) -> str:
    conf: str = rendering.find("ConfigMap", "proxy-config", ns)["data"]["nginx.conf"]
    return conf


def fed(*parties: dict[str, Any], target: dict[str, Any] = EXISTING, **settings: Any) -> dict[str, Any]:
    fate = {"parties": list(parties) or [{"id": 9999, "exposure": EXPOSED}], **settings}
    return {"target": target, "federations": [{"name": "fate", "framework": "fate", "fate": fate}]}


# --- settings -------------------------------------------------------------------------------------

KEY = "flstack:federations[0].fate."
BAD = [
    (fed(peers=[{**PEER, "partyId": 9999}]), KEY + "peers[0].partyId: 9999 is parties[0].id, deployed by this stack"),
    (fed(peers=[PEER, {**PEER, "stack": "org/flstack/c"}]), KEY + "peers[1].partyId: 10000 is already peers[0]"),
    (
        fed(peers=[{**PEER, "stack": "b"}]),
        KEY + "peers[0].stack: expected a fully qualified stack name ORG/PROJECT/STACK",
    ),
    (fed(peers=[{**PEER, "cidrs": []}]), KEY + "peers[0].cidrs: required"),
    (fed(peers=[{**PEER, "cidrs": ["0.0.0.0/0"]}]), KEY + "peers[0].cidrs[0]: '0.0.0.0/0' means every address"),
    (fed({"id": 9999}, peers=[PEER]), KEY + "parties[0].exposure.type: 'LoadBalancer' required with peers"),
    (
        fed({"id": 9999, "exposure": {**EXPOSED, "hostnames": []}}, peers=[PEER]),
        KEY + "parties[0].exposure.hostnames: required with peers",
    ),
    (
        fed({"id": 9999, "exposure": {**EXPOSED, "sourceRanges": ["192.0.2.0/24"]}}, peers=[PEER]),
        KEY + "parties[0].exposure.sourceRanges: does not admit peers[0].cidrs[0] (198.51.100.0/24)",
    ),
    (
        fed({"id": 9999, "exposure": {**EXPOSED, "hostnames": ["198.51.100.10"]}}, peers=[PEER]),
        KEY + "parties[0].exposure.hostnames[0]: '198.51.100.10' is an IP address",
    ),
    (fed({"id": 9999, "exposure": EXPOSED}, {"id": 9998}), KEY + "parties[0].exposure.type: only used with peers"),
    (
        {**fed(peers=[PEER]), "federations": [{**fed(peers=[PEER])["federations"][0], "verify": True}]},
        "flstack:federations[0].verify: not with fate.peers yet",
    ),
    (fed(parties=[], peers=[PEER]), KEY + "parties: a stack with peers deploys at least one party of its own"),
    (
        fed(target=MINIKUBE, peers=[PEER]),
        KEY + "parties[0].exposure.type: 'LoadBalancer' on minikube",
    ),
]


@pytest.mark.parametrize(("config", "expected"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_cross_silo_settings_name_the_full_key(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(config)
    assert expected in str(err.value)


def test_one_party_with_a_peer_is_a_federation() -> None:
    parse(fed(peers=[PEER]))


# --- the worked pair --------------------------------------------------------------------------------


def test_each_stack_deploys_only_its_own_party(a: Rendering, b: Rendering) -> None:
    for rendering, mine, other in ((a, 9999, 10000), (b, 10000, 9999)):
        namespaces = {o["metadata"]["name"] for o in rendering.manifests() if o["kind"] == "Namespace"}
        assert f"fate-{mine}" in namespaces and f"fate-{other}" not in namespaces
        assert list(rendering.outputs()["federations"]["fate"]["parties"]) == [str(mine)]


def test_a_stack_exports_its_exchange_and_ca_certificate_and_nothing_secret(b: Rendering) -> None:
    exported = b.outputs()["federations"]["fate"]
    assert exported["parties"]["10000"]["exchange"] == {
        "host": "fate-10000.silo-b.example.net",
        "port": fate_files.PROXY_TLS_PORT,
        "amqpsPort": fate_files.PROXY_AMQPS_PORT,
    }
    assert exported["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")
    assert "[secret]" not in str(exported)


def test_a_first_up_before_the_peer_has_no_route_to_it_and_says_so(first_a: Rendering) -> None:
    conf = nginx(first_a, "fate-9999")
    assert "# Not deployed yet (no route until the next update): 10000." in conf
    assert "party_10000" not in conf and "listen 5701;" not in conf
    # The broker's route already names the peer's link port: it starts working when the proxy learns the route.
    routes = yaml.safe_load(first_a.find("ConfigMap", "fate-routes", "fate-9999")["data"]["rabbitmq_route_table.yaml"])
    assert routes[10000] == {"host": "proxy", "port": fate_files.peer_amqp_port(1)}


def test_each_proxy_routes_to_the_peers_exported_exchange_over_mtls(a: Rendering, b: Rendering) -> None:
    for rendering, mine, peer, host in (
        (a, 9999, 10000, "fate-10000.silo-b.example.net"),
        (b, 10000, 9999, "fate-9999.silo-a.example.org"),
    ):
        conf = nginx(rendering, f"fate-{mine}")
        assert f"upstream party_{peer} {{ server {host}:{fate_files.PROXY_TLS_PORT}; }}" in conf
        assert f'"{peer}" {host};' in conf  # the name the peer's certificate is checked against
        link = re.search(r"listen 5701;\n\s+proxy_pass (\S+);\n\s+proxy_ssl on;\n\s+proxy_ssl_name (\S+);", conf)
        assert link and link.groups() == (f"{host}:{fate_files.PROXY_AMQPS_PORT}", host)
        assert "Not deployed yet" not in conf


def test_each_proxy_trusts_its_own_ca_and_the_peers_and_serves_its_public_name() -> None:
    states: dict[str, dict[str, Any]] = {A: {}, B: {}}
    first_a = render_silo(A, {B: NOT_DEPLOYED}, mocks_with_real_tls(states[A]))
    b = render_silo(B, {A: first_a.stack_outputs()}, mocks_with_real_tls(states[B]))
    a = render_silo(A, {B: b.stack_outputs()}, mocks_with_real_tls(states[A]))
    ca = {s: r.outputs(reveal=True)["federations"]["fate"]["caCertificate"] for s, r in ((A, a), (B, b))}
    assert ca[A] != ca[B]
    for rendering, ns, own, peer in ((a, "fate-9999", A, B), (b, "fate-10000", B, A)):
        tls = rendering.find("Secret", "proxy-tls", ns)["stringData"]
        assert tls["ca.crt"] == ca[own] + ca[peer]  # own CA first, then the peer's: nothing else is trusted
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(a.find("Secret", "proxy-tls", "fate-9999")["stringData"]["tls.crt"].encode())
    names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.DNSName)
    assert "fate-9999.silo-a.example.org" in names


def test_no_private_key_leaves_the_stack_that_owns_it() -> None:
    """Real keys (pulumi-tls emulated): none of A's appears anywhere in B's render, and none of B's in A's."""
    first_a = render_silo(A, {B: NOT_DEPLOYED}, mocks_with_real_tls())
    b = render_silo(B, {A: first_a.stack_outputs()}, mocks_with_real_tls())
    a = render_silo(A, {B: b.stack_outputs()}, mocks_with_real_tls())
    for mine, other in ((a, b), (b, a)):
        keys = private_keys(mine)
        assert len(keys) == 2  # the CA's and the proxy's
        assert all(key in everything(mine) for key in keys)  # the check finds a key where it is
        assert not [key for key in keys if key in everything(other)]
    # And what one stack reads of the other holds no private key at all.
    assert "PRIVATE KEY" not in str(a.outputs(reveal=True)) + str(b.outputs(reveal=True))


def test_the_exchange_is_a_load_balancer_for_the_listed_peers_only(a: Rendering, b: Rendering) -> None:
    for rendering, ns, ranges in ((a, "fate-9999", ["198.51.100.0/24"]), (b, "fate-10000", ["203.0.113.16/28"])):
        service = rendering.find("Service", fate_files.EXCHANGE, ns)["spec"]
        assert service["type"] == "LoadBalancer" and service["loadBalancerSourceRanges"] == ranges
        assert service["externalTrafficPolicy"] == "Local"  # peers' addresses reach the NetworkPolicy
        assert sorted(p["port"] for p in service["ports"]) == [fate_files.PROXY_AMQPS_PORT, fate_files.PROXY_TLS_PORT]
        assert rendering.find("Service", fate_files.PROXY, ns)["spec"].get("type", "ClusterIP") == "ClusterIP"


def test_the_proxy_admits_and_dials_only_the_peers_cidrs(b: Rendering) -> None:
    spec = b.find("NetworkPolicy", "proxy", "fate-10000")["spec"]
    blocks_in = [r for r in spec["ingress"] if any("ipBlock" in f for f in r["from"])]
    blocks_out = [r for r in spec["egress"] if any("ipBlock" in t for t in r["to"])]
    tls_ports = [{"protocol": "TCP", "port": p} for p in (fate_files.PROXY_TLS_PORT, fate_files.PROXY_AMQPS_PORT)]
    assert blocks_in == [{"from": [{"ipBlock": {"cidr": "203.0.113.16/28"}}], "ports": tls_ports}]
    assert blocks_out == [{"to": [{"ipBlock": {"cidr": "203.0.113.32/28"}}], "ports": sorted(tls_ports, key=str)}]


def test_both_stacks_render_schema_valid_and_identical_twice(a: Rendering, b: Rendering) -> None:
    for rendering, version in ((a, "1.35.0"), (b, "1.33.0")):
        errors = [e for o in rendering.manifests() for e in schema_errors(o, version)]
        assert not errors, errors
    assert render_silo(B, {A: render_silo(A, {B: NOT_DEPLOYED}).stack_outputs()}).manifests() == b.manifests()


def test_a_party_id_both_stacks_deploy_is_refused_by_the_render_cli(b: Rendering, tmp_path: Path) -> None:
    """B's outputs claim party 9999 too: A's render (its own process, as a user runs it) stops, naming the key."""
    outputs = b.outputs(reveal=True)
    fate = outputs["federations"]["fate"]
    clash = {**outputs, "federations": {"fate": {**fate, "parties": {**fate["parties"], "9999": {}}}}}
    saved = tmp_path / "b.json"  # as `pulumi stack output --json --show-secrets` saves it
    saved.write_text(json.dumps(clash))
    done = run_cli(A, "--out", str(tmp_path / "a"), "--stack-outputs", f"{REFERENCES[B]}={saved}")
    assert done.returncode == 1
    assert (
        "flstack:federations[0].fate.peers[0].stack: stack fl-consortium/flstack/fate-silo-b also deploys party "
        "9999, which this stack deploys: each party id belongs to exactly one stack"
    ) in done.stderr
    assert "Traceback" not in done.stderr


def peer_outputs(b: Rendering, **party: Any) -> list[Any]:
    fate = b.outputs(reveal=True)["federations"]["fate"]
    return [{**fate, "parties": {"10000": {**fate["parties"]["10000"], **party}}}]


def test_a_peer_that_does_not_expose_its_party_is_a_clear_error(b: Rendering) -> None:
    config = parse(fed(peers=[{**PEER, "stack": REFERENCES[B]}])).federations[0].settings
    with pytest.raises(pulumi.RunError) as failure:
        fate_peers._remotes("fate", config.peers, [9999], peer_outputs(b, exchange=None))
    assert str(failure.value) == (
        "flstack:federations[0].fate.peers[0].stack: stack fl-consortium/flstack/fate-silo-b, output "
        "federations.fate.parties.10000.exchange is missing: that stack must expose the party "
        "(fate.parties[].exposure with type LoadBalancer and hostnames) and list this stack's party as a peer"
    )
    assert fate_peers._remotes("fate", config.peers, [9999], peer_outputs(b))[0].party.control == (
        "fate-10000.silo-b.example.net:9443"
    )


def test_each_shipped_stack_references_the_other_by_the_name_the_tests_give_it() -> None:
    for stack, other in ((A, B), (B, A)):
        config = yaml.safe_load((ROOT / "stacks" / f"Pulumi.{stack}.yaml").read_text())["config"]
        assert [p["stack"] for p in config["flstack:federations"][0]["fate"]["peers"]] == [REFERENCES[other]]
