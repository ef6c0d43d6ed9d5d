"""The shared verification Job builder (components/verify.py) and the `verify` setting, through Flower."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components import verify
from components.config import ConfigError
from tests.helpers import EKS, EXISTING, MINIKUBE, render, schema_errors
from tools import stack_files


def flower(target: dict[str, Any] = MINIKUBE, verify_: bool | None = None, **settings: Any) -> dict[str, Any]:
    federation: dict[str, Any] = {"name": "fl", "framework": "flower", "flower": settings}
    if verify_ is not None:
        federation["verify"] = verify_
    return {"target": target, "federations": [federation]}


def jobs(rendering: Any) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["kind"] == "Job" and o["metadata"]["name"].startswith("verify-")]


@pytest.mark.parametrize(
    ("target", "setting", "expected"),
    [
        (MINIKUBE, None, 1),  # the local stacks verify by default
        (EXISTING, None, 0),
        (EKS, None, 0),
        (MINIKUBE, False, 0),
        (EXISTING, True, 1),
    ],
)
def test_verify_defaults_to_the_targets_choice_and_can_be_set(
    target: dict[str, Any], setting: bool | None, expected: int
) -> None:
    rendering = render(flower(target, setting, supernodes=2))
    assert len(jobs(rendering)) == expected
    outputs = rendering.outputs(reveal=True)["federations"]["fl"]
    assert ("verificationLog" in outputs) == bool(expected)
    # Off: no trace of it (no ConfigMap, no policy peer): verification never loosens a federation it skips.
    policy = rendering.find("NetworkPolicy", "superlink-ingress", "fl")
    components = {p["podSelector"]["matchLabels"].get("app.kubernetes.io/component") for p in _peers(policy)}
    assert ("verify" in components) == bool(expected)
    assert any(o["metadata"]["name"] == "flower-verify" for o in rendering.manifests()) == bool(expected)


def _peers(policy: dict[str, Any]) -> list[dict[str, Any]]:
    return [p for rule in policy["spec"]["ingress"] for p in rule["from"] if "podSelector" in p]


def test_verify_on_a_framework_without_a_verification_job_is_refused_by_key() -> None:
    raw = stack_files.load("local-fltk").config
    config = {k.removeprefix("flstack:"): json.loads(v) for k, v in raw.items() if k.startswith("flstack:")}
    (fltk,) = config["federations"]
    assert "verify" not in fltk and render(config).manifests()  # unset: off where there is no Job
    config["federations"] = [{**fltk, "verify": True}]
    with pytest.raises(ConfigError) as err:
        render(config)
    assert str(err.value).endswith(
        "flstack:federations[0].verify: fltk has no verification Job yet: remove the key or set it to false"
    )


def test_verify_must_be_a_boolean() -> None:
    with pytest.raises(ConfigError) as err:
        render({"target": MINIKUBE, "federations": [{"name": "fl", "framework": "flower", "verify": "yes"}]})
    assert "flstack:federations[0].verify: expected" in str(err.value)


def test_the_job_is_hardened_bounded_awaited_and_schema_valid() -> None:
    rendering = render(flower(supernodes=2))
    (job,) = jobs(rendering)
    assert schema_errors(job, "1.34.0") == []
    spec = job["spec"]
    assert "ttlSecondsAfterFinished" not in spec  # a deleted Job would be drift on the next refresh
    assert spec["backoffLimit"] <= 3 and 30 <= spec["activeDeadlineSeconds"] <= 3600
    annotations = job["metadata"]["annotations"]
    assert int(annotations["pulumi.com/timeoutSeconds"]) > spec["activeDeadlineSeconds"]
    assert annotations["pulumi.com/replaceUnready"] == "true"  # a failed verification runs again next up
    assert "pulumi.com/skipAwait" not in annotations
    pod = spec["template"]["spec"]
    assert pod["restartPolicy"] == "Never" and pod["automountServiceAccountToken"] is False
    assert pod["securityContext"]["runAsNonRoot"] and pod["securityContext"]["runAsUser"] == 49999
    (container,) = pod["containers"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert container["terminationMessagePolicy"] == "FallbackToLogsOnError"
    assert set(container["resources"]["requests"]) == {"cpu", "memory"} and "memory" in container["resources"]["limits"]
    labels = spec["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/component"] == "verify" and labels["app.kubernetes.io/part-of"] == "fl"


def test_the_job_waits_for_every_workload_it_checks() -> None:
    rendering = render(flower(nodeAuth=True, isolation="process", supernodes=2))
    row = next(r for r in rendering.resources() if r["name"] == "job:fl/verify")
    after = set(row["options"]["dependsOn"])
    workloads = {
        f"kubernetes:{r['type'].split(':')[1]}:{r['type'].split(':')[2]}::{r['name']}"
        for r in rendering.resources()
        if r["type"] in ("kubernetes:apps/v1:Deployment", "kubernetes:apps/v1:StatefulSet")
        or r["name"] == "job:fl/register-supernodes"
    }
    assert len(workloads) == 5  # SuperLink, ServerApp SuperExec, two SuperNodes, the key registration
    assert workloads <= after, workloads - after
    assert "kubernetes:core/v1:ConfigMap::configmap:fl/flower-verify" in after  # what it mounts, too


def test_same_config_same_job_and_a_changed_federation_a_new_name() -> None:
    first, again = render(flower(supernodes=2)), render(flower(supernodes=2))
    (a,), (b,) = jobs(first), jobs(again)
    assert a == b
    name = a["metadata"]["name"]
    assert first.outputs(reveal=True)["federations"]["fl"]["verificationLog"] == f"kubectl -n fl logs job/{name}"
    (bigger,) = jobs(render(flower(supernodes=3)))
    assert bigger["metadata"]["name"] != name
    assert "3" in bigger["spec"]["template"]["spec"]["containers"][0]["command"]
    (newer,) = jobs(render(flower(supernodes=2, version="1.40.0")))
    assert newer["metadata"]["name"] != name
    # What the check does not depend on does not re-run it: more memory for the SuperNodes is no new Job.
    (resized,) = jobs(render(flower(supernodes=2, supernodeResources={"memory": "2Gi"})))
    assert resized["metadata"]["name"] == name
    # The logical name stays: a re-verification is a replacement of one resource.
    assert [r["name"] for r in first.resources() if r["type"] == "kubernetes:batch/v1:Job"] == ["job:fl/verify"]


def test_digest_ignores_key_order_and_names_fit_a_dns_label() -> None:
    assert verify.digest({"a": 1, "b": [1, 2]}) == verify.digest({"b": [1, 2], "a": 1})
    assert verify.digest({"a": 1}) != verify.digest({"a": 2})
    assert len(verify.digest("x")) == verify.DIGEST_CHARS
    with pytest.raises(ValueError, match="longer than 52"):
        verify.job_name("v" * 53, {})


CONTAINER = {"name": "check", "image": "busybox:1.37", "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}}}


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"container": CONTAINER}, "needs cpu and memory requests and a memory limit"),
        ({"deadline_seconds": 7200}, "outside 30..3600"),
        ({"backoff_limit": 10}, "outside 0..3"),
    ],
)
def test_the_builder_refuses_an_unbounded_or_unlimited_job(change: dict[str, Any], problem: str) -> None:
    container = {**CONTAINER, "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}}}
    args: dict[str, Any] = {"container": container, "volumes": [], "labels": verify.labels("x", "f"), "uid": 1000}
    assert verify.manifest("verify-0", "ns", **args)["spec"]["backoffLimit"] == 1
    with pytest.raises(ValueError, match=problem):
        verify.manifest("verify-0", "ns", **{**args, **change})


def test_peer_names_the_verification_pod_in_its_own_or_another_namespace() -> None:
    selector = {"app.kubernetes.io/name": "nvflare", "app.kubernetes.io/component": "verify"}
    selector["app.kubernetes.io/part-of"] = "flare"
    assert verify.peer("nvflare", "flare") == {"podSelector": {"matchLabels": selector}}
    other = verify.peer("nvflare", "flare", "flare-admin")
    assert other["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": "flare-admin"}}
    assert other["podSelector"] == {"matchLabels": selector}


def test_an_indexed_check_is_one_pod_per_index_that_must_all_succeed() -> None:
    container = {**CONTAINER, "resources": {"requests": {"cpu": "10m", "memory": "32Mi"}, "limits": {"memory": "32Mi"}}}
    args: dict[str, Any] = {"container": container, "volumes": [], "labels": verify.labels("x", "f"), "uid": 1000}
    single = verify.manifest("verify-0", "ns", **args)
    assert "completionMode" not in single["spec"] and "subdomain" not in single["spec"]["template"]["spec"]
    job = verify.manifest("verify-0", "ns", **args, indexed=verify.Indexed(pods=3, subdomain="round"))
    assert {k: job["spec"][k] for k in ("completions", "parallelism", "completionMode")} == {
        "completions": 3,
        "parallelism": 3,
        "completionMode": "Indexed",
    }
    assert job["spec"]["template"]["spec"]["subdomain"] == "round"
    assert schema_errors(job, "1.34.0") == []


# --- NVFlare -----------------------------------------------------------------------------------------


def nvflare(verify_: bool | None = None, **settings: Any) -> dict[str, Any]:
    federation: dict[str, Any] = {"name": "flare", "framework": "nvflare", "nvflare": {"sites": ["a", "b"], **settings}}
    if verify_ is not None:
        federation["verify"] = verify_
    return {"target": MINIKUBE, "federations": [federation]}


def test_nvflare_verification_runs_in_the_admin_namespace_with_its_own_kit_after_every_site() -> None:
    rendering = render(nvflare())
    (job,) = jobs(rendering)
    assert job["metadata"]["namespace"] == "flare-admin" and schema_errors(job, "1.34.0") == []
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"][3:] == ["flstack-verify@flstack.dev", '["a", "b"]', "60"]
    secrets = [v["secret"]["secretName"] for v in pod["volumes"] if "secret" in v]
    assert secrets == ["nvflare-verify-startup"]  # its own kit, never the project admin's
    participants = [r["inputs"]["participant"] for r in rendering.resources() if r["type"].endswith("NvflareKit")]
    assert {"name": "flstack-verify@flstack.dev", "type": "admin", "role": "member"} in participants
    row = next(r for r in rendering.resources() if r["name"] == "job:flare-admin/verify")
    for workload in ("deployment:flare/nvflare-server", "deployment:flare-a/a", "deployment:flare-b/b"):
        assert f"kubernetes:apps/v1:Deployment::{workload}" in row["options"]["dependsOn"]
    outputs = rendering.outputs(reveal=True)["federations"]["flare"]
    assert outputs["verificationLog"] == f"kubectl -n flare-admin logs job/{job['metadata']['name']}"
    # The server admits the verification pod by name (component) and namespace, on the FL port only.
    policy = rendering.find("NetworkPolicy", "nvflare-server-ingress", "flare")
    (rule,) = policy["spec"]["ingress"]
    assert verify.peer("nvflare", "flare", "flare-admin") in rule["from"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8002}]


def test_nvflare_without_verification_provisions_no_verifier_and_admits_no_job() -> None:
    rendering = render(nvflare(verify_=False))
    assert jobs(rendering) == []
    participants = [r["inputs"]["participant"] for r in rendering.resources() if r["type"].endswith("NvflareKit")]
    assert sorted(p["name"] for p in participants) == ["a", "admin@flstack.dev", "b"]
    policy = rendering.find("NetworkPolicy", "nvflare-server-ingress", "flare")
    assert verify.peer("nvflare", "flare", "flare-admin") not in policy["spec"]["ingress"][0]["from"]
    assert not [o for o in rendering.manifests() if "nvflare-verify" in o["metadata"]["name"]]


def test_nvflare_admin_named_like_the_verifier_is_refused() -> None:
    with pytest.raises(ConfigError) as err:
        render(nvflare(admin="flstack-verify@example.org"))
    assert "flstack:federations[0].nvflare.admin: 'flstack-verify@example.org' is the verification Job's identity" in (
        str(err.value)
    )


def test_nvflare_same_config_same_job_and_another_site_a_new_name() -> None:
    (a,), (b,) = jobs(render(nvflare())), jobs(render(nvflare()))
    assert a == b
    (c,) = jobs(render(nvflare(sites=["a", "b", "c"])))
    assert c["metadata"]["name"] != a["metadata"]["name"]
