"""The capacity model both provisioners build from: the GPU pools, the CPU pool for Ray heads and
CPU workers, and how nodes are provisioned (EKS managed node groups or Karpenter).

One pool, one set of facts (name, labels, taint, GPUs per node, max size): managed node groups,
Karpenter NodePools, the team stacks' fit checks and the platform's outputs all read them here.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
# Managed node group AMI types that ship the NVIDIA driver and container toolkit.
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA",
                 "BOTTLEROCKET_ARM_64_NVIDIA")
# Instance families with NVIDIA GPUs; a typo such as "m5.xlarge" in a GPU pool is caught here.
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g5g", "g6", "g6e", "gr6", "p3", "p4d", "p4de", "p5", "p5e",
                         "p5en", "p6")
MANAGED_NODE_GROUPS = "managedNodeGroups"
KARPENTER = "karpenter"
PROVISIONERS = (MANAGED_NODE_GROUPS, KARPENTER)
CONSOLIDATION_POLICIES = ("WhenEmpty", "WhenEmptyOrUnderutilized")
# A Go duration as Karpenter's CRDs accept it (consolidateAfter also takes "Never").
KARPENTER_DURATION = r"^([0-9]+(s|m|h))+$"
# The Karpenter node role is `<cluster name><this>`, and IAM role names have at most 64 characters.
NODE_ROLE_SUFFIX = "-karpenter-node"
IAM_ROLE_NAME_MAX = 64


@dataclass(frozen=True)
class SystemNodesConfig:
    instance_types: tuple[str, ...] = ("m6i.large",)
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_size_gib: int = 50


@dataclass(frozen=True)
class GpuPoolConfig:
    name: str
    instance_types: tuple[str, ...]
    capacity_type: str = "ON_DEMAND"
    min_size: int = 0
    desired_size: int = 0
    max_size: int = 2
    ami_type: str = "AL2023_x86_64_NVIDIA"
    disk_size_gib: int = 200
    gpus_per_node: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)
    # SPOT only: whether the pool may fall back to on-demand when spot capacity is short
    # (Karpenter); a managed node group has one capacity type, so there it never does.
    on_demand_fallback: bool = False
    # Why a SPOT pool has no on-demand fallback: required then, and shown to reviewers.
    no_fallback_reason: str | None = None
    # Karpenter only: GPU nodes are consolidated only when empty by default; a GPU job is not
    # moved to save money.
    consolidation_policy: str = "WhenEmpty"

    @property
    def gpu_limit(self) -> int:
        """GPUs the pool may hold at its max size: the NodePool's nvidia.com/gpu limit and what team
        stacks' worker groups must fit in."""
        return self.max_size * self.gpus_per_node

    @property
    def capacity_types(self) -> tuple[str, ...]:
        """Capacity types in order of preference: spot first, on-demand as its fallback."""
        if self.capacity_type == "SPOT":
            return ("SPOT", "ON_DEMAND") if self.on_demand_fallback else ("SPOT",)
        return ("ON_DEMAND",)


@dataclass(frozen=True)
class CpuPoolConfig:
    """The CPU nodes Ray heads and CPU workers run on, never the system nodes (add-ons) or GPU nodes."""

    name: str = "ray-cpu"
    instance_types: tuple[str, ...] = ("m6i.xlarge", "m6i.2xlarge", "m6i.4xlarge")
    # Heads are never disrupted on purpose; on-demand keeps a spot reclaim from taking them.
    capacity_type: str = "ON_DEMAND"
    min_size: int = 1
    desired_size: int = 1
    max_size: int = 6
    disk_size_gib: int = 100


@dataclass(frozen=True)
class KarpenterConfig:
    # The AL2023 EKS-optimized AMI release (`al2023@<version>`): Karpenter picks its NVIDIA variant
    # for GPU instance types. `latest` drifts every node to each new release; prod pins one.
    ami_version: str = "latest"
    gpu_consolidate_after: str = "10m"
    cpu_consolidate_after: str = "5m"
    # Nodes Karpenter may disrupt at once on purpose (consolidation, drift, expiry), per NodePool.
    disruption_budget: str = "10%"
    # A node is replaced after this long; a pod that blocks its drain (a Ray head) is evicted after
    # terminationGracePeriod at the latest, so the two bound a node's life together.
    expire_after: str = "720h"
    termination_grace_period: str = "24h"


@dataclass(frozen=True)
class CapacityConfig:
    provisioner: str = MANAGED_NODE_GROUPS
    cpu_pool: CpuPoolConfig = CpuPoolConfig()
    karpenter: KarpenterConfig = KarpenterConfig()

    @property
    def uses_karpenter(self) -> bool:
        return self.provisioner == KARPENTER
