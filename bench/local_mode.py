"""Local mode: wall time of the literal `make local` from a warm venv, and the peak PSS of its Ray cluster.

Ours: `make local ARGS='--state-dir <tmp> --storage-path <tmp>/storage --serve-port <free>'`
(`make run JOB=<job> ARGS=...` for a single job) with no cluster running, timed from
launch to make's exit, so make, interpreter start and imports, the head's start, every
job through the hook, the query to Serve and the summary all count, as they do for a
developer. The cluster stays up after make; meanwhile this process sums the PSS
(`memory_full_info().pss`) of every process in the cluster's session, found through
<tmp>/ray.json, every 0.5 s; the peak is the figure. Baseline for memory: a bare local
Ray head, idle.

Isolation: a developer's `make local` cluster (build/local, Serve on port 8000, models
under /tmp/ray-platform/demo-local) is never touched: tools.local's own options move the
state dir, storage and Serve port. Afterwards `make local-down ARGS='--state-dir <tmp>'`
stops the cluster, whatever make local did, and what is left of its session is killed.
"""
from __future__ import annotations

import os
import shlex
import shutil
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from bench.cluster import DEMO_STACK, PeakSampler, session_pss
from bench.config import BenchConfig
from bench.stats import Figure, Target
from tools.local import state_file
from tools.local_ray import LocalRay, free_port, session_processes, stop_head, temporary_head

ROOT = Path(__file__).resolve().parents[1]
GIB = 2**30
PEAK_TARGET = Target("<", 4.0, on_ratio=False)
IDLE_SETTLE_S = 5.0
IDLE_SAMPLES = 5
# A `make bench` parent hands its command-line variables (ARGS, JOB, ...) to every make
# below it through these; the measured make must see only its own.
PARENT_MAKE_VARS = ("MAKEFLAGS", "MFLAGS", "MAKELEVEL", "MAKEOVERRIDES")


def idle_head_pss() -> float:
    """GiB of PSS of a bare local Ray head once it has settled: the memory floor of any local cluster."""
    with temporary_head("rpb-idle-") as head:
        time.sleep(IDLE_SETTLE_S)
        samples = []
        for _ in range(IDLE_SAMPLES):
            samples.append(session_pss(head.pid) / GIB)
            time.sleep(0.5)
        return statistics.median(samples)


def make_command(target: str, job: str | None = None, **options: str | Path | int) -> list[str]:
    """`make <target> [JOB=<job>] ARGS='--opt value ...'`: keyword `state_dir` becomes `--state-dir`."""
    args = shlex.join(item for name, value in options.items() for item in (f"--{name.replace('_', '-')}", str(value)))
    return ["make", target, *([f"JOB={job}"] if job is not None else []), f"ARGS={args}"]


def up_command(job: str | None, state_dir: Path, serve_port: int) -> list[str]:
    """The literal command a developer types for a second, isolated cluster."""
    return make_command("local" if job is None else "run", job, state_dir=state_dir,
                        storage_path=state_dir / "storage", serve_port=serve_port)


def make(command: list[str], log_path: Path) -> int:
    with log_path.open("a") as log:
        log.write(f"$ {shlex.join(command)}\n")
        log.flush()
        env = {k: v for k, v in os.environ.items() if k not in PARENT_MAKE_VARS}
        return subprocess.run(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                              env=env, check=False).returncode


def recorded_head(state_dir: Path) -> LocalRay | None:
    """The cluster `make local` recorded for this state dir, once it has."""
    return LocalRay.load(state_file(state_dir))


def tear_down(state_dir: Path, log_path: Path) -> None:
    """`make local-down` for the state dir, then no process of its cluster left, then no files."""
    head = recorded_head(state_dir)
    try:
        make(make_command("local-down", state_dir=state_dir), log_path)
    finally:
        if head is not None and (left := session_processes(head.pid)):
            # `make local-down` stops the whole session itself: anything left is a bug there.
            stop_head(head)
            with log_path.open("a") as log:
                log.write(f"bench: stopped {len(left)} process(es) left in the cluster's session {head.pid}\n")
        shutil.rmtree(state_dir, ignore_errors=True)


def measure_up(job: str | None, log_path: Path) -> tuple[float, float, int, int]:
    """(seconds until make exits, peak GiB of PSS, PSS samples, make's exit code) of one isolated `make local`."""
    state_dir = Path(tempfile.mkdtemp(prefix="rpb-local-", dir="/tmp"))
    log_path.write_text("")
    try:
        with PeakSampler(lambda: getattr(recorded_head(state_dir), "pid", None)) as sampler:
            started = time.monotonic()
            exit_code = make(up_command(job, state_dir, free_port()), log_path)
            seconds = time.monotonic() - started
    finally:
        tear_down(state_dir, log_path)
    if not sampler.samples:
        raise RuntimeError(f"make exited {exit_code} before its cluster was up; see {log_path}")
    return seconds, sampler.peak / GIB, sampler.samples, exit_code


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
    command = f"make run JOB={cfg.local_job}" if cfg.local_job else "make local"
    status = f"; {failures} run(s) exited nonzero, see {log_dir}/local-mode-*.log" if failures else ""
    return [
        Figure("local-mode", "wall time of `make local`", "s", walls,
               note=f"{scope}: literal `{command} ARGS=...` from launch to make's exit, fresh cluster, "
                    f"warm venv{status}"),
        Figure("local-mode", "peak PSS of the cluster", "GiB", peaks, [idle], PEAK_TARGET,
               f"{samples} samples; baseline: a bare local Ray head, idle"),
    ]
