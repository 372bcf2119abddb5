"""`ray-platform:capacity` of a platform stack: which provisioner builds the nodes, the CPU pool for
Ray heads and CPU workers, and Karpenter's settings; plus the spot-fallback keys of a GPU pool."""
from __future__ import annotations

import re

from components.config.pools import (
    CONSOLIDATION_POLICIES, GPU_INSTANCE_FAMILIES, KARPENTER, KARPENTER_DURATION, MANAGED_NODE_GROUPS, PROVISIONERS,
    CapacityConfig, CpuPoolConfig, GpuPoolConfig, KarpenterConfig,
)
from components.config.reader import Node, Problems, check_dns, check_range, ns

DURATION = re.compile(KARPENTER_DURATION)
# A Karpenter budget: a node count or a percentage of the NodePool's nodes.
BUDGET = re.compile(r"^((100|[0-9]{1,2})%|[0-9]+)$")
AMI_VERSION = re.compile(r"^(latest|v[0-9]{8})$")
# The reason is also an AWS tag value on a managed node group: its characters and length.
TAG_VALUE = re.compile(r"^[\w .:/=+\-@]{1,256}$")


def _duration(node: Node, key: str, default: str) -> str:
    return node.str(key, default, pattern=DURATION, rule="expected a duration such as 30s, 10m or 24h")


def _parse_cpu_pool(node: Node | None) -> CpuPoolConfig:
    if node is None:
        return CpuPoolConfig()
    name = node.str("name", CpuPoolConfig.name)
    check_dns(node.p, node.key("name"), name, 40, "CPU pool name")
    cfg = CpuPoolConfig(
        name=name,
        instance_types=node.str_list("instanceTypes", list(CpuPoolConfig.instance_types)),
        capacity_type=node.str("capacityType", CpuPoolConfig.capacity_type, choices=("ON_DEMAND",)),
        min_size=node.int("minSize", CpuPoolConfig.min_size, minimum=0),
        desired_size=node.int("desiredSize", CpuPoolConfig.desired_size, minimum=0),
        max_size=node.int("maxSize", CpuPoolConfig.max_size, minimum=1),
        disk_size_gib=node.int("diskSizeGiB", CpuPoolConfig.disk_size_gib, minimum=20),
    )
    if not cfg.instance_types:
        node.p.bad(node.key("instanceTypes"), [], "the CPU pool needs at least one instance type")
    for i, it in enumerate(cfg.instance_types):
        if it.split(".")[0] in GPU_INSTANCE_FAMILIES:
            node.p.bad(f"{node.key('instanceTypes')}[{i}]", it, "the CPU pool must not use GPU instances")
    check_range(node.p, node, "minSize", "desiredSize", "maxSize", (cfg.min_size, cfg.desired_size, cfg.max_size))
    node.done()
    return cfg


def _parse_karpenter(p: Problems, node: Node | None, environment: str | None) -> KarpenterConfig:
    cfg = KarpenterConfig()
    if node is not None:
        cfg = KarpenterConfig(
            ami_version=node.str("amiVersion", KarpenterConfig.ami_version, pattern=AMI_VERSION,
                                 rule="expected latest or an AL2023 AMI release such as v20251108"),
            gpu_consolidate_after=_duration(node, "gpuConsolidateAfter", KarpenterConfig.gpu_consolidate_after),
            cpu_consolidate_after=_duration(node, "cpuConsolidateAfter", KarpenterConfig.cpu_consolidate_after),
            disruption_budget=node.str("disruptionBudget", KarpenterConfig.disruption_budget, pattern=BUDGET,
                                       rule="expected a node count such as 1 or a percentage such as 10%"),
            expire_after=_duration(node, "expireAfter", KarpenterConfig.expire_after),
            termination_grace_period=_duration(node, "terminationGracePeriod",
                                               KarpenterConfig.termination_grace_period),
        )
        node.done()
    if environment == "prod" and cfg.ami_version == "latest":
        # Under `latest` Karpenter drifts every node to each new AMI release the day it ships.
        p.bad(f"{ns('capacity')}.karpenter.amiVersion", "latest",
              "prod pins an AL2023 AMI release (such as v20251108) already run in a lower environment")
    return cfg


def parse_capacity(p: Problems, root: Node, provider: str | None, environment: str | None) -> CapacityConfig:
    node = root.child("capacity")
    if node is None:
        return CapacityConfig()
    if provider == "existing":
        p.bad(ns("capacity"), node.data, "only for EKS: an existing cluster's nodes exist already")
        node.seen.update(node.data)
        return CapacityConfig()
    provisioner = node.str("provisioner", CapacityConfig.provisioner, choices=PROVISIONERS) or MANAGED_NODE_GROUPS
    karpenter_node = node.child("karpenter")
    if karpenter_node is not None and provisioner != KARPENTER:
        p.bad(karpenter_node.path, karpenter_node.data, f"only with provisioner: {KARPENTER}")
        karpenter_node.seen.update(karpenter_node.data)
    cfg = CapacityConfig(
        provisioner=provisioner, cpu_pool=_parse_cpu_pool(node.child("cpuPool")),
        karpenter=_parse_karpenter(p, karpenter_node, environment) if provisioner == KARPENTER else KarpenterConfig())
    node.done()
    return cfg


def parse_fallback(node: Node, capacity_type: str | None, provisioner: str) -> tuple[bool, str | None]:
    """(on-demand fallback, why not) of a GPU pool: Karpenter falls back unless told not to; a managed
    node group cannot, and a spot pool without a fallback has to say why."""
    karpenter = provisioner == KARPENTER
    fallback = node.bool("onDemandFallback", karpenter)
    reason = node.str("noFallbackReason", None, pattern=TAG_VALUE,
                      rule="expected up to 256 letters, digits, spaces and _ . : / = + - @ (an AWS tag value)")
    if capacity_type != "SPOT":
        for key in ("onDemandFallback", "noFallbackReason"):
            if key in node.data:
                node.p.bad(node.key(key), node.raw(key), "only for capacityType: SPOT")
        return False, None
    if fallback and not karpenter:
        node.p.bad(node.key("onDemandFallback"), True,
                   f"a managed node group has one capacity type; use capacity.provisioner: {KARPENTER} for a spot "
                   "pool that falls back to on-demand, or set false with noFallbackReason")
        fallback = False
    if fallback and reason is not None:
        node.p.bad(node.key("noFallbackReason"), reason, "only when onDemandFallback is false")
    if not fallback and not (reason or "").strip():
        node.p.bad(node.key("noFallbackReason"), reason,
                   "a SPOT pool without an on-demand fallback says why (work it runs must wait for spot capacity)")
    return fallback, reason


def parse_consolidation(node: Node, provisioner: str) -> str:
    policy = node.str("consolidationPolicy", GpuPoolConfig.consolidation_policy, choices=CONSOLIDATION_POLICIES)
    if "consolidationPolicy" in node.data and provisioner != KARPENTER:
        node.p.bad(node.key("consolidationPolicy"), policy, f"only with capacity.provisioner: {KARPENTER}")
    return policy or GpuPoolConfig.consolidation_policy
