"""The Ray dashboard client (components/clients/ray_dashboard.py): pure helpers, its waits on a
fake clock against a port nobody listens on or a stand-in client, and which dashboard its Job SDK
talks to (a stand-in one). The real-head tests of the same code run through the hook, in
tests/hooks/test_ray_job.py."""
from __future__ import annotations

import http.server
import importlib.metadata
import json
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import requests

from components.clients.polling import Deadline
from components.clients.ray_dashboard import (
    DashboardUnreachable, JobClient, RayJobError, config_without_app, log_tail, poll_job, submit,
    wait_for_dashboard,
)
from tests.clock import FakeClock
from tools.local_ray import free_port


def test_log_tail_strips_colours() -> None:
    assert log_tail("\x1b[36mone\x1b[0m\ntwo\nthree\n", 2) == "two\nthree"


def test_config_without_app_keeps_other_declarative_apps() -> None:
    details = {
        "http_options": {"host": "127.0.0.1", "port": 8000}, "proxy_location": "EveryNode",
        "grpc_options": {}, "target_capacity": None,
        "applications": {
            "a": {"source": "declarative", "deployed_app_config": {"name": "a", "import_path": "m:a"}},
            "b": {"source": "declarative", "deployed_app_config": {"name": "b", "import_path": "m:b"}},
            "c": {"source": "imperative", "deployed_app_config": None},
        },
    }
    assert config_without_app(details, "a") == {
        "applications": [{"name": "b", "import_path": "m:b"}],
        "http_options": {"host": "127.0.0.1", "port": 8000}, "grpc_options": {}, "proxy_location": "EveryNode",
    }


def test_dashboard_wait_gives_up_within_its_bound() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    clock = FakeClock()
    with pytest.raises(DashboardUnreachable) as err:
        wait_for_dashboard(url, "tok-123", 2, clock)
    # 0.5, 1, then what is left of the 2 s: four attempts, the last one at the bound.
    assert clock.sleeps == [0.5, 1.0, 0.5] and clock.now() == 2
    text = str(err.value)
    assert url in text and "within 2s" in text and "4 attempts over 2.0s" in text
    assert "Connection refused" in text and "tok-123" not in text


class _Dashboard(http.server.BaseHTTPRequestHandler):
    """What the Job SDK asks of a dashboard before and while listing jobs."""
    paths: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.paths.append(self.path)
        version = {"ray_version": importlib.metadata.version("ray")}
        body = json.dumps(version if self.path == "/api/version" else []).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_args: Any) -> None:
        pass


@pytest.fixture
def dashboard() -> Iterator[str]:
    _Dashboard.paths = []
    server = http.server.HTTPServer(("127.0.0.1", 0), _Dashboard)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize("variable", ("RAY_API_SERVER_ADDRESS", "RAY_ADDRESS"))
def test_job_client_talks_to_its_dashboard_whatever_the_environment_names(
        dashboard: str, variable: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # The Job SDK on its own would use the variable's cluster instead (here nobody listens there).
    elsewhere = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv(variable, elsewhere)
    client = JobClient(dashboard)
    assert client.sdk.get_address() == dashboard
    assert client.sdk.list_jobs() == []
    assert "/api/jobs/" in _Dashboard.paths
    assert os.environ[variable] == elsewhere  # left as it was, for the ray CLI


@dataclass
class _Details:
    status: str


class _ScriptedClient:
    """`info` answers from a script; the rest of JobClient is not needed by poll_job."""

    def __init__(self, *statuses: str | Exception | None) -> None:
        self.statuses = list(statuses)

    def info(self, _submission_id: str) -> _Details | None:
        status = self.statuses.pop(0) if len(self.statuses) > 1 else self.statuses[0]
        if isinstance(status, Exception):
            raise status
        return None if status is None else _Details(status)


def poll(client: _ScriptedClient, targets: frozenset[str], deadline: Deadline) -> Any:
    return poll_job(client, "job-1", targets, deadline)  # type: ignore[arg-type]


def test_poll_job_returns_on_a_target_or_terminal_status_or_at_the_deadline() -> None:
    clock = FakeClock()
    running = poll(_ScriptedClient("PENDING", "PENDING", "RUNNING"), frozenset({"RUNNING"}), Deadline(60, clock))
    assert running.status == "RUNNING" and clock.sleeps == [0.5, 0.5]
    assert poll(_ScriptedClient("PENDING", "FAILED"), frozenset({"RUNNING"}), Deadline(60, clock)).status == "FAILED"

    clock = FakeClock()
    assert poll(_ScriptedClient("RUNNING"), frozenset({"SUCCEEDED"}), Deadline(10, clock)).status == "RUNNING"
    assert clock.now() == 10 and len(clock.sleeps) == 20

    with pytest.raises(RayJobError, match=r"Ray job job-1 disappeared from the cluster"):
        poll(_ScriptedClient("RUNNING", None), frozenset({"SUCCEEDED"}), Deadline(10, FakeClock()))



# What the Job SDK raises while the dashboard, an ingress or the API-server tunnel in front of it
# restarts: the connection refused or dropped, a gateway's 502/503, throttling.
TRANSIENT = [requests.ConnectionError("Connection refused"), RuntimeError("Request failed with status code 502: "),
             requests.ReadTimeout("read timed out"), RuntimeError("Request failed with status code 429: slow down")]


def test_poll_job_retries_transient_failures_within_the_deadline() -> None:
    clock = FakeClock()
    info = poll(_ScriptedClient("PENDING", *TRANSIENT, "SUCCEEDED"), frozenset({"SUCCEEDED"}), Deadline(60, clock))
    assert info.status == "SUCCEEDED" and len(clock.sleeps) == 5
    # Past the deadline: the last status read, for the caller's timeout message.
    assert poll(_ScriptedClient("RUNNING", TRANSIENT[0]), frozenset({"SUCCEEDED"}),
                Deadline(10, FakeClock())).status == "RUNNING"
    with pytest.raises(DashboardUnreachable, match=r"no read of its status got through in 10s "
                                                   r"\(last error: ConnectionError: Connection refused\)"):
        poll(_ScriptedClient(TRANSIENT[0]), frozenset({"SUCCEEDED"}), Deadline(10, FakeClock()))


@pytest.mark.parametrize("error", [RuntimeError("Request failed with status code 400: bad id"),
                                   RayJobError("Ray job gone"), ValueError("not a job")])
def test_poll_job_fails_at_once_on_a_failure_that_is_not_transient(error: Exception) -> None:
    clock = FakeClock()
    with pytest.raises(type(error)):
        poll(_ScriptedClient(error), frozenset({"SUCCEEDED"}), Deadline(60, clock))
    assert clock.sleeps == []


class _ScriptedSubmitter:
    """`sdk.submit_job` raises what the script says, then accepts; records each call."""

    def __init__(self, *errors: Exception) -> None:
        self.errors = list(errors)
        self.calls = 0
        self.sdk = self
        self.public_url = "http://head:8265"

    def submit_job(self, **_job: Any) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "job-1"


def test_submit_retries_a_dropped_connection_and_a_busy_dashboard_within_the_deadline() -> None:
    """A dashboard under load closes a submission's connection (seen in `make bench` at a load
    average of 30): the hook submits again under the same id instead of failing `pulumi up`."""
    client = _ScriptedSubmitter(requests.ConnectionError("Remote end closed connection without response"),
                                RuntimeError("Request failed with status code 503: "),
                                RuntimeError("No available agent to submit job"))
    submit(client, Deadline(60, FakeClock()), entrypoint="true", submission_id="job-1")  # type: ignore[arg-type]
    assert client.calls == 4


def test_submit_gives_up_at_the_deadline_naming_the_last_error_or_fails_at_once() -> None:
    client = _ScriptedSubmitter(*[requests.ConnectionError("Connection refused")] * 100)
    with pytest.raises(DashboardUnreachable, match=r"no submission got through in 10s \(last error: "
                                                   r"ConnectionError: Connection refused\)"):
        submit(client, Deadline(10, FakeClock()), entrypoint="true")  # type: ignore[arg-type]
    bad = _ScriptedSubmitter(RuntimeError("Request failed with status code 400: runtime_env is invalid"))
    with pytest.raises(RuntimeError, match="400"):
        submit(bad, Deadline(60, FakeClock()), entrypoint="true")  # type: ignore[arg-type]
    assert bad.calls == 1
