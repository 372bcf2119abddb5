"""The typed queueing config (Kueue, docs/queues.md): the platform's cohorts and priority classes,
a team's ClusterQueue quota, and what a queued RayCluster carries. Parsed by components/config/queues.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

# The ResourceFlavor of CPU and memory; each GPU pool's flavor is named after the pool.
CPU_FLAVOR = "cpu"


def default_priority_classes() -> dict[str, int]:
    """Serving that users wait on above scheduled batch work above ad-hoc experiments."""
    return {"production": 1000, "batch": 100, "experiments": 10}


@dataclass(frozen=True)
class CohortConfig:
    """Teams whose ClusterQueues lend each other unused quota."""

    name: str
    teams: tuple[str, ...]


@dataclass(frozen=True)
class QueuesConfig:
    """`ray-platform:queues` of a platform stack: Kueue is installed when the key is present."""

    namespace: str = "kueue-system"
    cohorts: tuple[CohortConfig, ...] = ()
    # WorkloadPriorityClass name -> value; a higher value is admitted first and may preempt.
    priority_classes: Mapping[str, int] = field(default_factory=default_priority_classes)

    def cohort_of(self, team: str) -> str | None:
        return next((c.name for c in self.cohorts if team in c.teams), None)


@dataclass(frozen=True)
class QueueQuota:
    """One resource of a ClusterQueue in one flavor, as Kubernetes quantities."""

    nominal: str
    # None: in a cohort, derived from the team's ResourceQuota (components/specs/kueue.py).
    borrowing_limit: str | None = None
    lending_limit: str | None = None


@dataclass(frozen=True)
class TeamQueueConfig:
    """`ray-platform:queue` of a team stack: the team's ClusterQueue and LocalQueue."""

    cpu: QueueQuota
    memory: QueueQuota
    # GPU pool (its flavor) -> the team's GPUs there.
    gpus: Mapping[str, QueueQuota] = field(default_factory=dict)
    priority_class: str = "batch"


def local_queue_name(team: str) -> str:
    """The LocalQueue in a team's namespace (its ClusterQueue is named after the namespace)."""
    return team


@dataclass(frozen=True)
class Queueing:
    """What a queued RayCluster (and the RayJobs bringing one like it) carries: the team's LocalQueue
    and priority class. Copied onto RayClusterConfig, because the spec builder sees one cluster at a time."""

    local_queue: str
    priority_class: str
    # A long-lived RayCluster is an elastic job: Kueue admits it whole at its initial size and each
    # scale-up of the Ray autoscaler as one more slice. An ephemeral RayJob's cluster is not: it is
    # admitted whole at its maxReplicas, without the autoscaler (Kueue refuses autoscaling otherwise).
    elastic: bool = True
