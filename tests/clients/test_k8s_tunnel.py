"""The API-server tunnel of the SDK hooks (components/clients/k8s_tunnel.py).

Pure parts (pod selection, port mapping, kubeconfig forms) are unit tests; the byte relay runs
against a local TCP echo server; and the hook runs end to end in tunnel mode against the real
local Ray head, with the Kubernetes port-forward stream replaced by a plain TCP connection to the
head's dashboard port and the pod listing by a canned answer (the two calls that need an API server).
"""
from __future__ import annotations

import json
import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pulumi
import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from pulumi.runtime import rpc

import components.clients.k8s_tunnel as tunnel_mod
from components.clients.k8s_tunnel import (
    ClusterGone, Tunnel, TunnelError, dashboard_port, describe_pods, head_pod_selector, kubeconfig_source,
    pick_head_pod, raycluster_exists, relay, wait_for_head_pod,
)
from components.clients.ray_dashboard import DashboardUnreachable, JobClient
from components.clients.ray_jobs import RayJobArgs
from components.hooks.ray_job import RayJob, RayJobProvider, check_failures
from components.specs.digest import submission_id_for
from tests.clock import FakeClock
from tests.stacks import rendered
from tools.local_ray import LocalRay
from tools.render import SECRET, STACKS_DIR

pytestmark = pytest.mark.timeout(180)

KUBECONFIG = yaml.safe_dump({
    "apiVersion": "v1", "kind": "Config", "current-context": "test",
    "clusters": [{"name": "test", "cluster": {"server": "https://127.0.0.1:1"}}],
    "users": [{"name": "test", "user": {"token": "not-a-real-token"}}],
    "contexts": [{"name": "test", "context": {"cluster": "test", "user": "test"}}],
})


def pod(name: str, created: str, phase: str = "Running", ready: bool = True, deleting: bool = False,
        ports: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "creationTimestamp": created,
                            "labels": {"ray.io/cluster": "demo", "ray.io/node-type": "head"}}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:10:00Z"
    return {
        "metadata": meta,
        "spec": {"containers": [{"name": "ray-head", "ports": ports if ports is not None else [
            {"name": "gcs-server", "containerPort": 6379}, {"name": "dashboard", "containerPort": 8265}]}]},
        "status": {"phase": phase, "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }


# --- pure: pod selection, port mapping, kubeconfig -----------------------------------------

def test_head_pods_are_selected_by_the_labels_kuberay_sets() -> None:
    assert head_pod_selector("demo") == "ray.io/cluster=demo,ray.io/node-type=head"


def test_the_newest_running_ready_pod_not_being_deleted_is_picked() -> None:
    pods = [
        pod("old", "2026-01-01T00:00:00Z"),
        pod("current", "2026-01-01T00:05:00Z"),
        pod("starting", "2026-01-01T00:06:00Z", phase="Pending", ready=False),
        pod("not-ready", "2026-01-01T00:07:00Z", ready=False),
        pod("terminating", "2026-01-01T00:08:00Z", deleting=True),
    ]
    assert pick_head_pod(pods)["metadata"]["name"] == "current"  # type: ignore[index]
    assert pick_head_pod(pods[2:]) is None
    assert describe_pods(pods[2:]) == ("starting: Pending; not-ready: Running, not Ready; "
                                       "terminating: terminating")
    assert describe_pods([]) == "no pod matches"


def test_the_dashboard_port_is_the_named_container_port() -> None:
    assert dashboard_port(pod("p", "t")) == 8265
    assert dashboard_port(pod("p", "t", ports=[{"name": "dashboard", "containerPort": 18265}])) == 18265
    assert dashboard_port(pod("p", "t", ports=[])) == 8265


def test_kubeconfig_is_a_document_or_the_path_to_one(tmp_path: Path) -> None:
    assert kubeconfig_source(KUBECONFIG)["current-context"] == "test"  # type: ignore[index]
    assert kubeconfig_source(json.dumps(yaml.safe_load(KUBECONFIG)))["kind"] == "Config"  # type: ignore[index]
    assert kubeconfig_source(" ~/.kube/config\n") == Path.home() / ".kube" / "config"
    path = tmp_path / "kubeconfig"
    path.write_text(KUBECONFIG)
    assert kubeconfig_source(str(path)) == path
    # Both forms give a working client (no connection is made).
    for source in (KUBECONFIG, str(path)):
        with tunnel_mod.api_client(source, "test") as client:
            assert client.configuration.host == "https://127.0.0.1:1"


# --- the byte relay against a local TCP server ---------------------------------------------

class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


class _SayAndHangUp(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        self.request.sendall(b"bye")


@pytest.fixture
def server(request: pytest.FixtureRequest) -> Iterator[tuple[str, int]]:
    handler = getattr(request, "param", _Echo)
    srv = socketserver.ThreadingTCPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield srv.server_address[0], int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()


def recv_exactly(sock: socket.socket, size: int) -> bytes:
    chunks, got = [], 0
    while got < size:
        chunk = sock.recv(min(65536, size - got))
        assert chunk, f"connection closed after {got} of {size} bytes"
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def test_relay_copies_both_ways_and_closes_both_ends() -> None:
    client, client_peer = socket.socketpair()
    upstream, upstream_peer = socket.socketpair()
    worker = threading.Thread(target=relay, args=(client_peer, upstream_peer))
    worker.start()
    client.sendall(b"ping")
    assert upstream.recv(4) == b"ping"
    upstream.sendall(b"pong")
    assert client.recv(4) == b"pong"
    client.close()  # either side closing ends the relay
    worker.join(timeout=5)
    assert not worker.is_alive()
    assert upstream.recv(1) == b""
    upstream.close()


def test_tunnel_relays_large_payloads_on_concurrent_connections(server: tuple[str, int]) -> None:
    payload = bytes(range(256)) * 16384  # 4 MiB: more than any socket buffer
    with Tunnel(lambda: socket.create_connection(server), "to the echo server") as tunnel:
        assert urlparse(tunnel.url).hostname == "127.0.0.1"
        results: dict[int, bytes] = {}

        def roundtrip(i: int) -> None:
            with socket.create_connection(("127.0.0.1", tunnel.port)) as sock:
                sender = threading.Thread(target=sock.sendall, args=(payload,))
                sender.start()
                results[i] = recv_exactly(sock, len(payload))
                sender.join()

        workers = [threading.Thread(target=roundtrip, args=(i,)) for i in range(3)]
        for w in workers:
            w.start()
        for w in workers:
            w.join(timeout=60)
        assert results == {0: payload, 1: payload, 2: payload}


@pytest.mark.parametrize("server", [_SayAndHangUp], indirect=True)
def test_upstream_hanging_up_ends_the_client_connection(server: tuple[str, int]) -> None:
    with Tunnel(lambda: socket.create_connection(server), "to a server that hangs up") as tunnel, \
            socket.create_connection(("127.0.0.1", tunnel.port)) as sock:
        sock.settimeout(5)
        assert recv_exactly(sock, 3) == b"bye"
        assert sock.recv(1) == b""
        # An ended relay is forgotten: a long wait over the tunnel opens one per poll.
        deadline = time.monotonic() + 5
        while (tunnel._open or len(tunnel._threads) > 1) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert (tunnel._open, len(tunnel._threads)) == ([], 1)


def test_closing_the_tunnel_ends_live_connections_and_stops_listening(server: tuple[str, int]) -> None:
    with Tunnel(lambda: socket.create_connection(server), "to the echo server") as tunnel:
        sock = socket.create_connection(("127.0.0.1", tunnel.port))
        sock.sendall(b"x")
        assert sock.recv(1) == b"x"
        port = tunnel.port
    sock.settimeout(5)
    assert sock.recv(1) == b""  # the live relay was shut down
    sock.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2)


def test_a_failed_upstream_drops_only_that_connection_and_is_remembered() -> None:
    def refuse() -> socket.socket:
        raise TunnelError("pod is gone")

    with Tunnel(refuse, "to nowhere") as tunnel, socket.create_connection(("127.0.0.1", tunnel.port)) as sock:
        sock.settimeout(5)
        assert sock.recv(1) == b""
        deadline = time.monotonic() + 5
        while tunnel.last_error is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert tunnel.last_error == "TunnelError: pod is gone"


# --- finding the head pod ----------------------------------------------------------------------

def test_waiting_for_the_head_pod_polls_then_names_what_it_saw(monkeypatch: pytest.MonkeyPatch) -> None:
    answers = iter([[], [pod("h", "t", phase="Pending", ready=False)], [pod("h", "t")]])
    seen: list[tuple[str, str]] = []

    def list_pods(_api: Any, namespace: str, selector: str) -> list[dict[str, Any]]:
        seen.append((namespace, selector))
        return next(answers)

    monkeypatch.setattr(tunnel_mod, "list_pods", list_pods)
    clock = FakeClock()
    found = wait_for_head_pod(object(), "team-demo", "demo", 30, clock)  # type: ignore[arg-type]
    assert found["metadata"]["name"] == "h"
    assert seen == [("team-demo", "ray.io/cluster=demo,ray.io/node-type=head")] * 3
    assert clock.sleeps == [1.0, 2.0]

    monkeypatch.setattr(tunnel_mod, "list_pods", lambda *_: [pod("h", "t", ready=False)])
    with pytest.raises(TunnelError, match=r"RayCluster 'demo' in namespace 'team-demo' has no Running and Ready "
                                          r"head pod after 0s \(h: Running, not Ready\)"):
        wait_for_head_pod(object(), "team-demo", "demo", 0)  # type: ignore[arg-type]


def test_a_raycluster_that_is_gone_ends_the_wait_for_its_head_at_once(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel_mod, "list_pods", lambda *_: [])
    clock = FakeClock()
    with pytest.raises(ClusterGone, match=r"RayCluster 'demo' in namespace 'team-demo' does not exist"):
        wait_for_head_pod(object(), "team-demo", "demo", 600, clock, exists=lambda: False)  # type: ignore[arg-type]
    assert clock.sleeps == []


@pytest.mark.parametrize(("answer", "exists"), [(None, True), (404, False), (403, True), (OSError("down"), True)])
def test_raycluster_exists_is_false_only_on_not_found(answer: Any, exists: bool) -> None:
    class Api:
        def get_namespaced_custom_object(self, *args: Any, **_kw: Any) -> dict[str, Any]:
            assert args == ("ray.io", "v1", "team-demo", "rayclusters", "demo")
            if isinstance(answer, int):
                raise ApiException(status=answer)
            if isinstance(answer, Exception):
                raise answer
            return {}

    assert raycluster_exists(Api(), "team-demo", "demo") is exists  # type: ignore[arg-type]


# --- the SDK hook through the tunnel, against the real local Ray head ------------------------

@pytest.fixture
def fake_cluster(ray_head: LocalRay, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The two API-server calls answered locally: the pod list, and the port-forward stream as a
    plain TCP connection to the local head's dashboard port."""
    dashboard = urlparse(ray_head.dashboard_url)
    record: dict[str, Any] = {"forwards": [], "tunnels": []}

    def port_forward(_api: Any, namespace: str, name: str, port: int) -> socket.socket:
        record["forwards"].append((namespace, name, port))
        return socket.create_connection((dashboard.hostname, dashboard.port))

    class RecordedTunnel(Tunnel):
        def __enter__(self) -> Tunnel:
            record["tunnels"].append(self)
            return super().__enter__()

    monkeypatch.setattr(tunnel_mod, "list_pods", lambda *_: [pod("demo-head-x7k2p", "2026-01-01T00:00:00Z")])
    monkeypatch.setattr(tunnel_mod, "port_forward", port_forward)
    monkeypatch.setattr(tunnel_mod, "Tunnel", RecordedTunnel)
    return record


def tunnel_args(tmp_path: Path, job_name: str, **overrides: Any) -> RayJobArgs[Any]:
    (tmp_path / "hello.py").write_text("print('through the tunnel')\nprint('ray-platform-result: {\"hops\": 2}')\n")
    values: dict[str, Any] = dict(
        job_name=job_name, kind="core", entrypoint="python hello.py", runtime_env={"working_dir": str(tmp_path)},
        code_hash="c0ffee", dashboard_url="http://demo-head-svc.team-demo.svc:8265", timeout_seconds=90,
        dashboard_wait_seconds=20, dashboard_access="tunnel", kubeconfig=KUBECONFIG, kube_context="test",
        namespace="team-demo", cluster_name="demo",
    )
    values.update(overrides)
    return RayJobArgs(**values)


def props_of(args: RayJobArgs[Any]) -> dict[str, Any]:
    return {k: (float(v) if isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in vars(args).items() if v is not None}


@pytest.mark.ray
def test_the_hook_submits_through_the_tunnel_and_the_job_succeeds(fake_cluster: dict[str, Any], tmp_path: Path,
                                                                 ray_head: LocalRay) -> None:
    args = tunnel_args(tmp_path, "tunnelled")
    created = RayJobProvider().create(props_of(args))
    outs = created.outs or {}
    assert created.id == submission_id_for(vars(args))
    assert outs["status"] == "SUCCEEDED" and outs["result"] == {"hops": 2}
    # People get the cluster's own address, not the tunnel's throwaway port.
    assert outs["dashboard_url"] == "http://demo-head-svc.team-demo.svc:8265"
    assert outs["job_url"] == f"http://demo-head-svc.team-demo.svc:8265/#/jobs/{created.id}"
    assert fake_cluster["forwards"] and set(fake_cluster["forwards"]) == {("team-demo", "demo-head-x7k2p", 8265)}
    # The working_dir upload, the submission and every poll went through the relay.
    assert JobClient(ray_head.dashboard_url).sdk.get_job_status(created.id) == "SUCCEEDED"

    RayJobProvider().read(created.id, outs)
    RayJobProvider().delete(created.id, outs)
    assert len(fake_cluster["tunnels"]) == 3, "one tunnel per provider operation"
    for tunnel in fake_cluster["tunnels"]:
        with pytest.raises(ConnectionRefusedError):  # every one of them closed
            socket.create_connection(("127.0.0.1", tunnel.port), timeout=2)


@pytest.mark.ray
def test_job_client_works_over_a_tunnel_url(ray_head: LocalRay) -> None:
    dashboard = urlparse(ray_head.dashboard_url)
    with Tunnel(lambda: socket.create_connection((dashboard.hostname, dashboard.port)), "to the head") as tunnel:
        client = JobClient(tunnel.url)
        sid = client.sdk.submit_job(entrypoint="python -c \"print('hi')\"")
        deadline = time.monotonic() + 60
        while (info := client.info(sid)) is None or info.status not in ("SUCCEEDED", "FAILED", "STOPPED"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert info.status == "SUCCEEDED" and "hi" in client.logs(sid)


def test_no_head_pod_fails_the_hook_with_what_the_tunnel_saw(fake_cluster: dict[str, Any], tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tunnel_mod, "list_pods", lambda *_: [pod("demo-head-x", "t", phase="Pending", ready=False)])
    with pytest.raises(DashboardUnreachable, match=r"Ray job 'nohead': RayCluster 'demo' in namespace 'team-demo' "
                                                   r"has no Running and Ready head pod after 0s"):
        RayJobProvider().create(props_of(tunnel_args(tmp_path, "nohead", dashboard_wait_seconds=0)))
    assert fake_cluster["forwards"] == []


def test_tunnel_mode_needs_the_kubeconfig_namespace_and_cluster() -> None:
    base = {"job_name": "j", "kind": "core", "entrypoint": "python x.py", "code_hash": "c",
            "dashboard_url": "http://h:8265", "dashboard_access": "tunnel"}
    assert {p for p, _ in check_failures(base)} == {"kubeconfig", "namespace", "cluster_name"}
    assert check_failures({**base, "kubeconfig": "k", "namespace": "n", "cluster_name": "c"}) == []
    assert [p for p, _ in check_failures({**base, "dashboard_access": "vpn"})] == ["dashboard_access"]
    # Unknown at preview (the platform's kubeconfig output) is not a failure.
    unknown = {**base, "kubeconfig": pulumi.output.Unknown(), "namespace": "n", "cluster_name": "c"}
    assert check_failures(unknown) == []


class _Mocks(pulumi.runtime.Mocks):
    def __init__(self) -> None:
        self.inputs: dict[str, Any] = {}

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        self.inputs = dict(args.inputs)
        return "id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> tuple[dict[str, Any], None]:
        return {}, None


def test_the_kubeconfig_stays_a_secret_in_the_hooks_state(tmp_path: Path) -> None:
    mocks = _Mocks()
    pulumi.runtime.set_mocks(mocks, project="ray-platform", stack="test", preview=False)

    @pulumi.runtime.test
    def build() -> pulumi.Output[Any]:
        job = RayJob("tunnelled", tunnel_args(tmp_path, "tunnelled"))

        def check(_: Any) -> None:
            assert rpc.is_rpc_secret(mocks.inputs["kubeconfig"])
            assert mocks.inputs["dashboard_access"] == "tunnel" and mocks.inputs["cluster_name"] == "demo"

        return job.urn.apply(check)

    build()


def test_vision_dev_hooks_tunnel_with_the_platform_kubeconfig_as_a_secret() -> None:
    hooks = [r for r in rendered(STACKS_DIR / "Pulumi.vision-dev.yaml").resources
             if r["type"] == "pulumi-python:dynamic:RayJob"]
    assert {h["name"] for h in hooks} == {"vision-job-train-digits", "vision-job-infer-digits",
                                          "vision-job-serve-digits"}
    for hook in hooks:
        inputs = hook["inputs"]
        assert inputs["dashboard_access"] == "tunnel" and inputs["kubeconfig"] == SECRET
        assert (inputs["namespace"], inputs["cluster_name"]) == ("team-vision", "dev")
        assert inputs["dashboard_url"] == "http://dev-head-svc.team-vision.svc:8265"
        assert inputs["entrypoint"].startswith(f"python -m jobs.{inputs['kind']} --config-json ")
