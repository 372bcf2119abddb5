"""Shared fixtures. The Ray head is real: started on loopback once per session, stopped by pid."""
from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.local_ray import LocalRay, start_head, stop_head

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRay]:
    # A short path: Ray's unix sockets live under the temp dir (108-byte limit).
    temp_dir = Path(tempfile.mkdtemp(prefix="rp-", dir="/tmp"))
    head = start_head(temp_dir, num_cpus=2)
    os.environ["RAY_ADDRESS"] = head.gcs_address
    try:
        yield head
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        stop_head(head)
        shutil.rmtree(temp_dir, ignore_errors=True)
