"""The Kueue objects of the platform (ResourceFlavors, Cohorts, WorkloadPriorityClasses, the chart's
values) and of a team (its ClusterQueue and LocalQueue), as pure functions of the config.

Flavors are the scheduling contract with the GPU pools, from the same functions the pools and the
Ray GPU groups use: a pool's flavor selects the pool's label, declares its GPU taint and gives the
pods it admits the matching toleration. CPU and memory are one flavor with no node labels: a pod's
own placement (off GPU nodes, or its GPU pool) decides where that quota runs.

Every field below exists in the Kueue v0.19.2 CRDs (`kueue.x-k8s.io/v1beta2`, ../shared/kueue-crds).
"""
from __future__ import annotations

from typing import Any

import yaml

from components.config.fit import quantity_value
from components.config.model import GpuPoolConfig, TeamConfig
from components.config.queue_model import CPU_FLAVOR, QueueQuota, QueuesConfig, TeamQueueConfig
from components.config.queues import borrowing_ceiling
from components.constants import GPU_RESOURCE, KUEUE_GROUP, PART_OF_LABEL, PROJECT
from components.specs.gpu_nodes import gpu_taint, gpu_toleration, pool_node_selector
from components.specs.namespace import NAMESPACE_NAME_LABEL
from components.specs.raycluster import common_labels
from components.versions import KUEUE_CHART, KUEUE_IMAGE_REPOSITORY, KUEUE_VERSION

API_VERSION = f"{KUEUE_GROUP}/v1beta2"
# The Helm release's name (pinned_release names a release after its chart), and so the chart's
# `kueue.fullname`: the webhook Service, its certificate Secret and the manager's ConfigMap.
RELEASE_NAME = KUEUE_CHART
MANAGER_CONFIG_MAP = f"{RELEASE_NAME}-manager-config"
MANAGER_CONFIG_KEY = "controller_manager_config.yaml"
WEBHOOK_SERVICE = f"{RELEASE_NAME}-webhook-service"
# Only the Ray kinds are queued; RayService is left out on purpose (docs/queues.md).
FRAMEWORKS = ("ray.io/rayjob", "ray.io/raycluster")
# The chart's ClusterRoles that aggregate its per-kind roles (by `aggregationRule`; their rules are
# kube-controller-manager's to fill). The platform deletes them before Helm's uninstall: deleted in
# the same batch as the roles they aggregate, they are re-created by the controller (an unconditional
# server-side apply of the rules it computed from its cache), and the uninstall waits for them until
# it times out.
AGGREGATED_ROLES = tuple(f"{RELEASE_NAME}-{group}-role" for group in ("batch-admin", "batch-user"))
# How long an admitted workload may take to have every pod Ready (GPU nodes scaling up from zero
# included) before Kueue evicts it and requeues it: admitted whole, or not holding quota.
PODS_READY_TIMEOUT = "10m"


def _platform_meta(name: str) -> dict[str, Any]:
    return {"name": name, "labels": {PART_OF_LABEL: PROJECT}}


def _obj(kind: str, metadata: dict[str, Any], spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}


def gpu_flavor(pool: GpuPoolConfig) -> dict[str, Any]:
    """The ResourceFlavor of one GPU pool, named after it."""
    return _obj("ResourceFlavor", _platform_meta(pool.name), {
        "nodeLabels": pool_node_selector(pool.name),
        # Kueue assigns this flavor only to pods that tolerate the pool's taint...
        "nodeTaints": [gpu_taint()],
        # ...which the pods it admits here do, whatever their own spec says.
        "tolerations": [gpu_toleration()],
    })


def cpu_flavor() -> dict[str, Any]:
    return _obj("ResourceFlavor", _platform_meta(CPU_FLAVOR), {})


def cohort(name: str) -> dict[str, Any]:
    """A Cohort object holds no quota of its own here: its ClusterQueues lend to each other."""
    return _obj("Cohort", _platform_meta(name), {})


def priority_class(name: str, value: int) -> dict[str, Any]:
    return {"apiVersion": API_VERSION, "kind": "WorkloadPriorityClass", "metadata": _platform_meta(name),
            "value": value, "description": f"ray-platform priority {name!r}; higher values are admitted first "
                                          f"and may preempt lower ones"}


def platform_queue_objects(queues: QueuesConfig, pools: tuple[GpuPoolConfig, ...]) -> list[dict[str, Any]]:
    """Everything the platform declares besides the Helm release, flavors first."""
    return [cpu_flavor(), *(gpu_flavor(pool) for pool in pools), *(cohort(c.name) for c in queues.cohorts),
            *(priority_class(name, value) for name, value in queues.priority_classes.items())]


def aggregated_role(name: str) -> dict[str, Any]:
    """A claim on one of the chart's aggregated ClusterRoles, by name alone: applied with server-side
    apply it owns no field the chart sets, and deleting it deletes the role."""
    return {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "ClusterRole", "metadata": {"name": name}}


def manager_config(queues: QueuesConfig) -> dict[str, Any]:
    """Kueue's Configuration (the chart's managerConfig): the chart's defaults with only the Ray
    kinds integrated and pods-ready gating on."""
    return {
        "apiVersion": "config.kueue.x-k8s.io/v1beta2",
        "kind": "Configuration",
        "namespace": queues.namespace,
        "health": {"healthProbeBindAddress": ":8081"},
        "metrics": {"bindAddress": ":8443"},
        "webhook": {"port": 9443},
        "leaderElection": {"leaderElect": True, "resourceName": "c1f6bfd2.kueue.x-k8s.io"},
        # Jobs without a queue-name label (a RayService's cluster, other tools' jobs) are not Kueue's.
        "manageJobsWithoutQueueName": False,
        "waitForPodsReady": {"timeout": PODS_READY_TIMEOUT, "blockAdmission": False},
        "integrations": {"frameworks": list(FRAMEWORKS)},
    }


def chart_values(queues: QueuesConfig, node_selector: dict[str, str] | None) -> dict[str, Any]:
    return {
        # The chart's default image is a staging build of the release branch; this is the release.
        "controllerManager": {
            "manager": {"image": {"repository": KUEUE_IMAGE_REPOSITORY, "tag": KUEUE_VERSION,
                                  "pullPolicy": "IfNotPresent"}},
            "nodeSelector": node_selector or {},
        },
        "managerConfig": {"controllerManagerConfigYaml": yaml.safe_dump(manager_config(queues), sort_keys=False)},
    }


def platform_outputs(queues: QueuesConfig | None, pools: tuple[GpuPoolConfig, ...]) -> dict[str, Any] | None:
    """What team stacks read: whether Kueue runs, each team's cohort, the flavors and priority classes."""
    if queues is None:
        return None
    return {
        "namespace": queues.namespace,
        "kueueVersion": KUEUE_VERSION,
        "cohorts": {team: c.name for c in queues.cohorts for team in c.teams},
        "flavors": [CPU_FLAVOR, *(pool.name for pool in pools)],
        "priorityClasses": dict(queues.priority_classes),
    }


# --------------------------------------------------------------------------- team


def cluster_queue_name(team: TeamConfig) -> str:
    return team.namespace


def _quantity(value: float) -> str:
    """A derived amount as Kubernetes writes it: whole units, else Gi/Mi of bytes, else millis."""
    for unit, scale in (("Gi", 2**30), ("Mi", 2**20)):
        if value >= scale and value % scale == 0:
            return f"{int(value // scale)}{unit}"
    return f"{int(value)}" if value == int(value) else f"{round(value * 1000)}m"


def _resource(name: str, quota: QueueQuota, cohort_name: str | None, ceiling: float,
              nominal_total: float) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "nominalQuota": quota.nominal}
    if cohort_name is None:
        return out
    # Borrowing never past the team's ResourceQuota, which would refuse the pods of what Kueue admits.
    out["borrowingLimit"] = (quota.borrowing_limit if quota.borrowing_limit is not None
                             else _quantity(borrowing_ceiling(quota, ceiling, nominal_total)))
    if quota.lending_limit is not None:
        out["lendingLimit"] = quota.lending_limit
    return out


def cluster_queue(team: TeamConfig, queue: TeamQueueConfig, cohort_name: str | None) -> dict[str, Any]:
    """The team's ClusterQueue: its nominal quota per flavor, what it may borrow from and lend to its
    cohort, and how it preempts."""
    memory_ceiling = quantity_value(team.quota.memory)
    groups: list[dict[str, Any]] = [{
        "coveredResources": ["cpu", "memory"],
        "flavors": [{"name": CPU_FLAVOR, "resources": [
            _resource("cpu", queue.cpu, cohort_name, quantity_value(team.quota.cpu),
                      quantity_value(queue.cpu.nominal)),
            _resource("memory", queue.memory, cohort_name, memory_ceiling, quantity_value(queue.memory.nominal)),
        ]}],
    }]
    gpu_total = sum(quantity_value(q.nominal) for q in queue.gpus.values())
    if queue.gpus:
        groups.append({"coveredResources": [GPU_RESOURCE], "flavors": [
            {"name": pool, "resources": [_resource(GPU_RESOURCE, q, cohort_name, float(team.quota.gpus), gpu_total)]}
            for pool, q in queue.gpus.items()]})
    spec: dict[str, Any] = {
        # Only the team's own namespace may point a LocalQueue at it.
        "namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: team.namespace}},
        "queueingStrategy": "BestEffortFIFO",
        "resourceGroups": groups,
        "preemption": {
            # A team gets its nominal quota back from borrowers whatever their priority (Kueue
            # picks the lowest-priority borrowed workloads first), and a higher priority of its
            # own preempts a lower one; it never preempts others to borrow.
            "reclaimWithinCohort": "Any",
            "withinClusterQueue": "LowerPriority",
            "borrowWithinCohort": {"policy": "Never"},
        },
    }
    if cohort_name is not None:
        spec["cohortName"] = cohort_name
    return _obj("ClusterQueue", {"name": cluster_queue_name(team), "labels": common_labels(team.name)}, spec)


def local_queue(team: TeamConfig, name: str) -> dict[str, Any]:
    """The namespace's door to the ClusterQueue: what RayJobs and RayClusters name in their queue-name label."""
    return _obj("LocalQueue", {"name": name, "namespace": team.namespace, "labels": common_labels(team.name)},
                {"clusterQueue": cluster_queue_name(team)})
