"""Karpenter NodePools and EC2NodeClasses (components/specs/karpenter.py) against the real v1.13.0 CRDs."""
from __future__ import annotations

import copy

import pytest

from components.config.pools import CpuPoolConfig, GpuPoolConfig, KarpenterConfig
from components.constants import GPU_RESOURCE, NO_FALLBACK_ANNOTATION
from components.specs.gpu_nodes import cpu_pool_labels, gpu_taint, pool_labels
from components.specs.karpenter import CAPACITY_TYPE_LABEL, cpu_node_pool, ec2_node_class, gpu_node_pool
from components.versions import DEFAULT_EKS_VERSION
from policy import rules
from tools.k8s_schema import validate_object

SPOT = GpuPoolConfig(name="g6-spot", instance_types=("g6.xlarge", "g6.2xlarge"), capacity_type="SPOT", max_size=4,
                     on_demand_fallback=True)
SPOT_ONLY = GpuPoolConfig(name="g6e-batch", instance_types=("g6e.xlarge",), capacity_type="SPOT", max_size=3,
                          gpus_per_node=1, no_fallback_reason="checkpointed batch work waits for spot")
P5 = GpuPoolConfig(name="p5", instance_types=("p5.48xlarge",), gpus_per_node=8, max_size=2, labels={"w": "train"},
                   consolidation_policy="WhenEmptyOrUnderutilized")
CONFIG = KarpenterConfig()


def capacity(node_pool: dict) -> list[str]:
    (req,) = [r for r in node_pool["spec"]["template"]["spec"]["requirements"] if r["key"] == CAPACITY_TYPE_LABEL]
    return req["values"]


def every_object() -> list[dict]:
    return [*(gpu_node_pool(p, p.name, CONFIG) for p in (SPOT, SPOT_ONLY, P5)),
            cpu_node_pool(CpuPoolConfig(), "ray-cpu", CONFIG),
            ec2_node_class("p5", "ray-dev", "ray-dev-karpenter-node", 1000, KarpenterConfig(ami_version="v20251108"))]


@pytest.mark.parametrize("obj", every_object(), ids=lambda o: f"{o['kind']}-{o['metadata']['name']}")
def test_objects_validate_strictly_against_the_pinned_crds(obj: dict) -> None:
    assert validate_object(obj, DEFAULT_EKS_VERSION) == []


def test_a_misspelt_field_or_a_bad_enum_is_caught_by_the_crd() -> None:
    pool = gpu_node_pool(SPOT, "g6-spot", CONFIG)
    typo = copy.deepcopy(pool)
    typo["spec"]["disruption"]["consolidateAfer"] = "1m"
    assert validate_object(typo, DEFAULT_EKS_VERSION) == [
        "NodePool/g6-spot: spec.disruption.consolidateAfer: unknown field"]
    bad = copy.deepcopy(pool)
    bad["spec"]["disruption"]["consolidationPolicy"] = "Always"
    assert any("consolidationPolicy" in e for e in validate_object(bad, DEFAULT_EKS_VERSION))


def test_spot_falls_back_to_on_demand_unless_the_pool_says_why_not() -> None:
    assert capacity(gpu_node_pool(SPOT, "x", CONFIG)) == ["spot", "on-demand"]
    spot_only = gpu_node_pool(SPOT_ONLY, "x", CONFIG)
    assert capacity(spot_only) == ["spot"]
    assert spot_only["metadata"]["annotations"] == {NO_FALLBACK_ANNOTATION: SPOT_ONLY.no_fallback_reason}
    assert capacity(gpu_node_pool(P5, "x", CONFIG)) == ["on-demand"]


def test_gpu_pools_carry_the_pool_model_taint_labels_and_gpu_limit() -> None:
    pool = gpu_node_pool(P5, "p5", CONFIG)
    template = pool["spec"]["template"]
    assert template["metadata"]["labels"] == pool_labels(P5)
    assert template["spec"]["taints"] == [gpu_taint()]
    assert pool["spec"]["limits"] == {GPU_RESOURCE: "16", "nodes": "2"}
    assert pool["spec"]["disruption"] == {"consolidationPolicy": "WhenEmptyOrUnderutilized", "consolidateAfter": "10m",
                                          "budgets": [{"nodes": "10%"}]}
    assert (template["spec"]["expireAfter"], template["spec"]["terminationGracePeriod"]) == ("720h", "24h")


def test_cpu_pool_is_untainted_on_demand_and_consolidates_underused_nodes() -> None:
    pool = cpu_node_pool(CpuPoolConfig(), "ray-cpu", CONFIG)
    assert pool["spec"]["template"]["metadata"]["labels"] == cpu_pool_labels(CpuPoolConfig())
    assert "taints" not in pool["spec"]["template"]["spec"] and capacity(pool) == ["on-demand"]
    assert pool["spec"]["limits"] == {"nodes": str(CpuPoolConfig().max_size)}
    assert pool["spec"]["disruption"]["consolidationPolicy"] == "WhenEmptyOrUnderutilized"


def test_node_class_pins_the_ami_release_and_locks_metadata_and_disk() -> None:
    spec = ec2_node_class("p5", "ray-dev", "role-name", 1000, KarpenterConfig(ami_version="v20251108"))["spec"]
    assert spec["amiSelectorTerms"] == [{"alias": "al2023@v20251108"}] and spec["role"] == "role-name"
    assert spec["metadataOptions"]["httpTokens"] == "required"
    assert spec["blockDeviceMappings"][0]["ebs"] == {"volumeSize": "1000Gi", "volumeType": "gp3", "encrypted": True,
                                                     "deleteOnTermination": True}


NODE_POOL = "kubernetes:karpenter.sh/v1:NodePool"


def test_policy_pack_requires_taint_limit_and_a_spot_fallback_or_its_reason() -> None:
    for pool in (SPOT, SPOT_ONLY, P5):
        obj = gpu_node_pool(pool, pool.name, CONFIG)
        assert rules.gpu_node_pools_tainted_and_limited(NODE_POOL, obj) == []
        assert rules.spot_gpu_pools_fall_back(NODE_POOL, obj) == []
    bare = gpu_node_pool(SPOT_ONLY, "x", CONFIG)
    del bare["spec"]["template"]["spec"]["taints"], bare["spec"]["limits"], bare["metadata"]["annotations"]
    assert len(rules.gpu_node_pools_tainted_and_limited(NODE_POOL, bare)) == 2
    assert "annotation ray-platform.io/no-on-demand-fallback" in rules.spot_gpu_pools_fall_back(NODE_POOL, bare)[0]
    cpu = cpu_node_pool(CpuPoolConfig(), "ray-cpu", CONFIG)
    assert rules.gpu_node_pools_tainted_and_limited(NODE_POOL, cpu) == [], "the CPU pool is no GPU pool"
