"""The bench's own Ray head, demo jobs run through the post-deploy hook, and PSS sampling.

One head serves the hook, train, infer and serve sections: started on free ports in a
temporary directory (never `ray stop`, never build/local), stopped by pid at the end.
Jobs are the demo-local stack's, with storage redirected into the bench's directory
and fresh job names, so the hook never adopts an earlier submission.
"""
from __future__ import annotations

import dataclasses
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

import psutil

from components.clients.ray_dashboard import JobClient
from components.clients.ray_jobs import RayJobArgs, ray_job_args
from components.config.model import JobConfig
# The one Pulumi import of the bench: the hook section measures the dynamic provider itself.
from components.hooks.ray_job import RayJobProvider, props_of
from tools.local import load_team_stack
from tools.local_ray import LocalRay, session_processes, start_head, stop_head

DEMO_STACK = "demo-local"
SAMPLE_INTERVAL_S = 0.5


def fresh_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


class BenchCluster:
    """A throwaway local Ray head plus a storage directory for checkpoints and outputs."""

    def __init__(self) -> None:
        # Short path: Ray's unix sockets live under the temp dir (108-byte limit).
        self.work_dir = Path(tempfile.mkdtemp(prefix="rpb-", dir="/tmp"))
        self.storage_path = str(self.work_dir / "storage")
        self.head: LocalRay = start_head(self.work_dir / "ray", num_cpus=2)
        self.client = JobClient(self.head.dashboard_url)
        self.demo_jobs: dict[str, JobConfig] = {job.kind: job for job in load_team_stack(DEMO_STACK).jobs}

    def close(self) -> None:
        stop_head(self.head)
        shutil.rmtree(self.work_dir, ignore_errors=True)

    def job_args(self, kind: str, settings: dict[str, Any], runtime_env: dict[str, Any] | None = None,
                 serve_endpoint_base: str | None = None) -> RayJobArgs[Any]:
        """The demo stack's job of `kind` as the hook would get it, with settings merged over its own."""
        base = self.demo_jobs[kind]
        job = dataclasses.replace(base, name=fresh_name(f"bench-{kind}"), settings={**base.settings, **settings},
                                  runtime_env={**base.runtime_env, **(runtime_env or {})})
        return ray_job_args(job, dashboard_url=self.head.dashboard_url, serve_endpoint_base=serve_endpoint_base,
                            auth_token=None, team="bench")

    def run(self, args: RayJobArgs[Any]) -> dict[str, Any]:
        """RayJobProvider.create, exactly as `pulumi up` calls it; returns the outputs."""
        return dict(RayJobProvider().create(props_of(args)).outs)

    def delete(self, outs: dict[str, Any]) -> None:
        """RayJobProvider.delete: stops the job; for a serve job, removes its app (the last one shuts Serve down)."""
        RayJobProvider().delete(outs["submission_id"], outs)


def session_pss(session_id: int) -> int:
    """Bytes of PSS of every process in a Ray head's session (workers leave its process group, not its session)."""
    total = 0
    for proc in session_processes(session_id):
        try:
            total += proc.memory_full_info().pss
        except psutil.Error:
            continue  # exited since it was listed
    return total


class PeakSampler:
    """Samples a session's summed PSS every 0.5 s in a thread; `peak` is the largest sum seen.

    `session` is asked on every tick, because a cluster started by a child process is
    known only once it has written its state file.
    """

    def __init__(self, session: Callable[[], int | None]) -> None:
        self.session = session
        self.peak = 0
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Stop sampling (idempotent): the figure's window may end before the `with` block does."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            session_id = self.session()
            if session_id is not None:
                self.peak = max(self.peak, session_pss(session_id))
                self.samples += 1
            self._stop.wait(max(0.0, SAMPLE_INTERVAL_S - (time.monotonic() - started)))
