"""Digests that name work: equal work, equal name, on any machine and from any source of values.

A KubeRay CR's name and its waiter's revision are digests of the CR's spec; a post-deploy job's
Ray submission id is `<job_name>-<12 hex>`, the digest of everything that defines the work
(IDENTITY_FIELDS), so a re-run of `pulumi up` finds the job it already submitted.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import PurePosixPath
from typing import Any

# The post-deploy job's properties whose change means different work: a new submission (replace).
IDENTITY_FIELDS = (
    "job_name", "kind", "entrypoint", "runtime_env", "code_hash",
    "entrypoint_num_cpus", "entrypoint_num_gpus", "entrypoint_memory",
    "serve_app_name", "serve_route_prefix",
)


def spec_digest(spec: Mapping[str, Any]) -> str:
    """sha256 of the canonical JSON of `spec`: equal specs, equal digests, whatever their key order."""
    return hashlib.sha256(json.dumps(spec, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def canon(value: Any) -> Any:
    # The engine hands numbers back as protobuf doubles (60 -> 60.0); identity must
    # not depend on whether a value came from the program or from the state.
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, Mapping):
        return {str(k): canon(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canon(v) for v in value]
    return value


def _is_local_path(value: Any) -> bool:
    return isinstance(value, str) and "://" not in value


def canonical_runtime_env(runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """The runtime env as identity sees it: local upload paths reduced to their basename.

    The SDK uploads local `working_dir`/`py_modules` by content; where the checkout
    lives differs per machine, and `code_hash` already pins the content.
    """
    env = dict(canon(runtime_env or {}))
    if _is_local_path(env.get("working_dir")):
        env["working_dir"] = f"local:{PurePosixPath(env['working_dir']).name}"
    if isinstance(env.get("py_modules"), list):
        env["py_modules"] = [f"local:{PurePosixPath(m).name}" if _is_local_path(m) else m
                             for m in env["py_modules"]]
    return env


def identity(job: Mapping[str, Any]) -> dict[str, Any]:
    """The IDENTITY_FIELDS of a job's properties, canonical (absent fields count as None)."""
    values = {name: job.get(name) for name in IDENTITY_FIELDS}
    values["runtime_env"] = canonical_runtime_env(job.get("runtime_env"))
    return dict(canon(values))


def submission_id_for(job: Mapping[str, Any]) -> str:
    """The Ray submission id of a job's first attempt, from its properties."""
    return f"{job['job_name']}-{spec_digest(identity(job))[:12]}"


def attempt_id(base: str, attempt: int) -> str:
    """Ray never reuses a submission id: attempts after the first are `<base>-r2`, `<base>-r3`, ..."""
    return base if attempt == 1 else f"{base}-r{attempt}"
