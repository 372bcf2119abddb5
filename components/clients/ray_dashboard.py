"""Talking to a Ray dashboard: the Job SDK, the Serve REST API, and waiting on both.

Used by the post-deploy hook (components/clients/ray_jobs.py), `make jobs` (tools/monitor.py) and
the benchmarks, none of which need Pulumi for it. `ray` is imported only when a `JobClient` is
made, so loading this module (as the pickled hook provider does) stays cheap.
"""
from __future__ import annotations

import os
import re
import shlex
import threading
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any, cast

import requests

from components.clients.polling import SYSTEM_CLOCK, Backoff, Clock, Deadline, attempts
from components.constants import METADATA_KIND

if TYPE_CHECKING:
    from ray.job_submission import JobDetails, JobSubmissionClient

TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# A re-run of `pulumi up` retries these instead of adopting them.
RETRYABLE = frozenset({"FAILED", "STOPPED"})

ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")
# How the Job SDK words an HTTP error (a RuntimeError): throttled or a server/gateway failure,
# which a restarting head, an ingress or the API-server tunnel answer for a moment.
TRANSIENT_HTTP_RE = re.compile(r"status code (429|5\d\d)\b")
ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")]+")

# Most post-deploy waits are short: poll at the first interval for 30 s before backing
# off, so a quick job is not reported up to a full backoff step late (bench/: hook overhead).
JOB_POLL = Backoff(first_s=0.5, max_s=5.0, factor=1.5, steady_s=30.0)
# The dashboard, and its job agent, of a head that is still starting.
DASHBOARD_BACKOFF = Backoff(first_s=0.5, max_s=15.0)
REQUEST_TIMEOUT_S = 30.0
STOP_WAIT_S = 30.0
SERVE_REMOVE_WAIT_S = 120.0
# The Job SDK lets these, when set in this process's environment, replace the address it is given
# (Ray 2.60, ray/dashboard/utils.py: get_address_for_submission_client). Someone who exported
# RAY_ADDRESS for the ray CLI (`tools.local env` prints it) would have the hook submit a stack's jobs
# to that cluster, past the API-server tunnel, while its Serve calls went where the stack says.
SDK_ADDRESS_ENV = ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS")
_SDK_ENV_LOCK = threading.Lock()


class RayJobError(RuntimeError):
    """A failure the user can act on; the message is the whole story."""


class DashboardUnreachable(RayJobError):
    pass


class JobFailed(RayJobError):
    pass


class JobTimeout(RayJobError):
    pass


class DashboardBusy(RayJobError):
    """The dashboard (or what stands in front of it) answered 429 or 5xx: try again."""


# --- pure helpers -----------------------------------------------------------------

def log_tail(logs: str, lines: int) -> str:
    if lines <= 0:
        return ""
    return "\n".join(ANSI_RE.sub("", logs).rstrip("\n").splitlines()[-lines:])


def job_url(dashboard_url: str, submission_id: str) -> str:
    return f"{dashboard_url.rstrip('/')}/#/jobs/{submission_id}"


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


def is_transient(exc: BaseException) -> bool:
    """A failure to read the dashboard that the next poll may not see: no connection, a timeout, 429 or 5xx."""
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, DashboardBusy)):
        return True
    return type(exc) is RuntimeError and bool(TRANSIENT_HTTP_RE.search(str(exc)))


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


# --- talking to the dashboard -----------------------------------------------------

def wait_for_dashboard(url: str, token: str | None, max_wait_s: float, clock: Clock = SYSTEM_CLOCK) -> None:
    """Poll GET /api/version with exponential backoff until it answers.

    A fresh RayCluster's head takes a while to come up after its resource is
    "created", so the hook waits, but within a bound and with a message that says
    what to check.
    """
    deadline = Deadline(max_wait_s, clock)
    last_error = "no answer"
    for attempt in attempts(DASHBOARD_BACKOFF, deadline):
        try:
            resp = requests.get(f"{url.rstrip('/')}/api/version", headers=auth_headers(token),
                                timeout=max(0.5, min(5.0, deadline.remaining())))
            if resp.status_code in (401, 403):
                raise RayJobError(f"Ray dashboard at {url} refused the request (HTTP {resp.status_code}): "
                                  "check the auth token.")
            if resp.ok:
                return
            last_error = f"HTTP {resp.status_code}"
        except requests.RequestException as exc:
            last_error = short_error(exc)
    raise DashboardUnreachable(
        f"Ray dashboard at {url} did not answer GET /api/version within {max_wait_s:g}s "
        f"({attempt} attempts over {deadline.elapsed():.1f}s; last error: {last_error}). "
        "Check that the Ray head is running and that this URL is reachable from this machine "
        "(service URL or port-forward).")


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
        # The SDK reads its address once, here: it is made with the overriding variables out of the
        # environment (under a lock, so two clients made at once restore what was there).
        with _SDK_ENV_LOCK:
            hidden = {name: os.environ.pop(name) for name in SDK_ADDRESS_ENV if name in os.environ}
            try:
                # The SDK adds its own auth header into the dict it is given: hand it a copy.
                self.sdk: JobSubmissionClient = JobSubmissionClient(self.url, headers=dict(self._headers))
            finally:
                os.environ.update(hidden)

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
        error = DashboardBusy if resp.status_code == 429 or resp.status_code >= 500 else RayJobError
        raise error(f"Ray dashboard {what} failed with HTTP {resp.status_code}: {resp.text[:1000]}")


def submit(client: JobClient, deadline: Deadline, **job: Any) -> None:
    """`submit_job(**job)`, retried until `deadline` while the dashboard has no job agent yet or
    the request failed transiently (`is_transient`: a dashboard under load drops connections).

    A retry is safe: the submission id is deterministic, so a first attempt that did get through
    makes the retry fail with "already exists", which the caller takes as its own job."""
    no_agent, failure = False, ""
    for _ in attempts(DASHBOARD_BACKOFF, deadline):
        try:
            client.sdk.submit_job(**job)
            return
        except Exception as exc:
            # A fresh head answers /api/version before its job agent has registered;
            # until then the dashboard refuses submissions (after a 10 s wait of its own).
            no_agent = "No available agent" in str(exc)
            if not (no_agent or is_transient(exc)):
                raise
            failure = short_error(exc)
    if not no_agent:
        raise DashboardUnreachable(f"Ray dashboard at {client.public_url}: no submission got through in "
                                   f"{deadline.elapsed():.0f}s (last error: {failure}).")
    raise DashboardUnreachable(
        f"Ray dashboard at {client.public_url} answers but has no job agent to run submissions "
        f"(tried for {deadline.elapsed():.0f}s). The head's dashboard agent is not up: see "
        "dashboard_agent.log on the head (locally, another Ray head on this machine may hold the "
        "agent's port, 52365 by default).")


def poll_job(client: JobClient, submission_id: str, targets: frozenset[str], deadline: Deadline) -> JobDetails:
    """Poll until the status is in `targets` or terminal, or the deadline passes; returns the last details.

    A transient failure to read (`is_transient`) is retried within the deadline; when no poll got
    through at all, DashboardUnreachable says what the last one saw."""
    info: JobDetails | None = None
    failure = ""
    for _ in attempts(JOB_POLL, deadline):
        try:
            info = client.info(submission_id)
        except Exception as exc:
            if not is_transient(exc):
                raise
            failure = short_error(exc)
            continue
        if info is None:
            raise RayJobError(f"Ray job {submission_id} disappeared from the cluster while waiting for it "
                              "(did the Ray head restart? Ray keeps no job history across restarts).")
        if info.status in targets or info.status in TERMINAL:
            return info
    if info is None:
        raise DashboardUnreachable(f"Ray job {submission_id}: no read of its status got through in "
                                   f"{deadline.elapsed():.0f}s (last error: {failure}).")
    return info


def wait_for_serve_app(client: JobClient, app_name: str, job_name: str, deadline: Deadline) -> dict[str, Any]:
    """Wait until job `job_name`'s Serve application is RUNNING; returns its details."""
    apps: dict[str, Any] = {}
    app: dict[str, Any] | None = None
    for _ in attempts(JOB_POLL, deadline):
        try:
            apps = client.serve_details().get("applications") or {}
        except Exception as exc:
            if not is_transient(exc):
                raise
            continue
        app = apps.get(app_name)
        if app is not None and app.get("status") == "RUNNING":
            return cast(dict[str, Any], app)
        if app is not None and app.get("status") == "DEPLOY_FAILED":
            raise JobFailed(f"Serve application '{app_name}' of Ray job '{job_name}' failed to deploy: "
                            f"{app.get('message') or 'no message'}")
    state = (f"status {app.get('status')}: {app.get('message') or 'no message'}" if app is not None
             else f"no such application; the cluster has {sorted(apps) or 'none'}: does the job "
                  f"deploy with name='{app_name}'?")
    raise JobTimeout(f"Serve application '{app_name}' of Ray job '{job_name}' is not RUNNING "
                     f"after {deadline.elapsed():.0f}s ({state}). See `make jobs ARGS=serve`.")


def stop_job(client: JobClient, submission_id: str, wait_s: float = STOP_WAIT_S,
             clock: Clock = SYSTEM_CLOCK) -> str | None:
    """Stop a job that is not terminal and wait for it to end; returns the final status (None: gone)."""
    info = client.info(submission_id)
    if info is None or info.status in TERMINAL:
        return None if info is None else status_of(info)
    client.sdk.stop_job(submission_id)
    info = poll_job(client, submission_id, TERMINAL, Deadline(wait_s, clock))
    if info.status not in TERMINAL:
        raise RayJobError(f"Ray job {submission_id} is still {status_of(info)} {wait_s:g}s after it was "
                          "asked to stop; try again, or stop it with `ray job stop`.")
    return status_of(info)


def remove_serve_app(client: JobClient, app_name: str, python: str, wait_s: float = SERVE_REMOVE_WAIT_S,
                     clock: Clock = SYSTEM_CLOCK) -> None:
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
        _run_serve_delete_job(client, app_name, python, Deadline(wait_s, clock))
    for _ in attempts(JOB_POLL, Deadline(wait_s, clock)):
        if app_name not in (client.serve_details().get("applications") or {}):
            return
    raise RayJobError(f"Serve application '{app_name}' is still present {wait_s:g}s after its removal "
                      "was requested; see `make jobs ARGS=serve`.")


def _run_serve_delete_job(client: JobClient, app_name: str, python: str, deadline: Deadline) -> None:
    code = f"from ray import serve; serve.delete({app_name!r})"
    submission_id = f"serve-delete-{app_name}-{uuid.uuid4().hex[:8]}"
    client.sdk.submit_job(entrypoint=f"{python} -c {shlex.quote(code)}", submission_id=submission_id,
                          metadata={METADATA_KIND: "core"})
    info = poll_job(client, submission_id, TERMINAL, deadline)
    if info.status != "SUCCEEDED":
        raise RayJobError(f"Removing Serve application '{app_name}' (helper job {submission_id}) ended "
                          f"{status_of(info)}: {status_head(info.message)}\n"
                          f"{log_tail(client.logs(submission_id), 20)}")
