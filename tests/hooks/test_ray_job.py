"""The post-deploy hook (components/hooks/ray_job.py over components/clients/ray_jobs.py), against
a real local Ray head (and under Pulumi mocks).

The provider's methods are called directly with the property bags the engine
would send; throwaway job scripts live under a temporary directory.
"""
from __future__ import annotations

import base64
import http.server
import pickle
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dill
import pulumi
import pytest
import requests
from pulumi.dynamic.dynamic import serialize_provider
from pulumi.runtime import rpc

from components.clients.ray_dashboard import (
    DashboardUnreachable, JobClient, JobFailed, JobTimeout, RayJobError, remove_serve_app,
)
from components.clients.ray_jobs import INPUT_FIELDS, OUTPUT_FIELDS, RayJobArgs
from components.hooks.ray_job import RayJob, RayJobProvider, check_failures, diff_props
from components.specs.digest import submission_id_for
from tools.local_ray import LocalRay, free_port

ROOT = Path(__file__).resolve().parents[2]
PY = sys.executable  # the head's PATH need not have this venv's python first

pytestmark = pytest.mark.timeout(120)

SCRIPTS = {
    "ok.py": """
        print("training...")
        print('ray-platform-result: {"accuracy": 0.5}')
        print('ray-platform-result: {"accuracy": 0.97, "epochs": 2}')
    """,
    "fail.py": """
        import os
        for i in range(30):
            print(f"step {i}")
        print("leaked:", os.environ.get("LEAK", ""))
        raise SystemExit("boom: the known failure")
    """,
    "sleep.py": """
        import time
        print("sleeping", flush=True)
        time.sleep(300)
    """,
    "serve_app.py": """
        import sys
        from ray import serve

        @serve.deployment(ray_actor_options={"num_cpus": 0})
        class Echo:
            def __call__(self, request) -> str:
                return "ok"

        port, name, prefix = int(sys.argv[1]), sys.argv[2], sys.argv[3]
        serve.start(http_options={"host": "127.0.0.1", "port": port})
        serve.run(Echo.bind(), name=name, route_prefix=prefix)
    """,
    "decl_app.py": """
        from ray import serve

        @serve.deployment(ray_actor_options={"num_cpus": 0})
        class Hello:
            def __call__(self, request) -> str:
                return "hello"

        app = Hello.bind()
    """,
}


@pytest.fixture(scope="module")
def job_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rayjob-scripts")
    for name, body in SCRIPTS.items():
        (path / name).write_text(textwrap.dedent(body))
    return path


def make_args(head: LocalRay | None, job_dir: Path | None, job_name: str, script: str = "ok.py",
              **overrides: Any) -> RayJobArgs[Any]:
    values: dict[str, Any] = dict(
        job_name=job_name, kind="core", entrypoint=f"{PY} {script}",
        runtime_env={"working_dir": str(job_dir or "/nonexistent/jobs")}, code_hash="c0ffee",
        dashboard_url=head.dashboard_url if head else "http://127.0.0.1:1",
        timeout_seconds=60, dashboard_wait_seconds=10, log_tail_lines=5,
    )
    values.update(overrides)
    return RayJobArgs(**values)


def engine_props(args: RayJobArgs[Any]) -> dict[str, Any]:
    """The bag the engine sends: None values dropped, every number a protobuf double."""
    props: dict[str, Any] = {}
    for name in INPUT_FIELDS:
        value = getattr(args, name)
        if value is None:
            continue
        props[name] = float(value) if isinstance(value, (int, float)) else value
    return props


def jobs_with_id(head: LocalRay, submission_id: str) -> int:
    return sum(1 for job in JobClient(head.dashboard_url).sdk.list_jobs() if job.submission_id == submission_id)


# --- pure logic -----------------------------------------------------------------

def test_check_reports_each_bad_property() -> None:
    good = engine_props(make_args(None, None, "ok-job"))
    assert check_failures(good) == []
    bad = {**good, "kind": "batch", "wait": "forever", "timeout_seconds": 0.0, "job_name": "bad/name",
           "serve_route_prefix": "no-slash", "metadata": {"x": 1}}
    props = {prop for prop, _ in check_failures(bad)}
    assert props == {"kind", "wait", "timeout_seconds", "job_name", "serve_route_prefix", "metadata"}
    serve = {**good, "kind": "serve"}
    assert [p for p, _ in check_failures(serve)] == ["serve_app_name"]
    # At preview a value wired from another resource is unknown: nothing to judge yet.
    unknown = {**good, "dashboard_url": pulumi.output.Unknown(), "serve_app_name": pulumi.output.Unknown(),
               "kind": "serve"}
    assert check_failures(unknown) == []


def test_diff_replaces_on_identity_and_updates_in_place_otherwise() -> None:
    olds = {**engine_props(make_args(None, Path("/a/jobs"), "train", auth_token="old")), "status": "SUCCEEDED"}

    code = diff_props(olds, engine_props(make_args(None, Path("/a/jobs"), "train", code_hash="new", auth_token="old")))
    assert code.changes and code.replaces == ["code_hash"] and not code.delete_before_replace

    several = diff_props(olds, engine_props(make_args(None, Path("/a/jobs"), "train", script="x.py",
                                                      entrypoint_num_cpus=2, auth_token="old")))
    assert several.replaces == ["entrypoint", "entrypoint_num_cpus"]

    wait_only = diff_props(olds, engine_props(make_args(None, Path("/a/jobs"), "train", wait="none",
                                                        timeout_seconds=9, auth_token="new",
                                                        dashboard_url="http://other:8265")))
    assert wait_only.changes and wait_only.replaces == [] and not wait_only.delete_before_replace

    moved = diff_props(olds, engine_props(make_args(None, Path("/b/jobs"), "train", auth_token="old")))
    assert moved.replaces == []

    same = diff_props(olds, engine_props(make_args(None, Path("/a/jobs"), "train", auth_token="old")))
    assert not same.changes and same.replaces == []

    unknown = {**engine_props(make_args(None, Path("/a/jobs"), "train", auth_token="old")),
               "entrypoint": pulumi.output.Unknown()}
    assert diff_props(olds, unknown).replaces == ["entrypoint"]

    serve_old = engine_props(make_args(None, Path("/a/jobs"), "web", kind="serve", serve_app_name="web"))
    serve_new = engine_props(make_args(None, Path("/a/jobs"), "web", kind="serve", serve_app_name="web",
                                       code_hash="new"))
    assert diff_props(serve_old, serve_new).delete_before_replace


def test_an_unreachable_dashboard_fails_create_within_its_bound() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(DashboardUnreachable, match=r"did not answer GET /api/version within 1s"):
        RayJobProvider().create(engine_props(make_args(None, None, "nowhere", dashboard_url=url,
                                                       dashboard_wait_seconds=1)))
    assert 1 <= time.monotonic() - started < 3


class _Unauthorized(http.server.BaseHTTPRequestHandler):
    seen_auth: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.seen_auth.append(self.headers.get("Authorization", ""))
        self.send_response(401)
        self.end_headers()

    def log_message(self, *_args: Any) -> None:
        pass


def test_token_is_sent_as_bearer_and_kept_out_of_errors() -> None:
    server = http.server.HTTPServer(("127.0.0.1", 0), _Unauthorized)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_port}"
        with pytest.raises(RayJobError) as err:
            RayJobProvider().create(engine_props(make_args(None, None, "authz", dashboard_url=url,
                                                           auth_token="s3cret-tok")))
    finally:
        server.shutdown()
        server.server_close()
    assert _Unauthorized.seen_auth == ["Bearer s3cret-tok"]
    assert "refused the request (HTTP 401)" in str(err.value) and "s3cret-tok" not in str(err.value)


# --- Pulumi plumbing ------------------------------------------------------------

class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.created: list[pulumi.runtime.MockResourceArgs] = []

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.created.append(args)
        return "train-digits-0123456789ab", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def test_rayjob_constructs_under_mocks() -> None:
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project="ray-platform", stack="test", preview=False)

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        job = RayJob("train-digits", make_args(None, Path("/repo/jobs"), "train-digits",
                                               auth_token=pulumi.Output.secret("tok"),
                                               dashboard_url=pulumi.Output.from_input("http://head:8265")))

        def check(values: list[Any]) -> None:
            urn, token_secret = values
            assert urn.endswith("::train-digits") and "pulumi-python:dynamic:RayJob" in urn
            assert token_secret
            inputs = mocks.created[0].inputs
            assert inputs["code_hash"] == "c0ffee" and inputs["dashboard_url"] == "http://head:8265"
            # The token reaches the engine as a secret, so the state stores it encrypted.
            assert rpc.is_rpc_secret(inputs["auth_token"])
            provider = dill.loads(base64.b64decode(rpc.unwrap_rpc_secret(inputs["__provider"])))
            assert isinstance(provider, RayJobProvider)

        return pulumi.Output.all(job.urn, pulumi.Output.from_input(job.auth_token.is_secret())).apply(check)

    build()


def test_provider_pickles_and_loads_where_pulumi_runs_it() -> None:
    provider = RayJobProvider()
    assert isinstance(pickle.loads(pickle.dumps(provider)), RayJobProvider)
    # Pulumi's own serializer, loaded by a fresh interpreter in the project directory
    # as the dynamic-provider plugin does; loading must not import ray.
    blob = serialize_provider(provider)
    code = ("import base64, sys, dill; p = dill.loads(base64.b64decode(sys.stdin.read())); "
            "print(type(p).__name__, 'ray' in sys.modules)")
    out = subprocess.run([PY, "-c", code], input=blob, text=True, capture_output=True, cwd=ROOT, check=True)
    assert out.stdout.split() == ["RayJobProvider", "False"]


# --- against the real head ------------------------------------------------------

def test_create_is_idempotent_and_parses_the_result(ray_head: LocalRay, job_dir: Path) -> None:
    provider = RayJobProvider()
    props = engine_props(make_args(ray_head, job_dir, "idem"))
    first = provider.create(props)
    second = provider.create(props)
    assert first.id == second.id == submission_id_for(vars(make_args(ray_head, job_dir, "idem")))
    assert jobs_with_id(ray_head, first.id) == 1
    outs = first.outs or {}
    assert outs["status"] == "SUCCEEDED"
    assert outs["result"] == {"accuracy": 0.97, "epochs": 2}
    assert outs["job_url"] == f"{ray_head.dashboard_url}/#/jobs/{first.id}"
    assert outs["endpoint"] is None and outs["start_time"].endswith("Z") and outs["end_time"]
    assert set(OUTPUT_FIELDS) <= set(outs) and outs["code_hash"] == "c0ffee"

    # update re-reads (no new submission) even when the wait policy changes.
    news = engine_props(make_args(ray_head, job_dir, "idem", wait="none", timeout_seconds=5))
    assert diff_props(outs, news).replaces == []
    updated = provider.update(first.id, outs, news).outs or {}
    assert updated["submission_id"] == first.id and updated["status"] == "SUCCEEDED"
    assert jobs_with_id(ray_head, first.id) == 1


def test_failed_job_raises_with_its_message_and_log_tail(ray_head: LocalRay, job_dir: Path) -> None:
    token = "tok-leaky-0042"
    args = make_args(ray_head, job_dir, "failing", script="fail.py", auth_token=token,
                     runtime_env={"working_dir": str(job_dir), "env_vars": {"LEAK": token}})
    with pytest.raises(JobFailed) as err:
        RayJobProvider().create(engine_props(args))
    text = str(err.value)
    sid = submission_id_for(vars(args))
    assert f"Ray job 'failing' (submission id {sid}) ended FAILED" in text
    assert "exit code 1" in text and "boom: the known failure" in text
    assert "step 29" in text and "step 20" not in text  # only the last 5 lines
    assert token not in text and "leaked: ***" in text

    # Ray never reuses an id: a re-run after a failure is a new attempt, not the old failure.
    with pytest.raises(JobFailed) as again:
        RayJobProvider().create(engine_props(args))
    assert f"{sid}-r2" in str(again.value)


def test_timeout_names_the_job_and_says_it_keeps_running(ray_head: LocalRay, job_dir: Path) -> None:
    # 15 s: long enough for the job to leave PENDING (its runtime env set up) on a loaded machine.
    args = make_args(ray_head, job_dir, "slow", script="sleep.py", timeout_seconds=15)
    sid = submission_id_for(vars(args))
    started = time.monotonic()
    with pytest.raises(JobTimeout) as err:
        RayJobProvider().create(engine_props(args))
    # The timeout, not the job (it sleeps 300 s), ends the wait; the bound leaves room for a loaded
    # machine's submission and log fetch, far below any of the hook's default waits.
    assert time.monotonic() - started < 60
    text = str(err.value)
    assert f"'slow' (submission id {sid}) did not finish within 15s" in text
    assert "last status RUNNING" in text and "keeps running" in text and f"stop {sid}" in text
    client = JobClient(ray_head.dashboard_url)
    assert client.sdk.get_job_status(sid) == "RUNNING"
    RayJobProvider().delete(sid, engine_props(args))
    assert client.sdk.get_job_status(sid) == "STOPPED"


def test_delete_stops_a_running_job(ray_head: LocalRay, job_dir: Path) -> None:
    props = engine_props(make_args(ray_head, job_dir, "sleeper", script="sleep.py", wait="running"))
    created = RayJobProvider().create(props)
    assert (created.outs or {})["status"] == "RUNNING"
    RayJobProvider().delete(created.id, created.outs or {})
    assert JobClient(ray_head.dashboard_url).sdk.get_job_status(created.id) == "STOPPED"
    RayJobProvider().delete(created.id, created.outs or {})  # already stopped: fine


def test_read_of_a_vanished_job_keeps_the_last_known_state(ray_head: LocalRay, job_dir: Path) -> None:
    last = {**engine_props(make_args(ray_head, job_dir, "vanished")), "submission_id": "vanished-000000000000",
            "status": "SUCCEEDED", "result": {"accuracy": 0.9}, "start_time": "2025-01-01T00:00:00Z"}
    read = RayJobProvider().read("vanished-000000000000", last)
    assert read.id == "vanished-000000000000"
    outs = read.outs or {}
    assert outs["status"] == "SUCCEEDED" and outs["result"] == {"accuracy": 0.9}
    assert outs["start_time"] == "2025-01-01T00:00:00Z"
    RayJobProvider().delete("vanished-000000000000", last)  # gone is not an error


def _serve_apps(head: LocalRay) -> dict[str, Any]:
    return requests.get(f"{head.dashboard_url}/api/serve/applications/", timeout=30).json()["applications"]


def _deploy_declarative(head: LocalRay, name: str, working_dir_uri: str, port: int) -> None:
    """Deploy an app the way `serve deploy` does, reusing code a job already uploaded."""
    config = {"applications": [{"name": name, "route_prefix": f"/{name}", "import_path": "decl_app:app",
                                "runtime_env": {"working_dir": working_dir_uri}}],
              "http_options": {"host": "127.0.0.1", "port": port}}
    requests.put(f"{head.dashboard_url}/api/serve/applications/", json=config, timeout=30).raise_for_status()
    deadline = time.monotonic() + 60
    while _serve_apps(head).get(name, {}).get("status") != "RUNNING":
        assert time.monotonic() < deadline, _serve_apps(head).get(name)
        time.sleep(0.5)


@pytest.fixture
def serve_port(ray_head: LocalRay) -> Iterator[int]:
    yield ray_head.serve_port
    # Whatever happened, leave no Serve replicas or proxy behind for later tests.
    requests.delete(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=60)


def test_serve_apps_are_removed_one_at_a_time(ray_head: LocalRay, job_dir: Path, serve_port: int) -> None:
    """Imperative app among others: helper job; declarative app: PUT without it; last app: DELETE."""
    base = f"http://127.0.0.1:{serve_port}"

    def serve_args(app: str) -> RayJobArgs[Any]:
        return make_args(ray_head, job_dir, f"serve-{app}", script=f"serve_app.py {serve_port} {app} /{app}",
                         kind="serve", serve_app_name=app, serve_endpoint_base=base, timeout_seconds=90)

    provider = RayJobProvider()
    created = {app: provider.create(engine_props(serve_args(app))) for app in ("alpha", "beta")}
    alpha = created["alpha"].outs or {}
    assert alpha["endpoint"] == f"{base}/alpha" and alpha["status"] == "SUCCEEDED"
    assert requests.get(alpha["endpoint"], timeout=10).text == "ok"
    client = JobClient(ray_head.dashboard_url)
    uploaded = (client.info(created["alpha"].id).runtime_env or {})["working_dir"]
    _deploy_declarative(ray_head, "gamma", uploaded, serve_port)
    assert set(_serve_apps(ray_head)) == {"alpha", "beta", "gamma"}

    provider.delete(created["alpha"].id, alpha)
    assert set(_serve_apps(ray_head)) == {"beta", "gamma"}
    remove_serve_app(client, "gamma", PY)
    assert set(_serve_apps(ray_head)) == {"beta"}
    assert requests.get(f"{base}/beta", timeout=10).text == "ok"

    provider.delete(created["beta"].id, created["beta"].outs or {})
    assert _serve_apps(ray_head) == {}

