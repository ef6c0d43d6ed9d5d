"""The EKS target, rendered offline: what pulumi-aws would be asked to create (mock-verified only)."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

from tests.helpers import by_name, eks, one, render, render_stack
from tools.mock_runtime import MOCK_ACCOUNT

STACK = "eks-flower"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack(STACK).resources()


def test_every_aws_resource_uses_the_one_explicit_aws_provider(rows: list[dict[str, Any]]) -> None:
    provider = one(rows, "pulumi:providers:aws")
    assert provider["name"] == "cluster-aws"
    assert provider["inputs"]["region"] == "eu-west-1"
    assert json.loads(provider["inputs"]["defaultTags"]) == {
        "tags": {"managed-by": "flstack", "flstack-cluster": "flstack"}
    }
    aws_rows = [r for r in rows if r["type"].startswith("aws:")]
    assert len(aws_rows) > 40
    assert {r["provider"] for r in aws_rows} == {"pulumi:providers:aws::cluster-aws"}


def test_vpc_spans_three_zones_with_tagged_private_and_public_subnets(rows: list[dict[str, Any]]) -> None:
    subnets = by_name(rows, "aws:ec2/subnet:Subnet")
    private = [subnets[f"cluster-network-private-{i}"]["inputs"] for i in range(3)]
    public = [subnets[f"cluster-network-public-{i}"]["inputs"] for i in range(3)]
    assert len(subnets) == 6
    # By zone ID, pinned in the stack file: no lookup can move a subnet.
    assert [s["availabilityZoneId"] for s in private] == ["euw1-az1", "euw1-az2", "euw1-az3"]
    assert [s["availabilityZoneId"] for s in public] == ["euw1-az1", "euw1-az2", "euw1-az3"]
    assert not any("availabilityZone" in s for s in private + public)
    assert all(s["tags"]["kubernetes.io/role/internal-elb"] == "1" for s in private)
    assert all(
        s["tags"]["kubernetes.io/role/elb"] == "1" and "kubernetes.io/role/internal-elb" not in s["tags"]
        for s in public
    )
    vpc = ipaddress.ip_network(one(rows, "aws:ec2/vpc:Vpc")["inputs"]["cidrBlock"])
    nets = [ipaddress.ip_network(s["cidrBlock"]) for s in private + public]
    assert all(n.subnet_of(vpc) for n in nets)  # type: ignore[arg-type]
    assert not any(a.overlaps(b) for i, a in enumerate(nets) for b in nets[i + 1 :])


def test_private_subnets_route_through_nat_and_public_through_the_internet_gateway(rows: list[dict[str, Any]]) -> None:
    routes = by_name(rows, "aws:ec2/route:Route")
    nat = one(rows, "aws:ec2/natGateway:NatGateway")  # natGateways: single
    assert nat["inputs"]["subnetId"] == "cluster-network-public-0-id"
    assert [routes[f"cluster-network-private-{i}-default"]["inputs"]["natGatewayId"] for i in range(3)] == [
        "cluster-network-nat-0-id"
    ] * 3
    assert routes["cluster-network-public-default"]["inputs"]["gatewayId"] == "cluster-network-igw-id"


def test_nat_gateway_per_zone_when_asked() -> None:
    rows = render({"target": eks(natGateways="perZone")}).resources()
    routes = by_name(rows, "aws:ec2/route:Route")
    assert len(by_name(rows, "aws:ec2/natGateway:NatGateway")) == 3
    assert [routes[f"cluster-network-private-{i}-default"]["inputs"]["natGatewayId"] for i in range(3)] == [
        f"cluster-network-nat-{i}-id" for i in range(3)
    ]


def test_cluster_is_pinned_api_authenticated_logged_and_encrypted(rows: list[dict[str, Any]]) -> None:
    cluster = one(rows, "aws:eks/cluster:Cluster")
    key = one(rows, "aws:kms/key:Key")
    inputs = cluster["inputs"]
    assert inputs["name"] == "flstack" and inputs["version"] == "1.35"
    assert inputs["upgradePolicy"] == {"supportType": "STANDARD"}
    assert inputs["accessConfig"] == {"authenticationMode": "API", "bootstrapClusterCreatorAdminPermissions": False}
    assert inputs["encryptionConfig"] == {
        "provider": {"keyArn": f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/{key['name']}"},
        "resources": ["secrets"],
    }
    assert inputs["enabledClusterLogTypes"] == ["api", "audit", "authenticator"]
    assert inputs["vpcConfig"]["endpointPublicAccess"] is True
    assert inputs["vpcConfig"]["publicAccessCidrs"] == ["203.0.113.0/24"]
    assert inputs["vpcConfig"]["subnetIds"] == [f"cluster-network-private-{i}-id" for i in range(3)]
    log_group = one(rows, "aws:cloudwatch/logGroup:LogGroup")
    assert log_group["inputs"] == {"name": "/aws/eks/flstack/cluster", "retentionInDays": 30}
    assert "aws:cloudwatch/logGroup:LogGroup::cluster-control-plane" in cluster["options"]["dependsOn"]


def test_secrets_key_rotates_and_survives_the_stack(rows: list[dict[str, Any]]) -> None:
    key = one(rows, "aws:kms/key:Key")
    assert key["inputs"]["enableKeyRotation"] is True
    assert key["options"]["protect"] is True and key["options"]["retainOnDelete"] is True
    # The control plane may use the key (the default key policy delegates to IAM).
    policy = json.loads(by_name(rows, "aws:iam/rolePolicy:RolePolicy")["cluster-control-plane-kms"]["inputs"]["policy"])
    assert policy["Statement"][0]["Resource"] == f"arn:aws:kms:mock:{MOCK_ACCOUNT}:key/cluster-secrets"
    assert "kms:Decrypt" in policy["Statement"][0]["Action"]


def test_private_only_endpoint_has_no_public_side() -> None:
    rows = render({"target": eks(endpointPrivateOnly=True, runnerInsideVpc=True, publicAccessCidrs=[])}).resources()
    vpc_config = one(rows, "aws:eks/cluster:Cluster")["inputs"]["vpcConfig"]
    assert vpc_config["endpointPublicAccess"] is False and vpc_config["endpointPrivateAccess"] is True
    assert "publicAccessCidrs" not in vpc_config


def test_admin_principals_get_an_access_entry_and_the_cluster_admin_policy(rows: list[dict[str, Any]]) -> None:
    entry = one(rows, "aws:eks/accessEntry:AccessEntry")
    association = one(rows, "aws:eks/accessPolicyAssociation:AccessPolicyAssociation")
    admin = "arn:aws:iam::111122223333:role/flstack-admin"
    assert entry["inputs"] == {"clusterName": "flstack", "principalArn": admin, "type": "STANDARD"}
    assert association["inputs"] == {
        "clusterName": "flstack",
        "principalArn": admin,
        "policyArn": "arn:aws:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy",
        "accessScope": {"type": "cluster"},
    }


def test_two_admins_each_get_their_own_entry() -> None:
    admins = ["arn:aws:iam::111122223333:role/a", "arn:aws:iam::111122223333:user/ops/b"]
    rows = render({"target": eks(adminPrincipals=admins)}).resources()
    entries = by_name(rows, "aws:eks/accessEntry:AccessEntry")
    assert sorted(e["inputs"]["principalArn"] for e in entries.values()) == admins
    assert sorted(entries) == ["cluster-admin-role-a", "cluster-admin-user-ops-b"]  # stable when reordered


def test_oidc_provider_trusts_the_cluster_issuer_for_sts(rows: list[dict[str, Any]]) -> None:
    oidc = one(rows, "aws:iam/openIdConnectProvider:OpenIdConnectProvider")
    assert oidc["inputs"] == {"url": "https://oidc.eks.mock/id/flstack", "clientIdLists": ["sts.amazonaws.com"]}
    assert render_stack(STACK).outputs()["target"]["oidcIssuer"] == "https://oidc.eks.mock/id/flstack"


def test_node_groups_from_config_with_labels_taints_and_ami(rows: list[dict[str, Any]]) -> None:
    groups = by_name(rows, "aws:eks/nodeGroup:NodeGroup")
    assert sorted(groups) == ["cluster-fl", "cluster-general", "cluster-gpu"]
    general, fl, gpu = (groups[f"cluster-{n}"]["inputs"] for n in ("general", "fl", "gpu"))
    assert general["amiType"] == "AL2023_x86_64_STANDARD" and general["taints"] == []
    assert general["scalingConfig"] == {"minSize": 2, "desiredSize": 2, "maxSize": 4}
    assert fl["taints"] == [{"key": "fltk.node", "value": "normal", "effect": "NO_SCHEDULE"}]
    assert fl["labels"] == {"fltk.node": "normal", "flstack.dev/node-group": "fl"}
    assert fl["instanceTypes"] == ["c6i.2xlarge"]
    assert gpu["amiType"] == "AL2023_x86_64_NVIDIA"
    assert gpu["taints"] == [{"key": "nvidia.com/gpu", "value": "true", "effect": "NO_SCHEDULE"}]
    assert all(g["subnetIds"] == [f"cluster-network-private-{i}-id" for i in range(3)] for g in (general, fl, gpu))


def test_nodes_require_imdsv2_through_their_launch_template(rows: list[dict[str, Any]]) -> None:
    templates = by_name(rows, "aws:ec2/launchTemplate:LaunchTemplate")
    groups = by_name(rows, "aws:eks/nodeGroup:NodeGroup")
    assert len(templates) == 3
    for name, group in groups.items():
        template = templates[name]["inputs"]
        assert group["inputs"]["launchTemplate"] == {"id": f"{name}-id", "version": "1"}
        assert template["metadataOptions"]["httpTokens"] == "required"
        assert template["metadataOptions"]["httpPutResponseHopLimit"] == 1
        assert template["blockDeviceMappings"][0]["ebs"]["encrypted"] == "true"
    assert templates["cluster-gpu"]["inputs"]["blockDeviceMappings"][0]["ebs"]["volumeSize"] == 100


def test_hop_limit_two_when_configured() -> None:
    rows = render({"target": eks(imdsHopLimit=2)}).resources()
    template = one(rows, "aws:ec2/launchTemplate:LaunchTemplate")  # the default single `general` group
    assert template["inputs"]["metadataOptions"]["httpPutResponseHopLimit"] == 2


def test_graviton_group_gets_the_arm_ami() -> None:
    groups = [{"name": "arm", "instanceTypes": ["m7g.large", "c7g.large"]}]
    rows = render({"target": eks(nodeGroups=groups)}).resources()
    assert one(rows, "aws:eks/nodeGroup:NodeGroup")["inputs"]["amiType"] == "AL2023_ARM_64_STANDARD"


def kubeconfig(rows: list[dict[str, Any]]) -> dict[str, Any]:
    config: dict[str, Any] = json.loads(one(rows, "pulumi:providers:kubernetes")["inputs"]["kubeconfig"])
    return config


def test_kubernetes_provider_authenticates_with_aws_eks_get_token(rows: list[dict[str, Any]]) -> None:
    provider = one(rows, "pulumi:providers:kubernetes")
    assert provider["name"] == "cluster-k8s"  # the minikube one's name: federations keep their provider
    config = kubeconfig(rows)
    (user,) = config["users"]
    assert user["user"] == {
        "exec": {
            "apiVersion": "client.authentication.k8s.io/v1beta1",
            "command": "aws",
            "args": ["eks", "get-token", "--cluster-name", "flstack", "--region", "eu-west-1"],
            "interactiveMode": "Never",
        }
    }
    (cluster,) = config["clusters"]
    assert cluster["cluster"]["server"] == "https://flstack.eks.mock"
    assert cluster["cluster"]["certificate-authority-data"] == "<certificateAuthority.data of cluster-eks>"
    assert '"token"' not in provider["inputs"]["kubeconfig"]  # no bearer token kept in the state


def test_provider_identity_is_stable_and_waits_for_admin_access_and_nodes(rows: list[dict[str, Any]]) -> None:
    provider = one(rows, "pulumi:providers:kubernetes")
    assert provider["inputs"]["clusterIdentifier"] == "eks/eu-west-1/flstack"
    depends = provider["options"]["dependsOn"]
    assert "aws:eks/accessPolicyAssociation:AccessPolicyAssociation::cluster-admin-role-flstack-admin" in depends
    assert {f"aws:eks/nodeGroup:NodeGroup::cluster-{n}" for n in ("general", "fl", "gpu")} <= set(depends)


def test_vpc_cni_enforces_network_policies(rows: list[dict[str, Any]]) -> None:
    addon = by_name(rows, "aws:eks/addon:Addon")["cluster-vpc-cni"]["inputs"]
    assert addon["addonName"] == "vpc-cni"
    assert json.loads(addon["configurationValues"]) == {"enableNetworkPolicy": "true"}


def test_node_and_cluster_roles_trust_their_services(rows: list[dict[str, Any]]) -> None:
    roles = by_name(rows, "aws:iam/role:Role")
    for name, service in (("cluster-control-plane", "eks.amazonaws.com"), ("cluster-nodes", "ec2.amazonaws.com")):
        (statement,) = json.loads(roles[name]["inputs"]["assumeRolePolicy"])["Statement"]
        assert statement == {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
    attached = {
        r["inputs"]["policyArn"]
        for r in rows
        if r["type"] == "aws:iam/rolePolicyAttachment:RolePolicyAttachment" and r["name"].startswith("cluster-nodes")
    }
    assert attached == {
        f"arn:aws:iam::aws:policy/{p}"
        for p in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
    }


def test_outputs_name_the_cluster_and_how_to_reach_it() -> None:
    target = render_stack(STACK).outputs()["target"]
    assert target["kind"] == "eks"
    assert target["clusterName"] == "flstack"
    assert target["endpoint"] == "https://flstack.eks.mock"
    assert target["kubeconfigCommand"] == "aws eks update-kubeconfig --name flstack --region eu-west-1"
