"""Hook overhead: submit -> RUNNING and submit -> SUCCEEDED through the post-deploy hook vs the raw Job SDK.

Ours: `RayJobProvider.create` with wait "running" / "succeeded" (dashboard check,
deterministic id lookup, submit, poll on the hook's schedule, log fetch), a fresh job
name per repeat so nothing is adopted. Baseline: `JobSubmissionClient.submit_job` and
`get_job_status` every JOB_POLL.first_s (the hook's first interval) on the same head.
The job sleeps briefly, so RUNNING lasts long enough for both pollers to see it.
"""
from __future__ import annotations

import statistics
import time
from collections.abc import Callable

from bench.cluster import BenchCluster, fresh_name
from bench.config import BenchConfig
from bench.stats import Figure, Target
from components.clients.polling import Deadline
from components.clients.ray_dashboard import JOB_POLL, TERMINAL, poll_job
from components.clients.ray_jobs import RayJobArgs

TARGET = Target("<=", 1.05)
# Each variant returns (seconds to RUNNING, seconds to SUCCEEDED); one of them may be None.
Variant = Callable[[], tuple[float | None, float | None]]


def raw_run(cluster: BenchCluster, entrypoint: str) -> tuple[float, float]:
    """Plain Job SDK: submit, then poll at the hook's first interval until RUNNING and SUCCEEDED."""
    sdk = cluster.client.sdk
    started = time.monotonic()
    submission_id = sdk.submit_job(entrypoint=entrypoint)
    running = None
    while True:
        status = str(sdk.get_job_status(submission_id).value)
        # A job that ends between two polls was RUNNING before it: the hook returns then too.
        if running is None and (status == "RUNNING" or status in TERMINAL):
            running = time.monotonic() - started
        if status in TERMINAL:
            if status != "SUCCEEDED":
                raise RuntimeError(f"baseline job {submission_id} ended {status}")
            return running, time.monotonic() - started
        time.sleep(JOB_POLL.first_s)


def hook_run(cluster: BenchCluster, entrypoint: str, wait: str) -> float:
    args = RayJobArgs(job_name=fresh_name("bench-hook"), kind="core", entrypoint=entrypoint, runtime_env={},
                      code_hash="bench", dashboard_url=cluster.head.dashboard_url, wait=wait, timeout_seconds=120)
    started = time.monotonic()
    outs = cluster.run(args)
    seconds = time.monotonic() - started
    # Untimed: let a job returned at RUNNING finish, so runs never overlap.
    poll_job(cluster.client, outs["submission_id"], TERMINAL, Deadline(60))
    return seconds


def run(cfg: BenchConfig, cluster: BenchCluster) -> list[Figure]:
    entrypoint = f"python -c 'import time; time.sleep({cfg.hook_job_seconds})'"
    raw_run(cluster, entrypoint)  # warm-up: the first job on a fresh head starts a worker pool
    variants: list[tuple[str, Variant]] = [
        ("raw", lambda: raw_run(cluster, entrypoint)),
        ("hook", lambda: (hook_run(cluster, entrypoint, "running"), None)),
        ("hook", lambda: (None, hook_run(cluster, entrypoint, "succeeded"))),
    ]
    samples: dict[tuple[str, str], list[float]] = {(side, state): [] for side in ("raw", "hook")
                                                   for state in ("running", "succeeded")}
    for repeat in range(cfg.repeats["hook"]):
        # Rotate the order, so drift in the machine's load does not favour one side.
        shift = repeat % len(variants)
        for side, variant in variants[shift:] + variants[:shift]:
            for state, seconds in zip(("running", "succeeded"), variant()):
                if seconds is not None:
                    samples[side, state].append(seconds)
    schedule = (f"hook polls every {JOB_POLL.first_s:g} s for {JOB_POLL.steady_s:g} s, then x{JOB_POLL.factor:g} up "
                f"to {JOB_POLL.max_s:g} s; baseline every {JOB_POLL.first_s:g} s")
    figures = []
    for state, label in (("running", "RUNNING"), ("succeeded", "SUCCEEDED")):
        ours, base = samples["hook", state], samples["raw", state]
        # Polling quantizes both sides to ~JOB_POLL.first_s, so the absolute cost is the clearer number.
        extra = f"{statistics.median(ours) - statistics.median(base):+.2f} s over the baseline"
        figures.append(Figure("hook", f"submit->{label}", "s", ours, base, TARGET,
                              f"{schedule}; {extra}" if state == "running" else extra))
    return figures
