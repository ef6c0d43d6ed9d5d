"""What the engine does with the program over a stack's life: replaced clusters, destroy, up again, updates."""

from __future__ import annotations

import pytest

from components.config import ConfigError
from tests.helpers import MINIKUBE, by_name, eks, render, render_stack
from tools import stack_files
from tools.render import Rendering

STACKS = stack_files.stack_names()


def provider_row(rendering: Rendering) -> dict[str, object]:
    (row,) = rendering.of_type("pulumi:providers:kubernetes")
    return row


def kubernetes_rows(rendering: Rendering) -> list[dict[str, object]]:
    return [r for r in rendering.resources() if r["type"].startswith("kubernetes:")]


def target_kind(stack: str) -> str:
    return str(render_stack(stack).outputs()["target"]["kind"])


@pytest.mark.parametrize("stack", STACKS)
def test_secrets_and_configmaps_update_in_place_and_retained_objects_are_adopted(stack: str) -> None:
    """Renewed certificates and kits update Secrets/ConfigMaps (no delete-then-create); an `up` after
    `destroy` adopts the retained namespaces and claims instead of failing on them (pulumi-kubernetes >= 4.29)."""
    inputs = provider_row(render_stack(stack))["inputs"]  # provider config travels as strings
    assert inputs["enableSecretMutable"] == "true"  # type: ignore[index]
    assert inputs["enableConfigMapMutable"] == "true"  # type: ignore[index]
    assert inputs["upsertExistingObjects"] == "true"  # type: ignore[index]


def test_a_replaced_minikube_cluster_replaces_the_provider_and_every_object() -> None:
    """delete + start under the same profile is an empty cluster: nothing may stay "in place" in state."""
    rendering = render({"target": MINIKUBE})
    assert provider_row(rendering)["options"]["replaceWith"] == ["command:local:Command::cluster-start"]  # type: ignore[index]


def test_a_replaced_eks_cluster_replaces_the_provider_and_every_object() -> None:
    rendering = render({"target": eks()})
    assert provider_row(rendering)["options"]["replaceWith"] == ["aws:eks/cluster:Cluster::cluster-eks"]  # type: ignore[index]


@pytest.mark.parametrize("stack", [s for s in STACKS if s.startswith("local")])
def test_minikube_objects_go_with_the_cluster_on_destroy(stack: str) -> None:
    """`destroy` would reach them with the last up's kubeconfig (stale after a restart) before `minikube delete`."""
    assert target_kind(stack) == "minikube"
    rows = kubernetes_rows(render_stack(stack))
    if not rows:
        pytest.skip(f"{stack} has no Kubernetes objects")
    assert {r["options"].get("deletedWith") for r in rows} == {"command:local:Command::cluster-start"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("stack", [s for s in STACKS if not s.startswith("local")])
def test_objects_on_clusters_that_outlive_them_are_deleted_through_the_api(stack: str) -> None:
    """EKS: a LoadBalancer Service must be deleted through Kubernetes, or its NLB outlives the VPC's destroy."""
    assert target_kind(stack) != "minikube"
    assert all("deletedWith" not in r["options"] for r in kubernetes_rows(render_stack(stack)))  # type: ignore[operator]


def test_existing_target_is_adopted_not_replaced() -> None:
    rendering = render({"target": {"kind": "existing", "existing": {"context": "lab"}}})
    row = provider_row(rendering)
    assert "replaceWith" not in row["options"]  # type: ignore[operator]
    assert by_name(rendering.resources(), "pulumi:providers:kubernetes")["cluster-k8s"]["inputs"]["context"] == "lab"


def depends_on(rendering: Rendering, type_token: str, name: str) -> list[str]:
    return by_name(rendering.resources(), type_token)[name]["options"]["dependsOn"]  # type: ignore[no-any-return]


CLAIM = "kubernetes:core/v1:PersistentVolumeClaim"


def test_an_ebs_claim_waits_for_its_storage_class_and_the_csi_driver() -> None:
    needs = depends_on(render_stack("eks-flower"), CLAIM, "persistentvolumeclaim:demo/superlink-state")
    assert "kubernetes:storage.k8s.io/v1:StorageClass::storageclass:gp3-retain" in needs
    assert "aws:eks/addon:Addon::storage-ebs-driver" in needs


NFS_FLOWER = {
    "target": MINIKUBE,
    "storage": {"shared": {"kind": "nfs"}},
    "federations": [{"name": "demo", "framework": "flower", "flower": {"sharedData": {"size": "1Gi"}}}],
}


def test_nfs_consumers_wait_for_the_server_and_go_before_it_and_its_namespace_is_retained() -> None:
    rendering = render(NFS_FLOWER)
    assert "kubernetes:helm.sh/v4:Chart::storage-nfs" in depends_on(
        rendering, CLAIM, "persistentvolumeclaim:demo/shared-data"
    )
    namespace = by_name(rendering.resources(), "kubernetes:core/v1:Namespace")["namespace:flstack-nfs"]
    assert namespace["options"]["retainOnDelete"] is True  # it holds the export's volume


WORKLOADS = ("Deployment", "StatefulSet", "DaemonSet", "Job", "Pod")


def mounted(pod: dict[str, object]) -> set[tuple[str, str]]:
    """A pod's ServiceAccount and the Secrets, ConfigMaps and claims of its volumes (read from the manifest)."""
    refs = {("ServiceAccount", pod["serviceAccountName"])} if "serviceAccountName" in pod else set()
    for volume in pod.get("volumes", []):  # type: ignore[attr-defined]
        for kind, key, field in (
            ("Secret", "secret", "secretName"),
            ("ConfigMap", "configMap", "name"),
            ("PersistentVolumeClaim", "persistentVolumeClaim", "claimName"),
        ):
            if key in volume:
                refs.add((kind, volume[key][field]))
    return refs  # type: ignore[return-value]


@pytest.mark.parametrize("stack", STACKS)
def test_workloads_wait_for_what_they_mount(stack: str) -> None:
    """Created in one `up` with no order, a pod could start before its Secret, ConfigMap or ServiceAccount."""
    rendering = render_stack(stack)
    rows = {r["name"]: r for r in rendering.resources() if r["type"].startswith("kubernetes:")}
    # A workload's resource by its object: a verification Job's name is a digest, its resource name stable.
    by_object = {
        (r["inputs"]["kind"], r["inputs"]["metadata"].get("namespace"), r["inputs"]["metadata"]["name"]): r
        for r in rows.values()
        if "kind" in r["inputs"]
    }
    checked = 0
    for obj in rendering.manifests():
        if obj["kind"] not in WORKLOADS:
            continue
        meta = obj["metadata"]
        pod = obj["spec"] if obj["kind"] == "Pod" else obj["spec"]["template"]["spec"]
        needs = by_object[(obj["kind"], meta["namespace"], meta["name"])]["options"]["dependsOn"]
        for kind, name in mounted(pod):
            logical = f"{kind.lower()}:{meta['namespace']}/{name}"
            if logical in rows:  # created by this stack (not e.g. the default ServiceAccount)
                assert f"{rows[logical]['type']}::{logical}" in needs, (obj["kind"], meta["name"], kind, name)
                checked += 1
    if not checked:
        pytest.skip(f"{stack} has no workload mounting objects of its own")


LB = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}


def test_load_balancer_exposure_is_refused_on_minikube() -> None:
    """Nothing allocates an address without `minikube tunnel`: the Service would wait 10 minutes on every up."""
    config = {"target": MINIKUBE, "federations": [{"name": "fl", "framework": "flower", "flower": {"exposure": LB}}]}
    with pytest.raises(
        ConfigError, match=r"flstack:federations\[0\]\.flower\.exposure\.type: 'LoadBalancer' on minikube"
    ):
        render(config)


@pytest.mark.parametrize(
    ("settings", "annotations"),
    [
        ({"loadBalancerAwait": "skip"}, {"pulumi.com/skipAwait": "true"}),
        ({"loadBalancerTimeoutSeconds": 120}, {"pulumi.com/timeoutSeconds": "120"}),
        ({}, None),
    ],
)
def test_existing_clusters_can_skip_or_shorten_the_load_balancer_wait(
    settings: dict[str, object], annotations: dict[str, str] | None
) -> None:
    target = {"kind": "existing", "existing": {"context": "lab", **settings}}
    nvflare = {"sites": ["s1"], "exposure": LB}
    config = {"target": target, "federations": [{"name": "fl", "framework": "nvflare", "nvflare": nvflare}]}
    service = render(config).find("Service", "nvflare-server", "fl")
    assert service["metadata"].get("annotations") == annotations


def test_skip_and_a_timeout_together_is_a_config_error() -> None:
    target = {"kind": "existing", "existing": {"loadBalancerAwait": "skip", "loadBalancerTimeoutSeconds": 60}}
    with pytest.raises(ConfigError, match=r"flstack:target\.existing\.loadBalancerTimeoutSeconds: not used with"):
        render({"target": target})
