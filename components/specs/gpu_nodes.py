"""What makes a node a GPU (or Ray CPU) node of this platform, and what lets a DaemonSet run on one.

Labels and taint of a GPU pool's nodes, the CPU pool's labels (and the Cluster Autoscaler's picture of them while the
pool is at zero), and the placement of the GPU DaemonSets (NVIDIA device plugin, DCGM exporter).
No Pulumi here: components/platform/gpu_node_pool.py and the Helm releases declare these.
"""
from __future__ import annotations

from typing import Any

from components.config.pools import CpuPoolConfig, GpuPoolConfig
from components.constants import (
    GPU_NODE_LABEL, GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, NODE_POOL_LABEL, NODE_ROLE_LABEL,
    ROLE_CPU, ROLE_GPU, ROLE_SYSTEM,
)

CA_TEMPLATE_PREFIX = "k8s.io/cluster-autoscaler/node-template"


def gpu_taint() -> dict[str, str]:
    """The taint on every GPU node, as Kubernetes spells it: what Ray GPU groups tolerate."""
    return {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}


def gpu_toleration() -> dict[str, str]:
    """What lets a pod onto a GPU node: exactly the taint of gpu_taint()."""
    return {"key": GPU_TAINT_KEY, "operator": "Equal", "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}


def pool_node_selector(pool: str) -> dict[str, str]:
    """The node label that singles out one pool's nodes, on EKS and on an existing cluster alike
    (where GPU nodes are labelled by hand with this label only)."""
    return {NODE_POOL_LABEL: pool}


def pool_labels(pool: GpuPoolConfig) -> dict[str, str]:
    """Labels every node of the pool carries; RayCluster GPU groups select on NODE_POOL_LABEL."""
    return {**pool.labels, NODE_POOL_LABEL: pool.name, NODE_ROLE_LABEL: ROLE_GPU, GPU_NODE_LABEL: "true"}


def cpu_pool_labels(pool: CpuPoolConfig) -> dict[str, str]:
    """Labels of the CPU pool's nodes; Ray heads and CPU workers prefer the role, and nothing else
    but the system and GPU nodes exist to keep them from."""
    return {NODE_POOL_LABEL: pool.name, NODE_ROLE_LABEL: ROLE_CPU}


def on_cpu_pool() -> dict[str, Any]:
    """Off the system and GPU nodes, preferring the CPU pool: on EKS (either provisioner) that leaves
    only the CPU pool; NotIn also matches unlabelled nodes, so an existing cluster's plain nodes serve."""
    return {"nodeAffinity": {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": [
            {"key": GPU_NODE_LABEL, "operator": "NotIn", "values": ["true"]},
            {"key": NODE_ROLE_LABEL, "operator": "NotIn", "values": [ROLE_SYSTEM]},
        ]}]},
        "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "preference": {"matchExpressions": [
            {"key": NODE_ROLE_LABEL, "operator": "In", "values": [ROLE_CPU]},
        ]}}],
    }}


def autoscaler_node_template_tags(pool: GpuPoolConfig) -> dict[str, str]:
    """ASG tags the Cluster Autoscaler reads to build a node template when the pool has 0 nodes.

    With no node to look at, it learns labels, taints and the GPU count only from these;
    without the GPU tag a pending pod asking for nvidia.com/gpu never triggers a scale-up.
    """
    tags = {f"{CA_TEMPLATE_PREFIX}/label/{k}": v for k, v in pool_labels(pool).items()}
    tags[f"{CA_TEMPLATE_PREFIX}/taint/{GPU_TAINT_KEY}"] = f"{GPU_TAINT_VALUE}:{GPU_TAINT_EFFECT}"
    tags[f"{CA_TEMPLATE_PREFIX}/resources/{GPU_RESOURCE}"] = str(pool.gpus_per_node)
    return tags


def gpu_daemonset_placement() -> dict[str, Any]:
    """Chart values that put a DaemonSet on the platform's GPU nodes only: their label, their taint.

    No affinity: a chart's default one (NVIDIA's expects Node Feature Discovery labels, which
    EKS nodes do not have) would otherwise schedule the DaemonSet nowhere.
    """
    return {
        "nodeSelector": {GPU_NODE_LABEL: "true"},
        "affinity": None,
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}],
    }


def device_plugin_values() -> dict[str, Any]:
    """The NVIDIA device plugin chart's values: on GPU nodes only, never evicted, no feature discovery."""
    return {
        **gpu_daemonset_placement(),
        "priorityClassName": "system-node-critical",
        "gfd": {"enabled": False},
    }
