"""VPC for an EKS cluster: private subnets for nodes and pods, public subnets for NAT and load balancers."""
from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field

import pulumi
import pulumi_aws as aws

from components.config.model import NetworkConfig


@dataclass(frozen=True)
class NetworkArgs:
    config: NetworkConfig
    cluster_name: str
    # Extra tags on the private (node) subnets, such as the one Karpenter discovers them by.
    private_subnet_tags: Mapping[str, str] = field(default_factory=dict)


def subnet_cidrs(vpc_cidr: str, az_count: int) -> tuple[list[str], list[str]]:
    """Split the VPC range: one large private block per AZ, small public blocks carved from the last.

    With the VPC CNI every pod takes a VPC address from the private subnets, so they get
    one eighth of the range each; public subnets only hold NAT gateways and load balancers.
    """
    net = ipaddress.ip_network(vpc_cidr)
    eighths = list(net.subnets(prefixlen_diff=3))
    private = [str(block) for block in eighths[:az_count]]
    public = [str(block) for block in list(eighths[-1].subnets(prefixlen_diff=3))[:az_count]]
    return private, public


class Network(pulumi.ComponentResource):
    vpc_id: pulumi.Output[str]
    private_subnet_ids: pulumi.Output[list[str]]
    public_subnet_ids: pulumi.Output[list[str]]

    def __init__(self, name: str, args: NetworkArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:Network", name, None, opts)
        cfg = args.config
        if cfg.uses_existing_vpc:
            self.vpc_id = pulumi.Output.from_input(cfg.existing_vpc_id or "")
            self.private_subnet_ids = pulumi.Output.from_input(list(cfg.existing_private_subnet_ids))
            self.public_subnet_ids = pulumi.Output.from_input(list(cfg.existing_public_subnet_ids))
            # Subnets someone else owns: each tag is a resource of its own, removed again on destroy.
            for i, subnet_id in enumerate(cfg.existing_private_subnet_ids):
                for key, value in sorted(args.private_subnet_tags.items()):
                    aws.ec2.Tag(f"{name}-private-{i}-{key.replace('/', '-').replace('.', '-')}",
                                resource_id=subnet_id, key=key, value=value, opts=pulumi.ResourceOptions(parent=self))
        else:
            self._create(name, cfg, args.cluster_name, dict(args.private_subnet_tags))
        self.register_outputs({
            "vpcId": self.vpc_id,
            "privateSubnetIds": self.private_subnet_ids,
            "publicSubnetIds": self.public_subnet_ids,
        })

    def _create(self, name: str, cfg: NetworkConfig, cluster_name: str, private_tags: dict[str, str]) -> None:
        child = pulumi.ResourceOptions(parent=self)
        cluster_tag = {f"kubernetes.io/cluster/{cluster_name}": "shared"}
        vpc = aws.ec2.Vpc(f"{name}-vpc", cidr_block=cfg.vpc_cidr, enable_dns_hostnames=True,
                          enable_dns_support=True, tags={"Name": f"{name}-vpc"}, opts=child)
        azs = aws.get_availability_zones_output(state="available",
                                                opts=pulumi.InvokeOutputOptions(parent=self))
        igw = aws.ec2.InternetGateway(f"{name}-igw", vpc_id=vpc.id, tags={"Name": f"{name}-igw"}, opts=child)
        public_rt = aws.ec2.RouteTable(
            f"{name}-public-rt", vpc_id=vpc.id,
            routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", gateway_id=igw.id)],
            tags={"Name": f"{name}-public"}, opts=child)
        private_cidrs, public_cidrs = subnet_cidrs(cfg.vpc_cidr, cfg.az_count)
        public_ids: list[pulumi.Output[str]] = []
        private_ids: list[pulumi.Output[str]] = []
        nat_ids: list[pulumi.Output[str]] = []
        for i in range(cfg.az_count):
            az = azs.names[i]
            public = aws.ec2.Subnet(
                f"{name}-public-{i}", vpc_id=vpc.id, cidr_block=public_cidrs[i], availability_zone=az,
                map_public_ip_on_launch=False,
                tags={"Name": f"{name}-public-{i}", "kubernetes.io/role/elb": "1", **cluster_tag}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-public-{i}", subnet_id=public.id,
                                          route_table_id=public_rt.id, opts=child)
            public_ids.append(public.id)
            if cfg.nat == "perAz" or i == 0:
                eip = aws.ec2.Eip(f"{name}-nat-{i}", domain="vpc", tags={"Name": f"{name}-nat-{i}"}, opts=child)
                nat = aws.ec2.NatGateway(f"{name}-nat-{i}", allocation_id=eip.id, subnet_id=public.id,
                                         tags={"Name": f"{name}-nat-{i}"},
                                         opts=pulumi.ResourceOptions(parent=self, depends_on=[igw]))
                nat_ids.append(nat.id)
            private = aws.ec2.Subnet(
                f"{name}-private-{i}", vpc_id=vpc.id, cidr_block=private_cidrs[i], availability_zone=az,
                tags={"Name": f"{name}-private-{i}", "kubernetes.io/role/internal-elb": "1", **cluster_tag,
                      **private_tags},
                opts=child)
            # A single NAT keeps dev cheap; perAz keeps an AZ outage from cutting egress elsewhere.
            private_rt = aws.ec2.RouteTable(
                f"{name}-private-rt-{i}", vpc_id=vpc.id,
                routes=[aws.ec2.RouteTableRouteArgs(cidr_block="0.0.0.0/0", nat_gateway_id=nat_ids[-1])],
                tags={"Name": f"{name}-private-{i}"}, opts=child)
            aws.ec2.RouteTableAssociation(f"{name}-private-{i}", subnet_id=private.id,
                                          route_table_id=private_rt.id, opts=child)
            private_ids.append(private.id)
        self.vpc_id = vpc.id
        self.private_subnet_ids = pulumi.Output.all(*private_ids)
        self.public_subnet_ids = pulumi.Output.all(*public_ids)
