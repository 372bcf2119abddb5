"""Shared fixtures. The Ray head is real: started on loopback once per session, stopped by pid."""
from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tools.local_ray import LocalRay, temporary_head

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def ray_head() -> Iterator[LocalRay]:
    with temporary_head("rp-") as head:
        os.environ["RAY_ADDRESS"] = head.gcs_address
        try:
            yield head
        finally:
            os.environ.pop("RAY_ADDRESS", None)
