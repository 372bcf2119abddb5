"""The shipped stacks through the real `pulumi` CLI, against the e2e control plane and the real
KubeRay operator (docs/e2e.md, "Scenarios"). The tests run in file order: the platform stack
(deployed by the control plane's `up`), the team stack on it, an edit, bad input, then destroy.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from components import constants as C
from components.config.fit import quantity_value
from components.specs.kueue import AGGREGATED_ROLES
from tests.e2e import wait
from tools.e2e import controlplane as cp
from tools.e2e import stacks

pytestmark = pytest.mark.e2e

TEAM_NS = f"team-{stacks.shipped(stacks.TEAM_STACK)['config'][stacks.key('team')]['name']}"
CLUSTER = stacks.shipped(stacks.TEAM_STACK)["config"][stacks.key("rayClusters")][0]["name"]
RAY = f"/apis/{C.RAY_GROUP}/v1"
OUTSIDER = "outside-the-stacks"
# How long the operator and the controllers get to act on what `pulumi up` created.
OPERATOR_S = 180.0


def pods(namespace: str, selector: str) -> list[dict[str, Any]]:
    return cp.api("GET", f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}")["items"]


def at_least(n: int, items: list[Any]) -> list[Any] | None:
    return items if len(items) >= n else None


def running_pods(selector: str) -> list[dict[str, Any]]:
    return [p for p in pods(TEAM_NS, selector) if p["status"].get("phase") == "Running"]


def raycluster() -> dict[str, Any]:
    return cp.api("GET", f"{RAY}/namespaces/{TEAM_NS}/rayclusters/{CLUSTER}")


def nodes() -> dict[str, dict[str, str]]:
    return {n["metadata"]["name"]: n["metadata"]["labels"] for n in cp.api("GET", "/api/v1/nodes")["items"]}


def team_file(edit: Callable[[dict[str, Any]], None] | None = None) -> Path:
    overrides = stacks.team_overrides()
    if edit is not None:
        edit(overrides)
    return stacks.layer(stacks.TEAM_STACK, overrides)


def run(state: dict[str, Any], verb: str, stack: str, config_file: Path, *extra: str,
        check: bool = True) -> Any:
    return stacks.pulumi(state, verb, "--stack", stack, "--config-file", str(config_file), *extra, check=check)


@pytest.fixture(scope="module")
def platform(controlplane: dict[str, Any]) -> dict[str, Any]:
    """The `local` platform stack `up` deployed; its layered file for later commands."""
    if not cp.load_state().get("procs", {}).get("kuberay-operator"):
        pytest.fail(f"the KubeRay operator is not running: {cp.operator_missing() or 'see build/e2e/logs'}")
    return {"state": controlplane, "file": stacks.layered(controlplane, stacks.PLATFORM_STACK)}


def test_platform_up_installed_crds_operator_and_monitoring(platform: dict[str, Any]) -> None:
    outputs = json.loads(stacks.pulumi(platform["state"], "stack", "output", "--json", "--stack",
                                       stacks.PLATFORM_STACK).stdout)
    assert outputs["clusterProvider"] == "existing"
    assert [p["name"] for p in outputs["gpuPools"]] == [p["name"] for p in stacks.gpu_pools()]
    crds = cp.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")["items"]
    ray = {c["metadata"]["name"]: c for c in crds if c["spec"]["group"] == C.RAY_GROUP}
    assert len(ray) == len(list(cp.KUBERAY_CRDS.glob("*.yaml")))
    for crd in ray.values():
        assert {c["type"]: c["status"] for c in crd["status"]["conditions"]}["Established"] == "True"
    # Helm records each release as a Secret; deployed releases of the operator and monitoring charts.
    releases = {s["metadata"]["labels"]["name"]: s["metadata"]["labels"]["status"]
                for s in cp.api("GET", "/api/v1/secrets?labelSelector=owner%3Dhelm")["items"]}
    assert releases.get("kuberay-operator") == "deployed"
    assert releases.get("kube-prometheus-stack") == "deployed"


def test_platform_preview_after_up_shows_no_changes_and_refresh_no_drift(platform: dict[str, Any]) -> None:
    run(platform["state"], "preview", stacks.PLATFORM_STACK, platform["file"], "--expect-no-changes")
    run(platform["state"], "refresh", stacks.PLATFORM_STACK, platform["file"], "--yes", "--expect-no-changes")


def test_shipped_local_stack_secrets_decrypt(platform: dict[str, Any]) -> None:
    shown = stacks.pulumi(platform["state"], "config", "--show-secrets", "--json", "--stack", stacks.PLATFORM_STACK,
                          "--config-file", str(stacks.STACKS_DIR / f"Pulumi.{stacks.PLATFORM_STACK}.yaml")).stdout
    password = json.loads(shown)[stacks.key("grafanaAdminPassword")]
    assert password["secret"] is True and password["value"]


@pytest.fixture(scope="module")
def team(platform: dict[str, Any]) -> dict[str, Any]:
    state = platform["state"]
    stacks.select(state, stacks.TEAM_STACK)
    config_file = team_file()
    run(state, "up", stacks.TEAM_STACK, config_file, "--yes", "--skip-preview")
    return {"state": state, "file": config_file}


def test_team_up_raycluster_ready_with_our_pods(team: dict[str, Any]) -> None:
    wait("RayCluster ready", lambda: raycluster().get("status", {}).get("state") == "ready", OPERATOR_S)
    node_labels = nodes()
    selector = f"{C.RAY_CLUSTER_LABEL}%3D{CLUSTER}"
    running = wait("head and GPU worker pods running", lambda: at_least(2, running_pods(selector)), OPERATOR_S)
    head = [p for p in running if p["metadata"]["labels"][C.RAY_NODE_TYPE_LABEL] == "head"]
    gpu = [p for p in running if p["metadata"]["labels"].get("ray.io/group") == stacks.E2E_GPU_GROUP["name"]]
    assert len(head) == 1 and gpu
    # Off the GPU and system nodes, on the CPU pool (the scheduler honoured the head's affinity).
    assert node_labels[head[0]["spec"]["nodeName"]].get(C.NODE_ROLE_LABEL) == C.ROLE_CPU
    for pod in gpu:
        labels = node_labels[pod["spec"]["nodeName"]]
        assert labels[C.NODE_POOL_LABEL] == stacks.E2E_GPU_GROUP["gpuPool"]
        assert {"key": C.GPU_TAINT_KEY, "operator": "Equal", "value": C.GPU_TAINT_VALUE,
                "effect": C.GPU_TAINT_EFFECT} in pod["spec"]["tolerations"]
        limits = pod["spec"]["containers"][0]["resources"]["limits"]
        assert limits[C.GPU_RESOURCE] == str(stacks.E2E_GPU_GROUP["gpus"])


def test_team_quota_usage_matches_the_pods(team: dict[str, Any]) -> None:
    quota = cp.api("GET", f"/api/v1/namespaces/{TEAM_NS}/resourcequotas")["items"][0]
    live = [p for p in cp.api("GET", f"/api/v1/namespaces/{TEAM_NS}/pods")["items"]
            if p["status"].get("phase") in ("Pending", "Running")]
    want_cpu = sum(quantity_value(c["resources"].get("requests", {}).get("cpu", "0"))
                   for p in live for c in p["spec"]["containers"])
    used = wait("quota usage", lambda: quota_used(quota["metadata"]["name"]), OPERATOR_S)
    assert quantity_value(used["requests.cpu"]) == pytest.approx(want_cpu)
    assert int(used["pods"]) == len(live)


def quota_used(name: str) -> dict[str, str] | None:
    used = cp.api("GET", f"/api/v1/namespaces/{TEAM_NS}/resourcequotas/{name}").get("status", {}).get("used")
    return used if used and "pods" in used else None


def test_team_edit_previews_as_exactly_that_change_and_the_operator_reconciles(team: dict[str, Any]) -> None:
    def more_gpu_workers(overrides: dict[str, Any]) -> None:
        group = overrides[stacks.key("rayClusters")][0]["workerGroups"][-1]
        group["replicas"] = group["minReplicas"] = 2

    edited = team_file(more_gpu_workers)
    diff = run(team["state"], "preview", stacks.TEAM_STACK, edited, "--diff").stdout
    changed = re.findall(r"^\s*~ (\S+): \(update\)", diff, re.M)
    # The RayCluster, and its waiter (it waits again for the operator to take the new spec).
    assert sorted(changed) == ["kubernetes:ray.io/v1:RayCluster", "pulumi-python:dynamic:KubeRayWait"], diff
    assert re.search(r"~ minReplicas\s*: 1\s*=> 2", diff) and re.search(r"~ replicas\s*: 1\s*=> 2", diff), diff
    run(team["state"], "up", stacks.TEAM_STACK, edited, "--yes", "--skip-preview")
    gpu_selector = f"ray.io/group%3D{stacks.E2E_GPU_GROUP['name']}"
    wait("two GPU workers", lambda: len(running_pods(gpu_selector)) == 2, OPERATOR_S)


@pytest.mark.parametrize(("path", "value", "message"), [
    ("rayClusters.0.workerGroups.0.maxReplicas", -1, "ray-platform:rayClusters[0].workerGroups[0].maxReplicas"),
    ("team.quota.gpus", "lots", "ray-platform:team.quota.gpus"),
])
def test_bad_stack_file_fails_preview_with_one_message(team: dict[str, Any], path: str, value: Any,
                                                         message: str) -> None:
    def spoil(overrides: dict[str, Any]) -> None:
        first, *rest = path.split(".")
        node: Any = overrides[stacks.key(first)]
        for part in rest[:-1]:
            node = node[int(part)] if part.isdigit() else node[part]
        node[rest[-1]] = value

    before = stacks.pulumi(team["state"], "stack", "export", "--stack", stacks.TEAM_STACK).stdout
    proc = run(team["state"], "preview", stacks.TEAM_STACK, team_file(spoil), check=False)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert message in out and "Traceback" not in out, out
    assert stacks.pulumi(team["state"], "stack", "export", "--stack", stacks.TEAM_STACK).stdout == before
    team_file()  # the good file again, for the scenarios after this one


def test_destroy_team_then_platform_keeps_crds_and_outside_rayclusters(team: dict[str, Any]) -> None:
    state = team["state"]
    outsider = yaml.safe_load(cp.kubectl("get", "raycluster", CLUSTER, "-n", TEAM_NS, "-o", "yaml").stdout)
    run(state, "destroy", stacks.TEAM_STACK, team["file"], "--yes")
    wait("team namespace gone", lambda: TEAM_NS not in {
        n["metadata"]["name"] for n in cp.api("GET", "/api/v1/namespaces")["items"]}, timeout=300)
    # A RayCluster the stacks do not own, in a namespace of its own: the platform's destroy must
    # not take it (nor the CRDs it depends on) away.
    cp.kubectl("create", "namespace", OUTSIDER, check=False)
    spec = {"apiVersion": outsider["apiVersion"], "kind": "RayCluster",
            "metadata": {"name": OUTSIDER, "namespace": OUTSIDER}, "spec": outsider["spec"]}
    cp.kubectl("apply", "-f", "-", input=json.dumps(spec))
    platform_file = stacks.layered(state, stacks.PLATFORM_STACK)
    run(state, "destroy", stacks.PLATFORM_STACK, platform_file, "--yes")
    crds = {c["metadata"]["name"] for c in cp.api("GET", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions")[
        "items"] if c["spec"]["group"] == C.RAY_GROUP}
    assert len(crds) == len(list(cp.KUBERAY_CRDS.glob("*.yaml")))
    assert cp.api("GET", f"{RAY}/namespaces/{OUTSIDER}/rayclusters/{OUTSIDER}")["metadata"]["name"] == OUTSIDER
    releases = cp.api("GET", "/api/v1/secrets?labelSelector=owner%3Dhelm")["items"]
    assert releases == []
    # Re-created by the aggregation controller during the uninstall, they would outlive the release.
    roles = {r["metadata"]["name"] for r in cp.api("GET", "/apis/rbac.authorization.k8s.io/v1/clusterroles")["items"]}
    assert not roles & set(AGGREGATED_ROLES)
    cp.kubectl("delete", "namespace", OUTSIDER, "--wait=false")
    # Leave the control plane as `up` made it, for whoever started it.
    stacks.up(state, stacks.PLATFORM_STACK)
