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
"""
from __future__ import annotations

import shutil
import tempfile
import threading
import urllib.error
from pathlib import Path
from types import TracebackType
from typing import Any

from components.constants import RAY_CLUSTER_LABEL, RAY_DASHBOARD_PORT, RAY_NODE_TYPE_LABEL, RAY_SERVE_PORT
from tools.e2e import controlplane as cp
from tools.local_ray import LocalRay, start_head, stop_head

POLL_S = 0.5
KWOK_API = "/apis/kwok.x-k8s.io/v1alpha1"
# Every object this harness makes carries it, so a cleanup finds them all and nothing else.
MANAGED_BY = ("app.kubernetes.io/managed-by", "ray-platform-e2e-ray-heads")


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

    def __init__(self, num_cpus: int = 2) -> None:
        self.num_cpus = num_cpus
        self._heads: dict[tuple[str, str], LocalRay] = {}
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

    def serve(self, namespace: str, cluster: str, num_cpus: int | None = None) -> LocalRay:
        """The local head behind RayCluster `namespace/cluster`, started on first use."""
        with self._lock:
            head = self._heads.get((namespace, cluster))
        if head is not None:
            return head
        # Under /tmp: Ray's unix sockets live in its temp dir and their paths must fit 108 bytes.
        temp = Path(tempfile.mkdtemp(prefix=f"e2e-{cluster[:12]}-", dir="/tmp"))
        self._dirs.append(temp)
        head = start_head(temp, num_cpus=self.num_cpus if num_cpus is None else num_cpus)
        with self._lock:
            self._heads[(namespace, cluster)] = head
        return head

    def cut(self, namespace: str, cluster: str) -> None:
        """Stop forwarding `cluster`'s head pods (its local head keeps running): unreachable from now on."""
        with self._sync_lock:
            with self._lock:
                self._heads.pop((namespace, cluster), None)
            for pod in self._head_pods(namespace, cluster):
                self._delete(namespace, pod["metadata"]["name"])

    def close(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        with self._lock:
            heads, self._heads = list(self._heads.values()), {}
            forwarded, self._forwarded = list(self._forwarded), {}
        for namespace, pod in forwarded:
            self._delete(namespace, pod)
        for head in heads:
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

    def _delete(self, namespace: str, pod: str) -> None:
        self._forwarded.pop((namespace, pod), None)
        try:
            cp.api("DELETE", f"{KWOK_API}/namespaces/{namespace}/portforwards/{pod}")
        except urllib.error.HTTPError as exc:
            if exc.code != 404:
                raise
