"""Local mode: the platform's jobs end to end on an embedded Ray cluster.

    python -m tools.local up [--stack demo-local]   # `make local`
    python -m tools.local down                      # `make local-down`
    python -m tools.local run <job> [--stack demo-local]  # `make run JOB=<job>`: one job
    python -m tools.local env                       # export RAY_ADDRESS=... for the ray CLI
    python -m tools.local status

`up` starts (or reuses) a single-node Ray head on loopback, then runs the `jobs:` of a
team stack in order through the same post-deploy hook code `pulumi up` runs
(components.ray_job.RayJobProvider.create), with live progress, sends a real query to
the Serve endpoint, and prints a summary. Re-running is safe: a job whose spec and code
did not change is adopted, not resubmitted. The cluster stays up for exploring
(`make jobs`, the dashboard URL printed at the end).
"""
from __future__ import annotations

import argparse
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from components.config import ConfigError, JobConfig, TeamStackConfig, parse_stack_file, platform_lookup_from_dir
from components.post_deploy import jobs_code_hash, ray_job_args
from components.ray_job import INPUT_FIELDS, METADATA_JOB_NAME, JobClient, RayJobArgs, RayJobProvider
from tools.local_ray import LocalRay, start_head, stop_head

ROOT = Path(__file__).resolve().parents[1]
STATE_DIR = ROOT / "build" / "local"
STATE_FILE = STATE_DIR / "ray.json"
# Ray's unix socket paths must stay under 108 bytes; a deep checkout falls back to /tmp.
MAX_TEMP_DIR_LEN = 48
POLL_S = 2.0


@dataclass
class Outcome:
    job: str
    kind: str
    status: str
    seconds: float
    metric: str
    endpoint: str


def temp_dir() -> Path:
    preferred = STATE_DIR / "ray"
    if len(str(preferred)) <= MAX_TEMP_DIR_LEN:
        return preferred
    return Path("/tmp") / f"ray-platform-{abs(hash(str(ROOT))) % 10**8}"


def ensure_head(log: Callable[[str], None]) -> LocalRay:
    head = LocalRay.load(STATE_FILE)
    if head is not None and head.alive():
        log(f"reusing the local Ray cluster at {head.dashboard_url} (pid {head.pid})")
        return head
    log("starting a local Ray head on loopback (2 CPUs, usage stats off)...")
    head = start_head(temp_dir(), num_cpus=2, log_path=STATE_DIR / "ray-start.log")
    head.save(STATE_FILE)
    log(f"Ray is up: dashboard {head.dashboard_url}, GCS {head.gcs_address}")
    return head


def load_team_stack(stack: str) -> TeamStackConfig:
    path = ROOT / "stacks" / f"Pulumi.{stack}.yaml"
    cfg = parse_stack_file(path, platform_lookup_from_dir(ROOT / "stacks"))
    if not isinstance(cfg, TeamStackConfig) or not cfg.jobs:
        raise ConfigError(stack, [f"{path.name} is not a team stack with jobs"])
    return cfg


def key_metric(result: dict[str, Any]) -> str:
    for key in ("accuracy", "best_accuracy", "rows", "tasks"):
        if key in result:
            value = result[key]
            return f"{key}={value:.3f}" if isinstance(value, float) else f"{key}={value}"
    return ", ".join(f"{k}={v}" for k, v in list(result.items())[:2])


def follow(client: JobClient, job_name: str, done: threading.Event, log: Callable[[str], None]) -> None:
    """Print the job's status changes and new log lines while the hook waits for it."""
    status, printed, submission = None, 0, None
    while not done.wait(POLL_S):
        try:
            if submission is None:
                jobs = [j for j in client.sdk.list_jobs() if (j.metadata or {}).get(METADATA_JOB_NAME) == job_name]
                if not jobs:
                    continue
                submission = max(jobs, key=lambda j: j.start_time or 0).submission_id
            info = client.info(submission)
            if info is not None and info.status != status:
                status = info.status
                log(f"  [{job_name}] {status}")
            lines = client.logs(submission).splitlines()
        except Exception:  # noqa: BLE001 - progress display only; the hook reports real errors
            continue
        for line in lines[printed:]:
            log(f"  [{job_name}] | {line}")
        printed = len(lines)


def run_job(args: RayJobArgs, client: JobClient, log: Callable[[str], None]) -> dict[str, Any]:
    """The hook's create, exactly as the Pulumi engine would call it, with progress alongside."""
    props = {name: getattr(args, name) for name in INPUT_FIELDS}
    done = threading.Event()
    watcher = threading.Thread(target=follow, args=(client, args.job_name, done, log), daemon=True)
    watcher.start()
    result: Future[dict[str, Any]] = Future()
    try:
        result.set_result(RayJobProvider().create(props).outs)
    except Exception as exc:  # noqa: BLE001 - reported in the summary, the run goes on to show it
        result.set_exception(exc)
    finally:
        done.set()
        watcher.join(timeout=POLL_S * 2)
    return result.result()


def query_serve(endpoint: str, log: Callable[[str], None]) -> str:
    """A real request to the deployed model: a few held-out digits, compared with their labels."""
    from sklearn.datasets import load_digits

    digits = load_digits()
    rows, labels = digits.data[-8:].tolist(), digits.target[-8:].tolist()
    resp = requests.post(f"{endpoint}/predict", json={"instances": rows}, timeout=30)
    resp.raise_for_status()
    predictions = resp.json()["predictions"]
    correct = sum(int(p == y) for p, y in zip(predictions, labels))
    log(f"POST {endpoint}/predict -> {predictions} (labels {labels}): {correct}/{len(labels)} correct")
    bad = requests.post(f"{endpoint}/predict", json={"instances": [[1, 2, 3]]}, timeout=30)
    log(f"malformed input -> HTTP {bad.status_code}: {bad.text[:120]}")
    return f"{correct}/{len(labels)} correct"


def summary_table(outcomes: list[Outcome]) -> str:
    headers = ("job", "kind", "status", "duration", "key metric", "endpoint")
    rows = [(o.job, o.kind, o.status, f"{o.seconds:.1f}s", o.metric, o.endpoint) for o in outcomes]
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    line = "  ".join("{:<%d}" % w for w in widths)
    return "\n".join([line.format(*headers), line.format(*("-" * w for w in widths)),
                      *(line.format(*r) for r in rows)])


def up(stack: str, only: str | None = None, log: Callable[[str], None] = print) -> int:
    cfg = load_team_stack(stack)
    jobs = [j for j in cfg.jobs if only in (None, j.name)]
    if not jobs:
        raise ConfigError(stack, [f"no job named {only!r}; jobs: {', '.join(j.name for j in cfg.jobs)}"])
    head = ensure_head(log)
    outcomes = run_jobs(cfg, jobs, head, log)
    log("\n" + summary_table(outcomes))
    log(f"\nThe cluster stays up: dashboard {head.dashboard_url} | `make jobs` lists jobs | "
        f"`make local-down` stops it.")
    return 0 if all(o.status == "SUCCEEDED" for o in outcomes) else 1


def run_jobs(cfg: TeamStackConfig, jobs: list[JobConfig], head: LocalRay,
             log: Callable[[str], None] = print) -> list[Outcome]:
    """Run jobs in order on `head`; a job whose dependency did not succeed is skipped."""
    client = JobClient(head.dashboard_url)
    code_hash = jobs_code_hash()
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for job in jobs:
        outcome = run_one(cfg, job, head, client, code_hash, failed, log)
        outcomes.append(outcome)
        if outcome.status != "SUCCEEDED":
            failed.add(job.name)
    return outcomes


def run_one(cfg: TeamStackConfig, job: JobConfig, head: LocalRay, client: JobClient, code_hash: str,
            failed: set[str], log: Callable[[str], None]) -> Outcome:
    blocked = [d for d in job.depends_on if d in failed]
    if blocked:
        log(f"skipping {job.name}: it depends on {', '.join(blocked)}, which did not succeed")
        return Outcome(job.name, job.kind, "SKIPPED", 0.0, "", "")
    serve_base = f"http://127.0.0.1:{job.settings.get('http_port', 8000)}"
    args = ray_job_args(job, dashboard_url=head.dashboard_url, serve_endpoint_base=serve_base,
                        auth_token=None, code_hash=code_hash, team=cfg.team.name)
    log(f"\n==> {job.name} ({job.kind}) on {head.dashboard_url}")
    started = time.monotonic()
    try:
        outs = run_job(args, client, log)
    except Exception as exc:  # noqa: BLE001 - the hook's message (with the log tail) is the report
        log(f"{job.name} failed:\n{exc}")
        return Outcome(job.name, job.kind, "FAILED", time.monotonic() - started, "", "")
    metric = key_metric(outs.get("result") or {})
    endpoint = outs.get("endpoint") or ""
    if job.kind == "serve" and endpoint:
        try:
            metric = query_serve(endpoint, log)
        except requests.RequestException as exc:
            log(f"{job.name}: the Serve endpoint did not answer: {exc}")
            return Outcome(job.name, job.kind, "UNREACHABLE", time.monotonic() - started, "", endpoint)
    log(f"{job.name}: {outs.get('status')} ({outs.get('submission_id')}) {metric}")
    return Outcome(job.name, job.kind, str(outs.get("status")), time.monotonic() - started, metric, endpoint)


def down(log: Callable[[str], None] = print) -> int:
    head = LocalRay.load(STATE_FILE)
    if head is None:
        log("no local Ray cluster recorded; nothing to stop")
        return 0
    stop_head(head)
    STATE_FILE.unlink(missing_ok=True)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    log(f"stopped the local Ray cluster (pid {head.pid})")
    return 0


def env(log: Callable[[str], None] = print) -> int:
    """Shell exports so the plain `ray` CLI and the Job SDK talk to the local cluster."""
    head = LocalRay.load(STATE_FILE)
    if head is None or not head.alive():
        print("no local Ray cluster is running (`make local` starts one)", file=sys.stderr)
        return 1
    log(f"export RAY_ADDRESS={head.dashboard_url}\nexport RAY_DASHBOARD_URL={head.dashboard_url}")
    return 0


def status(log: Callable[[str], None] = print) -> int:
    head = LocalRay.load(STATE_FILE)
    if head is None or not head.alive():
        log("no local Ray cluster is running (`make local` starts one)")
        return 1
    log(f"local Ray cluster: dashboard {head.dashboard_url}, GCS {head.gcs_address}, pid {head.pid}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    up_cmd = sub.add_parser("up", help="start the local cluster and run a team stack's jobs")
    up_cmd.add_argument("--stack", default="demo-local")
    run_cmd = sub.add_parser("run", help="run one job of a team stack on the local cluster")
    run_cmd.add_argument("job")
    run_cmd.add_argument("--stack", default="demo-local")
    sub.add_parser("down", help="stop the local cluster")
    sub.add_parser("env", help="print RAY_ADDRESS exports for the ray CLI")
    sub.add_parser("status", help="is the local cluster up?")
    args = parser.parse_args(argv)
    try:
        if args.command in ("up", "run"):
            return up(args.stack, getattr(args, "job", None))
        return {"down": down, "env": env, "status": status}[args.command]()
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
