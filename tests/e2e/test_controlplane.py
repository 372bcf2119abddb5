"""The loopback control plane (tools/e2e/controlplane.py) is real: facts read back from the API server."""
from __future__ import annotations

import json
import urllib.request

import pytest

from components import constants as C
from components import versions as V
from tests.e2e import wait
from tools.e2e import controlplane as cp
from tools.e2e import toolchain

pytestmark = pytest.mark.e2e


def test_api_server_is_the_pinned_kubernetes(controlplane):
    version = cp.api("GET", "/version")
    assert version["gitVersion"] == V.KUBERNETES_E2E_VERSION
    assert cp.api("GET", "/readyz")["raw"] == "ok"


def test_kwok_nodes_are_ready_and_shaped_like_the_pools(controlplane):
    nodes = {n["metadata"]["name"]: n for n in cp.api("GET", "/api/v1/nodes")["items"]}
    wanted = cp.node_objects()
    assert {n["metadata"]["name"] for n in wanted} <= set(nodes)
    gpu_taint = {"key": C.GPU_TAINT_KEY, "value": C.GPU_TAINT_VALUE, "effect": C.GPU_TAINT_EFFECT}
    for want in wanted:
        node = nodes[want["metadata"]["name"]]
        labels = node["metadata"]["labels"]
        conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
        assert conditions["Ready"] == "True", node["metadata"]["name"]
        pool = labels[C.NODE_POOL_LABEL]
        gpus = node["status"]["capacity"].get(C.GPU_RESOURCE)
        taints = node["spec"].get("taints", [])
        assert labels.get(C.NODE_ROLE_LABEL) == want["metadata"]["labels"].get(C.NODE_ROLE_LABEL)
        if labels.get(C.NODE_ROLE_LABEL) == C.ROLE_GPU:
            assert int(gpus) >= 1 and node["status"]["allocatable"][C.GPU_RESOURCE] == gpus
            assert labels[C.GPU_NODE_LABEL] == "true"
            assert [{k: t[k] for k in ("key", "value", "effect")} for t in taints] == [gpu_taint]
        else:
            assert gpus is None and taints == [] and C.GPU_NODE_LABEL not in labels
        assert pool == want["metadata"]["labels"][C.NODE_POOL_LABEL]
    roles = [n["metadata"]["labels"].get(C.NODE_ROLE_LABEL) for n in nodes.values()]
    assert roles.count(C.ROLE_SYSTEM) >= 1 and roles.count(C.ROLE_GPU) >= 2
    gpu_pools = {n["metadata"]["labels"][C.NODE_POOL_LABEL] for n in nodes.values()
                 if n["metadata"]["labels"].get(C.NODE_ROLE_LABEL) == C.ROLE_GPU}
    assert len(gpu_pools) >= 2


def test_kuberay_crds_are_established(controlplane):
    cp.apply_kuberay_crds()  # idempotent (server-side apply); `up` has applied them already
    crds = cp.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    ray = {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == C.RAY_GROUP}
    assert {"rayclusters.ray.io", "rayjobs.ray.io", "rayservices.ray.io"} <= set(ray)
    assert len(ray) == len(list(cp.KUBERAY_CRDS.glob("*.yaml")))
    for name, crd in ray.items():
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions.get("Established") == "True", name


def test_kuberay_operator_runs_against_the_api_server(operator):
    state = cp.load_state()
    assert cp._ours(operator)
    port = state["ports"]["operator-probe"]
    assert urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5).status == 200
    # Which operator runs is recorded and named: the toolchain's build of KUBERAY_E2E_OPERATOR_VERSION
    # (a stand-in while the proxy refuses KUBERAY_VERSION) unless one was given explicitly.
    info = state["operator"]
    assert info["deployed-by-platform"] == V.KUBERAY_VERSION
    if not info["explicit"]:
        assert info["binary"] == str(toolchain.bin_dir() / "kuberay-operator")
        assert info["version"] == V.KUBERAY_E2E_OPERATOR_VERSION
        assert info["note"] == (toolchain.kuberay_stand_in() or f"KubeRay operator v{V.KUBERAY_E2E_OPERATOR_VERSION}")


RAYCLUSTER = """
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: e2e-tiny
  namespace: default
spec:
  rayVersion: "{ray}"
  headGroupSpec:
    rayStartParams: {{}}
    template:
      spec:
        containers:
        - name: ray-head
          image: {image}
          resources:
            requests: {{cpu: "1", memory: 2Gi}}
            limits: {{cpu: "1", memory: 2Gi}}
  workerGroupSpecs:
  - groupName: gpu
    replicas: 1
    minReplicas: 1
    maxReplicas: 1
    rayStartParams: {{}}
    template:
      spec:
        nodeSelector: {{"{pool_label}": g5-ondemand}}
        tolerations:
        - {{key: "{taint_key}", operator: Equal, value: "{taint_value}", effect: {taint_effect}}}
        containers:
        - name: ray-worker
          image: {gpu_image}
          resources:
            requests: {{cpu: "1", memory: 2Gi, "{gpu}": "1"}}
            limits: {{cpu: "1", memory: 2Gi, "{gpu}": "1"}}
"""


def test_operator_creates_pods_for_a_raycluster_and_kwok_runs_them(operator):
    manifest = RAYCLUSTER.format(ray=V.RAY_VERSION, image=V.RAY_IMAGE_CPU, gpu_image=V.RAY_IMAGE_GPU,
                                 pool_label=C.NODE_POOL_LABEL, taint_key=C.GPU_TAINT_KEY,
                                 taint_value=C.GPU_TAINT_VALUE, taint_effect=C.GPU_TAINT_EFFECT,
                                 gpu=C.GPU_RESOURCE)
    cp.kubectl("delete", "raycluster", "e2e-tiny", "-n", "default", "--ignore-not-found", "--wait=true")
    cp.kubectl("apply", "-f", "-", input=manifest)
    try:
        selector = f"{C.RAY_CLUSTER_LABEL}=e2e-tiny"

        def pods():
            items = cp.api("GET", f"/api/v1/namespaces/default/pods?labelSelector={selector}")["items"]
            running = [p for p in items if p["status"].get("phase") == "Running"]
            return running if len(running) == 2 else None
        running = wait("the operator's head and worker pods to run", pods, timeout=180)
        nodes = {n["metadata"]["name"]: n["metadata"]["labels"] for n in cp.api("GET", "/api/v1/nodes")["items"]}
        by_type = {p["metadata"]["labels"][C.RAY_NODE_TYPE_LABEL]: p for p in running}
        assert set(by_type) == {"head", "worker"}
        head, worker = by_type["head"], by_type["worker"]
        # created by the operator from our spec, not by us
        assert head["metadata"]["ownerReferences"][0]["kind"] == "RayCluster"
        assert head["spec"]["containers"][0]["image"] == V.RAY_IMAGE_CPU
        assert nodes[head["spec"]["nodeName"]].get(C.NODE_ROLE_LABEL) != C.ROLE_GPU  # no toleration: never GPU
        assert nodes[worker["spec"]["nodeName"]][C.NODE_POOL_LABEL] == "g5-ondemand"
        assert head["status"]["podIP"]
        rc = json.loads(cp.kubectl("get", "raycluster", "e2e-tiny", "-n", "default", "-o", "json").stdout)
        wait("the RayCluster status to count the worker",
              lambda: json.loads(cp.kubectl("get", "raycluster", "e2e-tiny", "-n", "default", "-o", "json")
                                 .stdout).get("status", {}).get("availableWorkerReplicas") == 1, timeout=90)
        assert rc["metadata"]["name"] == "e2e-tiny"
    finally:
        cp.kubectl("delete", "raycluster", "e2e-tiny", "-n", "default", "--ignore-not-found", "--wait=false")
