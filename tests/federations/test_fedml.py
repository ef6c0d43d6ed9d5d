"""The FedML component's rendered objects: crossSilo (config files, ranks, start order, isolation) and agents."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import yaml

from components.config import ConfigError
from tests.helpers import EXISTING, MINIKUBE, render, schema_errors
from tests.netpol import Network
from tools import netpol
from tools.render import Rendering

IMAGE = "registry.example/fedml-app:1.0"
COMMAND = ["python3", "/app/fl_node.py"]
ACCOUNT = "acct-1606-very-secret"


def cross_silo(**settings: Any) -> dict[str, Any]:
    """A crossSilo federation; a setting given as None is left out."""
    fedml = {k: v for k, v in {"image": IMAGE, "command": COMMAND, **settings}.items() if v is not None}
    return {"target": MINIKUBE, "federations": [{"name": "fl", "framework": "fedml", "fedml": fedml}]}


def agents(**settings: Any) -> dict[str, Any]:
    block = {"accountId": ACCOUNT, "image": "fedml/fedml-edge-client-server:0.8.6", **settings}
    fed = {"name": "fl", "framework": "fedml", "fedml": {"mode": "agents", "agents": block}}
    return {"target": MINIKUBE, "federations": [fed]}


def render_agents(**settings: Any) -> Rendering:
    return render(agents(**settings), secret_keys={"flstack:federations"})


def pod_spec(rendering: Rendering, kind: str, name: str) -> dict[str, Any]:
    return dict(rendering.find(kind, name, "fl")["spec"]["template"]["spec"])


def container(rendering: Rendering, kind: str, name: str) -> dict[str, Any]:
    return dict(pod_spec(rendering, kind, name)["containers"][0])


def workloads(rendering: Rendering) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["kind"] in ("Deployment", "StatefulSet")]


PREFIX = "flstack:federations[0].fedml"
BAD = [
    ({"clients": 0}, f"{PREFIX}.clients: expected an integer >= 1 and <= 10000, got 0"),
    ({"round": 3}, f"{PREFIX}.round: unknown key; did you mean 'rounds'?"),
    ({"trainArgs": {"comm_round": 9}}, f"{PREFIX}.trainArgs.comm_round: is set by flstack: it comes from `rounds`"),
    ({"dataArgs": {"backend": "MPI"}}, f"{PREFIX}.dataArgs.backend: is set by flstack: it is GRPC"),
    ({"modelArgs": {"using_mlops": True}}, f"{PREFIX}.modelArgs.using_mlops: is set by flstack: it is false"),
    ({"trainArgs": {"lr": [1]}}, f"{PREFIX}.trainArgs.lr: expected a string, number or boolean"),
    ({"trainArgs": {"learning-rate": 1}}, f"{PREFIX}.trainArgs.learning-rate: expected a Python identifier"),
    (
        {"exposure": {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}},
        f"{PREFIX}.exposure.type: 'LoadBalancer' refused: FedML 0.9.6 gRPC has no TLS or authentication and "
        "unpickles every message",
    ),
    ({"exposure": {"type": "NodePort"}}, f"{PREFIX}.exposure.type: 'NodePort' refused"),
    ({"image": "fedml/app:latest"}, f"{PREFIX}.image: tag 'latest' moves under a running deployment"),
    ({"image": "fedml/app"}, f"{PREFIX}.image: expected an image with a tag or an @sha256: digest"),
    ({"image": None}, f"{PREFIX}.image: required with mode 'crossSilo'"),
    ({"command": []}, f"{PREFIX}.command: required with mode 'crossSilo'"),
    ({"mode": "crossDevice"}, f"{PREFIX}.mode: expected one of 'crossSilo', 'agents', got 'crossDevice'"),
    ({"mode": "agents", "image": None, "command": None}, f"{PREFIX}.agents: required with mode 'agents'"),
    ({"agents": {"accountId": "x", "image": "a/b:1"}}, f"{PREFIX}.agents: only used with mode 'agents'"),
    ({"sharedData": {}}, f"{PREFIX}.sharedData: needs ReadWriteMany storage: set flstack:storage.shared.kind"),
]


@pytest.mark.parametrize(("settings", "expected"), BAD)
def test_bad_fedml_settings_are_one_clear_keyed_error(settings: dict[str, Any], expected: str) -> None:
    config = cross_silo(**settings)
    if settings.get("exposure", {}).get("type") == "LoadBalancer":
        config["target"] = EXISTING  # minikube refuses LoadBalancers itself: FedML's own refusal is the one here
    with pytest.raises(ConfigError) as err:
        render(config, secret_keys={"flstack:federations"})  # (an accountId must be a secret)
    assert expected in str(err.value)
    assert str(err.value).startswith("invalid stack config (1 problem)")


def test_bad_agent_settings_are_keyed_errors() -> None:
    with pytest.raises(ConfigError) as err:
        render(agents())  # the account id given as plain text
    assert f"{PREFIX}.agents.accountId: must be a Pulumi secret, not plain text" in str(err.value)
    with pytest.raises(ConfigError) as err:
        render_agents(image="fedml/fedml-edge-client-server:release")
    assert f"{PREFIX}.agents.image: tag 'release' moves under a running deployment" in str(err.value)
    with pytest.raises(ConfigError) as err:
        render(cross_silo(mode="agents"))
    assert f"{PREFIX}.image: only used with mode 'crossSilo' (mode is 'agents')" in str(err.value)


def test_agents_refuse_verification_and_do_not_get_it_by_default() -> None:
    config = agents()
    config["federations"][0]["verify"] = True
    with pytest.raises(ConfigError) as err:
        render(config, secret_keys={"flstack:federations"})
    assert "flstack:federations[0].verify: not with mode 'agents'" in str(err.value)
    # Unset on minikube (where verification is on by default) it is simply off: no Job, no log output.
    rendering = render_agents()
    assert not [o for o in rendering.manifests() if o["kind"] == "Job"]
    assert "verificationLog" not in rendering.outputs()["federations"]["fl"]


@pytest.mark.parametrize(
    "config",
    [
        cross_silo(),
        cross_silo(clients=5, sharedData={"mountPath": "/silo"}, image=IMAGE.split(":")[0] + "@sha256:" + "a" * 64),
    ],
)
def test_cross_silo_manifests_are_schema_valid(config: dict[str, Any]) -> None:
    if "sharedData" in config["federations"][0]["fedml"]:
        config = {**config, "storage": {"shared": {"kind": "nfs"}}}
    rendering = render(config)
    assert [e for obj in rendering.manifests() for e in schema_errors(obj, "1.34.0")] == []


def test_agent_manifests_are_schema_valid() -> None:
    rendering = render_agents(servers=1, clients=3)
    assert [e for obj in rendering.manifests() for e in schema_errors(obj, "1.34.0")] == []


def test_resource_count_does_not_grow_with_clients() -> None:
    small, large = render(cross_silo(clients=2)), render(cross_silo(clients=500))
    assert small.counts() == large.counts()
    assert large.find("StatefulSet", "fedml-clients", "fl")["spec"]["replicas"] == 500
    rows = large.find("ConfigMap", "fedml-config", "fl")["data"]["grpc_ipconfig.csv"].splitlines()
    assert len(rows) == 1 + 501  # header, server, 500 clients


def test_fedml_config_is_cross_silo_grpc_without_the_hosted_platform_and_merges_user_args() -> None:
    rendering = render(
        cross_silo(
            rounds=7,
            clients=3,
            trainArgs={"learning_rate": 0.05, "federated_optimizer": "FedProx"},
            modelArgs={"model": "lr"},
            dataArgs={"dataset": "synthetic"},
        )
    )
    data = rendering.find("ConfigMap", "fedml-config", "fl")["data"]
    config = yaml.safe_load(data["fedml_config.yaml"])
    assert config["common_args"] == {"training_type": "cross_silo", "scenario": "horizontal", "using_mlops": False}
    assert config["comm_args"] == {"backend": "GRPC", "grpc_ipconfig_path": "/etc/fedml/grpc_ipconfig.csv"}
    train = config["train_args"]
    assert (train["comm_round"], train["client_num_in_total"], train["client_num_per_round"]) == (7, 3, 3)
    assert (train["learning_rate"], train["federated_optimizer"]) == (0.05, "FedProx")  # user's choice kept
    assert config["device_args"]["worker_num"] == 3
    assert config["model_args"] == {"model": "lr"} and config["data_args"] == {"dataset": "synthetic"}
    assert config["tracking_args"]["enable_wandb"] is False
    # The mounted files are where the config and the pods' args say.
    server = container(rendering, "Deployment", "fedml-server")
    assert {"name": "config", "mountPath": "/etc/fedml", "readOnly": True} in server["volumeMounts"]
    assert server["args"][:2] == ["--cf", "/etc/fedml/fedml_config.yaml"]


def test_ip_config_names_every_rank_by_the_dns_name_its_pod_really_gets() -> None:
    rendering = render(cross_silo(clients=3))
    text = rendering.find("ConfigMap", "fedml-config", "fl")["data"]["grpc_ipconfig.csv"]
    rows = list(csv.DictReader(io.StringIO(text)))
    assert list(rows[0]) == ["eid", "rank", "grpc_server_ip", "grpc_server_port", "ingress_ip"]
    assert [(r["eid"], r["rank"]) for r in rows] == [(str(i), str(i)) for i in range(4)]
    assert {(r["grpc_server_ip"], r["grpc_server_port"]) for r in rows} == {("0.0.0.0", "8890")}
    # Rank 0: the server's Service, which selects the server Deployment's pods on the gRPC port.
    service = rendering.find("Service", "fedml-server", "fl")
    server_pods = rendering.find("Deployment", "fedml-server", "fl")["spec"]["template"]["metadata"]["labels"]
    assert rows[0]["ingress_ip"] == "fedml-server.fl.svc.cluster.local"
    assert service["spec"]["type"] == "ClusterIP"
    assert kube_selects(service["spec"]["selector"], server_pods)
    assert service["spec"]["ports"][0]["port"] == 8890
    # Ranks 1..N: pod <sts>-<rank> of the StatefulSet (ordinals from 1) under its headless governing Service.
    sts = rendering.find("StatefulSet", "fedml-clients", "fl")
    headless = rendering.find("Service", sts["spec"]["serviceName"], "fl")["spec"]
    assert headless["clusterIP"] == "None" and headless["publishNotReadyAddresses"] is True
    assert kube_selects(headless["selector"], sts["spec"]["template"]["metadata"]["labels"])
    assert sts["spec"]["ordinals"] == {"start": 1}
    for r in rows[1:]:
        assert r["ingress_ip"] == f"fedml-clients-{r['rank']}.fedml-clients.fl.svc.cluster.local"
    env = {e["name"]: e for e in container(rendering, "StatefulSet", "fedml-clients")["env"]}
    assert env["FEDML_RANK"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    args = container(rendering, "StatefulSet", "fedml-clients")["args"]
    assert args[2:] == ["--rank", "$(FEDML_RANK)", "--role", "client"]
    server_args = container(rendering, "Deployment", "fedml-server")["args"]
    assert server_args[2:] == ["--rank", "$(FEDML_RANK)", "--role", "server"]


def kube_selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def test_clients_wait_for_the_server_and_restart_when_they_lose_it() -> None:
    rendering = render(cross_silo())
    spec = pod_spec(rendering, "StatefulSet", "fedml-clients")
    (wait,) = spec["initContainers"]
    assert wait["image"] == IMAGE and wait["command"][:2] == ["python3", "-c"]
    assert wait["command"][-2:] == ["fedml-server.fl.svc.cluster.local", "8890"]
    probe = spec["containers"][0]["livenessProbe"]
    assert probe["exec"]["command"][-2:] == ["fedml-server.fl.svc.cluster.local", "8890"]
    assert probe["failureThreshold"] * probe["periodSeconds"] >= 60
    server = rendering.find("Deployment", "fedml-server", "fl")
    assert server["spec"]["strategy"] == {"type": "Recreate"}
    assert rendering.find("StatefulSet", "fedml-clients", "fl")["spec"]["podManagementPolicy"] == "Parallel"


def test_every_fedml_container_is_kept_off_the_hosted_platform() -> None:
    rendering = render(cross_silo())
    for kind, name in (("Deployment", "fedml-server"), ("StatefulSet", "fedml-clients")):
        env = {e["name"]: e.get("value") for e in container(rendering, kind, name)["env"]}
        assert env["FEDML_ENV_VERSION"] == "local"
        assert env["FEDML_ENV_LOCAL_ON_PREMISE_PLATFORM_HOST"] == "127.0.0.1"


@pytest.mark.parametrize("mode", ["crossSilo", "agents"])
def test_pods_are_non_root_read_only_tokenless_and_sized(mode: str) -> None:
    rendering = render(cross_silo()) if mode == "crossSilo" else render_agents()
    assert workloads(rendering)
    for obj in workloads(rendering):
        pod = obj["spec"]["template"]["spec"]
        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert not [v for v in pod["volumes"] if "hostPath" in v]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
            assert c["resources"]["limits"]["memory"]
            assert c["securityContext"]["allowPrivilegeEscalation"] is False
            assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}
            assert c["securityContext"]["readOnlyRootFilesystem"] is True
            assert c["imagePullPolicy"] == "IfNotPresent"
    ns = rendering.find("Namespace", "fl")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_shared_data_is_a_retained_rwx_claim_mounted_into_every_node() -> None:
    config = {**cross_silo(sharedData={"mountPath": "/silo", "size": "5Gi"}), "storage": {"shared": {"kind": "nfs"}}}
    rendering = render(config)
    claim = rendering.find("PersistentVolumeClaim", "shared-data", "fl")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    (row,) = [r for r in rendering.of_type("kubernetes:core/v1:PersistentVolumeClaim") if "fl/" in r["name"]]
    assert row["options"]["retainOnDelete"] is True
    for kind, name in (("Deployment", "fedml-server"), ("StatefulSet", "fedml-clients")):
        mounts = container(rendering, kind, name)["volumeMounts"]
        assert {"name": "data", "mountPath": "/silo", "readOnly": True} in mounts


# --- network policies -----------------------------------------------------------------------------

DNS = ("kube-system", {"k8s-app": "kube-dns"})


def labels_of(rendering: Rendering, kind: str, name: str) -> tuple[str, dict[str, str]]:
    return "fl", rendering.find(kind, name, "fl")["spec"]["template"]["metadata"]["labels"]


def own_policies(rendering: Rendering, pod: tuple[str, dict[str, str]], direction: str) -> list[str]:
    """Policies that select this pod by its labels (not the namespace-wide default-deny) for `direction`."""
    return [
        p["metadata"]["name"]
        for p in rendering.manifests()
        if p["kind"] == "NetworkPolicy"
        and p["spec"]["podSelector"].get("matchLabels")
        and direction in p["spec"]["policyTypes"]
        and kube_selects(p["spec"]["podSelector"]["matchLabels"], pod[1])
    ]


def test_each_node_talks_only_to_its_peers_and_dns() -> None:
    rendering = render(cross_silo())
    net = Network(rendering.manifests())
    server = labels_of(rendering, "Deployment", "fedml-server")
    client = labels_of(rendering, "StatefulSet", "fedml-clients")
    for pod in (server, client):  # selected by its own ingress and egress policy, not only the default-deny
        assert own_policies(rendering, pod, "Ingress") and own_policies(rendering, pod, "Egress")
    assert net.connects(client, server, 8890) and net.connects(server, client, 8890)  # both dial each other
    assert not net.connects(client, client, 8890)  # clients never talk to each other
    assert not net.connects(client, server, 8891) and not net.connects(server, client, 22)
    stranger = ("fl", {**client[1], "app.kubernetes.io/part-of": "other"})  # another federation's client
    net.namespaces["other"] = {"kubernetes.io/metadata.name": "other"}
    outsider = ("other", client[1])  # same labels, another namespace
    for pod in (server, client):
        assert net.connects(pod, DNS, 53)
        assert not net.reaches_address(pod, "169.254.169.254", 80)  # the cloud metadata service
        assert not net.reaches_address(pod, "93.184.216.34", 443)
        for other in (stranger, outsider):
            assert not net.connects(other, pod, 8890) and not net.connects(pod, other, 8890)


def test_every_rank_reaches_the_peers_its_ip_config_names_and_no_other() -> None:
    """The CSV's DNS names, resolved and dialed as the pods would (tools/netpol: DNS lookup, Service, policies)."""
    rendering = render(cross_silo(clients=3))
    cluster = netpol.Cluster.from_manifests(rendering.manifests())
    text = rendering.find("ConfigMap", "fedml-config", "fl")["data"]["grpc_ipconfig.csv"]
    hosts = {int(r["rank"]): (r["ingress_ip"], int(r["grpc_server_port"])) for r in csv.DictReader(io.StringIO(text))}
    server = cluster.pod("fl", "fedml-server-0")
    clients = {rank: cluster.pod("fl", f"fedml-clients-{rank}") for rank in (1, 2, 3)}
    for rank, client in clients.items():
        assert cluster.connect(client, *hosts[0]).allowed, cluster.connect(client, *hosts[0]).explain()
        assert cluster.connect(server, *hosts[rank]).allowed, cluster.connect(server, *hosts[rank]).explain()
        others = [r for r in clients if r != rank]
        assert not any(cluster.connect(client, *hosts[r]).allowed for r in others)


def test_listed_egress_is_the_only_way_out() -> None:
    rendering = render(cross_silo(egress={"cidrs": ["10.20.0.0/16"], "ports": [443]}))
    net = Network(rendering.manifests())
    client = labels_of(rendering, "StatefulSet", "fedml-clients")
    assert net.reaches_address(client, "10.20.1.2", 443)
    assert not net.reaches_address(client, "10.20.1.2", 80) and not net.reaches_address(client, "10.21.0.1", 443)


def test_agents_accept_nothing_and_dial_only_public_addresses_on_the_platform_ports() -> None:
    rendering = render_agents()
    net = Network(rendering.manifests())
    agent = labels_of(rendering, "Deployment", "fedml-edge-client-0")
    other_agent = labels_of(rendering, "Deployment", "fedml-edge-server-0")
    assert own_policies(rendering, agent, "Ingress") and own_policies(rendering, agent, "Egress")
    assert not net.connects(other_agent, agent, 9988)
    assert net.reaches_address(agent, "93.184.216.34", 443) and net.reaches_address(agent, "93.184.216.34", 1883)
    assert not net.reaches_address(agent, "93.184.216.34", 80)
    assert not net.reaches_address(agent, "10.96.0.1", 443)  # nothing inside the cluster (API server included)
    assert not net.reaches_address(agent, "169.254.169.254", 80)


def test_image_digests_pin_every_container() -> None:
    digest = "sha256:" + "ab" * 32
    rendering = render({**cross_silo(), "imageDigests": {IMAGE: digest}})
    for obj in workloads(rendering):
        pod = obj["spec"]["template"]["spec"]
        for c in [*pod.get("initContainers", []), *pod["containers"]]:
            assert c["image"] == f"{IMAGE}@{digest}"


# --- agents ---------------------------------------------------------------------------------------


def test_agents_are_one_deployment_each_with_the_account_id_only_in_a_secret() -> None:
    rendering = render_agents(servers=1, clients=2)
    names = sorted(o["metadata"]["name"] for o in rendering.manifests() if o["kind"] == "Deployment")
    assert names == ["fedml-edge-client-0", "fedml-edge-client-1", "fedml-edge-server-0"]
    secret = rendering.find("Secret", "fedml-account", "fl")
    assert secret["stringData"] == {"account-id": ACCOUNT}
    holders = [o["kind"] for o in rendering.manifests() if ACCOUNT in yaml.safe_dump(o)]
    assert holders == ["Secret"]
    (row,) = rendering.of_type("kubernetes:core/v1:Secret")
    assert "[secret]" in str(row["inputs"]["stringData"])  # a Pulumi secret in state, too
    for name in names:
        c = container(rendering, "Deployment", name)
        env = {e["name"]: e for e in c["env"]}
        assert env["ACCOUNT_ID"]["valueFrom"] == {"secretKeyRef": {"name": "fedml-account", "key": "account-id"}}
        assert env["ROLE"]["value"] == ("server" if "server" in name else "client")
        assert c["image"] == "fedml/fedml-edge-client-server:0.8.6"
    # Each Deployment selects its own agent only.
    selectors = [rendering.find("Deployment", n, "fl")["spec"]["selector"]["matchLabels"] for n in names]
    assert len({tuple(sorted(s.items())) for s in selectors}) == 3
    assert not rendering.of_type("kubernetes:core/v1:ConfigMap")


# --- verification: one real round between a server and every client, an Indexed Job -------------------


def verification_job(rendering: Rendering) -> dict[str, Any]:
    (job,) = [o for o in rendering.manifests() if o["kind"] == "Job"]
    return job


def test_the_verification_is_one_round_of_the_federations_command_with_every_client() -> None:
    rendering = render(cross_silo(clients=3, rounds=7))
    job = verification_job(rendering)
    name = job["metadata"]["name"]
    assert job["spec"]["completionMode"] == "Indexed"
    assert job["spec"]["completions"] == job["spec"]["parallelism"] == 4  # the server and every client
    pod = job["spec"]["template"]["spec"]
    assert pod["subdomain"] == "fedml-verify"
    (node,) = pod["containers"]
    assert node["image"] == IMAGE
    assert [*node["command"], *node["args"]] == [
        "python3",
        "/etc/fedml/fedml_round.py",
        "--ipconfig",
        "/etc/fedml/grpc_ipconfig.csv",
        "--seconds",
        "600",
        "--",
        *COMMAND,
        "--cf",
        "/etc/fedml/fedml_config.yaml",
    ]
    files = rendering.find("ConfigMap", pod["volumes"][0]["configMap"]["name"], "fl")["data"]
    federation = rendering.find("ConfigMap", "fedml-config", "fl")["data"]
    config = yaml.safe_load(files["fedml_config.yaml"])
    assert config["train_args"]["comm_round"] == 1  # one round; everything else as the federation's
    expected = yaml.safe_load(federation["fedml_config.yaml"])
    expected["train_args"]["comm_round"] = 1
    assert config == expected
    rows = list(csv.DictReader(io.StringIO(files["grpc_ipconfig.csv"])))
    assert [r["ingress_ip"] for r in rows] == [f"{name}-{r}.fedml-verify.fl.svc.cluster.local" for r in range(4)]
    # Its pods are what the headless Service selects: the names above resolve to them.
    service = rendering.find("Service", "fedml-verify", "fl")["spec"]
    assert service["clusterIP"] == "None" and kube_selects(
        service["selector"], job["spec"]["template"]["metadata"]["labels"]
    )
    assert rendering.outputs()["federations"]["fl"]["verificationLog"] == (
        f"kubectl -n fl logs -l batch.kubernetes.io/job-name={name} --prefix"
    )
    for obj in (job, rendering.find("Service", "fedml-verify", "fl")):
        assert schema_errors(obj, "1.34.0") == []


def test_the_verification_runs_after_the_server_and_clients_and_is_named_after_the_federation() -> None:
    rendering = render(cross_silo())
    (row,) = [r for r in rendering.resources() if r["name"].startswith("job:")]
    depends = {link.rpartition("::")[2] for link in row["options"]["dependsOn"]}
    assert {"deployment:fl/fedml-server", "statefulset:fl/fedml-clients", "networkpolicy:fl/fedml-verify"} <= depends
    name = verification_job(rendering)["metadata"]["name"]
    assert verification_job(render(cross_silo()))["metadata"]["name"] == name
    assert verification_job(render(cross_silo(clients=3)))["metadata"]["name"] != name
    assert verification_job(render(cross_silo(image="registry.example/fedml-app:1.1")))["metadata"]["name"] != name


def test_verification_pods_talk_only_to_each_other_on_the_grpc_port() -> None:
    rendering = render(cross_silo())
    net = Network(rendering.manifests())
    check = ("fl", verification_job(rendering)["spec"]["template"]["metadata"]["labels"])
    server, client = (
        labels_of(rendering, "Deployment", "fedml-server"),
        labels_of(rendering, "StatefulSet", "fedml-clients"),
    )
    assert net.connects(check, check, 8890)
    assert not net.connects(check, check, 8891)
    for node in (server, client):
        assert not net.connects(check, node, 8890) and not net.connects(node, check, 8890)
    assert not net.reaches_address(check, "93.184.216.34", 443)
