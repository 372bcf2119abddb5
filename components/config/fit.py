"""Whether a team's RayClusters and jobs fit: Kubernetes quantities, the containers of every pod
and their sizes, the demand of every pod at max scale, and the checks of that demand against the
team's quota and its LimitRange.

The per-pod container lists below are the one source of truth for pod sizing: the quota math sums
them, and the spec builders (components/specs/raycluster.py, log_shipping.py, rayjob.py) take
each container's resources from them, so what is counted is what is built."""
from __future__ import annotations

import re
from dataclasses import dataclass, replace

from components.config.model import (
    LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY, SUBMITTER_CPU, SUBMITTER_MEMORY, JobConfig, KubeRayJobConfig,
    KubeRayServiceConfig, RayClusterConfig, TeamConfig, WorkerGroupConfig,
)
from components.config.reader import Problems, ns


def check_not_above(p: Problems, path: str, value: str | None, ceiling: str, what: str) -> None:
    if value is not None and quantity_value(value) > quantity_value(ceiling):
        p.bad(path, value, f"must be <= {what} ({ceiling})")


def quantity_value(q: str | None) -> float:
    """Kubernetes quantity to a float in base units (cores or bytes); 0 for a value already reported bad."""
    m = re.match(r"^([0-9.]+)([a-zA-Z]*)$", q) if isinstance(q, str) else None
    if not m:
        return 0.0
    number, unit = float(m.group(1)), m.group(2)
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
    return number * scale.get(unit, 1)


# The containers of the Ray pods, by name. KubeRay injects the autoscaler into the head pod from
# the RayCluster's autoscalerOptions (its container is named "autoscaler"); the rest the builders
# add themselves.
RAY_HEAD_CONTAINER = "ray-head"
RAY_WORKER_CONTAINER = "ray-worker"
AUTOSCALER_CONTAINER = "autoscaler"
LOG_SHIPPER_CONTAINER = "fluent-bit"
SUBMITTER_CONTAINER = "ray-job-submitter"
# KubeRay's Redis cleanup Job (raycluster_controller.go, buildRedisCleanupJob, v1.7.0): when a
# RayCluster with Redis GCS fault tolerance is deleted, one pod with the Ray container renamed and
# its resources hard-coded, requests == limits.
REDIS_CLEANUP_CONTAINER = "ray-head"
REDIS_CLEANUP_CPU = "200m"
REDIS_CLEANUP_MEMORY = "256Mi"


@dataclass(frozen=True)
class ContainerSize:
    """One container of a pod and what it requests (requests == limits: Guaranteed QoS)."""

    name: str
    cpu: str
    memory: str
    gpus: int = 0


def _log_shipper(cluster: RayClusterConfig) -> tuple[ContainerSize, ...]:
    # Every Ray pod of a team that ships its logs also runs the Fluent Bit sidecar.
    if not cluster.observability.log_shipping:
        return ()
    return (ContainerSize(LOG_SHIPPER_CONTAINER, LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY),)


def head_pod_containers(cluster: RayClusterConfig) -> tuple[ContainerSize, ...]:
    """The head pod: Ray (no GPU: no tasks run there), the autoscaler sidecar unless Kueue admits
    the cluster at a fixed size, the log shipper if any."""
    autoscaler = () if cluster.queue is not None and not cluster.queue.elastic else (
        ContainerSize(AUTOSCALER_CONTAINER, cluster.autoscaler_cpu, cluster.autoscaler_memory),)
    return (ContainerSize(RAY_HEAD_CONTAINER, cluster.head.cpu, cluster.head.memory), *autoscaler,
            *_log_shipper(cluster))


def worker_pod_containers(cluster: RayClusterConfig, group: WorkerGroupConfig) -> tuple[ContainerSize, ...]:
    """A worker pod of `group` in `cluster`: Ray with the group's GPUs, the log shipper if any."""
    return (ContainerSize(RAY_WORKER_CONTAINER, group.cpu, group.memory, group.gpus), *_log_shipper(cluster))


def submitter_pod_containers() -> tuple[ContainerSize, ...]:
    """The pod KubeRay starts per RayJob to submit it and follow its logs."""
    return (ContainerSize(SUBMITTER_CONTAINER, SUBMITTER_CPU, SUBMITTER_MEMORY),)


def redis_cleanup_pod_containers() -> tuple[ContainerSize, ...]:
    """The pod of the Job KubeRay runs to clear a Redis fault-tolerant cluster's keys once it is deleted."""
    return (ContainerSize(REDIS_CLEANUP_CONTAINER, REDIS_CLEANUP_CPU, REDIS_CLEANUP_MEMORY),)


def container_size(containers: tuple[ContainerSize, ...], name: str) -> ContainerSize | None:
    """The container of that name in a pod's list, or None when the pod does not run it."""
    return next((c for c in containers if c.name == name), None)


@dataclass(frozen=True)
class Demand:
    """What the RayClusters of one namespace request at max scale (every group at maxReplicas)."""

    cpu: float
    memory: float
    gpus: int
    pods: int


def _plus(a: Demand, b: Demand) -> Demand:
    return Demand(cpu=a.cpu + b.cpu, memory=a.memory + b.memory, gpus=a.gpus + b.gpus, pods=a.pods + b.pods)


def pod_demand(containers: tuple[ContainerSize, ...], replicas: int = 1) -> Demand:
    """What `replicas` pods running `containers` request."""
    cpu = sum(quantity_value(c.cpu) for c in containers)
    memory = sum(quantity_value(c.memory) for c in containers)
    gpus = sum(c.gpus for c in containers)
    return Demand(cpu=cpu * replicas, memory=memory * replicas, gpus=gpus * replicas, pods=replicas)


def max_demand(clusters: tuple[RayClusterConfig, ...]) -> Demand:
    total = Demand(cpu=0.0, memory=0.0, gpus=0, pods=0)
    for c in clusters:
        total = _plus(total, pod_demand(head_pod_containers(c)))
        for g in c.worker_groups:
            total = _plus(total, pod_demand(worker_pod_containers(c, g), g.max_replicas))
    return total


def ephemeral_cluster(job: JobConfig, base: RayClusterConfig) -> RayClusterConfig:
    """The cluster an ephemeral RayJob brings up: `base` with only the capped worker groups.

    Without GCS fault tolerance: a cluster that lives for one job has no state worth keeping
    across a head restart, and it would only add load on the long-lived cluster's Redis.
    A queued one is admitted at a fixed size (Queueing.elastic).
    """
    caps = job.kuberay.worker_groups if isinstance(job.kuberay, KubeRayJobConfig) else {}
    groups = tuple(
        replace(g, max_replicas=caps[g.name], min_replicas=min(g.min_replicas, caps[g.name]),
                replicas=min(g.replicas, caps[g.name])) if caps else g
        for g in base.worker_groups if not caps or g.name in caps)
    queue = replace(base.queue, elastic=False) if base.queue is not None else None
    return replace(base, worker_groups=groups, gcs_fault_tolerance=None, queue=queue)


def kuberay_demand(jobs: tuple[JobConfig, ...], clusters: tuple[RayClusterConfig, ...]) -> Demand:
    """What the KubeRay operator starts beyond the long-lived RayClusters at max scale.

    Every RayJob in K8sJobMode runs a submitter pod (in HTTPMode the operator submits); an ephemeral
    RayJob brings its own cluster; a RayService upgraded with NewCluster runs a second copy of its
    cluster until the new one takes over. A RayService's own cluster replaces the RayCluster of that
    name, so it is already counted. A cluster with Redis fault tolerance gets a cleanup Job when it
    is deleted (replaced, or the old cluster of an upgrade), while the others run on.
    """
    by_name = {c.name: c for c in clusters}
    total = Demand(cpu=0.0, memory=0.0, gpus=0, pods=0)
    for c in clusters:
        if c.gcs_fault_tolerance is not None and c.gcs_fault_tolerance.backend == "redis":
            total = _plus(total, pod_demand(redis_cleanup_pod_containers()))
    for job in jobs:
        base = by_name.get(job.cluster)
        if isinstance(job.kuberay, KubeRayJobConfig):
            if job.kuberay.runs_submitter:
                total = _plus(total, pod_demand(submitter_pod_containers()))
            if job.kuberay.ephemeral and base is not None:
                total = _plus(total, max_demand((ephemeral_cluster(job, base),)))
        elif isinstance(job.kuberay, KubeRayServiceConfig) and job.kuberay.upgrade_strategy == "NewCluster" \
                and base is not None:
            total = _plus(total, max_demand((base,)))
    return total


def check_kuberay_fit(p: Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...],
                       jobs: tuple[JobConfig, ...]) -> None:
    """The quota must also hold what the KubeRay custom resources start (see kuberay_demand).

    Reported only where the RayClusters alone fit: otherwise check_quota_fit already says so.
    """
    base, extra = max_demand(clusters), kuberay_demand(jobs, clusters)
    quota = team.quota
    names = ", ".join(j.name for j in jobs if j.kuberay is not None) or "none"
    why = (f"the RayClusters at max scale plus what the KubeRay operator starts for the KubeRay jobs ({names}) "
           f"and the clusters (submitter pods, ephemeral RayJob clusters, a RayService's second cluster during "
           f"a NewCluster upgrade, the Redis cleanup Job of a fault-tolerant cluster being deleted)")
    fix = "raise the quota, cap ephemeral clusters with kuberay.workerGroups, or use upgradeStrategy: None"
    gib = 2**30
    # (key, value shown, quota, RayClusters, KubeRay extra, total format, excess format)
    dimensions = (
        ("gpus", quota.gpus, float(quota.gpus), float(base.gpus), float(extra.gpus), "{:g} GPUs", "{:g}"),
        ("cpu", quota.cpu, quantity_value(quota.cpu), base.cpu, extra.cpu, "{:g} CPUs", "{:g}"),
        ("memory", quota.memory, quantity_value(quota.memory) / gib, base.memory / gib, extra.memory / gib,
         "{:g}Gi", "{:g}Gi"),
        ("pods", quota.pods, float(quota.pods), float(base.pods), float(extra.pods), "{:g} pods", "{:g}"),
    )
    for key, shown, cap, used, more, total_fmt, excess_fmt in dimensions:
        if used <= cap + 1e-9 and used + more > cap + 1e-9:
            p.bad(f"{ns('team')}.quota.{key}", shown,
                  f"{why} can request {total_fmt.format(used + more)}, {excess_fmt.format(used + more - cap)} "
                  f"more than the quota; {fix}")


def check_quota_fit(p: Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...]) -> None:
    """Max demand of every RayCluster in the namespace must fit the team quota.

    Otherwise the autoscaler asks for workers the quota refuses: the pods are never
    created and a job waits for resources forever instead of failing at `pulumi up`.
    """
    need = max_demand(clusters)
    quota = team.quota
    path = f"{ns('team')}.quota"
    if need.gpus > quota.gpus:
        p.bad(f"{path}.gpus", quota.gpus,
              f"the RayClusters can scale to {need.gpus} GPUs, {need.gpus - quota.gpus} more than the quota; "
              f"raise the quota or lower maxReplicas")
    quota_cpu, quota_mem = quantity_value(quota.cpu), quantity_value(quota.memory)
    if need.cpu > quota_cpu + 1e-9:
        p.bad(f"{path}.cpu", quota.cpu,
              f"the RayClusters (heads and autoscalers included) can request {need.cpu:g} CPUs at max scale, "
              f"{need.cpu - quota_cpu:g} more than the quota")
    if need.memory > quota_mem:
        p.bad(f"{path}.memory", quota.memory,
              f"the RayClusters (heads and autoscalers included) can request {need.memory / 2**30:g}Gi at max "
              f"scale, {(need.memory - quota_mem) / 2**30:g}Gi more than the quota")
    if need.pods > quota.pods:
        p.bad(f"{path}.pods", quota.pods,
              f"the RayClusters can run {need.pods} pods at max scale, {need.pods - quota.pods} more than the quota")
    for c_i, c in enumerate(clusters):
        for g_i, g in enumerate(c.worker_groups):
            if g.gpus > quota.gpus:
                p.bad(f"{ns('rayClusters')}[{c_i}].workerGroups[{g_i}].gpus", g.gpus,
                      f"one worker needs more GPUs than the team quota ({quota.gpus})")


def check_limit_range(p: Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...]) -> None:
    """A container above the namespace's LimitRange max is refused at pod creation, and KubeRay
    would retry it forever; say so before deploying."""
    lr = team.limit_range
    for c_i, c in enumerate(clusters):
        base = f"{ns('rayClusters')}[{c_i}]"
        containers = [(f"{base}.head", c.head.cpu, c.head.memory)]
        containers += [(f"{base}.workerGroups[{g_i}]", g.cpu, g.memory) for g_i, g in enumerate(c.worker_groups)]
        for path, cpu, memory in containers:
            check_not_above(p, f"{path}.cpu", cpu, lr.max_cpu, "the team's limitRange.maxCpu")
            check_not_above(p, f"{path}.memory", memory, lr.max_memory, "the team's limitRange.maxMemory")

