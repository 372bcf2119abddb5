"""What keeps Ray work alive through node disruption: pure pieces of the RayCluster's pods.

- The head is never disrupted on purpose: Karpenter's do-not-disrupt and the Cluster Autoscaler's
  safe-to-evict annotations keep its node from consolidation, drift, expiry and scale-down.
- A worker that is going away (a spot reclaim Karpenter drains ahead of, a consolidation, a node
  drain) tells Ray first: its preStop hook asks the GCS to drain the pod's own Ray node
  (`ray drain-node`, reason preemption, deadline at the end of the pod's grace period), so Ray stops
  placing work there and records the loss as a preemption; tasks are retried elsewhere and Ray
  Train restarts its workers from the last checkpoint.
- A PodDisruptionBudget per worker group lets voluntary evictions take its workers one at a time.

The drain program runs in the Ray image with its own Ray (rayproject/ray has `python` and `ray` on
PATH). It finds its Ray node by RAY_CLOUD_INSTANCE_ID, which KubeRay sets to the pod's name and
Ray records as the node's instance id, and reaches the GCS at RAY_ADDRESS, which KubeRay sets in
every Ray container. Checked against Ray 2.60.0 (`ray drain-node`, ray/scripts/scripts.py).
"""
from __future__ import annotations

from typing import Any

from components.constants import DO_NOT_DISRUPT_ANNOTATION, RAY_CLUSTER_LABEL, SAFE_TO_EVICT_ANNOTATION

RAY_GROUP_LABEL = "ray.io/group"
# A spot interruption notice gives two minutes; the kubelet waits this long for the preStop hook
# and Ray, then kills the container.
WORKER_TERMINATION_GRACE_SECONDS = 120

# argv[1]: the drain deadline in seconds. Exits 0 when the node is already gone (nothing to drain).
DRAIN_PROGRAM = """\
import os, subprocess, sys
from ray._raylet import GcsClient
from ray.core.generated import gcs_pb2
address, me = os.environ["RAY_ADDRESS"], os.environ["RAY_CLOUD_INSTANCE_ID"]
nodes = GcsClient(address=address).get_all_node_info()
mine = [i.hex() for i, n in nodes.items() if n.instance_id == me and n.state == gcs_pb2.GcsNodeInfo.ALIVE]
if not mine:
    sys.exit(0)
sys.exit(subprocess.call(["ray", "drain-node", "--address", address, "--node-id", mine[0],
                          "--reason", "DRAIN_NODE_REASON_PREEMPTION",
                          "--reason-message", "pod " + me + " is terminating",
                          "--deadline-remaining-seconds", sys.argv[1]]))
"""


def head_annotations() -> dict[str, str]:
    """On the head pod: no voluntary disruption of its node by Karpenter or the Cluster Autoscaler."""
    return {DO_NOT_DISRUPT_ANNOTATION: "true", SAFE_TO_EVICT_ANNOTATION: "false"}


def drain_command(deadline_seconds: int = WORKER_TERMINATION_GRACE_SECONDS) -> list[str]:
    """The argv that drains the calling pod's Ray node: the worker's preStop hook, and what tests run."""
    return ["python", "-c", DRAIN_PROGRAM, str(deadline_seconds)]


def worker_lifecycle() -> dict[str, Any]:
    return {"preStop": {"exec": {"command": drain_command()}}}


def worker_group_pdb(cluster: str, group: str, namespace: str, labels: dict[str, str]) -> dict[str, Any]:
    """Voluntary evictions (node drains, consolidation) take one worker of the group at a time."""
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {"name": f"{cluster}-{group}", "namespace": namespace, "labels": dict(labels)},
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": {RAY_CLUSTER_LABEL: cluster, RAY_GROUP_LABEL: group}},
        },
    }
