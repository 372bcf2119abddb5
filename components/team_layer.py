"""Wiring of a team stack (see issue: team stacks)."""
from __future__ import annotations

from typing import Any

from components.config import TeamStackConfig


def build_team(cfg: TeamStackConfig) -> dict[str, Any]:
    raise NotImplementedError("team stacks land with the team-stack issue")
