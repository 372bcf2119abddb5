"""Every RayService rendered for every team stack (`submission: kuberay` serve jobs): validation against
the pinned CRD, the Serve config generated from the same settings as the SDK path, ownership of the
cluster, internal-only services, and how upgrades reach the engine."""
from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

import tools.render as render
from components.config.model import UPGRADE_STRATEGIES, KubeRayServiceConfig
from components.constants import GPU_TAINT_KEY
from components.clients.ray_jobs import effective_settings
from components.specs.raycluster import INTERNAL_LB_ANNOTATIONS
from components.specs.rayservice import (
    IMPORT_PATH, INITIALIZING_TIMEOUT_ANNOTATION, KIND, RAY_SERVICE_LABEL, deployment_options,
)
from jobs.common import CONFIG_ENV_VAR
from tests.stacks import config_of, ids, manifests_of, ray_pods, rendered, stack_files
from tests.specs.test_rayservice import serve_config
from tools.k8s_schema import validate_object
from tools.render import STACKS_DIR

Obj = dict[str, Any]
TEAM = stack_files("team")
VISION_PROD = STACKS_DIR / "Pulumi.vision-prod.yaml"
# Go durations as KubeRay parses the initializing-timeout annotation (or plain seconds).
GO_DURATION = re.compile(r"^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$|^\d+$")


def ray_services(path: Path) -> list[Obj]:
    return manifests_of(rendered(path), KIND)


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
