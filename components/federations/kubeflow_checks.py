"""Offline checks for Kubeflow custom resources, run before anything is registered (and by the tests).

- TrainJob / ClusterTrainingRuntime: the `kubeflow-trainer-api` pydantic models. `from_dict` keeps known
  keys only, so a round trip that does not come back equal means a misspelt or unknown field.
- PyTorchJob: the `kubeflow-training` models (same round trip), plus the Training Operator's own admission
  webhook rules, which its CRD schema does not express (it leaves the replica specs an open map).
- Every pod template: the Kubernetes OpenAPI schema (kubernetes-validate, strict).

The libraries are imported on first use: only stacks with Kubeflow federations pay for them.
"""

from __future__ import annotations

import re
from typing import Any

SCHEMA_VERSION = "1.34.0"  # Kubernetes schema the pod templates are checked against (kubernetes-validate)
DNS_1035 = r"[a-z]([-a-z0-9]*[a-z0-9])?"


def _first_difference(a: Any, b: Any, path: str = "") -> str:
    """Where `b` (the round trip) lost or changed something of `a`."""
    if isinstance(a, dict) and isinstance(b, dict):
        for key in a:
            if key not in b:
                return f"{path}.{key}".lstrip(".") + " is not a field the model knows"
            if a[key] != b[key]:
                return _first_difference(a[key], b[key], f"{path}.{key}")
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path.lstrip('.')} changed in the round trip: {a!r} -> {b!r}"


def trainer_model_problems(obj: dict[str, Any]) -> list[str]:
    """A TrainJob or ClusterTrainingRuntime through its kubeflow-trainer-api model."""
    import pydantic
    from kubeflow_trainer_api import models

    model = {
        "TrainJob": models.TrainerV1alpha1TrainJob,
        "ClusterTrainingRuntime": models.TrainerV1alpha1ClusterTrainingRuntime,
        "TrainingRuntime": models.TrainerV1alpha1TrainingRuntime,
    }[obj["kind"]]
    try:
        back = model.from_dict(obj)
    except pydantic.ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        return [f"{obj['kind']} {where}: {first['msg']}"]
    assert back is not None
    round_trip = back.to_dict()
    return [] if round_trip == obj else [f"{obj['kind']}: {_first_difference(obj, round_trip)}"]


def pytorchjob_model_problems(obj: dict[str, Any]) -> list[str]:
    """A PyTorchJob through the kubeflow-training model (openapi-generator; unknown keys are dropped)."""
    from kubeflow.training.api_client import ApiClient

    client = ApiClient()
    try:
        model = client._ApiClient__deserialize(obj, "KubeflowOrgV1PyTorchJob")
    except (TypeError, ValueError) as err:
        return [f"PyTorchJob: {err}"]
    round_trip = client.sanitize_for_serialization(model)
    return [] if round_trip == obj else [f"PyTorchJob: {_first_difference(obj, round_trip)}"]


def pytorchjob_webhook_problems(obj: dict[str, Any]) -> list[str]:
    """The Training Operator v1 validating webhook's rules for a PyTorchJob (it fails closed)."""
    problems = []
    name = obj["metadata"].get("name", "")
    if not re.fullmatch(DNS_1035, name) or len(name) > 63:
        problems.append(f"PyTorchJob name {name!r} must be a DNS-1035 label (a letter first, at most 63)")
    specs = obj.get("spec", {}).get("pytorchReplicaSpecs") or {}
    if not specs:
        problems.append("PyTorchJob: pytorchReplicaSpecs must not be empty")
    for kind, spec in specs.items():
        if kind not in ("Master", "Worker"):
            problems.append(f"PyTorchJob: replica type {kind!r} is not allowed (Master or Worker only)")
        if kind == "Master" and spec.get("replicas", 1) != 1:
            problems.append(f"PyTorchJob: Master replicas must be 1, got {spec.get('replicas')!r}")
        containers = spec.get("template", {}).get("spec", {}).get("containers", [])
        pytorch = [c for c in containers if c.get("name") == "pytorch"]
        if not pytorch:
            problems.append(f"PyTorchJob: {kind} needs a container named 'pytorch'")
        elif not pytorch[0].get("image"):
            problems.append(f"PyTorchJob: {kind}'s 'pytorch' container needs an image")
    elastic = obj.get("spec", {}).get("elasticPolicy")
    if elastic is not None:
        if "Worker" not in specs:
            problems.append("PyTorchJob: elasticPolicy needs Worker replicas")
        if obj["spec"].get("nprocPerNode") is not None:
            problems.append("PyTorchJob: elasticPolicy excludes the top-level nprocPerNode")
    return problems


def pod_template_problems(template: dict[str, Any], where: str) -> list[str]:
    """A pod template (metadata + spec) against the Kubernetes schema, wrapped as a PodTemplate object."""
    import kubernetes_validate

    obj = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": "check"}, "template": template}
    try:
        kubernetes_validate.validate(obj, SCHEMA_VERSION, strict=True)
    except kubernetes_validate.ValidationError as err:
        path = ".".join(str(p) for p in list(err.path)[1:])
        return [f"{where} pod template {path}: {err.message}"]
    return []


def custom_resource_problems(obj: dict[str, Any]) -> list[str] | None:
    """Model (and webhook) problems plus every embedded pod template's; None for a kind not known here."""
    kind = obj["kind"]
    if obj["apiVersion"] == "trainer.kubeflow.org/v1alpha1" and kind in ("TrainJob", "ClusterTrainingRuntime"):
        problems = trainer_model_problems(obj)
        for job in obj["spec"].get("template", {}).get("spec", {}).get("replicatedJobs", []):
            template = job["template"]["spec"]["template"]
            problems += pod_template_problems(template, f"{kind} {obj['metadata']['name']} {job['name']}")
        return problems
    if obj["apiVersion"] == "kubeflow.org/v1" and kind == "PyTorchJob":
        problems = pytorchjob_model_problems(obj) + pytorchjob_webhook_problems(obj)
        for replica, spec in obj["spec"].get("pytorchReplicaSpecs", {}).items():
            problems += pod_template_problems(spec["template"], f"PyTorchJob {obj['metadata']['name']} {replica}")
        return problems
    return None
