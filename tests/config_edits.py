"""Building bad stack configs for table-driven tests: one edit at a dotted key path."""
from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import pytest

from components.config.model import ConfigError, PlatformConfig
from components.config.stack import parse

DELETE = object()


def with_change(path: str, value: Any, base: dict[str, Any]) -> dict[str, Any]:
    """`base` with one value set (or removed, for value=DELETE) at a dotted path like gpuPools.0.maxSize."""
    raw = copy.deepcopy(base)
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    if value is DELETE:
        del node[int(last) if isinstance(node, list) else last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return raw


def with_first_job(base: dict[str, Any], **changes: Any) -> dict[str, Any]:
    """`base` with keys of its first job changed; `kuberay_<key>` sets a key of the job's kuberay block."""
    raw = copy.deepcopy(base)
    job = raw["jobs"][0]
    for key, value in changes.items():
        if key.startswith("kuberay_"):
            job["kuberay"][key.removeprefix("kuberay_")] = value
        else:
            job[key] = value
    return raw


def assert_problem_at(err: ConfigError, path: str, allowed: str) -> None:
    """`err` reports a problem at the key `path` whose message contains `allowed`."""
    lines = [p for p in err.problems if p.startswith(f"{path}:")]
    assert lines, f"no problem reported at {path}; got: {err.problems}"
    assert any(allowed in line for line in lines), lines


def assert_refused_at(raw: dict[str, Any], path: str, allowed: str, stack: str, aws_region: str | None = None,
                      platform_lookup: Callable[[str], PlatformConfig | None] | None = None) -> None:
    """Parsing `raw` fails with a problem at the key `path` whose message contains `allowed`."""
    with pytest.raises(ConfigError) as err:
        parse(raw, stack, aws_region, platform_lookup)
    assert_problem_at(err.value, path, allowed)
