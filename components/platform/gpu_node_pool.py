"""One GPU capacity pool: an EKS managed node group on an NVIDIA AMI, tainted so only GPU
work lands there, plus the Auto Scaling group tags that let the Cluster Autoscaler scale
it up from zero nodes."""
from __future__ import annotations

import re
from dataclasses import dataclass

import pulumi
import pulumi_aws as aws

from components.config.model import GpuPoolConfig
from components.constants import EKS_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, NO_FALLBACK_TAG
from components.platform.eks_cluster import NodeGroupPlacement, pool_node_group
from components.specs.gpu_nodes import CA_TEMPLATE_PREFIX, autoscaler_node_template_tags, pool_labels


@dataclass(frozen=True)
class GpuNodePoolArgs:
    config: GpuPoolConfig
    placement: NodeGroupPlacement


class GpuNodePool(pulumi.ComponentResource):
    node_group: aws.eks.NodeGroup
    labels: dict[str, str]

    def __init__(self, name: str, args: GpuNodePoolArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:GpuNodePool", name, None, opts)
        pool = args.config
        self.labels = pool_labels(pool)
        self.node_group = pool_node_group(
            f"{name}-ng", self, args.placement, pool_name=pool.name, disk_size_gib=pool.disk_size_gib,
            sizes=(pool.min_size, pool.desired_size, pool.max_size),
            # A new instance type list or AMI type needs a new group.
            replace_on_changes=["instanceTypes", "amiType", "capacityType"],
            instance_types=list(pool.instance_types),
            capacity_type=pool.capacity_type,
            ami_type=pool.ami_type,
            labels=self.labels,
            taints=[aws.eks.NodeGroupTaintArgs(key=GPU_TAINT_KEY, value=GPU_TAINT_VALUE, effect=EKS_TAINT_EFFECT)],
            update_config=aws.eks.NodeGroupUpdateConfigArgs(max_unavailable_percentage=33),
            tags={NO_FALLBACK_TAG: pool.no_fallback_reason} if pool.no_fallback_reason else {},
        )
        asg_name = self.node_group.resources.apply(lambda rs: rs[0].autoscaling_groups[0].name)
        for key, value in sorted(autoscaler_node_template_tags(pool).items()):
            # Named after the tag key so adding a label does not rename the other tags.
            aws.autoscaling.Tag(
                f"{name}-ca-{re.sub('[^a-z0-9]+', '-', key.removeprefix(CA_TEMPLATE_PREFIX).lower()).strip('-')}",
                autoscaling_group_name=asg_name,
                tag=aws.autoscaling.TagTagArgs(key=key, value=value, propagate_at_launch=False),
                opts=pulumi.ResourceOptions(parent=self))
        self.register_outputs({"nodeGroupName": self.node_group.node_group_name, "labels": self.labels})
