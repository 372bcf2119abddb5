"""The e2e control plane for tests/e2e: reuse a running `make e2e-up`, else start one for the session.

A control plane this session started is stopped at the end, and the teardown checks with `ps`
that none of its processes is left.
"""
from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator

import pytest

from tools.e2e import controlplane as cp


def _running() -> bool:
    state = cp.load_state()
    procs = state.get("procs", {})
    return all(n in procs and cp._ours(procs[n]) for n in cp.ORDER)


def _ps() -> list[str]:
    """Live processes as "pid args" (a zombie, already exited and waiting for init to reap it, is not one)."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [f"{r[0]} {r[2] if len(r) > 2 else ''}" for r in rows if len(r) >= 2 and not r[1].startswith("Z")]


@pytest.fixture(scope="session")
def controlplane() -> Iterator[dict]:
    if _running():
        yield cp.load_state()
        return
    proc = subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "up"], cwd=cp.REPO,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "down"], cwd=cp.REPO)
        pytest.fail(f"`controlplane up` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    state = cp.load_state()
    pids = {n: e["pid"] for n, e in state["procs"].items()}
    try:
        yield state
    finally:
        subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "down"], cwd=cp.REPO, check=True)
        alive = [line for line in _ps() if line.split(None, 1)[0] in {str(p) for p in pids.values()}
                 or str(cp.STATE_DIR) in line or str(cp.KUBECONFIG) in line]
        assert not alive, "processes left after `down`:\n" + "\n".join(alive)
