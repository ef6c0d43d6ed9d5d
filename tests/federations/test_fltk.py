"""`framework: fltk` as rendered offline: namespace `test`, exact least-privilege RBAC, claims, extractor, jobs.

FLTK itself cannot run here (it needs Python <= 3.9 and torch 1.12, and has no published image): its proof
is this render, the schema, model and webhook checks of the jobs it will create, and the RBAC rules.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import kube
from components.config import ConfigError
from components.federations import fltk, kubeflow_checks
from tests.helpers import MINIKUBE, render, schema_errors
from tests.netpol import Network
from tools import stack_files
from tools.render import Rendering

IMAGE = "registry.example.com/fltk/fltk:2023-09"
API = "192.168.49.2/32"


def experiment(**system: Any) -> str:
    """FLTK's example arrival config with its systemParameters changed."""
    params = {
        "dataParallelism": 4,
        "configurations": {"Master": {"cores": "1000m", "memory": "1Gi"}, "Worker": {"cores": "750m", "memory": "1Gi"}},
        **system,
    }
    return json.dumps([{"type": "federated", "jobClassParameters": [{"systemParameters": params}]}])


def fed(**settings: Any) -> dict[str, Any]:
    base = {"image": IMAGE, "experiment": experiment(), "apiServer": {"cidrs": [API]}}
    return {"name": "fltk", "framework": "fltk", "fltk": {**base, **settings}}


def config(*federations: dict[str, Any], shared: str = "nfs", **top: Any) -> dict[str, Any]:
    return {
        "target": MINIKUBE,
        "storage": {"shared": {"kind": shared}},
        "federations": list(federations or [fed()]),
        **top,
    }


@pytest.fixture(scope="module")
def default() -> Rendering:
    return render(config())


def of_kind(rendering: Rendering, kind: str) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["kind"] == kind]


# --- RBAC: exactly what the orchestrator uses --------------------------------------------------------


def test_orchestrator_rbac_is_exactly_the_listed_rules(default: Rendering) -> None:
    (cluster_role,) = of_kind(default, "ClusterRole")
    assert cluster_role["rules"] == [
        {"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}
    ]
    (role,) = of_kind(default, "Role")
    assert role["metadata"]["namespace"] == "test"
    assert role["rules"] == [
        {
            "apiGroups": ["kubeflow.org"],
            "resources": ["pytorchjobs"],
            "verbs": ["create", "delete", "get", "list", "watch"],
        },
        {"apiGroups": [""], "resources": ["configmaps"], "verbs": ["create", "delete", "get"]},
    ]
    every_rule = cluster_role["rules"] + role["rules"]
    assert not any("*" in rule[k] for rule in every_rule for k in ("apiGroups", "resources", "verbs"))
    assert not any("secrets" in rule["resources"] for rule in every_rule)


def test_only_the_orchestrator_service_account_is_bound(default: Rendering) -> None:
    subject = [{"kind": "ServiceAccount", "name": "fltk-orchestrator", "namespace": "test"}]
    bindings = of_kind(default, "ClusterRoleBinding") + of_kind(default, "RoleBinding")
    assert len(bindings) == 2
    assert all(b["subjects"] == subject for b in bindings)
    assert {b["roleRef"]["kind"] for b in bindings} == {"ClusterRole", "Role"}
    job = default.find("Job", "fltk-orchestrator", "test")
    assert job["spec"]["template"]["spec"]["serviceAccountName"] == "fltk-orchestrator"
    extractor = default.find("Deployment", "fl-extractor", "test")["spec"]["template"]["spec"]
    assert extractor["automountServiceAccountToken"] is False  # TensorBoard has no business with the API


# --- namespace, storage, image -----------------------------------------------------------------------


def test_everything_lives_in_namespace_test(default: Rendering) -> None:
    namespaced = [o for o in default.manifests() if "namespace" in o["metadata"]]
    fltk_objects = [o for o in namespaced if o["metadata"]["namespace"] != "flstack-nfs"]
    assert fltk_objects and all(o["metadata"]["namespace"] == "test" for o in fltk_objects)
    ns = default.find("Namespace", "test")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "baseline"
    (ns_row,) = [r for r in default.resources() if r["name"] == "namespace:test"]
    assert ns_row["options"]["retainOnDelete"] is True


BAD = [
    (
        config(fed() | {"namespace": "fl"}),
        "flstack:federations[0].namespace: fltk runs only in namespace 'test' (FLTK's orchestrator hard-codes it",
    ),
    (config(shared="none"), "flstack:federations[0].fltk.volumes: needs ReadWriteMany storage"),
    (config(fed(image="registry.example.com/fltk")), "flstack:federations[0].fltk.image: expected an image with a tag"),
    (config(fed(image="gcr.io/test-bed-fltk/fltk:latest")), "flstack:federations[0].fltk.image: expected an image"),
    (config(fed(experiment="[{")), "flstack:federations[0].fltk.experiment: expected JSON text"),
    (
        config(fed(), {"name": "fltk2", "framework": "fltk", "fltk": fed()["fltk"]}),
        "flstack:federations[1].namespace: 'test' is already used by federations[0]",
    ),
    (
        config(fed(configuration=json.dumps({"cluster": {"namespace": "prod"}}))),
        "flstack:federations[0].fltk.configuration: cluster.namespace is 'prod' but must be 'test'",
    ),
    (
        config(fed(experiment=experiment(configurations={"Master": {"cores": "1", "memory": "1 GB"}}))),
        "flstack:federations[0].fltk.experiment: not an FLTK arrival config flstack can read: Master memory '1 GB'",
    ),
    (config(fed(apiServer={})), "flstack:federations[0].fltk.apiServer.cidrs: required: the API server's addresses"),
    (
        config(fed(apiServer={"cidrs": ["0.0.0.0/0"]})),
        "flstack:federations[0].fltk.apiServer.cidrs[0]: '0.0.0.0/0' is the whole internet",
    ),
    (
        config(fed(orchestratorResources={"cpu": "1"})),
        "flstack:federations[0].fltk.orchestratorResources.memory: required",
    ),
    (
        config() | {"target": {"kind": "minikube", "minikube": {"kubernetesVersion": "1.24.0"}}},
        "flstack:target.minikube.kubernetesVersion: '1.24.0' is below 1.25, the lowest Kubernetes Kubeflow Training "
        "Operator v1.9.4 supports",
    ),
]


@pytest.mark.parametrize(("values", "message"), BAD, ids=[m.split(": ")[1][:40] for _, m in BAD])
def test_bad_config_is_one_clear_error(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(values)
    assert message in str(err.value)
    assert "Traceback" not in str(err.value)


def test_claims_are_readwritemany_on_the_shared_class_and_retained(default: Rendering) -> None:
    sizes = {"fl-log-claim": "2Gi", "fl-server-claim": "5Gi"}
    for name, size in sizes.items():
        claim = default.find("PersistentVolumeClaim", name, "test")
        assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
        assert claim["spec"]["storageClassName"] == "shared-nfs"
        assert claim["spec"]["resources"]["requests"]["storage"] == size
        (row,) = [r for r in default.resources() if r["name"] == f"persistentvolumeclaim:test/{name}"]
        assert row["options"]["retainOnDelete"] is True


# --- configuration FLTK reads ----------------------------------------------------------------------------


def test_config_maps_hold_what_fltk_reads(default: Rendering) -> None:
    configuration = json.loads(
        default.find("ConfigMap", "fltk-orchestrator-config", "test")["data"][fltk.CONFIGURATION_FILE]
    )
    assert configuration["cluster"]["image"] == IMAGE and configuration["cluster"]["namespace"] == "test"
    assert configuration["execution_config"]["tensorboard"] == {"active": True, "record_dir": "logging"}
    stored = default.find("ConfigMap", "fltk-experiment-config", "test")["data"][fltk.EXPERIMENT_FILE]
    assert json.loads(stored) == json.loads(experiment())
    job = default.find("Job", "fltk-orchestrator", "test")["spec"]
    (container,) = job["template"]["spec"]["containers"]
    assert container["command"] == ["python3", "-m", "fltk"]
    assert container["args"] == ["cluster", "config/configuration.fltk.json", "config/experiment.fltk.json"]
    assert container["workingDir"] == "/opt/federation-lab"
    mounts = {m["mountPath"]: m for m in container["volumeMounts"]}
    assert mounts["/opt/federation-lab/config"]["readOnly"] is True
    assert job["backoffLimit"] == 0 and job["template"]["spec"]["restartPolicy"] == "Never"
    assert container["resources"]["limits"]["memory"] == "512Mi"


def test_orchestrator_starts_after_the_operator_its_rights_and_its_files(default: Rendering) -> None:
    (job,) = [r for r in default.resources() if r["type"] == "kubernetes:batch/v1:Job"]
    depends = set(job["options"]["dependsOn"])
    assert "kubernetes:kustomize/v2:Directory::kubeflow-training-operator" in depends
    for needed in (
        "role:test/fltk-orchestrator",
        "configmap:test/fltk-experiment-config",
        "networkpolicy:test/default-deny",
    ):
        assert any(d.endswith("::" + needed) for d in depends), needed
    (directory,) = [r for r in default.resources() if r["type"] == "kubernetes:kustomize/v2:Directory"]
    assert (
        directory["inputs"]["directory"]
        == "https://github.com/kubeflow/trainer/tree/v1.9.4/manifests/overlays/standalone"
    )


def test_existing_training_operator_installs_nothing() -> None:
    rendering = render(config(operators={"trainingOperator": {"existing": True}}))
    assert not [r for r in rendering.resources() if r["type"] == "kubernetes:kustomize/v2:Directory"]


def test_kubeflow_and_fltk_together_install_each_operator_once() -> None:
    kubeflow = {"name": "kf", "framework": "kubeflow", "kubeflow": {"image": "r.example/a:1", "command": ["python3"]}}
    rendering = render(config(fed(), kubeflow))
    types = [r["type"] for r in rendering.resources()]
    assert types.count("kubernetes:kustomize/v2:Directory") == 1 and types.count("kubernetes:helm.sh/v4:Chart") == 2
    assert sorted(rendering.outputs()["operators"]) == ["trainer", "trainingOperator"]


def test_provider_keeps_server_side_apply_for_the_operator_crds(default: Rendering) -> None:
    (provider,) = [r for r in default.resources() if r["type"] == "pulumi:providers:kubernetes"]
    assert provider["inputs"].get("enableServerSideApply") in (None, True, "true")


# --- extractor -----------------------------------------------------------------------------------------


def test_extractor_serves_tensorboard_on_a_clusterip_and_stops_on_sigterm(default: Rendering) -> None:
    service = default.find("Service", "fl-extractor", "test")["spec"]
    assert service["type"] == "ClusterIP" and service["ports"][0]["port"] == 6006
    pod = default.find("Deployment", "fl-extractor", "test")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert "lifecycle" not in container  # upstream's preStop was one malformed exec argument
    assert "signal.SIGTERM" in container["command"][2]
    assert container["args"] == ["--logdir", "logging", "--host", "0.0.0.0", "--port", "6006"]
    assert {m["mountPath"]: m.get("readOnly", False) for m in container["volumeMounts"]} == {
        "/opt/federation-lab/logging": True,
        "/opt/federation-lab/output": True,
        "/home/fltk": False,  # emptyDirs: the root filesystem is read-only
        "/tmp": False,
    }
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert default.outputs()["federations"]["fltk"]["tensorboardPortForward"] == (
        "kubectl -n test port-forward svc/fl-extractor 6006:6006"
    )


def test_sigterm_handler_makes_a_python_pid_exit(tmp_path: Any) -> None:
    """The extractor's wrapper, with a stand-in for TensorBoard's blocking server: SIGTERM ends it with 0."""
    import signal
    import subprocess
    import sys

    fake = tmp_path / "tensorboard"
    fake.mkdir()
    (fake / "__init__.py").write_text("")
    (fake / "main.py").write_text(
        "import time\ndef run_main():\n    print('serving', flush=True)\n    time.sleep(60)\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", fltk.TENSORBOARD, "--logdir", "logging"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "serving"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0


# --- the jobs FLTK will create ----------------------------------------------------------------------------


def test_expected_jobs_pass_model_webhook_and_schema_and_tolerate_the_taint() -> None:
    settings = fltk.FltkSettings(image=IMAGE, experiment=experiment(), api_server=fltk.ApiServer(cidrs=[API]))
    (job,) = fltk.expected_jobs(settings)
    assert kubeflow_checks.custom_resource_problems(job) == []
    specs = job["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 3
    for spec in specs.values():
        pod = spec["template"]["spec"]
        assert pod["tolerations"] == [{"key": "fltk.node", "operator": "Exists", "effect": "NoSchedule"}]
        assert pod["containers"][0]["name"] == "pytorch"
    assert specs["Worker"]["template"]["spec"]["containers"][0]["resources"]["limits"] == {
        "cpu": "750m",
        "memory": "1Gi",
    }


def test_shipped_stack_objects_are_schema_valid_with_kubernetes_version() -> None:
    rendering = render(config())
    assert [e for obj in rendering.manifests() for e in schema_errors(obj, "1.34.0")] == []
    assert "local-fltk" in stack_files.stack_names()


def test_network_job_pods_talk_to_each_other_the_orchestrator_to_the_api_only() -> None:
    rendering = render(config(fed(egress={"cidrs": ["10.20.0.0/16"]})))
    assert rendering.find("LimitRange", "container-defaults", "test")
    net = Network(rendering.manifests())
    master = ("test", {**fltk.WORKER_LABELS, "training.kubeflow.org/replica-type": "master"})
    worker = ("test", {**fltk.WORKER_LABELS, "training.kubeflow.org/replica-type": "worker"})
    orchestrator = ("test", kube.labels("fltk", "orchestrator", "fltk"))
    extractor = ("test", kube.labels("fltk", "extractor", "fltk"))
    assert net.connects(worker, master, 23456) and net.connects(master, worker, 40000)
    assert not net.connects(worker, extractor, 6006) and not net.connects(orchestrator, master, 23456)
    assert net.reaches_address(orchestrator, "192.168.49.2", 8443)  # the listed API server
    assert not net.reaches_address(orchestrator, "192.168.49.2", 80)
    assert not net.reaches_address(orchestrator, "203.0.113.7", 443)  # and nothing else
    assert not net.reaches_address(worker, "192.168.49.2", 8443)
    assert net.reaches_address(worker, "10.20.0.5", 443) and not net.reaches_address(worker, "10.21.0.5", 443)
