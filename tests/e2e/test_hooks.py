"""The post-deploy hooks under the real engine, through the API-server tunnel, on a real Ray head.

A team stack of the e2e's own (`hooks-tunnel`, derived from demo-local: tools/e2e/stacks.py) with
`dashboard.access: tunnel`: every hook operation lists the RayCluster's head pod through the API
server and port-forwards to it; KWOK's PortForward object for that pod points the dashboard port at
a real local Ray head (tools/e2e/ray_heads.py). The tests run in file order: up, up again, a
settings change, a failing job, refresh, the state's secrets, destroy.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobSubmissionClient

from tests.e2e import wait
from tools.e2e import stacks
from tools.e2e.ray_heads import RayHeads

pytestmark = pytest.mark.e2e

STACK = "hooks-tunnel"
TEAM = "hooks"
NS = f"team-{TEAM}"
TOKEN = "e2e-hooks-dashboard-token-6f1d2c"
STORAGE = Path(tempfile.gettempdir()) / "ray-platform-e2e-hooks"
DYNAMIC = "pulumi-python:dynamic:RayJob"
# Each job's wait: minutes on a quiet machine, far more on a loaded 2-core one.
WAIT_S = 900


def jobs(serve_port: int, **edits: dict[str, Any]) -> list[dict[str, Any]]:
    """The stack's jobs: a quick one, a training run and the Serve app on its model, and one that
    runs until stopped (its tasks ask for more CPUs than the head has, so its driver waits)."""
    listed = [
        {"name": "stats", "kind": "core", "settings": {"num_chunks": 2, "cpus_per_task": 0.5}, "timeoutSeconds": WAIT_S},
        {"name": "train", "kind": "train", "timeoutSeconds": WAIT_S,
         "settings": {"storage_path": str(STORAGE), "model_name": "digits", "num_workers": 1,
                      "cpus_per_worker": 0.5, "epochs": 1},
         "runtimeEnv": {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.1"}}},
        {"name": "serve", "kind": "serve", "dependsOn": ["train"], "timeoutSeconds": WAIT_S,
         "settings": {"storage_path": str(STORAGE), "model_name": "digits", "app_name": "digits",
                      "route_prefix": "/digits", "http_host": "127.0.0.1", "http_port": serve_port,
                      "num_replicas": 1, "num_cpus": 0.25}},
        {"name": "forever", "kind": "core", "wait": "running", "timeoutSeconds": WAIT_S,
         "settings": {"num_chunks": 1, "cpus_per_task": 64}},
        {"name": "watched", "kind": "core", "wait": "running", "timeoutSeconds": WAIT_S,
         "settings": {"num_chunks": 1, "cpus_per_task": 64}},
    ]
    for job in listed:
        job.update(edits.get(job["name"], {}))
    return listed


def stack_file(state: dict[str, Any], serve_port: int, extra_jobs: list[dict[str, Any]] = (), **edits: Any) -> Path:
    overrides = stacks.team_of_one(TEAM, [*jobs(serve_port, **edits), *extra_jobs], {"access": "tunnel"},
                                   {stacks.key("dashboardToken"): stacks.secret(state, STACK, TOKEN)})
    return stacks.layer(STACK, overrides, base=stacks.TEAM_STACK)


def run(ctx: dict[str, Any], verb: str, *extra: str, config_file: Path | None = None, check: bool = True) -> Any:
    return stacks.pulumi(ctx["state"], verb, "--stack", STACK, "--config-file", str(config_file or ctx["file"]),
                         *extra, check=check)


def submissions(ctx: dict[str, Any]) -> dict[str, str]:
    """Every job the head knows: submission id -> status."""
    return {j.submission_id: str(j.status.value) for j in ctx["client"].list_jobs() if j.submission_id}


def outputs(ctx: dict[str, Any]) -> dict[str, Any]:
    return json.loads(stacks.pulumi(ctx["state"], "stack", "output", "--json", "--stack", STACK).stdout)


@pytest.fixture(scope="module")
def ctx(controlplane: dict[str, Any]) -> Any:
    with RayHeads() as heads:
        head = heads.serve(NS, TEAM, num_cpus=4)
        stacks.init_derived(controlplane, STACK)
        config_file = stack_file(controlplane, head.serve_port)
        context = {"state": controlplane, "file": config_file, "head": head, "heads": heads,
                   "client": JobSubmissionClient(head.dashboard_url)}
        run(context, "up", "--yes", "--skip-preview")
        yield context
        run(context, "destroy", "--yes", check=False)


def test_up_submits_and_waits_through_the_tunnel(ctx: dict[str, Any]) -> None:
    out = outputs(ctx)["jobs"]
    assert out["stats"]["status"] == "SUCCEEDED" and out["stats"]["result"]["tasks"] == 2
    assert out["train"]["status"] == "SUCCEEDED"
    assert out["forever"]["status"] == "RUNNING" and out["watched"]["status"] == "RUNNING"
    # The dashboard URL is only reported in tunnel mode: the cluster's Service name, which nothing here resolves.
    assert out["stats"]["jobUrl"].startswith(f"http://{TEAM}-head-svc.{NS}.svc:8265/")
    seen = submissions(ctx)
    for name in ("stats", "train", "serve", "forever", "watched"):
        assert out[name]["submissionId"] in seen, (name, seen)
    apps = ctx["client"]._do_request("GET", "/api/serve/applications/").json()["applications"]
    assert apps["digits"]["status"] == "RUNNING"


def test_second_up_changes_nothing_and_submits_nothing(ctx: dict[str, Any]) -> None:
    before = submissions(ctx)
    run(ctx, "up", "--yes", "--expect-no-changes")
    assert submissions(ctx).keys() == before.keys()


def test_settings_change_previews_as_replacement_of_that_job_only(ctx: dict[str, Any]) -> None:
    edited = stack_file(ctx["state"], ctx["head"].serve_port, stats={"settings": {"num_chunks": 3, "cpus_per_task": 0.5}})
    try:
        diff = run(ctx, "preview", "--diff", config_file=edited).stdout
    finally:
        ctx["file"] = stack_file(ctx["state"], ctx["head"].serve_port)
    changed = [c for c in re.findall(r"^\s*([-+~]{1,2})\s*(\S+): \((\S+)\)$", diff, re.M) if c[2] != "same"]
    assert changed == [("+-", DYNAMIC, "replace")], diff
    assert f"{TEAM}-job-stats" in diff, diff


def test_failing_job_fails_up_with_its_log_tail(ctx: dict[str, Any]) -> None:
    broken = {"name": "broken", "kind": "core", "timeoutSeconds": 120, "cluster": TEAM,
              "settings": {"num_chunks": 0}}
    bad = stack_file(ctx["state"], ctx["head"].serve_port, extra_jobs=[broken])
    proc = run(ctx, "up", "--yes", "--skip-preview", config_file=bad, check=False)
    ctx["file"] = stack_file(ctx["state"], ctx["head"].serve_port)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert "Ray job 'broken'" in out and "ended FAILED" in out, out
    assert "--- last 50 log lines ---" in out and "num_chunks must be >= 1" in out, out


def test_refresh_picks_up_a_jobs_new_state(ctx: dict[str, Any]) -> None:
    watched = outputs(ctx)["jobs"]["watched"]["submissionId"]
    ctx["client"].stop_job(watched)
    wait("the watched job stopped", lambda: submissions(ctx).get(watched) == "STOPPED", 60)
    run(ctx, "refresh", "--yes")
    # Refresh rewrites the resource's state (the stack's outputs come from the program, on the next up).
    assert hook_state(ctx, "watched")["status"] == "STOPPED"


def hook_state(ctx: dict[str, Any], job: str) -> dict[str, Any]:
    """The outputs the state records for job `job`'s hook resource."""
    deployment = json.loads(stacks.pulumi(ctx["state"], "stack", "export", "--stack", STACK).stdout)["deployment"]
    [res] = [r for r in deployment["resources"] if r["urn"].endswith(f"{DYNAMIC}::{TEAM}-job-{job}")]
    return dict(res["outputs"])


def test_state_holds_no_plaintext_secret(ctx: dict[str, Any]) -> None:
    exported = stacks.pulumi(ctx["state"], "stack", "export", "--stack", STACK).stdout
    shown = stacks.pulumi(ctx["state"], "stack", "export", "--show-secrets", "--stack", STACK).stdout
    # The platform's kubeconfig output (here the path of the control plane's kubeconfig; on EKS the
    # document), which the hooks keep to tunnel and to wait.
    kubeconfig = json.loads(stacks.pulumi(ctx["state"], "stack", "output", "--json", "--show-secrets", "--stack",
                                          stacks.PLATFORM_STACK).stdout)["kubeconfig"]
    for secret in (TOKEN, kubeconfig):
        assert secret in shown  # the state holds it ...
        assert secret not in exported  # ... never in the clear


def test_destroy_stops_running_jobs_and_removes_serve_apps(ctx: dict[str, Any]) -> None:
    forever = outputs(ctx)["jobs"]["forever"]["submissionId"]
    run(ctx, "destroy", "--yes")
    assert submissions(ctx)[forever] == "STOPPED"
    apps = ctx["client"]._do_request("GET", "/api/serve/applications/").json().get("applications") or {}
    assert "digits" not in apps
