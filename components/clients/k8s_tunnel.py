"""Reaching a RayCluster's dashboard through the Kubernetes API server, as `kubectl port-forward` does.

The machine running `pulumi up` can always reach the API server (pulumi-kubernetes needs it) but
rarely a dashboard inside a private VPC. So, in tunnel mode, the post-deploy hook opens a tunnel
per provider operation: a listener on 127.0.0.1:<free port> where every accepted connection gets
its own port-forward stream (the official `kubernetes` client) to the head pod's dashboard port,
with bytes relayed both ways until either side closes. The tunnel is always closed on exit.

The pure parts (which pod, which port, which kubeconfig) and the byte relay are separate from the
Kubernetes client, so they are tested without a cluster: the relay against a local TCP server,
the whole hook against a real local Ray head reached through the relay.
"""
from __future__ import annotations

import json
import selectors
import socket
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import yaml

from components.clients.polling import SYSTEM_CLOCK, Backoff, Clock, Deadline, attempts
from components.constants import RAY_CLUSTER_LABEL, RAY_DASHBOARD_PORT, RAY_GROUP, RAY_NODE_TYPE_LABEL

if TYPE_CHECKING:
    from kubernetes.client import ApiClient, CoreV1Api, CustomObjectsApi

LOOPBACK = "127.0.0.1"
# KubeRay names the head container's dashboard port "dashboard" (and so does the spec builder).
DASHBOARD_PORT_NAME = "dashboard"
BUFFER_BYTES = 64 * 1024
ACCEPT_POLL_S = 0.2
HEAD_POD_POLL = Backoff(first_s=1.0, max_s=10.0)
CLOSE_WAIT_S = 5.0
API_TIMEOUT_S = 30.0

Pod = Mapping[str, Any]


class TunnelError(RuntimeError):
    """The tunnel could not be opened; the message says what to check."""


class ClusterGone(TunnelError):
    """The RayCluster itself is not there (deleted): no head pod will come."""


class Stream(Protocol):
    """What the relay needs from either end: a socket, or the client's port-forward socket."""

    def recv(self, size: int, /) -> bytes: ...

    def sendall(self, data: bytes, /) -> None: ...

    def shutdown(self, how: int, /) -> None: ...

    def close(self) -> None: ...

    def fileno(self) -> int: ...


# --- pure: which pod, which port, which kubeconfig ---------------------------------------

def head_pod_selector(cluster: str) -> str:
    """The label selector of a RayCluster's head pod, from the labels KubeRay puts on its pods."""
    return f"{RAY_CLUSTER_LABEL}={cluster},{RAY_NODE_TYPE_LABEL}=head"


def is_serving(pod: Pod) -> bool:
    """Running, Ready and not being deleted: a pod that can take a port-forward now."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
    return status.get("phase") == "Running" and ready and not meta.get("deletionTimestamp")


def pick_head_pod(pods: Sequence[Pod]) -> Pod | None:
    """The newest serving pod: after a head restart the old pod may linger while terminating."""
    serving = [p for p in pods if is_serving(p)]
    # RFC 3339 timestamps in UTC ("2026-01-02T03:04:05Z") sort as strings.
    serving.sort(key=lambda p: (str((p.get("metadata") or {}).get("creationTimestamp", "")),
                                str((p.get("metadata") or {}).get("name", ""))), reverse=True)
    return serving[0] if serving else None


def dashboard_port(pod: Pod) -> int:
    """The container port named "dashboard" on the pod, else Ray's default."""
    for container in (pod.get("spec") or {}).get("containers") or []:
        for port in container.get("ports") or []:
            if port.get("name") == DASHBOARD_PORT_NAME and port.get("containerPort"):
                return int(port["containerPort"])
    return RAY_DASHBOARD_PORT


def describe_pods(pods: Sequence[Pod]) -> str:
    """One line on why none of `pods` was picked, for the error message."""
    if not pods:
        return "no pod matches"
    states = []
    for pod in pods:
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        state = "terminating" if meta.get("deletionTimestamp") else str(status.get("phase", "?"))
        if state == "Running" and not is_serving(pod):
            state = "Running, not Ready"
        states.append(f"{meta.get('name', '?')}: {state}")
    return "; ".join(states)


def kubeconfig_source(kubeconfig: str) -> dict[str, Any] | Path:
    """A kubeconfig document, or the path to one.

    The platform stack exports the document itself on EKS, and for an existing cluster either
    the document or the path of a kubeconfig file, as the Kubernetes provider accepts both.
    """
    try:
        doc = yaml.safe_load(kubeconfig)
    except yaml.YAMLError:
        doc = None
    if isinstance(doc, dict):
        return doc
    return Path(kubeconfig.strip()).expanduser()


def tunnel_url(port: int) -> str:
    return f"http://{LOOPBACK}:{port}"


# --- the byte relay -----------------------------------------------------------------------

def _quietly(action: Callable[[], object]) -> None:
    try:
        action()
    except OSError:
        pass


def relay(client: Stream, upstream: Stream, buffer_bytes: int = BUFFER_BYTES) -> None:
    """Copy bytes both ways until either side closes (or fails), then close both.

    One selector over both ends, so a slow reader on one side holds back the other instead of
    buffering without bound, and nothing is left blocked in another thread at the end.
    """
    with selectors.DefaultSelector() as selector:
        selector.register(client, selectors.EVENT_READ, upstream)
        selector.register(upstream, selectors.EVENT_READ, client)
        try:
            while True:
                for key, _ in selector.select():
                    data = key.fileobj.recv(buffer_bytes)  # type: ignore[union-attr]
                    if not data:
                        return
                    key.data.sendall(data)
        except OSError:
            return
        finally:
            for end in (client, upstream):
                _quietly(lambda end=end: end.shutdown(socket.SHUT_RDWR))
                _quietly(end.close)


class Tunnel:
    """A listener on 127.0.0.1:<free port> (or `bind`); each connection is relayed to a fresh `connect()` stream.

    `last_error` keeps the latest failure to open an upstream, so a caller that only sees a
    dropped HTTP connection can say why.
    """

    def __init__(self, connect: Callable[[], Stream], description: str,
                 bind: tuple[str, int] = (LOOPBACK, 0)) -> None:
        self._connect = connect
        self._bind = bind
        self.description = description
        self.last_error: str | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._open: list[Stream] = []
        self._threads: list[threading.Thread] = []
        self.port = 0

    @property
    def url(self) -> str:
        return tunnel_url(self.port)

    def __enter__(self) -> Tunnel:
        self._listener.bind(self._bind)
        self._listener.listen(16)
        # accept() with a timeout: closing a listener from another thread does not wake it everywhere.
        self._listener.settimeout(ACCEPT_POLL_S)
        self.port = int(self._listener.getsockname()[1])
        accept = threading.Thread(target=self._accept_loop, name=f"tunnel-accept-{self.port}", daemon=True)
        accept.start()
        self._threads.append(accept)
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            conn.settimeout(None)
            worker = threading.Thread(target=self._serve, args=(conn,), name=f"tunnel-relay-{self.port}",
                                      daemon=True)
            with self._lock:
                self._threads.append(worker)
            worker.start()

    def _serve(self, conn: socket.socket) -> None:
        try:
            upstream = self._connect()
        except Exception as exc:  # noqa: BLE001 - any failure to open the stream drops this connection only
            self.last_error = f"{type(exc).__name__}: {exc}"[:500]
            _quietly(conn.close)
            return
        with self._lock:
            if self._closed.is_set():
                _quietly(upstream.close)
                _quietly(conn.close)
                return
            self._open.extend((conn, upstream))
        try:
            relay(conn, upstream)
        finally:
            # Every poll of a long wait opens a connection: forget the ones that ended.
            with self._lock:
                self._open = [end for end in self._open if end is not conn and end is not upstream]
                self._threads = [t for t in self._threads if t is not threading.current_thread()]

    def close(self) -> None:
        """Stop accepting, end every relay (shutdown wakes their selectors) and wait for them briefly."""
        self._closed.set()
        _quietly(self._listener.close)
        with self._lock:
            for end in self._open:
                _quietly(lambda end=end: end.shutdown(socket.SHUT_RDWR))
            threads = list(self._threads)
        deadline = Deadline(CLOSE_WAIT_S)
        for thread in threads:
            thread.join(timeout=max(0.0, deadline.remaining()))


# --- the Kubernetes side --------------------------------------------------------------------

def api_client(kubeconfig: str, context: str | None) -> ApiClient:
    from kubernetes import config

    source = kubeconfig_source(kubeconfig)
    if isinstance(source, Path):
        return config.new_client_from_config(config_file=str(source), context=context or None,
                                             persist_config=False)
    return config.new_client_from_config_dict(source, context=context or None, persist_config=False)


def list_pods(api: CoreV1Api, namespace: str, selector: str) -> list[dict[str, Any]]:
    """Pods as the API serves them (camelCase JSON), which is what the pure functions read."""
    resp = api.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False,
                                   _request_timeout=API_TIMEOUT_S)
    return list(json.loads(resp.data).get("items") or [])


def raycluster_exists(api: CustomObjectsApi, namespace: str, cluster: str) -> bool:
    """Whether RayCluster `cluster` is there; True when the API will not say (no `get` on it, an error)."""
    from kubernetes.client.exceptions import ApiException

    try:
        api.get_namespaced_custom_object(RAY_GROUP, "v1", namespace, "rayclusters", cluster,
                                         _request_timeout=API_TIMEOUT_S)
    except ApiException as exc:
        return exc.status != 404
    except Exception:  # noqa: BLE001 - unreachable or unreadable counts as "maybe there": keep waiting
        return True
    return True


def wait_for_head_pod(api: CoreV1Api, namespace: str, cluster: str, wait_s: float,
                      clock: Clock = SYSTEM_CLOCK, exists: Callable[[], bool] = lambda: True) -> Pod:
    """Poll until the cluster has a serving head pod; a fresh RayCluster takes minutes to get one.

    `exists` is asked whenever there is none: a RayCluster that is gone raises ClusterGone at once."""
    from kubernetes.client.exceptions import ApiException

    for _ in attempts(HEAD_POD_POLL, Deadline(wait_s, clock)):
        try:
            pods = list_pods(api, namespace, head_pod_selector(cluster))
        except ApiException as exc:
            raise TunnelError(f"listing the head pod of RayCluster {cluster!r} in namespace {namespace!r} failed: "
                              f"HTTP {exc.status} {exc.reason}; the deployer's kubeconfig needs pods "
                              f"get/list and pods/portforward create there") from None
        pod = pick_head_pod(pods)
        if pod is not None:
            return pod
        if not exists():
            raise ClusterGone(f"RayCluster {cluster!r} in namespace {namespace!r} does not exist (deleted?)")
    raise TunnelError(f"RayCluster {cluster!r} in namespace {namespace!r} has no Running and Ready head pod "
                      f"after {wait_s:g}s ({describe_pods(pods)}); see `kubectl -n {namespace} get pods "
                      f"-l {head_pod_selector(cluster)}`")


def port_forward(api: CoreV1Api, namespace: str, pod: str, port: int) -> Stream:
    """One port-forward stream to `pod`:`port`; closing the returned socket ends the stream."""
    from kubernetes.stream import portforward

    forward = portforward(api.connect_get_namespaced_pod_portforward, pod, namespace, ports=str(port))
    return forward.socket(port)  # type: ignore[no-any-return]


@contextmanager
def dashboard_tunnel(kubeconfig: str, context: str | None, namespace: str, cluster: str,
                     wait_s: float) -> Iterator[Tunnel]:
    """A tunnel from 127.0.0.1 to the dashboard of RayCluster `cluster`'s current head pod."""
    from kubernetes.client import CoreV1Api, CustomObjectsApi

    try:
        client = api_client(kubeconfig, context)
    except Exception as exc:  # noqa: BLE001 - a bad kubeconfig has many exception types; all mean the same
        raise TunnelError(f"cannot use the platform stack's kubeconfig (context {context!r}): "
                          f"{type(exc).__name__}: {exc}"[:600]) from None
    with client:
        api = CoreV1Api(client)
        pod = wait_for_head_pod(api, namespace, cluster, wait_s,
                                exists=lambda: raycluster_exists(CustomObjectsApi(client), namespace, cluster))
        name, port = str(pod["metadata"]["name"]), dashboard_port(pod)
        with Tunnel(lambda: port_forward(api, namespace, name, port),
                    f"API-server tunnel to pod {namespace}/{name}:{port}") as tunnel:
            yield tunnel
