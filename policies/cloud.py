"""Rules for the clusters flstack creates: EKS (pulumi-aws) and GKE (pulumi-gcp)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from policies.base import Config, Props, Rule, is_open, string_list, truthy

EKS_CLUSTER = "aws:eks/cluster:Cluster"
LAUNCH_TEMPLATE = "aws:ec2/launchTemplate:LaunchTemplate"
EFS = "aws:efs/fileSystem:FileSystem"
KMS_KEY = "aws:kms/key:Key"
STORAGE_CLASS = "kubernetes:storage.k8s.io/v1:StorageClass"
GKE_CLUSTER = "gcp:container/cluster:Cluster"
GKE_NODE_POOL = "gcp:container/nodePool:NodePool"
DEFAULT_COMPUTE_SA = "-compute@developer.gserviceaccount.com"


def _name(props: Props) -> str:
    return str(props.get("name") or "(unnamed)")


def eks_endpoint(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """A public EKS endpoint is limited to listed CIDRs, never 0.0.0.0/0 or ::/0 (or private only)."""
    if resource_type != EKS_CLUSTER:
        return
    vpc = props.get("vpcConfig") or {}
    if vpc.get("endpointPublicAccess") is False:
        return
    cidrs = vpc.get("publicAccessCidrs") or []
    if not cidrs:  # EKS's default is 0.0.0.0/0
        yield f"{_name(props)}: public endpoint without vpcConfig.publicAccessCidrs is open to the internet"
    for cidr in cidrs:
        if is_open(cidr):
            yield f"{_name(props)}: publicAccessCidrs {cidr!r} admits the whole internet"


def eks_secrets_encryption(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """EKS envelope-encrypts Kubernetes Secrets with a KMS key."""
    if resource_type != EKS_CLUSTER:
        return
    encryption = props.get("encryptionConfig") or {}
    if "secrets" not in (encryption.get("resources") or []) or not (encryption.get("provider") or {}).get("keyArn"):
        yield f"{_name(props)}: encryptionConfig must encrypt 'secrets' with a KMS key"


def eks_control_plane_logs(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """EKS sends the control-plane logs (api, audit, authenticator by default) to CloudWatch."""
    if resource_type != EKS_CLUSTER:
        return
    missing = sorted(set(config["requiredLogTypes"]) - set(props.get("enabledClusterLogTypes") or []))
    if missing:
        yield f"{_name(props)}: enabledClusterLogTypes is missing {', '.join(missing)}"


def imds_v2(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """Node launch templates require IMDSv2 tokens with a hop limit of 1 (pods cannot borrow the node's role)."""
    if resource_type != LAUNCH_TEMPLATE:
        return
    metadata = props.get("metadataOptions") or {}
    if metadata.get("httpTokens") != "required":
        yield f"{_name(props)}: metadataOptions.httpTokens must be 'required' (IMDSv2)"
    if metadata.get("httpPutResponseHopLimit") != 1:
        yield f"{_name(props)}: metadataOptions.httpPutResponseHopLimit must be 1"


def encrypted_volumes(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """EBS volumes (node disks, the EBS StorageClasses) and EFS file systems are encrypted."""
    if resource_type == LAUNCH_TEMPLATE:
        for mapping in props.get("blockDeviceMappings") or []:
            ebs = mapping.get("ebs")
            if ebs is not None and not truthy(ebs.get("encrypted")):
                yield f"{_name(props)}: block device {mapping.get('deviceName')} is not encrypted"
    elif resource_type == EFS and not truthy(props.get("encrypted")):
        yield f"{_name(props)}: EFS file system must be encrypted"
    elif resource_type == STORAGE_CLASS and props.get("provisioner") == "ebs.csi.aws.com":
        yield from _ebs_class(props)


def _ebs_class(props: Props) -> Iterator[str]:
    if not truthy((props.get("parameters") or {}).get("encrypted")):
        yield f"{(props.get('metadata') or {}).get('name')}: EBS StorageClass needs parameters.encrypted 'true'"


def kms_rotation(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """KMS keys rotate yearly."""
    if resource_type == KMS_KEY and props.get("enableKeyRotation") is not True:
        yield f"{props.get('description') or 'KMS key'}: enableKeyRotation must be true"


def _node_config_problems(where: str, node_config: dict[str, Any]) -> Iterator[str]:
    sa = str(node_config.get("serviceAccount") or "")
    if not sa or sa.endswith(DEFAULT_COMPUTE_SA) or sa == "default":
        yield f"{where}: nodeConfig.serviceAccount must be a dedicated service account, not the default Compute one"
    if (node_config.get("workloadMetadataConfig") or {}).get("mode") != "GKE_METADATA":
        yield f"{where}: nodeConfig.workloadMetadataConfig.mode must be GKE_METADATA (Workload Identity)"
    if (node_config.get("shieldedInstanceConfig") or {}).get("enableSecureBoot") is not True:
        yield f"{where}: nodeConfig.shieldedInstanceConfig.enableSecureBoot must be true"


def gke_cluster(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """GKE: private nodes, authorized networks (never 0.0.0.0/0) or no IP endpoint, Workload Identity, shielded."""
    if resource_type != GKE_CLUSTER:
        return
    name = _name(props)
    if (props.get("privateClusterConfig") or {}).get("enablePrivateNodes") is not True:
        yield f"{name}: privateClusterConfig.enablePrivateNodes must be true"
    networks = props.get("masterAuthorizedNetworksConfig")
    endpoints = props.get("controlPlaneEndpointsConfig") or {}
    ip_endpoint_off = (endpoints.get("ipEndpointsConfig") or {}).get("enabled") is False
    if networks is None and not ip_endpoint_off:  # with the IP endpoint off, only the IAM-gated DNS one is left
        yield f"{name}: masterAuthorizedNetworksConfig must limit who reaches the control plane"
    else:
        for block in (networks or {}).get("cidrBlocks") or []:
            if is_open(str(block.get("cidrBlock"))):
                yield f"{name}: authorized network {block.get('cidrBlock')!r} admits the whole internet"
    if not (props.get("workloadIdentityConfig") or {}).get("workloadPool"):
        yield f"{name}: workloadIdentityConfig.workloadPool must be set (Workload Identity)"
    if props.get("enableShieldedNodes") is False:
        yield f"{name}: enableShieldedNodes must not be false"
    if props.get("nodeConfig") and not props.get("removeDefaultNodePool"):
        yield from _node_config_problems(name, props["nodeConfig"])


def gke_node_pool(resource_type: str, props: Props, config: Config) -> Iterator[str]:
    """GKE node pools: a dedicated service account, GKE_METADATA, secure boot."""
    if resource_type == GKE_NODE_POOL:
        yield from _node_config_problems(_name(props), props.get("nodeConfig") or {})


RULES = [
    Rule("flstack-eks-endpoint", eks_endpoint, "critical"),
    Rule("flstack-eks-secrets-encryption", eks_secrets_encryption, "high"),
    Rule(
        "flstack-eks-control-plane-logs",
        eks_control_plane_logs,
        "medium",
        config={
            "requiredLogTypes": string_list(
                ["api", "audit", "authenticator"],
                "Control-plane log types that must be enabled",
                enum=["api", "audit", "authenticator", "controllerManager", "scheduler"],
            )
        },
    ),
    Rule("flstack-eks-imdsv2", imds_v2, "high"),
    Rule("flstack-encrypted-volumes", encrypted_volumes, "high"),
    Rule("flstack-kms-rotation", kms_rotation, "medium"),
    Rule("flstack-gke-cluster", gke_cluster, "high"),
    Rule("flstack-gke-node-pools", gke_node_pool, "high"),
]
