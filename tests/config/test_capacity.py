"""`capacity` and the spot-fallback keys of GPU pools (components/config/capacity.py, pools.py)."""
from __future__ import annotations

from typing import Any

import pytest

from components.config.model import PlatformConfig
from components.config.pools import CpuPoolConfig, GpuPoolConfig
from components.config.stack import parse
from components.config.stack_files import platform_lookup_from_dir
from tests.config.test_platform import GOOD
from tests.config.test_team import GOOD as TEAM
from tests.config.test_team import STACKS
from tests.config_edits import assert_refused_at, with_change

SPOT_POOL = {"name": "g6-spot", "instanceTypes": ["g6.xlarge"], "capacityType": "SPOT", "maxSize": 4,
             "gpusPerNode": 1}
KARPENTER: dict[str, Any] = {**GOOD, "capacity": {"provisioner": "karpenter"}, "gpuPools": [SPOT_POOL]}


def karpenter(path: str, value: Any) -> dict[str, Any]:
    return with_change(path, value, KARPENTER)


def test_defaults_are_managed_node_groups_with_a_cpu_pool() -> None:
    cfg = parse(GOOD, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    assert cfg.capacity.provisioner == "managedNodeGroups" and not cfg.capacity.uses_karpenter
    assert cfg.capacity.cpu_pool == CpuPoolConfig()
    assert cfg.addons.cluster_autoscaler


def test_karpenter_spot_pools_fall_back_to_on_demand_and_drop_the_cluster_autoscaler() -> None:
    cfg = parse(KARPENTER, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    (pool,) = cfg.gpu_pools
    assert pool.on_demand_fallback and pool.capacity_types == ("SPOT", "ON_DEMAND")
    assert pool.gpu_limit == 4 and pool.consolidation_policy == "WhenEmpty"
    assert not cfg.addons.cluster_autoscaler, "Karpenter provisions nodes; the Cluster Autoscaler is not installed"


def test_a_spot_pool_without_fallback_keeps_its_reason() -> None:
    raw = karpenter("gpuPools.0.onDemandFallback", False)
    raw["gpuPools"][0]["noFallbackReason"] = "checkpointed batch work waits for spot"
    cfg = parse(raw, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    (pool,) = cfg.gpu_pools
    assert pool.capacity_types == ("SPOT",) and pool.no_fallback_reason == "checkpointed batch work waits for spot"


def test_gpu_limit_is_what_team_worker_groups_must_fit() -> None:
    pool = GpuPoolConfig(name="p5", instance_types=("p5.48xlarge",), gpus_per_node=8, max_size=2)
    assert pool.gpu_limit == 16 and pool.capacity_types == ("ON_DEMAND",)


def _mng_spot() -> dict[str, Any]:
    return with_change("gpuPools.0.capacityType", "SPOT", GOOD)


BAD_CASES = [
    ("unknown provisioner", karpenter("capacity.provisioner", "autopilot"), "ray-platform:capacity.provisioner",
     "allowed: managedNodeGroups, karpenter"),
    ("spot node group without a reason", _mng_spot(), "ray-platform:gpuPools[0].noFallbackReason",
     "says why"),
    ("node groups cannot fall back", with_change("gpuPools.0.onDemandFallback", True, _mng_spot()),
     "ray-platform:gpuPools[0].onDemandFallback", "one capacity type"),
    ("karpenter spot pool without fallback nor reason", karpenter("gpuPools.0.onDemandFallback", False),
     "ray-platform:gpuPools[0].noFallbackReason", "says why"),
    ("a reason beside a fallback", karpenter("gpuPools.0.noFallbackReason", "x"),
     "ray-platform:gpuPools[0].noFallbackReason", "only when onDemandFallback is false"),
    ("a reason AWS cannot tag", with_change("gpuPools.0.noFallbackReason", "no; budget", _mng_spot()),
     "ray-platform:gpuPools[0].noFallbackReason", "AWS tag value"),
    ("fallback keys on an on-demand pool", with_change("gpuPools.0.onDemandFallback", False, GOOD),
     "ray-platform:gpuPools[0].onDemandFallback", "only for capacityType: SPOT"),
    ("consolidation policy without karpenter", with_change("gpuPools.0.consolidationPolicy", "WhenEmpty", GOOD),
     "ray-platform:gpuPools[0].consolidationPolicy", "only with capacity.provisioner: karpenter"),
    ("unknown consolidation policy", karpenter("gpuPools.0.consolidationPolicy", "Always"),
     "ray-platform:gpuPools[0].consolidationPolicy", "allowed: WhenEmpty, WhenEmptyOrUnderutilized"),
    ("cluster autoscaler beside karpenter", karpenter("addons", {"clusterAutoscaler": True}),
     "ray-platform:addons.clusterAutoscaler", "fight"),
    ("karpenter block without karpenter", with_change("capacity", {"karpenter": {"amiVersion": "latest"}}, GOOD),
     "ray-platform:capacity.karpenter", "only with provisioner: karpenter"),
    ("bad AMI version", karpenter("capacity.karpenter", {"amiVersion": "2025-11-08"}),
     "ray-platform:capacity.karpenter.amiVersion", "v20251108"),
    ("bad duration", karpenter("capacity.karpenter", {"gpuConsolidateAfter": "ten minutes"}),
     "ray-platform:capacity.karpenter.gpuConsolidateAfter", "duration"),
    ("bad budget", karpenter("capacity.karpenter", {"disruptionBudget": "half"}),
     "ray-platform:capacity.karpenter.disruptionBudget", "percentage"),
    ("GPU instances in the CPU pool", karpenter("capacity.cpuPool", {"instanceTypes": ["g5.xlarge"]}),
     "ray-platform:capacity.cpuPool.instanceTypes[0]", "must not use GPU instances"),
    ("CPU pool on spot", karpenter("capacity.cpuPool", {"capacityType": "SPOT"}),
     "ray-platform:capacity.cpuPool.capacityType", "allowed: ON_DEMAND"),
    ("CPU pool min > max", karpenter("capacity.cpuPool", {"minSize": 3, "desiredSize": 3, "maxSize": 2}),
     "ray-platform:capacity.cpuPool.minSize", "must be <= maxSize"),
    ("unknown capacity key", karpenter("capacity.cpuPools", {}), "ray-platform:capacity.cpuPools", "unknown key"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_capacity_config_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at(raw, path, allowed, "dev", "us-west-2")


def test_prod_pins_the_ami_release() -> None:
    raw = {**KARPENTER, "environment": "prod", "cluster": {**GOOD["cluster"], "endpointPublicAccess": False,
                                                           "publicAccessCidrs": []}}
    assert_refused_at(raw, "ray-platform:capacity.karpenter.amiVersion", "prod pins", "prod", "us-west-2")
    pinned = with_change("capacity.karpenter", {"amiVersion": "v20251108"}, raw)
    cfg = parse(pinned, "prod", "us-west-2")
    assert isinstance(cfg, PlatformConfig) and cfg.capacity.karpenter.ami_version == "v20251108"


def test_existing_clusters_have_no_capacity_block() -> None:
    raw = {"layer": "platform", "environment": "local",
           "cluster": {"provider": "existing", "name": "kind", "kubeconfigPath": "~/.kube/config"},
           "addons": {"clusterAutoscaler": False, "nvidiaDevicePlugin": False},
           "capacity": {"provisioner": "karpenter"}}
    assert_refused_at(raw, "ray-platform:capacity", "only for EKS", "local")


def test_team_gpu_demand_must_fit_the_karpenter_pools_gpu_limit() -> None:
    """A NodePool's nvidia.com/gpu limit is the pool's gpu_limit; a team's worker group is checked against
    the same pool facts at preview, whichever provisioner the platform runs."""
    lookup = platform_lookup_from_dir(STACKS)
    staging = lookup("staging")
    assert staging is not None and staging.capacity.uses_karpenter
    (spot,) = [p for p in staging.gpu_pools if p.name == "g6-spot"]
    group = {"name": "gpu", "cpu": "2", "memory": "8Gi", "gpus": 1, "gpuPool": "g6-spot",
             "maxReplicas": spot.gpu_limit + 1}
    raw = {**TEAM, "environment": "staging", "platformStack": "staging",
           "team": {**TEAM["team"], "quota": {"cpu": "64", "memory": "256Gi", "gpus": 16}},
           "rayClusters": [{"name": "train", "workerGroups": [group]}]}
    assert_refused_at(raw, "ray-platform:rayClusters[0].workerGroups[0].maxReplicas",
                      f"GPU pool 'g6-spot' of platform stack 'staging' can hold at most {spot.gpu_limit} worker(s)",
                      "vision-staging", None, lookup)
    fits = {**raw, "rayClusters": [{"name": "train", "workerGroups": [{**group, "maxReplicas": spot.gpu_limit}]}]}
    assert parse(fits, "vision-staging", None, lookup)
