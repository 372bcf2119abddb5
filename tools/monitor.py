"""Watch the jobs and Serve applications on a Ray dashboard.

    python -m tools.monitor [--address URL] [--token T] list
    python -m tools.monitor status ID | logs ID [--follow] | stop ID | wait ID [--timeout S] | serve

The address comes from --address, else $RAY_DASHBOARD_URL, else the local cluster
that `make local` recorded in build/local/ray.json. The token (sent as a bearer
header) comes from --token, else $RAY_DASHBOARD_TOKEN.

Exit codes: 0 fine; 1 the job ended FAILED/STOPPED (`wait`) or a Serve app is not
RUNNING (`serve`); 2 usage or connection error; 3 `wait` timed out. Unlike
`ray job status`, a failed job is a non-zero exit, so scripts and CI can use it.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from components.clients.polling import Deadline
from components.clients.ray_dashboard import (
    TERMINAL,
    JobClient,
    iso_time,
    log_tail,
    poll_job,
    redact,
    status_head,
    status_of,
    stop_job,
    wait_for_dashboard,
)
from components.constants import METADATA_KIND
from jobs.common import parse_result
from tools.local_ray import LocalRay

if TYPE_CHECKING:
    from ray.job_submission import JobDetails

ROOT = Path(__file__).resolve().parents[1]
LOCAL_STATE = ROOT / "build" / "local" / "ray.json"
ENV_ADDRESS = "RAY_DASHBOARD_URL"
ENV_TOKEN = "RAY_DASHBOARD_TOKEN"

EXIT_OK = 0
EXIT_UNHEALTHY = 1
EXIT_ERROR = 2
EXIT_TIMEOUT = 3

CONNECT_TIMEOUT_S = 5.0
ENTRYPOINT_WIDTH = 60
FAILURE_TAIL_LINES = 20


class UsageError(Exception):
    pass


def resolve_address(cli: str | None, env: Mapping[str, str], state_file: Path) -> str:
    address = cli or env.get(ENV_ADDRESS)
    if not address:
        local = LocalRay.load(state_file)
        if local is None:
            raise UsageError(f"no Ray dashboard address: pass --address URL, set {ENV_ADDRESS}, or start "
                             f"the local cluster with `make local` (it records {state_file}).")
        address = local.dashboard_url
    # `ray job` accepts a bare host:port; so does this.
    return address if "://" in address else f"http://{address}"


# --- formatting (pure) --------------------------------------------------------------

def format_duration(seconds: float | None) -> str:
    if seconds is None or seconds < 0:
        return "-"
    total = int(round(seconds))
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def job_duration(job: JobDetails, now_ms: int) -> float | None:
    if not job.start_time:
        return None
    end = job.end_time or (None if job.status in TERMINAL else now_ms)
    return None if end is None else (end - job.start_time) / 1000


def truncate(text: str, width: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 3] + "..."


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], rule: bool = False) -> str:
    """Left-aligned columns two spaces apart; `rule` underlines the headers with dashes."""
    widths = [max(len(str(cell)) for cell in column) for column in zip(headers, *rows, strict=False)]
    under = [["-" * width for width in widths]] if rule else []
    lines = ["  ".join(str(cell).ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip()
             for row in (headers, *under, *rows)]
    return "\n".join(lines)


def job_id(job: JobDetails) -> str:
    return job.submission_id or job.job_id or "-"


def job_kind(job: JobDetails) -> str:
    kind = (job.metadata or {}).get(METADATA_KIND)
    if kind:
        return kind
    return "driver" if str(job.type.value) == "DRIVER" else "-"


def format_jobs(jobs: Sequence[JobDetails], now_ms: int) -> str:
    if not jobs:
        return "no jobs"
    # Jobs that never started (PENDING) sort last, in submission order.
    ordered = sorted(jobs, key=lambda j: (j.start_time is None, j.start_time or 0))
    rows = [[job_id(j), job_kind(j), status_of(j), iso_time(j.start_time) or "-",
             format_duration(job_duration(j, now_ms)), truncate(j.entrypoint, ENTRYPOINT_WIDTH)]
            for j in ordered]
    return format_table(["ID", "KIND", "STATUS", "START", "DURATION", "ENTRYPOINT"], rows)


def format_status(job: JobDetails, result: Mapping[str, Any], now_ms: int) -> str:
    fields = [
        ("id", job_id(job)),
        ("kind", job_kind(job)),
        ("status", status_of(job)),
        ("message", status_head(job.message) or "-"),
        ("start", iso_time(job.start_time) or "-"),
        ("end", iso_time(job.end_time) or "-"),
        ("duration", format_duration(job_duration(job, now_ms))),
        ("entrypoint", job.entrypoint),
    ]
    text = "\n".join(f"{name + ':':<12}{value}" for name, value in fields)
    if result:
        text += "\nresult:\n" + "\n".join("  " + line for line in json.dumps(result, indent=2, sort_keys=True).splitlines())
    else:
        text += f"\n{'result:':<12}-"
    return text


def deployments_summary(app: Mapping[str, Any]) -> str:
    parts = []
    for name, dep in sorted((app.get("deployments") or {}).items()):
        replicas = dep.get("replicas") or []
        running = sum(1 for r in replicas if r.get("state") == "RUNNING")
        parts.append(f"{name}={dep.get('status', '?')}({running}/{dep.get('target_num_replicas', '?')})")
    return " ".join(parts) or "-"


def format_serve(details: Mapping[str, Any]) -> tuple[str, bool]:
    """The Serve applications as a table, and whether every one is RUNNING."""
    apps = details.get("applications") or {}
    if not apps:
        return "no Serve applications", True
    rows = [[name, str(app.get("status")), str(app.get("route_prefix") or "-"), deployments_summary(app),
             truncate(str(app.get("message") or ""), ENTRYPOINT_WIDTH)]
            for name, app in sorted(apps.items())]
    healthy = all(app.get("status") == "RUNNING" for app in apps.values())
    return format_table(["APP", "STATUS", "ROUTE", "DEPLOYMENTS (running/target)", "MESSAGE"], rows), healthy


# --- commands ---------------------------------------------------------------------

def _now_ms() -> int:
    return int(time.time() * 1000)


def _require(client: JobClient, submission_id: str) -> JobDetails:
    info = client.info(submission_id)
    if info is None:
        raise UsageError(f"no job {submission_id!r} on {client.url} (see `list`; Ray forgets jobs when "
                         "the head restarts).")
    return info


def cmd_list(client: JobClient, _ns: argparse.Namespace) -> int:
    print(format_jobs(client.sdk.list_jobs(), _now_ms()))
    return EXIT_OK


def cmd_status(client: JobClient, ns: argparse.Namespace) -> int:
    info = _require(client, ns.id)
    result = (parse_result(client.logs(ns.id)) or {}) if info.status in TERMINAL else {}
    print(format_status(info, result, _now_ms()))
    return EXIT_OK


async def _follow(client: JobClient, submission_id: str) -> None:
    async for chunk in client.sdk.tail_job_logs(submission_id):
        sys.stdout.write(chunk)
        sys.stdout.flush()


def cmd_logs(client: JobClient, ns: argparse.Namespace) -> int:
    _require(client, ns.id)
    if ns.follow:
        # The stream ends a few seconds after the job reaches a terminal state.
        asyncio.run(_follow(client, ns.id))
    else:
        sys.stdout.write(client.logs(ns.id))
    return EXIT_OK


def cmd_stop(client: JobClient, ns: argparse.Namespace) -> int:
    info = _require(client, ns.id)
    if info.status in TERMINAL:
        print(f"{ns.id}: already {status_of(info)}")
        return EXIT_OK
    print(f"{ns.id}: {stop_job(client, ns.id, ns.wait) or 'gone'}")
    return EXIT_OK


def cmd_wait(client: JobClient, ns: argparse.Namespace) -> int:
    _require(client, ns.id)
    deadline = Deadline(math.inf if ns.timeout is None else ns.timeout)
    info = poll_job(client, ns.id, TERMINAL, deadline)
    if info.status not in TERMINAL:
        print(f"{ns.id}: still {status_of(info)} after {deadline.elapsed():.0f}s", file=sys.stderr)
        return EXIT_TIMEOUT
    print(f"{ns.id}: {status_of(info)}")
    if info.status == "SUCCEEDED":
        return EXIT_OK
    tail = log_tail(client.logs(ns.id), FAILURE_TAIL_LINES)
    print(f"{status_head(info.message)}\n--- last {FAILURE_TAIL_LINES} log lines ---\n{tail}", file=sys.stderr)
    return EXIT_UNHEALTHY


def cmd_serve(client: JobClient, _ns: argparse.Namespace) -> int:
    text, healthy = format_serve(client.serve_details())
    print(text)
    return EXIT_OK if healthy else EXIT_UNHEALTHY


def build_parser() -> argparse.ArgumentParser:
    # The connection options are accepted before or after the command.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--address", default=argparse.SUPPRESS,
                        help=f"Ray dashboard URL (default: ${ENV_ADDRESS}, then the `make local` cluster)")
    common.add_argument("--token", default=argparse.SUPPRESS,
                        help=f"bearer token for the dashboard (default: ${ENV_TOKEN})")
    common.add_argument("--connect-timeout", type=float, default=argparse.SUPPRESS,
                        help=f"seconds to wait for the dashboard to answer (default: {CONNECT_TIMEOUT_S:g})")
    parser = argparse.ArgumentParser(prog="python -m tools.monitor", parents=[common],
                                     description="List, inspect, follow and stop Ray jobs; check Serve apps.")
    commands = parser.add_subparsers(dest="command", required=True)

    def add(name: str, func: Any, help_: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, parents=[common], help=help_)
        sub.set_defaults(func=func)
        return sub

    add("list", cmd_list, "all jobs, oldest first")
    add("status", cmd_status, "status, message, times and parsed result of one job").add_argument("id")
    logs = add("logs", cmd_logs, "a job's logs")
    logs.add_argument("id")
    logs.add_argument("--follow", "-f", action="store_true", help="stream until the job ends")
    stop = add("stop", cmd_stop, "stop a job and wait for it to end")
    stop.add_argument("id")
    stop.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the job to end")
    wait = add("wait", cmd_wait, "wait for a job to end; exit 1 if it FAILED/STOPPED, 3 on timeout")
    wait.add_argument("id")
    wait.add_argument("--timeout", type=float, default=None, help="give up after this many seconds")
    add("serve", cmd_serve, "Serve applications and their health; exit 1 if any is not RUNNING")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    ns = build_parser().parse_args(argv)
    token: str | None = getattr(ns, "token", None) or os.environ.get(ENV_TOKEN)
    try:
        address = resolve_address(getattr(ns, "address", None), os.environ, LOCAL_STATE)
        wait_for_dashboard(address, token, getattr(ns, "connect_timeout", CONNECT_TIMEOUT_S))
        return int(ns.func(JobClient(address, token), ns))
    except (UsageError, RuntimeError, OSError) as exc:
        # The SDK reports HTTP errors as RuntimeError, lost connections as OSError.
        print(f"error: {redact(str(exc), token)}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
