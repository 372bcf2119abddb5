"""The KubeRay path under the real engine, the real operator and real Ray heads.

A team stack of the e2e's own (`kuberay-jobs`, derived from demo-local: tools/e2e/stacks.py) whose
jobs are `submission: kuberay`: RayJobs in the operator's HTTPMode (no submitter pod, which cannot
run under KWOK: the operator itself submits to the head's dashboard) and a RayService. Their code is
the jobs/ archive served over HTTPS (tools/e2e/code_archive.py). Every RayCluster has a real local
Ray head (tools/e2e/ray_heads.py): the team's long-lived cluster from the start, and each cluster the
operator makes for a RayJob or the RayService as it appears, reachable by the operator at its
Service's cluster DNS name (its own /etc/hosts) and through the API server's port-forward.

The tests run in file order: a RayJob succeeds; a failing one fails `up` with KubeRay's reason and its
ephemeral cluster goes after its TTL; a RayCluster the operator refuses fails `up` with its message;
`wait: running` returns once Ray runs the job; a RayService the operator refuses (ValidationFailed)
and one not Ready within its initializing timeout fail `up`; the RayService becomes Ready and its
app answers; a NewCluster upgrade switches to a new cluster; with `upgradeStrategy: None` a Serve
config change applies in place and a cluster change replaces the RayService; destroy.
"""
from __future__ import annotations

import copy
import json
import re
import tempfile
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobSubmissionClient

from components.constants import RAY_CLUSTER_LABEL, RAY_GROUP
from tests.e2e import wait
from tools.e2e import controlplane as cp
from tools.e2e import stacks
from tools.e2e.code_archive import CodeServer, jobs_archive
from tools.e2e.ray_heads import ORIGIN_KIND, RayHeads

pytestmark = pytest.mark.e2e

STACK = "kuberay-jobs"
TEAM = "kr"
NS = f"team-{TEAM}"
SERVICE = "svc"  # the RayService, named after the cluster it owns
STORAGE = Path(tempfile.gettempdir()) / "ray-platform-e2e-kuberay"
# Each wait: minutes on a quiet machine, far more on a loaded 2-core one.
WAIT_S = 900
TTL_S = 30
DIGITS = [[0.0] * 64]


def code_jobs(code_uri: str) -> dict[str, dict[str, Any]]:
    """The stack's jobs by name, each `submission: kuberay` with the archive as its code."""
    http = {"codeUri": code_uri, "submissionMode": "HTTPMode"}
    return {
        "train": {"name": "train", "kind": "train", "cluster": TEAM, "submission": "kuberay", "kuberay": http,
                  "timeoutSeconds": WAIT_S,
                  "settings": {"storage_path": str(STORAGE), "model_name": "digits", "num_workers": 1,
                               "cpus_per_worker": 0.5, "epochs": 1},
                  "runtimeEnv": {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}}},
        "broken": {"name": "broken", "kind": "core", "cluster": TEAM, "submission": "kuberay", "timeoutSeconds": WAIT_S,
                   "kuberay": {**http, "ephemeral": True, "ttlSecondsAfterFinished": TTL_S},
                   "settings": {"num_chunks": 0}},
        # Sleeps, so it is still running when `up` returns; a command of the image, no code.
        "long": {"name": "long", "entrypoint": "python -c 'import time; time.sleep(900)'", "cluster": TEAM,
                 "submission": "kuberay", "wait": "running", "kuberay": {"submissionMode": "HTTPMode"},
                 "timeoutSeconds": WAIT_S},
        "serve": {"name": "serve", "kind": "serve", "cluster": SERVICE, "submission": "kuberay", "dependsOn": ["train"],
                  "timeoutSeconds": WAIT_S,
                  "kuberay": {"codeUri": code_uri, "upgradeStrategy": "NewCluster", "clusterDeletionDelaySeconds": 5},
                  "settings": {"storage_path": str(STORAGE), "model_name": "digits", "app_name": "digits",
                               "route_prefix": "/digits", "num_replicas": 1, "num_cpus": 0.25}},
    }


def stack_file(ctx: dict[str, Any], jobs: list[str], service: dict[str, Any] | None = None,
               serve: dict[str, Any] | None = None, refused: bool = False) -> Path:
    """The stack with `jobs` (names of code_jobs), the RayService's cluster edited by `service` and
    its job by `serve`, and with `refused` a cluster the operator refuses."""
    listed = code_jobs(ctx["code_uri"])
    if serve is not None:
        listed["serve"] = {**listed["serve"], **serve}
    overrides = stacks.team_of_one(TEAM, [], {"access": "tunnel"})
    config = overrides[stacks.key("rayClusters")]
    (own,) = config
    owned = copy.deepcopy(own)
    owned["name"] = SERVICE
    # A worker to back the Serve Service's endpoints (the head is left out of it): KubeRay's Ready.
    owned["workerGroups"][0].update(replicas=1, minReplicas=1, maxReplicas=1)
    owned["head"].update(service or {})
    if "serve" in jobs:
        config.append(owned)  # the RayService's: a RayCluster of that name before it would be in its way
    chosen = [listed[name] for name in jobs]
    if refused:
        # KubeRay refuses a head with REDIS_USERNAME in its env (redis username in the GCS FT settings
        # only): a job's secret env var of that name puts it on the cluster's Ray containers.
        bad = copy.deepcopy(own)
        bad["name"] = "refused"
        config.append(bad)
        chosen.append({"name": "redis-user", "kind": "core", "cluster": "refused", "submission": "kuberay",
                       "wait": "none", "kuberay": {"codeUri": ctx["code_uri"]}, "settings": {"num_chunks": 1},
                       "env": {"REDIS_USERNAME": {"secretKeyRef": {"name": "team-redis", "key": "user"}}}})
    overrides[stacks.key("jobs")] = chosen
    overrides[stacks.key("team")]["quota"].update(cpu="40", memory="160Gi", pods=40)
    return stacks.layer(STACK, overrides, base=stacks.TEAM_STACK)


def deployed(ctx: dict[str, Any]) -> Path:
    """The stack file of what the stack is deployed as (ctx["deployed"]), written again."""
    jobs, edits = ctx["deployed"]
    return stack_file(ctx, jobs, **edits)


def run(ctx: dict[str, Any], verb: str, config_file: Path, *extra: str, check: bool = True) -> Any:
    return stacks.pulumi(ctx["state"], verb, "--stack", STACK, "--config-file", str(config_file), *extra, check=check)


def up(ctx: dict[str, Any], config_file: Path, check: bool = True) -> Any:
    return run(ctx, "up", config_file, "--yes", "--skip-preview", check=check)


def outputs(ctx: dict[str, Any]) -> dict[str, Any]:
    return json.loads(stacks.pulumi(ctx["state"], "stack", "output", "--json", "--stack", STACK).stdout)


def custom(plural: str, name: str = "", selector: str = "") -> Any:
    path = f"/apis/{RAY_GROUP}/v1/namespaces/{NS}/{plural}{'/' + name if name else ''}"
    return cp.api("GET", path + (f"?labelSelector={selector}" if selector else ""))


def rayjob(ctx: dict[str, Any], job: str) -> dict[str, Any]:
    resource = outputs(ctx)["jobs"][job]["resource"]  # RayJob/<namespace>/<name>
    return dict(custom("rayjobs", resource.rsplit("/", 1)[1]))


def answer(serve_port: int) -> dict[str, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{serve_port}/digits/predict", method="POST",
                                 data=json.dumps({"instances": DIGITS}).encode(),
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as resp:
        return dict(json.loads(resp.read()))


def serve_apps(dashboard_url: str) -> dict[str, Any]:
    client = JobSubmissionClient(dashboard_url)
    return dict(client._do_request("GET", "/api/serve/applications/").json().get("applications") or {})


def active_cluster() -> str:
    return str(custom("rayservices", SERVICE)["status"]["activeServiceStatus"]["rayClusterName"])


@pytest.fixture(scope="module")
def ctx(controlplane: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Any:
    code_dir = tmp_path_factory.mktemp("kuberay-code")
    with CodeServer(code_dir) as code, RayHeads(env=CodeServer.head_env()) as heads:
        head = heads.serve(NS, TEAM, num_cpus=2)
        heads.serve_owned(NS, "RayJob", num_cpus=1)
        heads.serve_owned(NS, "RayService", SERVICE, num_cpus=2, serve=True)
        stacks.init_derived(controlplane, STACK)
        context = {"state": controlplane, "heads": heads, "head": head,
                   "code_uri": code.url(jobs_archive(code_dir).name)}
        # What the stack is deployed as (stack_file's arguments): every stack file is written to one path.
        context["deployed"] = (["train"], {})
        yield context
        run(context, "destroy", deployed(context), "--yes", check=False)


def test_a_rayjob_in_http_mode_succeeds_and_the_waiter_sees_it(operator: dict[str, Any], ctx: dict[str, Any]) -> None:
    up(ctx, deployed(ctx))
    status = rayjob(ctx, "train")["status"]
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Complete", "SUCCEEDED"), status
    # The waiter's view, from the API, is the stack's output.
    assert outputs(ctx)["jobs"]["train"]["status"].startswith("jobDeploymentStatus Complete, jobStatus SUCCEEDED")
    # The operator submitted it to the real head itself (HTTPMode), under the RayJob's job id ...
    jobs = {j.submission_id: j for j in JobSubmissionClient(ctx["head"].dashboard_url).list_jobs()}
    assert jobs[status["jobId"]].status.value == "SUCCEEDED"
    assert jobs[status["jobId"]].entrypoint.startswith("python -m jobs.train")
    # ... and no submitter Job or pod was made.
    assert cp.api("GET", f"/apis/batch/v1/namespaces/{NS}/jobs")["items"] == []
    assert status["dashboardURL"] == f"{TEAM}-head-svc.{NS}.svc.cluster.local:8265"


def test_a_failing_rayjob_fails_up_with_kuberays_reason_and_its_cluster_goes_after_the_ttl(
        ctx: dict[str, Any]) -> None:
    proc = up(ctx, stack_file(ctx, ["train", "broken"]), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "jobDeploymentStatus Failed, jobStatus FAILED, reason AppFailed" in out, out
    assert "num_chunks must be >= 1" in out, out
    selector = f"{ORIGIN_KIND}%3DRayJob"
    [cluster] = custom("rayclusters", selector=selector)["items"]
    # Created for the job, then deleted ttlSecondsAfterFinished after it failed (shutdownAfterJobFinishes).
    wait("the ephemeral RayCluster deleted after its TTL",
         lambda: not custom("rayclusters", selector=selector)["items"], TTL_S + 120)
    # ... and its head with it.
    wait("the ephemeral cluster's head stopped", lambda: cluster["metadata"]["name"] not in ctx["heads"].owned(NS), 30)


def test_a_raycluster_the_operator_refuses_fails_up_with_its_message(ctx: dict[str, Any]) -> None:
    proc = up(ctx, stack_file(ctx, ["train"], refused=True), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert f"RayCluster {NS}/refused failed: the KubeRay operator refused it" in out, out
    assert "redis username" in out, out
    up(ctx, deployed(ctx))  # without it again
    wait("the refused RayCluster deleted", lambda: "refused" not in
         {c["metadata"]["name"] for c in custom("rayclusters")["items"]}, 120)


def test_wait_running_returns_once_ray_runs_the_job(ctx: dict[str, Any]) -> None:
    # The operator says jobDeploymentStatus Running as soon as it has submitted (or made the submitter),
    # while Ray's own status may still be PENDING: `wait: running` waits for Ray's RUNNING.
    up(ctx, stack_file(ctx, ["train", "long"]))
    status = rayjob(ctx, "long")["status"]
    assert (status["jobDeploymentStatus"], status["jobStatus"]) == ("Running", "RUNNING"), status
    assert outputs(ctx)["jobs"]["long"]["status"].startswith("jobDeploymentStatus Running, jobStatus RUNNING")
    client = JobSubmissionClient(ctx["head"].dashboard_url)
    assert client.get_job_status(status["jobId"]).value == "RUNNING"
    up(ctx, deployed(ctx))  # without it: deleting the RayJob stops its Ray job
    wait("the removed RayJob's Ray job stopped",
         lambda: client.get_job_status(status["jobId"]).value == "STOPPED", 120)


def test_a_rayservice_the_operator_refuses_fails_up_at_once(ctx: dict[str, Any]) -> None:
    # REDIS_USERNAME on its cluster's containers (from the serve job's env): KubeRay's validation refuses
    # the RayService (Ready False, reason ValidationFailed) and never moves its observedGeneration.
    refused = {"env": {"REDIS_USERNAME": {"secretKeyRef": {"name": "team-redis", "key": "user"}}}}
    proc = up(ctx, stack_file(ctx, ["train", "serve"], serve=refused), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "ValidationFailed" in out and "redis username" in out, out
    up(ctx, deployed(ctx))
    wait("the refused RayService deleted", lambda: not custom("rayservices")["items"], 120)


def test_a_rayservice_not_ready_in_its_initializing_timeout_fails_up(ctx: dict[str, Any]) -> None:
    # A replica of 16 CPUs on a 2-CPU cluster is never placed: the app never runs, and after the
    # `ray.io/initializing-timeout` the operator marks the RayService failed and deletes its cluster.
    stuck = {"kuberay": {"codeUri": ctx["code_uri"], "initializingTimeoutSeconds": 60},
             "settings": {**code_jobs(ctx["code_uri"])["serve"]["settings"], "num_cpus": 16}}
    proc = up(ctx, stack_file(ctx, ["train", "serve"], serve=stuck), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "InitializingTimeout" in out, out
    up(ctx, deployed(ctx))
    wait("the failed RayService deleted", lambda: not custom("rayservices")["items"], 120)


def test_a_rayservice_becomes_ready_and_its_app_answers(ctx: dict[str, Any]) -> None:
    ctx["deployed"] = (["train", "serve"], {})
    up(ctx, deployed(ctx))
    assert outputs(ctx)["jobs"]["serve"]["status"].startswith("Ready True"), outputs(ctx)["jobs"]["serve"]
    cluster = active_cluster()
    head = ctx["heads"].owned(NS)[cluster]
    assert serve_apps(head.dashboard_url)["digits"]["status"] == "RUNNING"
    assert len(answer(head.serve_port)["predictions"]) == len(DIGITS)
    ctx["first_cluster"] = cluster


def test_a_new_cluster_upgrade_switches_to_the_new_cluster(ctx: dict[str, Any]) -> None:
    old = ctx["first_cluster"]
    ctx["deployed"] = (["train", "serve"], {"service": {"memory": "5Gi"}})
    up(ctx, deployed(ctx))
    new = active_cluster()
    assert new != old
    serve_svc = cp.api("GET", f"/api/v1/namespaces/{NS}/services/{SERVICE}-serve-svc")
    assert serve_svc["spec"]["selector"][RAY_CLUSTER_LABEL] == new
    head = ctx["heads"].owned(NS)[new]
    assert serve_apps(head.dashboard_url)["digits"]["status"] == "RUNNING"
    assert len(answer(head.serve_port)["predictions"]) == len(DIGITS)
    wait("the old cluster deleted", lambda: old not in {c["metadata"]["name"] for c in custom("rayclusters")["items"]},
         180)
    ctx["first_cluster"] = new


def test_with_upgrade_strategy_none_a_serve_config_change_applies_in_place(ctx: dict[str, Any]) -> None:
    in_place = {"kuberay": {"codeUri": ctx["code_uri"], "upgradeStrategy": "None"}}
    up(ctx, stack_file(ctx, ["train", "serve"], service={"memory": "5Gi"}, serve=in_place))
    cluster = active_cluster()
    assert cluster == ctx["first_cluster"]
    settings = {**code_jobs(ctx["code_uri"])["serve"]["settings"], "num_replicas": 2}
    ctx["deployed"] = (["train", "serve"], {"service": {"memory": "5Gi"}, "serve": {**in_place, "settings": settings}})
    up(ctx, deployed(ctx))
    assert active_cluster() == cluster
    head = ctx["heads"].owned(NS)[cluster]

    def two_running() -> Any:
        app = serve_apps(head.dashboard_url)["digits"]
        [deployment] = app["deployments"].values()
        running = [r for r in deployment["replicas"] if r["state"] == "RUNNING"]
        return app["status"] == "RUNNING" and len(running) == 2 and deployment

    # Ready stays True through an in-place change: the new config's second replica comes after.
    wait("the app's second replica, on the same cluster", two_running, 180)
    assert len(answer(head.serve_port)["predictions"]) == len(DIGITS)


def test_with_upgrade_strategy_none_a_cluster_change_replaces_the_rayservice(ctx: dict[str, Any]) -> None:
    # None never runs two clusters: a change to the cluster replaces the RayService (delete, then
    # create), which the preview shows.
    before, old = custom("rayservices", SERVICE)["metadata"]["uid"], active_cluster()
    jobs, edits = ctx["deployed"]
    ctx["deployed"] = (jobs, {**edits, "service": {"memory": "6Gi"}})
    diff = run(ctx, "preview", deployed(ctx), "--diff").stdout
    assert re.search(r"^\s*[-+]{2}\s*kubernetes:ray\.io/v1:RayService: \(replace\)$", diff, re.M), diff
    up(ctx, deployed(ctx))
    assert custom("rayservices", SERVICE)["metadata"]["uid"] != before
    new = active_cluster()
    assert new != old
    wait("the old cluster deleted", lambda: old not in {c["metadata"]["name"] for c in custom("rayclusters")["items"]},
         180)
    head = ctx["heads"].owned(NS)[new]
    assert serve_apps(head.dashboard_url)["digits"]["status"] == "RUNNING"
    assert len(answer(head.serve_port)["predictions"]) == len(DIGITS)
