"""The Flower component's rendered objects: what the SuperLink and SuperNodes really get."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.config import ConfigError
from tests.helpers import EXISTING, MINIKUBE, render, schema_errors


def flower(**settings: Any) -> dict[str, Any]:
    return {"target": MINIKUBE, "federations": [{"name": "fl", "framework": "flower", "flower": settings}]}


def args_of(rendering: Any, kind: str, name: str) -> list[str]:
    obj = rendering.find(kind, name, "fl")
    return list(obj["spec"]["template"]["spec"]["containers"][0]["args"])


def flag(args: list[str], name: str) -> str:
    return args[args.index(name) + 1]


BAD = [
    ({"supernodes": "two"}, "flstack:federations[0].flower.supernodes: expected an integer >= 1, got 'two'"),
    ({"supernodes": 0}, "flstack:federations[0].flower.supernodes: expected an integer >= 1, got 0"),
    ({"isolation": "thread"}, "flstack:federations[0].flower.isolation: expected one of 'subprocess', 'process'"),
    ({"supernode": 2}, "flstack:federations[0].flower.supernode: unknown key; did you mean 'supernodes'?"),
    (
        {"supernodes": 2, "groups": [{"name": "gpu"}]},
        "flstack:federations[0].flower.supernodes: set either supernodes (one default group) or groups",
    ),
    (
        {"groups": [{"name": "a"}, {"name": "a"}]},
        "flstack:federations[0].flower.groups: group name 'a' is used twice",
    ),
    (
        {"exposure": {"type": "LoadBalancer"}},
        "flstack:federations[0].flower.exposure.sourceRanges: required with type 'LoadBalancer'",
    ),
    (
        {"exposure": {"type": "NodePort", "nodePort": 80}},
        "flstack:federations[0].flower.exposure.nodePort: expected an integer >= 30000 and <= 32767, got 80",
    ),
    (
        {"allowedCidrs": ["10.0.0.0"]},
        "flstack:federations[0].flower.allowedCidrs[0]: expected a CIDR such as 203.0.113.0/24, got '10.0.0.0'",
    ),
    ({"nodeConfig": {"lr": [1]}}, "flstack:federations[0].flower.nodeConfig.lr: expected a string, number or boolean"),
    (
        {"nodeConfig": {"partition-id": 7}},
        "flstack:federations[0].flower.nodeConfig.partition-id: is set by flstack for each SuperNode",
    ),
    (
        {"groups": [{"name": "g", "nodeConfig": {"a b": 1}}]},
        "flstack:federations[0].flower.groups[0].nodeConfig.a b: expected a key of letters",
    ),
    (
        {"allowedCidrs": ["999.1.1.1/99"]},
        "flstack:federations[0].flower.allowedCidrs[0]: expected a CIDR such as 203.0.113.0/24, got '999.1.1.1/99'",
    ),
    (
        {"exposure": {"type": "ClusterIP", "hostnames": ["*.example.org"]}},
        "flstack:federations[0].flower.exposure.hostnames[0]: expected a DNS name or an IP address (no wildcards)",
    ),
    (
        {"exposure": {"type": "NodePort"}},
        "flstack:federations[0].flower.allowedCidrs: required with exposure type 'NodePort'",
    ),
    (
        {"groups": [{"name": "g", "tolerations": [{"key": "k", "operator": "Exists", "value": "v"}]}]},
        "flstack:federations[0].flower.groups[0].tolerations[0].value: must be empty when operator is 'Exists'",
    ),
]


@pytest.mark.parametrize(("settings", "expected"), BAD)
def test_bad_flower_settings_are_clear_errors(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(flower(**settings))
    assert expected in str(err.value)


def test_resource_count_does_not_grow_with_supernodes() -> None:
    small, large = render(flower(supernodes=2)), render(flower(supernodes=1000))
    assert small.counts() == large.counts()
    node_config = flag(args_of(large, "StatefulSet", "supernodes-default"), "--node-config")
    assert node_config == "partition-id=$(PARTITION_ID) num-partitions=1000"
    assert large.find("StatefulSet", "supernodes-default")["spec"]["replicas"] == 1000


def test_partition_id_comes_from_the_pod_index() -> None:
    sts = render(flower()).find("StatefulSet", "supernodes-default")
    env = {e["name"]: e for e in sts["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert (
        env["PARTITION_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.labels['apps.kubernetes.io/pod-index']"
    )
    assert sts["spec"]["ordinals"] == {"start": 0}


def test_groups_take_consecutive_partitions_and_their_own_shape() -> None:
    rendering = render(
        flower(
            groups=[
                {"name": "cpu", "replicas": 3, "resources": {"cpu": "1", "memory": "2Gi"}},
                {
                    "name": "gpu",
                    "replicas": 2,
                    "resources": {"gpus": 1, "memory": "16Gi"},
                    "nodeSelector": {"nvidia.com/gpu.present": "true"},
                    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                    "nodeConfig": {"device": "cuda"},
                },
            ],
            nodeConfig={"batch-size": 32},
        )
    )
    cpu, gpu = rendering.find("StatefulSet", "supernodes-cpu"), rendering.find("StatefulSet", "supernodes-gpu")
    assert (cpu["spec"]["ordinals"]["start"], gpu["spec"]["ordinals"]["start"]) == (0, 3)
    gpu_args = args_of(rendering, "StatefulSet", "supernodes-gpu")
    assert (
        flag(gpu_args, "--node-config") == 'partition-id=$(PARTITION_ID) num-partitions=5 batch-size=32 device="cuda"'
    )
    pod = gpu["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert pod["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    # Each StatefulSet selects only its own group's pods.
    assert cpu["spec"]["selector"]["matchLabels"] != gpu["spec"]["selector"]["matchLabels"]
    assert "nodeSelector" not in cpu["spec"]["template"]["spec"]


def test_tls_is_on_by_default_with_every_service_name_and_loopback_in_the_certificate() -> None:
    rendering = render(flower())
    args = args_of(rendering, "Deployment", "superlink")
    assert flag(args, "--ssl-certfile") == "/etc/flwr/tls/tls.crt" and "--insecure" not in args
    mounts = rendering.find("Deployment", "superlink")["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    assert {"name": "tls", "mountPath": "/etc/flwr/tls", "readOnly": True} in mounts
    (csr,) = rendering.of_type("tls:index/certRequest:CertRequest")
    assert csr["inputs"]["dnsNames"] == [
        "superlink",
        "superlink.fl",
        "superlink.fl.svc",
        "superlink.fl.svc.cluster.local",
    ]
    assert csr["inputs"]["ipAddresses"] == ["127.0.0.1"]
    node_args = args_of(rendering, "StatefulSet", "supernodes-default")
    assert flag(node_args, "--superlink") == "superlink.fl.svc.cluster.local:8000"
    assert flag(node_args, "--root-certificates") == "/etc/flwr/ca/ca.crt"
    # SuperNodes get the CA only, never the server key.
    volumes = rendering.find("StatefulSet", "supernodes-default")["spec"]["template"]["spec"]["volumes"]
    assert {"name": "ca", "configMap": {"name": "flower-ca"}} in volumes
    assert not any("secret" in v for v in volumes)


def test_insecure_must_be_asked_for_and_then_has_no_certificates() -> None:
    rendering = render(flower(insecure=True))
    assert "--insecure" in args_of(rendering, "Deployment", "superlink")
    assert "--insecure" in args_of(rendering, "StatefulSet", "supernodes-default")
    assert rendering.of_type("tls:index/locallySignedCert:LocallySignedCert") == []
    probe = rendering.find("Deployment", "superlink")["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
    assert probe["httpGet"]["scheme"] == "HTTP"


def test_state_survives_restarts_and_destroy() -> None:
    rendering = render(flower())
    args = args_of(rendering, "Deployment", "superlink")
    assert flag(args, "--database") == "/var/lib/flwr/state.db"
    (pvc,) = rendering.of_type("kubernetes:core/v1:PersistentVolumeClaim")
    assert pvc["options"]["retainOnDelete"] is True
    # Deleting a namespace deletes its claims: the namespace holding the database is retained too.
    (namespace,) = rendering.of_type("kubernetes:core/v1:Namespace")
    assert namespace["options"]["retainOnDelete"] is True
    assert pvc["inputs"]["spec"]["storageClassName"] == "standard"  # minikube's RWO class
    assert rendering.find("Deployment", "superlink")["spec"]["strategy"] == {"type": "Recreate"}


def test_pods_are_non_root_read_only_and_drop_capabilities() -> None:
    rendering = render(flower(nodeAuth=True, isolation="process"))
    workloads = [o for o in rendering.manifests() if o["kind"] in ("Deployment", "StatefulSet", "Job")]
    # SuperLink, SuperExec, registration Job, a StatefulSet per SuperNode, the verification Job
    assert len(workloads) == 6
    for obj in workloads:
        pod = obj["spec"]["template"]["spec"]
        assert pod["securityContext"]["runAsUser"] == 49999 and pod["securityContext"]["runAsNonRoot"]
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert pod["automountServiceAccountToken"] is False
        for container in pod["containers"]:
            sc = container["securityContext"]
            assert sc["readOnlyRootFilesystem"] and not sc["allowPrivilegeEscalation"]
            assert sc["capabilities"] == {"drop": ["ALL"]}
            assert container["image"].endswith(":1.41.0")
    ns = rendering.find("Namespace", "fl")
    assert ns["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


def test_only_this_federations_supernodes_and_listed_cidrs_reach_the_superlink() -> None:
    rendering = render(flower(allowedCidrs=["198.51.100.0/24"]))
    policy = rendering.find("NetworkPolicy", "superlink-ingress", "fl")
    (rule,) = policy["spec"]["ingress"]
    assert rule["ports"] == [{"protocol": "TCP", "port": 8000}]
    peers = rule["from"]
    assert {"ipBlock": {"cidr": "198.51.100.0/24"}} in peers
    selectors = [p["podSelector"]["matchLabels"] for p in peers if "podSelector" in p]
    assert all(s["app.kubernetes.io/part-of"] == "fl" for s in selectors)
    # The verification Job's pod too (verify defaults to true on minikube), and nothing more.
    assert {s["app.kubernetes.io/component"] for s in selectors} == {"supernode", "superexec", "verify"}
    deny = rendering.find("NetworkPolicy", "default-deny", "fl")
    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_load_balancer_exposure_limits_sources_and_signs_external_names() -> None:
    lb = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"], "hostnames": ["fl.example.org"]}
    rendering = render({**flower(exposure=lb), "target": EXISTING})
    svc = rendering.find("Service", "superlink", "fl")["spec"]
    assert svc["type"] == "LoadBalancer" and svc["loadBalancerSourceRanges"] == ["203.0.113.0/24"]
    assert svc["externalTrafficPolicy"] == "Local"
    (csr,) = rendering.of_type("tls:index/certRequest:CertRequest")
    assert "fl.example.org" in csr["inputs"]["dnsNames"]
    policy = rendering.find("NetworkPolicy", "superlink-ingress", "fl")
    assert {"ipBlock": {"cidr": "203.0.113.0/24"}} in policy["spec"]["ingress"][0]["from"]


def test_node_auth_gives_each_supernode_only_its_own_key() -> None:
    rendering = render(flower(nodeAuth=True, supernodes=3))
    assert "--enable-supernode-auth" in args_of(rendering, "Deployment", "superlink")
    keys = [k for k in rendering.of_type("tls:index/privateKey:PrivateKey") if "supernode" in k["name"]]
    assert len(keys) == 3 and all(k["inputs"] == {"algorithm": "ECDSA", "ecdsaCurve": "P384"} for k in keys)
    selectors = []
    for partition in range(3):
        sts = rendering.find("StatefulSet", f"supernodes-default-{partition}", "fl")
        assert (sts["spec"]["replicas"], sts["spec"]["ordinals"]["start"]) == (1, partition)
        args = sts["spec"]["template"]["spec"]["containers"][0]["args"]
        assert flag(args, "--auth-supernode-private-key") == "/etc/flwr/auth/node.key"
        assert flag(args, "--node-config") == "partition-id=$(PARTITION_ID) num-partitions=3"
        secrets = [v["secret"]["secretName"] for v in sts["spec"]["template"]["spec"]["volumes"] if "secret" in v]
        assert secrets == [f"supernode-{partition}-auth"]
        selectors.append(sts["spec"]["selector"]["matchLabels"])
    assert len({tuple(sorted(sel.items())) for sel in selectors}) == 3  # no StatefulSet adopts another's pod
    for partition in range(3):
        secret = rendering.find("Secret", f"supernode-{partition}-auth", "fl")
        assert set(secret["stringData"]) == {"node.key"}
    row = next(r for r in rendering.resources() if r["name"] == "secret:fl/supernode-0-auth")
    assert row["inputs"]["stringData"] == "[secret]"
    # The registration Job sees public keys only, and runs once the SuperLink is ready.
    job = rendering.find("Job", "register-supernodes", "fl")
    volumes = job["spec"]["template"]["spec"]["volumes"]
    assert {"name": "auth", "configMap": {"name": "supernode-public-keys"}} in volumes
    assert not any("secret" in v for v in volumes)
    public = rendering.find("ConfigMap", "supernode-public-keys", "fl")["data"]
    assert sorted(public) == ["node-0.pub", "node-1.pub", "node-2.pub"]
    job_row = next(r for r in rendering.resources() if r["name"] == "job:fl/register-supernodes")
    assert "kubernetes:apps/v1:Deployment::deployment:fl/superlink" in job_row["options"]["dependsOn"]


def test_pods_roll_when_the_files_they_mount_change() -> None:
    """A re-issued certificate changes the pod template (the annotation), so the Deployment rolls."""
    from tests.e2e.real_tls import mocks_with_real_tls

    def annotation(rendering: Any, kind: str, name: str) -> str:
        template = rendering.find(kind, name, "fl")["spec"]["template"]["metadata"]
        return str(template["annotations"]["flstack.dev/files-sha256"])

    first, second = render(flower(), mocks_with_real_tls()), render(flower(), mocks_with_real_tls())
    assert annotation(first, "Deployment", "superlink") != annotation(second, "Deployment", "superlink")
    assert annotation(first, "StatefulSet", "supernodes-default") != annotation(
        second, "StatefulSet", "supernodes-default"
    )
    same_a, same_b = render(flower()), render(flower())  # same certificates: nothing rolls
    assert annotation(same_a, "Deployment", "superlink") == annotation(same_b, "Deployment", "superlink")
    assert (
        "annotations"
        not in render(flower(insecure=True)).find("Deployment", "superlink")["spec"]["template"]["metadata"]
    )


def test_outputs_give_a_ready_flwr_config() -> None:
    outputs = render(flower()).outputs()["federations"]["fl"]
    assert outputs["superlinkAddress"] == "superlink.fl.svc.cluster.local:8000"
    assert (
        '[superlink.fl]\naddress = "superlink.fl.svc.cluster.local:8000"\nroot-certificates = "@CA_FILE@"'
        in (outputs["flwrConfig"])
    )
    assert outputs["caCertificate"].startswith("-----BEGIN CERTIFICATE-----")


@pytest.mark.parametrize(
    "settings",
    [
        {},
        {"insecure": True, "exposure": {"type": "NodePort", "nodePort": 30800}, "allowedCidrs": ["198.51.100.0/24"]},
        {"nodeAuth": True, "isolation": "process", "installAppDependencies": True},
        {"groups": [{"name": "gpu", "resources": {"gpus": 2}, "tolerations": [{"key": "gpu", "value": "yes"}]}]},
        {"exposure": {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}},
    ],
    ids=["default", "insecure-nodeport", "auth-process", "groups", "loadbalancer"],
)
def test_every_variant_is_schema_valid(settings: dict[str, Any]) -> None:
    rendering = render({**flower(**settings), "target": EXISTING})
    errors = [e for obj in rendering.manifests() for e in schema_errors(obj, "1.34.0")]
    assert errors == [], json.dumps(errors, indent=1)


def test_shared_data_is_a_read_write_many_claim_on_the_shared_class_mounted_by_every_supernode() -> None:
    config = {**flower(sharedData={"size": "50Gi"}), "storage": {"shared": {"kind": "nfs"}}}
    rendering = render(config)
    claim = rendering.find("PersistentVolumeClaim", "shared-data", "fl")
    assert claim["spec"]["accessModes"] == ["ReadWriteMany"]
    assert claim["spec"]["storageClassName"] == "shared-nfs"
    assert claim["spec"]["resources"]["requests"]["storage"] == "50Gi"
    row = next(r for r in rendering.resources() if r["name"] == "persistentvolumeclaim:fl/shared-data")
    assert row["options"]["retainOnDelete"] is True
    pod = rendering.find("StatefulSet", "supernodes-default", "fl")["spec"]["template"]["spec"]
    assert {"name": "data", "mountPath": "/data", "readOnly": True} in pod["containers"][0]["volumeMounts"]
    assert {"name": "data", "persistentVolumeClaim": {"claimName": "shared-data"}} in pod["volumes"]


def test_shared_data_without_shared_storage_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"flstack:federations\[0\]\.flower\.sharedData: needs ReadWriteMany storage"):
        render(flower(sharedData={}))


def test_load_balancers_keep_client_ips_on_every_target() -> None:
    """On EKS the in-tree default (a Classic ELB) would hide client IPs from the NetworkPolicy: ask for an NLB."""
    from tests.helpers import EKS

    lb = {"exposure": {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}}
    on_eks = render({**flower(**lb), "target": EKS}).find("Service", "superlink", "fl")
    assert on_eks["metadata"]["annotations"] == {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
    assert on_eks["spec"]["externalTrafficPolicy"] == "Local"
    on_existing = render({**flower(**lb), "target": EXISTING}).find("Service", "superlink", "fl")
    assert "annotations" not in on_existing["metadata"]
    cluster_ip_on_eks = render({**flower(), "target": EKS}).find("Service", "superlink", "fl")
    assert "annotations" not in cluster_ip_on_eks["metadata"]
