"""Widening the dynamic-provider host's thread pool (components/hooks/provider_host.py). The real
host under the real engine, with more waits at once than its 4 threads: tests/e2e/test_hooks.py."""
from __future__ import annotations

import sys
import threading
import types
from concurrent.futures import ThreadPoolExecutor

import pytest

from components.hooks.provider_host import HOST_MODULE, HOST_WORKERS, in_provider_host, widen_provider_host


def test_outside_the_provider_host_nothing_is_touched() -> None:
    pool = ThreadPoolExecutor(max_workers=4)
    try:
        assert not in_provider_host()
        assert widen_provider_host() == 0 and pool._max_workers == 4
    finally:
        pool.shutdown()


def test_in_the_provider_host_its_pool_grows_and_serves_more_than_four_calls_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    host = types.ModuleType("__main__")
    host.__spec__ = types.SimpleNamespace(name=HOST_MODULE)  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", host)
    pool = ThreadPoolExecutor(max_workers=4)  # as pulumi/dynamic/__main__.py makes it
    try:
        assert widen_provider_host() >= 1 and pool._max_workers == HOST_WORKERS
        started, release = threading.Barrier(6, timeout=10), threading.Event()
        # Six calls that each wait for all six to have started: with 4 threads they never would.
        futures = [pool.submit(lambda: (started.wait(), release.wait(10))) for _ in range(6)]
        release.set()
        assert all(f.result(timeout=15) for f in futures)
    finally:
        pool.shutdown()
