"""Local mode end to end: the demo-local stack's jobs through the hook on the real session Ray head."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from components.post_deploy import ray_job_args
from components.ray_job import INPUT_FIELDS, RayJobProvider
from tools.local import key_metric, load_team_stack, run_jobs, summary_table
from tools.local_ray import LocalRay

pytestmark = pytest.mark.ray


def test_demo_stack_runs_train_infer_serve_and_answers_a_query(ray_head: LocalRay, tmp_path: Path) -> None:
    cfg = load_team_stack("demo-local")
    port = ray_head.serve_port
    overrides = {"storage_path": str(tmp_path), "output_path": str(tmp_path / "predictions"),
                 "http_port": port, "epochs": 3}
    jobs = [dataclasses.replace(j, settings={k: overrides.get(k, v) for k, v in j.settings.items()})
            for j in cfg.jobs if j.kind in ("core", "train", "infer", "serve")]
    lines: list[str] = []
    outcomes = run_jobs(cfg, jobs, ray_head, lines.append)
    try:
        assert [o.status for o in outcomes] == ["SUCCEEDED"] * 4, "\n".join(lines[-40:])
        by_kind = {o.kind: o for o in outcomes}
        assert by_kind["train"].metric.startswith("accuracy=")
        assert by_kind["serve"].endpoint == f"http://127.0.0.1:{port}/digits"
        correct, total = by_kind["serve"].metric.split()[0].split("/")
        assert int(correct) >= int(total) - 1, by_kind["serve"].metric
        assert any("malformed input -> HTTP 422" in line for line in lines)
        assert any(line.startswith("  [train-digits] ") for line in lines), "live progress is shown"
        assert "serve-digits" in summary_table(outcomes)
    finally:
        serve_job = next(j for j in jobs if j.kind == "serve")
        args = ray_job_args(serve_job, dashboard_url=ray_head.dashboard_url, serve_endpoint_base=None,
                            auth_token=None, code_hash="cleanup", team=cfg.team.name)
        # Frees the replica's CPU for later tests; removing the app is the hook's delete.
        RayJobProvider().delete("cleanup", {name: getattr(args, name) for name in INPUT_FIELDS})


def test_key_metric_prefers_accuracy_then_rows() -> None:
    assert key_metric({"rows": 10, "accuracy": 0.9312}) == "accuracy=0.931"
    assert key_metric({"rows": 1797}) == "rows=1797"
    assert key_metric({}) == ""
