from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tools.local_ray import LocalRay, dashboard_ready, session_processes, temporary_head

pytestmark = pytest.mark.ray


def test_head_answers_on_loopback(ray_head: LocalRay) -> None:
    assert ray_head.dashboard_url.startswith("http://127.0.0.1:")
    assert dashboard_ready(ray_head.dashboard_url)
    assert ray_head.alive()


def test_stopping_a_head_leaves_none_of_its_processes() -> None:
    """Workers leave the head's process group; `make local-down` must still stop them all."""
    with temporary_head("rpt-", num_cpus=1) as head:
        # A detached actor, as Serve's controller and replicas are: it outlives its driver.
        code = ("import ray; ray.init(address=%r)\n@ray.remote\nclass Kept:\n    def ping(self): return 1\n"
                "kept = Kept.options(name='kept', lifetime='detached').remote()\n"
                "assert ray.get(kept.ping.remote()) == 1") % head.gcs_address
        subprocess.run([sys.executable, "-c", code], check=True, timeout=120, cwd=head.temp_dir, capture_output=True)
        workers = [p for p in session_processes(head.pid) if os.getpgid(p.pid) != head.pid]
        assert workers, "expected Ray workers outside the head's process group"
    assert session_processes(head.pid) == []
    assert not head.alive()
