"""Local mode: wall time of `make local` from a warm venv, and the peak PSS of its Ray cluster.

Ours: a child `python -m bench.local_mode ...` does what `tools.local up` (`make local`)
does with no cluster running: load the demo-local stack, start a head, `run_jobs`
(every job through the hook, then a real query to Serve), print the summary; timed
from the child's start to the end of the jobs, so interpreter start and imports count
as they do for `make local`. Meanwhile this process sums the PSS
(`memory_full_info().pss`) of every process in the child cluster's session every
0.5 s; the peak is the figure. Baseline for memory: a bare local Ray head, idle.

Isolation: a developer's `make local` cluster (its state file, Serve on port 8000, models
under /tmp/ray-platform/demo-local) is never touched: the child's head lives in a fresh
temporary directory, and the demo jobs' storage paths and Serve port (the head's own,
free one) are rewritten (`isolate`); the child stops its head afterwards.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.cluster import DEMO_STACK, PeakSampler, session_pss
from bench.config import BenchConfig
from bench.stats import Figure, Target
from components.config import TeamStackConfig
from tools.local import load_team_stack, run_jobs, summary_table
from tools.local_ray import start_head, stop_head

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
PEAK_TARGET = Target("<", 4.0, on_ratio=False)
MARKER = "bench-local-mode:"
IDLE_SETTLE_S = 5.0
IDLE_SAMPLES = 5


def idle_head_pss() -> float:
    """GiB of PSS of a bare local Ray head once it has settled: the memory floor of any local cluster."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rpb-idle-", dir="/tmp"))
    head = start_head(temp_dir / "ray", num_cpus=2)
    try:
        time.sleep(IDLE_SETTLE_S)
        samples = []
        for _ in range(IDLE_SAMPLES):
            samples.append(session_pss(head.pid) / GIB)
            time.sleep(0.5)
        return statistics.median(samples)
    finally:
        stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)


def measure_up(job: str | None, log_path: Path) -> tuple[float, float, int, int]:
    """(seconds until the jobs are done, peak GiB of PSS, PSS samples, exit code) of one isolated `make local`."""
    state_dir = Path(tempfile.mkdtemp(prefix="rpb-local-", dir="/tmp"))
    command = [sys.executable, "-m", "bench.local_mode", "--state-dir", str(state_dir),
               "--storage-path", str(state_dir / "storage")]
    if job is not None:
        command += ["--job", job]

    def session() -> int | None:
        # Only the pid: the child may run a newer tools.local_ray whose state file has more fields.
        try:
            return int(json.loads((state_dir / "ray.json").read_text())["pid"])
        except (OSError, ValueError, KeyError):
            return None

    try:
        with log_path.open("w") as log, PeakSampler(session) as sampler:
            started = time.monotonic()
            child = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, text=True)
            assert child.stdout is not None
            done: dict[str, Any] | None = None
            for line in child.stdout:
                log.write(line)
                if line.startswith(MARKER) and done is None:
                    seconds = time.monotonic() - started
                    done = json.loads(line[len(MARKER):])
                    sampler.close()
            child.wait()
        if done is None:
            raise RuntimeError(f"local mode ended (exit {child.returncode}) before its jobs finished; see {log_path}")
        return seconds, sampler.peak / GIB, sampler.samples, int(done["exit_code"])
    finally:
        shutil.rmtree(state_dir, ignore_errors=True)


def run(cfg: BenchConfig, log_dir: Path) -> list[Figure]:
    idle = idle_head_pss()
    walls, peaks, samples, failures = [], [], 0, 0
    for repeat in range(cfg.repeats["local-mode"]):
        seconds, peak, taken, exit_code = measure_up(cfg.local_job, log_dir / f"local-mode-{repeat}.log")
        walls.append(seconds)
        peaks.append(peak)
        samples += taken
        failures += exit_code != 0
    scope = f"job {cfg.local_job} only (--quick)" if cfg.local_job else f"every job of {DEMO_STACK}"
    status = f"; {failures} run(s) had a failed job, see {log_dir}/local-mode-*.log" if failures else ""
    return [
        Figure("local-mode", "wall time of `make local`", "s", walls,
               note=f"{scope}, fresh cluster, warm venv{status}"),
        Figure("local-mode", "peak PSS of the cluster", "GiB", peaks, [idle], PEAK_TARGET,
               f"{samples} samples; baseline: a bare local Ray head, idle"),
    ]


def isolate(cfg: TeamStackConfig, storage_path: str, serve_port: int) -> TeamStackConfig:
    """The demo stack with every job's storage and the Serve port moved off the developer's."""
    moved = {"storage_path": storage_path, "output_path": f"{storage_path}/predictions", "http_port": serve_port}
    jobs = tuple(dataclasses.replace(job, settings={k: moved.get(k, v) for k, v in job.settings.items()})
                 for job in cfg.jobs)
    return dataclasses.replace(cfg, jobs=jobs)


def main() -> int:
    """Child: what `tools.local up` does for a fresh state dir, on an isolated demo stack; then stops the head.

    Prints MARKER when the jobs are done, before the head is stopped.
    """
    parser = argparse.ArgumentParser(prog="python -m bench.local_mode")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--storage-path", required=True)
    parser.add_argument("--job")
    args = parser.parse_args()
    cfg = load_team_stack(DEMO_STACK)
    head = start_head(args.state_dir / "ray", num_cpus=2, log_path=args.state_dir / "ray-start.log")
    try:
        # The parent finds the cluster's processes through this file.
        head.save(args.state_dir / "ray.json")
        cfg = isolate(cfg, args.storage_path, head.serve_port)
        outcomes = run_jobs(cfg, [job for job in cfg.jobs if args.job in (None, job.name)], head)
        print(summary_table(outcomes))
        exit_code = 0 if all(o.status == "SUCCEEDED" for o in outcomes) else 1
        print(f"{MARKER} {json.dumps({'exit_code': exit_code})}", flush=True)
    finally:
        stop_head(head)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())
