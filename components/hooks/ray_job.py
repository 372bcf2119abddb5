"""The post-deploy hook: submit and track one Ray job through the Ray Job SDK.

`RayJob` is a Pulumi dynamic resource. Its provider is a thin shell over plain
functions (`JobClient`, `submit_or_adopt`, `wait_for_job`, ...) that talk to the
Ray dashboard and can be tested without Pulumi.

Identity: the submission id is `<job_name>-<12 hex>` where the hex is a digest of
everything that defines the work (entrypoint, runtime env, code hash, resources,
kind, Serve settings). Re-running `pulumi up` finds the job by that id and adopts
it instead of submitting twice. A previous attempt that FAILED or was STOPPED is
retried under `<id>-r2`, `<id>-r3`, ... because Ray never reuses a submission id.

Reaching the dashboard: `dashboard_access: "url"` talks to `dashboard_url` (an internal
ingress or load balancer); `"tunnel"` opens, for every provider operation, a port-forward
through the Kubernetes API to the cluster's head pod (components/clients/k8s_tunnel.py) and talks to
it on 127.0.0.1; `dashboard_url` is then only reported, in the outputs and messages.

The provider object is pickled into the stack state by Pulumi (dill, by reference
to this module), so it holds no state, and `ray` (and the Kubernetes client) are
imported only when a method actually talks to a cluster.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import shlex
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import pulumi
import pulumi.dynamic
import requests
from pulumi.runtime import rpc

# The result-line contract is the jobs' own (jobs/common.py is standard library only).
from components.config.model import DASHBOARD_ACCESS, JOB_KINDS, JOB_NAME_MAX, JOB_WAITS, is_dns_label
from jobs.common import parse_result

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# A re-run of `pulumi up` retries these instead of adopting them.
RETRYABLE = frozenset({"FAILED", "STOPPED"})
METADATA_KIND = "ray-platform/kind"
METADATA_JOB_NAME = "ray-platform/job-name"
METADATA_CODE_HASH = "ray-platform/code-hash"

# Properties whose change means different work: a new submission (replace).
IDENTITY_FIELDS = (
    "job_name", "kind", "entrypoint", "runtime_env", "code_hash",
    "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory",
    "serve_app_name", "serve_route_prefix",
)
OUTPUT_FIELDS = (
    "submission_id", "status", "message", "dashboard_url", "job_url", "result",
    "endpoint", "start_time", "end_time",
)

# Serve app names end up in actor names and log file names (job names follow the config's rule).
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$")
ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")]+")

POLL_FIRST_S = 0.5
POLL_MAX_S = 5.0
# Most post-deploy waits are short: poll at the first interval this long before backing
# off, so a quick job is not reported up to a full backoff step late (bench/: hook overhead).
FAST_POLL_WINDOW_S = 30.0
DASHBOARD_BACKOFF_MAX_S = 15.0
REQUEST_TIMEOUT_S = 30.0
STOP_WAIT_S = 30.0
SERVE_REMOVE_WAIT_S = 120.0
MAX_ATTEMPTS = 100


class RayJobError(RuntimeError):
    """A failure the user can act on; the message is the whole story."""


class DashboardUnreachable(RayJobError):
    pass


class JobFailed(RayJobError):
    pass


class JobTimeout(RayJobError):
    pass


@dataclass(frozen=True)
class RayJobArgs:
    """One job to run after deploy.

    The fields in IDENTITY_FIELDS name the work; changing any of them submits a new
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
    dashboard_url: pulumi.Input[str]
    auth_token: pulumi.Input[str] | None = None
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
    kubeconfig: pulumi.Input[str] | None = None
    kube_context: pulumi.Input[str] | None = None
    namespace: str | None = None
    cluster_name: str | None = None


INPUT_FIELDS = tuple(f.name for f in dataclasses.fields(RayJobArgs))
SECRET_FIELDS = ("auth_token", "kubeconfig")


def props_of(args: RayJobArgs) -> dict[str, Any]:
    """The property bag the Pulumi engine hands the provider for `args`."""
    return {name: getattr(args, name) for name in INPUT_FIELDS}


_INT_FIELDS = ("entrypoint_memory", "timeout_seconds", "dashboard_wait_seconds", "log_tail_lines")
_FLOAT_FIELDS = ("entrypoint_num_cpus", "entrypoint_num_gpus")
_DICT_FIELDS = ("runtime_env", "metadata")


# --- pure helpers -----------------------------------------------------------------

def _canon(value: Any) -> Any:
    # The engine hands numbers back as protobuf doubles (60 -> 60.0); identity must
    # not depend on whether a value came from the program or from the state.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): _canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canon(v) for v in value]
    return value


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and "://" not in value


def canonical_runtime_env(runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The runtime env as identity sees it: local upload paths reduced to their basename.

    The SDK uploads local `working_dir`/`py_modules` by content; where the checkout
    lives differs per machine, and `code_hash` already pins the content.
    """
    env = dict(_canon(runtime_env or {}))
    if _is_local_path(env.get("working_dir")):
        env["working_dir"] = f"local:{PurePosixPath(env['working_dir']).name}"
    if isinstance(env.get("py_modules"), list):
        env["py_modules"] = [f"local:{PurePosixPath(m).name}" if _is_local_path(m) else m
                             for m in env["py_modules"]]
    return env


def identity(args: RayJobArgs) -> dict[str, Any]:
    values = {name: getattr(args, name) for name in IDENTITY_FIELDS}
    values["runtime_env"] = canonical_runtime_env(args.runtime_env)
    return _canon(values)


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of `spec`: equal specs, equal digests, whatever their key order."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def submission_id_for(args: RayJobArgs) -> str:
    return f"{args.job_name}-{spec_digest(identity(args))[:12]}"


def attempt_id(base: str, attempt: int) -> str:
    return base if attempt == 1 else f"{base}-r{attempt}"


def log_tail(logs: str, lines: int) -> str:
    if lines <= 0:
        return ""
    return "\n".join(ANSI_RE.sub("", logs).rstrip("\n").splitlines()[-lines:])


def job_url(dashboard_url: str, submission_id: str) -> str:
    return f"{dashboard_url.rstrip('/')}/#/jobs/{submission_id}"


def endpoint_for(base: str | None, route_prefix: str | None) -> str | None:
    if not base:
        return None
    return base.rstrip("/") + (route_prefix or "/")


def iso_time(epoch_ms: int | float | None) -> str | None:
    if not epoch_ms:
        return None
    stamp = datetime.fromtimestamp(epoch_ms / 1000, tz=UTC)
    return stamp.isoformat(timespec="seconds").replace("+00:00", "Z")


def redact(text: str, token: str | None) -> str:
    return text.replace(token, "***") if token else text


def status_of(info: JobDetails) -> str:
    return str(info.status.value)


def status_head(message: str | None) -> str:
    """The job's status message without the log excerpt Ray appends to it (we add our own tail)."""
    text = (message or "").split(", last available logs", 1)[0].strip()
    return text[:2000]


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def short_error(exc: BaseException) -> str:
    text = str(exc)
    match = ERRNO_RE.search(text)
    return f"{type(exc).__name__}: {match.group(0) if match else text[:200]}"


def interpreter_of(entrypoint: str) -> str:
    """The Python the job ran with, so a helper job finds the same environment."""
    try:
        first = shlex.split(entrypoint)[0]
    except (ValueError, IndexError):
        return "python"
    return first if PurePosixPath(first).name.startswith("python") else "python"


def config_without_app(details: Mapping[str, Any], app_name: str) -> dict[str, Any]:
    """A Serve deploy config (PUT /api/serve/applications/) keeping every declarative app but one.

    PUT replaces the whole declarative set, so the other apps must be sent back
    unchanged; imperative apps (`serve.run`) are not part of it and are left alone.
    """
    apps = details.get("applications") or {}
    config: dict[str, Any] = {
        "applications": [
            app["deployed_app_config"] for name, app in sorted(apps.items())
            if name != app_name and app.get("source") == "declarative" and app.get("deployed_app_config")
        ],
    }
    for key in ("http_options", "grpc_options", "proxy_location", "target_capacity"):
        if details.get(key) is not None:
            config[key] = details[key]
    return config


# --- talking to the cluster -------------------------------------------------------

def wait_for_dashboard(url: str, token: str | None, max_wait_s: float) -> None:
    """Poll GET /api/version with exponential backoff until it answers.

    A fresh RayCluster's head takes a while to come up after its resource is
    "created", so the hook waits, but within a bound and with a message that says
    what to check.
    """
    started = time.monotonic()
    deadline = started + max_wait_s
    delay = POLL_FIRST_S
    attempts = 0
    last_error = "no answer"
    while True:
        attempts += 1
        remaining = deadline - time.monotonic()
        try:
            resp = requests.get(f"{url.rstrip('/')}/api/version", headers=auth_headers(token),
                                timeout=max(0.5, min(5.0, remaining)))
            if resp.status_code in (401, 403):
                raise RayJobError(f"Ray dashboard at {url} refused the request (HTTP {resp.status_code}): "
                                  "check the auth token.")
            if resp.ok:
                return
            last_error = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last_error = short_error(exc)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise DashboardUnreachable(
                f"Ray dashboard at {url} did not answer GET /api/version within {max_wait_s:g}s "
                f"({attempts} attempts over {time.monotonic() - started:.1f}s; last error: {last_error}). "
                "Check that the Ray head is running and that this URL is reachable from this machine "
                "(service URL or port-forward).")
        time.sleep(min(delay, remaining))
        delay = min(delay * 2, DASHBOARD_BACKOFF_MAX_S)


class JobClient:
    """The Job SDK client plus the Serve REST calls, for one dashboard and token.

    `public_url` is the dashboard's address for people (job links in messages); it differs
    from `dashboard_url` when the client talks through a tunnel.
    """

    def __init__(self, dashboard_url: str, token: str | None = None, public_url: str | None = None) -> None:
        from ray.job_submission import JobSubmissionClient

        self.url = dashboard_url.rstrip("/")
        self.public_url = (public_url or dashboard_url).rstrip("/")
        self._headers = auth_headers(token)
        # The SDK adds its own auth header into the dict it is given: hand it a copy.
        self.sdk: JobSubmissionClient = JobSubmissionClient(self.url, headers=dict(self._headers))

    def info(self, submission_id: str) -> JobDetails | None:
        """The job's details, or None when the cluster does not know the id."""
        try:
            return self.sdk.get_job_info(submission_id)
        except RuntimeError as exc:
            if _is_not_found(exc):
                return None
            raise

    def logs(self, submission_id: str) -> str:
        try:
            return self.sdk.get_job_logs(submission_id)
        except RuntimeError as exc:
            if _is_not_found(exc):
                return ""
            raise

    def serve_details(self) -> dict[str, Any]:
        resp = requests.get(f"{self.url}/api/serve/applications/", headers=self._headers,
                            timeout=REQUEST_TIMEOUT_S)
        _raise_for(resp, "GET /api/serve/applications/")
        return cast(dict[str, Any], resp.json())

    def serve_put(self, config: Mapping[str, Any]) -> None:
        resp = requests.put(f"{self.url}/api/serve/applications/", json=config, headers=self._headers,
                            timeout=REQUEST_TIMEOUT_S)
        _raise_for(resp, "PUT /api/serve/applications/")

    def serve_shutdown(self) -> None:
        resp = requests.delete(f"{self.url}/api/serve/applications/", headers=self._headers,
                               timeout=REQUEST_TIMEOUT_S)
        _raise_for(resp, "DELETE /api/serve/applications/")


def _is_not_found(exc: RuntimeError) -> bool:
    # The SDK turns every HTTP error into a RuntimeError carrying the status text.
    return "status code 404" in str(exc) or "does not exist" in str(exc)


def _raise_for(resp: requests.Response, what: str) -> None:
    if not resp.ok:
        raise RayJobError(f"Ray dashboard {what} failed with HTTP {resp.status_code}: {resp.text[:1000]}")


def submit(client: JobClient, args: RayJobArgs, submission_id: str, deadline: float) -> None:
    metadata = {**args.metadata, METADATA_KIND: args.kind, METADATA_JOB_NAME: args.job_name,
                METADATA_CODE_HASH: args.code_hash[:12]}
    started = time.monotonic()
    delay = POLL_FIRST_S
    while True:
        try:
            client.sdk.submit_job(
                entrypoint=args.entrypoint,
                submission_id=submission_id,
                runtime_env=args.runtime_env or None,
                metadata=metadata,
                entrypoint_num_cpus=args.entrypoint_num_cpus,
                entrypoint_num_gpus=args.entrypoint_num_gpus,
                entrypoint_memory=args.entrypoint_memory,
            )
            return
        except RuntimeError as exc:
            # A fresh head answers /api/version before its job agent has registered;
            # until then the dashboard refuses submissions (after a 10 s wait of its own).
            if "No available agent" not in str(exc):
                raise
        if time.monotonic() >= deadline:
            raise DashboardUnreachable(
                f"Ray dashboard at {client.public_url} answers but has no job agent to run submissions "
                f"(tried for {time.monotonic() - started:.0f}s). The head's dashboard agent is not up: see "
                "dashboard_agent.log on the head (locally, another Ray head on this machine may hold the "
                "agent's port, 52365 by default).")
        time.sleep(max(0.0, min(delay, deadline - time.monotonic())))
        delay = min(delay * 2, DASHBOARD_BACKOFF_MAX_S)


def submit_or_adopt(client: JobClient, args: RayJobArgs, agent_deadline: float) -> str:
    """Submit the job under its deterministic id, or adopt the live attempt; returns the id."""
    base = submission_id_for(args)
    for attempt in range(1, MAX_ATTEMPTS + 1):
        submission_id = attempt_id(base, attempt)
        info = client.info(submission_id)
        if info is not None and info.status in RETRYABLE:
            continue
        if info is not None:
            return submission_id
        try:
            submit(client, args, submission_id, agent_deadline)
        except RuntimeError as exc:
            # Another `pulumi up` submitted the same id between our lookup and our submit.
            if "already exists" not in str(exc):
                raise
            return submission_id
        return submission_id
    raise RayJobError(f"Ray job '{args.job_name}' already has {MAX_ATTEMPTS} failed attempts ({base}-r*); "
                      "fix the job or change its code before retrying.")


def poll_delays() -> Iterator[float]:
    """Seconds to sleep between polls: steady for FAST_POLL_WINDOW_S, then x1.5 up to POLL_MAX_S."""
    waited, delay = 0.0, POLL_FIRST_S
    while True:
        yield delay
        waited += delay
        if waited >= FAST_POLL_WINDOW_S:
            delay = min(delay * 1.5, POLL_MAX_S)


def poll_job(client: JobClient, submission_id: str, targets: frozenset[str], deadline: float) -> JobDetails:
    """Poll with bounded backoff until the status is in `targets` or terminal, or the deadline passes."""
    delays = poll_delays()
    while True:
        info = client.info(submission_id)
        if info is None:
            raise RayJobError(f"Ray job {submission_id} disappeared from the cluster while waiting for it "
                              "(did the Ray head restart? Ray keeps no job history across restarts).")
        remaining = deadline - time.monotonic()
        if info.status in targets or info.status in TERMINAL or remaining <= 0:
            return info
        time.sleep(min(next(delays), remaining))


def raise_if_failed(client: JobClient, args: RayJobArgs, submission_id: str, info: JobDetails,
                    retry_hint: str) -> None:
    if info.status not in RETRYABLE:
        return
    tail = log_tail(client.logs(submission_id), args.log_tail_lines)
    raise JobFailed(
        f"Ray job '{args.job_name}' (submission id {submission_id}) ended {status_of(info)}: "
        f"{status_head(info.message) or 'no message'}\n"
        f"--- last {args.log_tail_lines} log lines ---\n{tail or '(no logs)'}\n---\n"
        f"Job page: {job_url(client.public_url, submission_id)}. {retry_hint}")


def wait_for_job(client: JobClient, args: RayJobArgs, submission_id: str, deadline: float,
                 started: float, retry_hint: str) -> JobDetails:
    """Apply the `wait` policy to a submitted job; raises JobFailed / JobTimeout."""
    targets = frozenset({"RUNNING"}) if args.wait == "running" else TERMINAL
    info = poll_job(client, submission_id, targets, deadline)
    raise_if_failed(client, args, submission_id, info, retry_hint)
    if info.status in targets or info.status in TERMINAL:
        return info
    goal = "start running" if args.wait == "running" else "finish"
    raise JobTimeout(
        f"Ray job '{args.job_name}' (submission id {submission_id}) did not {goal} within "
        f"{args.timeout_seconds}s (waited {time.monotonic() - started:.0f}s; last status {status_of(info)}: "
        f"{status_head(info.message) or 'no message'}). The job keeps running on the cluster: the next "
        f"`pulumi up` adopts it and waits again. To stop it: `make jobs ARGS='stop {submission_id}'` "
        f"(or `ray job stop {submission_id} --address {client.public_url}`). "
        f"Job page: {job_url(client.public_url, submission_id)}")


def wait_for_serve_app(client: JobClient, args: RayJobArgs, deadline: float, started: float) -> dict[str, Any]:
    """Wait until the job's Serve application is RUNNING; returns its details."""
    app_name = cast(str, args.serve_app_name)
    delays = poll_delays()
    while True:
        apps = client.serve_details().get("applications") or {}
        app = apps.get(app_name)
        if app is not None and app.get("status") == "RUNNING":
            return cast(dict[str, Any], app)
        if app is not None and app.get("status") == "DEPLOY_FAILED":
            raise JobFailed(f"Serve application '{app_name}' of Ray job '{args.job_name}' failed to deploy: "
                            f"{app.get('message') or 'no message'}")
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            state = (f"status {app.get('status')}: {app.get('message') or 'no message'}" if app is not None
                     else f"no such application; the cluster has {sorted(apps) or 'none'}: does the job "
                          f"deploy with name='{app_name}'?")
            raise JobTimeout(f"Serve application '{app_name}' of Ray job '{args.job_name}' is not RUNNING "
                             f"after {time.monotonic() - started:.0f}s ({state}). "
                             "See `make jobs ARGS=serve`.")
        time.sleep(min(next(delays), remaining))


def stop_job(client: JobClient, submission_id: str, wait_s: float = STOP_WAIT_S) -> str | None:
    """Stop a job that is not terminal and wait for it to end; returns the final status (None: gone)."""
    info = client.info(submission_id)
    if info is None or info.status in TERMINAL:
        return None if info is None else status_of(info)
    client.sdk.stop_job(submission_id)
    info = poll_job(client, submission_id, TERMINAL, time.monotonic() + wait_s)
    if info.status not in TERMINAL:
        raise RayJobError(f"Ray job {submission_id} is still {status_of(info)} {wait_s:g}s after it was "
                          "asked to stop; try again, or stop it with `ray job stop`.")
    return status_of(info)


def remove_serve_app(client: JobClient, app_name: str, python: str, wait_s: float = SERVE_REMOVE_WAIT_S) -> None:
    """Remove one Serve application and leave the others running; an absent app is not an error."""
    details = client.serve_details()
    apps = details.get("applications") or {}
    if app_name not in apps:
        return
    if set(apps) == {app_name}:
        # The only app: shutting Serve down also frees the proxy and its port.
        client.serve_shutdown()
        return
    if apps[app_name].get("source") == "declarative":
        client.serve_put(config_without_app(details, app_name))
    else:
        # An app deployed with `serve.run` is not in the declarative config, so PUT
        # cannot remove it; `serve.delete` inside a short job can.
        _run_serve_delete_job(client, app_name, python, time.monotonic() + wait_s)
    deadline = time.monotonic() + wait_s
    delays = poll_delays()
    while app_name in (client.serve_details().get("applications") or {}):
        if time.monotonic() >= deadline:
            raise RayJobError(f"Serve application '{app_name}' is still present {wait_s:g}s after its removal "
                              "was requested; see `make jobs ARGS=serve`.")
        time.sleep(next(delays))


def _run_serve_delete_job(client: JobClient, app_name: str, python: str, deadline: float) -> None:
    code = f"from ray import serve; serve.delete({app_name!r})"
    submission_id = f"serve-delete-{app_name}-{uuid.uuid4().hex[:8]}"
    client.sdk.submit_job(entrypoint=f"{python} -c {shlex.quote(code)}", submission_id=submission_id,
                          metadata={METADATA_KIND: "core"})
    info = poll_job(client, submission_id, TERMINAL, deadline)
    if info.status != "SUCCEEDED":
        raise RayJobError(f"Removing Serve application '{app_name}' (helper job {submission_id}) ended "
                          f"{status_of(info)}: {status_head(info.message)}\n"
                          f"{log_tail(client.logs(submission_id), 20)}")


def job_outputs(args: RayJobArgs, submission_id: str, info: JobDetails | None, logs: str,
                route_prefix: str | None) -> dict[str, Any]:
    dashboard_url = cast(str, args.dashboard_url)
    return {
        "submission_id": submission_id,
        "status": status_of(info) if info is not None else None,
        "message": status_head(info.message) if info is not None else None,
        "dashboard_url": dashboard_url,
        "job_url": job_url(dashboard_url, submission_id),
        "result": parse_result(logs) or {},
        "endpoint": endpoint_for(args.serve_endpoint_base, route_prefix) if args.kind == "serve" else None,
        "start_time": iso_time(info.start_time) if info is not None else None,
        "end_time": iso_time(info.end_time) if info is not None else None,
    }


@contextmanager
def reach(args: RayJobArgs) -> Iterator[str]:
    """The URL one provider operation talks to: `dashboard_url`, or a tunnel opened for the operation."""
    if args.dashboard_access != "tunnel":
        yield cast(str, args.dashboard_url)
        return
    from components.clients.k8s_tunnel import TunnelError, dashboard_tunnel

    try:
        with dashboard_tunnel(cast(str, args.kubeconfig), cast("str | None", args.kube_context),
                              cast(str, args.namespace), cast(str, args.cluster_name),
                              args.dashboard_wait_seconds) as tunnel:
            try:
                yield tunnel.url
            except RayJobError as exc:
                # The dashboard call only saw a dropped connection; the tunnel knows why.
                if tunnel.last_error is None:
                    raise
                raise type(exc)(f"{exc}\n({tunnel.description}: {tunnel.last_error})") from None
    except TunnelError as exc:
        raise DashboardUnreachable(f"Ray job '{args.job_name}': {exc}") from None


def connect(args: RayJobArgs, url: str) -> JobClient:
    token = cast("str | None", args.auth_token)
    wait_for_dashboard(url, token, args.dashboard_wait_seconds)
    return JobClient(url, token, public_url=cast(str, args.dashboard_url))


def run_job(args: RayJobArgs, url: str) -> dict[str, Any]:
    """Create: wait for the dashboard at `url`, submit or adopt, apply the wait policy; returns the outputs."""
    client = connect(args, url)
    submission_id = submit_or_adopt(client, args, time.monotonic() + args.dashboard_wait_seconds)
    started = time.monotonic()
    deadline = started + args.timeout_seconds
    return _settle(client, args, submission_id, deadline, started,
                   "Re-running `pulumi up` submits a new attempt.")


def _settle(client: JobClient, args: RayJobArgs, submission_id: str, deadline: float,
            started: float, retry_hint: str) -> dict[str, Any]:
    info = client.info(submission_id) if args.wait == "none" else wait_for_job(
        client, args, submission_id, deadline, started, retry_hint)
    if args.kind == "serve" and args.wait == "succeeded":
        app = wait_for_serve_app(client, args, deadline, started)
        route_prefix = args.serve_route_prefix or app.get("route_prefix")
    else:
        route_prefix = live_route_prefix(client, args)
    logs = client.logs(submission_id) if info is not None and info.status in TERMINAL else ""
    return job_outputs(args, submission_id, info, logs, route_prefix)


def live_route_prefix(client: JobClient, args: RayJobArgs) -> str | None:
    """The route the job's Serve app is mounted on: as configured, else as deployed."""
    if args.kind != "serve" or args.serve_route_prefix:
        return args.serve_route_prefix
    app = (client.serve_details().get("applications") or {}).get(args.serve_app_name or "")
    return app.get("route_prefix") if app else None


def refresh_job(args: RayJobArgs, url: str, submission_id: str, last: Mapping[str, Any],
                apply_wait: bool) -> dict[str, Any]:
    """Re-read a job's state (update/read); a job the cluster forgot keeps its last known outputs."""
    client = connect(args, url)
    info = client.info(submission_id)
    if info is None:
        return {name: last.get(name) for name in OUTPUT_FIELDS} | {"submission_id": submission_id}
    if apply_wait:
        started = time.monotonic()
        hint = "To run it again: `pulumi up --replace <this resource's URN>`."
        return _settle(client, args, submission_id, started + args.timeout_seconds, started, hint)
    logs = client.logs(submission_id) if info.status in TERMINAL else ""
    return job_outputs(args, submission_id, info, logs, live_route_prefix(client, args))


def delete_job(args: RayJobArgs, url: str, submission_id: str) -> None:
    """Stop the job if it still runs; for Serve jobs also remove the application."""
    client = connect(args, url)
    stop_job(client, submission_id)
    if args.kind == "serve" and args.serve_app_name:
        remove_serve_app(client, args.serve_app_name, interpreter_of(args.entrypoint))


# --- Pulumi property plumbing -----------------------------------------------------

def _plain(value: Any) -> Any:
    return rpc.unwrap_rpc_secret(value)


def _is_unknown(value: Any) -> bool:
    return isinstance(value, pulumi.output.Unknown)


def args_from_props(props: Mapping[str, Any]) -> RayJobArgs:
    """RayJobArgs from the property bag the engine sends (None dropped, numbers as floats)."""
    values: dict[str, Any] = {}
    for name in INPUT_FIELDS:
        if name not in props:
            continue
        value = _plain(props[name])
        if name in _INT_FIELDS and value is not None:
            value = int(value)
        elif name in _FLOAT_FIELDS and value is not None:
            value = float(value)
        elif name in _DICT_FIELDS:
            value = dict(_canon(value or {}))
        values[name] = value
    return RayJobArgs(**values)


def check_failures(news: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(property, reason) for every invalid input; values unknown at preview are skipped."""
    known = {k: _plain(v) for k, v in news.items() if not _is_unknown(v)}
    failures: list[tuple[str, str]] = []

    def bad(prop: str, reason: str) -> None:
        failures.append((prop, reason))

    job_name = known.get("job_name")
    if "job_name" in known and not (isinstance(job_name, str) and is_dns_label(job_name, JOB_NAME_MAX)):
        bad("job_name", f"{job_name!r} must be a DNS-1035 label of at most {JOB_NAME_MAX} characters, as a job's "
                        "name in the stack config (it prefixes the Ray submission id)")
    if "kind" in known and known["kind"] not in JOB_KINDS:
        bad("kind", f"{known['kind']!r} is not one of {', '.join(JOB_KINDS)}")
    for prop in ("entrypoint", "code_hash"):
        if prop in known and not (isinstance(known[prop], str) and known[prop].strip()):
            bad(prop, "must be a non-empty string")
    url = known.get("dashboard_url")
    if "dashboard_url" in known and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        bad("dashboard_url", f"{url!r} must be an http:// or https:// URL of the Ray dashboard")
    access = known.get("dashboard_access", "url")
    if access not in DASHBOARD_ACCESS:
        bad("dashboard_access", f"{access!r} is not one of {', '.join(DASHBOARD_ACCESS)}")
    if access == "tunnel":
        for prop in ("kubeconfig", "namespace", "cluster_name"):
            if not _is_unknown(news.get(prop)) and not known.get(prop):
                bad(prop, "is required with dashboard_access 'tunnel' (the tunnel finds the cluster's head pod "
                          "through the Kubernetes API)")
    if "wait" in known and known["wait"] not in JOB_WAITS:
        bad("wait", f"{known['wait']!r} is not one of {', '.join(JOB_WAITS)}")
    for prop, low in (("timeout_seconds", 1), ("dashboard_wait_seconds", 0), ("log_tail_lines", 0)):
        value = known.get(prop)
        if prop in known and not (isinstance(value, (int, float)) and value >= low):
            bad(prop, f"{value!r} must be a number >= {low}")
    for prop in ("entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory"):
        value = known.get(prop)
        if value is not None and not (isinstance(value, (int, float)) and value >= 0):
            bad(prop, f"{value!r} must be a number >= 0")
    for prop in _DICT_FIELDS:
        if known.get(prop) is not None and not isinstance(known[prop], dict):
            bad(prop, "must be a mapping")
    metadata = known.get("metadata")
    if isinstance(metadata, dict) and not all(isinstance(v, str) for v in metadata.values()):
        bad("metadata", "values must be strings (Ray job metadata is str -> str)")
    app_name = known.get("serve_app_name")
    if known.get("kind") == "serve" and app_name is None and not _is_unknown(news.get("serve_app_name")):
        bad("serve_app_name", "is required for kind 'serve' (delete removes the app by name)")
    if app_name is not None and not (isinstance(app_name, str) and NAME_RE.match(app_name)):
        bad("serve_app_name", f"{app_name!r} must be 1-63 letters, digits, '.', '_' or '-'")
    prefix = known.get("serve_route_prefix")
    if prefix is not None and not (isinstance(prefix, str) and prefix.startswith("/")):
        bad("serve_route_prefix", f"{prefix!r} must start with '/'")
    return failures


def _comparable(name: str, value: Any) -> Any:
    value = _plain(value)
    if name == "runtime_env":
        return canonical_runtime_env(value)
    if name in _DICT_FIELDS:
        return _canon(value or {})
    return _canon(value)


def diff_props(olds: Mapping[str, Any], news: Mapping[str, Any]) -> pulumi.dynamic.DiffResult:
    changed = [name for name in INPUT_FIELDS
               if _is_unknown(news.get(name)) or _comparable(name, olds.get(name)) != _comparable(name, news.get(name))]
    replaces = [name for name in changed if name in IDENTITY_FIELDS]
    # Replacing a Serve job re-deploys the same app name: remove the old app first.
    serve = "serve" in (_plain(olds.get("kind")), _plain(news.get("kind")))
    return pulumi.dynamic.DiffResult(
        changes=bool(changed),
        replaces=replaces,
        stables=[] if replaces else ["submission_id", "job_url"],
        delete_before_replace=bool(replaces) and serve,
    )


@contextmanager
def token_safe_errors(token: str | None) -> Iterator[None]:
    """Re-raise failures with the auth token masked.

    Pulumi prints the provider's traceback, chained exceptions included, so an
    exception that could carry the token is replaced without its chain.
    """
    try:
        yield
    except RayJobError as exc:
        if token and token in str(exc):
            raise type(exc)(redact(str(exc), token)) from None
        raise
    except Exception as exc:
        if not token:
            raise
        raise RayJobError(redact(f"{type(exc).__name__}: {exc}", token)) from None


def _inputs(props: Mapping[str, Any]) -> dict[str, Any]:
    return {name: props[name] for name in INPUT_FIELDS if name in props}


class RayJobProvider(pulumi.dynamic.ResourceProvider):
    def check(self, _olds: dict[str, Any], news: dict[str, Any]) -> pulumi.dynamic.CheckResult:
        failures = [pulumi.dynamic.CheckFailure(prop, reason) for prop, reason in check_failures(news)]
        return pulumi.dynamic.CheckResult(news, failures)

    def diff(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.DiffResult:
        return diff_props(_olds, _news)

    def create(self, props: dict[str, Any]) -> pulumi.dynamic.CreateResult:
        args = args_from_props(props)
        with token_safe_errors(cast("str | None", args.auth_token)), reach(args) as url:
            outs = run_job(args, url)
        # Inputs go back into the state too: diff, read and delete only ever see outputs.
        return pulumi.dynamic.CreateResult(outs["submission_id"], {**_inputs(props), **outs})

    def update(self, _id: str, _olds: dict[str, Any], _news: dict[str, Any]) -> pulumi.dynamic.UpdateResult:
        args = args_from_props(_news)
        with token_safe_errors(cast("str | None", args.auth_token)), reach(args) as url:
            outs = refresh_job(args, url, _id, _olds, apply_wait=True)
        return pulumi.dynamic.UpdateResult({**_inputs(_news), **outs})

    def read(self, id_: str, props: dict[str, Any]) -> pulumi.dynamic.ReadResult:
        args = args_from_props(props)
        with token_safe_errors(cast("str | None", args.auth_token)), reach(args) as url:
            outs = refresh_job(args, url, id_, props, apply_wait=False)
        return pulumi.dynamic.ReadResult(id_, {**_inputs(props), **outs})

    def delete(self, _id: str, _props: dict[str, Any]) -> None:
        args = args_from_props(_props)
        with token_safe_errors(cast("str | None", args.auth_token)), reach(args) as url:
            delete_job(args, url, _id)


class RayJob(pulumi.dynamic.Resource, name="RayJob"):
    """One Ray job run as a post-deploy step; replaced when its code or spec changes."""

    submission_id: pulumi.Output[str]
    status: pulumi.Output[str | None]
    message: pulumi.Output[str | None]
    dashboard_url: pulumi.Output[str]
    job_url: pulumi.Output[str]
    result: pulumi.Output[dict[str, Any]]
    endpoint: pulumi.Output[str | None]
    start_time: pulumi.Output[str | None]
    end_time: pulumi.Output[str | None]

    def __init__(self, name: str, args: RayJobArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        props = props_of(args)
        for secret in SECRET_FIELDS:
            if props[secret] is not None:
                # Kept in the state (delete and refresh must authenticate) but always encrypted there.
                props[secret] = pulumi.Output.secret(props[secret])
        props.update({name_: None for name_ in OUTPUT_FIELDS if name_ not in props})
        opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(additional_secret_outputs=list(SECRET_FIELDS)))
        super().__init__(RayJobProvider(), name, props, opts)
