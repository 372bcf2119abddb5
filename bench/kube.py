"""The bench on the e2e control plane (docs/e2e.md): team stacks deployed by the real `pulumi`
CLI on the `local` platform, and the floor they are measured against: the same rendered objects
applied server-side by `kubectl`, followed by the same readiness wait.

Bench team stacks are the shipped `demo-local` team stack under another team name and without
jobs (their hooks need a Ray dashboard, which the hook and jobs sections measure on real Ray), so
every figure is about declaring and reconciling the team's objects.
"""
from __future__ import annotations

import base64
import functools
import gzip
import json
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from components import constants as C
from tools.e2e import controlplane as cp
from tools.e2e import stacks
from tools.render import render_stack

BENCH_STACKS = cp.STATE_DIR / "bench-stacks"
RAY = f"/apis/{C.RAY_GROUP}/v1"
CLUSTER = stacks.shipped(stacks.TEAM_STACK)["config"][stacks.key("rayClusters")][0]["name"]
READY_TIMEOUT_S = 300.0
SAMPLE_S = 0.2
FIELD_MANAGER = "bench-floor"
# What each process of a `pulumi` command is, by executable name, for its memory figures.
PROCESS_ROLES = {"pulumi": "engine", "pulumi-resource-kubernetes": "kubernetes provider"}


@contextmanager
def control_plane() -> Iterator[dict[str, Any]]:
    """A running `make e2e-up` is used as it is and left running; otherwise one is started for the
    bench (the `local` platform deployed by `pulumi up`, the operator running) and stopped after."""
    if cp.is_up():
        yield cp.load_state()
        return
    # A no-op once cached; cold, it is the e2e toolchain's build (docs/e2e.md).
    subprocess.run([sys.executable, "-m", "tools.e2e.toolchain", "build"], cwd=cp.REPO, check=True)
    subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "up"], cwd=cp.REPO, check=True)
    try:
        yield cp.load_state()
    finally:
        subprocess.run([sys.executable, "-m", "tools.e2e.controlplane", "down"], cwd=cp.REPO, check=False)


def namespace(team: str) -> str:
    return f"team-{team}"


def team_file(team: str) -> Path:
    """The shipped team stack as team `team`, without jobs, written where only the bench looks."""
    doc = stacks.shipped(stacks.TEAM_STACK)
    config = dict(doc["config"])
    config[stacks.key("team")] = {**config[stacks.key("team")], "name": team}
    config[stacks.key("jobs")] = []
    doc["config"] = config
    BENCH_STACKS.mkdir(parents=True, exist_ok=True)
    path = BENCH_STACKS / f"Pulumi.{team}.yaml"
    path.write_text(f"# bench: stacks/Pulumi.{stacks.TEAM_STACK}.yaml as team {team}, no jobs (bench/kube.py)\n"
                    + yaml.safe_dump(doc, sort_keys=False))
    return path


def init_stack(state: dict[str, Any], stack: str) -> None:
    """`pulumi stack init` writes a stack file into stacks/; the bench's own lives in BENCH_STACKS,
    so the one init leaves behind is removed (the passphrase is the same for both salts)."""
    leftover = stacks.STACKS_DIR / f"Pulumi.{stack}.yaml"
    existed = leftover.exists()
    # init first: the bench removes its stacks at the end, so they are new (one CLI call, not two).
    if stacks.pulumi(state, "stack", "init", stack, "--secrets-provider", "passphrase", check=False).returncode:
        stacks.pulumi(state, "stack", "select", stack)
    if not existed:
        leftover.unlink(missing_ok=True)


@dataclass
class Peaks:
    """Peak resident memory (MiB) per process role while a command ran."""

    mib: dict[str, float] = field(default_factory=dict)

    def sample(self, root: psutil.Process) -> None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return
        now: dict[str, float] = {}
        for proc in tree:
            try:
                role = PROCESS_ROLES.get(proc.name(), "language host and program"
                                         if "python" in proc.name() else None)
                if role:
                    now[role] = now.get(role, 0.0) + proc.memory_info().rss / 2**20
            except psutil.NoSuchProcess:
                continue
        for role, value in now.items():
            self.mib[role] = max(self.mib.get(role, 0.0), value)


def pulumi_timed(state: dict[str, Any], *args: str) -> tuple[float, Peaks, str]:
    """One `pulumi` command: its wall seconds, the peak memory of its processes, its output."""
    peaks = Peaks()
    started = time.monotonic()
    proc = subprocess.Popen(["pulumi", *args, "--non-interactive", "--color", "never"], cwd=cp.REPO,
                            env=stacks.env(state), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out: list[str] = []
    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()), daemon=True)
    reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        peaks.sample(root)
        time.sleep(SAMPLE_S)
    seconds = time.monotonic() - started
    reader.join()
    if proc.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{''.join(out)[-4000:]}")
    return seconds, peaks, "".join(out)


class ReadyWatch:
    """Watches a namespace's RayCluster from before a deploy starts (an API-server watch, so every
    change is seen as it happens): when it is created and when the operator first reports it
    ready. The operator's reconcile time is the difference."""

    def __init__(self, ns: str) -> None:
        self.ns = ns
        self.created: float | None = None
        self.ready: float | None = None
        self.error: Exception | None = None
        state = cp.load_state()
        path = (f"{RAY}/namespaces/{ns}/rayclusters?watch=1&fieldSelector=metadata.name%3D{CLUSTER}"
                f"&timeoutSeconds={READY_TIMEOUT_S:.0f}")
        request = urllib.request.Request(f"https://127.0.0.1:{state['ports']['apiserver']}{path}",
                                         headers={"Accept": "application/json"})
        self._stream = urllib.request.urlopen(request, context=cp._ssl(), timeout=READY_TIMEOUT_S)
        self.started = time.monotonic()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._stream:
                now = time.monotonic()
                event = json.loads(line)
                if event["type"] not in ("ADDED", "MODIFIED"):
                    continue
                if self.created is None:
                    self.created = now
                if event["object"].get("status", {}).get("state") == "ready":
                    self.ready = now
                    return
        except Exception as exc:  # noqa: BLE001 - reported by wait()
            self.error = exc
        finally:
            self._stream.close()

    def wait(self, until: float = 0.0) -> tuple[float, float]:
        """(seconds from the start to ready or to `until`, whichever is later; created -> ready)."""
        self._thread.join(READY_TIMEOUT_S)
        if self.ready is None or self.created is None:
            raise RuntimeError(f"RayCluster {self.ns}/{CLUSTER} not ready within {READY_TIMEOUT_S:.0f} s"
                               + (f": {self.error}" if self.error else ""))
        return max(self.ready, until) - self.started, self.ready - self.created


def rendered_yaml(team: str) -> str:
    """The team stack's Kubernetes objects as the offline render declares them, the namespace first."""
    objects = render_stack(team_file(team), stacks_dir=stacks.STACKS_DIR).manifests()
    objects.sort(key=lambda o: o["kind"] != "Namespace")
    return yaml.safe_dump_all(objects, sort_keys=False)


def kubectl_timed(*args: str, input: str, ok: tuple[int, ...] = (0,)) -> float:
    started = time.monotonic()
    proc = cp.kubectl(*args, input=input, check=False)
    seconds = time.monotonic() - started
    if proc.returncode not in ok:
        raise RuntimeError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return seconds


def floor_apply(objects: str) -> float:
    return kubectl_timed("apply", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=objects)


def floor_diff(objects: str) -> float:
    """`kubectl diff --server-side`: exit 1 means "differences", which is a result, not a failure."""
    return kubectl_timed("diff", "--server-side", f"--field-manager={FIELD_MANAGER}", "-f", "-", input=objects,
                         ok=(0, 1))


def delete_namespace(ns: str) -> None:
    cp.kubectl("delete", "namespace", ns, "--ignore-not-found", "--wait=true", "--timeout=300s")


def namespaced_kinds() -> str:
    out = cp.kubectl("api-resources", "--namespaced=true", "--verbs=list", "-o", "name").stdout
    # Events come and go with the operator's activity: not objects a deploy made.
    return ",".join(k for k in out.split() if not k.startswith("events"))


def api_objects(ns: str, kinds: str) -> int:
    return len(cp.kubectl("get", kinds, "-n", ns, "-o", "name", "--ignore-not-found").stdout.split())


def cpu_capacity_nodes(count: int, cpu: str, memory: str) -> list[dict[str, Any]]:
    """More KWOK nodes shaped like the control plane's CPU pool, so that every bench team's
    RayCluster can run: `count` nodes of `cpu` and `memory`."""
    template = next(n for n in cp.node_objects() if n["metadata"]["labels"][C.NODE_POOL_LABEL] == "cpu")
    nodes = []
    for i in range(count):
        node = yaml.safe_load(yaml.safe_dump(template))
        name = f"kwok-bench-cpu-{i}"
        node["metadata"]["name"] = name
        node["metadata"]["labels"]["kubernetes.io/hostname"] = name
        capacity = {**node["status"]["capacity"], "cpu": cpu, "memory": memory}
        node["status"].update(capacity=capacity, allocatable=capacity)
        nodes.append(node)
    return nodes


# --------------------------------------------------------------------------- the platform's floor

WORKLOADS = ("deployments", "statefulsets", "daemonsets")


def helm_releases() -> list[dict[str, Any]]:
    """Every deployed Helm release as Helm stored it (the Secret's `release`: base64, gzip, JSON)."""
    releases = []
    for secret in cp.api("GET", "/api/v1/secrets?labelSelector=owner%3Dhelm%2Cstatus%3Ddeployed")["items"]:
        raw = base64.b64decode(base64.b64decode(secret["data"]["release"]))
        releases.append(json.loads(gzip.decompress(raw)))
    return releases


def crds_of_groups(groups: set[str]) -> list[dict[str, Any]]:
    """The CRDs of `groups` as the API server has them, stripped to what an apply sends."""
    crds = cp.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    return [{"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
             "metadata": {"name": c["metadata"]["name"], "labels": c["metadata"].get("labels", {}),
                          "annotations": {k: v for k, v in c["metadata"].get("annotations", {}).items()
                                          if k != "kubectl.kubernetes.io/last-applied-configuration"}},
             "spec": c["spec"]} for c in crds if c["spec"]["group"] in groups]


def platform_floor(state: dict[str, Any]) -> tuple[list[dict[str, Any]], set[str]]:
    """What the platform's `pulumi up` puts on the API server, as plain objects to apply in order:
    every CRD its charts and CRD files bring, the program's own objects (its offline render), and
    each Helm release's hooks and manifest in the release's namespace. Read from a deployed
    platform; returns the objects and the namespaces whose workloads the readiness wait covers."""
    releases = helm_releases()
    release_objects: list[dict[str, Any]] = []
    for release in releases:
        docs = [hook["manifest"] for hook in release.get("hooks") or []] + [release["manifest"]]
        for obj in (o for doc in docs for o in yaml.safe_load_all(doc) if o):
            if obj.get("kind") != "CustomResourceDefinition" and obj["kind"] not in cluster_scoped_kinds():
                obj.setdefault("metadata", {}).setdefault("namespace", release["namespace"])
            release_objects.append(obj)
    own = render_stack(stacks.layered(state, stacks.PLATFORM_STACK), stacks_dir=stacks.STACKS_DIR).manifests()
    # The CRDs the objects are instances of (the charts' CRDs come from subcharts' crds/, which
    # a release does not record), and KubeRay's, which the platform applies from its CRD source.
    custom = {o["apiVersion"].split("/")[0] for o in own + release_objects if "." in o["apiVersion"].split("/")[0]}
    groups = {C.RAY_GROUP} | {g for g in custom if not g.endswith(".k8s.io")}
    namespaces = [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": r["namespace"]}} for r in releases]
    ordered = crds_of_groups(groups) + namespaces + sorted(own, key=lambda o: o["kind"] != "Namespace") + release_objects
    return ordered, {r["namespace"] for r in releases}


@functools.cache
def cluster_scoped_kinds() -> frozenset[str]:
    out = cp.kubectl("api-resources", "--namespaced=false", "--no-headers").stdout
    return frozenset(line.split()[-1] for line in out.splitlines() if line.split())


def delete_objects(objects: list[dict[str, Any]]) -> None:
    """Everything but the CRDs (a platform's destroy keeps those too), and wait until it is gone."""
    rest = [o for o in objects if o["kind"] != "CustomResourceDefinition"]
    cp.kubectl("delete", "--ignore-not-found", "--wait=true", "--timeout=300s", "-f", "-",
               input=yaml.safe_dump_all(rest, sort_keys=False))


def workloads_ready(namespaces: set[str]) -> bool:
    """Helm's wait: every Deployment, StatefulSet and DaemonSet in `namespaces` ready, every Job done."""
    for ns in namespaces:
        for kind in WORKLOADS:
            for obj in cp.api("GET", f"/apis/apps/v1/namespaces/{ns}/{kind}")["items"]:
                status, want = obj.get("status", {}), obj.get("spec", {}).get("replicas", 1)
                if kind == "daemonsets":
                    if status.get("numberReady", 0) < status.get("desiredNumberScheduled", 1):
                        return False
                elif status.get("readyReplicas", 0) < want:
                    return False
        for job in cp.api("GET", f"/apis/batch/v1/namespaces/{ns}/jobs")["items"]:
            if not job.get("status", {}).get("succeeded"):
                return False
    return True


def wait_workloads(namespaces: set[str], timeout: float = READY_TIMEOUT_S) -> None:
    cp.wait_for(f"workloads ready in {sorted(namespaces)}", lambda: workloads_ready(namespaces), timeout, every=0.2)
