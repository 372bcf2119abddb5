"""bench/by_hand.py: a hand-written Ray script for every built-in job, fed the same settings."""
from __future__ import annotations

import ast
from types import SimpleNamespace

import pytest

from bench.by_hand import HANDWRITTEN, KINDS, example_job, settings_for
from jobs.common import JOB_NAMES


def test_every_built_in_job_has_a_hand_written_twin() -> None:
    assert set(KINDS) == set(JOB_NAMES)
    assert {p.stem for p in HANDWRITTEN.glob("*.py")} == set(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_hand_written_scripts_use_ray_directly_not_the_package(kind: str) -> None:
    """Only the work (jobs.data, jobs.model, the jobs' remote functions) comes from jobs/: no config
    parsing, no result line, and nothing of components/ or pulumi."""
    tree = ast.parse((HANDWRITTEN / f"{kind}.py").read_text())
    imported = {(n.module or "") for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.split(".")[0] in ("components", "pulumi")}
    assert "jobs.common" not in imported


def test_settings_keep_each_run_apart() -> None:
    cluster = SimpleNamespace(storage_path="/tmp/rpb-x/storage")
    assert settings_for(cluster, "core", "m") == {}
    infer = [settings_for(cluster, "infer", "m")["output_path"] for _ in range(2)]
    assert infer[0] != infer[1] and all(p.startswith("/tmp/rpb-x/storage/") for p in infer)
    serve = settings_for(cluster, "serve", "m")
    assert serve["route_prefix"] == f"/{serve['app_name']}" and serve["model_name"] == "m"


def test_the_example_team_job_is_the_teams_own_entrypoint_and_code() -> None:
    job = example_job()
    assert job.work.entrypoint and job.work.code is not None and job.work.code.path
    assert job.work.entrypoint.startswith("python -m embeddings.")
