"""A job whose cluster is gone (components/clients/ray_jobs.py): `destroy` and `refresh` give it a
short bound, then succeed with a warning instead of failing or waiting out `dashboard_wait_seconds`.
The same functions against a real head run through the hook, in tests/hooks/test_ray_job.py."""
from __future__ import annotations

import time

import pytest

from components.clients import ray_jobs
from components.clients.ray_jobs import RayJobArgs, delete_or_forget, read_or_keep
from tools.local_ray import free_port

LAST = {"submission_id": "stats-0123456789ab", "status": "RUNNING", "message": "Job is currently running.",
        "result": {}, "job_url": "http://gone:8265/#/jobs/stats-0123456789ab"}


@pytest.fixture
def gone() -> RayJobArgs[str]:
    # The create-time bound is ten minutes; nobody listens on the port.
    return RayJobArgs(job_name="stats", kind="core", entrypoint="python -m jobs.core", runtime_env={},
                      code_hash="c" * 64, dashboard_url=f"http://127.0.0.1:{free_port()}", auth_token="tok-9",
                      dashboard_wait_seconds=600)


@pytest.fixture(autouse=True)
def short_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ray_jobs, "GONE_WAIT_S", 1)


def test_deleting_a_job_whose_cluster_is_gone_succeeds_promptly_with_a_warning(gone: RayJobArgs[str]) -> None:
    started = time.monotonic()
    warning = delete_or_forget(gone, LAST["submission_id"])
    assert time.monotonic() - started < 10
    assert warning is not None
    assert "Ray job 'stats' (stats-0123456789ab): its cluster is gone or unreachable" in warning
    assert "did not answer GET /api/version within 1s" in warning
    assert "Nothing was stopped" in warning and "ray job stop stats-0123456789ab" in warning


def test_refreshing_a_job_whose_cluster_is_gone_keeps_its_last_state(gone: RayJobArgs[str]) -> None:
    started = time.monotonic()
    outs, warning = read_or_keep(gone, LAST["submission_id"], LAST)
    assert time.monotonic() - started < 10
    assert outs["status"] == "RUNNING" and outs["job_url"] == LAST["job_url"]
    assert set(outs) == set(ray_jobs.OUTPUT_FIELDS)
    assert warning is not None and "Its last known state is kept." in warning
