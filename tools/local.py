"""Local mode: the platform's jobs end to end on an embedded Ray cluster.

    python -m tools.local up [--stack demo-local] [OPTIONS]        # `make local [ARGS='OPTIONS']`
    python -m tools.local run <job> [--stack demo-local] [OPTIONS] # `make run JOB=<job> [ARGS='OPTIONS']`
    python -m tools.local down [--state-dir DIR]                   # `make local-down [ARGS='--state-dir DIR']`
    python -m tools.local env [--state-dir DIR]                    # export RAY_ADDRESS=... for the ray CLI
    python -m tools.local status [--state-dir DIR]

`up` starts (or reuses) a single-node Ray head on loopback, then runs the `jobs:` of a
team stack in order through the same post-deploy hook code `pulumi up` runs
(components.hooks.ray_job.RayJobProvider.create), with live progress, sends a real query to
the Serve endpoint, and prints a summary. Re-running is safe: a job whose spec and code
did not change is adopted, not resubmitted. The cluster stays up for exploring
(`make jobs`, the dashboard URL printed at the end).

OPTIONS run a second cluster beside a developer's without sharing anything with it:
--state-dir (where the cluster is recorded), --storage-path (checkpoints, models,
predictions) and --serve-port (0: a free port the head picked when it started).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import shutil
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from components.clients.ray_dashboard import JobClient
from components.clients.ray_jobs import RayJobArgs, ray_job_args
from components.config.model import ConfigError, JobConfig, TeamStackConfig
from components.config.stack_files import parse_stack_file, platform_lookup_from_dir, stack_file
from components.constants import METADATA_JOB_NAME
from components.hooks.ray_job import RayJobProvider, props_of
from tools.local_ray import LocalRay, start_head, stop_head
from tools.monitor import format_table

ROOT = Path(__file__).resolve().parents[1]
# Not tools.render's: importing the renderer would load the Pulumi SDK on every `make local`.
STACKS_DIR = ROOT / "stacks"
DEFAULT_STATE_DIR = ROOT / "build" / "local"
# Ray's unix socket paths must stay under 108 bytes; a deep state dir falls back to /tmp.
MAX_TEMP_DIR_LEN = 48
MAX_PORT = 65535
POLL_S = 2.0


@dataclass
class Outcome:
    job: str
    kind: str
    status: str
    seconds: float
    metric: str
    endpoint: str


def state_file(state_dir: Path) -> Path:
    return state_dir / "ray.json"


def temp_dir(state_dir: Path) -> Path:
    preferred = state_dir / "ray"
    if len(str(preferred)) <= MAX_TEMP_DIR_LEN:
        return preferred
    # A digest, not hash(): that is salted per process, and two state dirs must not share one.
    return Path("/tmp") / f"ray-platform-{hashlib.sha256(str(state_dir).encode()).hexdigest()[:8]}"


def ensure_head(state_dir: Path, log: Callable[[str], None]) -> LocalRay:
    head = LocalRay.load(state_file(state_dir))
    if head is not None and head.alive():
        log(f"reusing the local Ray cluster at {head.dashboard_url} (pid {head.pid})")
        return head
    log("starting a local Ray head on loopback (2 CPUs, usage stats off)...")
    head = start_head(temp_dir(state_dir), num_cpus=2, log_path=state_dir / "ray-start.log")
    head.save(state_file(state_dir))
    log(f"Ray is up: dashboard {head.dashboard_url}, GCS {head.gcs_address}")
    return head


def with_overrides(cfg: TeamStackConfig, storage_path: str | None = None,
                   serve_port: int | None = None) -> TeamStackConfig:
    """`cfg` with its jobs' storage and Serve port moved, so a second cluster shares neither with the first.

    Only settings a job already has are replaced: the job configs reject keys they do not
    know, and a job without storage (core, tune) has nothing to move.
    """
    moved: dict[str, Any] = {}
    if storage_path is not None:
        moved |= {"storage_path": storage_path, "output_path": f"{storage_path}/predictions"}
    if serve_port is not None:
        moved["http_port"] = serve_port
    jobs = tuple(dataclasses.replace(job, settings={k: moved.get(k, v) for k, v in job.settings.items()})
                 for job in cfg.jobs)
    return dataclasses.replace(cfg, jobs=jobs)


def load_team_stack(stack: str, config: Path | None = None) -> TeamStackConfig:
    """The team stack `stack` of stacks/, or the stack file `config` (a team's, wherever it lives:
    its code paths are relative to it, its platform stack is looked up beside it, then in stacks/)."""
    path = config or stack_file(STACKS_DIR, stack)
    if not path.is_file():
        raise ConfigError(stack, [f"no stack file {path}"])
    beside, ours = platform_lookup_from_dir(path.parent), platform_lookup_from_dir(STACKS_DIR)
    cfg = parse_stack_file(path, lambda name: beside(name) or ours(name))
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


def run_job(args: RayJobArgs[Any], client: JobClient, log: Callable[[str], None]) -> dict[str, Any]:
    """The hook's create, exactly as the Pulumi engine would call it, with progress alongside."""
    done = threading.Event()
    watcher = threading.Thread(target=follow, args=(client, args.job_name, done, log), daemon=True)
    watcher.start()
    try:
        return dict(RayJobProvider().create(props_of(args)).outs)
    finally:
        done.set()
        watcher.join(timeout=POLL_S * 2)


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
    return format_table(headers, rows, rule=True)


def make_args(state_dir: Path) -> str:
    """What to add to a `make` hint so it reaches this cluster and not the default one."""
    return "" if state_dir == DEFAULT_STATE_DIR else f" ARGS='--state-dir {state_dir}'"


def up(stack: str, only: str | None = None, log: Callable[[str], None] = print, *,
       state_dir: Path = DEFAULT_STATE_DIR, storage_path: str | None = None, serve_port: int | None = None,
       config: Path | None = None) -> int:
    """`serve_port` 0 means the head's own free port (LocalRay.serve_port); `config` a stack file by path."""
    cfg = load_team_stack(stack, config)
    jobs = [j for j in cfg.jobs if only in (None, j.name)]
    if not jobs:
        raise ConfigError(stack, [f"no job named {only!r}; jobs: {', '.join(j.name for j in cfg.jobs)}"])
    head = ensure_head(state_dir, log)
    if serve_port == 0:
        if not head.serve_port:
            problem = (f"--serve-port 0: the running cluster's {state_file(state_dir)} records no Serve port; "
                       "pass a port, or stop the cluster first")
            raise ConfigError(stack, [problem])
        serve_port = head.serve_port
        log(f"Serve port: {serve_port} (the head's)")
    by_name = {j.name: j for j in with_overrides(cfg, storage_path, serve_port).jobs}
    outcomes = run_jobs(cfg, [by_name[j.name] for j in jobs], head, log)
    log("\n" + summary_table(outcomes))
    log(f"\nThe cluster stays up: dashboard {head.dashboard_url} | `make jobs` lists jobs | "
        f"`make local-down{make_args(state_dir)}` stops it.")
    return 0 if all(o.status == "SUCCEEDED" for o in outcomes) else 1


def run_jobs(cfg: TeamStackConfig, jobs: list[JobConfig], head: LocalRay,
             log: Callable[[str], None] = print) -> list[Outcome]:
    """Run jobs in order on `head`; a job whose dependency did not succeed is skipped."""
    client = JobClient(head.dashboard_url)
    outcomes: list[Outcome] = []
    failed: set[str] = set()
    for job in jobs:
        outcome = run_one(cfg, job, head, client, failed, log)
        outcomes.append(outcome)
        if outcome.status != "SUCCEEDED":
            failed.add(job.name)
    return outcomes


def run_one(cfg: TeamStackConfig, job: JobConfig, head: LocalRay, client: JobClient, failed: set[str],
            log: Callable[[str], None]) -> Outcome:
    blocked = [d for d in job.depends_on if d in failed]
    if blocked:
        log(f"skipping {job.name}: it depends on {', '.join(blocked)}, which did not succeed")
        return Outcome(job.name, job.kind, "SKIPPED", 0.0, "", "")
    serve_base = f"http://127.0.0.1:{job.settings.get('http_port', 8000)}"
    args = ray_job_args(job, dashboard_url=head.dashboard_url, serve_endpoint_base=serve_base,
                        auth_token=None, team=cfg.team.name)
    log(f"\n==> {job.name} ({job.kind}) on {head.dashboard_url}")
    if job.work.env:
        # On a cluster they come from Secret references on the Ray pods; the embedded head has none.
        log(f"  note: {', '.join(e.var for e in job.work.env)} (env from secrets) are not set in local mode")
    started = time.monotonic()
    try:
        outs = run_job(args, client, log)
    except Exception as exc:  # noqa: BLE001 - the hook's message (with the log tail) is the report
        log(f"{job.name} failed:\n{exc}")
        return Outcome(job.name, job.kind, "FAILED", time.monotonic() - started, "", "")
    metric = key_metric(outs.get("result") or {})
    endpoint = outs.get("endpoint") or ""
    # The built-in serve job's API is known: ask it for real predictions. A team's app reports its result.
    if job.kind == "serve" and not job.work.custom and endpoint:
        try:
            metric = query_serve(endpoint, log)
        except requests.RequestException as exc:
            log(f"{job.name}: the Serve endpoint did not answer: {exc}")
            return Outcome(job.name, job.kind, "UNREACHABLE", time.monotonic() - started, "", endpoint)
    log(f"{job.name}: {outs.get('status')} ({outs.get('submission_id')}) {metric}")
    return Outcome(job.name, job.kind, str(outs.get("status")), time.monotonic() - started, metric, endpoint)


def down(log: Callable[[str], None] = print, *, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    head = LocalRay.load(state_file(state_dir))
    if head is None:
        log(f"no local Ray cluster recorded in {state_dir}; nothing to stop")
        return 0
    stop_head(head)
    state_file(state_dir).unlink(missing_ok=True)
    shutil.rmtree(head.temp_dir, ignore_errors=True)
    log(f"stopped the local Ray cluster (pid {head.pid})")
    return 0


def env(log: Callable[[str], None] = print, *, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    """Shell exports so the plain `ray` CLI and the Job SDK talk to the local cluster."""
    head = LocalRay.load(state_file(state_dir))
    if head is None or not head.alive():
        print(f"no local Ray cluster is running (`make local{make_args(state_dir)}` starts one)", file=sys.stderr)
        return 1
    log(f"export RAY_ADDRESS={head.dashboard_url}\nexport RAY_DASHBOARD_URL={head.dashboard_url}")
    return 0


def status(log: Callable[[str], None] = print, *, state_dir: Path = DEFAULT_STATE_DIR) -> int:
    head = LocalRay.load(state_file(state_dir))
    if head is None or not head.alive():
        log(f"no local Ray cluster is running (`make local{make_args(state_dir)}` starts one)")
        return 1
    log(f"local Ray cluster: dashboard {head.dashboard_url}, GCS {head.gcs_address}, pid {head.pid}")
    return 0


def directory(value: str) -> Path:
    """argparse type: an absolute directory path (job drivers run in the Ray temp dir, so relative ones would move)."""
    if not value.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    path = Path(value).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise argparse.ArgumentTypeError(f"{path} exists and is not a directory")
    return path


def storage(value: str) -> str:
    """argparse type: a local directory; the jobs' storage is a filesystem path on this machine."""
    if "://" in value:
        raise argparse.ArgumentTypeError(f"{value!r}: local mode stores on this machine; give a directory, not a URI")
    return str(directory(value))


def stack_path(value: str) -> Path:
    """argparse type: an existing stack file."""
    path = Path(value).expanduser().resolve()
    if not path.is_file():
        raise argparse.ArgumentTypeError(f"{value!r}: no such stack file")
    return path


def port(value: str) -> int:
    """argparse type: a TCP port, or 0 for the free one the head picked when it started."""
    try:
        number = int(value)
    except ValueError:
        number = -1
    if not 0 <= number <= MAX_PORT:
        raise argparse.ArgumentTypeError(f"{value!r} is not a port: give 1-{MAX_PORT}, or 0 for a free one")
    return number


def parser() -> argparse.ArgumentParser:
    state = argparse.ArgumentParser(add_help=False)
    state.add_argument("--state-dir", type=directory, default=DEFAULT_STATE_DIR, metavar="DIR",
                       help="where the cluster is recorded: ray.json, ray-start.log and the Ray temp dir "
                            f"(under /tmp when DIR/ray would exceed {MAX_TEMP_DIR_LEN} characters: Ray's unix "
                            "sockets must fit 108 bytes); a second cluster needs its own "
                            "(default: build/local)")
    jobs = argparse.ArgumentParser(add_help=False)
    jobs.add_argument("--stack", default="demo-local", help="the team stack whose jobs run (default: demo-local)")
    jobs.add_argument("--config", type=stack_path, metavar="FILE",
                      help="a team stack file by path instead of --stack (a team's own, e.g. "
                           "examples/embeddings/Pulumi.embeddings-local.yaml); its code paths are relative to it")
    jobs.add_argument("--storage-path", type=storage, metavar="PATH",
                      help="directory for every job's storage_path (checkpoints, models); a job's output_path "
                           "becomes PATH/predictions (default: the stack's, /tmp/ray-platform/demo-local)")
    jobs.add_argument("--serve-port", type=port, metavar="N",
                      help="HTTP port of the serve jobs, 0 for a free port the head picked when it started "
                           "(default: the stack's http_port, 8000 for demo-local)")
    cli = argparse.ArgumentParser(prog="python -m tools.local", description=__doc__.split("\n\n")[0])
    sub = cli.add_subparsers(dest="command", required=True)
    sub.add_parser("up", parents=[state, jobs], help="start the local cluster and run a team stack's jobs")
    run_cmd = sub.add_parser("run", parents=[state, jobs], help="run one job of a team stack on the local cluster")
    run_cmd.add_argument("job")
    sub.add_parser("down", parents=[state], help="stop the local cluster")
    sub.add_parser("env", parents=[state], help="print RAY_ADDRESS exports for the ray CLI")
    sub.add_parser("status", parents=[state], help="is the local cluster up?")
    return cli


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.command in ("up", "run"):
            return up(args.stack, getattr(args, "job", None), state_dir=args.state_dir,
                      storage_path=args.storage_path, serve_port=args.serve_port, config=args.config)
        return {"down": down, "env": env, "status": status}[args.command](state_dir=args.state_dir)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
