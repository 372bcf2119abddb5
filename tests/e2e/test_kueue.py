"""Teams share GPUs through the real Kueue controller (v0.19.2, tools/e2e/kueue.py) on the KWOK GPU pool
g5-12xlarge, with the flavors, cohort and priority classes the `local` platform stack's `pulumi up`
created (the e2e layers the cohort `e2e` of teams alpha and beta onto it).

Each team's ClusterQueue and LocalQueue and every RayJob are the objects the team layer declares,
built by the same pure functions (components/specs/kueue.py, components/specs/rayjob.py). One label
is added for the e2e: there is no Ray behind the KWOK pods, and KWOK completes a Job's pod at once, so
KubeRay would fail each RayJob 30 s after its submitter "finished" and free its quota by itself; the
submitter pod carries tools/e2e/kueue.py's KEEP_RUNNING_LABEL instead, and each RayJob holds its
quota, Running, until Kueue preempts it or the test deletes it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from components.config.model import (
    HeadConfig, JobConfig, KubeRayJobConfig, QuotaConfig, RayClusterConfig, TeamConfig, WorkerGroupConfig,
)
from components.config.queue_model import QueueQuota, Queueing, TeamQueueConfig, local_queue_name
from components.constants import GPU_RESOURCE
from components.specs import kueue as K
from components.specs.namespace import namespace_labels
from components.specs.rayjob import ray_job
from tests.e2e import wait
from tools.e2e import controlplane as cp
from tools.e2e import stacks
from tools.e2e.kueue import KEEP_RUNNING_LABEL

pytestmark = pytest.mark.e2e

POOL = "g5-12xlarge"
# The pool's GPUs: KWOK nodes x GPUs per node, as the control plane made them.
CAPACITY = next(count * gpus for pool, count, _cpu, _mem, gpus, _role in cp.POOLS if pool == POOL)
TEAMS = stacks.E2E_COHORT["teams"]
# Each team is guaranteed half the pool and may borrow the other half (its ResourceQuota ceiling).
NOMINAL = CAPACITY // 2
ADMIT_S = 60


def team(name: str) -> TeamConfig:
    return TeamConfig(name=name, groups=("e2e",), quota=QuotaConfig(cpu="64", memory="256Gi", gpus=CAPACITY))


QUEUE = TeamQueueConfig(cpu=QueueQuota("32"), memory=QueueQuota("128Gi"), gpus={POOL: QueueQuota(str(NOMINAL))})


def rayjob(name: str, team_name: str, priority: str | None) -> dict[str, Any]:
    """A queued ephemeral RayJob of one GPU worker, as the team layer builds it (the label: above), at
    the team queue's priority class or its own (jobs[].kuberay.priorityClass)."""
    cluster = RayClusterConfig(
        name="job", head=HeadConfig(cpu="500m", memory="1Gi", shm_size="256Mi"),
        worker_groups=(WorkerGroupConfig("gpu", "1", "2Gi", gpus=1, max_replicas=1, shm_size="256Mi",
                                         gpu_pool=POOL),),
        queue=Queueing(local_queue=local_queue_name(team_name), priority_class=QUEUE.priority_class))
    job = JobConfig(name=name, kind="core", cluster="job", submission="kuberay",
                    kuberay=KubeRayJobConfig(code_uri="https://example.invalid/jobs.zip", ephemeral=True,
                                             priority_class=priority))
    obj = ray_job(job, cluster, team(team_name).namespace, team_name, "python -m jobs.core")
    obj["spec"]["submitterPodTemplate"]["metadata"]["labels"][KEEP_RUNNING_LABEL] = "true"
    return obj


def apply(obj: dict[str, Any]) -> None:
    cp.kubectl("apply", "--server-side", "--force-conflicts", "-f", "-", input=json.dumps(obj))


def _ns(team_name: str) -> str:
    return team(team_name).namespace


def submit(team_name: str, name: str, priority: str | None = None) -> str:
    obj = rayjob(name, team_name, priority)
    cp.api("POST", f"/apis/ray.io/v1/namespaces/{_ns(team_name)}/rayjobs", obj)
    return obj["metadata"]["name"]


def workloads(team_name: str) -> dict[str, dict[str, Any]]:
    """RayJob name -> its Workload."""
    items = cp.api("GET", f"/apis/kueue.x-k8s.io/v1beta2/namespaces/{_ns(team_name)}/workloads")["items"]
    return {ref["name"]: w for w in items for ref in w["metadata"].get("ownerReferences", [])
            if ref["kind"] == "RayJob"}


def _condition(w: dict[str, Any], kind: str) -> dict[str, Any]:
    return next((c for c in w.get("status", {}).get("conditions", []) if c["type"] == kind), {})


def admitted(team_name: str) -> set[str]:
    return {n for n, w in workloads(team_name).items() if _condition(w, "Admitted").get("status") == "True"}


def suspended(team_name: str, name: str) -> bool:
    return bool(cp.api("GET", f"/apis/ray.io/v1/namespaces/{_ns(team_name)}/rayjobs/{name}")["spec"].get("suspend"))


def started(team_name: str, name: str) -> bool:
    """Unsuspended, and KubeRay is bringing its cluster up."""
    job = cp.api("GET", f"/apis/ray.io/v1/namespaces/{_ns(team_name)}/rayjobs/{name}")
    return not job["spec"].get("suspend") and bool(job.get("status", {}).get("rayClusterName"))


def delete(team_name: str, name: str) -> None:
    cp.api("DELETE", f"/apis/ray.io/v1/namespaces/{_ns(team_name)}/rayjobs/{name}")


@pytest.fixture(scope="module")
def queues(controlplane: dict[str, Any]) -> Iterator[dict[str, str]]:
    """Each team's namespace, ClusterQueue (in the cohort the platform stack's output names) and LocalQueue."""
    outputs = json.loads(stacks.pulumi(controlplane, "stack", "output", "--json", "--stack",
                                       stacks.PLATFORM_STACK).stdout)
    cohorts = outputs["queues"]["cohorts"]
    assert POOL in outputs["queues"]["flavors"]
    for name in TEAMS:
        t = team(name)
        apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": t.namespace,
                                                                     "labels": namespace_labels(t)}})
        apply(K.cluster_queue(t, QUEUE, cohorts[name]))
        apply(K.local_queue(t, local_queue_name(name)))
    for name in TEAMS:
        wait(f"ClusterQueue {team(name).namespace} active", lambda n=name: _condition(
            cp.api("GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{team(n).namespace}"), "Active"
        ).get("status") == "True", timeout=ADMIT_S)
    yield cohorts
    for name in TEAMS:
        cp.kubectl("delete", "namespace", _ns(name), "--wait=true", "--timeout=120s", check=False)
        cp.kubectl("delete", "clusterqueue", team(name).namespace, "--wait=true", "--timeout=60s", check=False)


@pytest.fixture
def clean(queues: dict[str, str]) -> Iterator[None]:
    """Every test starts and ends with no RayJob in the teams' namespaces."""
    yield
    for name in TEAMS:
        cp.kubectl("delete", "rayjobs", "--all", "-n", _ns(name), "--wait=true", "--timeout=120s")
    wait("no workload left", lambda: not any(workloads(n) for n in TEAMS), timeout=120)


def test_the_teams_share_the_platform_cohort(queues: dict[str, str]) -> None:
    assert {queues[t] for t in TEAMS} == {stacks.E2E_COHORT["name"]}
    for name in TEAMS:
        cq = cp.api("GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{team(name).namespace}")
        assert cq["spec"]["cohortName"] == stacks.E2E_COHORT["name"]


def test_over_nominal_what_fits_is_admitted_the_rest_waits_suspended_and_starts_when_capacity_frees(
        clean: None) -> None:
    a, b = TEAMS
    jobs: dict[str, list[str]] = {a: [], b: []}
    for i in range(NOMINAL + 1):
        for name in TEAMS:
            jobs[name].append(submit(name, f"{name}-{i}"))
    # The pool holds both nominal quotas and nothing more: each team runs its nominal, one waits each.
    wait("each team's nominal admitted", lambda: all(len(admitted(n)) == NOMINAL for n in TEAMS)
         and all(len(workloads(n)) == NOMINAL + 1 for n in TEAMS), timeout=ADMIT_S)
    waiting = {n: next(j for j in jobs[n] if j not in admitted(n)) for n in TEAMS}
    for name in TEAMS:
        assert suspended(name, waiting[name]), f"{waiting[name]} runs without admission"
        for job in admitted(name):
            wait(f"{job} started", lambda n=name, j=job: started(n, j), timeout=ADMIT_S)
    # A GPU of alpha's frees: alpha's waiting job takes it (its own nominal); beta's keeps waiting.
    delete(a, sorted(admitted(a))[0])
    wait(f"{waiting[a]} admitted and started", lambda: waiting[a] in admitted(a) and started(a, waiting[a]),
         timeout=ADMIT_S)
    assert suspended(b, waiting[b]) and waiting[b] not in admitted(b)


def _flavor_usage(team_name: str) -> dict[str, Any]:
    cq = cp.api("GET", f"/apis/kueue.x-k8s.io/v1beta2/clusterqueues/{team(team_name).namespace}")
    for flavor in cq.get("status", {}).get("flavorsUsage", []):
        if flavor["name"] == POOL:
            return next(r for r in flavor["resources"] if r["name"] == GPU_RESOURCE)
    return {}


def test_an_idle_team_s_gpus_are_borrowed_and_reclaimed_when_it_submits(clean: None) -> None:
    a, b = TEAMS
    for i in range(CAPACITY):
        submit(a, f"{a}-{i}")
    # Beta is idle: alpha runs the whole pool, half of it borrowed from beta.
    wait("alpha runs the whole pool", lambda: len(admitted(a)) == CAPACITY, timeout=ADMIT_S)
    wait("alpha's borrowing shows", lambda: str(_flavor_usage(a).get("borrowed")) == str(CAPACITY - NOMINAL),
         timeout=ADMIT_S)
    mine = [submit(b, f"{b}-{i}") for i in range(NOMINAL)]
    # Beta reclaims its nominal: alpha's borrowed workloads are preempted and wait again, suspended.
    wait("beta's nominal admitted", lambda: admitted(b) == set(mine), timeout=ADMIT_S)
    wait("alpha back to its nominal", lambda: len(admitted(a)) == NOMINAL, timeout=ADMIT_S)
    evicted = [n for n, w in workloads(a).items() if n not in admitted(a)]
    assert len(evicted) == CAPACITY - NOMINAL
    for name in evicted:
        assert suspended(a, name)
        assert _condition(workloads(a)[name], "Evicted").get("reason") == "Preempted", workloads(a)[name]["status"]
    assert str(_flavor_usage(a).get("borrowed", 0)) == "0"


def test_a_higher_priority_workload_preempts_a_lower_one(clean: None) -> None:
    a, b = TEAMS
    # Beta uses its whole nominal: nothing to borrow in the cohort.
    theirs = {submit(b, f"{b}-{i}") for i in range(NOMINAL)}
    wait("beta's nominal admitted", lambda: admitted(b) == theirs, timeout=ADMIT_S)
    low = {submit(a, f"{a}-exp-{i}", "experiments") for i in range(NOMINAL)}
    wait("alpha's experiments admitted", lambda: admitted(a) == low, timeout=ADMIT_S)
    urgent = submit(a, f"{a}-prod", "production")
    wait("the production job admitted", lambda: urgent in admitted(a), timeout=ADMIT_S)
    preempted = low - admitted(a)
    assert len(preempted) == 1 and len(admitted(a)) == NOMINAL
    (victim,) = preempted
    assert suspended(a, victim)
    assert _condition(workloads(a)[victim], "Evicted").get("reason") == "Preempted"
    assert workloads(a)[urgent]["spec"]["priority"] == 1000
    assert admitted(b) == theirs  # the other team is untouched
