"""Karpenter's objects for the platform's pools, as pure functions of the config: one EC2NodeClass
and one NodePool per GPU pool, and the CPU pool's pair.

Every field exists in the Karpenter v1.13.0 CRDs (../shared/karpenter-crds/v1.13.0), against which
the tests validate these strictly. The labels and the taint are the pools' own (specs/gpu_nodes.py),
so a NodePool's nodes look to a RayCluster exactly like a managed node group's.
"""
from __future__ import annotations

from typing import Any

from components.config.pools import CpuPoolConfig, GpuPoolConfig, KarpenterConfig
from components.constants import GPU_RESOURCE, KARPENTER_DISCOVERY_TAG, NO_FALLBACK_ANNOTATION, PART_OF_LABEL, PROJECT
from components.specs.gpu_nodes import cpu_pool_labels, gpu_taint, pool_labels

NODE_GROUP = "karpenter.sh"
NODE_POOL_API = f"{NODE_GROUP}/v1"
NODE_CLASS_GROUP = "karpenter.k8s.aws"
NODE_CLASS_API = f"{NODE_CLASS_GROUP}/v1"
CAPACITY_TYPE_LABEL = f"{NODE_GROUP}/capacity-type"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
# Karpenter's spelling of the pools' capacity types.
CAPACITY_TYPE_VALUES = {"SPOT": "spot", "ON_DEMAND": "on-demand"}


def discovery_selector(cluster_name: str) -> dict[str, str]:
    """The tag on the platform's private subnets and cluster security group that the node classes select."""
    return {KARPENTER_DISCOVERY_TAG: cluster_name}


def ec2_node_class(name: str, cluster_name: str, node_role: str, disk_size_gib: int,
                   config: KarpenterConfig) -> dict[str, Any]:
    """Nodes on the AL2023 EKS AMI (its NVIDIA variant on GPU instance types), IMDSv2 only with hop
    limit 1 (pods use IRSA, never the node's credentials), an encrypted gp3 root volume."""
    return {
        "apiVersion": NODE_CLASS_API,
        "kind": "EC2NodeClass",
        "metadata": {"name": name, "labels": {PART_OF_LABEL: PROJECT}},
        "spec": {
            "role": node_role,
            "amiSelectorTerms": [{"alias": f"al2023@{config.ami_version}"}],
            "subnetSelectorTerms": [{"tags": discovery_selector(cluster_name)}],
            "securityGroupSelectorTerms": [{"tags": discovery_selector(cluster_name)}],
            "metadataOptions": {"httpEndpoint": "enabled", "httpProtocolIPv6": "disabled",
                                "httpPutResponseHopLimit": 1, "httpTokens": "required"},
            "blockDeviceMappings": [{
                "deviceName": "/dev/xvda",
                "rootVolume": True,
                "ebs": {"volumeSize": f"{disk_size_gib}Gi", "volumeType": "gp3", "encrypted": True,
                        "deleteOnTermination": True},
            }],
            "tags": {"ray-platform/cluster": cluster_name, "Name": f"{cluster_name}-{name}"},
        },
    }


def _node_pool(name: str, node_class: str, labels: dict[str, str], requirements: list[dict[str, Any]],
               limits: dict[str, str], consolidation_policy: str, consolidate_after: str,
               config: KarpenterConfig, taints: list[dict[str, str]] | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    template_spec: dict[str, Any] = {
        "nodeClassRef": {"group": NODE_CLASS_GROUP, "kind": "EC2NodeClass", "name": node_class},
        "requirements": requirements,
        "expireAfter": config.expire_after,
        "terminationGracePeriod": config.termination_grace_period,
    }
    if taints:
        template_spec["taints"] = taints
    metadata: dict[str, Any] = {"name": name, "labels": {PART_OF_LABEL: PROJECT}}
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": NODE_POOL_API,
        "kind": "NodePool",
        "metadata": metadata,
        "spec": {
            "template": {"metadata": {"labels": labels}, "spec": template_spec},
            "limits": limits,
            "disruption": {
                "consolidationPolicy": consolidation_policy,
                "consolidateAfter": consolidate_after,
                "budgets": [{"nodes": config.disruption_budget}],
            },
        },
    }


def _in(key: str, values: list[str]) -> dict[str, Any]:
    return {"key": key, "operator": "In", "values": values}


def gpu_node_pool(pool: GpuPoolConfig, node_class: str, config: KarpenterConfig) -> dict[str, Any]:
    """A GPU pool's NodePool: its instance types, spot with on-demand as fallback (Karpenter launches
    the cheaper spot offering while there is one and on-demand when spot is short), the GPU taint,
    the pool's labels, a limit on nvidia.com/gpu (and nodes) at the pool's max size."""
    capacity = [CAPACITY_TYPE_VALUES[c] for c in pool.capacity_types]
    annotations = ({NO_FALLBACK_ANNOTATION: pool.no_fallback_reason}
                   if pool.no_fallback_reason and capacity == ["spot"] else None)
    return _node_pool(
        pool.name, node_class, pool_labels(pool),
        [_in(INSTANCE_TYPE_LABEL, list(pool.instance_types)), _in(CAPACITY_TYPE_LABEL, capacity)],
        {GPU_RESOURCE: str(pool.gpu_limit), "nodes": str(pool.max_size)},
        pool.consolidation_policy, config.gpu_consolidate_after, config, taints=[gpu_taint()],
        annotations=annotations)


def cpu_node_pool(pool: CpuPoolConfig, node_class: str, config: KarpenterConfig) -> dict[str, Any]:
    """The CPU pool's NodePool: on-demand, consolidated when underutilized (a Ray head's
    do-not-disrupt annotation keeps its node), at most max size nodes."""
    return _node_pool(
        pool.name, node_class, cpu_pool_labels(pool),
        [_in(INSTANCE_TYPE_LABEL, list(pool.instance_types)),
         _in(CAPACITY_TYPE_LABEL, [CAPACITY_TYPE_VALUES[pool.capacity_type]])],
        {"nodes": str(pool.max_size)}, "WhenEmptyOrUnderutilized", config.cpu_consolidate_after, config)
