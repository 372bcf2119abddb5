"""Start and stop a single-node Ray head on loopback, owned by pid.

Used by the test suite (one head per session) and by `make local` (one head that
outlives the command). `ray stop` is never used: it kills every Ray process on the
machine, including clusters that other runs own.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import psutil


@dataclass(frozen=True)
class LocalRay:
    pid: int
    gcs_address: str
    dashboard_url: str
    temp_dir: str
    num_cpus: int
    metrics_port: int
    # Serve keeps the HTTP options of its first start on a cluster, so everything that
    # deploys an app on this head uses this one port (0: not recorded, an older state file).
    serve_port: int = 0

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path) -> "LocalRay | None":
        try:
            return cls(**json.loads(path.read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except OSError:
            return False
        return dashboard_ready(self.dashboard_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def dashboard_ready(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/api/version", timeout=timeout) as resp:
            return resp.status == 200
    except OSError:
        return False


def node_env(gcs_address: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a local Ray node's processes, as the Ray image's: entrypoints and hooks
    say `python ...` and `ray ...`, so this environment's interpreter comes first on PATH (local
    jobs find ray, torch and the jobs package).

    RAY_ADDRESS names the node's own cluster, as KubeRay sets it in every Ray container. Ray's code
    inside the cluster finds its cluster by it (Ray Train's placement-group cleaner asks the state
    API whether its controller lives): one inherited from the caller (a test session's head) would
    send it to another cluster, and with none and several heads on the machine it fails ("Found
    multiple active Ray instances")."""
    bin_dir = Path(sys.executable).parent
    return {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "RAY_ADDRESS": gcs_address,
            "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", **(extra or {})}


def start_worker(head: LocalRay, instance_id: str, num_cpus: int = 1) -> int:
    """Join one more Ray node to `head` (`ray start --address`), as a KubeRay worker pod would, and
    return its pid (its own session: `stop_node`/`kill_node` end it alone, never `ray stop`).

    RAY_CLOUD_INSTANCE_ID is what KubeRay sets in a worker pod (the pod's name) and Ray records as
    the node's instance id; a node is found by it, as the pod's drain hook finds its own.
    """
    ray_bin = Path(sys.executable).parent / "ray"
    ports = [free_port() for _ in range(6)]
    cmd = [
        str(ray_bin), "start", f"--address={head.gcs_address}", "--block", "--node-ip-address=127.0.0.1",
        f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}", f"--metrics-export-port={ports[2]}",
        f"--dashboard-agent-listen-port={ports[3]}", f"--dashboard-agent-grpc-port={ports[4]}",
        f"--runtime-env-agent-port={ports[5]}", f"--num-cpus={num_cpus}", "--num-gpus=0", "--disable-usage-stats",
    ]
    log = open(Path(head.temp_dir) / f"ray-start-{instance_id}.log", "w")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, cwd=head.temp_dir,
                            env=node_env(head.gcs_address, {"RAY_CLOUD_INSTANCE_ID": instance_id}))
    return proc.pid


def start_head(temp_dir: Path, num_cpus: int = 2, log_path: Path | None = None,
               ready_timeout: float = 90.0, env: dict[str, str] | None = None) -> LocalRay:
    """Start `ray start --head --block` in its own process group and wait for the dashboard.

    GCS, client-server and metrics ports bind to all interfaces whatever the dashboard
    host is, so every port is chosen free per run. `env` is added to the node's environment.
    """
    temp_dir.mkdir(parents=True, exist_ok=True)
    gcs_port, dash_port, client_port, metrics_port, agent_http, agent_grpc, runtime_env_agent, node_manager, \
        object_manager, autoscaler_metrics, dashboard_metrics = (free_port() for _ in range(11))
    ray_bin = Path(sys.executable).parent / "ray"
    cmd = [
        str(ray_bin), "start", "--head", "--block",
        "--node-ip-address=127.0.0.1",
        f"--port={gcs_port}",
        "--dashboard-host=127.0.0.1",
        f"--dashboard-port={dash_port}",
        f"--ray-client-server-port={client_port}",
        f"--metrics-export-port={metrics_port}",
        # The dashboard agent defaults to port 52365: a second head on the machine would
        # then refuse every job with "No available agent to submit job".
        f"--dashboard-agent-listen-port={agent_http}",
        f"--dashboard-agent-grpc-port={agent_grpc}",
        f"--runtime-env-agent-port={runtime_env_agent}",
        f"--node-manager-port={node_manager}",
        f"--object-manager-port={object_manager}",
        f"--num-cpus={num_cpus}",
        "--num-gpus=0",
        f"--temp-dir={temp_dir}",
        "--disable-usage-stats",
        "--include-dashboard=true",
    ]
    log = open(log_path or temp_dir / "ray-start.log", "w")  # noqa: SIM115 - handed to the child
    gcs_address = f"127.0.0.1:{gcs_port}"
    env = node_env(gcs_address, {
        # No flags exist for these two; with the defaults (44217, 44227) the second head
        # on a machine silently exports no autoscaler or dashboard metrics.
        "AUTOSCALER_METRIC_PORT": str(autoscaler_metrics),
        "DASHBOARD_METRIC_PORT": str(dashboard_metrics), **(env or {})})
    # Started outside the checkout: job drivers inherit this directory, and from the repo
    # root `python -m jobs.x` would import the working tree instead of the shipped package.
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            start_new_session=True, env=env, cwd=temp_dir)
    head = LocalRay(pid=proc.pid, gcs_address=gcs_address,
                    dashboard_url=f"http://127.0.0.1:{dash_port}", temp_dir=str(temp_dir),
                    num_cpus=num_cpus, metrics_port=metrics_port, serve_port=free_port())
    deadline = time.monotonic() + ready_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"ray start exited with {proc.returncode}; see {log.name}")
        if dashboard_ready(head.dashboard_url):
            return head
        time.sleep(0.5)
    stop_head(head)
    raise TimeoutError(f"Ray dashboard did not answer within {ready_timeout:.0f}s; see {log.name}")


def start_serve(head: LocalRay, timeout: float = 120.0) -> None:
    """Start Serve on `head`, listening on 127.0.0.1:`head.serve_port`. Serve keeps the HTTP options
    of its first start, so a Serve config deployed later (a RayService's, which says 0.0.0.0:8000)
    runs on this port instead of taking a port of the machine's."""
    code = ("import sys, ray; from ray import serve; ray.init(address=sys.argv[1]); "
            "serve.start(http_options={'host': '127.0.0.1', 'port': int(sys.argv[2])})")
    subprocess.run([sys.executable, "-c", code, head.gcs_address, str(head.serve_port)], check=True,
                   capture_output=True, timeout=timeout, cwd=head.temp_dir, env=node_env(head.gcs_address))


def session_processes(session_id: int) -> list[psutil.Process]:
    """Live processes of a head's session. Ray's workers leave the head's process group
    (so `killpg` misses them) but not the session it was started in."""
    found = []
    for proc in psutil.process_iter():
        try:
            # Zombies are already dead: init reaps them once their parent, the raylet, is gone.
            if (proc.pid != os.getpid() and os.getsid(proc.pid) == session_id
                    and proc.status() != psutil.STATUS_ZOMBIE):
                found.append(proc)
        except (OSError, psutil.Error):
            continue  # exited between listing and reading, or not ours to read
    return found


def stop_head(head: LocalRay, grace: float = 5.0) -> None:
    """SIGTERM the head's process group, then SIGKILL what is left of its session after `grace` seconds.

    Ray drains for up to 30 s on SIGTERM; a local throwaway cluster has nothing to drain.
    Workers outside the process group exit on their own once the raylet is gone, usually
    within seconds; whatever has not by the deadline is killed, so nothing outlives `down`.
    """
    stop_node(head.pid, grace)


def kill_node(pid: int) -> None:
    """A node lost at once (a reclaimed instance, a kernel panic): SIGKILL every process of its session."""
    stop_node(pid, grace=0.0)


def stop_node(pid: int, grace: float = 5.0) -> None:
    """SIGTERM the node's process group (as the kubelet stops a Ray container), then SIGKILL what is
    left of its session after `grace` seconds; `grace` 0 kills at once."""
    if grace > 0:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            if not session_processes(pid):
                break
        time.sleep(0.2)
    try:
        os.killpg(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass
    left = session_processes(pid)
    for proc in left:
        try:
            proc.kill()
        except psutil.Error:
            continue
    psutil.wait_procs(left, timeout=grace)
    # Reap the direct child when it is ours, so no zombie outlives the session.
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass


@contextmanager
def temporary_head(prefix: str, num_cpus: int = 2) -> Iterator[LocalRay]:
    """A head in a fresh directory under /tmp, stopped and its directory removed on exit.

    Under /tmp because Ray's unix sockets live in its temp dir and their paths must fit 108 bytes.
    """
    temp_dir = Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
    try:
        head = start_head(temp_dir, num_cpus=num_cpus)
        try:
            yield head
        finally:
            stop_head(head)
    finally:
        shutil.rmtree(temp_dir, ignore_errors=True)
