"""One post-deploy job on a Ray dashboard: submit or adopt, apply the wait policy, report.

The dynamic provider in components/hooks/ray_job.py is a thin shell over these functions; they
need no Pulumi, so they are tested (and benchmarked, bench/hook.py) on a plain local Ray head.

Identity: the submission id is `<job_name>-<12 hex>` where the hex is a digest of
everything that defines the work (components/specs/digest.py). Re-running `pulumi up` finds
the job by that id and adopts it instead of submitting twice. A previous attempt that FAILED or
was STOPPED is retried under `<id>-r2`, `<id>-r3`, ... because Ray never reuses a submission id.

Reaching the dashboard: `dashboard_access: "url"` talks to `dashboard_url` (an internal
ingress or load balancer); `"tunnel"` opens, for every provider operation, a port-forward
through the Kubernetes API to the cluster's head pod (components/clients/k8s_tunnel.py) and talks to
it on 127.0.0.1; `dashboard_url` is then only reported, in the outputs and messages.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import shlex
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, TypeVar, cast

from components.clients.polling import Deadline
from components.clients.ray_dashboard import (
    RETRYABLE, TERMINAL, DashboardUnreachable, JobClient, JobFailed, JobTimeout, RayJobError, interpreter_of,
    iso_time, job_url, log_tail, poll_job, remove_serve_app, status_head, status_of, stop_job, submit,
    wait_for_dashboard, wait_for_serve_app,
)
from components.config.code import files_digest
from components.config.model import JOB_KINDS, JobConfig
from components.config.work import WorkConfig
from components.constants import METADATA_CODE_HASH, METADATA_JOB_NAME, METADATA_KIND
from components.specs.digest import attempt_id, submission_id_for
# The result-line contract and the job entrypoints are the jobs' own (jobs/common.py is
# standard library only).
from jobs.common import JOBS_DIR, parse_result
from jobs.common import entrypoint as job_entrypoint

if TYPE_CHECKING:
    from ray.job_submission import JobDetails

# What a job runs, as the hook tracks it: a built-in job (a preset), a team's command ("job"), or a
# Serve app ("serve": the built-in one or a team's).
HOOK_KINDS = (*JOB_KINDS, "job")
OUTPUT_FIELDS = (
    "submission_id", "status", "message", "dashboard_url", "job_url", "result",
    "endpoint", "start_time", "end_time",
)
MAX_ATTEMPTS = 100
# What `destroy` and `refresh` give a dashboard (and in tunnel mode a head pod) to answer: a cluster
# that is gone must not hold them for the create-time bound (`dashboard_wait_seconds`, minutes).
GONE_WAIT_S = 30

# How the dashboard and cluster addresses and secrets are held: plain strings where the job
# runs (the provider, local mode, benchmarks); the team layer may also pass Pulumi outputs.
S = TypeVar("S")


@dataclass(frozen=True)
class RayJobArgs(Generic[S]):
    """One job to run after deploy.

    The fields in specs.digest.IDENTITY_FIELDS name the work; changing any of them submits a new
    job. The rest say how to reach the cluster and how long to wait, and change in
    place. `wait`: "none" returns once submitted, "running" once the job runs,
    "succeeded" once it succeeded (and, for kind "serve", once its Serve app is
    RUNNING). `timeout_seconds` bounds that wait; `dashboard_wait_seconds` bounds
    the wait for the dashboard (and its job agent, and in tunnel mode the head pod) to
    answer at all. Tunnel mode needs the kubeconfig (a secret), its context, and the
    namespace and name of the RayCluster.
    """

    job_name: str
    kind: str
    entrypoint: str
    runtime_env: dict[str, Any]
    code_hash: str
    dashboard_url: S
    auth_token: S | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    wait: str = "succeeded"
    timeout_seconds: int = 3600
    dashboard_wait_seconds: int = 600
    serve_app_name: str | None = None
    serve_route_prefix: str | None = None
    serve_endpoint_base: str | None = None
    log_tail_lines: int = 50
    dashboard_access: str = "url"
    kubeconfig: S | None = None
    kube_context: S | None = None
    namespace: str | None = None
    cluster_name: str | None = None


INPUT_FIELDS = tuple(f.name for f in dataclasses.fields(RayJobArgs))


def endpoint_for(base: str | None, route_prefix: str | None) -> str | None:
    if not base:
        return None
    return base.rstrip("/") + (route_prefix or "/")


# --------------------------------------------------------------------------- from a job's config
# Pure, so the team layer (components/team/post_deploy.py), local mode and the benchmarks build
# the same args; only the team layer passes Pulumi outputs for S.


# What a team's Serve app runs as (launcher/serve.py), shipped beside the team's code.
LAUNCHER_DIR = JOBS_DIR.parent / "launcher"
SERVE_LAUNCHER = "launcher.serve"


def launcher_digest() -> str:
    return files_digest(LAUNCHER_DIR, sorted(LAUNCHER_DIR.rglob("*.py")))


def serve_names(job: JobConfig) -> tuple[str, str]:
    """(Serve application name, route prefix) of a serve job; default to the job's name."""
    if job.work.serve is not None:
        return job.work.serve.app_name, job.work.serve.route_prefix
    return str(job.settings.get("app_name", job.name)), str(job.settings.get("route_prefix", f"/{job.name}"))


def effective_settings(job: JobConfig) -> dict[str, Any]:
    """Settings handed to the job; serve jobs always carry the names the hook tracks them by."""
    settings = dict(job.settings)
    if job.kind == "serve":
        settings["app_name"], settings["route_prefix"] = serve_names(job)
    return settings


def entrypoint(job: JobConfig) -> str:
    """The command the job runs: the team's, the Serve launcher's for a team's app, or a preset's."""
    work = job.work
    if work.entrypoint is not None:
        return work.entrypoint
    if work.serve is not None:
        config = {**effective_settings(job), "import_path": work.serve.import_path, "args": dict(work.serve.args)}
        return f"python -m {SERVE_LAUNCHER} --config-json {shlex.quote(json.dumps(config, sort_keys=True))}"
    return job_entrypoint(job.kind, effective_settings(job))


def code_runtime_env(work: WorkConfig) -> dict[str, Any]:
    """The runtime env keys that ship a job's code (none for the image's code)."""
    code, env = work.code, {}
    if code is not None:
        env = {"py_modules": [code.path]} if code.as_module else {"working_dir": code.path or code.uri}
    if work.serve is not None:
        env["py_modules"] = [*env.get("py_modules", []), str(LAUNCHER_DIR)]
    return env


def code_hash(work: WorkConfig) -> str:
    """What identifies a job's code beyond its runtime env: the shipped files, the secrets it reads.

    A preset's is the jobs/ digest alone (so built-in jobs keep their ids); a team job's folds in
    the launcher it ships and the references (never the values) of its secret environment.
    """
    if not work.custom:
        return work.code.digest if work.code is not None else ""
    parts = [work.code.digest if work.code is not None else "image",
             launcher_digest() if work.serve is not None else "",
             json.dumps([dataclasses.asdict(e) for e in work.env], sort_keys=True)]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()


def ray_job_args(job: JobConfig, *, dashboard_url: S, serve_endpoint_base: str | None, auth_token: S | None,
                 team: str, dashboard_access: str = "url", kubeconfig: S | None = None,
                 kube_context: S | None = None, namespace: str | None = None) -> RayJobArgs[S]:
    """The hook's args for `job`: addresses and secrets as given (plain strings or Pulumi outputs)."""
    app_name, route_prefix = serve_names(job) if job.kind == "serve" else (None, None)
    return RayJobArgs(
        job_name=job.name,
        kind=job.kind,
        entrypoint=entrypoint(job),
        runtime_env={**job.runtime_env, **code_runtime_env(job.work)},
        code_hash=code_hash(job.work),
        dashboard_url=dashboard_url,
        auth_token=auth_token,
        entrypoint_num_cpus=job.resources.cpus,
        entrypoint_num_gpus=job.resources.gpus,
        entrypoint_memory=job.resources.memory,
        metadata={"ray-platform/team": team, "ray-platform/cluster": job.cluster},
        wait=job.wait,
        timeout_seconds=job.timeout_seconds,
        serve_app_name=app_name,
        serve_route_prefix=route_prefix,
        serve_endpoint_base=serve_endpoint_base if job.kind == "serve" else None,
        dashboard_access=dashboard_access,
        kubeconfig=kubeconfig if dashboard_access == "tunnel" else None,
        kube_context=kube_context if dashboard_access == "tunnel" else None,
        namespace=namespace if dashboard_access == "tunnel" else None,
        cluster_name=job.cluster if dashboard_access == "tunnel" else None,
    )


def submit_or_adopt(client: JobClient, args: RayJobArgs[str], agent_deadline: Deadline) -> str:
    """Submit the job under its deterministic id, or adopt the live attempt; returns the id."""
    base = submission_id_for(vars(args))
    metadata = {**args.metadata, METADATA_KIND: args.kind, METADATA_JOB_NAME: args.job_name,
                METADATA_CODE_HASH: args.code_hash[:12]}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        submission_id = attempt_id(base, attempt)
        info = client.info(submission_id)
        if info is not None and info.status in RETRYABLE:
            continue
        if info is not None:
            return submission_id
        try:
            submit(client, agent_deadline, entrypoint=args.entrypoint, submission_id=submission_id,
                   runtime_env=args.runtime_env or None, metadata=metadata,
                   entrypoint_num_cpus=args.entrypoint_num_cpus, entrypoint_num_gpus=args.entrypoint_num_gpus,
                   entrypoint_memory=args.entrypoint_memory)
        except RuntimeError as exc:
            # Another `pulumi up` submitted the same id between our lookup and our submit.
            if "already exists" not in str(exc):
                raise
            return submission_id
        return submission_id
    raise RayJobError(f"Ray job '{args.job_name}' already has {MAX_ATTEMPTS} failed attempts ({base}-r*); "
                      "fix the job or change its code before retrying.")


def raise_if_failed(client: JobClient, args: RayJobArgs[str], submission_id: str, info: JobDetails,
                    retry_hint: str) -> None:
    if info.status not in RETRYABLE:
        return
    tail = log_tail(client.logs(submission_id), args.log_tail_lines)
    raise JobFailed(
        f"Ray job '{args.job_name}' (submission id {submission_id}) ended {status_of(info)}: "
        f"{status_head(info.message) or 'no message'}\n"
        f"--- last {args.log_tail_lines} log lines ---\n{tail or '(no logs)'}\n---\n"
        f"Job page: {job_url(client.public_url, submission_id)}. {retry_hint}")


def wait_for_job(client: JobClient, args: RayJobArgs[str], submission_id: str, deadline: Deadline,
                 retry_hint: str) -> JobDetails:
    """Apply the `wait` policy to a submitted job; raises JobFailed / JobTimeout."""
    targets = frozenset({"RUNNING"}) if args.wait == "running" else TERMINAL
    info = poll_job(client, submission_id, targets, deadline)
    raise_if_failed(client, args, submission_id, info, retry_hint)
    if info.status in targets or info.status in TERMINAL:
        return info
    goal = "start running" if args.wait == "running" else "finish"
    raise JobTimeout(
        f"Ray job '{args.job_name}' (submission id {submission_id}) did not {goal} within "
        f"{args.timeout_seconds}s (waited {deadline.elapsed():.0f}s; last status {status_of(info)}: "
        f"{status_head(info.message) or 'no message'}). The job keeps running on the cluster: the next "
        f"`pulumi up` adopts it and waits again. To stop it: `make jobs ARGS='stop {submission_id}'` "
        f"(or `ray job stop {submission_id} --address {client.public_url}`). "
        f"Job page: {job_url(client.public_url, submission_id)}")


def job_outputs(args: RayJobArgs[str], submission_id: str, info: JobDetails | None, logs: str,
                route_prefix: str | None) -> dict[str, Any]:
    return {
        "submission_id": submission_id,
        "status": status_of(info) if info is not None else None,
        "message": status_head(info.message) if info is not None else None,
        "dashboard_url": args.dashboard_url,
        "job_url": job_url(args.dashboard_url, submission_id),
        "result": parse_result(logs) or {},
        "endpoint": endpoint_for(args.serve_endpoint_base, route_prefix) if args.kind == "serve" else None,
        "start_time": iso_time(info.start_time) if info is not None else None,
        "end_time": iso_time(info.end_time) if info is not None else None,
    }


@contextmanager
def reach(args: RayJobArgs[str]) -> Iterator[str]:
    """The URL one provider operation talks to: `dashboard_url`, or a tunnel opened for the operation."""
    if args.dashboard_access != "tunnel":
        yield args.dashboard_url
        return
    from components.clients.k8s_tunnel import TunnelError, dashboard_tunnel

    try:
        with dashboard_tunnel(cast(str, args.kubeconfig), args.kube_context, cast(str, args.namespace),
                              cast(str, args.cluster_name), args.dashboard_wait_seconds) as tunnel:
            try:
                yield tunnel.url
            except RayJobError as exc:
                # The dashboard call only saw a dropped connection; the tunnel knows why.
                if tunnel.last_error is None:
                    raise
                raise type(exc)(f"{exc}\n({tunnel.description}: {tunnel.last_error})") from None
    except TunnelError as exc:
        raise DashboardUnreachable(f"Ray job '{args.job_name}': {exc}") from None


def connect(args: RayJobArgs[str], url: str) -> JobClient:
    wait_for_dashboard(url, args.auth_token, args.dashboard_wait_seconds)
    return JobClient(url, args.auth_token, public_url=args.dashboard_url)


def run_job(args: RayJobArgs[str], url: str) -> dict[str, Any]:
    """Create: wait for the dashboard at `url`, submit or adopt, apply the wait policy; returns the outputs."""
    client = connect(args, url)
    submission_id = submit_or_adopt(client, args, Deadline(args.dashboard_wait_seconds))
    return _settle(client, args, submission_id, Deadline(args.timeout_seconds),
                   "Re-running `pulumi up` submits a new attempt.")


def _settle(client: JobClient, args: RayJobArgs[str], submission_id: str, deadline: Deadline,
            retry_hint: str) -> dict[str, Any]:
    info = client.info(submission_id) if args.wait == "none" else wait_for_job(
        client, args, submission_id, deadline, retry_hint)
    if args.kind == "serve" and args.wait == "succeeded":
        app = wait_for_serve_app(client, cast(str, args.serve_app_name), args.job_name, deadline)
        route_prefix = args.serve_route_prefix or app.get("route_prefix")
    else:
        route_prefix = live_route_prefix(client, args)
    logs = client.logs(submission_id) if info is not None and info.status in TERMINAL else ""
    return job_outputs(args, submission_id, info, logs, route_prefix)


def live_route_prefix(client: JobClient, args: RayJobArgs[str]) -> str | None:
    """The route the job's Serve app is mounted on: as configured, else as deployed."""
    if args.kind != "serve" or args.serve_route_prefix:
        return args.serve_route_prefix
    app = (client.serve_details().get("applications") or {}).get(args.serve_app_name or "")
    return app.get("route_prefix") if app else None


def refresh_job(args: RayJobArgs[str], url: str, submission_id: str, last: Mapping[str, Any],
                apply_wait: bool) -> dict[str, Any]:
    """Re-read a job's state (update/read); a job the cluster forgot keeps its last known outputs."""
    client = connect(args, url)
    info = client.info(submission_id)
    if info is None:
        return {name: last.get(name) for name in OUTPUT_FIELDS} | {"submission_id": submission_id}
    if apply_wait:
        hint = "To run it again: `pulumi up --replace <this resource's URN>`."
        return _settle(client, args, submission_id, Deadline(args.timeout_seconds), hint)
    logs = client.logs(submission_id) if info.status in TERMINAL else ""
    return job_outputs(args, submission_id, info, logs, live_route_prefix(client, args))


def _briefly(args: RayJobArgs[str]) -> RayJobArgs[str]:
    return dataclasses.replace(args, dashboard_wait_seconds=min(args.dashboard_wait_seconds, GONE_WAIT_S))


def _gone(args: RayJobArgs[str], submission_id: str, exc: RayJobError, consequence: str) -> str:
    return (f"Ray job '{args.job_name}' ({submission_id}): its cluster is gone or unreachable ({exc}). "
            f"{consequence}")


def delete_or_forget(args: RayJobArgs[str], submission_id: str) -> str | None:
    """Delete: stop the job and remove its Serve app. When the cluster is gone (or does not answer
    within GONE_WAIT_S) there is nothing to stop: returns the warning to give, and the delete succeeds."""
    args = _briefly(args)
    try:
        with reach(args) as url:
            delete_job(args, url, submission_id)
    except DashboardUnreachable as exc:
        return _gone(args, submission_id, exc, "Nothing was stopped; it is removed from the stack. If the cluster "
                                               f"still runs somewhere, stop it there: `ray job stop {submission_id}`.")
    return None


def read_or_keep(args: RayJobArgs[str], submission_id: str,
                 last: Mapping[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Refresh: the job's state as the cluster has it; when the cluster is gone (or does not answer
    within GONE_WAIT_S), the last known outputs and the warning to give."""
    args = _briefly(args)
    try:
        with reach(args) as url:
            return refresh_job(args, url, submission_id, last, apply_wait=False), None
    except DashboardUnreachable as exc:
        outs = {name: last.get(name) for name in OUTPUT_FIELDS} | {"submission_id": submission_id}
        return outs, _gone(args, submission_id, exc, "Its last known state is kept.")


def delete_job(args: RayJobArgs[str], url: str, submission_id: str) -> None:
    """Stop the job if it still runs; for Serve jobs also remove the application."""
    client = connect(args, url)
    stop_job(client, submission_id)
    if args.kind == "serve" and args.serve_app_name:
        remove_serve_app(client, args.serve_app_name, interpreter_of(args.entrypoint))
