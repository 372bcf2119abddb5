"""Team stack config (`layer: team`): the team and its quota, its RayClusters, the dashboard
access, and the checks against the platform stack it builds on."""
from __future__ import annotations

from collections.abc import Callable, Collection
from dataclasses import replace
from pathlib import Path

from components.config.fit import check_kuberay_fit, check_limit_range, check_not_above, check_quota_fit, quantity_value
from components.config.images import cluster_runtime, parse_secrets, with_job_env
from components.config.jobs import DEFAULT_STACK_DIR, parse_jobs, rayservice_owners
from components.config.model import (
    DASHBOARD_ACCESS, GCS_FT_BACKENDS, RAYCLUSTER_NAME_MAX, SERVICE_TYPES, STACK_REF, UPSCALING_MODES,
    DashboardConfig, GcsFaultToleranceConfig, HeadConfig, LimitRangeConfig, PlatformConfig, QuotaConfig,
    RayClusterConfig, RayObservability, TeamConfig, TeamStackConfig, WorkerGroupConfig,
)
from components.config.queue_model import Queueing, local_queue_name
from components.config.queues import check_team_queue, check_unqueued_jobs, parse_team_queue
from components.config.reader import MISSING, Node, Problems, check_dns, check_range, check_unique, ns


def _check_group(p: Problems, path: str, value: str) -> None:
    if not value.strip():
        p.bad(path, value, "a group name must not be empty (it becomes a RoleBinding subject)")


def _parse_team(p: Problems, root: Node) -> TeamConfig | None:
    node = root.child("team", required=True, example="'{\"name\": \"vision\", ...}'")
    if node is None:
        return None
    name = node.str("name", MISSING, "vision")
    check_dns(p, node.key("name"), name, 40, "team name")
    groups = node.str_list("groups", MISSING, "'[\"vision-engineers\"]'",
                           item=lambda path, v: _check_group(p, path, v))
    if node.raw("groups") is not MISSING and not groups:
        p.bad(node.key("groups"), [], "name at least one group to bind the team's Role to")
    qnode = node.child("quota", required=True, example="'{\"cpu\": \"64\", \"memory\": \"256Gi\", \"gpus\": 8}'")
    quota = None
    if qnode is not None:
        cpu = qnode.quantity("cpu", MISSING, "64")
        memory = qnode.quantity("memory", MISSING, "256Gi")
        gpus = qnode.int("gpus", MISSING, "8", minimum=0)
        pods = qnode.int("pods", QuotaConfig.pods, minimum=1)
        qnode.done()
        if None not in (cpu, memory, gpus):
            quota = QuotaConfig(cpu=cpu, memory=memory, gpus=gpus, pods=pods)
    lnode = node.child("limitRange")
    limit_range = LimitRangeConfig()
    if lnode is not None:
        limit_range = LimitRangeConfig(
            default_cpu=lnode.quantity("defaultCpu", LimitRangeConfig.default_cpu),
            default_memory=lnode.quantity("defaultMemory", LimitRangeConfig.default_memory),
            max_cpu=lnode.quantity("maxCpu", LimitRangeConfig.max_cpu),
            max_memory=lnode.quantity("maxMemory", LimitRangeConfig.max_memory),
        )
        check_not_above(p, lnode.key("defaultCpu"), limit_range.default_cpu, limit_range.max_cpu, "maxCpu")
        check_not_above(p, lnode.key("defaultMemory"), limit_range.default_memory, limit_range.max_memory,
                        "maxMemory")
        lnode.done()
    network_policy = node.bool("networkPolicy", TeamConfig.network_policy)
    node.done()
    if quota is None or name is None:
        return None
    return TeamConfig(name=name, groups=groups, quota=quota, limit_range=limit_range,
                      network_policy=network_policy)


def _check_shm(p: Problems, node: Node, shm: str | None, memory: str | None) -> None:
    # /dev/shm is a memory-backed emptyDir: whatever Ray's object store puts there counts
    # against the container's memory limit, so it has to leave room for the Ray processes.
    if shm is not None and memory is not None and quantity_value(shm) >= quantity_value(memory):
        p.bad(node.key("shmSize"), shm, f"must be smaller than the container's memory ({memory}); "
                                        f"/dev/shm is carved out of it")


def _parse_worker_group(p: Problems, node: Node) -> WorkerGroupConfig:
    name = node.str("name", MISSING, "gpu")
    check_dns(p, node.key("name"), name, 30, "worker group name")
    cfg = WorkerGroupConfig(
        name=name,
        cpu=node.quantity("cpu", MISSING, "4"),
        memory=node.quantity("memory", MISSING, "16Gi"),
        gpus=node.int("gpus", WorkerGroupConfig.gpus, minimum=0, maximum=16),
        replicas=node.int("replicas", WorkerGroupConfig.replicas, minimum=0),
        min_replicas=node.int("minReplicas", WorkerGroupConfig.min_replicas, minimum=0),
        max_replicas=node.int("maxReplicas", WorkerGroupConfig.max_replicas, minimum=0),
        shm_size=node.quantity("shmSize", WorkerGroupConfig.shm_size),
        gpu_pool=node.str("gpuPool", None),
    )
    check_range(p, node, "minReplicas", "replicas", "maxReplicas",
                (cfg.min_replicas, cfg.replicas, cfg.max_replicas))
    _check_shm(p, node, cfg.shm_size, cfg.memory)
    if cfg.gpus == 0 and cfg.gpu_pool is not None:
        p.bad(node.key("gpuPool"), cfg.gpu_pool, "a CPU worker group (gpus: 0) must not target a GPU pool")
    node.done()
    return cfg


def _parse_gcs_fault_tolerance(p: Problems, node: Node | None) -> GcsFaultToleranceConfig | None:
    if node is None:
        return None
    backend = node.str("backend", MISSING, "redis", choices=GCS_FT_BACKENDS)
    ft = GcsFaultToleranceConfig(
        backend=backend,
        redis_address=node.str("redisAddress", None),
        storage_size=node.quantity("storageSize", GcsFaultToleranceConfig.storage_size),
    )
    if backend == "redis" and not ft.redis_address:
        p.missing(node.key("redisAddress"), "redis.example.internal:6379")
    if backend == "rocksdb" and ft.redis_address:
        p.bad(node.key("redisAddress"), ft.redis_address, "only used with backend: redis")
    if backend == "redis" and "storageSize" in node.data:
        p.bad(node.key("storageSize"), node.data["storageSize"],
              "only used with backend: rocksdb (the size of the head's GCS volume)")
    node.done()
    return ft


def _parse_ray_cluster(p: Problems, node: Node) -> RayClusterConfig:
    name = node.str("name", MISSING, "ray")
    check_dns(p, node.key("name"), name, RAYCLUSTER_NAME_MAX, "RayCluster name")
    hnode = node.child("head")
    head = HeadConfig()
    if hnode is not None:
        head = HeadConfig(
            cpu=hnode.quantity("cpu", HeadConfig.cpu),
            memory=hnode.quantity("memory", HeadConfig.memory),
            shm_size=hnode.quantity("shmSize", HeadConfig.shm_size),
            service_type=hnode.str("serviceType", HeadConfig.service_type, choices=SERVICE_TYPES),
        )
        _check_shm(p, hnode, head.shm_size, head.memory)
        hnode.done()
    group_nodes = node.children("workerGroups")
    # Before the groups' own parse, which reports keys it did not read.
    runtime = cluster_runtime(p, node, group_nodes)
    groups = tuple(_parse_worker_group(p, n) for n in group_nodes)
    check_unique(p, node.key("workerGroups"), [g.name for g in groups], "worker group names must be unique")
    ft = _parse_gcs_fault_tolerance(p, node.child("gcsFaultTolerance"))
    anode = node.child("autoscaler")
    idle, mode = RayClusterConfig.idle_timeout_seconds, RayClusterConfig.upscaling_mode
    autoscaler_cpu, autoscaler_memory = RayClusterConfig.autoscaler_cpu, RayClusterConfig.autoscaler_memory
    if anode is not None:
        idle = anode.int("idleTimeoutSeconds", idle, minimum=30)
        mode = anode.str("upscalingMode", mode, choices=UPSCALING_MODES)
        autoscaler_cpu = anode.quantity("cpu", autoscaler_cpu)
        autoscaler_memory = anode.quantity("memory", autoscaler_memory)
        anode.done()
    cfg = RayClusterConfig(name=name, head=head, worker_groups=groups, idle_timeout_seconds=idle,
                           upscaling_mode=mode, autoscaler_cpu=autoscaler_cpu,
                           autoscaler_memory=autoscaler_memory, gcs_fault_tolerance=ft,
                           auth=node.bool("auth", RayClusterConfig.auth),
                           runtime=runtime)
    node.done()
    return cfg


def _parse_dashboard(p: Problems, root: Node) -> DashboardConfig:
    node = root.child("dashboard")
    if node is None:
        return DashboardConfig()
    url = node.str("url", None, "'http://{cluster}-head-svc.{namespace}.svc:8265'")
    # A configured URL only means something in url mode, so it selects that mode.
    access = node.str("access", "url" if url is not None else DashboardConfig.access, choices=DASHBOARD_ACCESS)
    if access == "url" and url is None:
        p.missing(node.key("url"), "'http://{cluster}-head-svc.{namespace}.svc:8265'")
    if access == "tunnel" and url is not None:
        p.bad(node.key("url"), url, "only with access: url; the tunnel finds each cluster's head pod itself")
    if url is not None and not url.startswith(("http://", "https://")):
        p.bad(node.key("url"), url, "expected an http:// or https:// URL template with {cluster} and {namespace}")
    cfg = DashboardConfig(access=access or DashboardConfig.access, url=url or DashboardConfig.url,
                          serve_url=node.str("serveUrl", DashboardConfig.serve_url))
    node.done()
    return cfg


def _check_observability_against_platform(p: Problems, wanted: RayObservability,
                                           platform: PlatformConfig) -> None:
    offered = platform.observability
    if wanted.metrics and offered.prometheus is None:
        p.bad(f"{ns('observability')}.metrics", True,
              f"platform stack {platform.stack!r} installs no Prometheus (its observability.prometheus)")
    if wanted.log_shipping and offered.log_shipping is None:
        p.bad(f"{ns('observability')}.logShipping", True,
              f"platform stack {platform.stack!r} ships no logs (its observability.logShipping)")


def _check_against_platform(p: Problems, team: TeamConfig | None, clusters: tuple[RayClusterConfig, ...],
                            platform: PlatformConfig) -> None:
    watched = platform.kuberay.watch_namespaces
    if team is not None and watched and team.namespace not in watched:
        p.bad(f"{ns('team')}.name", team.name,
              f"namespace {team.namespace!r} is not watched by the KubeRay operator of platform stack "
              f"{platform.stack!r} (kuberay.watchNamespaces: {', '.join(watched)}); add it there first")
    pools = {pool.name: pool for pool in platform.gpu_pools}
    for c_i, c in enumerate(clusters):
        for g_i, g in enumerate(c.worker_groups):
            path = f"{ns('rayClusters')}[{c_i}].workerGroups[{g_i}]"
            if g.gpus == 0:
                continue
            if not pools:
                # An existing cluster brings its own GPU nodes, labelled by hand; only EKS pools are known here.
                if platform.is_eks:
                    p.bad(f"{path}.gpus", g.gpus, f"platform stack {platform.stack!r} has no GPU pools (CPU-only)")
                continue
            if g.gpu_pool is not None and g.gpu_pool not in pools:
                p.bad(f"{path}.gpuPool", g.gpu_pool,
                      f"platform stack {platform.stack!r} has GPU pools: {', '.join(pools)}")
                continue
            candidates = [pools[g.gpu_pool]] if g.gpu_pool is not None else list(pools.values())
            # Workers of one group that fit on the pool(s) at the pools' max size.
            capacity = sum(pool.max_size * (pool.gpus_per_node // g.gpus) for pool in candidates)
            if capacity == 0 and g.gpu_pool is not None:
                p.bad(f"{path}.gpus", g.gpus,
                      f"GPU pool {g.gpu_pool!r} has {pools[g.gpu_pool].gpus_per_node} GPU(s) per node")
            elif capacity == 0:
                per_node = ", ".join(f"{pool.name}: {pool.gpus_per_node}" for pool in candidates)
                p.bad(f"{path}.gpus", g.gpus, f"no GPU node of platform stack {platform.stack!r} has that many "
                                              f"GPUs (GPUs per node: {per_node})")
            elif g.max_replicas > capacity:
                where = f"GPU pool {g.gpu_pool!r}" if g.gpu_pool is not None else "the GPU pools together"
                p.bad(f"{path}.maxReplicas", g.max_replicas,
                      f"{where} of platform stack {platform.stack!r} can hold at most {capacity} worker(s) "
                      f"of {g.gpus} GPU(s) at their maxSize")


def parse_team_stack(p: Problems, root: Node, stack: str, environment: str | None,
                     platform_lookup: Callable[[str], PlatformConfig | None] | None, *,
                     stack_dir: Path | None = None, secret_keys: Collection[str] | None = None
                     ) -> TeamStackConfig | None:
    platform_stack = root.str("platformStack", MISSING, "my-org/ray-platform/dev", pattern=STACK_REF,
                              rule="expected a stack reference such as my-org/ray-platform/dev")
    team = _parse_team(p, root)
    observability = _parse_team_observability(root)
    clusters = tuple(replace(_parse_ray_cluster(p, n), observability=observability)
                     for n in root.children("rayClusters", required=True))
    if root.raw("rayClusters") is not MISSING and not clusters:
        p.bad(ns("rayClusters"), [], "declare at least one RayCluster")
    check_unique(p, ns("rayClusters"), [c.name for c in clusters], "RayCluster names must be unique in a team")
    secrets = parse_secrets(p, root, secret_keys)
    jobs = parse_jobs(p, root, {c.name: c for c in clusters if c.name}, stack_dir or DEFAULT_STACK_DIR, secrets)
    clusters = with_job_env(p, clusters, jobs)
    queue = parse_team_queue(p, root)
    if queue is not None and team is not None:
        # Queued: every RayCluster the team declares and every RayJob bringing one like it; a
        # RayService's cluster stays out of queues (docs/queues.md).
        owned = rayservice_owners(jobs)
        queueing = Queueing(local_queue=local_queue_name(team.name), priority_class=queue.priority_class)
        clusters = tuple(c if c.name in owned else replace(c, queue=queueing) for c in clusters)
    dashboard = _parse_dashboard(p, root)
    redis_password = root.str("redisPassword", None)
    dashboard_token = root.str("dashboardToken", None)
    uses_redis = any(c.gcs_fault_tolerance and c.gcs_fault_tolerance.backend == "redis" for c in clusters)
    if uses_redis and redis_password is None:
        p.missing(ns("redisPassword"), "--secret <password>")
    for i, c in enumerate(clusters):
        if c.auth and dashboard_token is None:
            p.bad(f"{ns('rayClusters')}[{i}].auth", True,
                  f"token auth needs the secret {ns('dashboardToken')} (pulumi config set --secret "
                  f"{ns('dashboardToken')} <token>)")
    if team is not None:
        check_quota_fit(p, team, clusters)
        check_kuberay_fit(p, team, clusters, jobs)
        check_limit_range(p, team, clusters)
    platform = None
    if platform_stack and platform_lookup is not None:
        platform = platform_lookup(platform_stack.rsplit("/", 1)[-1])
        if platform is not None:
            _check_against_platform(p, team, clusters, platform)
            _check_observability_against_platform(p, observability, platform)
    if queue is not None and team is not None:
        check_team_queue(p, team, queue, clusters, jobs, platform)
    elif queue is None:
        check_unqueued_jobs(p, jobs)
    if team is None or platform_stack is None or not clusters:
        return None
    return TeamStackConfig(stack=stack, environment=environment or "", platform_stack=platform_stack,
                           team=team, ray_clusters=clusters, jobs=jobs, dashboard=dashboard,
                           redis_password=redis_password, dashboard_token=dashboard_token,
                           observability=observability, queue=queue,
                           secrets=root.data.get("secrets") if secrets else {})


def _parse_team_observability(root: Node) -> RayObservability:
    node = root.child("observability")
    if node is None:
        return RayObservability()
    cfg = RayObservability(metrics=node.bool("metrics", RayObservability.metrics),
                           log_shipping=node.bool("logShipping", RayObservability.log_shipping))
    node.done()
    return cfg

