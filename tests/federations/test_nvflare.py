"""The NVFlare component as rendered offline: settings errors, pod hardening, RBAC, policies, storage."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from typing import Any

import pytest

from components import kube
from components.config import ConfigError, parse
from components.federations import nvflare, nvflare_kits
from tests.helpers import EXISTING, MINIKUBE, by_name, render
from tools import diff, stack_files
from tools.mock_runtime import OfflineMocks, plain
from tools.render import Rendering


def config(*federations: dict[str, Any], **settings: Any) -> dict[str, Any]:
    """One federation `demo` with two sites unless federations are given."""
    if not federations:
        federations = (
            {"name": "demo", "framework": "nvflare", "nvflare": {"sites": ["site-1", "site-2"], **settings}},
        )
    return {"target": MINIKUBE, "federations": list(federations)}


def objects(rendering: Rendering, kind: str) -> list[dict[str, Any]]:
    return [o for o in rendering.manifests() if o["kind"] == kind]


@pytest.fixture(scope="module")
def default() -> Rendering:
    return render(config())


@pytest.fixture(scope="module")
def kubernetes() -> Rendering:
    return render(config(jobLauncher="kubernetes"))


# --- settings -------------------------------------------------------------------------------------

BAD = [
    ({"sites": ["site-1", "Site_2"]}, "flstack:federations[0].nvflare.sites[1]: expected a DNS-1035 label"),
    ({"sites": ["site-1", "site-1"]}, "flstack:federations[0].nvflare.sites[1]: 'site-1' is already sites[0]"),
    ({"sites": []}, "flstack:federations[0].nvflare.sites: required: list at least one site"),
    ({"sites": ["nvflare-server"]}, "flstack:federations[0].nvflare.sites[0]: 'nvflare-server' is the name of"),
    ({"sites": ["admin"]}, "flstack:federations[0].nvflare.sites[0]: 'admin' is taken: `<namespace>-admin` is the"),
    (
        {"sites": ["a"], "exposure": {"type": "NodePort"}},
        "flstack:federations[0].nvflare.allowedCidrs: required with exposure type 'NodePort'",
    ),
    (
        {"sites": ["a"], "jobLauncher": "kubernetes", "siteNamespaces": "shared"},
        "flstack:federations[0].nvflare.jobLauncher: 'kubernetes' needs siteNamespaces 'separate'",
    ),
    ({"sites": ["2nd-site"]}, "flstack:federations[0].nvflare.sites[0]: expected a DNS-1035 label"),
    ({"sites": ["a"], "org": "my-org"}, "flstack:federations[0].nvflare.org: expected letters, digits and '_'"),
    ({"sites": ["a"], "admin": "root"}, "flstack:federations[0].nvflare.admin: expected an email address"),
    ({"sites": ["a"], "version": "2.8.0"}, "flstack:federations[0].nvflare.version: kits are provisioned by"),
    ({"sites": ["a"], "jobLauncher": "docker"}, "flstack:federations[0].nvflare.jobLauncher: expected one of"),
    ({"sites": ["a"], "siteNamespaces": "own"}, "flstack:federations[0].nvflare.siteNamespaces: expected one of"),
    ({"site": ["a"]}, "flstack:federations[0].nvflare.site: unknown key; did you mean 'sites'?"),
    (
        {"sites": ["a"], "exposure": {"hostnames": ["fl_server!"]}},
        "flstack:federations[0].nvflare.exposure.hostnames[0]: expected a DNS name or an IP address (no wildcards), "
        "got 'fl_server!'",
    ),
    (
        {"sites": ["a" * 60]},
        "flstack:federations[0].nvflare.sites[0]: its namespace 'demo-aaaa",
    ),
]


@pytest.mark.parametrize(("settings", "expected"), BAD, ids=[e.split(": ")[0].split(".")[-1] for _, e in BAD])
def test_bad_settings_name_the_full_key(settings: dict[str, Any], expected: str) -> None:
    fed = {"name": "demo", "framework": "nvflare", "nvflare": settings}
    with pytest.raises(ConfigError) as err:
        parse({"target": MINIKUBE, "federations": [fed]})
    assert expected in str(err.value)


def test_site_namespaces_may_not_collide_with_another_federations() -> None:
    first = {"name": "a", "framework": "nvflare", "nvflare": {"sites": ["b-c"]}}  # a-b-c
    second = {"name": "a-b", "framework": "nvflare", "nvflare": {"sites": ["c"]}}  # a-b-c again
    with pytest.raises(ConfigError) as err:
        parse(config(first, second))
    assert "flstack:federations[1].nvflare.sites[0]: 'a-b-c' is already used by federations[0]" in str(err.value)


def test_a_duplicate_site_is_one_problem() -> None:
    with pytest.raises(ConfigError) as err:
        parse(config(sites=["x", "x"]))
    message = str(err.value)
    assert "flstack:federations[0].nvflare.sites[1]: 'x' is already sites[0]" in message
    assert "already used by federations" not in message  # not also a clash of the federation with itself
    assert message.startswith("invalid stack config (1 problem)")


def test_a_node_port_admits_the_allowed_cidrs() -> None:
    rendering = render(config(exposure={"type": "NodePort", "nodePort": 30802}, allowedCidrs=["198.51.100.0/24"]))
    assert rendering.find("Service", "nvflare-server", "demo")["spec"]["externalTrafficPolicy"] == "Local"
    policy = rendering.find("NetworkPolicy", "nvflare-server-ingress", "demo")
    assert {"ipBlock": {"cidr": "198.51.100.0/24"}} in policy["spec"]["ingress"][0]["from"]


def test_the_admin_namespace_may_not_collide_with_another_federations() -> None:
    first = {"name": "a-admin", "framework": "flower", "flower": {}}
    second = {"name": "a", "framework": "nvflare", "nvflare": {"sites": ["s"]}}
    with pytest.raises(ConfigError) as err:
        parse(config(first, second))
    assert "flstack:federations[1].nvflare.admin: 'a-admin' is already used by federations[0]" in str(err.value)


def test_bad_settings_stop_the_program_with_one_message_and_no_traceback() -> None:
    with pytest.raises(ConfigError) as err:
        render(config(sites=["ok", "Not OK"], org="a-b"))
    message = str(err.value)
    assert message.startswith("invalid stack config (2 problems):")
    assert "Traceback" not in message


# --- what gets deployed ---------------------------------------------------------------------------


def test_each_site_gets_its_own_namespace_with_kit_workspace_and_deployment(default: Rendering) -> None:
    for site in ("site-1", "site-2"):
        ns = f"demo-{site}"
        deployment = default.find("Deployment", site, ns)
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        assert container["command"] == ["python3"]
        assert container["args"] == nvflare.site_args(site, "flstack")
        assert "secure_train=true" in container["args"] and f"uid={site}" in container["args"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        assert volumes["startup"]["secret"]["secretName"] == f"{site}-startup"
        assert volumes["local"]["configMap"]["name"] == f"{site}-local"
        assert volumes["workspace"]["persistentVolumeClaim"]["claimName"] == f"{site}-workspace"
        default.find("Secret", f"{site}-startup", ns)
        labels = default.find("Namespace", ns)["metadata"]["labels"]
        assert labels[nvflare.SITES_OF_LABEL] == "demo"
        assert labels["pod-security.kubernetes.io/enforce"] == "restricted"


def test_shared_site_namespaces_put_every_site_next_to_the_server() -> None:
    rendering = render(config(siteNamespaces="shared"))
    assert sorted(o["metadata"]["name"] for o in objects(rendering, "Namespace")) == ["demo", "demo-admin"]
    rendering.find("Deployment", "site-1", "demo")
    rendering.find("Deployment", "site-2", "demo")


def test_kits_are_mounted_where_nvflare_looks_for_them(default: Rendering) -> None:
    server = default.find("Deployment", "nvflare-server", "demo")["spec"]
    container = server["template"]["spec"]["containers"][0]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    assert mounts["workspace"]["mountPath"] == nvflare.WORKSPACE
    assert mounts["startup"] == {"name": "startup", "mountPath": f"{nvflare.WORKSPACE}/startup", "readOnly": True}
    assert mounts["local"] == {"name": "local", "mountPath": f"{nvflare.WORKSPACE}/local", "readOnly": True}
    assert container["args"][container["args"].index("-m", 2) + 1] == nvflare.WORKSPACE
    assert server["strategy"] == {"type": "Recreate"}
    assert container["image"] == "nvflare/nvflare:2.9.0"


def test_the_server_is_reached_on_one_mtls_port_and_probed_by_tcp(default: Rendering) -> None:
    service = default.find("Service", "nvflare-server", "demo")["spec"]
    assert service["ports"] == [{"name": "fl", "port": 8002, "targetPort": "fl", "protocol": "TCP"}]
    assert service["type"] == "ClusterIP"
    container = default.find("Deployment", "nvflare-server", "demo")["spec"]["template"]["spec"]["containers"][0]
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert container[probe]["tcpSocket"] == {"port": "fl"}


def test_kit_inputs_name_the_service_fqdn_and_external_hostnames() -> None:
    lb = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"], "hostnames": ["fl.example.org"]}
    rendering = render({**config(exposure=lb), "target": EXISTING})
    kits = rendering.of_type(nvflare_kits.CA_TYPE)[0]["inputs"]
    assert kits["server"] == "nvflare-server.demo.svc.cluster.local"
    assert kits["hostNames"] == ["nvflare-server", "nvflare-server.demo", "nvflare-server.demo.svc", "fl.example.org"]
    service = rendering.find("Service", "nvflare-server", "demo")["spec"]
    assert service["loadBalancerSourceRanges"] == ["203.0.113.0/24"]


def test_kits_are_secret_and_made_by_the_default_dynamic_provider(default: Rendering) -> None:
    (ca,) = default.of_type(nvflare_kits.CA_TYPE)
    assert ca["options"]["additionalSecretOutputs"] == ["caKey", "serverKit"]
    kits = default.of_type(nvflare_kits.KIT_TYPE)
    # ... and the verification Job's own kit (verify is on by default on minikube)
    names = sorted(k["name"] for k in kits)
    assert names == ["demo-kit-admin", "demo-kit-site-1", "demo-kit-site-2", "demo-kit-verify"]
    for kit in kits:
        assert kit["options"]["additionalSecretOutputs"] == ["caKey", "kit"]
        assert kit["inputs"]["caKey"] == "[secret]"  # the CA's key signs the kit: secret on the way in too
    # local provisioning: pulumi-python's default provider stays enabled
    assert all(r["provider"] is None for r in [ca, *kits])
    secrets = [r for r in default.resources() if r["type"] == "kubernetes:core/v1:Secret"]
    assert secrets and all(r["inputs"]["stringData"] == "[secret]" for r in secrets)


def test_the_admin_console_command_is_an_output(default: Rendering) -> None:
    outputs = default.outputs()["federations"]["demo"]
    console = "kubectl -n demo-admin exec -it deploy/nvflare-admin -- python3 -m nvflare.fuel.hci.tools.admin"
    assert outputs["adminConsole"] == f"{console} -m /var/tmp/nvflare/admin -s fed_admin.json"
    assert outputs["adminStart"].startswith("kubectl -n demo-admin scale deploy/nvflare-admin --replicas=1 && ")
    assert outputs["adminStop"] == "kubectl -n demo-admin scale deploy/nvflare-admin --replicas=0"
    assert outputs["systemStatus"].startswith("kubectl -n demo-admin exec deploy/nvflare-admin -- ")
    assert outputs["serverAddress"] == "nvflare-server.demo.svc.cluster.local:8002"
    admin = default.find("Deployment", "nvflare-admin", "demo-admin")["spec"]
    assert admin["replicas"] == 0  # the project admin's credential is only live while someone uses it
    mounts = {m["name"]: m["mountPath"] for m in admin["template"]["spec"]["containers"][0]["volumeMounts"]}
    assert mounts["startup"] == "/var/tmp/nvflare/admin/startup"


# --- kit rotation ---------------------------------------------------------------------------------


def kit_hashes(rendering: Rendering) -> dict[str, str]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["metadata"]["annotations"][nvflare.KIT_HASH_ANNOTATION]
        for d in objects(rendering, "Deployment")
    }


def test_every_pod_template_carries_the_digest_of_the_kit_it_mounts(default: Rendering) -> None:
    server = nvflare_kits.placeholder_ca_outputs(kit_inputs(default, "demo-ca"))["serverKit"]

    def kit(name: str) -> dict[str, Any]:
        return dict(nvflare_kits.placeholder_kit_outputs(kit_inputs(default, f"demo-kit-{name}"))["kit"])

    assert kit_hashes(default) == {
        "nvflare-server": nvflare.kit_digest(server),
        "nvflare-admin": nvflare.kit_digest(kit("admin")),
        "site-1": nvflare.kit_digest(kit("site-1")),
        "site-2": nvflare.kit_digest(kit("site-2")),
    }
    assert len(set(kit_hashes(default).values())) == 4
    # A digest, not the key material: readable in previews, so they show which Deployments roll.
    rows = [r for r in default.resources() if r["type"] == "kubernetes:apps/v1:Deployment"]
    assert all(
        len(r["inputs"]["spec"]["template"]["metadata"]["annotations"][nvflare.KIT_HASH_ANNOTATION]) == 64 for r in rows
    )


def test_the_kit_digest_ignores_key_order_and_sees_any_changed_file() -> None:
    kit = {"startup": {"server.crt": "a", "rootCA.pem": "b"}, "local": {"resources.json.default": "c"}}
    reordered = {"local": {"resources.json.default": "c"}, "startup": {"rootCA.pem": "b", "server.crt": "a"}}
    assert nvflare.kit_digest(kit) == nvflare.kit_digest(reordered)
    assert nvflare.kit_digest(kit) != nvflare.kit_digest({**kit, "startup": {**kit["startup"], "server.crt": "a2"}})
    assert nvflare.kit_digest(kit) != nvflare.kit_digest({**kit, "local": {}})


def test_a_reissued_kit_rolls_only_the_deployment_that_mounts_it() -> None:
    """New hostnames re-issue the server certificate (as nvflare's provisioning does): only the server rolls."""

    def provision(args: Any) -> dict[str, Any]:
        inputs = plain(args.inputs, reveal=True)
        outs = nvflare_kits.placeholder_ca_outputs(inputs)
        outs["serverKit"]["startup"]["server.crt"] += ",".join(inputs["hostNames"])
        return outs

    mock = OfflineMocks(synthesizers={nvflare_kits.CA_TYPE: provision})
    before = kit_hashes(render(config(), mock))
    assert kit_hashes(render(config(), mock)) == before  # identical kits, identical templates
    after = kit_hashes(render(config(exposure={"hostnames": ["fl.example.org"]}), mock))
    assert {name for name in before if before[name] != after[name]} == {"nvflare-server"}


def test_pulumi_leaves_the_admin_replicas_to_kubectl_scale(default: Rendering) -> None:
    deployments = by_name(default.resources(), "kubernetes:apps/v1:Deployment")
    assert deployments["deployment:demo-admin/nvflare-admin"]["options"]["ignoreChanges"] == ["spec.replicas"]
    others = [row for name, row in deployments.items() if name != "deployment:demo-admin/nvflare-admin"]
    assert len(others) == 3 and not any(row["options"]["ignoreChanges"] for row in others)


# --- hardening ------------------------------------------------------------------------------------


def pods(rendering: Rendering) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d["spec"]["template"]["spec"] for d in objects(rendering, "Deployment")}


@pytest.mark.parametrize("launcher", ["process", "kubernetes"])
def test_every_pod_is_non_root_with_a_read_only_root_and_pinned_image(launcher: str) -> None:
    rendering = render(config(jobLauncher=launcher, version="2.9.0"))
    specs = pods(rendering)
    assert set(specs) == {"nvflare-server", "nvflare-admin", "site-1", "site-2"}
    for spec in specs.values():
        assert spec["securityContext"] == {
            "runAsNonRoot": True,
            "runAsUser": nvflare.UID,
            "runAsGroup": nvflare.UID,
            "fsGroup": nvflare.UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        }
        for container in spec["containers"]:
            assert container["image"] == "nvflare/nvflare:2.9.0"
            security = container["securityContext"]
            assert security["readOnlyRootFilesystem"] is True
            assert security["allowPrivilegeEscalation"] is False
            assert security["capabilities"] == {"drop": ["ALL"]}
            writable = {m["mountPath"] for m in container["volumeMounts"] if not m.get("readOnly")}
            assert {"/tmp", nvflare.HOME} <= writable


def test_no_pod_gets_an_api_token_with_the_process_launcher(default: Rendering) -> None:
    assert all(spec["automountServiceAccountToken"] is False for spec in pods(default).values())
    assert objects(default, "Role") == [] and objects(default, "RoleBinding") == []
    accounts = objects(default, "ServiceAccount")
    assert accounts and all(a["automountServiceAccountToken"] is False for a in accounts)


def test_only_job_launching_pods_get_a_token_with_the_kubernetes_launcher(kubernetes: Rendering) -> None:
    specs = pods(kubernetes)
    assert {name for name, spec in specs.items() if spec["automountServiceAccountToken"]} == {
        "nvflare-server",
        "site-1",
        "site-2",
    }
    assert specs["nvflare-admin"]["serviceAccountName"] == "nvflare"


def test_the_launcher_role_is_namespaced_and_least_privilege(kubernetes: Rendering) -> None:
    roles = objects(kubernetes, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == ["demo", "demo-site-1", "demo-site-2"]
    for role in roles:
        assert role["rules"] == [
            {"apiGroups": [""], "resources": ["pods"], "verbs": ["create", "delete", "get"]},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["list"]},
            {"apiGroups": [""], "resources": ["secrets"], "verbs": ["create", "delete", "patch", "update"]},
        ]
    for binding in objects(kubernetes, "RoleBinding"):
        ns = binding["metadata"]["namespace"]
        assert binding["roleRef"] == {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "Role",
            "name": "nvflare-job-launcher",
        }
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "nvflare-launcher", "namespace": ns}]
    assert not [o for o in kubernetes.manifests() if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]


def test_the_admin_kit_is_out_of_reach_of_the_launcher_accounts(kubernetes: Rendering) -> None:
    """Launcher accounts create pods and write Secrets in their namespace: the project admin's kit is elsewhere."""
    in_admin_ns = [o for o in kubernetes.manifests() if o["metadata"].get("namespace") == "demo-admin"]
    # ... beside the verification Job and its own least-role kit (verify is on by default on minikube).
    job = next(o["metadata"]["name"] for o in in_admin_ns if o["kind"] == "Job")
    assert sorted((o["kind"], o["metadata"]["name"]) for o in in_admin_ns) == [
        ("ConfigMap", "nvflare-admin-local"),
        ("ConfigMap", "nvflare-verify-local"),
        ("ConfigMap", "nvflare-verify-script"),
        ("Deployment", "nvflare-admin"),
        ("Job", job),
        ("LimitRange", "container-defaults"),
        ("NetworkPolicy", "admin-to-server"),
        ("NetworkPolicy", "allow-dns"),
        ("NetworkPolicy", "default-deny"),
        ("Secret", "nvflare-admin-startup"),
        ("Secret", "nvflare-verify-startup"),
        ("ServiceAccount", "nvflare"),
    ]
    assert kubernetes.find("ServiceAccount", "nvflare", "demo-admin")["automountServiceAccountToken"] is False
    labels = kubernetes.find("Namespace", "demo-admin")["metadata"]["labels"]
    assert labels["pod-security.kubernetes.io/enforce"] == "restricted"
    launcher_namespaces = {b["metadata"]["namespace"] for b in objects(kubernetes, "RoleBinding")}
    secrets = {(o["metadata"]["namespace"], o["metadata"]["name"]) for o in objects(kubernetes, "Secret")}
    assert ("demo-admin", "nvflare-admin-startup") in secrets
    assert not [ns for ns, name in secrets if name == "nvflare-admin-startup" and ns in launcher_namespaces]
    # The home namespace has only the launcher's account: the admin pod's is in its own namespace.
    assert [
        a["metadata"]["name"] for a in objects(kubernetes, "ServiceAccount") if a["metadata"]["namespace"] == "demo"
    ] == ["nvflare-launcher"]


def test_kubernetes_launcher_job_pods_pass_the_restricted_standard(kubernetes: Rendering) -> None:
    kits = kubernetes.of_type(nvflare_kits.CA_TYPE)[0]["inputs"]["jobLauncher"]
    template = kits["studyRuntime"]["studies"]["default"]["pod_template"]
    assert template["spec"]["automountServiceAccountToken"] is False
    (container,) = template["spec"]["containers"]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    assert kits["jobPodSecurityContext"]["runAsNonRoot"] is True
    assert kits["namespace"] == "demo"
    for site in ("site-1", "site-2"):  # each site's launcher starts job pods in its own namespace
        (kit,) = [r for r in kubernetes.of_type(nvflare_kits.KIT_TYPE) if r["name"] == f"demo-kit-{site}"]
        assert kit["inputs"]["jobLauncher"]["namespace"] == f"demo-{site}"
    service = kubernetes.find("Service", "site-1", "demo-site-1")["spec"]
    assert service["ports"] == [{"name": "parent", "port": 8102, "targetPort": "parent", "protocol": "TCP"}]


# --- network policies -----------------------------------------------------------------------------


def _matches(selector: dict[str, Any], labels: dict[str, str]) -> bool:
    return all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admits(
    policy: dict[str, Any], ns_labels: dict[str, dict[str, str]], source: tuple[str, dict[str, str]], port: int
) -> bool:
    """Whether `policy` lets a pod (namespace, labels) in on `port` (ipBlocks ignored: pods only)."""
    source_ns, pod_labels = source
    home = policy["metadata"]["namespace"]
    for rule in policy["spec"].get("ingress", []):
        if port not in [p["port"] for p in rule.get("ports", [])]:
            continue
        for peer in rule.get("from", []):
            in_ns = (
                _matches(peer["namespaceSelector"], ns_labels[source_ns])
                if "namespaceSelector" in peer
                else source_ns == home
            )
            if in_ns and _matches(peer.get("podSelector", {}), pod_labels):
                return True
    return False


def pod_labels(rendering: Rendering, name: str, ns: str) -> tuple[str, dict[str, str]]:
    return ns, rendering.find("Deployment", name, ns)["spec"]["template"]["metadata"]["labels"]


def namespace_labels(rendering: Rendering) -> dict[str, dict[str, str]]:
    return {o["metadata"]["name"]: o["metadata"]["labels"] for o in objects(rendering, "Namespace")}


@pytest.mark.parametrize("site_namespaces", ["separate", "shared"])
def test_only_sites_and_the_admin_reach_the_server(site_namespaces: str) -> None:
    rendering = render(config(siteNamespaces=site_namespaces))
    policy = rendering.find("NetworkPolicy", "nvflare-server-ingress", "demo")
    ns_labels = namespace_labels(rendering)
    site_ns = "demo-site-1" if site_namespaces == "separate" else "demo"
    site = pod_labels(rendering, "site-1", site_ns)
    assert admits(policy, ns_labels, site, 8002)
    admin = pod_labels(rendering, "nvflare-admin", "demo-admin")
    assert admits(policy, ns_labels, admin, 8002)
    assert not admits(policy, ns_labels, ("demo", admin[1]), 8002)  # only from the admin's own namespace
    assert not admits(policy, ns_labels, site, 8102)
    assert not admits(policy, ns_labels, (site_ns, {"app": "something-else"}), 8002)
    impostor = {**site[1], "app.kubernetes.io/part-of": "other-federation"}
    assert not admits(policy, ns_labels, (site_ns, impostor), 8002)
    assert policy["spec"]["podSelector"]["matchLabels"] == nvflare._selector(
        pod_labels(rendering, "nvflare-server", "demo")[1]
    )


def test_site_pods_in_an_unlabelled_namespace_are_refused(default: Rendering) -> None:
    policy = default.find("NetworkPolicy", "nvflare-server-ingress", "demo")
    _, labels = pod_labels(default, "site-1", "demo-site-1")
    stranger_ns = {**namespace_labels(default), "elsewhere": {"kubernetes.io/metadata.name": "elsewhere"}}
    assert not admits(policy, stranger_ns, ("elsewhere", labels), 8002)


def test_every_namespace_denies_ingress_and_egress_by_default(default: Rendering) -> None:
    denied = {
        p["metadata"]["namespace"] for p in objects(default, "NetworkPolicy") if p["metadata"]["name"] == "default-deny"
    }
    assert denied == set(namespace_labels(default)) == {"demo", "demo-admin", "demo-site-1", "demo-site-2"}
    for policy in objects(default, "NetworkPolicy"):
        if policy["metadata"]["name"] == "default-deny":
            assert policy["spec"] == {"podSelector": {}, "policyTypes": ["Ingress", "Egress"]}


def test_external_sites_come_in_through_the_exposure_source_ranges() -> None:
    exposure = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"]}
    rendering = render({**config(exposure=exposure, allowedCidrs=["198.51.100.7/32"]), "target": EXISTING})
    policy = rendering.find("NetworkPolicy", "nvflare-server-ingress", "demo")
    blocks = [p["ipBlock"]["cidr"] for p in policy["spec"]["ingress"][0]["from"] if "ipBlock" in p]
    assert blocks == ["198.51.100.7/32", "203.0.113.0/24"]


def test_kubernetes_launcher_job_pods_reach_their_parent_port(kubernetes: Rendering) -> None:
    ns_labels = namespace_labels(kubernetes)
    job = kube.labels("nvflare", "job", "demo")
    server_policy = kubernetes.find("NetworkPolicy", "nvflare-server-ingress", "demo")
    assert admits(server_policy, ns_labels, ("demo", job), 8102)
    assert admits(server_policy, ns_labels, ("demo-site-2", job), 8002)  # client jobs join the server's backbone
    assert not admits(server_policy, ns_labels, ("demo-site-2", job), 8102)
    site_policy = kubernetes.find("NetworkPolicy", "site-1-ingress", "demo-site-1")
    assert admits(site_policy, ns_labels, ("demo-site-1", job), 8102)
    assert not admits(site_policy, ns_labels, ("demo-site-2", job), 8102)


# --- storage --------------------------------------------------------------------------------------


def test_workspaces_are_retained_on_delete(default: Rendering) -> None:
    claims = [r for r in default.resources() if r["type"] == "kubernetes:core/v1:PersistentVolumeClaim"]
    assert sorted(r["name"] for r in claims) == [
        "persistentvolumeclaim:demo-site-1/site-1-workspace",
        "persistentvolumeclaim:demo-site-2/site-2-workspace",
        "persistentvolumeclaim:demo/nvflare-server-workspace",
    ]
    assert all(r["options"]["retainOnDelete"] for r in claims)
    # Deleting a namespace deletes its PVCs: the namespaces holding them are retained too.
    namespaces = [r for r in default.resources() if r["type"] == "kubernetes:core/v1:Namespace"]
    assert sorted(r["name"] for r in namespaces if r["options"]["retainOnDelete"]) == [
        "namespace:demo",
        "namespace:demo-site-1",
        "namespace:demo-site-2",
    ]
    others = [r for r in default.resources() if r["type"].startswith("kubernetes:") and r not in claims + namespaces]
    assert not any(r["options"]["retainOnDelete"] for r in others)


def test_shared_site_namespaces_retain_the_one_namespace_holding_every_workspace() -> None:
    rows = render(config(siteNamespaces="shared")).resources()
    namespaces = {
        r["name"]: r["options"]["retainOnDelete"] for r in rows if r["type"] == "kubernetes:core/v1:Namespace"
    }
    assert namespaces == {"namespace:demo": True, "namespace:demo-admin": False}  # no PVC in the admin's


# --- adding a third site --------------------------------------------------------------------------


def test_a_third_site_adds_only_its_own_resources_and_changes_no_other() -> None:
    before = render(config()).resources()
    after = render(config(sites=["site-1", "site-2", "site-3"])).resources()
    changes = diff.compare(before, after)
    assert changes.added == [
        ("kubernetes:apps/v1:Deployment", "deployment:demo-site-3/site-3"),
        ("kubernetes:core/v1:ConfigMap", "configmap:demo-site-3/site-3-local"),
        ("kubernetes:core/v1:LimitRange", "limitrange:demo-site-3/container-defaults"),
        ("kubernetes:core/v1:Namespace", "namespace:demo-site-3"),
        ("kubernetes:core/v1:PersistentVolumeClaim", "persistentvolumeclaim:demo-site-3/site-3-workspace"),
        ("kubernetes:core/v1:Secret", "secret:demo-site-3/site-3-startup"),
        ("kubernetes:core/v1:ServiceAccount", "serviceaccount:demo-site-3/nvflare"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "networkpolicy:demo-site-3/allow-dns"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "networkpolicy:demo-site-3/default-deny"),
        ("kubernetes:networking.k8s.io/v1:NetworkPolicy", "networkpolicy:demo-site-3/nvflare-to-server"),
        (nvflare_kits.KIT_TYPE, "demo-kit-site-3"),
    ]
    assert changes.removed == []
    # Nobody else's kit, not even the CA's inputs; only what the verification checks changed: a new Job name
    # (so it runs again), site-3 in its list, and it waits for site-3 too.
    assert changes.changed == {
        ("kubernetes:batch/v1:Job", "job:demo-admin/verify"): [
            "inputs.metadata.name",
            "inputs.spec.template.spec.containers[0].command[4]",
            "options.dependsOn",
        ],
    }


def kit_inputs(rendering: Rendering, name: str) -> dict[str, Any]:
    (registration,) = [r for r in rendering.recording.resources.values() if r.name == name]
    return dict(plain(registration.inputs, reveal=True))


# --- the serialized provider ----------------------------------------------------------------------


def test_the_pickled_provider_loads_in_a_fresh_process_at_the_project_root(default: Rendering) -> None:
    """The engine's Python dynamic-provider plugin unpickles `__provider` in a new process started in the
    project directory: the pickle must refer to importable code, not carry state from the program."""
    for name, provider in (("demo-ca", "CaProvider"), ("demo-kit-site-1", "ParticipantKitProvider")):
        pickled = kit_inputs(default, name)["__provider"]
        assert loaded_in_a_fresh_process(pickled) == ["components.federations.nvflare_kits", provider, "False"]
        assert len(base64.b64decode(pickled)) < 2000  # a reference to the class, not a copy of the program


def loaded_in_a_fresh_process(pickled: str) -> list[str]:
    probe = (
        "import base64, sys, dill\n"
        "provider = dill.loads(base64.b64decode(sys.stdin.read()))\n"
        "print(type(provider).__module__, type(provider).__name__, provider.diff('x', {}, {}).changes)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe],
        input=pickled,
        cwd=stack_files.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.split()


def test_the_shipped_stack_is_a_server_and_two_sites() -> None:
    files = stack_files.load("local-nvflare")
    (fed,) = json.loads(files.config["flstack:federations"])
    assert fed["framework"] == "nvflare" and fed["nvflare"]["sites"] == ["site-1", "site-2"]
