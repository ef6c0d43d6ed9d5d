"""The policy pack: every rule with a failing and a passing fixture, its config knobs, the shipped stacks."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from policies import pods
from policies.rules import RULES, STACK_RULES
from tests.helpers import EXISTING, MINIKUBE, render, render_stack
from tools import stack_files

K = "kubernetes:"
DEPLOYMENT = K + "apps/v1:Deployment"
DIGEST = "sha256:" + "ab" * 32


def good_container(**changes: Any) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "c",
        "image": "flwr/superlink:1.41.0",
        "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }
    return {**container, **changes}


def good_pod(**changes: Any) -> dict[str, Any]:
    pod: dict[str, Any] = {
        "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "seccompProfile": {"type": "RuntimeDefault"}},
        "containers": [good_container()],
    }
    return {**pod, **changes}


def with_security(**changes: Any) -> dict[str, Any]:
    container = good_container()
    container["securityContext"] = {**container["securityContext"], **changes}
    return good_pod(containers=[container])


def workload(pod: dict[str, Any], kind: str = "Deployment", namespace: str = "fl") -> tuple[str, dict[str, Any]]:
    """A pod-bearing object of `kind` holding `pod`."""
    group = {"Pod": "core/v1", "Job": "batch/v1", "CronJob": "batch/v1"}.get(kind, "apps/v1")
    meta = {"name": "w", "namespace": namespace}
    spec: dict[str, Any]
    if kind == "Pod":
        spec = pod
    elif kind == "CronJob":
        spec = {"schedule": "@daily", "jobTemplate": {"spec": {"template": {"spec": pod}}}}
    else:
        spec = {"template": {"spec": pod}}
    return f"{K}{group}:{kind}", {"metadata": meta, "spec": spec}


def role(*rules: dict[str, Any], kind: str = "Role") -> tuple[str, dict[str, Any]]:
    return f"{K}rbac.authorization.k8s.io/v1:{kind}", {"metadata": {"name": "r", "namespace": "fl"}, "rules": rules}


def binding(role_name: str) -> tuple[str, dict[str, Any]]:
    props = {"metadata": {"name": "b"}, "roleRef": {"kind": "ClusterRole", "name": role_name}, "subjects": []}
    return f"{K}rbac.authorization.k8s.io/v1:ClusterRoleBinding", props


def namespace(name: str, enforce: str | None) -> tuple[str, dict[str, Any]]:
    labels = {"pod-security.kubernetes.io/enforce": enforce} if enforce else {}
    return f"{K}core/v1:Namespace", {"metadata": {"name": name, "labels": labels}}


def load_balancer(*ranges: str) -> tuple[str, dict[str, Any]]:
    spec = {"type": "LoadBalancer", "loadBalancerSourceRanges": list(ranges)}
    return f"{K}core/v1:Service", {"metadata": {"name": "s", "namespace": "fl"}, "spec": spec}


def config_map(value: str) -> tuple[str, dict[str, Any]]:
    return f"{K}core/v1:ConfigMap", {"metadata": {"name": "m", "namespace": "fl"}, "data": {"k": value}}


def eks(**changes: Any) -> tuple[str, dict[str, Any]]:
    props: dict[str, Any] = {
        "name": "flstack",
        "vpcConfig": {"endpointPublicAccess": True, "publicAccessCidrs": ["203.0.113.0/24"]},
        "encryptionConfig": {"resources": ["secrets"], "provider": {"keyArn": "arn:aws:kms:eu:1:key/k"}},
        "enabledClusterLogTypes": ["api", "audit", "authenticator"],
    }
    return "aws:eks/cluster:Cluster", {**props, **changes}


def launch_template(
    hop_limit: int = 1, tokens: str = "required", encrypted: Any = "true"
) -> tuple[str, dict[str, Any]]:
    props = {
        "name": "lt",
        "metadataOptions": {"httpTokens": tokens, "httpPutResponseHopLimit": hop_limit},
        "blockDeviceMappings": [{"deviceName": "/dev/xvda", "ebs": {"encrypted": encrypted}}],
    }
    return "aws:ec2/launchTemplate:LaunchTemplate", props


NODE_CONFIG = {
    "serviceAccount": "nodes@p.iam.gserviceaccount.com",
    "workloadMetadataConfig": {"mode": "GKE_METADATA"},
    "shieldedInstanceConfig": {"enableSecureBoot": True},
}


def gke(**changes: Any) -> tuple[str, dict[str, Any]]:
    props: dict[str, Any] = {
        "name": "gke",
        "removeDefaultNodePool": True,
        "privateClusterConfig": {"enablePrivateNodes": True},
        "masterAuthorizedNetworksConfig": {"cidrBlocks": [{"cidrBlock": "203.0.113.0/24"}]},
        "workloadIdentityConfig": {"workloadPool": "p.svc.id.goog"},
    }
    return "gcp:container/cluster:Cluster", {**props, **changes}


def node_pool(**changes: Any) -> tuple[str, dict[str, Any]]:
    return "gcp:container/nodePool:NodePool", {"name": "pool", "nodeConfig": {**NODE_CONFIG, **changes}}


# rule -> (failing fixture, expected message, passing fixture)
FIXTURES: dict[str, list[tuple[tuple[str, dict[str, Any]], str, tuple[str, dict[str, Any]]]]] = {
    "flstack-pods-non-root": [
        (workload(good_pod(securityContext={})), "fl/w/c: runAsNonRoot must be true", workload(good_pod())),
        (workload(with_security(runAsUser=0)), "fl/w/c: runAsUser 0 is root", workload(good_pod())),
    ],
    "flstack-pods-no-privilege-escalation": [
        (
            workload(with_security(allowPrivilegeEscalation=True)),
            "fl/w/c: securityContext.allowPrivilegeEscalation must be false",
            workload(good_pod()),
        )
    ],
    "flstack-pods-drop-all-capabilities": [
        (
            workload(with_security(capabilities={})),
            "fl/w/c: securityContext.capabilities.drop must include ALL",
            workload(with_security(capabilities={"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]})),
        ),
        (
            workload(with_security(capabilities={"drop": ["ALL"], "add": ["SYS_ADMIN"]})),
            "fl/w/c: adds capabilities ['SYS_ADMIN']",
            workload(good_pod()),
        ),
    ],
    "flstack-pods-read-only-root": [
        (
            workload(with_security(readOnlyRootFilesystem=False)),
            "fl/w/c: securityContext.readOnlyRootFilesystem must be true",
            workload(good_pod()),
        )
    ],
    "flstack-pods-seccomp": [
        (
            workload(good_pod(securityContext={"runAsNonRoot": True})),
            "fl/w/c: seccompProfile must be RuntimeDefault (got none)",
            workload(good_pod()),
        ),
        (
            workload(with_security(seccompProfile={"type": "Unconfined"})),
            "got Unconfined",
            workload(with_security(seccompProfile={"type": "Localhost", "localhostProfile": "p.json"})),
        ),
    ],
    "flstack-pods-host-isolation": [
        (workload(good_pod(hostNetwork=True)), "fl/w: hostNetwork shares the node's namespace", workload(good_pod())),
        (workload(good_pod(hostPID=True)), "fl/w: hostPID", workload(good_pod())),
        (workload(good_pod(hostIPC=True)), "fl/w: hostIPC", workload(good_pod())),
        (
            workload(good_pod(volumes=[{"name": "root", "hostPath": {"path": "/"}}])),
            "fl/w: volume 'root' is a hostPath",
            workload(good_pod(volumes=[{"name": "tmp", "emptyDir": {}}])),
        ),
        (workload(with_security(privileged=True)), "fl/w/c: privileged", workload(good_pod())),
        (
            workload(good_pod(containers=[good_container(ports=[{"containerPort": 80, "hostPort": 80}])])),
            "fl/w/c: hostPort 80 binds on the node",
            workload(good_pod(containers=[good_container(ports=[{"containerPort": 80}])])),
        ),
    ],
    "flstack-pods-resources": [
        (
            workload(good_pod(containers=[good_container(resources={})])),
            "fl/w/c: resources need requests.cpu, requests.memory, limits.memory",
            workload(good_pod()),
        ),
        (
            workload(good_pod(containers=[good_container(resources={"requests": {"cpu": "1", "memory": "1Gi"}})])),
            "fl/w/c: resources need limits.memory",
            workload(good_pod()),
        ),
    ],
    "flstack-pods-pinned-images": [
        (
            workload(good_pod(containers=[good_container(image="nvflare/nvflare:latest")])),
            "fl/w/c: image 'nvflare/nvflare:latest' must be pinned to a version",
            workload(good_pod(containers=[good_container(image=f"registry.k8s.io/x@{DIGEST}")])),
        ),
        (
            workload(good_pod(containers=[good_container(image="registry:5000/flwr/superlink")])),
            "must be pinned to a version",
            workload(good_pod()),
        ),
    ],
    "flstack-pods-allowed-registries": [
        (
            workload(good_pod(containers=[good_container(image="evil.example.com/flwr/superlink:1.41.0")])),
            "fl/w/c: registry 'evil.example.com' is not allowed",
            workload(good_pod(containers=[good_container(image="registry.k8s.io/x:1")])),
        )
    ],
    "flstack-rbac-no-wildcards": [
        (
            role({"apiGroups": [""], "resources": ["pods"], "verbs": ["*"]}),
            "fl/r: rules[0].verbs contains '*'",
            role({"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "get"]}),
        ),
        (
            role({"apiGroups": [""], "resources": ["*"], "verbs": ["get"]}, kind="ClusterRole"),
            "rules[0].resources contains '*'",
            role({"apiGroups": [""], "resources": ["events"], "verbs": ["list"]}, kind="ClusterRole"),
        ),
    ],
    "flstack-rbac-no-secret-reads": [
        (
            role({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get", "list"]}),
            "fl/r: rules[0] lets it get/list Secrets",
            role({"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "patch", "update"]}),
        )
    ],
    "flstack-rbac-no-cluster-admin": [(binding("cluster-admin"), "b: binds cluster-admin", binding("view"))],
    "flstack-namespaces-restricted": [
        (
            namespace("fl", "baseline"),
            "fl: label pod-security.kubernetes.io/enforce must be 'restricted' (got 'baseline')",
            namespace("fl", "restricted"),
        ),
        (namespace("fl", None), "got None", namespace("flstack-nfs", "privileged")),
    ],
    "flstack-restricted-load-balancers": [
        (
            load_balancer(),
            "fl/s: LoadBalancer Service needs spec.loadBalancerSourceRanges",
            load_balancer("10.0.0.0/8"),
        ),
        (
            load_balancer("0.0.0.0/0"),
            "fl/s: loadBalancerSourceRanges '0.0.0.0/0' admits the whole internet",
            load_balancer("203.0.113.0/24"),
        ),
        (load_balancer("::/0"), "'::/0' admits the whole internet", load_balancer("2001:db8::/32")),
    ],
    "flstack-no-keys-in-config-maps": [
        (
            config_map("-----BEGIN EC PRIVATE KEY-----"),
            "fl/m: data.k holds a private key; use a Secret",
            config_map("-----BEGIN CERTIFICATE-----"),
        )
    ],
    "flstack-eks-endpoint": [
        (eks(vpcConfig={"endpointPublicAccess": True}), "flstack: public endpoint without", eks()),
        (
            eks(vpcConfig={"publicAccessCidrs": ["0.0.0.0/0"]}),
            "flstack: publicAccessCidrs '0.0.0.0/0' admits the whole internet",
            eks(vpcConfig={"endpointPublicAccess": False, "endpointPrivateAccess": True}),
        ),
    ],
    "flstack-eks-secrets-encryption": [
        (eks(encryptionConfig=None), "flstack: encryptionConfig must encrypt 'secrets' with a KMS key", eks())
    ],
    "flstack-eks-control-plane-logs": [
        (eks(enabledClusterLogTypes=["api"]), "flstack: enabledClusterLogTypes is missing audit, authenticator", eks())
    ],
    "flstack-eks-imdsv2": [
        (launch_template(tokens="optional"), "lt: metadataOptions.httpTokens must be 'required'", launch_template()),
        (launch_template(hop_limit=2), "lt: metadataOptions.httpPutResponseHopLimit must be 1", launch_template()),
    ],
    "flstack-encrypted-volumes": [
        (launch_template(encrypted="false"), "lt: block device /dev/xvda is not encrypted", launch_template()),
        (
            ("aws:efs/fileSystem:FileSystem", {"name": "fs"}),
            "fs: EFS file system must be encrypted",
            ("aws:efs/fileSystem:FileSystem", {"name": "fs", "encrypted": True}),
        ),
        (
            (K + "storage.k8s.io/v1:StorageClass", {"metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com"}),
            "gp3: EBS StorageClass needs parameters.encrypted 'true'",
            (
                K + "storage.k8s.io/v1:StorageClass",
                {"metadata": {"name": "gp3"}, "provisioner": "ebs.csi.aws.com", "parameters": {"encrypted": "true"}},
            ),
        ),
    ],
    "flstack-kms-rotation": [
        (
            ("aws:kms/key:Key", {"description": "secrets"}),
            "secrets: enableKeyRotation must be true",
            ("aws:kms/key:Key", {"description": "secrets", "enableKeyRotation": True}),
        )
    ],
    "flstack-gke-cluster": [
        (gke(privateClusterConfig={}), "gke: privateClusterConfig.enablePrivateNodes must be true", gke()),
        (gke(masterAuthorizedNetworksConfig=None), "gke: masterAuthorizedNetworksConfig must limit", gke()),
        (
            gke(
                masterAuthorizedNetworksConfig=None,
                controlPlaneEndpointsConfig={"ipEndpointsConfig": {"enabled": True}},
            ),
            "gke: masterAuthorizedNetworksConfig must limit",
            # The IP endpoint off: only the DNS endpoint remains, and IAM decides who gets through it.
            gke(
                masterAuthorizedNetworksConfig=None,
                controlPlaneEndpointsConfig={
                    "dnsEndpointConfig": {"allowExternalTraffic": True},
                    "ipEndpointsConfig": {"enabled": False},
                },
            ),
        ),
        (
            gke(masterAuthorizedNetworksConfig={"cidrBlocks": [{"cidrBlock": "0.0.0.0/0"}]}),
            "gke: authorized network '0.0.0.0/0' admits the whole internet",
            gke(),
        ),
        (gke(workloadIdentityConfig=None), "gke: workloadIdentityConfig.workloadPool must be set", gke()),
        (gke(enableShieldedNodes=False), "gke: enableShieldedNodes must not be false", gke(enableShieldedNodes=True)),
        (
            gke(removeDefaultNodePool=False, nodeConfig={**NODE_CONFIG, "serviceAccount": ""}),
            "gke: nodeConfig.serviceAccount must be a dedicated service account",
            gke(removeDefaultNodePool=False, nodeConfig=NODE_CONFIG),
        ),
    ],
    "flstack-gke-node-pools": [
        (
            node_pool(serviceAccount="1234-compute@developer.gserviceaccount.com"),
            "pool: nodeConfig.serviceAccount must be a dedicated service account, not the default Compute one",
            node_pool(),
        ),
        (node_pool(workloadMetadataConfig={"mode": "GCE_METADATA"}), "must be GKE_METADATA", node_pool()),
        (node_pool(shieldedInstanceConfig={}), "enableSecureBoot must be true", node_pool()),
    ],
}
CASES = [(name, *case) for name, cases in FIXTURES.items() for case in cases]


def test_every_rule_has_fixtures() -> None:
    assert sorted(FIXTURES) == sorted(RULES)


@pytest.mark.parametrize(("rule", "bad", "message", "good"), CASES, ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_rule_fails_the_bad_fixture_and_passes_the_good_one(
    rule: str, bad: tuple[str, dict[str, Any]], message: str, good: tuple[str, dict[str, Any]]
) -> None:
    found = RULES[rule].run(*bad)
    assert any(message in line for line in found), found
    assert RULES[rule].run(*good) == []
    others = [(name, m) for name, other in RULES.items() if name != rule for m in other.run(*good)]
    assert others == []  # the passing fixture is clean for the whole pack, not just this rule


@pytest.mark.parametrize("kind", sorted(pods.POD_SPEC_PATHS))
def test_every_pod_bearing_kind_is_checked(kind: str) -> None:
    bad = workload(good_pod(securityContext={}, containers=[good_container(resources={})]), kind=kind)
    assert RULES["flstack-pods-non-root"].run(*bad) and RULES["flstack-pods-resources"].run(*bad)
    assert all(rule.run(*workload(good_pod(), kind=kind)) == [] for rule in RULES.values())


def test_init_containers_are_checked_too() -> None:
    pod = good_pod(initContainers=[good_container(name="init", securityContext={})])
    assert "fl/w/init: securityContext.allowPrivilegeEscalation must be false" in RULES[
        "flstack-pods-no-privilege-escalation"
    ].run(*workload(pod))


# --- config knobs ---------------------------------------------------------------------------------


def test_the_nfs_provisioner_namespace_is_exempt_by_default_and_configurably() -> None:
    """nfs-server-provisioner runs as root with added capabilities: its chart's children live in flstack-nfs."""
    root_with_caps = copy.deepcopy(good_pod(securityContext={}))
    root_with_caps["containers"][0]["securityContext"] = {"capabilities": {"add": ["DAC_READ_SEARCH", "SYS_RESOURCE"]}}
    chart_child = workload(root_with_caps, kind="StatefulSet", namespace="flstack-nfs")
    pod_rules = [RULES[name] for name in RULES if name.startswith("flstack-pods-")]
    assert all(rule.run(*chart_child) == [] for rule in pod_rules)
    assert RULES["flstack-pods-non-root"].run(*chart_child, {"exemptNamespaces": []})
    elsewhere = workload(root_with_caps, kind="StatefulSet", namespace="fl")
    assert RULES["flstack-pods-non-root"].run(*elsewhere, {"exemptNamespaces": ["fl"]}) == []
    assert RULES["flstack-pods-drop-all-capabilities"].run(*elsewhere)


def test_registries_and_digests_are_configurable() -> None:
    mirror = workload(good_pod(containers=[good_container(image=f"mirror.corp:5000/flwr/superlink:1.41.0@{DIGEST}")]))
    assert RULES["flstack-pods-allowed-registries"].run(*mirror)
    assert RULES["flstack-pods-allowed-registries"].run(*mirror, {"registries": ["mirror.corp:5000"]}) == []
    tagged = workload(good_pod())
    assert RULES["flstack-pods-pinned-images"].run(*tagged, {"requireDigest": True}) == [
        "fl/w/c: image 'flwr/superlink:1.41.0' must be pinned by digest (@sha256:...)"
    ]
    assert RULES["flstack-pods-pinned-images"].run(*mirror, {"requireDigest": True}) == []


def test_secret_readers_and_open_load_balancers_can_be_allowed_on_purpose() -> None:
    reader = role({"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"]})
    assert RULES["flstack-rbac-no-secret-reads"].run(*reader, {"allowedRoles": ["fl/r"]}) == []
    assert RULES["flstack-restricted-load-balancers"].run(*load_balancer("0.0.0.0/0"), {"allowInternet": True}) == []
    assert RULES["flstack-eks-control-plane-logs"].run(*eks(), {"requiredLogTypes": ["scheduler"]})


def test_every_config_knob_has_a_default_and_a_description() -> None:
    for rule in [*RULES.values(), *STACK_RULES.values()]:
        for key, schema in rule.config.items():
            assert "default" in schema and schema.get("description"), (rule.name, key)
            assert key != "enforcementLevel"  # reserved by the engine


# --- the stack policy -----------------------------------------------------------------------------

DENY_ALL: tuple[str, dict[str, Any]] = (
    K + "networking.k8s.io/v1:NetworkPolicy",
    {
        "metadata": {"name": "default-deny", "namespace": "fl"},
        "spec": {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]},
    },
)


def test_namespaces_with_workloads_need_default_deny_both_ways() -> None:
    rule = STACK_RULES["flstack-namespaces-default-deny"]
    pod = workload(good_pod())
    message = "namespace fl: runs workloads without a default-deny (podSelector {}, Ingress and Egress) policy"
    assert rule.run([pod]) == [message]
    ingress_only = copy.deepcopy(DENY_ALL)
    ingress_only[1]["spec"]["policyTypes"] = ["Ingress"]
    assert rule.run([pod, ingress_only]) == [message]
    not_a_default = copy.deepcopy(DENY_ALL)
    not_a_default[1]["spec"]["egress"] = [{}]  # "allow all egress" is not a default deny
    assert rule.run([pod, not_a_default]) == [message]
    assert rule.run([pod, DENY_ALL]) == []
    assert rule.run([workload(good_pod(), namespace="flstack-nfs")]) == []  # the NFS chart's namespace: exempt


# --- the shipped stacks ---------------------------------------------------------------------------


def pack_violations(rows: list[dict[str, Any]], config: dict[str, Any] | None = None) -> list[str]:
    found = [
        f"{name}: {m}"
        for row in rows
        for name, rule in RULES.items()
        for m in rule.run(row["type"], row["inputs"], config)
    ]
    resources = [(row["type"], row["inputs"]) for row in rows]
    return found + [f"{name}: {m}" for name, rule in STACK_RULES.items() for m in rule.run(resources, config)]


@pytest.mark.parametrize("stack", stack_files.stack_names())
def test_shipped_stacks_comply(stack: str) -> None:
    assert pack_violations(render_stack(stack).resources()) == []


# --- the findings of issue 12 would have been caught ------------------------------------------------


def flower_rows(**settings: Any) -> list[dict[str, Any]]:
    # minikube refuses LoadBalancer exposure; an existing cluster may have a load-balancer controller.
    target = EXISTING if settings.get("exposure", {}).get("type") == "LoadBalancer" else MINIKUBE
    config = {"target": target, "federations": [{"name": "fl", "framework": "flower", "flower": settings}]}
    return copy.deepcopy(render(config).resources())


def row_of(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    (row,) = [r for r in rows if r["name"] == name]
    return row


def strip_resources(row: dict[str, Any], container: str) -> None:
    """What the code before issue 12 wrote for this container: no resources at all."""
    pod = pods.pod_spec(row["type"], row["inputs"]) or {}
    for c in pod["containers"]:
        if c["name"] == container:
            del c["resources"]


def test_the_pack_catches_containers_without_resources_as_they_were() -> None:
    rows = flower_rows(groups=[{"name": "gpu", "resources": {"gpus": 1}}], isolation="process", nodeAuth=True)
    assert pack_violations(rows) == []
    strip_resources(row_of(rows, "statefulset:fl/supernodes-gpu-0"), "superexec")  # the ClientApp sidecar
    strip_resources(row_of(rows, "deployment:fl/superexec-serverapp"), "superexec")
    strip_resources(row_of(rows, "job:fl/register-supernodes"), "register")
    assert sorted(pack_violations(rows)) == [
        "flstack-pods-resources: fl/register-supernodes/register: resources need requests.cpu, requests.memory, "
        "limits.memory",
        "flstack-pods-resources: fl/superexec-serverapp/superexec: resources need requests.cpu, requests.memory, "
        "limits.memory",
        "flstack-pods-resources: fl/supernodes-gpu-0/superexec: resources need requests.cpu, requests.memory, "
        "limits.memory",
    ]


def test_the_pack_catches_ingress_only_namespaces_as_they_were() -> None:
    rows = flower_rows(supernodes=1)
    deny = row_of(rows, "networkpolicy:fl/default-deny")
    deny["inputs"]["spec"]["policyTypes"] = ["Ingress"]  # the code before issue 12: deny_ingress only
    assert pack_violations(rows) == [
        "flstack-namespaces-default-deny: namespace fl: runs workloads without a default-deny "
        "(podSelector {}, Ingress and Egress) policy"
    ]


def test_the_pack_catches_an_open_load_balancer_even_when_the_stack_acknowledged_it() -> None:
    exposure = {"type": "LoadBalancer", "sourceRanges": ["0.0.0.0/0"], "allowInternet": True}
    rows = flower_rows(exposure=exposure)
    assert pack_violations(rows) == [
        "flstack-restricted-load-balancers: fl/superlink: "
        "loadBalancerSourceRanges '0.0.0.0/0' admits the whole internet"
    ]
    assert pack_violations(rows, {"allowInternet": True}) == []  # the pack's own acknowledgement


def test_the_pack_can_require_digests_and_the_stack_can_give_them() -> None:
    rows = flower_rows(supernodes=1)
    # superlink and supernode images, tags only: the SuperLink's, the verification Job's, the SuperNodes'
    assert len(pack_violations(rows, {"requireDigest": True})) == 3
    config = {
        "target": MINIKUBE,
        "federations": [{"name": "fl", "framework": "flower", "flower": {"supernodes": 1}}],
        "imageDigests": {"flwr/superlink:1.41.0": DIGEST, "flwr/supernode:1.41.0": DIGEST},
    }
    assert pack_violations(render(config).resources(), {"requireDigest": True}) == []


# --- the pack as the engine runs it ---------------------------------------------------------------


def test_the_pack_wires_every_rule_with_its_level_severity_and_config() -> None:
    from pulumi_policy import (
        EnforcementLevel,
        PolicyCustomTimeouts,
        PolicyResourceOptions,
        ResourceValidationArgs,
        ResourceValidationPolicy,
        StackValidationArgs,
        StackValidationPolicy,
    )

    from policies.pack import policies

    built = {p.name: p for p in policies()}
    assert sorted(built) == sorted([*RULES, *STACK_RULES])
    assert all(p.enforcement_level == EnforcementLevel.MANDATORY for p in built.values())
    registries = built["flstack-pods-allowed-registries"]
    assert isinstance(registries, ResourceValidationPolicy) and registries.config_schema is not None
    assert "registries" in registries.config_schema.properties

    opts = PolicyResourceOptions(False, [], None, [], PolicyCustomTimeouts(0, 0, 0), [])
    resource_type, props = workload(good_pod(containers=[good_container(image="mirror.corp/x:1")]))
    reported: list[str] = []

    def args(config: dict[str, Any]) -> ResourceValidationArgs:
        return ResourceValidationArgs(resource_type, props, "urn:w", "w", opts, None, config)

    validate = registries.validate
    assert callable(validate)
    validate(args({}), lambda message, urn: reported.append(message))
    validate(args({"registries": ["mirror.corp"]}), lambda message, urn: reported.append(message))
    assert reported == [
        "fl/w/c: registry 'mirror.corp' is not allowed (allowed: docker.io, registry.k8s.io, "
        "ghcr.io, nvcr.io, public.ecr.aws, quay.io)"
    ]

    stack_policy = built["flstack-namespaces-default-deny"]
    assert isinstance(stack_policy, StackValidationPolicy) and callable(stack_policy.validate)
    stack_reported: list[str] = []
    stack_policy.validate(StackValidationArgs([], {}), lambda message, urn: stack_reported.append(message))
    assert stack_reported == []


def test_the_pack_starts_as_the_cli_would_start_it() -> None:
    """`pulumi preview --policy-pack policies` runs policies/__main__.py there; it serves and prints its port."""
    import subprocess
    import sys
    from pathlib import Path

    pack_dir = Path(__file__).resolve().parents[2] / "policies"
    proc = subprocess.Popen(
        [sys.executable, "__main__.py"], cwd=pack_dir, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        port = proc.stdout.readline().strip()
        assert port.isdigit(), proc.stderr.read() if proc.stderr else port
    finally:
        proc.kill()
        proc.wait(timeout=30)


def test_the_readme_lists_every_rule() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    assert [name for name in [*RULES, *STACK_RULES] if f"| `{name}` |" not in readme] == []
