"""The FATE component as rendered offline: settings errors, per-party objects, routing, mTLS, policies."""

from __future__ import annotations

import re
from typing import Any

import pytest
import yaml

from components import checks
from components.config import ConfigError, parse
from components.federations import fate, fate_files
from tests.helpers import MINIKUBE, render, schema_errors
from tests.netpol import Network
from tools import diff
from tools.render import Rendering


def config(*party_ids: int, **settings: Any) -> dict[str, Any]:
    parties = [{"id": i} for i in (party_ids or (9999, 10000))]
    fed = {"name": "fate", "framework": "fate", "fate": {"parties": parties, **settings}}
    return {"target": MINIKUBE, "federations": [fed]}


@pytest.fixture(scope="module")
def two() -> Rendering:
    return render(config())


def in_namespace(rendering: Rendering, ns: str) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["metadata"].get("namespace") == ns]


# --- settings -------------------------------------------------------------------------------------

BAD = [
    ({"parties": [{"id": 9999}]}, "flstack:federations[0].fate.parties: a federation needs at least 2 parties (got 1)"),
    ({"parties": []}, "flstack:federations[0].fate.parties: a federation needs at least 2 parties (got 0)"),
    (
        {"parties": [{"id": 9999}, {"id": 9999}]},
        "flstack:federations[0].fate.parties[1].id: 9999 is already parties[0].id: party ids must be unique",
    ),
    (
        {"parties": [{"id": 9999}, {"id": 0}]},
        "flstack:federations[0].fate.parties[1].id: expected an integer >= 1 and <= 2147483647, got 0",
    ),
    ({"parties": [{"id": 9999}, {"id": "guest"}]}, "flstack:federations[0].fate.parties[1].id: expected an integer"),
    (
        {"parties": [{"id": 1}, {"id": 2, "namespace": "Party_2"}]},
        "flstack:federations[0].fate.parties[1].namespace: expected a DNS-1123 label",
    ),
    (
        {"parties": [{"id": 1}, {"id": 2}], "flowResources": {"cpu": "1"}},
        "flstack:federations[0].fate.flowResources.memory: required: every container gets a memory request and limit",
    ),
    ({"parties": [{"id": 1}, {"id": 2}], "version": "2.1.0"}, "flstack:federations[0].fate.version: "),
    ({"parties": [{"id": 1}, {"id": 2}], "rabbitmqImage": "rabbitmq"}, "an image with a tag"),
    (
        {"parties": [{"id": 1}, {"id": 2}], "fateboard": {"enabled": "yes"}},
        "flstack:federations[0].fate.fateboard.enabled: expected",
    ),
    (
        {"parties": [{"id": 1}, {"id": 2}], "fateboard": {"enabled": True, "image": "federatedai/fateboard"}},
        "flstack:federations[0].fate.fateboard.image: expected an image with a tag",
    ),
    (
        {"parties": [{"id": 1}, {"id": 2}], "fateboard": {"username": "ad min"}},
        "flstack:federations[0].fate.fateboard.username: expected 1-64 letters, digits, '_', '.', '-'",
    ),
    (
        {"parties": [{"id": 1}, {"id": 2}], "fateboard": {"enabled": True, "resources": {"cpu": "1"}}},
        "flstack:federations[0].fate.fateboard.resources.memory: required: every container gets a memory request",
    ),
    ({"parties": [{"id": 1}, {"id": 2}], "fateboard": {"enable": True}}, "fate.fateboard.enable: unknown key"),
]


@pytest.mark.parametrize(("settings", "expected"), BAD, ids=[str(i) for i in range(len(BAD))])
def test_bad_settings_name_the_full_key(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"target": MINIKUBE, "federations": [{"name": "fate", "framework": "fate", "fate": settings}]})
    assert expected in str(err.value)


def test_a_party_namespace_may_not_collide_with_another_federations() -> None:
    other = {"name": "fate-10000", "framework": "flower", "flower": {}}
    with pytest.raises(ConfigError) as err:
        parse({**config(), "federations": [other, *config()["federations"]]})
    assert "flstack:federations[1].fate.parties[1]: 'fate-10000' is already used by federations[0]" in str(err.value)


def test_two_parties_in_one_namespace_is_an_error() -> None:
    fed = {
        "name": "fate",
        "framework": "fate",
        "fate": {"parties": [{"id": 1, "namespace": "x"}, {"id": 2, "namespace": "x"}]},
    }
    with pytest.raises(ConfigError) as err:
        parse({"target": MINIKUBE, "federations": [fed]})
    assert "flstack:federations[0].fate.parties[1].namespace: 'x' is already the namespace of parties[0]" in str(
        err.value
    )


def test_bad_settings_stop_the_program_before_any_resource() -> None:
    with pytest.raises(ConfigError) as err:
        render(config(9999))
    assert str(err.value).startswith("invalid stack config (1 problem):")
    assert "Traceback" not in str(err.value)


# --- what gets deployed ---------------------------------------------------------------------------


def test_each_party_is_one_component_in_its_own_namespace(two: Rendering) -> None:
    parties = [r for r in two.resources() if r["type"] == "flstack:federations:FateParty"]
    assert sorted(r["name"] for r in parties) == ["fate-10000", "fate-9999"]
    for party in (9999, 10000):
        ns = f"fate-{party}"
        kinds = {(o["kind"], o["metadata"]["name"]) for o in in_namespace(two, ns)}
        assert {
            ("StatefulSet", "fateflow"),
            ("Deployment", "rabbitmq"),
            ("Deployment", "proxy"),
            ("Service", "proxy"),
            ("Secret", "fateflow-conf"),
            ("ConfigMap", "fate-routes"),
            ("ConfigMap", "proxy-config"),
            ("Secret", "proxy-tls"),
            ("PersistentVolumeClaim", "fateflow-data"),
        } <= kinds
        namespace = two.find("Namespace", ns)
        assert namespace["metadata"]["labels"][fate.PARTY_LABEL] == str(party)


def test_every_object_is_schema_valid(two: Rendering) -> None:
    errors = [e for o in two.manifests() for e in schema_errors(o, "1.34.0")]
    assert errors == []


def test_fateflow_runs_the_upstream_image_without_pip_and_keeps_its_state(two: Rendering) -> None:
    sts = two.find("StatefulSet", "fateflow", "fate-9999")
    container = sts["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "federatedai/fateflow:2.2.0-release"
    assert "pip" not in " ".join(container["command"] + container.get("args", []))
    probes = [container[p]["httpGet"]["path"] for p in ("startupProbe", "readinessProbe", "livenessProbe")]
    assert probes == ["/v2/server/fateflow"] * 3
    assert {p["containerPort"] for p in container["ports"]} == {9380, 9360}
    claims = [v for v in sts["spec"]["template"]["spec"]["volumes"] if "persistentVolumeClaim" in v]
    assert [c["persistentVolumeClaim"]["claimName"] for c in claims] == ["fateflow-data"]
    data_mounts = {m["mountPath"] for m in container["volumeMounts"] if m["name"] == "data"}
    assert f"{fate.FLOW_DIR}/db" in data_mounts and f"{fate.FLOW_DIR}/jobs" in data_mounts
    options = {r["name"]: r["options"] for r in two.resources()}
    assert options["persistentvolumeclaim:fate-9999/fateflow-data"]["retainOnDelete"]
    assert options["namespace:fate-9999"]["retainOnDelete"]


def test_service_conf_uses_rabbitmq_federation_and_the_nginx_proxy(two: Rendering) -> None:
    secret = two.find("Secret", "fateflow-conf", "fate-10000")
    conf = yaml.safe_load(secret["stringData"]["service_conf.yaml"])
    assert conf["party_id"] == "10000"
    assert conf["default_engines"] == {"computing": "standalone", "federation": "rabbitmq", "storage": "standalone"}
    assert conf["fateflow"]["proxy_name"] == "nginx"
    assert conf["federation"]["nginx"] == {"host": "proxy", "http_port": 9300, "protocol": "http"}
    assert conf["federation"]["rabbitmq"]["password"] == "mock-fate-10000-rabbitmq"  # the generated password
    assert conf["database"]["sqlite"]["path"].startswith(fate.FLOW_DIR + "/db/")
    assert conf["storage"] == {}  # fate_flow's upload reads storage.<engine>; without the key it fails (None.get)


def test_the_rabbitmq_password_is_a_pulumi_secret_and_never_in_a_config_map(two: Rendering) -> None:
    passwords = two.of_type("random:index/randomPassword:RandomPassword")
    assert len(passwords) == 2 and all(not p["inputs"]["special"] for p in passwords)
    secrets = {r["name"]: r for r in two.resources() if r["type"] == "kubernetes:core/v1:Secret"}
    assert "[secret" in str(secrets["secret:fate-9999/fateflow-conf"]["inputs"]["stringData"])
    assert "[secret" in str(secrets["secret:fate-9999/rabbitmq-default-user"]["inputs"]["stringData"])
    config_maps = [o for o in two.manifests() if o["kind"] == "ConfigMap"]
    assert not any("mock-fate-" in str(cm["data"]) for cm in config_maps)


def test_route_tables_send_peers_through_the_own_proxy(two: Rendering) -> None:
    table = yaml.safe_load(two.find("ConfigMap", "fate-routes", "fate-9999")["data"]["rabbitmq_route_table.yaml"])
    assert table == {9999: {"host": "rabbitmq", "port": 5672}, 10000: {"host": "proxy", "port": 5701}}
    nginx = two.find("ConfigMap", "proxy-config", "fate-9999")["data"]["nginx.conf"]
    assert '"9999" http://fateflow;' in nginx
    assert '"10000" https://party_10000;' in nginx
    assert "upstream party_10000 { server proxy.fate-10000.svc.cluster.local:9443; }" in nginx
    assert re.search(r"listen 5701;\s+proxy_pass proxy\.fate-10000\.svc\.cluster\.local:5671;\s+proxy_ssl on;", nginx)
    ports = {p["port"] for p in two.find("Service", "proxy", "fate-9999")["spec"]["ports"]}
    assert ports == {9300, 9443, 5671, 5701}


def test_every_cross_party_listener_demands_a_client_certificate_from_the_federation_ca() -> None:
    nginx = fate_files.nginx_conf(fate_files.Party(1, "a"), [fate_files.Party(1, "a"), fate_files.Party(2, "b")])
    tls_servers = re.findall(r"listen (\d+) ssl;(.*?)\n    \}", nginx, re.S)
    assert {port for port, _ in tls_servers} == {"9443", "5671"}
    for _, body in tls_servers:
        assert "ssl_verify_client on;" in body and "ssl_client_certificate /etc/flstack/tls/ca.crt;" in body
    # Outgoing: every peer connection verifies the peer proxy's name against the federation CA.
    assert nginx.count("proxy_ssl_verify on;") == 2
    assert "proxy_ssl_name b.svc" not in nginx and "proxy_ssl_name proxy.b.svc.cluster.local;" in nginx


def test_proxy_certificates_serve_and_identify_their_party(two: Rendering) -> None:
    certs = {r["name"]: r["inputs"] for r in two.of_type("tls:index/locallySignedCert:LocallySignedCert")}
    assert set(certs) == {"fate-9999-proxy-cert", "fate-10000-proxy-cert"}
    for cert in certs.values():
        assert {"server_auth", "client_auth"} <= set(cert["allowedUses"])
    requests = {r["name"]: r["inputs"] for r in two.of_type("tls:index/certRequest:CertRequest")}
    assert "proxy.fate-9999.svc.cluster.local" in requests["fate-9999-proxy-csr"]["dnsNames"]
    assert len(two.of_type("tls:index/selfSignedCert:SelfSignedCert")) == 1  # one federation CA


def test_every_container_is_non_root_with_requests_and_a_memory_limit(two: Rendering) -> None:
    workloads = [o for o in two.manifests() if o["kind"] in ("Deployment", "StatefulSet")]
    assert len(workloads) == 6
    for workload in workloads:
        pod = workload["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            assert container["securityContext"]["allowPrivilegeEscalation"] is False
            assert container["securityContext"]["readOnlyRootFilesystem"] is True
            assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
            assert ":" in container["image"]


def test_namespaces_deny_by_default_and_only_proxies_cross_parties(two: Rendering) -> None:
    policies = {
        o["metadata"]["name"]: o["spec"] for o in in_namespace(two, "fate-9999") if o["kind"] == "NetworkPolicy"
    }
    assert set(policies) == {"default-deny", "allow-dns", "fateflow", "rabbitmq", "proxy", "verify"}
    assert policies["default-deny"]["policyTypes"] == ["Ingress", "Egress"]
    for name in ("fateflow", "rabbitmq", "verify"):
        for rule in policies[name]["ingress"] + policies[name]["egress"]:
            for peer in rule.get("from", []) + rule.get("to", []):
                assert "namespaceSelector" not in peer and "ipBlock" not in peer  # own namespace only
    cross = [
        peer
        for rule in policies["proxy"]["ingress"] + policies["proxy"]["egress"]
        for peer in rule.get("from", []) + rule.get("to", [])
        if "namespaceSelector" in peer
    ]
    assert len(cross) == 2
    for peer in cross:
        assert peer["namespaceSelector"]["matchLabels"] == {fate.FEDERATION_LABEL: "fate"}
        assert peer["namespaceSelector"]["matchExpressions"][0]["values"] == ["9999"]  # not itself


def test_a_second_render_is_identical() -> None:
    assert render(config()).resources() == render(config()).resources()


def test_adding_a_party_adds_its_objects_and_changes_only_routes_elsewhere() -> None:
    before = render(config(9999, 10000)).resources()
    after = render(config(9999, 10000, 10001)).resources()
    changes = diff.compare(before, after)
    assert not changes.removed
    assert changes.added and all("10001" in name for _, name in changes.added)
    changed = {name: paths for (_, name), paths in changes.changed.items()}
    route_objects = {
        f"{kind}:fate-{party}/{obj}"
        for party in (9999, 10000)
        for kind, obj in (("configmap", "fate-routes"), ("configmap", "proxy-config"), ("service", "proxy"))
    }
    rolled = {
        f"{kind}:fate-{party}/{obj}"
        for party in (9999, 10000)
        for kind, obj in (("deployment", "proxy"), ("statefulset", "fateflow"))
    }
    route_objects |= rolled
    # The verification Job is named after what it verifies: a new federation, a new Job (re-verified on `up`).
    verification = changed.pop("job:fate-9999/fate-toy")
    assert verification == ["inputs.metadata.name", "inputs.spec.template.spec.containers[0].args", "options.dependsOn"]
    assert set(changed) == route_objects
    for party in (9999, 10000):
        assert changed[f"configmap:fate-{party}/fate-routes"] == ["inputs.data.rabbitmq_route_table.yaml"]
        assert changed[f"configmap:fate-{party}/proxy-config"] == ["inputs.data.nginx.conf"]
        assert changed[f"service:fate-{party}/proxy"] == ["inputs.spec.ports"]
    # The proxy and fate_flow roll to pick up their new routes (subPath mounts never see ConfigMap updates);
    # nothing else about them changes.
    for name in rolled:
        assert changed[name] == [f"inputs.spec.template.metadata.annotations.{fate.CONFIG_HASH_ANNOTATION}"]


# --- FATEBoard (optional) --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def boards() -> Rendering:
    return render(config(fateboard={"enabled": True, "resources": {"cpu": "200m", "memory": "768Mi"}}))


def test_fateboard_is_off_by_default(two: Rendering) -> None:
    assert not [o for o in two.manifests() if "fateboard" in o["metadata"]["name"]]
    assert not [r for r in two.of_type("random:index/randomPassword:RandomPassword") if "fateboard" in r["name"]]
    assert "fateboard" not in two.outputs()["federations"]["fate"]["parties"]["9999"]


def test_fateboard_on_gives_each_party_a_schema_valid_board_of_the_upstream_image(boards: Rendering) -> None:
    for party in (9999, 10000):
        ns = f"fate-{party}"
        board = {(o["kind"], o["metadata"]["name"]) for o in in_namespace(boards, ns) if "fateboard" in str(o)}
        assert {
            ("Deployment", "fateboard"),
            ("Service", "fateboard"),
            ("Secret", "fateboard-config"),
            ("NetworkPolicy", "fateboard"),
        } <= board
        service = boards.find("Service", "fateboard", ns)["spec"]
        assert service.get("type", "ClusterIP") == "ClusterIP" and [p["port"] for p in service["ports"]] == [8080]
        pod = boards.find("Deployment", "fateboard", ns)["spec"]["template"]["spec"]
        (container,) = pod["containers"]
        assert container["image"] == "federatedai/fateboard:2.1.1-release"
        assert container["resources"] == {"requests": {"cpu": "200m", "memory": "768Mi"}, "limits": {"memory": "768Mi"}}
        assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts[f"{fate.BOARD_HOME}/conf/application.properties"] == "config"
        assert {v["name"]: v.get("secret", {}).get("secretName") for v in pod["volumes"]}["config"] == (
            "fateboard-config"
        )
    errors = [e for o in boards.manifests() for e in schema_errors(o, "1.34.0")]
    assert errors == []


def test_fateboard_talks_to_its_own_fateflow_with_a_generated_password_kept_secret(boards: Rendering) -> None:
    secret = boards.find("Secret", "fateboard-config", "fate-10000")
    properties = dict(
        line.split("=", 1) for line in secret["stringData"]["application.properties"].splitlines() if line
    )
    assert properties["server.port"] == "8080"
    assert properties["fateflow.url"] == "http://fateflow:9380"  # the party's own fate_flow Service
    assert properties["server.board.login.username"] == "admin"
    assert properties["server.board.login.password"] == "mock-fate-10000-fateboard"  # generated, not admin
    resources = {r["name"]: r for r in boards.resources()}
    assert "[secret" in str(resources["secret:fate-10000/fateboard-config"]["inputs"]["stringData"])
    outputs = boards.outputs()["federations"]["fate"]["parties"]["10000"]["fateboard"]
    assert outputs["portForward"] == "kubectl -n fate-10000 port-forward svc/fateboard 8080:8080"
    assert "mock-fate-10000-fateboard" not in str(
        boards.outputs(reveal=True)
    )  # outputs say how to read the password, not the password
    assert outputs["password"].startswith("kubectl -n fate-10000 get secret fateboard-config ")
    assert "server.board.login.password" in outputs["password"]
    elsewhere = [o for o in boards.manifests() if o["kind"] != "Secret" and "mock-fate-10000-fateboard" in str(o)]
    assert elsewhere == []  # never in a ConfigMap, a pod spec or an annotation


def open_egress(ns: str) -> dict[str, Any]:
    """A user's pod allowed to dial anything: what is left to refuse it is the destination's ingress."""
    return {
        "apiVersion": "networking.k8s.io/v1",
        "kind": "NetworkPolicy",
        "metadata": {"name": "notebook", "namespace": ns},
        "spec": {"podSelector": {"matchLabels": {"app": "notebook"}}, "policyTypes": ["Egress"], "egress": [{}]},
    }


def test_fateboard_admits_its_namespace_and_reaches_only_its_fateflow_http(boards: Rendering) -> None:
    net = Network([*boards.manifests(), open_egress("fate-9999"), open_egress("fate-10000")])

    def pod(kind: str, name: str, ns: str) -> tuple[str, dict[str, str]]:
        return ns, boards.find(kind, name, ns)["spec"]["template"]["metadata"]["labels"]

    board, flow = pod("Deployment", "fateboard", "fate-9999"), pod("StatefulSet", "fateflow", "fate-9999")
    rabbitmq, proxy = pod("Deployment", "rabbitmq", "fate-9999"), pod("Deployment", "proxy", "fate-9999")
    other_board, other_flow = pod("Deployment", "fateboard", "fate-10000"), pod("StatefulSet", "fateflow", "fate-10000")
    # Egress: its own fate_flow's HTTP API, nothing else (DNS comes from the namespace baseline).
    assert net.connects(board, flow, 9380)
    assert not net.connects(board, flow, 9360)
    for target in (rabbitmq, proxy, other_flow, other_board):
        for port in (9380, 5672, 15672, 9300, 9443, 8080):
            assert not net.connects(board, target, port)
    assert not net.reaches_address(board, "93.184.216.34", 443)
    # Ingress: port 8080 from its own namespace only.
    assert net.connects(("fate-9999", {"app": "notebook"}), board, 8080)
    assert not net.connects(("fate-9999", {"app": "notebook"}), board, 9380)
    assert not net.connects(("fate-10000", {"app": "notebook"}), board, 8080)
    assert not net.connects(("fate-10000", {"app": "notebook"}), other_board, 9380)
    assert net.connects(("fate-10000", {"app": "notebook"}), other_board, 8080)


# --- verification: the toy example between the parties ----------------------------------------------


def verification_job(rendering: Rendering, ns: str = "fate-9999") -> dict[str, Any]:
    (job,) = [o for o in rendering.manifests() if o["kind"] == "Job"]
    assert job["metadata"]["namespace"] == ns  # the initiating party's namespace
    return job


def test_the_verification_job_runs_the_toy_check_from_the_first_party_against_every_party(two: Rendering) -> None:
    job = verification_job(two)
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["image"] == "federatedai/fateflow:2.2.0-release"
    assert [*container["command"], *container["args"]] == [
        "python",
        "/etc/flstack/verify/fate_toy.py",
        "--flow",
        "http://fateflow:9380",
        "--proxy",
        "http://proxy:9300",
        "--guest",
        "9999=fate-9999",
        "--host",
        "10000=fate-10000",
    ]
    (volume,) = pod["volumes"]
    script = two.find("ConfigMap", volume["configMap"]["name"], "fate-9999")["data"]["fate_toy.py"]
    assert script == checks.script("fate_toy")
    assert pod["securityContext"]["runAsNonRoot"] is True and pod["automountServiceAccountToken"] is False
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["resources"]["requests"]["cpu"] and container["resources"]["limits"]["memory"]
    assert schema_errors(job, "1.34.0") == []
    outputs = two.outputs()["federations"]["fate"]
    assert outputs["verificationLog"] == f"kubectl -n fate-9999 logs job/{job['metadata']['name']}"


def test_three_parties_verify_the_toy_between_the_first_and_each_other_party() -> None:
    job = verification_job(render(config(9999, 10000, 10001)))
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--guest") :] == [
        "--guest",
        "9999=fate-9999",
        "--host",
        "10000=fate-10000",
        "--host",
        "10001=fate-10001",
    ]


def test_the_verification_job_is_awaited_after_every_partys_workloads(two: Rendering) -> None:
    (job,) = [row for row in two.resources() if row["name"].startswith("job:")]
    depends = {link.rpartition("::")[2] for link in job["options"]["dependsOn"]}
    for party in (9999, 10000):
        for workload in (
            f"statefulset:fate-{party}/fateflow",
            f"deployment:fate-{party}/rabbitmq",
            f"deployment:fate-{party}/proxy",
        ):
            assert workload in depends, workload


def test_the_verification_job_name_is_stable_and_follows_the_federation(two: Rendering) -> None:
    name = verification_job(two)["metadata"]["name"]
    assert verification_job(render(config()))["metadata"]["name"] == name
    assert verification_job(render(config(cores=16)))["metadata"]["name"] != name
    assert verification_job(render(config(9999, 10001)))["metadata"]["name"] != name


def test_the_policies_admit_the_verification_job_to_its_fate_flow_and_proxy_only(two: Rendering) -> None:
    net = Network([*two.manifests(), open_egress("fate-9999")])

    def pod(kind: str, name: str, ns: str) -> tuple[str, dict[str, str]]:
        return ns, two.find(kind, name, ns)["spec"]["template"]["metadata"]["labels"]

    verifier = ("fate-9999", verification_job(two)["spec"]["template"]["metadata"]["labels"])
    flow, proxy = pod("StatefulSet", "fateflow", "fate-9999"), pod("Deployment", "proxy", "fate-9999")
    assert net.connects(verifier, flow, 9380)
    assert net.connects(verifier, proxy, 9300)
    for target, port in [(flow, 9360), (proxy, 9443), (pod("Deployment", "rabbitmq", "fate-9999"), 5672)]:
        assert not net.connects(verifier, target, port)
    for name, kind in (("fateflow", "StatefulSet"), ("proxy", "Deployment"), ("rabbitmq", "Deployment")):
        for port in (9380, 9300, 9443, 5671, 5672):
            assert not net.connects(verifier, pod(kind, name, "fate-10000"), port)
    assert not net.reaches_address(verifier, "93.184.216.34", 443)
    # The proxy's plain port admits the Job, not any pod of the namespace.
    assert not net.connects(("fate-9999", {"app": "notebook"}), proxy, 9300)
