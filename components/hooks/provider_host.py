"""Room in the dynamic-provider host for every hook that waits at once.

Pulumi serves all of a stack's dynamic resources from one provider host process (`python -m
pulumi.dynamic`, what `pulumi-resource-pulumi-python` runs), a gRPC server on a pool of 4 threads
(pulumi 3.260.0, pulumi/dynamic/__main__.py; no setting changes it). A hook holds its thread for as
long as it waits (a job's run, a RayService becoming Ready: minutes), so with four long waits under
way a fifth job was not even submitted, and every check and diff queued behind them, until one
ended. The hooks' modules are imported in that host when the engine first calls one of them, before
any create: they widen the pool there, once. Threads are started only as calls need them.
"""
from __future__ import annotations

import gc
import sys
from concurrent.futures import ThreadPoolExecutor

HOST_MODULE = "pulumi.dynamic.__main__"
# Hooks that may wait at once in one `pulumi up` (jobs and KubeRay waiters of a team stack), with
# room for the engine's checks and diffs beside them.
HOST_WORKERS = 64


def in_provider_host() -> bool:
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == HOST_MODULE


def widen_provider_host(workers: int = HOST_WORKERS) -> int:
    """Let the provider host's thread pool grow to `workers`; returns how many pools were widened
    (none outside the host: the program and the tests keep theirs)."""
    if not in_provider_host():
        return 0
    widened = 0
    for obj in gc.get_objects():
        # The pool is a local of the host's main(); `_max_workers` is what `submit` grows up to.
        # type(), not isinstance(): the latter reads `__class__`, which some objects compute.
        if issubclass(type(obj), ThreadPoolExecutor) and obj._max_workers < workers:
            obj._max_workers = workers
            widened += 1
    return widened
