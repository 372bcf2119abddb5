"""A job's code on disk: where a `code.path` may point, which files of it Ray ships, their size and
digest; and the runtime_env keys the pinned Ray knows.

The file selection is Ray's own (its packaging walk with .gitignore, .rayignore, its default
excludes and the job's `excludes`), so the digest covers exactly what the Job SDK uploads: a
change to an ignored file changes nothing, a change to a shipped one replaces the job's submission.
Ray is imported only when a job has code on disk or a runtime env to check.
"""
from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Sequence
from functools import cache
from pathlib import Path

# The Job SDK reads it when it uploads a working dir; the digest must see the same files.
IGNORE_GITIGNORE_ENV = "RAY_RUNTIME_ENV_IGNORE_GITIGNORE"
# Ray's walk logs each ignore file it honours at INFO: not news in a preview.
_QUIET = logging.getLogger(f"{__name__}.walk")
_QUIET.setLevel(logging.WARNING)


# What marks the top of the repository a stack file belongs to: a Pulumi project, or a git checkout.
REPOSITORY_MARKERS = ("Pulumi.yaml", ".git")


def repository_root(start: Path) -> Path:
    """The repository a stack file's directory belongs to (the nearest directory holding a Pulumi
    project or a git checkout), else that directory itself.

    A job's code path may not leave it: what a deploy ships is what the reviewed repository holds.
    """
    start = start.resolve()
    for folder in (start, *start.parents):
        if any((folder / marker).exists() for marker in REPOSITORY_MARKERS):
            return folder
    return start


def shipped_files(root: Path, excludes: Sequence[str] = ()) -> list[Path]:
    """The files under `root` the Job SDK would upload as a working_dir, sorted."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import _dir_travel, _get_excludes

    files: list[Path] = []
    patterns = [*ray_constants.get_runtime_env_default_excludes(), *excludes]
    include_gitignore = os.environ.get(IGNORE_GITIGNORE_ENV, "0") != "1"
    _dir_travel(root, [_get_excludes(root, patterns)], lambda p: files.append(p) if p.is_file() else None,
                include_gitignore=include_gitignore, logger=_QUIET)
    return sorted(files)


def files_digest(root: Path, files: Sequence[Path]) -> str:
    """sha256 over every file's path relative to `root` and its bytes."""
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@cache
def runtime_env_keys() -> frozenset[str]:
    """The runtime_env keys the pinned Ray accepts (RuntimeEnv.known_fields)."""
    from ray.runtime_env import RuntimeEnv

    return frozenset(RuntimeEnv.known_fields)
