"""Bad EKS settings: one clear line per problem, with the full key path, before any resource exists."""

from __future__ import annotations

from typing import Any

import pytest

from components.config import ConfigError, parse
from tests.helpers import EKS, eks

GROUP = {"name": "general"}

BAD: list[tuple[dict[str, Any], str]] = [
    ({"kind": "eks", "eks": {}}, "flstack:target.eks.region: required: expected an AWS region such as eu-west-1"),
    (eks(region="Europe"), "flstack:target.eks.region: expected an AWS region such as eu-west-1, got 'Europe'"),
    (eks(kubernetesVersion="1.34.2"), "flstack:target.eks.kubernetesVersion: expected an EKS version such as 1.35"),
    (eks(vpcCidr="10.0.0.0/8"), "flstack:target.eks.vpcCidr: expected a prefix from /16 to /20, got '10.0.0.0/8'"),
    # Too small for the VPC CNI (a VPC address per pod plus a warm ENI's worth per node).
    (eks(vpcCidr="10.0.0.0/21"), "flstack:target.eks.vpcCidr: expected a prefix from /16 to /20, got '10.0.0.0/21'"),
    (eks(vpcCidr="10.0.0.1/16"), "flstack:target.eks.vpcCidr: '10.0.0.1/16' is not a network address"),
    (eks(natGateways="two"), "flstack:target.eks.natGateways: expected one of 'single', 'perZone', got 'two'"),
    (eks(adminPrincipals=[]), "flstack:target.eks.adminPrincipals: list at least one IAM role or user ARN"),
    (
        eks(adminPrincipals=["arn:aws:sts::111122223333:assumed-role/admin/me"]),
        "flstack:target.eks.adminPrincipals[0]: expected an IAM role or user ARN",
    ),
    (eks(publicAccessCidrs=[]), "flstack:target.eks.publicAccessCidrs: required unless endpointPrivateOnly is true"),
    (
        eks(endpointPrivateOnly=True, runnerInsideVpc=True),
        "flstack:target.eks.publicAccessCidrs: not used with endpointPrivateOnly: true",
    ),
    # The runner cannot reach a private endpoint of a VPC that the same `up` creates.
    (
        eks(endpointPrivateOnly=True, publicAccessCidrs=[]),
        "flstack:target.eks.endpointPrivateOnly: the `up` that creates the VPC cannot reach a private-only endpoint: "
        "first `pulumi up` with publicAccessCidrs, then from a machine inside the VPC",
    ),
    (eks(publicAccessCidrs=["everyone"]), "flstack:target.eks.publicAccessCidrs[0]: expected a CIDR such as"),
    (eks(logTypes=["api", "kubelet"]), "flstack:target.eks.logTypes[1]: expected one of 'api', 'audit'"),
    (eks(logRetentionDays=10), "flstack:target.eks.logRetentionDays: expected one of CloudWatch's values"),
    (eks(imdsHopLimit=3), "flstack:target.eks.imdsHopLimit: expected an integer >= 1 and <= 2, got 3"),
    (eks(nodeGroups=[]), "flstack:target.eks.nodeGroups: list at least one node group"),
    (
        eks(nodeGroups=[{"name": "general", "minSize": 3, "desiredSize": 2}]),
        "flstack:target.eks.nodeGroups[0].minSize: need minSize <= desiredSize <= maxSize, got 3 <= 2 <= 3",
    ),
    (
        eks(nodeGroups=[GROUP, {"name": "big", "maxSize": 0}]),
        "flstack:target.eks.nodeGroups[1].maxSize: expected an integer >= 1 and <= 1000, got 0",
    ),
    (eks(nodeGroups=[GROUP, GROUP]), "flstack:target.eks.nodeGroups: node group name 'general' is used twice"),
    (
        eks(nodeGroups=[{"name": "Big_Nodes"}]),
        "flstack:target.eks.nodeGroups[0].name: expected a DNS-1123 label",
    ),
    (
        eks(nodeGroups=[{"name": "g", "taints": ["fltk.node=normal"]}]),
        "flstack:target.eks.nodeGroups[0].taints[0]: expected a taint such as fltk.node=normal:NoSchedule",
    ),
    (
        eks(nodeGroups=[{"name": "g", "taints": ["fltk.node=normal:NoSchedule"]}]),
        "flstack:target.eks.nodeGroups: every group is tainted: CoreDNS and the CSI controllers need one",
    ),
    (
        eks(nodeGroups=[GROUP, {"name": "gpu", "gpu": True, "instanceTypes": ["m6i.large"]}]),
        "flstack:target.eks.nodeGroups[1].instanceTypes: gpu is true but ['m6i.large'] have no NVIDIA GPU",
    ),
    (
        eks(nodeGroups=[GROUP, {"name": "gpu", "gpu": True, "instanceTypes": ["g5.xlarge", "g4ad.xlarge"]}]),
        "flstack:target.eks.nodeGroups[1].instanceTypes: gpu is true but ['g4ad.xlarge'] carry AMD GPUs",
    ),
    (eks(supportType="LONG"), "flstack:target.eks.supportType: expected one of 'STANDARD', 'EXTENDED', got 'LONG'"),
    (
        eks(region="us-east-1", zoneIds=["use1-az1", "use1-az2", "use1-az3"]),
        "flstack:target.eks.zoneIds[2]: EKS does not accept subnets in use1-az3: pick another zone ID",
    ),
    (eks(zoneIds=["euc1-az1", "euc1-az2"]), "flstack:target.eks.zoneIds: list 3 different zone IDs (or none)"),
    (eks(zoneIds=["eu-central-1a", "euc1-az2", "euc1-az3"]), "flstack:target.eks.zoneIds[0]: expected a zone ID"),
    (
        eks(addonVersions={"vpc-cin": "v1.20.0-eksbuild.1"}),
        "flstack:target.eks.addonVersions.vpc-cin: not an add-on flstack manages; expected one of ['vpc-cni'",
    ),
    (eks(autoscaler="karpenter"), "flstack:target.eks.autoscaler: expected one of 'none', 'clusterAutoscaler'"),
    (
        eks(nodeGroups=[{"name": "mixed", "instanceTypes": ["m6i.large", "m7g.large"]}]),
        "flstack:target.eks.nodeGroups[0].instanceTypes: mixes x86_64 and arm64 (Graviton) types",
    ),
    (
        eks(nodeGroups=[{"name": "g", "instanceTypes": ["large"]}]),
        "flstack:target.eks.nodeGroups[0].instanceTypes[0]: expected an EC2 instance type such as m6i.large",
    ),
    (
        eks(nodeGroups=[{"name": "g", "minSzie": 1}]),
        "flstack:target.eks.nodeGroups[0].minSzie: unknown key; did you mean 'minSize'?",
    ),
    ({"kind": "eks", "minikube": {}}, "flstack:target.minikube: settings for 'minikube' given but kind is 'eks'"),
]


@pytest.mark.parametrize(("target", "expected"), BAD, ids=[line.split(": ")[0].split(":")[1] for _, line in BAD])
def test_bad_eks_settings_name_the_full_key(target: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse({"target": target})
    assert expected in str(err.value)


def test_the_helper_config_is_valid() -> None:
    """The base of every row above: each row fails because of its one change."""
    settings = parse({"target": EKS}).target.settings
    assert settings.region == "eu-central-1"
    assert [g.name for g in settings.node_groups] == ["general"]
    assert settings.kubernetes_version == "1.35"  # in EKS standard support until 2027-03-27
