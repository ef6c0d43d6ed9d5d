"""`framework: kubeflow` and the Kubeflow Trainer add-on as rendered offline: once per stack, checked CRs."""

from __future__ import annotations

import copy
import re
from typing import Any

import pytest

from components import checks, operators
from components.config import ConfigError
from components.federations import kubeflow, kubeflow_checks
from tests.helpers import MINIKUBE, render
from tests.netpol import Network
from tools.render import Rendering

RUNTIME = "kubernetes:trainer.kubeflow.org/v1alpha1:ClusterTrainingRuntime::clustertrainingruntime:flstack-torch"
IMAGE = "registry.example.com/fedavg:0.1.0"
COMMAND = ["python3", "-m", "fedavg"]
APP: dict[str, Any] = {"image": IMAGE, "command": COMMAND}


def fed(name: str, **settings: Any) -> dict[str, Any]:
    return {"name": name, "framework": "kubeflow", "kubeflow": {**APP, **settings}}


def config(*federations: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {"target": MINIKUBE, "federations": list(federations or [fed("demo")]), **top}


@pytest.fixture(scope="module")
def two() -> Rendering:
    return render(config(fed("alpha", numNodes=3, env={"FEDAVG_SEED": "7"}), fed("beta")))


def rows(rendering: Rendering, suffix: str) -> list[dict[str, Any]]:
    return [r for r in rendering.resources() if r["type"].endswith(suffix)]


# --- the operator: once per stack, jobs wait for it ------------------------------------------------


def test_two_federations_install_the_trainer_once(two: Rendering) -> None:
    charts = rows(two, "helm.sh/v4:Chart")
    assert len(charts) == 1
    chart = charts[0]["inputs"]
    assert chart["chart"] == "oci://ghcr.io/kubeflow/charts/kubeflow-trainer" and chart["version"] == "2.3.0"
    assert chart["namespace"] == "kubeflow-system"
    # The chart's runtimes come from a Helm hook Job: off; flstack registers its own runtime.
    assert chart["values"]["runtimes"] == {"defaultEnabled": False, "torchDistributed": {"enabled": False}}
    assert len(rows(two, ":ClusterTrainingRuntime")) == 1
    assert len(rows(two, ":TrainJob")) == 4  # each federation's and its verification's
    assert two.outputs()["operators"] == {
        "trainer": {"existing": False, "runtime": "flstack-torch", "version": "2.3.0"}
    }


def test_every_trainjob_depends_on_the_chart_the_runtime_and_its_policies(two: Rendering) -> None:
    for job in rows(two, ":TrainJob"):
        ns, name = job["inputs"]["metadata"]["namespace"], job["inputs"]["metadata"]["name"]
        depends = set(job["options"]["dependsOn"])
        assert "kubernetes:helm.sh/v4:Chart::kubeflow-trainer" in depends
        assert RUNTIME in depends
        for policy in ("default-deny", "allow-dns", f"{name}-peers"):
            assert f"kubernetes:networking.k8s.io/v1:NetworkPolicy::networkpolicy:{ns}/{policy}" in depends


def test_existing_trainer_installs_nothing_but_the_runtime() -> None:
    rendering = render(config(operators={"trainer": {"existing": True}}))
    assert rows(rendering, "helm.sh/v4:Chart") == []
    assert not any(
        r["inputs"].get("metadata", {}).get("name") == "kubeflow-system" for r in rows(rendering, ":Namespace")
    )
    for job in rows(rendering, ":TrainJob"):
        assert job["options"]["dependsOn"].count(RUNTIME) == 1


def test_stacks_without_kubeflow_get_no_operator() -> None:
    rendering = render({"target": MINIKUBE, "federations": [{"name": "f", "framework": "flower"}]})
    assert not [r for r in rendering.resources() if r["type"].startswith("flstack:operators:")]
    assert "operators" not in rendering.outputs()


def test_kubernetes_below_what_the_trainer_needs_is_refused_with_the_key() -> None:
    target = {"kind": "minikube", "minikube": {"kubernetesVersion": "1.30.4"}}
    with pytest.raises(ConfigError) as err:
        render(config(fed("demo"), fed("two")) | {"target": target})
    text = str(err.value)
    assert (
        "flstack:target.minikube.kubernetesVersion: '1.30.4' is below 1.31, the lowest Kubernetes Kubeflow "
        "Trainer 2.3.0 supports (federations[0] uses framework 'kubeflow')"
    ) in text
    assert text.count("is below") == 1  # once per operator, not per federation


def test_unknown_operator_version_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"flstack:operators\.trainer\.version: expected one of '2\.3\.0', got '2\.2\.0'"
    ):
        render(config(operators={"trainer": {"version": "2.2.0"}}))


# --- the TrainJob ------------------------------------------------------------------------------------


def test_trainjob_carries_the_settings_on_flstack_runtime(two: Rendering) -> None:
    job = two.find("TrainJob", "alpha", "alpha")
    assert job["spec"]["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "flstack-torch",
    }
    assert job["spec"]["trainer"] == {
        "image": APP["image"],
        "command": APP["command"],
        "numNodes": 3,
        "numProcPerNode": 1,
        "resourcesPerNode": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "env": [{"name": "FEDAVG_SEED", "value": "7"}],
    }
    assert kubeflow_checks.trainer_model_problems(job) == []
    assert two.outputs()["federations"]["alpha"]["masterAddress"] == "alpha-node-0-0.alpha:29500"


def test_peer_policy_admits_only_the_same_jobs_pods_on_rendezvous_and_gloo_ports(two: Rendering) -> None:
    policy = two.find("NetworkPolicy", "alpha-peers", "alpha")["spec"]
    same_job = [{"podSelector": {"matchLabels": {"jobset.sigs.k8s.io/jobset-name": "alpha"}}}]
    ports = [{"protocol": "TCP", "port": 29500}, {"protocol": "TCP", "port": 29501, "endPort": 29999}]
    assert policy["podSelector"] == same_job[0]["podSelector"]
    assert policy["ingress"] == [{"from": same_job, "ports": ports}]
    assert policy["egress"] == [{"to": same_job, "ports": ports}]
    deny = two.find("NetworkPolicy", "default-deny", "alpha")["spec"]
    assert deny == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}
    assert two.find("NetworkPolicy", "allow-dns", "alpha")["spec"]["policyTypes"] == ["Egress"]


def test_runtime_pins_gloo_ports_to_the_policy_range_and_is_restricted() -> None:
    runtime = operators.runtime_manifest()
    assert kubeflow_checks.custom_resource_problems(runtime) == []
    pod = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    assert pod["securityContext"]["sysctls"] == [{"name": "net.ipv4.ip_local_port_range", "value": "29501 29999"}]
    assert pod["securityContext"]["runAsNonRoot"] is True
    (container,) = pod["containers"]
    assert container["name"] == "node"
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_node_pod_has_requests_and_a_memory_limit() -> None:
    settings = kubeflow.KubeflowSettings(image=IMAGE, command=COMMAND)
    pod = kubeflow.node_pod_template("demo", settings)["spec"]
    resources = pod["containers"][0]["resources"]
    assert resources["requests"]["cpu"] and resources["limits"]["memory"] == resources["requests"]["memory"]


# --- checks that catch mistakes --------------------------------------------------------------------


def good_job() -> dict[str, Any]:
    return kubeflow.train_job("demo", "demo", kubeflow.KubeflowSettings(image=IMAGE, command=COMMAND))


def test_a_misspelt_trainjob_field_fails_the_round_trip() -> None:
    job = good_job()
    job["spec"]["trainer"]["numNode"] = job["spec"]["trainer"].pop("numNodes")
    assert kubeflow_checks.trainer_model_problems(job) == [
        "TrainJob: spec.trainer.numNode is not a field the model knows"
    ]


def test_a_wrongly_typed_trainjob_field_is_reported() -> None:
    job = good_job()
    job["spec"]["trainer"]["numNodes"] = "three"
    assert kubeflow_checks.trainer_model_problems(job) == ["TrainJob numNodes: Input should be a valid integer"]


def test_a_bad_runtime_pod_template_is_reported() -> None:
    runtime = copy.deepcopy(operators.runtime_manifest())
    pod = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"]["spec"]
    pod["containers"][0]["securityContext"]["runAsNonroot"] = True
    problems = kubeflow_checks.custom_resource_problems(runtime)
    assert problems and any("runAsNonroot" in p for p in problems)


BAD = [
    ({"image": "registry.example.com/fedavg"}, "flstack:federations[0].kubeflow.image: expected an image with a tag"),
    ({"image": "registry.example.com/fedavg:latest"}, "flstack:federations[0].kubeflow.image: expected an image"),
    ({"command": []}, "flstack:federations[0].kubeflow.command: required: the program every node runs"),
    ({"env": {"PET_NNODES": "3"}}, "flstack:federations[0].kubeflow.env.PET_NNODES: PET_* variables are set by"),
    ({"numNodes": 1}, "flstack:federations[0].kubeflow.numNodes: expected an integer >= 2"),
    ({"resourcesPerNode": {"cpu": "1"}}, "flstack:federations[0].kubeflow.resourcesPerNode.memory: required"),
    ({"numNode": 3}, "flstack:federations[0].kubeflow.numNode: unknown key; did you mean 'numNodes'?"),
]


@pytest.mark.parametrize(("settings", "message"), BAD)
def test_bad_settings_are_one_clear_error(settings: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(config(fed("demo", **settings)))
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_a_digest_pinned_image_is_accepted() -> None:
    image = "registry.example.com/fedavg@sha256:" + "a" * 64
    job = render(config(fed("demo", image=image))).find("TrainJob", "demo", "demo")
    assert job["spec"]["trainer"]["image"] == image


def test_a_federation_name_that_cannot_name_a_trainjob_is_refused() -> None:
    with pytest.raises(
        ConfigError, match=r"flstack:federations\[0\]\.kubeflow: the TrainJob is named after the federation: '1st'"
    ):
        render(config(fed("1st")))


# --- PyTorchJob: the Training Operator's webhook rules (FLTK's jobs) -----------------------------------


def pytorch_job() -> dict[str, Any]:
    def replica(replicas: int) -> dict[str, Any]:
        container = {
            "name": "pytorch",
            "image": "registry.example.com/fltk:1.0",
            "resources": {"limits": {"memory": "1Gi"}},
        }
        return {"replicas": replicas, "restartPolicy": "Never", "template": {"spec": {"containers": [container]}}}

    return {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "trainjob-1", "namespace": "test"},
        "spec": {
            "runPolicy": {"cleanPodPolicy": "None"},
            "pytorchReplicaSpecs": {"Master": replica(1), "Worker": replica(3)},
        },
    }


def test_a_good_pytorchjob_passes_model_webhook_and_schema() -> None:
    assert kubeflow_checks.custom_resource_problems(pytorch_job()) == []


def _set(job: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    *head, last = path.split(".")
    node: Any = job
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    return job


WEBHOOK = [
    ("metadata.name", "1-job", "must be a DNS-1035 label"),
    (
        "spec.pytorchReplicaSpecs.Chief",
        {"replicas": 1, "template": {"spec": {"containers": []}}},
        "'Chief' is not allowed",
    ),
    ("spec.pytorchReplicaSpecs.Master.replicas", 2, "Master replicas must be 1"),
    (
        "spec.pytorchReplicaSpecs.Worker.template.spec.containers.0.name",
        "main",
        "Worker needs a container named 'pytorch'",
    ),
]


@pytest.mark.parametrize(("path", "value", "message"), WEBHOOK)
def test_each_webhook_rule_catches_its_mistake(path: str, value: Any, message: str) -> None:
    problems = kubeflow_checks.pytorchjob_webhook_problems(_set(pytorch_job(), path, value))
    assert any(message in p for p in problems), problems


def test_a_misspelt_pytorchjob_field_fails_the_round_trip() -> None:
    job = _set(pytorch_job(), "spec.pytorchReplicaSpecs.Master.replica", 1)
    assert kubeflow_checks.pytorchjob_model_problems(job) == [
        "PyTorchJob: spec.pytorchReplicaSpecs.Master.replica is not a field the model knows"
    ]


def test_network_nodes_reach_their_peers_on_the_policy_ports_only() -> None:
    rendering = render(config(fed("alpha"), fed("beta")))
    net = Network(rendering.manifests())
    alpha = ("alpha", {"jobset.sigs.k8s.io/jobset-name": "alpha", "batch.kubernetes.io/job-completion-index": "0"})
    alpha1 = ("alpha", {"jobset.sigs.k8s.io/jobset-name": "alpha", "batch.kubernetes.io/job-completion-index": "1"})
    beta = ("beta", {"jobset.sigs.k8s.io/jobset-name": "beta"})
    assert net.connects(alpha1, alpha, 29500) and net.connects(alpha, alpha1, 29731)
    assert not net.connects(alpha1, alpha, 8080) and not net.connects(alpha1, alpha, 30000)
    assert not net.connects(beta, alpha, 29500)  # another federation's nodes


# --- verification: a TrainJob of its own, all ranks join -----------------------------------------------


def verification(rendering: Rendering, ns: str) -> dict[str, Any]:
    (job,) = [
        o
        for o in rendering.manifests()
        if o["kind"] == "TrainJob" and o["metadata"]["namespace"] == ns and o["metadata"]["name"] != ns
    ]
    return job


def test_the_verification_trainjob_runs_the_ranks_check_like_the_federations_nodes(two: Rendering) -> None:
    job, federation = verification(two, "alpha"), two.find("TrainJob", "alpha", "alpha")
    name = job["metadata"]["name"]
    assert re.fullmatch(r"alpha-verify-[0-9a-f]{10}", name)
    trainer = job["spec"]["trainer"]
    script = checks.script("kubeflow_ranks")
    assert trainer["command"] == ["python3", "-c", script]
    assert trainer["args"] == ["--join-seconds", "300"]
    # Everything else is the federation's: runtime, image, node count, resources, env.
    same = {k: v for k, v in federation["spec"]["trainer"].items() if k not in ("command", "args")}
    assert {k: v for k, v in trainer.items() if k not in ("command", "args")} == same
    assert job["spec"]["runtimeRef"] == federation["spec"]["runtimeRef"]
    assert job["spec"]["activeDeadlineSeconds"] == 900
    assert job["metadata"]["annotations"] == {
        "pulumi.com/waitFor": "condition=Complete",
        "pulumi.com/timeoutSeconds": "960",
    }
    assert kubeflow_checks.trainer_model_problems(job) == []
    outputs = two.outputs()["federations"]["alpha"]
    assert outputs["verificationLog"] == f"kubectl -n alpha logs -l jobset.sigs.k8s.io/jobset-name={name} --prefix"


def test_the_verification_trainjob_starts_after_the_federations_own(two: Rendering) -> None:
    name = verification(two, "alpha")["metadata"]["name"]
    (row,) = [r for r in rows(two, ":TrainJob") if r["name"] == f"trainjob:alpha/{name}"]
    assert "kubernetes:trainer.kubeflow.org/v1alpha1:TrainJob::trainjob:alpha/alpha" in row["options"]["dependsOn"]


def test_the_verification_name_is_stable_and_follows_the_federation() -> None:
    name = verification(render(config(fed("demo"))), "demo")["metadata"]["name"]
    assert verification(render(config(fed("demo"))), "demo")["metadata"]["name"] == name
    assert verification(render(config(fed("demo", numNodes=3))), "demo")["metadata"]["name"] != name
    assert (
        verification(render(config(fed("demo", image="registry.example.com/fedavg:0.2.0"))), "demo")["metadata"]["name"]
        != name
    )
    long = "f" * kubeflow.MAX_NAME
    assert len(verification(render(config(fed(long))), long)["metadata"]["name"]) == kubeflow.MAX_NAME


def test_verification_nodes_reach_each_other_and_not_the_federations_nodes(two: Rendering) -> None:
    net = Network(two.manifests())
    name = verification(two, "alpha")["metadata"]["name"]
    check0 = ("alpha", {"jobset.sigs.k8s.io/jobset-name": name, "batch.kubernetes.io/job-completion-index": "0"})
    check2 = ("alpha", {"jobset.sigs.k8s.io/jobset-name": name, "batch.kubernetes.io/job-completion-index": "2"})
    node0 = ("alpha", {"jobset.sigs.k8s.io/jobset-name": "alpha", "batch.kubernetes.io/job-completion-index": "0"})
    assert net.connects(check2, check0, 29500) and net.connects(check0, check2, 29731)
    assert not net.connects(check2, check0, 8080)
    assert not net.connects(check2, node0, 29500) and not net.connects(node0, check0, 29500)
