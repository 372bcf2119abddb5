"""A team's own work under the real engine: one custom job and one custom Serve app, through `pulumi up`.

A team stack of the e2e's own (`team-work`, derived from the demo-local file by tools/e2e/stacks.py)
whose jobs are the example team's (stacks/Pulumi.search-local.yaml): its training entrypoint and its
Serve app by import path, with the team's code from examples/search-embeddings shipped by the hook
through the API-server tunnel to a real local Ray head behind the RayCluster's head pod
(tools/e2e/ray_heads.py). The tests run in file order: up, a request to the app, a change to the
team's code, destroy.
"""
from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import pytest
import requests
from ray.job_submission import JobSubmissionClient

from tools.e2e import stacks
from tools.e2e.ray_heads import RayHeads

# The module's `up` trains and loads the encoder twice on the real head: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(1800)]

STACK = "team-work"
TEAM = "work"
NS = f"team-{TEAM}"
TEAM_FILE = "search-local"
CODE = Path(__file__).resolve().parents[2] / "examples" / "search-embeddings"
STORAGE = Path(tempfile.gettempdir()) / "ray-platform-e2e-team-work"
DYNAMIC = "pulumi-python:dynamic:RayJob"


def team_jobs(serve_port: int) -> list[dict[str, Any]]:
    """The example team's training job and Serve app as its stack file has them, on this stack's
    cluster, storing under STORAGE, one epoch, Serve on the head's port."""
    shipped = {j["name"]: j for j in stacks.shipped(TEAM_FILE)["config"][stacks.key("jobs")]}
    train = {k: v for k, v in shipped["train-topics"].items() if k != "cluster"}
    train["entrypoint"] = (train["entrypoint"].replace("/tmp/ray-platform/search-local", str(STORAGE))
                           .replace("--epochs 5", "--epochs 1"))
    api = {k: v for k, v in shipped["embeddings-api"].items() if k not in ("cluster", "dependsOn")}
    api.update(dependsOn=["train-topics"], settings={"http_host": "127.0.0.1", "http_port": serve_port})
    return [train, api]


def run(ctx: dict[str, Any], verb: str, *extra: str, check: bool = True) -> Any:
    return stacks.pulumi(ctx["state"], verb, "--stack", STACK, "--config-file", str(ctx["file"]), *extra,
                         check=check)


def outputs(ctx: dict[str, Any]) -> dict[str, Any]:
    return json.loads(stacks.pulumi(ctx["state"], "stack", "output", "--json", "--stack", STACK).stdout)


def serve_apps(ctx: dict[str, Any]) -> dict[str, Any]:
    return ctx["client"]._do_request("GET", "/api/serve/applications/").json().get("applications") or {}


@pytest.fixture(scope="module")
def ctx(controlplane: dict[str, Any]) -> Any:
    with RayHeads() as heads:
        head = heads.serve(NS, TEAM, num_cpus=4)
        stacks.init_derived(controlplane, STACK)
        overrides = stacks.team_of_one(TEAM, team_jobs(head.serve_port), {"access": "tunnel"})
        context = {"state": controlplane, "file": stacks.layer(STACK, overrides, base=stacks.TEAM_STACK),
                   "head": head, "client": JobSubmissionClient(head.dashboard_url)}
        run(context, "up", "--yes", "--skip-preview")
        yield context
        run(context, "destroy", "--yes", check=False)


def test_up_runs_the_team_job_and_its_serve_app(ctx: dict[str, Any]) -> None:
    out = outputs(ctx)["jobs"]
    assert out["train-topics"]["status"] == "SUCCEEDED", out
    assert out["train-topics"]["result"]["accuracy"] >= 0.9 and out["train-topics"]["result"]["checkpoint"]
    assert out["embeddings-api"]["status"] == "SUCCEEDED"
    assert out["embeddings-api"]["endpoint"].endswith("/embeddings")
    assert serve_apps(ctx)["embeddings-api"]["status"] == "RUNNING"
    # The team's code was shipped as the job's working dir (the hook uploaded it), not found on the head.
    job = ctx["client"].get_job_info(out["train-topics"]["submissionId"])
    assert str((job.runtime_env or {}).get("working_dir", "")).startswith("gcs://_ray_pkg_"), job.runtime_env


def test_the_team_app_answers(ctx: dict[str, Any]) -> None:
    base = f"http://127.0.0.1:{ctx['head'].serve_port}/embeddings"
    found = requests.post(f"{base}/search", json={"query": "heavy rain tomorrow", "top_k": 3}, timeout=60)
    assert found.status_code == 200 and found.json()["matches"][0]["label"] == "weather", found.text


def test_a_change_to_the_team_code_replaces_only_its_jobs(ctx: dict[str, Any]) -> None:
    marker = CODE / "embeddings" / "e2e_marker.py"
    marker.write_text("# a change to the team's code\n")
    try:
        diff = run(ctx, "preview", "--diff").stdout
    finally:
        marker.unlink()
    changed = [c for c in re.findall(r"^\s*([-+~]{1,2})\s*(\S+): \((\S+)\)$", diff, re.M) if c[2] != "same"]
    assert changed == [("+-", DYNAMIC, "replace")] * 2, diff
    assert f"{TEAM}-job-train-topics" in diff and f"{TEAM}-job-embeddings-api" in diff, diff
    run(ctx, "preview", "--expect-no-changes")


def test_destroy_removes_the_team_app(ctx: dict[str, Any]) -> None:
    run(ctx, "destroy", "--yes")
    assert "embeddings-api" not in serve_apps(ctx)
