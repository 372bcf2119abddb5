"""Helpers shared by the e2e tests."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest


def wait(what: str, ok: Callable[[], Any], timeout: float = 120.0) -> Any:
    """Poll `ok` every second until it returns something truthy (returned); fail the test naming
    `what` and the last value after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = ok()
        if last:
            return last
        time.sleep(1)
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
