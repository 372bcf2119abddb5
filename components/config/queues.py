"""Queueing config (Kueue, docs/queues.md): the platform's `queues`, a team's `queue`, and the
preview-time checks that put numbers on what Kueue would otherwise only show as a workload waiting
forever: quota against the GPU pools' capacity and the team's ResourceQuota, RayClusters too big to
ever be admitted, quota in a flavor that names no pool."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from components.config.fit import ephemeral_cluster, head_pod_containers, quantity_value, worker_pod_containers
from components.config.model import (
    DNS1123, DNS_LABEL_MAX, GpuPoolConfig, JobConfig, KubeRayJobConfig, PlatformConfig, RayClusterConfig, TeamConfig,
)
from components.config.queue_model import CPU_FLAVOR, CohortConfig, QueueQuota, QueuesConfig, TeamQueueConfig
from components.config.reader import MISSING, Node, Problems, check_dns, check_unique, ns

# Kueue turns a RayCluster into one PodSet per group, head included, and admits at most 18
# (jobframework.MaxPodSets); it reserves the PodSet name "head" for the head group.
MAX_POD_SETS = 18
HEAD_POD_SET = "head"
# WorkloadPriorityClass values are int32.
PRIORITY_MAX = 2**31 - 1


def parse_platform_queues(p: Problems, root: Node, pools: tuple[GpuPoolConfig, ...]) -> QueuesConfig | None:
    node = root.child("queues")
    if node is None:
        return None
    namespace = node.str("namespace", QueuesConfig.namespace)
    check_dns(p, node.key("namespace"), namespace, DNS_LABEL_MAX, "namespace", DNS1123)
    cohorts = []
    for c in node.children("cohorts"):
        name = c.str("name", MISSING, "research")
        check_dns(p, c.key("name"), name, DNS_LABEL_MAX, "cohort name", DNS1123)
        teams = c.str_list("teams", MISSING, "'[\"vision\", \"nlp\"]'")
        if c.raw("teams") is not MISSING and len(teams) < 2:
            p.bad(c.key("teams"), list(teams), "a cohort shares quota between teams: name at least two")
        cohorts.append(CohortConfig(name=name, teams=teams))
        c.done()
    check_unique(p, node.key("cohorts"), [c.name for c in cohorts], "duplicates cohorts[{first}].name")
    seen: dict[str, str] = {}
    for i, c in enumerate(cohorts):
        for team in c.teams:
            if team in seen:
                p.bad(f"{node.key('cohorts')}[{i}].teams", team,
                      f"team {team!r} is already in cohort {seen[team]!r}; a ClusterQueue belongs to one cohort")
            seen.setdefault(team, c.name)
    classes = QueuesConfig().priority_classes
    if "priorityClasses" in node.data:
        classes = {}
        for name, value in node.any_map("priorityClasses").items():
            check_dns(p, f"{node.key('priorityClasses')}.{name}", name, DNS_LABEL_MAX, "priority class name",
                      DNS1123)
            if isinstance(value, bool) or not isinstance(value, int) or not -PRIORITY_MAX <= value <= PRIORITY_MAX:
                p.bad(f"{node.key('priorityClasses')}.{name}", value, "expected an integer priority (int32)")
            else:
                classes[name] = value
        if not classes:
            p.bad(node.key("priorityClasses"), {}, "name at least one priority class")
    for i, pool in enumerate(pools):
        if pool.name == CPU_FLAVOR:
            p.bad(f"{ns('gpuPools')}[{i}].name", pool.name,
                  f"with queues, {CPU_FLAVOR!r} names the CPU ResourceFlavor; name the GPU pool otherwise")
    node.done()
    return QueuesConfig(namespace=namespace, cohorts=tuple(cohorts), priority_classes=classes)


def _quota(p: Problems, node: Node, key: str, example: str, gpus: bool = False) -> QueueQuota | None:
    """`key: <nominal>` or `key: {nominal, borrowingLimit, lendingLimit}`."""
    raw = node.raw(key)
    if isinstance(raw, (str, int, float)) and not isinstance(raw, bool):
        raw = {"nominal": raw}
    if not isinstance(raw, dict):
        if raw is MISSING:
            p.missing(node.key(key), example)
        else:
            p.bad(node.key(key), raw, "expected a quantity or a map with nominal, borrowingLimit, lendingLimit")
        return None
    q = Node(p, node.key(key), raw)

    def value(name: str, default: Any) -> str | None:
        if gpus:
            got = q.int(name, default, "2", minimum=0)
            return None if got is None else str(got)
        return q.quantity(name, default, example)

    quota = QueueQuota(nominal=value("nominal", MISSING), borrowing_limit=value("borrowingLimit", None),
                       lending_limit=value("lendingLimit", None))
    q.done()
    if quota.nominal is None:
        return None
    if quota.lending_limit is not None and quantity_value(quota.lending_limit) > quantity_value(quota.nominal):
        p.bad(q.key("lendingLimit"), quota.lending_limit, f"a team lends at most its nominal quota ({quota.nominal})")
    return quota


def parse_team_queue(p: Problems, root: Node) -> TeamQueueConfig | None:
    node = root.child("queue")
    if node is None:
        return None
    cpu = _quota(p, node, "cpu", "32")
    memory = _quota(p, node, "memory", "128Gi")
    gpus: dict[str, QueueQuota] = {}
    gnode = node.child("gpus")
    if gnode is not None:
        for pool in list(gnode.data):
            quota = _quota(p, gnode, pool, "2", gpus=True)
            if quota is not None:
                gpus[pool] = quota
    priority_class = node.str("priorityClass", TeamQueueConfig.priority_class)
    node.done()
    if cpu is None or memory is None:
        return None
    return TeamQueueConfig(cpu=cpu, memory=memory, gpus=gpus, priority_class=priority_class)


def pool_gpus(pool: GpuPoolConfig) -> int:
    """The most GPUs a pool can hold: its maxSize nodes of gpusPerNode each."""
    return pool.gpus_per_node * pool.max_size


def _pool_math(pool: GpuPoolConfig) -> str:
    return f"{pool.max_size} node(s) x {pool.gpus_per_node} GPU(s) at maxSize"


def borrowing_ceiling(quota: QueueQuota, ceiling: float, nominal_total: float) -> float:
    """How much a team in a cohort may borrow: its own limit, else what its namespace's ResourceQuota
    (`ceiling`) leaves above the team's nominal quota of that resource (`nominal_total`)."""
    if quota.borrowing_limit is not None:
        return quantity_value(quota.borrowing_limit)
    return max(0.0, ceiling - nominal_total)


@dataclass(frozen=True)
class _Admissible:
    """The most of each resource the team's ClusterQueue can ever admit at once."""

    cpu: float
    memory: float
    gpus: dict[str, float]


def _admissible(team: TeamConfig, queue: TeamQueueConfig, cohort: str | None,
                pools: dict[str, GpuPoolConfig]) -> _Admissible:
    gpu_total = sum(quantity_value(q.nominal) for q in queue.gpus.values())

    def most(quota: QueueQuota, ceiling: float, nominal_total: float) -> float:
        nominal = quantity_value(quota.nominal)
        return nominal + borrowing_ceiling(quota, ceiling, nominal_total) if cohort else nominal

    gpus = {name: min(most(q, float(team.quota.gpus), gpu_total), float(pool_gpus(pools[name])))
            for name, q in queue.gpus.items() if name in pools}
    return _Admissible(cpu=most(queue.cpu, quantity_value(team.quota.cpu), quantity_value(queue.cpu.nominal)),
                       memory=most(queue.memory, quantity_value(team.quota.memory),
                                   quantity_value(queue.memory.nominal)),
                       gpus=gpus)


def _check_ceiling(p: Problems, path: str, what: str, nominal: float, borrow: float | None, ceiling: float,
                   shown: str, fmt: str) -> None:
    """Kueue must not admit what the namespace's ResourceQuota then refuses pod by pod."""
    if nominal > ceiling + 1e-9:
        p.bad(f"{path}.nominal", shown, f"the team's nominal {what} ({fmt.format(nominal)}) is above its "
                                        f"ResourceQuota (team.quota: {fmt.format(ceiling)}), which would refuse "
                                        f"the pods of what Kueue admits; raise team.quota or lower the nominal")
    elif borrow is not None and nominal + borrow > ceiling + 1e-9:
        p.bad(f"{path}.borrowingLimit", fmt.format(borrow),
              f"nominal {fmt.format(nominal)} + borrowing {fmt.format(borrow)} = {fmt.format(nominal + borrow)} "
              f"{what} is above the team's ResourceQuota (team.quota: {fmt.format(ceiling)}); borrowed "
              f"admissions would have their pods refused")


def check_team_queue(p: Problems, team: TeamConfig, queue: TeamQueueConfig, clusters: tuple[RayClusterConfig, ...],
                     jobs: tuple[JobConfig, ...], platform: PlatformConfig | None) -> None:
    """Every check of a team's queue: against its ResourceQuota always, against the platform's
    Kueue, pools and cohorts when the platform stack file is at hand."""
    path = ns("queue")
    gib = 2**30
    gpu_total = sum(quantity_value(q.nominal) for q in queue.gpus.values())
    _check_ceiling(p, f"{path}.cpu", "CPUs", quantity_value(queue.cpu.nominal),
                   None if queue.cpu.borrowing_limit is None else quantity_value(queue.cpu.borrowing_limit),
                   quantity_value(team.quota.cpu), queue.cpu.nominal, "{:g}")
    _check_ceiling(p, f"{path}.memory", "memory", quantity_value(queue.memory.nominal) / gib,
                   None if queue.memory.borrowing_limit is None else quantity_value(queue.memory.borrowing_limit) / gib,
                   quantity_value(team.quota.memory) / gib, queue.memory.nominal, "{:g}Gi")
    if gpu_total > team.quota.gpus:
        p.bad(f"{path}.gpus", {k: q.nominal for k, q in queue.gpus.items()},
              f"the nominal GPUs add up to {gpu_total:g}, above the team's ResourceQuota (team.quota.gpus: "
              f"{team.quota.gpus}), which would refuse the pods of what Kueue admits")
    for name, q in queue.gpus.items():
        if q.borrowing_limit is not None and quantity_value(q.nominal) + quantity_value(q.borrowing_limit) \
                > team.quota.gpus:
            p.bad(f"{path}.gpus.{name}.borrowingLimit", int(q.borrowing_limit),
                  f"nominal {q.nominal} + borrowing {q.borrowing_limit} GPUs is above the team's ResourceQuota "
                  f"(team.quota.gpus: {team.quota.gpus})")
    if platform is None:
        return
    if platform.queues is None:
        p.bad(path, "{...}", f"platform stack {platform.stack!r} installs no Kueue (its ray-platform:queues)")
        return
    classes = platform.queues.priority_classes
    for where, name in [(f"{path}.priorityClass", queue.priority_class), *job_priority_classes(jobs)]:
        if name not in classes:
            p.bad(where, name, f"platform stack {platform.stack!r} has priority classes: {', '.join(classes)}")
    cohort = platform.queues.cohort_of(team.name)
    if cohort is None:
        limits = [f"{path}.{key}" for key, q in (("cpu", queue.cpu), ("memory", queue.memory))
                  if q.borrowing_limit is not None or q.lending_limit is not None]
        limits += [f"{path}.gpus.{name}" for name, q in queue.gpus.items()
                   if q.borrowing_limit is not None or q.lending_limit is not None]
        for where in limits:
            p.bad(where, "borrowingLimit/lendingLimit",
                  f"team {team.name!r} is in no cohort of platform stack {platform.stack!r} "
                  f"(queues.cohorts), so it has no one to borrow from or lend to")
    pools = {pool.name: pool for pool in platform.gpu_pools}
    for name, q in queue.gpus.items():
        if name not in pools:
            p.bad(f"{path}.gpus.{name}", q.nominal,
                  f"flavor {name!r} names no GPU pool of platform stack {platform.stack!r} "
                  f"(pools: {', '.join(pools) or 'none'})")
        elif quantity_value(q.nominal) > pool_gpus(pools[name]):
            p.bad(f"{path}.gpus.{name}.nominal", int(q.nominal),
                  f"pool {name!r} holds at most {pool_gpus(pools[name])} GPUs ({_pool_math(pools[name])})")
    capacity = sum(pool_gpus(pool) for pool in pools.values())
    if pools and gpu_total > capacity:
        where = f"cohort {cohort!r}" if cohort else f"platform stack {platform.stack!r}"
        p.bad(f"{path}.gpus", {k: q.nominal for k, q in queue.gpus.items()},
              f"the nominal GPUs add up to {gpu_total:g}, but the GPU pools of {where} hold at most {capacity} "
              f"({'; '.join(f'{n}: {_pool_math(pl)}' for n, pl in pools.items())})")
    most = _admissible(team, queue, cohort, pools)
    for i, c in enumerate(clusters):
        if c.queue is not None:
            _check_admissible(p, f"{ns('rayClusters')}[{i}]", c, most, queue)
    by_name = {c.name: c for c in clusters}
    for i, job in enumerate(jobs):
        base = by_name.get(job.cluster)
        if isinstance(job.kuberay, KubeRayJobConfig) and job.kuberay.ephemeral and base is not None \
                and base.queue is not None:
            _check_admissible(p, f"{ns('jobs')}[{i}]", ephemeral_cluster(job, base), most, queue)


def job_priority_classes(jobs: tuple[JobConfig, ...]) -> list[tuple[str, str]]:
    """(key path, name) of every job that names a priority class of its own."""
    return [(f"{ns('jobs')}[{i}].kuberay.priorityClass", job.kuberay.priority_class) for i, job in enumerate(jobs)
            if isinstance(job.kuberay, KubeRayJobConfig) and job.kuberay.priority_class is not None]


def check_unqueued_jobs(p: Problems, jobs: tuple[JobConfig, ...]) -> None:
    """A priority class orders work in Kueue's queues: a team with no queue has none to order."""
    for where, name in job_priority_classes(jobs):
        p.bad(where, name, f"only in a queued team (a team stack with {ns('queue')}, docs/queues.md)")


def _check_admissible(p: Problems, path: str, cluster: RayClusterConfig, most: _Admissible,
                      queue: TeamQueueConfig) -> None:
    """Kueue admits a queued cluster whole (at maxReplicas, or an elastic one at its initial
    replicas), or never: say so with numbers."""
    if len(cluster.worker_groups) + 1 > MAX_POD_SETS:
        p.bad(f"{path}.workerGroups", len(cluster.worker_groups),
              f"Kueue admits at most {MAX_POD_SETS} pod sets: the head and {MAX_POD_SETS - 1} worker groups")
    for g_i, g in enumerate(cluster.worker_groups):
        if g.name == HEAD_POD_SET:
            p.bad(f"{path}.workerGroups[{g_i}].name", g.name, "Kueue reserves the pod set name 'head' for the head")
    cpu = sum(quantity_value(s.cpu) for s in head_pod_containers(cluster))
    memory = sum(quantity_value(s.memory) for s in head_pod_containers(cluster))
    by_pool: dict[str | None, float] = {}
    elastic = cluster.queue is not None and cluster.queue.elastic
    for g in cluster.worker_groups:
        pods = worker_pod_containers(cluster, g)
        count = g.replicas if elastic else g.max_replicas
        cpu += count * sum(quantity_value(s.cpu) for s in pods)
        memory += count * sum(quantity_value(s.memory) for s in pods)
        if g.gpus and count:
            by_pool[g.gpu_pool] = by_pool.get(g.gpu_pool, 0.0) + count * sum(s.gpus for s in pods)
    never = (f"can never be admitted: Kueue admits it whole, at its "
             f"{'initial replicas (an elastic job)' if elastic else 'maxReplicas'}")
    gib = 2**30
    if cpu > most.cpu + 1e-9:
        p.bad(path, cluster.name, f"{never}, which needs {cpu:g} CPUs, and the team's queue can admit at most "
                                  f"{most.cpu:g} (queue.cpu, with what it may borrow)")
    if memory > most.memory + 1e-9:
        p.bad(path, cluster.name, f"{never}, which needs {memory / gib:g}Gi, and the team's queue can admit at "
                                  f"most {most.memory / gib:g}Gi (queue.memory, with what it may borrow)")
    for pool, gpus in by_pool.items():
        if pool is not None and pool not in queue.gpus:
            p.bad(path, cluster.name, f"{never}, which needs {gpus:g} GPUs of pool {pool!r}, and the team's queue "
                                      f"has no quota there (queue.gpus: {', '.join(queue.gpus) or 'none'})")
        elif pool is not None and pool in most.gpus and gpus > most.gpus[pool] + 1e-9:
            p.bad(path, cluster.name, f"{never}, which needs {gpus:g} GPUs of pool {pool!r}, and the team's queue "
                                      f"can admit at most {most.gpus[pool]:g} there (nominal, what it may borrow, "
                                      f"and the pool's size)")
    total = sum(by_pool.values())
    if None in by_pool and total > sum(most.gpus.values()) + 1e-9:
        p.bad(path, cluster.name, f"{never}, which needs {total:g} GPUs, and the team's queue can admit at most "
                                  f"{sum(most.gpus.values()):g} across its pools")
