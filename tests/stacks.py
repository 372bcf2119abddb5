"""Helpers for tests over every stack file: discovery and one cached render per stack."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import yaml

from components.constants import PROJECT
from tools.render import Rendered, all_stack_files, render_stack


def layer_of(path: Path) -> str:
    return str((yaml.safe_load(path.read_text())["config"]).get(f"{PROJECT}:layer"))


def stack_files(layer: str) -> list[Path]:
    """Every stack file of a layer: a new file in stacks/ is tested with no code change."""
    return [p for p in all_stack_files() if layer_of(p) == layer]


@functools.cache
def rendered(path: Path) -> Rendered:
    return render_stack(path)


def of_type(r: Rendered, type_: str) -> list[dict[str, Any]]:
    return [res for res in r.resources if res["type"] == type_]


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]
