"""What every job shares: config parsing, the result line, and the submission contract.

Standard library only, so the submitting side (the post-deploy hook, `make local`)
can import it without torch, pyarrow or Serve.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import re
import shlex
import sys
import time
import types
import typing
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

RESULT_PREFIX = "ray-platform-result:"
# Zero or more per job, before the result line; may carry a Ray actor prefix such as
# "(TrainController pid=...)" because the controller, not the driver, prints them.
PROGRESS_PREFIX = "ray-platform-progress:"
CONFIG_ENV_VAR = "RAY_PLATFORM_JOB_CONFIG"
JOB_NAMES = ("core", "train", "infer", "serve", "tune")
JOBS_DIR = Path(__file__).resolve().parent

# Where jobs keep checkpoints, pointers and outputs when the submitter does not say;
# a single-node default. Multi-node clusters must pass shared storage (s3://...).
DEFAULT_STORAGE_PATH = "/tmp/ray-platform"
DEFAULT_MODEL_NAME = "digits"

C = TypeVar("C")


class ConfigError(ValueError):
    """A job config that cannot be used; the message says which key and why."""


def require(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


def config_from_dict(cls: type[C], data: Mapping[str, Any]) -> C:
    """Build the frozen dataclass `cls` from JSON-like data, checking keys and types."""
    fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - fields)
    require(not unknown, f"{cls.__name__}: unknown key(s) {unknown}; allowed keys: {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    values = {key: _coerce(f"{cls.__name__}.{key}", value, hints[key]) for key, value in data.items()}
    return cls(**values)


def config_from_json(cls: type[C], text: str | None) -> C:
    if text is None or not text.strip():
        return config_from_dict(cls, {})
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{cls.__name__}: config is not valid JSON: {exc}") from None
    require(isinstance(data, dict), f"{cls.__name__}: config must be a JSON object, got {type(data).__name__}")
    return config_from_dict(cls, data)


def load_config(cls: type[C], argv: Sequence[str] | None, prog: str) -> C:
    """Config from `--config-json`, else from $RAY_PLATFORM_JOB_CONFIG, else defaults."""
    parser = argparse.ArgumentParser(prog=prog, description=f"Run {prog} on the current Ray cluster.")
    parser.add_argument("--config-json", default=None,
                        help=f"JSON object with {cls.__name__} keys (overrides ${CONFIG_ENV_VAR})")
    args = parser.parse_args(argv)
    text = args.config_json if args.config_json is not None else os.environ.get(CONFIG_ENV_VAR)
    return config_from_json(cls, text)


def _coerce(where: str, value: Any, hint: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        (inner,) = [o for o in options if o is not type(None)]
        return _coerce(where, value, inner)
    if origin is tuple:
        require(isinstance(value, list | tuple), f"{where}: expected a list, got {value!r}")
        (item, _ellipsis) = typing.get_args(hint)
        return tuple(_coerce(f"{where}[{i}]", v, item) for i, v in enumerate(value))
    # bool is an int subclass: `true` must not pass as 1, nor 1 as `true`.
    if hint is bool:
        require(isinstance(value, bool), f"{where}: expected true/false, got {value!r}")
    elif hint is int:
        require(isinstance(value, int) and not isinstance(value, bool),
                f"{where}: expected an integer, got {value!r}")
    elif hint is float:
        require(isinstance(value, int | float) and not isinstance(value, bool),
                f"{where}: expected a number, got {value!r}")
        return float(value)
    elif hint is str:
        require(isinstance(value, str), f"{where}: expected a string, got {value!r}")
    return value


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a local path or an `s3://` style URI alike."""
    return "/".join([base.rstrip("/"), *(p.strip("/") for p in parts)])


def normalize_storage_path(path: str) -> str:
    """Ray Train and pyarrow need absolute local paths; URIs pass through."""
    return path.rstrip("/") if "://" in path else os.path.abspath(path)


def submission_id() -> str | None:
    """The Job SDK submission id of this driver, if it runs as a submitted job."""
    explicit = os.environ.get("RAY_JOB_SUBMISSION_ID")
    if explicit:
        return explicit
    # The job supervisor hands the driver its submission id only inside this JSON.
    try:
        found = json.loads(os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR", "{}")).get("metadata", {}).get(
            "job_submission_id")
    except (ValueError, AttributeError):
        return None
    return found if isinstance(found, str) and found else None


def run_id() -> str:
    """A fresh id for this driver's outputs: `<submission id>-<UTC time>-<random>`.

    The submission id alone is not enough: the post-deploy hook derives it from the
    job's code and config, so a re-created cluster writing to the same s3:// storage
    would reuse it, and a Ray Train run under a reused name resumes the old run's
    snapshot instead of training. Worker failures are retried inside one driver, so
    they still find and resume the run under this id.
    """
    prefix = re.sub(r"[^A-Za-z0-9._-]+", "-", submission_id() or "local")
    return f"{prefix}-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"


def emit_result(result: Mapping[str, Any]) -> dict[str, Any]:
    """Print the one machine-readable line a job ends with, and return the result."""
    payload = dict(result)
    print(f"{RESULT_PREFIX} {json.dumps(payload, sort_keys=True)}", flush=True)
    return payload


def emit_progress(progress: Mapping[str, Any]) -> None:
    print(f"{PROGRESS_PREFIX} {json.dumps(dict(progress), sort_keys=True)}", flush=True)


def parse_progress(log_text: str) -> list[dict[str, Any]]:
    """Every well-formed progress record in a job's logs, oldest first."""
    records = []
    for line in log_text.splitlines():
        _, found, payload = line.partition(PROGRESS_PREFIX)
        if not found:
            continue
        try:
            value = json.loads(payload)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


def parse_result(log_text: str) -> dict[str, Any] | None:
    """The last well-formed result line in a job's logs, or None when there is none."""
    for line in reversed(log_text.splitlines()):
        line = line.strip()
        if not line.startswith(RESULT_PREFIX):
            continue
        try:
            value = json.loads(line[len(RESULT_PREFIX):])
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def entrypoint(job: str, config: Mapping[str, Any] | None = None) -> str:
    """The shell command the Job SDK runs for `job` with `config`."""
    if job not in JOB_NAMES:
        raise ValueError(f"unknown job {job!r}; known jobs: {list(JOB_NAMES)}")
    # Sorted keys: the hook derives the submission id from this string.
    return f"python -m jobs.{job} --config-json {shlex.quote(json.dumps(dict(config or {}), sort_keys=True))}"


def runtime_env() -> dict[str, Any]:
    """The Job SDK runtime_env that ships this package to the cluster."""
    return {"py_modules": [str(JOBS_DIR)]}


def run_cli(module: str) -> None:
    """`python -m jobs.<name>` entry: run main() of the importable module, exit 2 on bad config.

    Calling the imported `jobs.<name>` rather than `__main__` makes Ray pickle the
    functions and classes it ships to workers by reference to that module, the
    same way a Serve import path or a Tune trial resolves them.
    """
    main = importlib.import_module(module).main
    try:
        main(None)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
