"""Training survives losing a Ray worker node, on real multi-node local Ray (issue 15).

The cluster is shaped like a KubeRay one: a head with no CPUs for tasks, worker nodes joined with
`ray start --address` whose RAY_CLOUD_INSTANCE_ID names them as KubeRay names a worker pod. Each
test starts training on two worker nodes, waits for a registered checkpoint, then takes one node
away and joins a replacement (what the Ray autoscaler and KubeRay do with a new pod):

- graceful: the worker pod's own preStop program (components/specs/ray_disruption.py) drains the
  node through the GCS, which then reports it draining (Ray knew before it went), then the node is
  stopped with SIGTERM as the kubelet stops the container;
- hard: the node's processes are SIGKILLed with no warning (an instance lost at once).

Either way the job succeeds, resumed from a checkpoint (restarts >= 1, resumed_from_epoch >= 1).
The node taken away is one that hosts a live worker of the run, taken while the run has epochs
left: otherwise there is nothing to resume and the test would prove nothing.

While a test runs, RAY_ADDRESS names its cluster: the Job SDK and the state API let RAY_ADDRESS
override the address they are given, and with the session head's (tests/conftest.py sets it) the
training ran on the session head, where no node ever went (restarts 0 whenever that head was up).
"""
from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest
from ray._raylet import GcsClient
from ray.core.generated import common_pb2, gcs_pb2
from ray.job_submission import JobStatus, JobSubmissionClient
from ray.util.state import list_actors

from components.specs.ray_disruption import drain_command
from jobs.common import parse_progress
from jobs.model import ACCURACY_BAR
from tests.jobs.test_jobs import submit, wait, wait_for_checkpoint
from tools.local_ray import LocalRay, kill_node, node_env, start_worker, stop_node, temporary_head

pytestmark = pytest.mark.ray
# One 1-CPU worker per node. Ray Train's 2 s poll of its workers paces the epochs at about 2 s, so
# the run goes on for half a minute after its first checkpoint.
EPOCHS = 15


@dataclass
class Cluster:
    head: LocalRay
    workers: dict[str, int] = field(default_factory=dict)

    def nodes(self) -> dict[str, gcs_pb2.GcsNodeInfo]:
        """Every node the GCS knows, alive or dead, by instance id (the head's is empty)."""
        infos = GcsClient(address=self.head.gcs_address).get_all_node_info()
        return {info.instance_id: info for info in infos.values()}

    def training_nodes(self) -> set[str]:
        """The nodes (instance ids) that host a live worker of a training run."""
        by_node_id = {info.node_id.hex(): instance_id for instance_id, info in self.nodes().items()}
        actors = list_actors(address=self.head.dashboard_url, filters=[("state", "=", "ALIVE")], limit=1000)
        return {by_node_id[actor.node_id] for actor in actors if actor.class_name == "RayTrainWorker"}

    def join(self, name: str) -> None:
        self.workers[name] = start_worker(self.head, name, num_cpus=1)
        # A node joins in seconds; a loaded 2-core machine takes minutes.
        deadline = time.monotonic() + 240
        while (node := self.nodes().get(name)) is None or node.state != gcs_pb2.GcsNodeInfo.ALIVE:
            assert time.monotonic() < deadline, f"worker node {name} did not join"
            time.sleep(0.5)


@pytest.fixture
def cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cluster]:
    # KubeRay heads start with num-cpus 0: training runs on the workers only.
    with temporary_head("rp-disrupt-", num_cpus=0) as head:
        monkeypatch.setenv("RAY_ADDRESS", head.gcs_address)
        c = Cluster(head)
        try:
            for name in ("worker-a", "worker-b"):
                c.join(name)
            yield c
        finally:
            for pid in c.workers.values():
                kill_node(pid)


def train_until_checkpoint(c: Cluster, storage: str) -> tuple[JobSubmissionClient, str, str]:
    """Submit the training, wait for its first registered checkpoint; returns the client, the
    submission id and the worker node to take away: one the run has a worker on."""
    client = JobSubmissionClient(c.head.dashboard_url)
    sid = submit(client, "train", {"storage_path": storage, "model_name": "digits-disrupt", "epochs": EPOCHS,
                                   "cpus_per_worker": 1, "max_failures": 3})
    wait_for_checkpoint(client, sid)
    placed = c.training_nodes()
    assert placed and placed <= set(c.workers), (placed, c.workers)
    return client, sid, min(placed)


def assert_still_training_on(c: Cluster, node: str, client: JobSubmissionClient, sid: str) -> None:
    """Just before `node` goes: the run has a live worker there and epochs left, so losing the node
    fails the run's worker group (else there is nothing to resume)."""
    logs = client.get_job_logs(sid)
    assert client.get_job_status(sid) == JobStatus.RUNNING, logs[-2000:]
    assert node in c.training_nodes(), (node, c.training_nodes())
    assert max(p.get("epoch", 0) for p in parse_progress(logs)) < EPOCHS, logs[-2000:]


def is_draining(node: gcs_pb2.GcsNodeInfo) -> bool:
    if node.state == gcs_pb2.GcsNodeInfo.DEAD:
        return node.death_info.reason == common_pb2.NodeDeathInfo.AUTOSCALER_DRAIN_PREEMPTED
    return node.state_snapshot.state == gcs_pb2.NodeSnapshot.DRAINING


def assert_resumed(client: JobSubmissionClient, sid: str) -> None:
    run = wait(client, sid)
    assert run.status == JobStatus.SUCCEEDED, run.logs[-4000:]
    assert run.result is not None
    assert run.result["restarts"] >= 1 and run.result["resumed_from_epoch"] >= 1, run.result
    assert run.result["accuracy"] >= ACCURACY_BAR


def test_a_drained_worker_node_tells_ray_first_and_training_resumes(cluster: Cluster, tmp_path) -> None:
    client, sid, node = train_until_checkpoint(cluster, str(tmp_path))
    # The preStop hook, run as the kubelet runs it: in the pod's environment, before SIGTERM.
    env = node_env(cluster.head.gcs_address, {"RAY_CLOUD_INSTANCE_ID": node})
    drained = subprocess.run(drain_command(), env=env, capture_output=True, text=True, timeout=60)
    assert drained.returncode == 0, drained.stderr[-2000:]
    # Ray knows before the node goes: the GCS has it draining (a busy node keeps its running work
    # until it stops; an idle one exits at once, recorded as drained for preemption).
    deadline = time.monotonic() + 60
    while not is_draining(info := cluster.nodes()[node]):
        assert time.monotonic() < deadline, info
        time.sleep(0.5)
    assert_still_training_on(cluster, node, client, sid)
    stop_node(cluster.workers.pop(node), grace=10)
    cluster.join("worker-c")
    assert_resumed(client, sid)


def test_a_killed_worker_node_loses_its_work_and_training_resumes(cluster: Cluster, tmp_path) -> None:
    client, sid, node = train_until_checkpoint(cluster, str(tmp_path))
    assert_still_training_on(cluster, node, client, sid)
    kill_node(cluster.workers.pop(node))
    cluster.join("worker-c")
    assert_resumed(client, sid)
    death = cluster.nodes()[node].death_info
    assert death.reason == common_pb2.NodeDeathInfo.UNEXPECTED_TERMINATION, death
    # With nothing to drain, the hook of a pod whose node is gone exits 0 (a pod deleted after its node).
    env = node_env(cluster.head.gcs_address, {"RAY_CLOUD_INSTANCE_ID": node})
    assert subprocess.run(drain_command(), env=env, timeout=60).returncode == 0
