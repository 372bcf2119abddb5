"""The README keeps its outline, its diagrams as source, and only names make targets that exist."""
from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
OUTLINE = ["Ray Core", "Ray Data", "Ray Train", "Ray Serve", "Ray Tune", "Ray Cluster", "Install",
           "Submit a training job", "Submit an inference job", "Submit a serving job", "Monitor running jobs",
           "Known issues"]


def test_starts_with_the_two_commands() -> None:
    first_block = README.split("```bash", 1)[1].split("```", 1)[0]
    assert "make local" in first_block and "make test" in first_block


def test_outline_in_order() -> None:
    headings = re.findall(r"^## (.+)$", README, re.M)
    positions = [headings.index(h) for h in OUTLINE]
    assert positions == sorted(positions), headings


def test_three_diagrams_kept_as_mermaid_source() -> None:
    diagrams = re.findall(r"```mermaid\n(.*?)```", README, re.S)
    assert len(diagrams) == 3
    assert "GPU" in diagrams[0] and "pulumi up" in diagrams[1] and "RayCluster" in diagrams[2]


def test_every_make_target_it_names_exists() -> None:
    makefile = (ROOT / "Makefile").read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):", makefile, re.M))
    named = set(re.findall(r"\bmake ([a-z][\w-]*)", README))
    assert named <= targets, named - targets


def test_ci_runs_the_readme_test_command() -> None:
    assert "make test" in (ROOT / ".ci" / "run").read_text()
