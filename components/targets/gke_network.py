"""The VPC a GKE cluster lives in: custom-mode network, one regional VPC-native subnet, Cloud Router + NAT."""

from __future__ import annotations

import pulumi
import pulumi_gcp as gcp

PODS_RANGE = "pods"
SERVICES_RANGE = "services"


class Network(pulumi.ComponentResource):
    """Nodes have private addresses only: Private Google Access reaches Google APIs, Cloud NAT the rest
    (the frameworks' images are on Docker Hub, which private nodes could not pull from otherwise)."""

    def __init__(
        self,
        name: str,
        cluster_name: str,
        region: str,
        cidrs: tuple[str, str, str],  # nodes, pods, services
        gcp_provider: gcp.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:targets:GkeNetwork", name, None, opts)
        nodes, pods, services = cidrs
        gcp_opts = pulumi.ResourceOptions(parent=self, provider=gcp_provider)
        # Named, not auto-named: Filestore's StorageClass refers to the network by this name.
        self.network = gcp.compute.Network(
            f"{name}-vpc",
            name=f"{cluster_name}-vpc",
            auto_create_subnetworks=False,  # custom mode: no subnet in every region with overlapping ranges
            routing_mode="REGIONAL",
            opts=gcp_opts,
        )
        self.subnet = gcp.compute.Subnetwork(
            f"{name}-nodes",
            name=f"{cluster_name}-nodes",
            network=self.network.id,
            region=region,
            ip_cidr_range=nodes,
            private_ip_google_access=True,
            # VPC-native: pods and Services take addresses from these ranges, routable inside the VPC.
            secondary_ip_ranges=[
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=PODS_RANGE, ip_cidr_range=pods),
                gcp.compute.SubnetworkSecondaryIpRangeArgs(range_name=SERVICES_RANGE, ip_cidr_range=services),
            ],
            opts=gcp_opts,
        )
        router = gcp.compute.Router(
            f"{name}-router", name=f"{cluster_name}-router", network=self.network.id, region=region, opts=gcp_opts
        )
        self.nat = gcp.compute.RouterNat(
            f"{name}-nat",
            name=f"{cluster_name}-nat",
            router=router.name,
            region=region,
            nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES",
            log_config=gcp.compute.RouterNatLogConfigArgs(enable=True, filter="ERRORS_ONLY"),
            opts=gcp_opts,
        )
        self.network_name = self.network.name
        self.register_outputs({"network": self.network.id, "subnet": self.subnet.id})
