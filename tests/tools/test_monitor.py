"""`python -m tools.monitor`: formatting as pure functions, commands against the real local head."""
from __future__ import annotations

import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobDetails, JobSubmissionClient

from tools.local_ray import LocalRay
from tools.monitor import (
    EXIT_ERROR,
    EXIT_OK,
    EXIT_TIMEOUT,
    EXIT_UNHEALTHY,
    UsageError,
    format_duration,
    format_jobs,
    format_serve,
    format_status,
    main,
    resolve_address,
)

PY = sys.executable  # the head's PATH need not have this venv's python first

pytestmark = pytest.mark.timeout(120)

SCRIPTS = {
    "ok.py": 'print(\'ray-platform-result: {"rows": 100}\')\n',
    "fail.py": 'print("about to fail")\nraise SystemExit("monitor: known failure")\n',
    "sleep.py": 'import time\nprint("sleeping", flush=True)\ntime.sleep(300)\n',
    "chatty.py": textwrap.dedent("""
        import time
        for i in range(3):
            print(f"tick {i}", flush=True)
            time.sleep(0.3)
    """),
}


def job(**fields: Any) -> JobDetails:
    values: dict[str, Any] = dict(type="SUBMISSION", status="SUCCEEDED", entrypoint="python -m jobs.train",
                                  submission_id="train-abc", start_time=1_700_000_000_000,
                                  end_time=1_700_000_065_000, metadata={"ray-platform/kind": "train"})
    values.update(fields)
    return JobDetails(**values)


# --- pure ---------------------------------------------------------------------

def test_format_duration() -> None:
    assert [format_duration(s) for s in (None, -1, 0, 9.6, 65, 3599, 3600, 7325)] == \
        ["-", "-", "0s", "10s", "1m05s", "59m59s", "1h00m", "2h02m"]


def test_format_jobs_sorts_by_start_and_shows_kind_duration_and_short_entrypoint() -> None:
    now = 1_700_000_100_000
    jobs = [
        job(submission_id="late", start_time=1_700_000_050_000, end_time=None, status="RUNNING",
            entrypoint="python -m jobs.serve --config-json '" + "x" * 100 + "'"),
        job(submission_id="pending", start_time=None, end_time=None, status="PENDING", metadata={}),
        job(),
        job(type="DRIVER", submission_id=None, job_id="05000000", metadata={}),
    ]
    lines = format_jobs(jobs, now).splitlines()
    assert lines[0].split() == ["ID", "KIND", "STATUS", "START", "DURATION", "ENTRYPOINT"]
    assert [line.split()[0] for line in lines[1:]] == ["train-abc", "05000000", "late", "pending"]
    assert lines[1].split()[1:5] == ["train", "SUCCEEDED", "2023-11-14T22:13:20Z", "1m05s"]
    assert lines[2].split()[1] == "driver"
    assert lines[3].split()[3:5] == ["2023-11-14T22:14:10Z", "50s"]  # running: until now
    assert lines[3].endswith("...") and len(lines[3].split(None, 5)[5]) == 60
    assert lines[4].split()[1:5] == ["-", "PENDING", "-", "-"]
    assert format_jobs([], now) == "no jobs"


def test_format_status_shows_message_times_and_result() -> None:
    text = format_status(job(status="FAILED", message="Job entrypoint command failed with exit code 1, "
                                                      "last available logs (truncated to 20,000 chars):\nboom"),
                         {"accuracy": 0.97}, 0)
    assert "status:     FAILED" in text
    assert "message:    Job entrypoint command failed with exit code 1\n" in text
    assert "start:      2023-11-14T22:13:20Z" in text and "duration:   1m05s" in text
    assert '"accuracy": 0.97' in text
    assert format_status(job(), {}, 0).endswith("result:     -")


def test_format_serve_reports_health() -> None:
    assert format_serve({"applications": {}}) == ("no Serve applications", True)
    replica = {"state": "RUNNING"}
    details = {"applications": {
        "digits": {"status": "RUNNING", "route_prefix": "/digits", "message": "",
                   "deployments": {"Classifier": {"status": "HEALTHY", "target_num_replicas": 2,
                                                  "replicas": [replica, {"state": "STARTING"}]}}},
        "broken": {"status": "DEPLOY_FAILED", "route_prefix": "/b", "message": "ImportError: no module x",
                   "deployments": {}},
    }}
    text, healthy = format_serve(details)
    assert not healthy
    lines = text.splitlines()
    assert lines[1].split()[:4] == ["broken", "DEPLOY_FAILED", "/b", "-"]
    assert lines[2].split() == ["digits", "RUNNING", "/digits", "Classifier=HEALTHY(1/2)"]
    assert format_serve({"applications": {"digits": details["applications"]["digits"]}})[1]


def test_resolve_address_prefers_flag_then_env_then_local_cluster(tmp_path: Path) -> None:
    state = tmp_path / "build" / "local" / "ray.json"
    env = {"RAY_DASHBOARD_URL": "http://env:8265"}
    assert resolve_address("127.0.0.1:8265", env, state) == "http://127.0.0.1:8265"
    assert resolve_address(None, env, state) == "http://env:8265"
    with pytest.raises(UsageError, match="make local"):
        resolve_address(None, {}, state)
    LocalRay(pid=1, gcs_address="127.0.0.1:1", dashboard_url="http://127.0.0.1:9999", temp_dir="/tmp/x",
             num_cpus=2, metrics_port=2, serve_port=3).save(state)
    assert resolve_address(None, {}, state) == "http://127.0.0.1:9999"


# --- against the real head ----------------------------------------------------

@pytest.fixture(scope="module")
def submit(ray_head: LocalRay, tmp_path_factory: pytest.TempPathFactory) -> Any:
    scripts = tmp_path_factory.mktemp("monitor-scripts")
    for name, body in SCRIPTS.items():
        (scripts / name).write_text(body)
    client = JobSubmissionClient(ray_head.dashboard_url)

    def run(script: str, kind: str = "core") -> str:
        return client.submit_job(entrypoint=f"{PY} {script}", runtime_env={"working_dir": str(scripts)},
                                 metadata={"ray-platform/kind": kind})

    return run


def monitor(head: LocalRay, *args: str) -> int:
    return main(["--address", head.dashboard_url, *args])


def test_list_and_status_show_a_submitted_job(ray_head: LocalRay, submit: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    sid = submit("ok.py", kind="infer")
    assert monitor(ray_head, "wait", sid, "--timeout", "60") == EXIT_OK
    capsys.readouterr()
    assert monitor(ray_head, "list") == EXIT_OK
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith(sid))
    assert row.split()[1:3] == ["infer", "SUCCEEDED"] and "ok.py" in row
    assert main(["status", sid, "--address", ray_head.dashboard_url]) == EXIT_OK  # options after the command
    out = capsys.readouterr().out
    assert "status:     SUCCEEDED" in out and '"rows": 100' in out
    assert monitor(ray_head, "status", "no-such-job") == EXIT_ERROR
    assert "no job 'no-such-job'" in capsys.readouterr().err


def test_wait_exits_non_zero_for_a_failed_job(ray_head: LocalRay, submit: Any,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    sid = submit("fail.py")
    assert monitor(ray_head, "wait", sid, "--timeout", "60") == EXIT_UNHEALTHY
    captured = capsys.readouterr()
    assert f"{sid}: FAILED" in captured.out
    assert "monitor: known failure" in captured.err and "about to fail" in captured.err


def test_wait_times_out_and_stop_stops_a_sleeping_job(ray_head: LocalRay, submit: Any,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    sid = submit("sleep.py")
    started = time.monotonic()
    assert monitor(ray_head, "wait", sid, "--timeout", "2") == EXIT_TIMEOUT
    assert time.monotonic() - started < 10
    assert monitor(ray_head, "stop", sid) == EXIT_OK
    assert f"{sid}: STOPPED" in capsys.readouterr().out
    assert monitor(ray_head, "wait", sid, "--timeout", "5") == EXIT_UNHEALTHY
    assert monitor(ray_head, "stop", sid) == EXIT_OK
    assert "already STOPPED" in capsys.readouterr().out


def test_logs_follow_streams_until_the_job_ends(ray_head: LocalRay, submit: Any,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    sid = submit("chatty.py")
    assert monitor(ray_head, "logs", sid, "--follow") == EXIT_OK
    out = capsys.readouterr().out
    assert all(f"tick {i}" in out for i in range(3))
    assert monitor(ray_head, "logs", sid) == EXIT_OK
    assert "tick 2" in capsys.readouterr().out


def test_serve_with_no_apps_is_healthy(ray_head: LocalRay, capsys: pytest.CaptureFixture[str]) -> None:
    assert monitor(ray_head, "serve") == EXIT_OK
    assert "no Serve applications" in capsys.readouterr().out


def test_unreachable_address_is_a_clear_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--address", "http://127.0.0.1:1", "--connect-timeout", "1", "list"]) == EXIT_ERROR
    assert "did not answer GET /api/version" in capsys.readouterr().err
