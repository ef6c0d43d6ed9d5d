"""Hardening shared by every framework: resources on every container, the GPU where the training runs,
default-deny egress with explicit allowances, no 0.0.0.0/0 by accident, image digests.

Each of these failed on the code before issue 12 (the configs are what a new user writes).
"""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError
from tests.helpers import EXISTING, MINIKUBE, render
from tests.netpol import Network
from tools.render import Rendering

POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"}
DIGEST = "sha256:" + "ab" * 32


def stack(framework: str, **settings: Any) -> dict[str, Any]:
    return {"target": MINIKUBE, "federations": [{"name": "fl", "framework": framework, framework: settings}]}


GROUPS = [
    {"name": "gpu", "replicas": 1, "resources": {"gpus": 1}, "nodeSelector": {"nvidia.com/gpu.present": "true"}},
    {"name": "cpu", "replicas": 2},  # no resources at all
]
VARIANTS = {
    "flower-groups": stack("flower", groups=GROUPS),
    "flower-process-isolation": stack("flower", groups=GROUPS, isolation="process"),
    "flower-node-auth": stack("flower", supernodes=2, nodeAuth=True, isolation="process"),
    "flower-partial-resources": stack("flower", supernodes=1, superlinkResources={"cpu": "1"}),
    "nvflare": stack("nvflare", sites=["site-1", "site-2"], serverResources={"memory": "2Gi"}),
    "nvflare-kubernetes-launcher": stack("nvflare", sites=["site-1"], jobLauncher="kubernetes"),
    "fedml-cross-silo": stack("fedml", image="registry.example/app:1.0", command=["python3", "/app/node.py"]),
}


def workloads(rendering: Rendering) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["kind"] in POD_KINDS]


def containers(obj: dict[str, Any]) -> list[dict[str, Any]]:
    pod = obj["spec"]["template"]["spec"]
    return [*pod.get("initContainers", []), *pod["containers"]]


def container(rendering: Rendering, kind: str, name: str, container_name: str) -> dict[str, Any]:
    (found,) = [c for c in containers(rendering.find(kind, name, "fl")) if c["name"] == container_name]
    return found


@pytest.fixture(scope="module", params=sorted(VARIANTS))
def variant(request: pytest.FixtureRequest) -> Rendering:
    return render(VARIANTS[request.param])


# --- resources ------------------------------------------------------------------------------------


def test_every_container_has_requests_and_a_memory_limit(variant: Rendering) -> None:
    missing = [
        f"{o['metadata']['namespace']}/{o['kind']}.{o['metadata']['name']}/{c['name']}"
        for o in workloads(variant)
        for c in containers(o)
        if not {"cpu", "memory"} <= set(c.get("resources", {}).get("requests", {}))
        or "memory" not in c.get("resources", {}).get("limits", {})
    ]
    assert workloads(variant) and missing == []


def test_every_federation_namespace_has_a_limit_range_backstop(variant: Rendering) -> None:
    namespaces = {o["metadata"]["name"] for o in variant.manifests() if o["kind"] == "Namespace"}
    ranges = {o["metadata"]["namespace"]: o for o in variant.manifests() if o["kind"] == "LimitRange"}
    assert set(ranges) == namespaces
    for limit_range in ranges.values():
        (limits,) = limit_range["spec"]["limits"]
        assert limits["type"] == "Container"
        assert {"cpu", "memory"} <= set(limits["defaultRequest"]) and "memory" in limits["default"]


def test_a_group_without_resources_gets_the_supernode_defaults() -> None:
    rendering = render(VARIANTS["flower-groups"])
    resources = container(rendering, "StatefulSet", "supernodes-cpu", "supernode")["resources"]
    assert resources == {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


def test_the_gpu_goes_to_the_container_running_the_client_app() -> None:
    subprocess_mode = render(VARIANTS["flower-groups"])
    gpu = container(subprocess_mode, "StatefulSet", "supernodes-gpu", "supernode")["resources"]
    assert gpu["limits"] == {"memory": "1Gi", "nvidia.com/gpu": 1}

    process_mode = render(VARIANTS["flower-process-isolation"])
    client_app = container(process_mode, "StatefulSet", "supernodes-gpu", "superexec")["resources"]
    assert client_app["limits"] == {"memory": "1Gi", "nvidia.com/gpu": 1}
    relay = container(process_mode, "StatefulSet", "supernodes-gpu", "supernode")["resources"]
    assert "nvidia.com/gpu" not in relay["limits"] and "nvidia.com/gpu" not in relay["requests"]
    pod = process_mode.find("StatefulSet", "supernodes-gpu", "fl")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}


def test_the_server_app_superexec_has_its_own_resources() -> None:
    rendering = render(stack("flower", isolation="process", serverappResources={"cpu": "2", "memory": "4Gi"}))
    resources = container(rendering, "Deployment", "superexec-serverapp", "superexec")["resources"]
    assert resources == {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}


# --- egress ---------------------------------------------------------------------------------------


def pod(rendering: Rendering, kind: str, name: str, ns: str) -> tuple[str, dict[str, str]]:
    return ns, rendering.find(kind, name, ns)["spec"]["template"]["metadata"]["labels"]


def test_flower_pods_reach_the_superlink_and_dns_only() -> None:
    rendering = render(stack("flower", supernodes=2, nodeAuth=True, isolation="process"))
    net = Network(rendering.manifests())
    superlink = pod(rendering, "Deployment", "superlink", "fl")
    dns = ("kube-system", {"k8s-app": "kube-dns"})
    for source in [
        pod(rendering, "StatefulSet", "supernodes-default-0", "fl"),
        pod(rendering, "Deployment", "superexec-serverapp", "fl"),
        pod(rendering, "Job", "register-supernodes", "fl"),
    ]:
        assert net.connects(source, superlink, 8000)
        assert net.connects(source, dns, 53)
        assert not net.connects(source, superlink, 9093)
        assert not net.connects(source, ("kube-system", {"app": "metrics-server"}), 443)
        assert not net.reaches_address(source, "169.254.169.254", 80)  # the cloud metadata service
        assert not net.reaches_address(source, "93.184.216.34", 443)
    stranger = ("other", {"app.kubernetes.io/name": "flower", "app.kubernetes.io/part-of": "fl"})
    net.namespaces["other"] = {"kubernetes.io/metadata.name": "other"}
    assert not net.connects(stranger, superlink, 8000)


def test_listed_egress_cidrs_are_reachable_and_nothing_else() -> None:
    rendering = render(stack("flower", supernodes=1, egress={"cidrs": ["10.20.0.0/16"], "ports": [443]}))
    net = Network(rendering.manifests())
    supernode = pod(rendering, "StatefulSet", "supernodes-default", "fl")
    assert net.reaches_address(supernode, "10.20.1.2", 443)
    assert not net.reaches_address(supernode, "10.20.1.2", 80)
    assert not net.reaches_address(supernode, "10.21.1.2", 443)


@pytest.mark.parametrize("launcher", ["process", "kubernetes"])
def test_nvflare_sites_and_admin_reach_the_server_and_not_each_other(launcher: str) -> None:
    rendering = render(stack("nvflare", sites=["site-1", "site-2"], jobLauncher=launcher))
    net = Network(rendering.manifests())
    server = pod(rendering, "Deployment", "nvflare-server", "fl")
    site_1 = pod(rendering, "Deployment", "site-1", "fl-site-1")
    site_2 = pod(rendering, "Deployment", "site-2", "fl-site-2")
    admin = pod(rendering, "Deployment", "nvflare-admin", "fl-admin")
    for source in (site_1, site_2, admin):
        assert net.connects(source, server, 8002)
        assert not net.reaches_address(source, "93.184.216.34", 8002)
    assert not net.connects(site_1, site_2, 8002) and not net.connects(site_1, site_2, 8102)
    assert not net.connects(admin, site_1, 8102)
    # Only parents that launch job pods may open the API server's ports (any address: it is reached after DNAT).
    assert net.reaches_address(site_1, "10.0.0.1", 443) is (launcher == "kubernetes")
    assert not net.reaches_address(admin, "10.0.0.1", 443)


def test_nvflare_job_pods_reach_their_parent_and_the_server() -> None:
    rendering = render(stack("nvflare", sites=["site-1"], jobLauncher="kubernetes"))
    net = Network(rendering.manifests())
    job_labels = {
        "app.kubernetes.io/name": "nvflare",
        "app.kubernetes.io/component": "job",
        "app.kubernetes.io/part-of": "fl",
        "app.kubernetes.io/managed-by": "flstack",
    }
    site = pod(rendering, "Deployment", "site-1", "fl-site-1")
    server = pod(rendering, "Deployment", "nvflare-server", "fl")
    assert net.connects(("fl-site-1", job_labels), site, 8102)
    assert net.connects(("fl-site-1", job_labels), server, 8002)
    assert net.connects(("fl", job_labels), server, 8102)
    assert not net.reaches_address(("fl-site-1", job_labels), "10.0.0.1", 443)


# --- open CIDRs -----------------------------------------------------------------------------------

OPEN = [
    (
        stack("flower", exposure={"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24", "0.0.0.0/0"]}),
        "flstack:federations[0].flower.exposure.sourceRanges[1]: '0.0.0.0/0' means every address on the internet; "
        "list the networks that need access, or set exposure.allowInternet: true to accept that on purpose",
    ),
    (
        stack("nvflare", sites=["s"], exposure={"type": "LoadBalancer", "sourceRanges": ["::/0"]}),
        "flstack:federations[0].nvflare.exposure.sourceRanges[0]: '::/0' means every address on the internet",
    ),
    (
        stack("flower", allowedCidrs=["1.2.3.4/0"]),
        "flstack:federations[0].flower.allowedCidrs[0]: '1.2.3.4/0' means every address on the internet",
    ),
    (
        stack("nvflare", sites=["s"], egress={"cidrs": ["0.0.0.0/0"]}),
        "flstack:federations[0].nvflare.egress.cidrs[0]: '0.0.0.0/0' means every address on the internet; "
        "list the networks that need access, or set egress.allowInternet: true",
    ),
]


@pytest.mark.parametrize(("config", "expected"), OPEN)
def test_the_whole_internet_needs_an_acknowledgement(config: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(config)
    assert expected in str(err.value)


def test_an_acknowledged_open_load_balancer_renders() -> None:
    exposure = {"type": "LoadBalancer", "sourceRanges": ["0.0.0.0/0"], "allowInternet": True}
    rendering = render({**stack("flower", exposure=exposure), "target": EXISTING})
    assert rendering.find("Service", "superlink", "fl")["spec"]["loadBalancerSourceRanges"] == ["0.0.0.0/0"]


# --- image digests --------------------------------------------------------------------------------


def test_image_digests_pin_every_container() -> None:
    config = stack("flower", supernodes=1, isolation="process", nodeAuth=True)
    digests = {f"flwr/{kind}:1.41.0": DIGEST for kind in ("superlink", "supernode", "superexec")}
    rendering = render({**config, "imageDigests": digests})
    images = {c["image"] for o in workloads(rendering) for c in containers(o)}
    assert images == {f"flwr/{kind}:1.41.0@{DIGEST}" for kind in ("superlink", "supernode", "superexec")}


def test_nvflare_and_nfs_images_take_digests_too() -> None:
    config = {
        **stack("nvflare", sites=["s"]),
        "storage": {"shared": {"kind": "nfs"}},
        "imageDigests": {"nvflare/nvflare:2.9.0": DIGEST, "registry.k8s.io/sig-storage/nfs-provisioner:v4.0.8": DIGEST},
    }
    rendering = render(config)
    images = {c["image"] for o in workloads(rendering) for c in containers(o)}
    assert images == {f"nvflare/nvflare:2.9.0@{DIGEST}"}
    (chart,) = rendering.of_type("kubernetes:helm.sh/v4:Chart")
    image = chart["inputs"]["values"]["image"]
    assert f"{image['repository']}:{image['tag']}" == f"registry.k8s.io/sig-storage/nfs-provisioner:v4.0.8@{DIGEST}"
    resources = chart["inputs"]["values"]["resources"]
    assert {"cpu", "memory"} <= set(resources["requests"]) and "memory" in resources["limits"]
    assert rendering.find("LimitRange", "container-defaults", "flstack-nfs")


@pytest.mark.parametrize(
    ("digests", "expected"),
    [
        (
            {"flwr/superlink:1.41.0": "sha256:abc"},
            "flstack:imageDigests.flwr/superlink:1.41.0: expected an image digest such as sha256: followed by 64",
        ),
        (
            {"flwr/superlink:1.40.0": DIGEST},
            "flstack:imageDigests.flwr/superlink:1.40.0: this stack runs no image 'flwr/superlink:1.40.0'; "
            "images it runs: flwr/superlink:1.41.0, flwr/supernode:1.41.0",
        ),
    ],
)
def test_bad_image_digests_are_one_clear_error(digests: dict[str, str], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        render({**stack("flower", supernodes=1), "imageDigests": digests})
    assert expected in str(err.value)


def test_kubeflow_namespaces_get_the_same_baseline() -> None:
    config = stack("kubeflow", image="ghcr.io/example/fedavg:1.0", command=["python3", "-m", "fedavg"])
    config["federations"][0]["kubeflow"]["egress"] = {"cidrs": ["10.20.0.0/16"]}
    rendering = render(config)
    assert rendering.find("LimitRange", "container-defaults", "fl")
    net = Network(rendering.manifests())
    node = ("fl", {"jobset.sigs.k8s.io/jobset-name": "fl"})
    assert net.reaches_address(node, "10.20.0.1", 443)
    assert not net.reaches_address(node, "10.21.0.1", 443)
