"""Jobs against hand-written Ray: each built-in job through the post-deploy hook vs the same work
written directly with Ray (bench/handwritten/) and submitted with the raw Job SDK.

Ours: `RayJobProvider.create` with the demo stack's settings (storage in the bench's directory),
waiting for SUCCEEDED. By hand: `python <kind>.py '<the same settings as JSON>'` from
bench/handwritten/ (working_dir) with jobs/ beside it (py_modules: the data, model and remote
functions are the jobs' own), polled on the hook's own schedule until SUCCEEDED. Both are
timed from submission to SUCCEEDED, so the figure is everything the package adds around the
work: config parsing, result and progress lines, the model pointer, the hook's own requests.
For serve the job ends once its app is RUNNING; the app is removed before the next run.

The example team's batch job (stacks/Pulumi.search-local.yaml, `embed-corpus`: embeddings of a
corpus with Ray Data and sentence-transformers) is the team's own program: by hand it is that
entrypoint submitted with its repository as the working_dir, against the hook shipping the same.
Ours and by hand take turns, the order alternating.
"""
from __future__ import annotations

import dataclasses
import json
import shlex
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.cluster import BenchCluster, fresh_name
from bench.config import BenchConfig
from bench.stats import Figure, Target
from components.clients.polling import Deadline
from components.clients.ray_dashboard import TERMINAL, poll_job, remove_serve_app
from components.clients.ray_jobs import effective_settings, ray_job_args
from components.config.model import JobConfig
from jobs.common import JOBS_DIR
from tools.local import load_team_stack
from tools.local_ray import free_port

SECTION = "jobs"
HANDWRITTEN = Path(__file__).resolve().parent / "handwritten"
TARGET = Target("<=", 1.05)
KINDS = ("core", "train", "infer", "tune", "serve")
TIMEOUT_S = 900.0
EXAMPLE_STACK, EXAMPLE_JOB = "search-local", "embed-corpus"


def settings_for(cluster: BenchCluster, kind: str, model_name: str) -> dict[str, Any]:
    """Bench overrides of the demo job's settings: storage in the bench's directory, the bench's model,
    and a serve app on a free port of its own."""
    storage: dict[str, Any] = {} if kind == "core" else {"storage_path": cluster.storage_path}
    if kind in ("infer", "serve"):
        storage["model_name"] = model_name
    if kind == "infer":
        storage["output_path"] = f"{cluster.storage_path}/{fresh_name('predictions')}"
    if kind == "serve":
        storage.update(http_host="127.0.0.1", http_port=free_port(), app_name=fresh_name("digits"))
        storage["route_prefix"] = f"/{storage['app_name']}"
    return storage


def submit_by_hand(cluster: BenchCluster, entrypoint: str, runtime_env: dict[str, Any]) -> float:
    """The raw Job SDK: submit, poll on the hook's schedule until terminal; seconds to SUCCEEDED."""
    started = time.monotonic()
    submission_id = cluster.client.sdk.submit_job(entrypoint=entrypoint, runtime_env=runtime_env)
    status = poll_job(cluster.client, submission_id, TERMINAL, Deadline(TIMEOUT_S)).status
    seconds = time.monotonic() - started
    if status != "SUCCEEDED":
        raise RuntimeError(f"{entrypoint!r} by hand ended {status}:\n{cluster.client.sdk.get_job_logs(submission_id)[-3000:]}")
    return seconds


def example_job() -> JobConfig:
    return next(j for j in load_team_stack(EXAMPLE_STACK).jobs if j.name == EXAMPLE_JOB)


def example_ours(cluster: BenchCluster) -> float:
    job = dataclasses.replace(example_job(), name=fresh_name("bench-example"))
    args = ray_job_args(job, dashboard_url=cluster.head.dashboard_url, serve_endpoint_base=None, auth_token=None,
                        team="bench")
    started = time.monotonic()
    cluster.run(args)
    return time.monotonic() - started


def example_by_hand(cluster: BenchCluster) -> float:
    job = example_job()
    return submit_by_hand(cluster, job.work.entrypoint, {**job.runtime_env, "working_dir": job.work.code.path})


def ours(cluster: BenchCluster, kind: str, settings: dict[str, Any]) -> float:
    args = cluster.job_args(kind, settings, serve_endpoint_base=f"http://127.0.0.1:{settings.get('http_port')}")
    started = time.monotonic()
    outs = cluster.run(args)
    seconds = time.monotonic() - started
    if kind == "serve":
        cluster.delete(outs)
    return seconds


def by_hand(cluster: BenchCluster, kind: str, settings: dict[str, Any]) -> float:
    job = cluster.demo_jobs[kind]
    merged = effective_settings(dataclasses.replace(job, settings={**job.settings, **settings}))
    seconds = submit_by_hand(cluster, f"python {kind}.py {shlex.quote(json.dumps(merged))}",
                             {**job.runtime_env, "working_dir": str(HANDWRITTEN), "py_modules": [str(JOBS_DIR)]})
    if kind == "serve":
        remove_serve_app(cluster.client, merged["app_name"], sys.executable)
    return seconds


def alternate(repeats: int, measure_ours: Callable[[], float], measure_hand: Callable[[], float]
              ) -> tuple[list[float], list[float]]:
    mine: list[float] = []
    hand: list[float] = []
    for repeat in range(repeats):
        turns = [(mine, measure_ours), (hand, measure_hand)]
        for samples, measure in turns if repeat % 2 == 0 else reversed(turns):
            samples.append(measure())
    return mine, hand


def run(cfg: BenchConfig, cluster: BenchCluster, model_name: str) -> list[Figure]:
    repeats = cfg.repeats[SECTION]
    figures = []
    for kind in KINDS:
        mine, hand = alternate(repeats, lambda k=kind: ours(cluster, k, settings_for(cluster, k, model_name)),
                               lambda k=kind: by_hand(cluster, k, settings_for(cluster, k, model_name)))
        figures.append(Figure(SECTION, f"{kind}: submit -> SUCCEEDED, hook + jobs.{kind} vs hand-written Ray",
                              "s", mine, hand, TARGET))
    mine, hand = alternate(repeats, lambda: example_ours(cluster), lambda: example_by_hand(cluster))
    figures.append(Figure(SECTION, f"example team's `{EXAMPLE_JOB}`: submit -> SUCCEEDED, hook vs raw Job SDK",
                          "s", mine, hand, TARGET))
    return figures
