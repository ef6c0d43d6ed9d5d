"""Google Kubernetes Engine (Standard) from plain pulumi-gcp resources: VPC with NAT, a private cluster,
node pools from config, and storage on Persistent Disk and Filestore.

Every GCP resource uses one explicit `gcp.Provider` (project, region, default labels). The Kubernetes
provider authenticates with `gke-gcloud-auth-plugin` at run time, so no token is ever kept in the state.
Autopilot is out of scope: it admits no privileged pod (the `nfs` server) and has no node pools or taints.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import pulumi
import pulumi_gcp as gcp

from components import kube
from components.config.model import CIDR_HELP, is_cidr
from components.config.schema import rule
from components.storage.filestore import MINIMUM_SIZE, Filestore
from components.storage.pd_csi import PdCsi

from .gke_network import PODS_RANGE, SERVICES_RANGE, Network
from .gke_nodes import NodePoolSettings, node_pool

PROJECT = r"[a-z][-a-z0-9]{4,28}[a-z0-9]"
REGION = r"[a-z]+-[a-z]+[0-9]+"
ZONE = REGION + r"-[a-z]"
# At most 24 characters, so that `<name>-nodes` fits a service account id (6 to 30 characters).
CLUSTER_NAME = r"[a-z]([-a-z0-9]{0,22}[a-z0-9])?"
GKE_VERSION = r"1\.[0-9]{2}"
KMS_KEY = r"projects/[-a-z0-9]+/locations/[-a-z0-9]+/keyRings/[-_A-Za-z0-9]+/cryptoKeys/[-_A-Za-z0-9]+"
ENCRYPTER = "roles/cloudkms.cryptoKeyEncrypterDecrypter"
# Google's own least-privilege role for node service accounts (logs, metrics, metadata), plus image pulls.
NODE_ROLES = ("roles/container.defaultNodeServiceAccount", "roles/artifactregistry.reader")
# Service agents that encrypt with a customer key: GKE (etcd secrets), Compute (disks), Filestore.
KEY_USERS = ("container-engine-robot", "compute-system", "cloud-filer")


@dataclass(frozen=True)
class GkeSettings:
    project: str = rule(pattern=PROJECT, pattern_help="a Google Cloud project id such as my-project-123")
    region: str = rule(pattern=REGION, pattern_help="a Google Cloud region such as europe-west4")
    name: str = rule("flstack", pattern=CLUSTER_NAME, pattern_help="a cluster name (lowercase, '-', at most 24)")
    # The control plane's minimum version; the release channel upgrades it (and the nodes) from there.
    kubernetes_version: str = rule("1.34", pattern=GKE_VERSION, pattern_help="a GKE minor version such as 1.34")
    release_channel: Literal["RAPID", "REGULAR", "STABLE"] = "REGULAR"
    # Node zones; empty: GKE's default zones in the region.
    zones: list[str] = rule(default_factory=list, pattern=ZONE, pattern_help="a zone such as europe-west4-a")
    subnet_cidr: str = rule("10.0.0.0/20", valid=is_cidr, pattern_help=CIDR_HELP)  # nodes
    pods_cidr: str = rule("10.4.0.0/14", valid=is_cidr, pattern_help=CIDR_HELP)  # a /24 per node
    services_cidr: str = rule("10.8.0.0/20", valid=is_cidr, pattern_help=CIDR_HELP)
    # Who may reach the control plane's IP endpoint; or dnsEndpoint (IAM decides, no IP allowlist: CI runners).
    authorized_networks: list[str] = rule(default_factory=list, valid=is_cidr, pattern_help=CIDR_HELP)
    dns_endpoint: bool = False
    # GKE's own guard against deleting the cluster; `pulumi destroy` fails until an `up` has set it false.
    deletion_protection: bool = True
    # Customer-managed key (in `region`) for Kubernetes Secrets, node boot disks, PD volumes and Filestore.
    kms_key: str | None = rule(None, pattern=KMS_KEY, pattern_help="projects/P/locations/L/keyRings/R/cryptoKeys/K")
    node_pools: list[NodePoolSettings] = field(default_factory=lambda: [NodePoolSettings(name="general")])
    labels: dict[str, str] = field(default_factory=dict)  # added to flstack's default labels on every resource

    def check(self) -> Iterator[tuple[str, str]]:
        ranges = {"subnetCidr": self.subnet_cidr, "podsCidr": self.pods_cidr, "servicesCidr": self.services_cidr}
        nets = {}
        for key, text in ranges.items():
            net = ipaddress.ip_network(text, strict=False) if text else None
            if net is not None and (net.version != 4 or str(net) != text):
                yield key, f"expected an IPv4 network address such as 10.0.0.0/20, got {text!r}"
            elif net is not None:
                nets[key] = net
        for (a, net_a), (b, net_b) in ((x, y) for x in nets.items() for y in nets.items() if x[0] < y[0]):
            if net_a.overlaps(net_b):
                yield b, f"{net_b} overlaps {a} ({net_a})"
        for i, cidr in enumerate(self.authorized_networks or []):
            if cidr and ipaddress.ip_network(cidr, strict=False).prefixlen == 0:
                yield f"authorizedNetworks[{i}]", f"{cidr!r} opens the control plane to the whole internet"
        if self.dns_endpoint and self.authorized_networks:
            yield "authorizedNetworks", "not used with dnsEndpoint: true (the IP endpoint is turned off)"
        if not self.dns_endpoint and self.authorized_networks == []:
            yield (
                "authorizedNetworks",
                "required unless dnsEndpoint is true: list the CIDRs allowed to reach the control plane",
            )
        for i, zone in enumerate(self.zones or []):
            if zone and self.region and not zone.startswith(self.region + "-"):
                yield f"zones[{i}]", f"{zone!r} is not in region {self.region!r}"
        if self.kms_key and self.region and f"/locations/{self.region}/" not in self.kms_key:
            yield "kmsKey", f"the key must be in the cluster's region {self.region!r} (GKE and Filestore require it)"
        pools = [p for p in self.node_pools or [] if p is not None]
        if self.node_pools == []:
            yield "nodePools", "list at least one node pool"
        names = [p.name for p in pools]
        for dup in sorted({n for n in names if names.count(n) > 1}):
            yield "nodePools", f"node pool name {dup!r} is used twice"
        if pools and all(p.tainted for p in pools):
            yield "nodePools", "every pool is tainted: kube-dns and the CSI controllers need one without taints"


def kubeconfig(context: str, server: str, ca_data: str | None) -> str:
    """A kubeconfig whose user runs `gke-gcloud-auth-plugin`: it takes a fresh token from gcloud's
    credentials on every call, so none is stored in the state."""
    cluster: dict[str, str] = {"server": server}
    if ca_data:  # the DNS endpoint presents a publicly trusted certificate: no CA to pin
        cluster["certificate-authority-data"] = ca_data
    return json.dumps(
        {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
            "users": [
                {
                    "name": context,
                    "user": {
                        "exec": {
                            "apiVersion": "client.authentication.k8s.io/v1beta1",
                            "command": "gke-gcloud-auth-plugin",
                            "provideClusterInfo": True,
                            "interactiveMode": "Never",
                            "installHint": "gcloud components install gke-gcloud-auth-plugin",
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def dns_endpoint(config: gcp.container.outputs.ClusterControlPlaneEndpointsConfig | None) -> str:
    """The control plane's DNS name (`gke-<id>.<location>.gke.goog`)."""
    endpoint = config.dns_endpoint_config.endpoint if config and config.dns_endpoint_config else None
    if not endpoint:
        raise ValueError("the GKE cluster reported no DNS endpoint")
    return endpoint


class GkeCluster(pulumi.ComponentResource):
    Settings = GkeSettings
    # Filestore's basic HDD tier: an instance is at least 1 TiB, and a smaller claim is billed as one.
    SHARED_STORAGE: ClassVar[dict[str, str | None]] = {"filestore": MINIMUM_SIZE}

    def __init__(self, name: str, settings: GkeSettings, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("flstack:targets:Gke", name, None, opts)
        s = self.settings = settings
        self.gcp_provider = gcp.Provider(
            f"{name}-gcp",
            project=s.project,
            region=s.region,
            default_labels={"managed-by": "flstack", "flstack-cluster": s.name, **s.labels},
            opts=pulumi.ResourceOptions(parent=self),
        )
        gcp_opts = pulumi.ResourceOptions(parent=self, provider=self.gcp_provider)
        self.network = Network(
            f"{name}-network",
            s.name,
            s.region,
            (s.subnet_cidr, s.pods_cidr, s.services_cidr),
            self.gcp_provider,
            pulumi.ResourceOptions(parent=self),
        )
        key_grants = self._key_grants(name, gcp_opts)
        endpoints, authorized = self._control_plane_access()
        self.cluster = gcp.container.Cluster(
            f"{name}-gke",
            name=s.name,
            location=s.region,  # regional: the control plane is replicated across the region's zones
            node_locations=list(s.zones) or None,
            network=self.network.network.id,
            subnetwork=self.network.subnet.id,
            networking_mode="VPC_NATIVE",
            ip_allocation_policy=gcp.container.ClusterIpAllocationPolicyArgs(
                cluster_secondary_range_name=PODS_RANGE, services_secondary_range_name=SERVICES_RANGE
            ),
            # Node pools are separate resources; GKE needs one node to create the default pool it then drops.
            remove_default_node_pool=True,
            initial_node_count=1,
            min_master_version=s.kubernetes_version,
            release_channel=gcp.container.ClusterReleaseChannelArgs(channel=s.release_channel),
            private_cluster_config=gcp.container.ClusterPrivateClusterConfigArgs(enable_private_nodes=True),
            control_plane_endpoints_config=endpoints,
            master_authorized_networks_config=authorized,
            workload_identity_config=gcp.container.ClusterWorkloadIdentityConfigArgs(
                workload_pool=f"{s.project}.svc.id.goog"
            ),
            # Dataplane V2 (eBPF) enforces NetworkPolicy itself: no Calico add-on on top.
            datapath_provider="ADVANCED_DATAPATH",
            enable_shielded_nodes=True,
            enable_legacy_abac=False,
            master_auth=gcp.container.ClusterMasterAuthArgs(
                client_certificate_config=gcp.container.ClusterMasterAuthClientCertificateConfigArgs(
                    issue_client_certificate=False  # a client certificate can never be revoked
                )
            ),
            addons_config=gcp.container.ClusterAddonsConfigArgs(
                gce_persistent_disk_csi_driver_config=gcp.container.ClusterAddonsConfigGcePersistentDiskCsiDriverConfigArgs(
                    enabled=True
                ),
                # The driver alone costs nothing: a Filestore instance exists only when a claim asks for one.
                gcp_filestore_csi_driver_config=gcp.container.ClusterAddonsConfigGcpFilestoreCsiDriverConfigArgs(
                    enabled=True
                ),
            ),
            database_encryption=gcp.container.ClusterDatabaseEncryptionArgs(state="ENCRYPTED", key_name=s.kms_key)
            if s.kms_key
            else None,
            security_posture_config=gcp.container.ClusterSecurityPostureConfigArgs(mode="BASIC"),
            deletion_protection=s.deletion_protection,
            # Nodes must reach Docker Hub (through NAT) before pools can turn healthy; a CMEK key must be usable.
            opts=pulumi.ResourceOptions.merge(gcp_opts, pulumi.ResourceOptions(depends_on=[self.network, *key_grants])),
        )
        self.node_service_account, node_roles = self._node_identity(name, gcp_opts)
        self.node_pools = [
            node_pool(
                f"{name}-{pool.name}",
                self.cluster,
                pool,
                self.node_service_account.email,
                s.kms_key,
                pulumi.ResourceOptions.merge(gcp_opts, pulumi.ResourceOptions(depends_on=node_roles)),
            )
            for pool in s.node_pools
        ]

        self.kubernetes_version = s.kubernetes_version
        # GKE's default LoadBalancer is a passthrough Network Load Balancer: client IPs arrive unchanged.
        self.load_balancer_annotations: dict[str, str] = {}
        context = f"gke_{s.project}_{s.region}_{s.name}"
        if s.dns_endpoint:
            config = self.cluster.control_plane_endpoints_config.apply(
                lambda c: kubeconfig(context, f"https://{dns_endpoint(c)}", None)
            )
        else:
            ca = self.cluster.master_auth.apply(lambda auth: auth.cluster_ca_certificate)
            config = pulumi.Output.all(self.cluster.endpoint, ca).apply(
                lambda args: kubeconfig(context, f"https://{args[0]}", args[1])
            )
        self.kubeconfig: pulumi.Output[str] = pulumi.Output.secret(config)
        self.provider = kube.ClusterProvider(
            f"{name}-k8s",
            kubeconfig=self.kubeconfig,
            cluster_identifier=f"gke/{s.project}/{s.region}/{s.name}",
            # Objects need nodes to run on. A replaced cluster (same name, so the same identifier) is a new,
            # empty one: replace the provider and every object.
            opts=pulumi.ResourceOptions(parent=self, depends_on=self.node_pools, replace_with=[self.cluster]),
        )
        dns_flag = " --dns-endpoint" if s.dns_endpoint else ""
        self.outputs: dict[str, pulumi.Input[str]] = {
            "kind": "gke",
            "project": s.project,
            "location": s.region,
            "clusterName": self.cluster.name,
            "kubernetesVersion": s.kubernetes_version,
            "network": self.network.network_name,
            "nodeServiceAccount": self.node_service_account.email,
            "deletionProtection": str(s.deletion_protection).lower(),
            "kubeconfigCommand": f"gcloud container clusters get-credentials {s.name} --location {s.region} "
            f"--project {s.project}{dns_flag}",
        }
        self.register_outputs(self.outputs)

    def block_storage(self) -> str:
        # GKE's own standard-rwo deletes volumes with their claims: federation state goes on a Retain class.
        # Unparented, like every storage component, so a storage change never touches the cluster's URNs.
        return PdCsi("storage-pd", self.provider, self.settings.kms_key).retain_class

    def shared_storage(self, kind: str) -> str:
        return Filestore(
            "storage-filestore", self.provider, self.network.network_name, self.settings.kms_key
        ).class_name

    def _control_plane_access(
        self,
    ) -> tuple[
        gcp.container.ClusterControlPlaneEndpointsConfigArgs | None,
        gcp.container.ClusterMasterAuthorizedNetworksConfigArgs | None,
    ]:
        """Either the DNS endpoint (IAM decides who gets in) or the IP endpoint behind authorized networks."""
        s = self.settings
        if s.dns_endpoint:
            dns = gcp.container.ClusterControlPlaneEndpointsConfigDnsEndpointConfigArgs(
                allow_external_traffic=True  # reachable from anywhere, but only by a permitted IAM identity
            )
            no_ip = gcp.container.ClusterControlPlaneEndpointsConfigIpEndpointsConfigArgs(enabled=False)
            return gcp.container.ClusterControlPlaneEndpointsConfigArgs(
                dns_endpoint_config=dns, ip_endpoints_config=no_ip
            ), None
        cidr_blocks = [
            gcp.container.ClusterMasterAuthorizedNetworksConfigCidrBlockArgs(
                cidr_block=cidr, display_name=f"flstack-{i}"
            )
            for i, cidr in enumerate(s.authorized_networks)
        ]
        return None, gcp.container.ClusterMasterAuthorizedNetworksConfigArgs(
            cidr_blocks=cidr_blocks,
            gcp_public_cidrs_access_enabled=False,  # not every Google Cloud address: only the listed ones
        )

    def _key_grants(self, name: str, opts: pulumi.ResourceOptions) -> list[pulumi.Resource]:
        """The service agents that encrypt with the customer key may use it (before the cluster needs it)."""
        s = self.settings
        if not s.kms_key:
            return []
        number = gcp.organizations.get_project_output(
            project_id=s.project, opts=pulumi.InvokeOutputOptions(parent=self, provider=self.gcp_provider)
        ).number
        return [
            gcp.kms.CryptoKeyIAMMember(
                f"{name}-key-{agent}",
                crypto_key_id=s.kms_key,
                role=ENCRYPTER,
                member=pulumi.Output.concat("serviceAccount:service-", number, f"@{agent}.iam.gserviceaccount.com"),
                opts=opts,
            )
            for agent in KEY_USERS
        ]

    def _node_identity(
        self, name: str, opts: pulumi.ResourceOptions
    ) -> tuple[gcp.serviceaccount.Account, list[pulumi.Resource]]:
        s = self.settings
        account = gcp.serviceaccount.Account(
            f"{name}-nodes",
            account_id=f"{s.name}-nodes",
            display_name=f"GKE {s.name} nodes (flstack)",
            opts=opts,
        )
        member = pulumi.Output.concat("serviceAccount:", account.email)
        roles: list[pulumi.Resource] = [
            gcp.projects.IAMMember(
                f"{name}-nodes-{role.rpartition('/')[2]}", project=s.project, role=role, member=member, opts=opts
            )
            for role in NODE_ROLES
        ]
        return account, roles
