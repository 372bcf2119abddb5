"""`submission: kuberay` serve jobs as RayServices (components/team/ray_service.py): validation against the
pinned CRD, the Serve config generated from the same settings as the SDK path, ownership of the
cluster, upgrades, health, internal-only services, readiness, and the Serve config
deployed for real on the local Ray head.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
import yaml

import tools.render as render
from components.config.model import (
    UPGRADE_STRATEGIES, JobConfig, KubeRayServiceConfig, RayClusterConfig,
)
from components.constants import GPU_TAINT_KEY
from components.hooks.kuberay_wait import rayservice_progress
from components.team.post_deploy import effective_settings
from components.specs.raycluster import INTERNAL_LB_ANNOTATIONS
from components.specs.rayservice import (
    IMPORT_PATH, INITIALIZING_TIMEOUT_ANNOTATION, KIND, RAY_SERVICE_LABEL, SERVE_DEPLOYMENT, deployment_options,
    ray_service,
)
from jobs.common import CONFIG_ENV_VAR
from jobs.data import load_split
from jobs.model import DigitsMLP, save_checkpoint, write_pointer
from tests.stacks import config_of, ids, manifests_of, ray_pods, rendered, stack_files
from tests.test_ray_job_cr import jobs_archive
from tools.k8s_schema import validate_object
from tools.local_ray import LocalRay
from tools.render import STACKS_DIR

Obj = dict[str, Any]
TEAM = stack_files("team")
VISION_PROD = STACKS_DIR / "Pulumi.vision-prod.yaml"
# Go durations as KubeRay parses the initializing-timeout annotation (or plain seconds).
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^\d+$")


def ray_services(path: Path) -> list[Obj]:
    return manifests_of(rendered(path), KIND)


def serve_config(service: Obj) -> Obj:
    return dict(yaml.safe_load(service["spec"]["serveConfigV2"]))


# --- every RayService of every stack -----------------------------------------------------------

def test_vision_prod_serves_through_a_rayservice_owning_the_serve_cluster() -> None:
    (service,) = ray_services(VISION_PROD)
    assert service["metadata"]["name"] == "serve"
    kinds = {(m["kind"], m["metadata"]["name"]) for m in rendered(VISION_PROD).manifests()}
    assert ("RayCluster", "train") in kinds and ("RayCluster", "serve") not in kinds
    entry = next(c for c in rendered(VISION_PROD).outputs["rayClusters"] if c["name"] == "serve")
    assert entry["headService"] == "serve-head-svc.team-vision.svc"  # the RayService's head Service
    assert entry["serveService"] == "serve-serve-svc.team-vision.svc:8000"
    assert rendered(VISION_PROD).outputs["jobs"]["serve-digits"]["endpoint"] == \
        "http://serve-serve-svc.team-vision.svc:8000/digits"


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_rayservice_validates_strictly_and_keeps_the_contracts(path: Path) -> None:
    for obj in ray_services(path):
        assert validate_object(obj, "1.34") == [], obj["metadata"]["name"]
        spec = obj["spec"]
        assert len(obj["metadata"]["name"]) <= 47
        assert spec["upgradeStrategy"]["type"] in UPGRADE_STRATEGIES
        # Deprecated no-ops since KubeRay 1.1: setting them would only mislead.
        assert "serviceUnhealthySecondThreshold" not in spec and "deploymentUnhealthySecondThreshold" not in spec
        timeout = obj["metadata"]["annotations"].get(INITIALIZING_TIMEOUT_ANNOTATION)
        assert timeout is None or GO_DURATION.match(timeout)
        cluster = spec["rayClusterConfig"]
        for group, pod, _container, gpus in ray_pods(cluster):
            assert (gpus is not None) == any(t["key"] == GPU_TAINT_KEY for t in pod.get("tolerations", [])), group
        templates = [cluster["headGroupSpec"]["template"], *(g["template"] for g in cluster["workerGroupSpecs"])]
        assert all(t["metadata"]["labels"][RAY_SERVICE_LABEL] == obj["metadata"]["name"] for t in templates)


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_the_serve_service_stays_internal_and_skips_the_head(path: Path) -> None:
    policies = {m["metadata"]["name"]: m["spec"] for m in manifests_of(rendered(path), "NetworkPolicy")}
    for obj in ray_services(path):
        spec, name = obj["spec"], obj["metadata"]["name"]
        assert spec["excludeHeadPodFromServeSvc"] is True
        service = spec["serveService"]
        assert service["metadata"]["name"] == f"{name}-serve-svc"
        assert service["spec"]["type"] in ("ClusterIP", "LoadBalancer")
        if service["spec"]["type"] == "LoadBalancer":
            assert service["metadata"]["annotations"] == INTERNAL_LB_ANNOTATIONS
            # Internal LB traffic comes from VPC addresses: admitted to the RayService's pods by label,
            # which survives the cluster changes of upgrades.
            policy = policies[f"{name}-internal-lb"]
            assert policy["podSelector"] == {"matchLabels": {RAY_SERVICE_LABEL: name}}
            assert {"protocol": "TCP", "port": 8000} in policy["ingress"][0]["ports"]


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_the_serve_config_runs_the_same_app_with_the_same_settings(path: Path) -> None:
    jobs = {j.cluster: j for j in config_of(path).jobs if isinstance(j.kuberay, KubeRayServiceConfig)}
    for obj in ray_services(path):
        job = jobs[obj["metadata"]["name"]]
        assert isinstance(job.kuberay, KubeRayServiceConfig)
        (app,) = serve_config(obj)["applications"]
        settings = effective_settings(job)
        assert app["import_path"] == IMPORT_PATH == "jobs.serve:app"
        assert (app["name"], app["route_prefix"]) == (settings["app_name"], settings["route_prefix"])
        assert app["runtime_env"]["working_dir"] == job.kuberay.code_uri
        # The module-level app reads exactly what the SDK path passes with --config-json.
        assert json.loads(app["runtime_env"]["env_vars"][CONFIG_ENV_VAR]) == settings
        assert app["deployments"] == [deployment_options(settings, job.kuberay)]


def bound_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The deployment options jobs.serve.build_app binds for `settings` (what the app would do alone)."""
    from jobs.serve import build_app

    deployment = build_app(settings)._bound_deployment
    config = deployment._deployment_config
    options: dict[str, Any] = {"name": deployment.name, "ray_actor_options": deployment.ray_actor_options,
                               "max_ongoing_requests": config.max_ongoing_requests}
    if config.autoscaling_config is not None:
        options["autoscaling_config"] = {"min_replicas": config.autoscaling_config.min_replicas,
                                         "max_replicas": config.autoscaling_config.max_replicas}
        if "target_ongoing_requests" in settings:
            options["autoscaling_config"]["target_ongoing_requests"] = \
                config.autoscaling_config.target_ongoing_requests
    else:
        options["num_replicas"] = config.num_replicas
    return options


SETTINGS_GRID = [
    {},
    {"num_replicas": 3, "num_cpus": 1},
    {"max_replicas": 4},
    {"min_replicas": 0, "max_replicas": 2, "use_gpu": True, "num_cpus": 2.5},
    {"min_replicas": 2, "max_replicas": 6, "num_cpus": 4, "use_gpu": True},
    {"num_replicas": 2, "max_ongoing_requests": 32},
    {"max_replicas": 3, "max_ongoing_requests": 16, "target_ongoing_requests": 8},
]


@pytest.mark.parametrize("settings", SETTINGS_GRID, ids=[json.dumps(s) for s in SETTINGS_GRID])
def test_deployment_options_equal_what_the_app_binds(settings: dict[str, Any]) -> None:
    ours = deployment_options(settings, KubeRayServiceConfig(code_uri="s3://b/j.zip"))
    assert ours == bound_options(settings)
    assert ours["name"] == SERVE_DEPLOYMENT
    with_health = deployment_options(settings, KubeRayServiceConfig(
        code_uri="s3://b/j.zip", health_check_period_seconds=10, health_check_timeout_seconds=30))
    assert (with_health["health_check_period_s"], with_health["health_check_timeout_s"]) == (10, 30)


# --- upgrades ----------------------------------------------------------------------------------

NEW_CLUSTER_STACK = """
config:
  ray-platform:layer: team
  ray-platform:environment: local
  ray-platform:platformStack: local
  ray-platform:team:
    name: web
    groups: [web-devs]
    quota: {cpu: "16", memory: 48Gi, gpus: 0}
  ray-platform:rayClusters:
    - name: web
      head: {cpu: "1", memory: 4Gi, shmSize: 1Gi}
      workerGroups: [{name: cpu, cpu: "2", memory: 4Gi, shmSize: 1Gi, maxReplicas: 2}]
  ray-platform:jobs:
    - name: serve-web
      kind: serve
      cluster: web
      submission: kuberay
      wait: none
      settings: {storage_path: s3://web-models/m, num_replicas: 2, num_cpus: 1}
      kuberay:
        codeUri: https://github.com/my-org/ray-platform/archive/0123456789abcdef.zip
        clusterDeletionDelaySeconds: 120
"""


def register_requests(monkeypatch: pytest.MonkeyPatch, path: Path) -> tuple[render.Rendered, dict[str, Any]]:
    requests_by_name: dict[str, Any] = {}

    class Monitor(render.RecordingMonitor):
        def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
            requests_by_name[request.name] = request
            return super().RegisterResource(request)

    monkeypatch.setattr(render, "RecordingMonitor", Monitor)
    return render.render_stack(path), requests_by_name


def test_in_place_upgrades_replace_the_service_on_a_cluster_change(monkeypatch: pytest.MonkeyPatch) -> None:
    _, registered = register_requests(monkeypatch, VISION_PROD)
    service = registered["vision-serve"]
    assert service.type == "kubernetes:ray.io/v1:RayService"
    assert list(service.replaceOnChanges) == ["spec.rayClusterConfig"] and service.deleteBeforeReplace
    waiter = registered["vision-serve-wait"]
    assert "vision-serve" in [urn.rsplit("::", 1)[-1] for urn in waiter.dependencies]


def test_new_cluster_upgrades_update_in_place_and_need_room_for_two_clusters(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.web-local.yaml"
    path.write_text(NEW_CLUSTER_STACK)
    result, registered = register_requests(monkeypatch, path)
    service = registered["web-web"]
    assert list(service.replaceOnChanges) == [] and not service.deleteBeforeReplace
    assert "web-web-wait" not in registered  # wait: none
    (obj,) = manifests_of(result, KIND)
    assert validate_object(obj, "1.34") == []
    assert obj["spec"]["upgradeStrategy"] == {"type": "NewCluster"}
    assert obj["spec"]["rayClusterDeletionDelaySeconds"] == 120
    assert obj["spec"]["serveService"]["spec"]["type"] == "ClusterIP"
    assert not [m for m in manifests_of(result, "NetworkPolicy") if "internal-lb" in
                m["metadata"]["name"]]


# --- what a RayService status means ------------------------------------------------------------

def status(ready: str, reason: str, generation: int = 2, observed: int = 2, apps: dict[str, Any] | None = None,
           pending_apps: dict[str, Any] | None = None, upgrading: str = "False", message: str = "") -> Obj:
    conditions = [{"type": "Ready", "status": ready, "reason": reason, "message": message,
                   "lastTransitionTime": "2026-03-01T10:00:00Z", "observedGeneration": observed}]
    conditions.append({"type": "UpgradeInProgress", "status": upgrading,
                       "reason": "BothActivePendingClustersExist" if upgrading == "True" else "NoPendingCluster"})
    body: Obj = {"conditions": conditions, "observedGeneration": observed, "numServeEndpoints": 2,
                 "activeServiceStatus": {"rayClusterName": "serve-6mj28",
                                         "applicationStatuses": apps if apps is not None else {
                                             "digits": {"status": "RUNNING", "serveDeploymentStatuses": {
                                                 "DigitsClassifier": {"status": "HEALTHY"}}}}}}
    if pending_apps is not None:
        body["pendingServiceStatus"] = {"rayClusterName": "serve-sjj67", "applicationStatuses": pending_apps}
    return {"metadata": {"name": "serve", "generation": generation}, "status": body}


SERVICE_STATUSES = [
    ("ready", status("True", "NonZeroServeEndpoints"), True, None),
    ("just created", {"metadata": {"name": "serve", "generation": 1}, "status": {}}, False, None),
    ("initializing", status("False", "Initializing", apps={}), False, None),
    ("no endpoints yet", status("False", "ZeroServeEndpoints",
                                apps={"digits": {"status": "DEPLOYING"}}), False, None),
    ("stale ready after a spec change", status("True", "NonZeroServeEndpoints", generation=3, observed=2), False, None),
    ("upgrade in progress", status("True", "NonZeroServeEndpoints", upgrading="True",
                                   pending_apps={"digits": {"status": "DEPLOYING"}}), False, None),
    ("app failed to deploy", status("False", "ZeroServeEndpoints", apps={"digits": {
        "status": "DEPLOY_FAILED", "message": "Failed to import 'jobs.serve:app': No module named 'jobs'"}}),
     False, "digits: Failed to import 'jobs.serve:app': No module named 'jobs'"),
    ("new cluster's app failed", status("True", "NonZeroServeEndpoints", upgrading="True", pending_apps={
        "digits": {"status": "DEPLOY_FAILED", "message": "CUDA out of memory"}}), False, "CUDA out of memory"),
    ("initializing timeout", status("False", "InitializingTimeout", apps={},
                                    message="RayService did not become ready within 30m0s"),
     False, "Ready False (InitializingTimeout): RayService did not become ready within 30m0s"),
]


@pytest.mark.parametrize(("obj", "done", "failure"), [s[1:] for s in SERVICE_STATUSES],
                         ids=[s[0] for s in SERVICE_STATUSES])
def test_rayservice_status_interpretation(obj: Obj, done: bool, failure: str | None) -> None:
    progress = rayservice_progress(obj)
    assert progress.done is done, progress
    if failure is None:
        assert progress.failure is None, progress
    else:
        assert progress.failure is not None and failure in progress.failure


# --- the Serve config, deployed for real on the local Ray head -------------------------------

def serve_details(head: LocalRay) -> Obj:
    resp = requests.get(f"{head.dashboard_url}/api/serve/applications/", timeout=30)
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_serve_config_deploys_jobs_serve_app_from_the_archive(ray_head: LocalRay, tmp_path: Path) -> None:
    model, checkpoint = DigitsMLP(16), tmp_path / "ckpt"
    checkpoint.mkdir()
    save_checkpoint(checkpoint, model, None, {"epoch": 1})
    storage = str(tmp_path / "store")
    write_pointer(storage, "digits", {"checkpoint": str(checkpoint), "metrics": {}})
    job = JobConfig(name="serve-kuberay", kind="serve", cluster="serve", submission="kuberay",
                    settings={"storage_path": storage, "model_name": "digits", "route_prefix": "/kuberay",
                              "num_replicas": 1, "num_cpus": 0.25},
                    kuberay=KubeRayServiceConfig(code_uri="s3://b/jobs-1.zip", health_check_period_seconds=5,
                                                 health_check_timeout_seconds=20))
    manifest = ray_service(job, RayClusterConfig(name="serve"), "team-x", "x", effective_settings(job))
    config = serve_config(manifest)
    (app,) = config["applications"]
    # Two substitutions for a shared laptop: the archive as file://, Serve's HTTP on a free loopback port.
    app["runtime_env"]["working_dir"] = jobs_archive(tmp_path)
    running = serve_details(ray_head)
    port = (running.get("http_options") or {}).get("port") if running.get("proxies") else None
    config["http_options"] = {"host": "127.0.0.1", "port": port or ray_head.serve_port}
    try:
        requests.put(f"{ray_head.dashboard_url}/api/serve/applications/", json=config,
                     timeout=60).raise_for_status()
        deadline = time.monotonic() + 180
        while (state := serve_details(ray_head)["applications"].get("serve-kuberay", {})).get("status") != "RUNNING":
            assert state.get("status") != "DEPLOY_FAILED", state.get("message")
            assert time.monotonic() < deadline, state
            time.sleep(1)
        deployed = state["deployments"][SERVE_DEPLOYMENT]["deployment_config"]
        assert deployed["num_replicas"] == 1 and deployed["ray_actor_options"]["num_cpus"] == 0.25
        assert (deployed["health_check_period_s"], deployed["health_check_timeout_s"]) == (5, 20)
        base = f"http://127.0.0.1:{config['http_options']['port']}/kuberay"
        health = requests.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["checkpoint"] == str(checkpoint)
        rows = load_split().x_test[:5]
        predicted = requests.post(f"{base}/predict", json={"instances": rows.tolist()}, timeout=30)
        assert predicted.status_code == 200, predicted.text
        with torch.no_grad():
            expected = model.eval()(torch.tensor(rows)).argmax(dim=1).numpy()
        assert (np.array(predicted.json()["predictions"]) == expected).all()
    finally:
        # Serve shut down entirely (and waited for), so later tests get the CPUs back.
        requests.delete(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=120)
        deadline = time.monotonic() + 60
        while serve_details(ray_head).get("applications") and time.monotonic() < deadline:
            time.sleep(1)
