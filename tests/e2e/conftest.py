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


def _ps() -> list[str]:
    """Live processes as "pid args" (a zombie, already exited and waiting for init to reap it, is not one)."""
    out = subprocess.run(["ps", "-eo", "pid=,stat=,args="], capture_output=True, text=True, check=True).stdout
    rows = [line.split(None, 2) for line in out.splitlines()]
    return [f"{r[0]} {r[2] if len(r) > 2 else ''}" for r in rows if len(r) >= 2 and not r[1].startswith("Z")]


# Which KubeRay operator the session's tests ran against, for the summary (set by `controlplane`).
_OPERATOR_NOTE: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:
    for note in _OPERATOR_NOTE:
        terminalreporter.write_line(f"e2e: {note}")


def _note_operator() -> None:
    _OPERATOR_NOTE.append(cp.load_state().get("operator", {}).get("note")
                          or f"KubeRay operator not running ({cp.operator_missing() or 'see build/e2e/logs'})")


@pytest.fixture(scope="session")
def controlplane() -> Iterator[dict]:
    if cp.is_up():
        _note_operator()
        yield cp.load_state()
        return
    proc = subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "up"], cwd=cp.REPO,
                          capture_output=True, text=True)
    state = cp.load_state()
    if proc.returncode != 0 and not cp.operator_missing():
        # Without an operator binary `up` brings up the rest and exits 1: the operator tests say why.
        subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "down"], cwd=cp.REPO)
        pytest.fail(f"`controlplane up` failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    _note_operator()
    pids = {n: e["pid"] for n, e in state["procs"].items()}
    try:
        yield state
    finally:
        subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "down"], cwd=cp.REPO, check=True)
        alive = [line for line in _ps() if line.split(None, 1)[0] in {str(p) for p in pids.values()}
                 or str(cp.STATE_DIR) in line or str(cp.KUBECONFIG) in line]
        assert not alive, "processes left after `down`:\n" + "\n".join(alive)


@pytest.fixture
def operator(controlplane: dict) -> dict:
    """The running KubeRay operator's state entry; fails (never skips) with the reason when there is none."""
    entry = cp.load_state().get("procs", {}).get("kuberay-operator")
    if not entry:
        pytest.fail(f"the KubeRay operator is not running: {cp.operator_missing() or 'see build/e2e/logs'}")
    return entry
