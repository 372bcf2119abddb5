"""The CPU pool as an EKS managed node group (`capacity.provisioner: managedNodeGroups`): where Ray
heads and CPU workers run, apart from the add-ons on the system nodes and off the GPU nodes."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config.pools import CpuPoolConfig
from components.platform.eks_cluster import NodeGroupPlacement, pool_node_group
from components.specs.gpu_nodes import cpu_pool_labels


@dataclass(frozen=True)
class CpuNodePoolArgs:
    config: CpuPoolConfig
    placement: NodeGroupPlacement


class CpuNodePool(pulumi.ComponentResource):
    node_group: aws.eks.NodeGroup

    def __init__(self, name: str, args: CpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:CpuNodePool", name, None, opts)
        pool = args.config
        self.node_group = pool_node_group(
            f"{name}-ng", self, args.placement, pool_name=pool.name, disk_size_gib=pool.disk_size_gib,
            sizes=(pool.min_size, pool.desired_size, pool.max_size),
            replace_on_changes=["instanceTypes", "capacityType"],
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            ami_type="AL2023_x86_64_STANDARD",
            labels=cpu_pool_labels(pool),
            # One head-holding node at a time when the group is updated.
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable=1),
        )
        self.register_outputs({"nodeGroupName": self.node_group.node_group_name})
