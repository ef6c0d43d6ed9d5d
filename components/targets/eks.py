"""Amazon EKS from plain pulumi-aws resources: VPC, encrypted control plane, OIDC, managed node groups.

Every AWS resource uses one explicit `aws.Provider` (region and default tags from config). The Kubernetes
provider authenticates with `aws eks get-token` at run time, so no token is ever kept in the state.
"""

from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pulumi
import pulumi_aws as aws

from components import iam, kube
from components.config.model import CIDR_HELP, is_cidr
from components.config.schema import rule
from components.storage.ebs_csi import EbsCsi
from components.storage.efs import Efs

from . import eks_addons
from .eks_autoscaler import ClusterAutoscaler
from .eks_gpu import device_plugin
from .eks_network import REJECTED_ZONE_IDS, ZONES, NatGateways, Network
from .eks_nodes import NodeGroupSettings, launch_template, node_group

REGION = r"[a-z]{2}(-[a-z]+)+-[0-9]+"
EKS_VERSION = r"1\.[0-9]{2}"
ZONE_ID = r"[a-z]{2,6}[0-9]+-az[0-9]+"
# The newest EKS version when this was written; standard support ends 2027-03-27 (EKS release calendar).
# Bump it (one minor at a time on a live cluster) before then; preflight checks the real status.
DEFAULT_VERSION = "1.35"
# The VPC CNI gives every pod a VPC address and keeps a warm ENI's worth of addresses per node, so the
# smallest VPC accepted is a /20: three /22 node subnets of about 1000 addresses each.
SMALLEST_VPC_PREFIX = 20
CLUSTER_NAME = r"[A-Za-z][-A-Za-z0-9_]{0,99}"
PRINCIPAL_ARN = r"arn:aws(-[a-z]+)*:iam::[0-9]{12}:(role|user)/[\w+=,.@/-]+"
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288)
LogType = Literal["api", "audit", "authenticator", "controllerManager", "scheduler"]


@dataclass(frozen=True)
class EksSettings:
    region: str = rule(pattern=REGION, pattern_help="an AWS region such as eu-west-1")
    name: str = rule("flstack", pattern=CLUSTER_NAME, pattern_help="an EKS cluster name (letters, digits, - and _)")
    kubernetes_version: str = rule(DEFAULT_VERSION, pattern=EKS_VERSION, pattern_help="an EKS version such as 1.35")
    # STANDARD: no extended-support fee; when standard support ends EKS upgrades the cluster itself.
    # EXTENDED: up to 12 more months on the version at $0.60 instead of $0.10 per cluster-hour.
    support_type: Literal["STANDARD", "EXTENDED"] = "STANDARD"
    # Three availability zone IDs (e.g. euw1-az1), pinned: `preflight` suggests them. Empty: chosen at
    # each run from the zones available then, so an impaired zone could replace subnets.
    zone_ids: list[str] = rule(default_factory=list, pattern=ZONE_ID, pattern_help="a zone ID such as euw1-az1")
    # Add-on versions (vpc-cni, kube-proxy, coredns, aws-ebs-csi-driver, aws-efs-csi-driver); an add-on
    # not listed gets EKS's default version for kubernetesVersion.
    addon_versions: dict[str, str] = field(default_factory=dict)
    # clusterAutoscaler: grows groups from their minSize (0 included) for Pending pods, shrinks idle ones.
    autoscaler: Literal["none", "clusterAutoscaler"] = "clusterAutoscaler"
    vpc_cidr: str = rule("10.0.0.0/16", valid=is_cidr, pattern_help="an IPv4 CIDR such as 10.0.0.0/16")
    # One NAT gateway is cheaper; one per zone keeps nodes online when a zone fails.
    nat_gateways: NatGateways = "single"
    # IAM roles/users given cluster admin (AmazonEKSClusterAdminPolicy). The identity running
    # `pulumi up` must be one of them: the Kubernetes provider authenticates as it.
    admin_principals: list[str] = rule(
        default_factory=list,
        pattern=PRINCIPAL_ARN,
        pattern_help="an IAM role or user ARN such as arn:aws:iam::111122223333:role/admin",
    )
    # Who may reach the public API endpoint; or endpointPrivateOnly (then run Pulumi inside the VPC).
    public_access_cidrs: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    endpoint_private_only: bool = False
    # A private-only endpoint is reachable only from inside the VPC, which the first `up` creates: say that
    # this `up` runs inside it (a bastion, CI runner or VPN there), after a first `up` with publicAccessCidrs.
    runner_inside_vpc: bool = False
    log_types: list[LogType] = field(default_factory=lambda: ["api", "audit", "authenticator"])
    log_retention_days: int = 30
    # IMDSv2 response hop limit on nodes. 1 keeps pods (one hop further) away from the node role's
    # credentials; 2 only for workloads that must read instance metadata without IRSA.
    imds_hop_limit: int = rule(1, min=1, max=2)
    node_groups: list[NodeGroupSettings] = field(default_factory=lambda: [NodeGroupSettings(name="general")])
    tags: dict[str, str] = field(default_factory=dict)  # added to flstack's default tags on every resource

    def check(self) -> Iterator[tuple[str, str]]:
        yield from _check_cidr("vpcCidr", self.vpc_cidr, min_prefix=16, max_prefix=SMALLEST_VPC_PREFIX)
        zones = [z for z in self.zone_ids or [] if z is not None]
        if zones and len(set(zones)) != ZONES:
            yield "zoneIds", f"list {ZONES} different zone IDs (or none), got {zones}"
        for i, zone in enumerate(self.zone_ids or []):
            if zone in REJECTED_ZONE_IDS:
                yield f"zoneIds[{i}]", f"EKS does not accept subnets in {zone}: pick another zone ID of the region"
        for addon in sorted(set(self.addon_versions or {}) - set(eks_addons.KNOWN)):
            yield f"addonVersions.{addon}", f"not an add-on flstack manages; expected one of {list(eks_addons.KNOWN)}"
        for i, cidr in enumerate(self.public_access_cidrs or []):
            if cidr is not None:
                yield from _check_cidr(f"publicAccessCidrs[{i}]", cidr, min_prefix=0, max_prefix=32)
        if self.endpoint_private_only and not self.runner_inside_vpc:
            yield (
                "endpointPrivateOnly",
                "the `up` that creates the VPC cannot reach a private-only endpoint: first `pulumi up` with "
                "publicAccessCidrs, then from a machine inside the VPC (bastion, CI runner or VPN) set "
                "endpointPrivateOnly: true and runnerInsideVpc: true",
            )
        if self.endpoint_private_only and self.public_access_cidrs:
            yield "publicAccessCidrs", "not used with endpointPrivateOnly: true (the endpoint has no public side)"
        if not self.endpoint_private_only and self.public_access_cidrs == []:
            yield (
                "publicAccessCidrs",
                "required unless endpointPrivateOnly is true: list the CIDRs allowed to reach the API server",
            )
        admins = [a for a in self.admin_principals or [] if a is not None]  # bad items are reported already
        if self.admin_principals == []:
            yield "adminPrincipals", "list at least one IAM role or user ARN (including the one running pulumi up)"
        for dup in sorted({a for a in admins if admins.count(a) > 1}):
            yield "adminPrincipals", f"{dup!r} is listed twice"
        if self.log_retention_days not in LOG_RETENTION_DAYS:
            yield (
                "logRetentionDays",
                f"expected one of CloudWatch's values {LOG_RETENTION_DAYS}, got {self.log_retention_days}",
            )
        groups = [g for g in self.node_groups or [] if g is not None]
        if self.node_groups == []:
            yield "nodeGroups", "list at least one node group"
        names = [g.name for g in groups]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            yield "nodeGroups", f"node group name {dup!r} is used twice"
        if groups and all(g.tainted for g in groups):
            yield "nodeGroups", "every group is tainted: CoreDNS and the CSI controllers need one without taints"


def _check_cidr(key: str, text: str, min_prefix: int, max_prefix: int) -> Iterator[tuple[str, str]]:
    try:
        net = ipaddress.ip_network(text)
    except ValueError as err:
        yield key, f"{text!r} is not a network address: {err}"
        return
    if net.version != 4:
        yield key, f"expected an IPv4 CIDR, got {text!r}"
    elif not min_prefix <= net.prefixlen <= max_prefix:
        yield key, f"expected a prefix from /{min_prefix} to /{max_prefix}, got {text!r}"


def kubeconfig(cluster_name: str, region: str, endpoint: str, ca_data: str) -> str:
    """A kubeconfig whose user runs `aws eks get-token`: short-lived tokens, none stored in the state."""
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {"name": cluster_name, "cluster": {"server": endpoint, "certificate-authority-data": ca_data}}
            ],
            "contexts": [{"name": cluster_name, "context": {"cluster": cluster_name, "user": cluster_name}}],
            "current-context": cluster_name,
            "users": [
                {
                    "name": cluster_name,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "aws",
                            "args": ["eks", "get-token", "--cluster-name", cluster_name, "--region", region],
                            "interactiveMode": "Never",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def oidc_issuer(identities: Sequence[aws.eks.outputs.ClusterIdentity]) -> str:
    """The cluster's OIDC issuer URL (`https://oidc.eks.REGION.amazonaws.com/id/ID`)."""
    oidcs = identities[0].oidcs or []
    if not oidcs or not oidcs[0].issuer:
        raise ValueError("the EKS cluster reported no OIDC issuer")
    return oidcs[0].issuer


def _principal_suffix(arn: str) -> str:
    """`arn:aws:iam::1:role/team/admin` -> `role-team-admin`: a resource name that survives list reordering."""
    return re.sub(r"[^A-Za-z0-9-]+", "-", arn.split(":", 5)[5]).strip("-")


class EksCluster(pulumi.ComponentResource):
    Settings = EksSettings
    SHARED_STORAGE: ClassVar[dict[str, str | None]] = {"efs": None}  # EFS grows with its data: no minimum

    def __init__(self, name: str, settings: EksSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:targets:Eks", name, None, opts)
        s = self.settings = settings
        self.aws_provider = aws.Provider(
            f"{name}-aws",
            region=s.region,
            default_tags={"tags": {"managed-by": "flstack", "flstack-cluster": s.name, **s.tags}},
            opts=pulumi.ResourceOptions(parent=self),
        )
        aws_opts = pulumi.ResourceOptions(parent=self, provider=self.aws_provider)
        self.partition = aws.get_partition_output(
            opts=pulumi.InvokeOutputOptions(parent=self, provider=self.aws_provider)
        ).partition
        self.network = Network(
            f"{name}-network",
            s.name,
            s.vpc_cidr,
            s.nat_gateways,
            s.zone_ids,
            self.aws_provider,
            pulumi.ResourceOptions(parent=self),
        )

        # Kubernetes Secrets are envelope-encrypted with this key; losing it loses every Secret.
        self.secrets_key = aws.kms.Key(
            f"{name}-secrets",
            description=f"EKS {s.name}: envelope encryption of Kubernetes Secrets",
            enable_key_rotation=True,
            deletion_window_in_days=30,
            opts=pulumi.ResourceOptions.merge(aws_opts, pulumi.ResourceOptions(protect=True, retain_on_delete=True)),
        )
        control_plane_role, control_plane = self._control_plane_role(name, aws_opts)
        # Created by us, before the cluster, so it gets a retention period (EKS would keep logs forever).
        log_group = aws.cloudwatch.LogGroup(
            f"{name}-control-plane",
            name=f"/aws/eks/{s.name}/cluster",
            retention_in_days=s.log_retention_days,
            opts=aws_opts,
        )
        self.cluster = aws.eks.Cluster(
            f"{name}-eks",
            name=s.name,
            version=s.kubernetes_version,
            role_arn=control_plane_role.arn,
            vpc_config=aws.eks.ClusterVpcConfigArgs(
                subnet_ids=self.network.private_subnet_ids,
                endpoint_private_access=True,
                endpoint_public_access=not s.endpoint_private_only,
                public_access_cidrs=None if s.endpoint_private_only else s.public_access_cidrs,
            ),
            access_config=aws.eks.ClusterAccessConfigArgs(
                # Access entries only (no aws-auth ConfigMap), and no hidden admin for whoever created it.
                authentication_mode="API",
                bootstrap_cluster_creator_admin_permissions=False,
            ),
            enabled_cluster_log_types=list(s.log_types),
            encryption_config=aws.eks.ClusterEncryptionConfigArgs(
                provider=aws.eks.ClusterEncryptionConfigProviderArgs(key_arn=self.secrets_key.arn),
                resources=["secrets"],
            ),
            upgrade_policy=aws.eks.ClusterUpgradePolicyArgs(support_type=s.support_type),
            opts=pulumi.ResourceOptions.merge(aws_opts, pulumi.ResourceOptions(depends_on=[*control_plane, log_group])),
        )
        self.oidc_issuer = self.cluster.identities.apply(oidc_issuer)
        self.oidc_provider = aws.iam.OpenIdConnectProvider(
            f"{name}-oidc", url=self.oidc_issuer, client_id_lists=["sts.amazonaws.com"], opts=aws_opts
        )
        admins = self._admin_access(name, aws_opts)
        # Networking add-ons. A node becomes Ready only with the CNI, so vpc-cni and kube-proxy come first.
        vpc_cni = self.addon(
            f"{name}-vpc-cni",
            "vpc-cni",
            aws_opts,
            # flstack isolates every federation with NetworkPolicies: the VPC CNI enforces them only when asked.
            configuration_values=json.dumps({"enableNetworkPolicy": "true"}),
        )
        kube_proxy = self.addon(f"{name}-kube-proxy", "kube-proxy", aws_opts)
        self.node_groups = self._node_groups(name, aws_opts, [vpc_cni, kube_proxy])
        # CoreDNS is a Deployment: it turns ACTIVE only once nodes run it.
        coredns = self.addon(
            f"{name}-coredns",
            "coredns",
            pulumi.ResourceOptions.merge(aws_opts, pulumi.ResourceOptions(depends_on=self.node_groups)),
        )
        self.kubernetes_version = s.kubernetes_version
        # The in-tree controller's default, a Classic ELB, hides client IPs; an NLB with
        # externalTrafficPolicy Local keeps them, so the NetworkPolicy's ipBlocks see real sources.
        self.load_balancer_annotations = {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}
        self.kubeconfig = pulumi.Output.all(self.cluster.endpoint, self.cluster.certificate_authority.data).apply(
            lambda args: kubeconfig(s.name, s.region, args[0], args[1])
        )
        self.provider = kube.ClusterProvider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            cluster_identifier=f"eks/{s.region}/{s.name}",
            # Objects need an admin identity that may call the API, and nodes to run on. A replaced cluster
            # (same name, so the same identifier) is a new, empty one: replace the provider and every object.
            opts=pulumi.ResourceOptions(
                parent=self,
                depends_on=[*admins, vpc_cni, coredns, *self.node_groups],
                replace_with=[self.cluster],
            ),
        )
        k8s_opts = pulumi.ResourceOptions(parent=self, provider=self.provider)
        self.device_plugin = device_plugin(f"{name}-nvidia-device-plugin", s.node_groups, k8s_opts)
        self.autoscaler = None
        if s.autoscaler == "clusterAutoscaler":
            self.autoscaler = ClusterAutoscaler(
                f"{name}-autoscaler",
                s.name,
                s.region,
                s.kubernetes_version,
                self.oidc_provider,
                list(zip(s.node_groups, self.node_groups, strict=True)),
                self.aws_provider,
                self.provider,
                pulumi.ResourceOptions(parent=self),
            )
        self.outputs: dict[str, pulumi.Input[str]] = {
            "kind": "eks",
            "clusterName": self.cluster.name,
            "region": s.region,
            "kubernetesVersion": s.kubernetes_version,
            "endpoint": self.cluster.endpoint,
            "oidcIssuer": self.oidc_issuer,
            "vpcId": self.network.vpc.id,
            "secretsKeyArn": self.secrets_key.arn,
            "kubeconfigCommand": f"aws eks update-kubeconfig --name {s.name} --region {s.region}",
        }
        self.register_outputs(self.outputs)

    def block_storage(self) -> str:
        # EKS has no working default class: install the EBS driver, state goes on volumes that are retained.
        # Named and parented as before storage moved into the targets, so existing stacks keep their URNs.
        return EbsCsi("storage-ebs", self).retain_class

    def shared_storage(self, kind: str) -> str:
        return Efs("storage-efs", self).class_name

    def managed_policy(self, path: str) -> pulumi.Output[str]:
        return iam.managed_policy_arn(self.partition, path)

    def addon(
        self,
        name: str,
        addon_name: str,
        opts: pulumi.ResourceOptions,
        configuration_values: str | None = None,
        service_account_role_arn: pulumi.Input[str] | None = None,
    ) -> aws.eks.Addon:
        """A managed add-on on this cluster at its version: pinned in the config or EKS's default for its version."""
        s = self.settings
        version = eks_addons.version(addon_name, s.kubernetes_version, s.addon_versions, self.aws_provider, self)
        return eks_addons.managed_addon(
            name, self.cluster.name, addon_name, version, opts, configuration_values, service_account_role_arn
        )

    def _control_plane_role(
        self, name: str, opts: pulumi.ResourceOptions
    ) -> tuple[aws.iam.Role, list[pulumi.Resource]]:
        """The cluster's role, and what it needs before the cluster exists: its policy, use of the secrets key."""
        role = aws.iam.Role(
            f"{name}-control-plane", assume_role_policy=iam.service_trust_policy("eks.amazonaws.com"), opts=opts
        )
        policy = aws.iam.RolePolicyAttachment(
            f"{name}-control-plane", role=role.name, policy_arn=self.managed_policy("AmazonEKSClusterPolicy"), opts=opts
        )
        key_use = aws.iam.RolePolicy(
            f"{name}-control-plane-kms",
            role=role.id,
            policy=self.secrets_key.arn.apply(
                lambda arn: json.dumps(
                    {
                        "Version": "2012-10-17",
                        "Statement": [
                            {
                                "Effect": "Allow",
                                "Action": ["kms:Encrypt", "kms:Decrypt", "kms:ListGrants", "kms:DescribeKey"],
                                "Resource": arn,
                            }
                        ],
                    },
                    sort_keys=True,
                )
            ),
            opts=opts,
        )
        return role, [policy, key_use]

    def _admin_access(self, name: str, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        admin_policy = pulumi.Output.concat(
            "arn:", self.partition, ":eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
        )
        done: list[pulumi.Resource] = []
        for arn in self.settings.admin_principals:
            suffix = _principal_suffix(arn)
            entry = aws.eks.AccessEntry(
                f"{name}-admin-{suffix}", cluster_name=self.cluster.name, principal_arn=arn, type="STANDARD", opts=opts
            )
            done.append(
                aws.eks.AccessPolicyAssociation(
                    f"{name}-admin-{suffix}",
                    cluster_name=self.cluster.name,
                    principal_arn=entry.principal_arn,
                    policy_arn=admin_policy,
                    access_scope=aws.eks.AccessPolicyAssociationAccessScopeArgs(type="cluster"),
                    opts=opts,
                )
            )
        return done

    def _node_groups(
        self, name: str, opts: pulumi.ResourceOptions, addons: list[aws.eks.Addon]
    ) -> list[aws.eks.NodeGroup]:
        s = self.settings
        role = aws.iam.Role(
            f"{name}-nodes", assume_role_policy=iam.service_trust_policy("ec2.amazonaws.com"), opts=opts
        )
        attachments = [
            aws.iam.RolePolicyAttachment(
                f"{name}-nodes-{policy}", role=role.name, policy_arn=self.managed_policy(policy), opts=opts
            )
            for policy in ("AmazonEKSWorkerNodePolicy", "AmazonEKS_CNI_Policy", "AmazonEC2ContainerRegistryReadOnly")
        ]
        # Nodes must reach the internet (through NAT), hold their policies and find the CNI before they can join.
        ready = pulumi.ResourceOptions(depends_on=[*attachments, *self.network.egress, *addons])
        groups = []
        for group in s.node_groups:
            template = launch_template(f"{name}-{group.name}", s.name, group, s.imds_hop_limit, opts)
            groups.append(
                node_group(
                    f"{name}-{group.name}",
                    self.cluster,
                    self.cluster.version,
                    group,
                    role.arn,
                    self.network.private_subnet_ids,
                    template,
                    pulumi.ResourceOptions.merge(opts, ready),
                )
            )
        return groups
