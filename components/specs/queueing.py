"""What a queued RayCluster or RayJob carries for Kueue (docs/queues.md): the labels naming its
queue and priority, and whether Kueue admits it at a fixed size or as an elastic job."""
from __future__ import annotations

from dataclasses import replace

from components.config.model import JobConfig, KubeRayJobConfig, RayClusterConfig
from components.config.queue_model import Queueing
from components.constants import KUEUE_GROUP, PRIORITY_CLASS_LABEL, QUEUE_NAME_LABEL

# Kueue admits a RayCluster so annotated as an elastic job: its autoscaler's scale-ups as slices.
ELASTIC_JOB_ANNOTATION = f"{KUEUE_GROUP}/elastic-job"


def fixed_size(cfg: RayClusterConfig) -> bool:
    """Admitted whole at maxReplicas, without the Ray autoscaler (an ephemeral RayJob's queued cluster)."""
    return cfg.queue is not None and not cfg.queue.elastic


def queue_labels(queue: Queueing | None) -> dict[str, str]:
    """What puts a RayCluster or RayJob into Kueue's hands: its LocalQueue and priority class."""
    if queue is None:
        return {}
    return {QUEUE_NAME_LABEL: queue.local_queue, PRIORITY_CLASS_LABEL: queue.priority_class}


def job_queueing(job: JobConfig, cluster: RayClusterConfig) -> Queueing | None:
    """A RayJob's queue: its cluster's, at the job's own priority class when it names one."""
    kr = job.kuberay
    if cluster.queue is None or not isinstance(kr, KubeRayJobConfig) or kr.priority_class is None:
        return cluster.queue
    return replace(cluster.queue, priority_class=kr.priority_class)
