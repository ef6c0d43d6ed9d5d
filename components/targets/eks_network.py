"""The VPC an EKS cluster lives in: private subnets for nodes, public ones for load balancers, across 3 zones."""

from __future__ import annotations

import ipaddress
from typing import Literal

import pulumi
import pulumi_aws as aws

ZONES = 3
NatGateways = Literal["single", "perZone"]
# Zone IDs where EKS refuses control-plane subnets (the same physical zone in every account, unlike names).
REJECTED_ZONE_IDS = frozenset({"use1-az3", "usw1-az2", "cac1-az3"})


def pick_zone_ids(zone_ids: list[str]) -> list[str]:
    """The first three zone IDs EKS accepts, in ID order (stable across accounts)."""
    return sorted(z for z in zone_ids if z not in REJECTED_ZONE_IDS)[:ZONES]


def subnet_cidrs(vpc_cidr: str) -> tuple[list[str], list[str]]:
    """(private, public) CIDRs: three quarters of the VPC for nodes and pods, a sixteenth each for LBs.

    With the VPC CNI every pod takes a VPC address, so the private subnets get nearly all the space.
    A /16 gives three /18 private subnets (16k addresses each) and three /20 public ones.
    """
    vpc = ipaddress.IPv4Network(vpc_cidr)  # validated in the config: IPv4, /16 to /20
    quarters = list(vpc.subnets(prefixlen_diff=2))
    private = [str(net) for net in quarters[:ZONES]]
    public = [str(net) for net in list(quarters[ZONES].subnets(prefixlen_diff=2))[:ZONES]]
    return private, public


class Network(pulumi.ComponentResource):
    """VPC, internet gateway, NAT gateway(s) and one route table per private subnet (its zone's NAT)."""

    def __init__(
        self,
        name: str,
        cluster_name: str,
        vpc_cidr: str,
        nat_gateways: NatGateways,
        zone_ids: list[str],
        aws_provider: aws.Provider,
        opts: pulumi.ResourceOptions | None = None,
    ) -> None:
        super().__init__("flstack:targets:EksNetwork", name, None, opts)
        child = pulumi.ResourceOptions(parent=self, provider=aws_provider)
        # Zones by ID. Pinned in the config, nothing is looked up: a zone that is impaired (not
        # `available`) at the next `up` cannot shift the list and replace every subnet.
        self.zone_ids: pulumi.Output[list[str]]
        if zone_ids:
            self.zone_ids = pulumi.Output.from_input(list(zone_ids))
        else:
            zones = aws.get_availability_zones_output(
                state="available",
                # Zones without the opt-in (Local/Wavelength Zones) do not host EKS node groups.
                filters=[{"name": "opt-in-status", "values": ["opt-in-not-required"]}],
                exclude_zone_ids=sorted(REJECTED_ZONE_IDS),
                opts=pulumi.InvokeOutputOptions(provider=aws_provider, parent=self),
            )
            self.zone_ids = zones.zone_ids.apply(pick_zone_ids)
        self.cidr = vpc_cidr
        private_cidrs, public_cidrs = subnet_cidrs(vpc_cidr)

        self.vpc = aws.ec2.Vpc(
            f"{name}-vpc",
            cidr_block=vpc_cidr,
            enable_dns_hostnames=True,  # EKS nodes and EFS mount targets need DNS names
            enable_dns_support=True,
            tags={"Name": cluster_name},
            opts=child,
        )
        gateway = aws.ec2.InternetGateway(
            f"{name}-igw", vpc_id=self.vpc.id, tags={"Name": f"{cluster_name}-igw"}, opts=child
        )
        public_routes = aws.ec2.RouteTable(
            f"{name}-public", vpc_id=self.vpc.id, tags={"Name": f"{cluster_name}-public"}, opts=child
        )
        internet_route = aws.ec2.Route(
            f"{name}-public-default",
            route_table_id=public_routes.id,
            destination_cidr_block="0.0.0.0/0",
            gateway_id=gateway.id,
            opts=child,
        )

        self.public_subnets: list[aws.ec2.Subnet] = []
        self.private_subnets: list[aws.ec2.Subnet] = []
        nats: list[aws.ec2.NatGateway] = []
        # Resources that must exist before nodes can reach the internet (image pulls, joining the cluster).
        self.egress: list[pulumi.Resource] = [internet_route]
        for i in range(ZONES):
            zone = self.zone_ids[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}",
                vpc_id=self.vpc.id,
                cidr_block=public_cidrs[i],
                availability_zone_id=zone,
                map_public_ip_on_launch=False,  # only load balancers and NAT gateways live here
                # The AWS Load Balancer Controller and the in-tree service controller find subnets by tag.
                tags={"Name": f"{cluster_name}-public-{i}", "kubernetes.io/role/elb": "1"},
                opts=child,
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-public-{i}", subnet_id=public.id, route_table_id=public_routes.id, opts=child
            )
            self.public_subnets.append(public)
            if i == 0 or nat_gateways == "perZone":
                ip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{cluster_name}-nat-{i}"}, opts=child)
                nats.append(
                    aws.ec2.NatGateway(
                        f"{name}-nat-{i}",
                        allocation_id=ip.id,
                        subnet_id=public.id,
                        tags={"Name": f"{cluster_name}-nat-{i}"},
                        opts=pulumi.ResourceOptions.merge(child, pulumi.ResourceOptions(depends_on=[gateway])),
                    )
                )

            private = aws.ec2.Subnet(
                f"{name}-private-{i}",
                vpc_id=self.vpc.id,
                cidr_block=private_cidrs[i],
                availability_zone_id=zone,
                tags={"Name": f"{cluster_name}-private-{i}", "kubernetes.io/role/internal-elb": "1"},
                opts=child,
            )
            routes = aws.ec2.RouteTable(
                f"{name}-private-{i}", vpc_id=self.vpc.id, tags={"Name": f"{cluster_name}-private-{i}"}, opts=child
            )
            self.egress.append(
                aws.ec2.Route(
                    f"{name}-private-{i}-default",
                    route_table_id=routes.id,
                    destination_cidr_block="0.0.0.0/0",
                    nat_gateway_id=nats[-1].id,  # its own zone's NAT, or the single one
                    opts=child,
                )
            )
            aws.ec2.RouteTableAssociation(
                f"{name}-private-{i}", subnet_id=private.id, route_table_id=routes.id, opts=child
            )
            self.private_subnets.append(private)

        self.private_subnet_ids = [s.id for s in self.private_subnets]
        self.register_outputs(
            {
                "vpcId": self.vpc.id,
                "zoneIds": self.zone_ids,
                "privateSubnetIds": self.private_subnet_ids,
                "publicSubnetIds": [s.id for s in self.public_subnets],
            }
        )
