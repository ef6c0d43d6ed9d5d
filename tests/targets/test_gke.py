"""The GKE target, rendered offline: what pulumi-gcp would be asked to create (mock-verified only)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.helpers import by_name, gke, one, render, render_stack
from tools.mock_runtime import MOCK_PROJECT_NUMBER, is_secret

STACK = "gke-flower"
KEY = "projects/flstack-demo-123/locations/europe-west4/keyRings/flstack/cryptoKeys/gke"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack(STACK).resources()


def cluster_inputs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    inputs: dict[str, Any] = one(rows, "gcp:container/cluster:Cluster")["inputs"]
    return inputs


def test_every_gcp_resource_uses_the_one_explicit_gcp_provider(rows: list[dict[str, Any]]) -> None:
    provider = one(rows, "pulumi:providers:gcp")
    assert (provider["name"], provider["inputs"]["project"], provider["inputs"]["region"]) == (
        "cluster-gcp",
        "flstack-demo-123",
        "europe-west4",
    )
    assert json.loads(provider["inputs"]["defaultLabels"]) == {"managed-by": "flstack", "flstack-cluster": "flstack"}
    gcp_rows = [r for r in rows if r["type"].startswith("gcp:")]
    assert len(gcp_rows) >= 10
    assert {r["provider"] for r in gcp_rows} == {"pulumi:providers:gcp::cluster-gcp"}


def test_custom_mode_vpc_with_vpc_native_ranges_private_google_access_and_nat(rows: list[dict[str, Any]]) -> None:
    network = one(rows, "gcp:compute/network:Network")["inputs"]
    assert (network["name"], network["autoCreateSubnetworks"]) == ("flstack-vpc", False)
    subnet = one(rows, "gcp:compute/subnetwork:Subnetwork")["inputs"]
    assert subnet["privateIpGoogleAccess"] is True
    assert subnet["region"] == "europe-west4"
    ranges = {r["rangeName"]: r["ipCidrRange"] for r in subnet["secondaryIpRanges"]}
    assert set(ranges) == {"pods", "services"}
    nets = [ipaddress.ip_network(c) for c in (subnet["ipCidrRange"], *ranges.values())]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])
    policy = cluster_inputs(rows)["ipAllocationPolicy"]
    assert policy == {"clusterSecondaryRangeName": "pods", "servicesSecondaryRangeName": "services"}
    assert cluster_inputs(rows)["networkingMode"] == "VPC_NATIVE"
    nat = one(rows, "gcp:compute/routerNat:RouterNat")
    assert nat["inputs"]["router"] == one(rows, "gcp:compute/router:Router")["inputs"]["name"]
    assert nat["inputs"]["sourceSubnetworkIpRangesToNat"] == "ALL_SUBNETWORKS_ALL_IP_RANGES"
    # Private nodes pull Docker Hub images through NAT: the cluster (hence its pools) waits for it.
    assert (
        "gcp:compute/routerNat:RouterNat::cluster-network-nat"
        in (one(rows, "gcp:container/cluster:Cluster")["options"]["dependsOn"])
    )


def test_cluster_is_private_hardened_and_on_a_release_channel(rows: list[dict[str, Any]]) -> None:
    c = cluster_inputs(rows)
    assert c["privateClusterConfig"] == {"enablePrivateNodes": True}
    assert c["workloadIdentityConfig"] == {"workloadPool": "flstack-demo-123.svc.id.goog"}
    assert c["datapathProvider"] == "ADVANCED_DATAPATH"
    assert "networkPolicy" not in c and "networkPolicyConfig" not in c["addonsConfig"]  # no Calico on top
    assert c["enableShieldedNodes"] is True and c["enableLegacyAbac"] is False
    assert c["masterAuth"] == {"clientCertificateConfig": {"issueClientCertificate": False}}
    assert c["releaseChannel"] == {"channel": "REGULAR"}
    assert (c["removeDefaultNodePool"], c["location"], c["minMasterVersion"]) == (True, "europe-west4", "1.34")
    assert c["deletionProtection"] is True
    assert "databaseEncryption" not in c  # no kmsKey in this stack


def test_control_plane_admits_only_the_authorized_networks(rows: list[dict[str, Any]]) -> None:
    access = cluster_inputs(rows)["masterAuthorizedNetworksConfig"]
    assert access == {
        "cidrBlocks": [{"cidrBlock": "203.0.113.0/24", "displayName": "flstack-0"}],
        "gcpPublicCidrsAccessEnabled": False,
    }
    assert "controlPlaneEndpointsConfig" not in cluster_inputs(rows)


def test_dns_endpoint_turns_the_ip_endpoint_off_and_the_kubeconfig_uses_the_dns_name() -> None:
    target = {"kind": "gke", "gke": {"project": "p-12345", "region": "europe-west4", "dnsEndpoint": True}}
    rendering = render({"target": target})
    c = cluster_inputs(rendering.resources())
    assert "masterAuthorizedNetworksConfig" not in c
    assert c["controlPlaneEndpointsConfig"] == {
        "dnsEndpointConfig": {"allowExternalTraffic": True},
        "ipEndpointsConfig": {"enabled": False},
    }
    config = kubeconfig(rendering)
    assert config["clusters"][0]["cluster"] == {"server": "https://gke-flstack.europe-west4.gke.mock"}
    assert rendering.outputs()["target"]["kubeconfigCommand"].endswith("--dns-endpoint")


def test_node_pools_from_config_autoscale_as_a_whole_on_a_dedicated_account(rows: list[dict[str, Any]]) -> None:
    pools = by_name(rows, "gcp:container/nodePool:NodePool")
    assert set(pools) == {"cluster-general", "cluster-gpu"}
    general, gpu = pools["cluster-general"]["inputs"], pools["cluster-gpu"]["inputs"]
    assert (general["name"], general["cluster"], general["location"]) == ("general", "cluster-gke-id", "europe-west4")
    assert general["autoscaling"] == {"totalMinNodeCount": 1, "totalMaxNodeCount": 4, "locationPolicy": "BALANCED"}
    assert gpu["autoscaling"] == {"totalMinNodeCount": 0, "totalMaxNodeCount": 2, "locationPolicy": "ANY"}
    assert general["management"] == {"autoRepair": True, "autoUpgrade": True}
    account = one(rows, "gcp:serviceaccount/account:Account")["inputs"]
    email = f"{account['accountId']}@mock-project.iam.gserviceaccount.com"
    for pool in (general, gpu):
        node = pool["nodeConfig"]
        assert node["serviceAccount"] == email and "compute@developer" not in node["serviceAccount"]
        assert node["workloadMetadataConfig"] == {"mode": "GKE_METADATA"}
        assert node["shieldedInstanceConfig"] == {"enableSecureBoot": True, "enableIntegrityMonitoring": True}
        assert node["imageType"] == "COS_CONTAINERD" and node["diskType"] == "pd-balanced"
    assert (general["nodeConfig"]["machineType"], gpu["nodeConfig"]["diskSizeGb"]) == ("e2-standard-4", 200)
    assert all(p["options"]["deleteBeforeReplace"] for p in pools.values())  # pools keep their configured names


def test_node_account_holds_only_the_node_role_and_image_reads(rows: list[dict[str, Any]]) -> None:
    members = by_name(rows, "gcp:projects/iAMMember:IAMMember").values()
    assert sorted(m["inputs"]["role"] for m in members) == [
        "roles/artifactregistry.reader",
        "roles/container.defaultNodeServiceAccount",
    ]
    assert {m["inputs"]["member"] for m in members} == {
        "serviceAccount:flstack-nodes@mock-project.iam.gserviceaccount.com"
    }


def test_taints_are_translated_to_gke_spelling_and_gpus_get_their_driver(rows: list[dict[str, Any]]) -> None:
    gpu = by_name(rows, "gcp:container/nodePool:NodePool")["cluster-gpu"]["inputs"]["nodeConfig"]
    assert gpu["taints"] == [{"key": "flstack.dev/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert gpu["labels"] == {"flstack.dev/accelerator": "nvidia-l4"}
    assert gpu["guestAccelerators"] == [
        {"type": "nvidia-l4", "count": 1, "gpuDriverInstallationConfig": {"gpuDriverVersion": "DEFAULT"}}
    ]
    assert gpu["machineType"] == "g2-standard-8"


def test_every_taint_effect_is_translated() -> None:
    pools = [
        {"name": "general"},
        {"name": "fl", "taints": ["a=b:PreferNoSchedule", "c:NoExecute", "fltk.node=normal:NoSchedule"]},
    ]
    rows = render({"target": gke(nodePools=pools)}).resources()
    fl = by_name(rows, "gcp:container/nodePool:NodePool")["cluster-fl"]["inputs"]["nodeConfig"]
    assert fl["taints"] == [
        {"key": "a", "value": "b", "effect": "PREFER_NO_SCHEDULE"},
        {"key": "c", "value": "", "effect": "NO_EXECUTE"},
        {"key": "fltk.node", "value": "normal", "effect": "NO_SCHEDULE"},
    ]


def kubeconfig(rendering: Any) -> dict[str, Any]:
    (provider,) = [r for r in rendering.recording.resources.values() if r.type == "pulumi:providers:kubernetes"]
    assert is_secret(provider.inputs["kubeconfig"])  # kept encrypted in the state
    config: dict[str, Any] = json.loads(provider.inputs["kubeconfig"]["value"])
    return config


def test_kubernetes_provider_uses_the_auth_plugin_and_holds_no_token(rows: list[dict[str, Any]]) -> None:
    provider = one(rows, "pulumi:providers:kubernetes")
    assert provider["inputs"]["kubeconfig"] == "[secret]"
    assert provider["inputs"]["clusterIdentifier"] == "gke/flstack-demo-123/europe-west4/flstack"
    config = kubeconfig(render_stack(STACK))
    (cluster,) = config["clusters"]
    assert cluster["cluster"] == {
        "server": "https://flstack.endpoint.gke.mock",
        "certificate-authority-data": "<masterAuth.clusterCaCertificate of cluster-gke>",
    }
    (user,) = config["users"]
    assert user["user"] == {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "gke-gcloud-auth-plugin",
            "provideClusterInfo": True,
            "interactiveMode": "Never",
            "installHint": "gcloud components install gke-gcloud-auth-plugin",
        }
    }
    assert config["current-context"] == "gke_flstack-demo-123_europe-west4_flstack"
    text = json.dumps(config)
    assert all(word not in text for word in ('"token"', "auth-provider", "client-key", "password"))
    # A replaced cluster is a new, empty one: the provider (and every object) is replaced with it.
    assert provider["options"]["replaceWith"] == ["gcp:container/cluster:Cluster::cluster-gke"]
    assert sorted(provider["options"]["dependsOn"]) == [
        "gcp:container/cluster:Cluster::cluster-gke",
        "gcp:container/nodePool:NodePool::cluster-general",
        "gcp:container/nodePool:NodePool::cluster-gpu",
    ]


def test_cmek_encrypts_secrets_and_boot_disks_and_the_service_agents_may_use_the_key() -> None:
    rows = render({"target": gke(kmsKey=KEY.replace("flstack-demo-123", "p-12345"))}).resources()
    key = KEY.replace("flstack-demo-123", "p-12345")
    c = one(rows, "gcp:container/cluster:Cluster")
    assert c["inputs"]["databaseEncryption"] == {"state": "ENCRYPTED", "keyName": key}
    (pool,) = by_name(rows, "gcp:container/nodePool:NodePool").values()
    assert pool["inputs"]["nodeConfig"]["bootDiskKmsKey"] == key
    grants = by_name(rows, "gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember")
    assert {g["inputs"]["member"] for g in grants.values()} == {
        f"serviceAccount:service-{MOCK_PROJECT_NUMBER}@{agent}.iam.gserviceaccount.com"
        for agent in ("container-engine-robot", "compute-system", "cloud-filer")
    }
    assert {(g["inputs"]["cryptoKeyId"], g["inputs"]["role"]) for g in grants.values()} == {
        (key, "roles/cloudkms.cryptoKeyEncrypterDecrypter")
    }
    assert all(f"gcp:kms/cryptoKeyIAMMember:CryptoKeyIAMMember::{n}" in c["options"]["dependsOn"] for n in grants)


def test_deletion_protection_can_be_turned_off_for_the_two_step_destroy() -> None:
    rows = render({"target": gke(deletionProtection=False)}).resources()
    assert one(rows, "gcp:container/cluster:Cluster")["inputs"]["deletionProtection"] is False


def test_outputs_name_the_cluster_and_how_to_reach_it() -> None:
    target = render_stack(STACK).outputs()["target"]
    assert target["kind"] == "gke" and target["deletionProtection"] == "true"
    assert target["kubeconfigCommand"] == (
        "gcloud container clusters get-credentials flstack --location europe-west4 --project flstack-demo-123"
    )
