"""Team stack config (components/config/team.py): defaults, the dashboard access, checks against
the platform stack, and table-driven bad config naming the exact key path."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from components.config.model import SECRET_PLACEHOLDER, ConfigError, DashboardConfig, PlatformConfig, TeamStackConfig
from components.config.stack import parse
from components.config.stack_files import platform_lookup_from_dir
from tests.config_edits import DELETE, assert_refused_at
from tests.config_edits import with_change as edit

STACKS = Path(__file__).resolve().parents[2] / "stacks"
REPO_PLATFORMS = platform_lookup_from_dir(STACKS)


def platform(name: str, **changes: Any) -> PlatformConfig:
    raw: dict[str, Any] = {"layer": "platform", "environment": "dev",
                           "cluster": {"provider": "eks", "name": f"ray-{name}"}, **changes}
    cfg = parse(raw, name, "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    return cfg


# Platforms beyond the shipped ones: an EKS cluster with no GPU pool, and one whose
# operator watches a fixed list of namespaces.
EXTRA_PLATFORMS = {
    "cpu-only": platform("cpu-only"),
    "watched": platform("watched", kuberay={"watchNamespaces": ["team-nlp"]}),
}


def lookup(name: str) -> PlatformConfig | None:
    return EXTRA_PLATFORMS.get(name) or REPO_PLATFORMS(name)


GOOD: dict[str, Any] = {
    "layer": "team",
    "environment": "prod",
    "platformStack": "my-org/ray-platform/prod",
    "team": {"name": "vision", "groups": ["vision-ml"], "quota": {"cpu": "64", "memory": "256Gi", "gpus": 4}},
    "rayClusters": [{
        "name": "train",
        "workerGroups": [
            {"name": "cpu", "cpu": "4", "memory": "16Gi", "maxReplicas": 2},
            {"name": "gpu", "cpu": "6", "memory": "24Gi", "gpus": 1, "maxReplicas": 4, "gpuPool": "g5-serving"},
        ],
    }],
}

def with_change(path: str, value: Any, base: dict[str, Any] = GOOD) -> dict[str, Any]:
    return edit(path, value, base)


def with_changes(*changes: tuple[str, Any]) -> dict[str, Any]:
    raw = GOOD
    for path, value in changes:
        raw = with_change(path, value, raw)
    return raw


def gpu_group(**fields: Any) -> dict[str, Any]:
    return {"name": "gpu", "cpu": "6", "memory": "24Gi", "gpus": 1, "maxReplicas": 1, **fields}


def test_good_config_parses_with_defaults() -> None:
    cfg = parse(GOOD, "vision-prod", None, lookup)
    assert isinstance(cfg, TeamStackConfig)
    assert cfg.team.namespace == "team-vision" and cfg.team.network_policy and cfg.team.quota.pods == 100
    cluster = cfg.ray_clusters[0]
    assert (cluster.head.cpu, cluster.head.memory, cluster.head.service_type) == ("2", "8Gi", "ClusterIP")
    assert (cluster.idle_timeout_seconds, cluster.upscaling_mode) == (300, "Default")
    assert cluster.gcs_fault_tolerance is None and not cluster.auth
    assert cluster.worker_groups[0].gpu_pool is None and cluster.worker_groups[1].gpu_pool == "g5-serving"


BAD_CASES = [
    # --- the team and its quota
    ("team without quota", with_change("team.quota", DELETE), "ray-platform:team.quota",
     "required but not set; fix: pulumi config set --path 'ray-platform:team.quota'"),
    ("quota without gpus", with_change("team.quota.gpus", DELETE), "ray-platform:team.quota.gpus",
     "pulumi config set --path 'ray-platform:team.quota.gpus'"),
    ("no team at all", with_change("team", DELETE), "ray-platform:team", "pulumi config set 'ray-platform:team'"),
    ("team without groups", with_change("team.groups", []), "ray-platform:team.groups", "at least one group"),
    ("empty group name", with_change("team.groups", [" "]), "ray-platform:team.groups[0]", "must not be empty"),
    ("bad team name", with_change("team.name", "Vision"), "ray-platform:team.name", "DNS-1035"),
    ("quota smaller than one GPU worker", with_change("team.quota.gpus", 0),
     "ray-platform:rayClusters[0].workerGroups[1].gpus", "one worker needs more GPUs than the team quota (0)"),
    ("GPUs at max scale above quota", with_change("rayClusters.0.workerGroups.1.maxReplicas", 6),
     "ray-platform:team.quota.gpus", "can scale to 6 GPUs, 2 more than the quota"),
    ("CPUs at max scale above quota", with_change("team.quota.cpu", "30"), "ray-platform:team.quota.cpu",
     "can request 34.5 CPUs at max scale, 4.5 more than the quota"),
    ("memory at max scale above quota", with_change("team.quota.memory", "100Gi"),
     "ray-platform:team.quota.memory", "more than the quota"),
    ("pods at max scale above quota", with_change("team.quota.pods", 5), "ray-platform:team.quota.pods",
     "can run 7 pods at max scale, 2 more than the quota"),
    ("bad quota quantity", with_change("team.quota.memory", "lots"), "ray-platform:team.quota.memory",
     "Kubernetes quantity"),
    ("container above the limit range", with_change("rayClusters.0.workerGroups.0.cpu", "40"),
     "ray-platform:rayClusters[0].workerGroups[0].cpu", "limitRange.maxCpu (32)"),
    ("limit range default above its max", with_change("team.limitRange", {"defaultCpu": "8", "maxCpu": "4"}),
     "ray-platform:team.limitRange.defaultCpu", "must be <= maxCpu (4)"),
    # --- RayClusters and worker groups
    ("min > max", with_change("rayClusters.0.workerGroups.0.minReplicas", 3),
     "ray-platform:rayClusters[0].workerGroups[0].minReplicas", "minReplicas must be <= maxReplicas (2)"),
    ("replicas outside min..max", with_change("rayClusters.0.workerGroups.0.replicas", 5),
     "ray-platform:rayClusters[0].workerGroups[0].replicas", "must lie between minReplicas (0) and maxReplicas (2)"),
    ("uppercase cluster name", with_change("rayClusters.0.name", "Train"), "ray-platform:rayClusters[0].name",
     "RayCluster name must be a DNS-1035 label"),
    ("cluster name over 53 characters", with_change("rayClusters.0.name", "a" * 54),
     "ray-platform:rayClusters[0].name", "at most 53 characters"),
    ("duplicate worker group names", with_change("rayClusters.0.workerGroups.1.name", "cpu"),
     "ray-platform:rayClusters[0].workerGroups[1].name", "worker group names must be unique"),
    ("duplicate cluster names", with_change("rayClusters", GOOD["rayClusters"] * 2),
     "ray-platform:rayClusters[1].name", "RayCluster names must be unique"),
    ("no clusters", with_change("rayClusters", []), "ray-platform:rayClusters", "at least one RayCluster"),
    ("unknown key in a worker group", with_change("rayClusters.0.workerGroups.0.maxReplica", 3),
     "ray-platform:rayClusters[0].workerGroups[0].maxReplica", "unknown key; known keys here:"),
    ("unknown top-level key", with_change("gpuPools", []), "ray-platform:gpuPools", "not a team-layer key"),
    ("public load balancer", with_change("rayClusters.0.head", {"serviceType": "LoadBalancer"}),
     "ray-platform:rayClusters[0].head.serviceType", "allowed: ClusterIP, LoadBalancer-internal"),
    ("shm as large as memory", with_change("rayClusters.0.workerGroups.0.shmSize", "16Gi"),
     "ray-platform:rayClusters[0].workerGroups[0].shmSize", "must be smaller than the container's memory (16Gi)"),
    ("CPU group on a GPU pool", with_change("rayClusters.0.workerGroups.0.gpuPool", "g5-serving"),
     "ray-platform:rayClusters[0].workerGroups[0].gpuPool", "must not target a GPU pool"),
    ("unknown upscaling mode", with_change("rayClusters.0.autoscaler", {"upscalingMode": "Fast"}),
     "ray-platform:rayClusters[0].autoscaler.upscalingMode", "allowed: Default, Aggressive, Conservative"),
    ("idle timeout too short", with_change("rayClusters.0.autoscaler", {"idleTimeoutSeconds": 5}),
     "ray-platform:rayClusters[0].autoscaler.idleTimeoutSeconds", "must be >= 30"),
    # --- GCS fault tolerance and auth secrets
    ("redis without password", with_change("rayClusters.0.gcsFaultTolerance",
                                           {"backend": "redis", "redisAddress": "redis:6379"}),
     "ray-platform:redisPassword", "required but not set; fix: pulumi config set 'ray-platform:redisPassword' "
                                  "--secret <password>"),
    ("redis without address", with_changes(("rayClusters.0.gcsFaultTolerance", {"backend": "redis"}),
                                           ("redisPassword", SECRET_PLACEHOLDER)),
     "ray-platform:rayClusters[0].gcsFaultTolerance.redisAddress", "required but not set"),
    ("storage size for redis", with_changes(("rayClusters.0.gcsFaultTolerance", {
        "backend": "redis", "redisAddress": "redis:6379", "storageSize": "5Gi"}), ("redisPassword", SECRET_PLACEHOLDER)),
     "ray-platform:rayClusters[0].gcsFaultTolerance.storageSize", "only used with backend: rocksdb"),
    ("unknown GCS backend", with_change("rayClusters.0.gcsFaultTolerance", {"backend": "etcd"}),
     "ray-platform:rayClusters[0].gcsFaultTolerance.backend", "allowed: redis, rocksdb"),
    ("auth without token", with_change("rayClusters.0.auth", True), "ray-platform:rayClusters[0].auth",
     "token auth needs the secret ray-platform:dashboardToken"),
    # --- against the referenced platform stack
    ("GPU group on a CPU-only platform", with_change("platformStack", "my-org/ray-platform/cpu-only"),
     "ray-platform:rayClusters[0].workerGroups[1].gpus", "platform stack 'cpu-only' has no GPU pools (CPU-only)"),
    ("gpuPool not in platform", with_change("rayClusters.0.workerGroups.1.gpuPool", "a100"),
     "ray-platform:rayClusters[0].workerGroups[1].gpuPool", "has GPU pools: g5-serving, g6e-spot, p5-training"),
    ("more GPUs per worker than the pool's nodes", with_change("rayClusters.0.workerGroups.1.gpus", 2),
     "ray-platform:rayClusters[0].workerGroups[1].gpus", "GPU pool 'g5-serving' has 1 GPU(s) per node"),
    ("more workers than the pool can hold", with_changes(("rayClusters.0.workerGroups.1", gpu_group(
        gpuPool="p5-training", gpus=8, cpu="8", memory="24Gi", maxReplicas=3)), ("team.quota.gpus", 24)),
     "ray-platform:rayClusters[0].workerGroups[1].maxReplicas",
     "GPU pool 'p5-training' of platform stack 'prod' can hold at most 2 worker(s) of 8 GPU(s)"),
    ("no node has that many GPUs", with_changes(
        ("platformStack", "my-org/ray-platform/dev"), ("team.quota.gpus", 8),
        ("rayClusters.0.workerGroups.1", gpu_group(gpus=4)), ("environment", "dev")),
     "ray-platform:rayClusters[0].workerGroups[1].gpus", "no GPU node of platform stack 'dev' has that many"),
    ("namespace the operator does not watch", with_changes(
        ("platformStack", "my-org/ray-platform/watched"), ("rayClusters.0.workerGroups", [])),
     "ray-platform:team.name", "namespace 'team-vision' is not watched by the KubeRay operator"),
    ("bad platform stack reference", with_change("platformStack", "my org/prod"), "ray-platform:platformStack",
     "expected a stack reference"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in BAD_CASES], ids=[c[0] for c in BAD_CASES])
def test_bad_config_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at(raw, path, allowed, "vision-prod", None, lookup)


def test_every_problem_is_reported_at_once_and_shared_secrets_only_once() -> None:
    ft = {"backend": "redis", "redisAddress": "redis:6379"}
    raw = with_changes(("rayClusters", [{**GOOD["rayClusters"][0], "gcsFaultTolerance": ft},
                                        {"name": "serve", "gcsFaultTolerance": ft}]),
                       ("team.name", "Vision"), ("rayClusters.0.name", "Train"))
    with pytest.raises(ConfigError) as err:
        parse(raw, "vision-prod", None, lookup)
    assert len(err.value.problems) == 3, err.value.problems
    assert sum(p.startswith("ray-platform:redisPassword:") for p in err.value.problems) == 1
    assert str(err.value).startswith("stack 'vision-prod' has 3 config problem(s):")


def test_rocksdb_fault_tolerance_is_allowed_on_eks_whose_platform_provides_block_storage() -> None:
    cfg = parse(with_change("rayClusters.0.gcsFaultTolerance", {"backend": "rocksdb", "storageSize": "20Gi"}),
                "vision-prod", None, lookup)
    assert isinstance(cfg, TeamStackConfig)
    ft = cfg.ray_clusters[0].gcs_fault_tolerance
    assert ft is not None and (ft.backend, ft.storage_size) == ("rocksdb", "20Gi")


def test_without_the_platform_stack_file_only_the_team_checks_run() -> None:
    cfg = parse(with_change("platformStack", "other-org/ray-platform/elsewhere"), "vision-prod", None, lookup)
    assert isinstance(cfg, TeamStackConfig) and cfg.platform_stack == "other-org/ray-platform/elsewhere"


# --- `dashboard`: how `pulumi up` reaches each cluster -----------------------------------------

DASHBOARD_TEAM: dict[str, Any] = {
    "layer": "team", "environment": "dev", "platformStack": "org/ray-platform/elsewhere",
    "team": {"name": "demo", "groups": ["devs"], "quota": {"cpu": "16", "memory": "64Gi", "gpus": 0}},
    "rayClusters": [{"name": "demo", "workerGroups": [{"name": "cpu", "cpu": "2", "memory": "8Gi"}]}],
    "jobs": [{"name": "core", "kind": "core", "cluster": "demo"}],
}


def parse_dashboard_team(**changes: Any) -> TeamStackConfig:
    cfg = parse({**DASHBOARD_TEAM, **changes}, "demo-dev")
    assert isinstance(cfg, TeamStackConfig)
    return cfg


def test_the_tunnel_is_the_default_and_a_configured_url_selects_url_mode() -> None:
    assert parse_dashboard_team().dashboard == DashboardConfig()
    assert DashboardConfig().access == "tunnel"
    by_url = parse_dashboard_team(dashboard={"url": "https://ray-{cluster}.internal.example.com"}).dashboard
    assert (by_url.access, by_url.url) == ("url", "https://ray-{cluster}.internal.example.com")
    serve_only = parse_dashboard_team(dashboard={"access": "tunnel", "serveUrl": "http://serve.example/{cluster}"})
    assert serve_only.dashboard == DashboardConfig(serve_url="http://serve.example/{cluster}")


DASHBOARD_CASES = [
    ("unknown access mode", {"access": "vpn"}, "ray-platform:dashboard.access", "allowed: tunnel, url"),
    ("url mode without a url", {"access": "url"}, "ray-platform:dashboard.url",
     "required but not set; fix: pulumi config set --path 'ray-platform:dashboard.url'"),
    ("a url with the tunnel", {"access": "tunnel", "url": "http://x:8265"}, "ray-platform:dashboard.url",
     "only with access: url"),
    ("not an http url", {"url": "ray-head:8265"}, "ray-platform:dashboard.url", "expected an http:// or https://"),
    ("unknown key", {"acess": "url"}, "ray-platform:dashboard.acess", "unknown key; known keys here: access"),
]


@pytest.mark.parametrize(("dashboard", "path", "allowed"), [c[1:] for c in DASHBOARD_CASES],
                         ids=[c[0] for c in DASHBOARD_CASES])
def test_bad_dashboard_config_names_the_key_path(dashboard: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at({**DASHBOARD_TEAM, "dashboard": dashboard}, path, allowed, "demo-dev")
