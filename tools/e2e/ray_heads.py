"""Real local Ray heads behind the e2e control plane's RayClusters.

Under KWOK a RayCluster's head pod runs nothing. `RayHeads` starts a real Ray head on this
machine for each RayCluster it is told about (tools/local_ray.py: every port free, owned by pid)
and keeps one KWOK PortForward object per head pod of that cluster, pointing the pod's dashboard
and Serve ports at the local head. `kubectl port-forward` and the post-deploy hook's API-server
tunnel then reach real Ray through the API server's real port-forward protocol (API server ->
KWOK's kubelet API -> the local head), and nothing else knows the head's address.

    with RayHeads() as heads:
        head = heads.serve("team-hooks", "hooks")      # a LocalRay: dashboard_url, serve_port, ...
        ... pulumi up a team stack with a RayCluster `hooks` in team-hooks ...
        heads.cut("team-hooks", "hooks")               # its pods' forwards go: the head is unreachable

The head pods are picked up as the operator creates them (a poll every `POLL_S`), so a head
pod recreated by KubeRay is forwarded again without the caller doing anything.

The KubeRay operator itself reaches a head at its Service's cluster DNS name
(`<cluster>-head-svc.<namespace>.svc.cluster.local:8265`: KubeRay's FetchHeadServiceURL), to submit
a RayJob in HTTPMode, follow its status and deploy a RayService's Serve config. Each served head
also gets a loopback address of its own (127.77.x.y), where a relay listens on the dashboard's
Service port, and that name resolves to it in the operator's /etc/hosts
(tools/e2e/controlplane.py, `in_own_hosts`). The RayClusters the operator makes itself (for a
RayJob or a RayService, named with a random suffix) are served with `serve_owned(namespace, kind,
name)`: each gets its own head when it appears, stopped when the RayCluster is gone (Ray heads are
heavy: an upgrade or a TTL frees its head).
"""
from __future__ import annotations

import os
import shutil
import socket
import tempfile
import threading
import urllib.error
from pathlib import Path
from types import TracebackType
from typing import Any

from components.clients.k8s_tunnel import Tunnel
from components.constants import RAY_CLUSTER_LABEL, RAY_DASHBOARD_PORT, RAY_GROUP, RAY_NODE_TYPE_LABEL, RAY_SERVE_PORT
from components.specs.raycluster import head_service_name
from tools.e2e import controlplane as cp
from tools.local_ray import LocalRay, start_head, start_serve, stop_head

POLL_S = 0.5
KWOK_API = "/apis/kwok.x-k8s.io/v1alpha1"
# Every object this harness makes carries it, so a cleanup finds them all and nothing else.
MANAGED_BY = ("app.kubernetes.io/managed-by", "ray-platform-e2e-ray-heads")
# The operator's cluster domain (KubeRay's default; the e2e operator runs without CLUSTER_DOMAIN).
CLUSTER_DOMAIN = "cluster.local"
# KubeRay's labels on the RayClusters it makes for a RayJob or RayService (utils/constant.go).
ORIGIN_KIND, ORIGIN_NAME = "ray.io/originated-from-crd", "ray.io/originated-from-cr-name"
# Where the heads' addresses come from: 127.77.<run>.<n>, a block unlikely to be taken by another run.
ADDRESS_PREFIX = "127.77"
ADDRESS_TRIES = 64


def head_host(namespace: str, cluster: str) -> str:
    """The name the operator dials for the head of RayCluster `namespace/cluster`."""
    return f"{head_service_name(cluster)}.{namespace}.svc.{CLUSTER_DOMAIN}"


def port_forward_object(pod: str, namespace: str, head: LocalRay) -> dict[str, Any]:
    """KWOK's PortForward for `pod`: its dashboard and Serve ports to the local head's."""
    target = {RAY_DASHBOARD_PORT: int(head.dashboard_url.rsplit(":", 1)[1]), RAY_SERVE_PORT: head.serve_port}
    return {
        "apiVersion": "kwok.x-k8s.io/v1alpha1", "kind": "PortForward",
        "metadata": {"name": pod, "namespace": namespace, "labels": {MANAGED_BY[0]: MANAGED_BY[1]}},
        "spec": {"forwards": [{"ports": [port], "target": {"address": "127.0.0.1", "port": to}}
                              for port, to in sorted(target.items())]},
    }


class RayHeads:
    """Local Ray heads by (namespace, RayCluster name), forwarded from that cluster's head pods."""

    def __init__(self, num_cpus: int = 2, env: dict[str, str] | None = None) -> None:
        self.num_cpus = num_cpus
        # Added to every head's environment (e.g. the CA bundle its runtime-env downloads trust).
        self.env = dict(env or {})
        self._heads: dict[tuple[str, str], LocalRay] = {}
        # (namespace, cluster) -> the relay on the head's own loopback address, and that address.
        self._relays: dict[tuple[str, str], tuple[Tunnel, str]] = {}
        # (namespace, kind, name or "") of RayJobs/RayServices -> (CPUs, Serve started) for each cluster they make.
        self._owners: dict[tuple[str, str, str], tuple[int, bool]] = {}
        self._owned: dict[tuple[str, str], LocalRay] = {}
        self._next_address = 1 + int.from_bytes(os.urandom(1), "big") * 256
        self._dirs: list[Path] = []
        self._forwarded: dict[tuple[str, str], str] = {}  # (namespace, pod) -> pod uid
        self._lock = threading.Lock()
        # One sync pass or one cut at a time: a pass must not forward a cluster just cut.
        self._sync_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="ray-heads-forward", daemon=True)
        self.errors: list[str] = []

    def __enter__(self) -> RayHeads:
        self._thread.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self.close()

    def serve(self, namespace: str, cluster: str, num_cpus: int | None = None, serve: bool = False) -> LocalRay:
        """The local head behind RayCluster `namespace/cluster`, started on first use (with Serve
        already running on its `serve_port` when `serve`), reachable by the operator at its name."""
        with self._lock:
            head = self._heads.get((namespace, cluster))
        if head is not None:
            return head
        # Under /tmp: Ray's unix sockets live in its temp dir and their paths must fit 108 bytes.
        temp = Path(tempfile.mkdtemp(prefix=f"e2e-{cluster[:12]}-", dir="/tmp"))
        self._dirs.append(temp)
        head = start_head(temp, num_cpus=self.num_cpus if num_cpus is None else num_cpus, env=self.env)
        if self._stop.is_set():  # closed while it started (a pass of the loop): it must not outlive close
            stop_head(head)
            raise RuntimeError(f"RayHeads closed while the head of {namespace}/{cluster} started")
        if serve:
            start_serve(head)
        # Only now the operator may find it: a Serve config it deployed earlier would start Serve on 8000.
        self._relays[(namespace, cluster)] = self._relay(head)
        cp.set_operator_host(head_host(namespace, cluster), self._relays[(namespace, cluster)][1])
        with self._lock:
            self._heads[(namespace, cluster)] = head
        return head

    def serve_owned(self, namespace: str, kind: str, name: str = "", num_cpus: int | None = None,
                    serve: bool = False) -> None:
        """Serve every RayCluster the operator makes for RayJob or RayService `namespace/name` (any of
        that kind without a name): its own head each, as it appears, stopped once the RayCluster is gone."""
        with self._lock:
            self._owners[(namespace, kind, name)] = (self.num_cpus if num_cpus is None else num_cpus, serve)

    def owned(self, namespace: str) -> dict[str, LocalRay]:
        """The heads of the clusters served through `serve_owned` in `namespace`, by RayCluster name."""
        with self._lock:
            return {cluster: head for (ns, cluster), head in self._owned.items() if ns == namespace}

    def cut(self, namespace: str, cluster: str) -> None:
        """Stop forwarding `cluster`'s head pods (its local head keeps running): unreachable from now on."""
        with self._sync_lock:
            with self._lock:
                self._heads.pop((namespace, cluster), None)
            self._unrelay(namespace, cluster)
            for pod in self._head_pods(namespace, cluster):
                self._delete(namespace, pod["metadata"]["name"])

    def _relay(self, head: LocalRay) -> tuple[Tunnel, str]:
        """A relay to `head`'s dashboard on a loopback address of its own, at the Service's port."""
        upstream = ("127.0.0.1", int(head.dashboard_url.rsplit(":", 1)[1]))
        for _ in range(ADDRESS_TRIES):
            n, self._next_address = self._next_address, self._next_address + 1
            address = f"{ADDRESS_PREFIX}.{n // 256 % 256}.{n % 256 or 1}"
            relay = Tunnel(lambda: socket.create_connection(upstream, timeout=10), f"operator relay to {upstream}",
                           bind=(address, RAY_DASHBOARD_PORT))
            try:
                relay.__enter__()
            except OSError:  # taken (another run's head): the next address
                relay.close()
                continue
            return relay, address
        raise RuntimeError(f"no free {ADDRESS_PREFIX}.x.y:{RAY_DASHBOARD_PORT} in {ADDRESS_TRIES} tries (something "
                           f"listens on 0.0.0.0:{RAY_DASHBOARD_PORT}?)")

    def _unrelay(self, namespace: str, cluster: str) -> None:
        relay = self._relays.pop((namespace, cluster), None)
        if relay is not None:
            cp.set_operator_host(head_host(namespace, cluster), None)
            relay[0].close()

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            # A pass may be starting a head (a RayCluster that just appeared): it stops it itself.
            self._thread.join(timeout=180)
        with self._lock:
            heads, self._heads = list(self._heads.values()), {}
            owned, self._owned = list(self._owned.values()), {}
            forwarded, self._forwarded = list(self._forwarded), {}
        for namespace, cluster in list(self._relays):
            self._unrelay(namespace, cluster)
        for namespace, pod in forwarded:
            self._delete(namespace, pod)
        for head in {id(h): h for h in [*heads, *owned]}.values():
            stop_head(head)
        for temp in self._dirs:
            shutil.rmtree(temp, ignore_errors=True)

    # --- the forwarding loop ------------------------------------------------------------

    @staticmethod
    def _head_pods(namespace: str, cluster: str) -> list[dict[str, Any]]:
        selector = f"{RAY_CLUSTER_LABEL}%3D{cluster},{RAY_NODE_TYPE_LABEL}%3Dhead"
        return list(cp.api("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")["items"])

    def _run(self) -> None:
        while not self._stop.wait(POLL_S):
            try:
                self.sync()
            except Exception as exc:  # noqa: BLE001 - the API server restarting, say: the loop must live on
                self.errors.append(f"{type(exc).__name__}: {exc}"[:300])

    def sync(self) -> None:
        """One pass: a PortForward for every head pod of every served cluster that has none yet."""
        with self._sync_lock:
            self._sync()

    def _sync(self) -> None:
        self._sync_owned()
        with self._lock:
            heads = dict(self._heads)
        for (namespace, cluster), head in heads.items():
            for pod in self._head_pods(namespace, cluster):
                meta = pod["metadata"]
                # Once closed, a pass still under way (a slow API call) must not write a forward
                # to a head that is being stopped.
                if self._stop.is_set() or self._forwarded.get((namespace, meta["name"])) == meta["uid"]:
                    continue
                body = port_forward_object(meta["name"], namespace, head)
                path = f"{KWOK_API}/namespaces/{namespace}/portforwards"
                try:
                    cp.api("POST", path, body)
                except urllib.error.HTTPError as exc:
                    if exc.code != 409:
                        raise
                    cp.api("PATCH", f"{path}/{meta['name']}", {"spec": body["spec"]},
                           content_type="application/merge-patch+json")
                self._forwarded[(namespace, meta["name"])] = meta["uid"]

    def _sync_owned(self) -> None:
        """Start a head for each new RayCluster of a served RayJob/RayService; stop those of the gone."""
        with self._lock:
            owners = dict(self._owners)
        alive: set[tuple[str, str]] = set()
        for (namespace, kind, name), (num_cpus, serve) in owners.items():
            selector = f"{ORIGIN_KIND}%3D{kind}" + (f",{ORIGIN_NAME}%3D{name}" if name else "")
            clusters = cp.api("GET", f"/apis/{RAY_GROUP}/v1/namespaces/{namespace}/rayclusters?labelSelector={selector}")
            for cluster in clusters["items"]:
                key = (namespace, cluster["metadata"]["name"])
                if cluster["metadata"].get("deletionTimestamp") or self._stop.is_set():
                    continue
                alive.add(key)
                if key not in self._owned:
                    head = self.serve(*key, num_cpus=num_cpus, serve=serve)
                    with self._lock:
                        self._owned[key] = head
        for key in [k for k in self._owned if k not in alive]:
            with self._lock:
                head = self._owned.pop(key)
                self._heads.pop(key, None)
            self._unrelay(*key)
            for pod in [p for (ns, p) in list(self._forwarded) if ns == key[0] and p.startswith(f"{key[1]}-")]:
                self._delete(key[0], pod)
            stop_head(head)

    def _delete(self, namespace: str, pod: str) -> None:
        self._forwarded.pop((namespace, pod), None)
        try:
            cp.api("DELETE", f"{KWOK_API}/namespaces/{namespace}/portforwards/{pod}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
