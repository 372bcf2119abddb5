"""Kueue on the e2e control plane: the controller the platform's chart deploys, run as a host process
(built from its Go module at KUEUE_VERSION by tools/e2e/toolchain.py), as the KubeRay operator is.

    python -m tools.e2e.kueue   # the supervisor `controlplane up` starts (make e2e-up)

The `local` platform stack's `pulumi up` installs the chart: Kueue's CRDs, webhook configurations,
Services, its ConfigMap, and a Deployment whose pod KWOK schedules but, unlike every other pod, does
not make Ready (`kwok_stages`). This supervisor does, once the real controller it runs is ready. So
Helm's wait for the release, which in a real cluster waits for Kueue's readiness (certificates made
and injected, webhooks serving), waits for exactly that here too, and the queue objects the stack
creates next pass through Kueue's webhooks as they would on EKS.

The loop: once the chart's CRDs and ConfigMap exist, run `kueue` with the chart's configuration,
changed only where a host process must differ (loopback ports, its own certificate directory, no
leader election); route the webhook and visibility Services to it (tools/e2e/egress.py); once it is
ready, mark the chart's controller pod Ready. When the CRDs go (the platform destroyed), stop it.
"""
from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import yaml

from components.specs.kueue import MANAGER_CONFIG_KEY, MANAGER_CONFIG_MAP, RELEASE_NAME, WEBHOOK_SERVICE
from components.versions import KUEUE_CHART
from tools.e2e import controlplane as cp
from tools.e2e import egress

HOME = cp.STATE_DIR / "kueue"
CONFIG = HOME / "config.yaml"
CERTS = HOME / "certs"
CONTROLLER_LOG = cp.LOGS / "kueue-controller.log"
PORTS = ("kueue-webhook", "kueue-probe", "kueue-visibility")
CRD = "clusterqueues.kueue.x-k8s.io"
VISIBILITY_SERVICE = f"{RELEASE_NAME}-visibility-server"
# The chart's controller pod (its kueue.selectorLabels), which the harness, not KWOK, makes Ready.
POD_NAME_LABEL, POD_NAME = "app.kubernetes.io/name", KUEUE_CHART
POD_SELECTOR = f"{POD_NAME_LABEL}={POD_NAME},control-plane=controller-manager"
# KWOK completes every pod a Job owns at once; one so labelled runs until deleted.
KEEP_RUNNING_LABEL = "e2e.ray-platform.io/keep-running"
# Its address as the pod network sees it; nothing connects to it (the Services are routed instead).
STAND_IN_POD_IP = "10.244.255.254"


def log(msg: str) -> None:
    print(f"[kueue {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def kwok_stages(base: Path) -> Path:
    """KWOK's stages with the Kueue controller pod left out of `pod-ready`, and a pod labelled
    KEEP_RUNNING_LABEL out of `pod-complete` (a RayJob's submitter that must hold its job Running)."""
    docs = [d for d in yaml.safe_load_all(base.read_text()) if d]
    for doc in docs:
        if doc["metadata"]["name"] == "pod-ready":
            doc["spec"]["selector"]["matchExpressions"].append(
                {"key": f'.metadata.labels["{POD_NAME_LABEL}"]', "operator": "NotIn", "values": [POD_NAME]})
        if doc["metadata"]["name"] == "pod-complete":
            doc["spec"]["selector"]["matchExpressions"].append(
                {"key": f'.metadata.labels["{KEEP_RUNNING_LABEL}"]', "operator": "DoesNotExist"})
    out = cp.STATE_DIR / "kwok-stages.yaml"
    out.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return out


def start(state: dict[str, Any]) -> None:
    """Start the supervisor (idle until the platform installs the chart)."""
    ports = state.setdefault("ports", {})
    for name in PORTS:
        ports.setdefault(name, cp.free_port())
    cp.save_state(state)
    cp.start(state, "kueue", [sys.executable, "-m", "tools.e2e.kueue"],
             env=dict(os.environ, PYTHONPATH=str(cp.REPO)))


# --------------------------------------------------------------------------- the supervisor


def _get(path: str) -> dict[str, Any] | None:
    try:
        return cp.api("GET", path)
    except urllib.error.HTTPError as e:
        if e.code == 404:
            return None
        raise


def _installed() -> tuple[str, str] | None:
    """(namespace, manager configuration) once the chart's CRDs are established and its ConfigMap exists."""
    crd = _get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{CRD}")
    if not crd or not any(c["type"] == "Established" and c["status"] == "True"
                          for c in (crd.get("status") or {}).get("conditions") or []):
        return None
    maps = cp.api("GET", f"/api/v1/configmaps?fieldSelector=metadata.name%3D{MANAGER_CONFIG_MAP}")["items"]
    if not maps:
        return None
    return maps[0]["metadata"]["namespace"], maps[0]["data"][MANAGER_CONFIG_KEY]


def host_config(chart_config: str, ports: dict[str, int]) -> dict[str, Any]:
    """The chart's Kueue configuration for a host process: everything as deployed but the addresses,
    the certificate directory and leader election (one replica, no pod identity)."""
    cfg = yaml.safe_load(chart_config)
    cfg["health"] = {**cfg.get("health", {}), "healthProbeBindAddress": f"127.0.0.1:{ports['kueue-probe']}"}
    cfg["metrics"] = {"bindAddress": "0"}
    cfg["webhook"] = {**cfg.get("webhook", {}), "host": "127.0.0.1", "port": ports["kueue-webhook"],
                      "certDir": str(CERTS)}
    cfg["leaderElection"] = {"leaderElect": False}
    cfg["visibilityServer"] = {"bindAddress": "127.0.0.1", "bindPort": ports["kueue-visibility"]}
    return cfg


def _mount_certificate(namespace: str, secret: str) -> None:
    """What the kubelet does for the chart's pod: the webhook certificate Secret, which Kueue's cert
    rotator writes, as files in the certificate directory, which the rotator waits to see."""
    found = _get(f"/api/v1/namespaces/{namespace}/secrets/{secret}")
    CERTS.mkdir(parents=True, exist_ok=True)
    for key, value in ((found or {}).get("data") or {}).items():
        path, content = CERTS / key, base64.b64decode(value)
        if not path.exists() or path.read_bytes() != content:
            path.write_bytes(content)


def _ready(ports: dict[str, int]) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{ports['kueue-probe']}/readyz", timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


def _mark_pods_ready(namespace: str) -> None:
    pods = cp.api("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={POD_SELECTOR}")["items"]
    now = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    for pod in pods:
        conditions = {c["type"]: c["status"] for c in (pod.get("status") or {}).get("conditions") or []}
        if conditions.get("Ready") == "True" or not pod["spec"].get("nodeName") \
                or pod["metadata"].get("deletionTimestamp"):
            continue
        status = {
            "phase": "Running", "hostIP": "127.0.0.1", "podIP": STAND_IN_POD_IP, "startTime": now,
            "conditions": [{"type": t, "status": "True", "lastTransitionTime": now}
                           for t in ("PodScheduled", "Initialized", "ContainersReady", "Ready")],
            "containerStatuses": [{"name": c["name"], "image": c["image"], "imageID": "", "ready": True,
                                   "started": True, "restartCount": 0, "state": {"running": {"startedAt": now}}}
                                  for c in pod["spec"]["containers"]],
        }
        cp.api("PATCH", f"/api/v1/namespaces/{namespace}/pods/{pod['metadata']['name']}/status",
               {"status": status}, content_type="application/merge-patch+json")
        log(f"pod {namespace}/{pod['metadata']['name']} Ready: the Kueue controller serves")


def _stop(child: subprocess.Popen | None) -> None:
    if child is not None and child.poll() is None:
        child.send_signal(signal.SIGTERM)
        try:
            child.wait(20)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()


def run() -> int:
    ports = cp.load_state()["ports"]
    child: subprocess.Popen | None = None
    running_in: str | None = None
    stopping = False

    def on_term(*_: Any) -> None:
        nonlocal stopping
        stopping = True
    signal.signal(signal.SIGTERM, on_term)
    log(f"waiting for the chart ({CRD}, ConfigMap {MANAGER_CONFIG_MAP}); ports {[ports[p] for p in PORTS]}")
    while not stopping:
        try:
            installed = _installed()
            if installed is None and child is not None:
                log("Kueue's CRDs are gone: stopping the controller")
                _stop(child)
                child, running_in = None, None
            elif installed is not None:
                namespace, chart_config = installed
                if child is not None and child.poll() is not None:
                    log(f"the controller exited ({child.returncode}); see {CONTROLLER_LOG}; restarting")
                    child = None
                if child is None:
                    HOME.mkdir(parents=True, exist_ok=True)
                    CONFIG.write_text(yaml.safe_dump(host_config(chart_config, ports), sort_keys=False))
                    for service, port in ((WEBHOOK_SERVICE, "kueue-webhook"), (VISIBILITY_SERVICE, "kueue-visibility")):
                        egress.set_route(f"{namespace}/{service}", 443, f"127.0.0.1:{ports[port]}")
                    with open(CONTROLLER_LOG, "ab") as out:
                        # --kubeconfig, not only $KUBECONFIG: the visibility server's delegated authn reads the flag.
                        child = subprocess.Popen([cp.binary("kueue"), "--config", str(CONFIG),
                                                  "--kubeconfig", str(cp.KUBECONFIG)], stdout=out,
                                                 stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=HOME,
                                                 env=dict(os.environ, KUBECONFIG=str(cp.KUBECONFIG)))
                    running_in = namespace
                    log(f"controller started (pid {child.pid}, namespace {namespace}, log {CONTROLLER_LOG})")
                secret = (yaml.safe_load(chart_config).get("internalCertManagement") or {}).get("webhookSecretName")
                if secret:
                    _mount_certificate(namespace, secret)
                if running_in and _ready(ports):
                    _mark_pods_ready(running_in)
        except Exception as e:  # noqa: BLE001 - the API server may be restarting; try again
            log(f"not yet: {e}")
        time.sleep(1)
    _stop(child)
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(run())
