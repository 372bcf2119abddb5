"""The post-deploy hooks under the real engine with `dashboard.access: url`, on a real Ray head:
long waits, many at once and through an outage, and a cluster that goes away.

The team stack `hooks-url` (tools/e2e/stacks.py) reaches its head at `dashboard.url`: a relay on
127.0.0.1 in front of the local head (tools/e2e/ray_heads.py), which the tests can cut. A job waits
"long" while a blocker job holds every CPU of the head: it stays PENDING until the test releases
the blocker, so each wait lasts exactly as long as the scenario needs. Tests run in file order.
"""
from __future__ import annotations

import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from ray.job_submission import JobSubmissionClient

from components.clients.k8s_tunnel import Tunnel
from components.constants import RAY_GROUP
from tests.e2e import wait
from tools.e2e import controlplane as cp
from tools.e2e import stacks
from tools.e2e.ray_heads import RayHeads

pytestmark = pytest.mark.e2e

STACK = "hooks-url"
TEAM = "hooks-url"
NS = f"team-{TEAM}"
CPUS = 4
# The SDK's provider host serves 4 calls at once (pulumi 3.260.0, pulumi/dynamic/__main__.py).
HOST_THREADS = 4
# A driver holds half a CPU: the six of the many-waits scenario take 3 of the head's 4, and their
# tasks (a quarter each) run in the fourth; with the blocker holding all 4 none can start.
QUICK = {"kind": "core", "settings": {"num_chunks": 1, "cpus_per_task": 0.25}, "timeoutSeconds": 600,
         "resources": {"cpus": 0.5}}
# Longer than the wait's poll interval grows to (5 s): several polls in a row fail.
OUTAGE_S = 15
# The longest a `refresh` or `destroy` may take when the cluster is gone (their bound is 30 s).
PROMPT_S = 120


class Relay:
    """127.0.0.1:<port> relayed to the head's dashboard; `down` refuses every new connection."""

    def __init__(self, dashboard_url: str) -> None:
        host, port = dashboard_url.rsplit("/", 1)[-1].split(":")
        self.down = threading.Event()

        def connect() -> socket.socket:
            if self.down.is_set():
                raise ConnectionRefusedError("the e2e relay is down")
            return socket.create_connection((host, int(port)), timeout=10)

        self.tunnel = Tunnel(connect, "e2e relay").__enter__()
        self.url = self.tunnel.url


def stack_file(ctx: dict[str, Any], jobs: list[dict[str, Any]]) -> Path:
    dashboard = {"access": "url", "url": ctx["relay"].url, "serveUrl": f"http://127.0.0.1:{ctx['head'].serve_port}"}
    return stacks.layer(STACK, stacks.team_of_one(TEAM, jobs, dashboard), base=stacks.TEAM_STACK)


def up(ctx: dict[str, Any], config_file: Path, *extra: str, check: bool = True) -> Any:
    return stacks.pulumi(ctx["state"], "up", "--yes", "--skip-preview", "--stack", STACK, "--config-file",
                         str(config_file), *extra, check=check)


@contextmanager
def up_in_background(ctx: dict[str, Any], config_file: Path) -> Iterator[subprocess.Popen[str]]:
    """`pulumi up` running beside the test; cancelled (as Ctrl-C does) if the test fails first."""
    proc = subprocess.Popen(["pulumi", "up", "--yes", "--skip-preview", "--stack", STACK, "--config-file",
                             str(config_file), "--non-interactive", "--color", "never"],
                            cwd=cp.REPO, env=stacks.env(ctx["state"]), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        yield proc
    finally:
        if proc.poll() is None and sys.exc_info()[0] is not None:
            proc.send_signal(signal.SIGINT)
            proc.communicate(timeout=300)


def finish(proc: subprocess.Popen[str]) -> None:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out


def statuses(ctx: dict[str, Any], prefix: str) -> dict[str, str]:
    return {j.submission_id: str(j.status.value) for j in ctx["client"].list_jobs()
            if (j.submission_id or "").startswith(prefix)}


class Blocker:
    """A job, submitted straight to the head, that holds all its CPUs until released."""

    def __init__(self, ctx: dict[str, Any]) -> None:
        scratch = Path(tempfile.mkdtemp(prefix="e2e-blocker-"))
        self.flag, script = scratch / "release", scratch / "blocker.py"
        script.write_text(f"import os, time\nwhile not os.path.exists({str(self.flag)!r}):\n    time.sleep(0.2)\n")
        self.client = ctx["client"]
        self.id = self.client.submit_job(entrypoint=f"python {script}", entrypoint_num_cpus=CPUS)
        wait("the blocker running", lambda: str(self.client.get_job_status(self.id).value) == "RUNNING", 120)

    def release(self) -> None:
        self.flag.touch()


@pytest.fixture(scope="module")
def ctx(controlplane: dict[str, Any]) -> Any:
    with RayHeads() as heads:
        head = heads.serve(NS, TEAM, num_cpus=CPUS)
        relay = Relay(head.dashboard_url)
        stacks.init_derived(controlplane, STACK)
        context = {"state": controlplane, "head": head, "relay": relay,
                   "client": JobSubmissionClient(head.dashboard_url)}
        context["file"] = stack_file(context, [{"name": "stats", **QUICK}])
        up(context, context["file"])
        yield context
        relay.down.clear()
        stacks.pulumi(controlplane, "destroy", "--yes", "--stack", STACK, "--config-file", str(context["file"]),
                      check=False)
        relay.tunnel.close()


def test_up_reaches_the_dashboard_at_its_url(ctx: dict[str, Any]) -> None:
    [(sid, status)] = statuses(ctx, "stats-").items()
    assert status == "SUCCEEDED"
    export = stacks.pulumi(ctx["state"], "stack", "output", "--json", "--stack", STACK).stdout
    assert f"{ctx['relay'].url}/#/jobs/{sid}" in export


def test_more_long_waits_than_provider_threads_none_blocks_another(ctx: dict[str, Any]) -> None:
    many = [{"name": f"many-{i}", **QUICK} for i in range(HOST_THREADS + 2)]
    blocker = Blocker(ctx)
    with up_in_background(ctx, stack_file(ctx, [{"name": "stats", **QUICK}, *many])) as proc:
        try:
            # All six are submitted and waiting at once: with the host's 4 threads the last two would
            # only be submitted once one of the first four ended, which the blocker prevents.
            pending = wait(f"{len(many)} jobs submitted while their waits run",
                           lambda: (s if len(s := statuses(ctx, "many-")) == len(many) else None), 300)
            assert set(pending.values()) == {"PENDING"} and proc.poll() is None
        finally:
            blocker.release()
        finish(proc)
    assert set(statuses(ctx, "many-").values()) == {"SUCCEEDED"}


def test_a_dashboard_outage_during_a_long_wait_is_retried(ctx: dict[str, Any]) -> None:
    blocker = Blocker(ctx)
    with up_in_background(ctx, stack_file(ctx, [{"name": "stats", **QUICK}, {"name": "patient", **QUICK}])) as proc:
        try:
            wait("the patient job pending", lambda: "PENDING" in statuses(ctx, "patient-").values(), 300)
            ctx["relay"].down.set()  # every poll of the wait now fails to connect
            time.sleep(OUTAGE_S)
            assert proc.poll() is None, proc.communicate()[0]
        finally:
            ctx["relay"].down.clear()
            blocker.release()
        finish(proc)
    assert set(statuses(ctx, "patient-").values()) == {"SUCCEEDED"}


def test_a_cluster_that_is_gone_never_wedges_refresh_or_destroy(ctx: dict[str, Any]) -> None:
    forever = {"name": "forever", "kind": "core", "wait": "running", "timeoutSeconds": 300,
               "settings": {"num_chunks": 1, "cpus_per_task": 64}}
    ctx["file"] = stack_file(ctx, [{"name": "stats", **QUICK}, forever])
    up(ctx, ctx["file"])
    # The RayCluster deleted behind the stack's back, its dashboard unreachable from now on.
    cp.kubectl("delete", f"rayclusters.{RAY_GROUP}", TEAM, "-n", NS, "--wait=false")
    ctx["relay"].down.set()
    for verb in ("refresh", "destroy"):
        started = time.monotonic()
        proc = stacks.pulumi(ctx["state"], verb, "--yes", "--stack", STACK, "--config-file", str(ctx["file"]),
                             timeout=PROMPT_S)
        out = proc.stdout + proc.stderr
        assert time.monotonic() - started < PROMPT_S
        assert "Ray job 'forever'" in out and "its cluster is gone or unreachable" in out, out
    assert "Nothing was stopped; it is removed from the stack" in out, out
