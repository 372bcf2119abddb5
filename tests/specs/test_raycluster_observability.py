"""What a team's opt-in (RayClusterConfig.observability) does to its RayCluster and its ConfigMap
(components/specs/raycluster.py, components/specs/log_shipping.py)."""
from __future__ import annotations

from typing import Any

import tools.render as render
from components.specs import log_shipping
from components.config.model import (
    LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY, RayClusterConfig, RayObservability, WorkerGroupConfig,
)
from components.specs.monitoring import DATASOURCE
from components.specs.raycluster import (
    GRAFANA_HOST_ENV, GRAFANA_IFRAME_HOST_ENV, METRICS_PORT_NAMES, OBSERVABILITY_CONFIG_MAP, PROMETHEUS_HOST_ENV,
    PROMETHEUS_NAME_ENV, observability_config_map, ray_cluster,
)
from components.versions import FLUENT_BIT_IMAGE
from policy import rules
from tests.stacks import rendered, strict

Obj = dict[str, Any]


def watched_cluster(**observability: bool) -> Obj:
    cfg = RayClusterConfig(name="watched", worker_groups=(
        WorkerGroupConfig(name="cpu", cpu="1", memory="2Gi", max_replicas=2),
        WorkerGroupConfig(name="gpu", cpu="4", memory="16Gi", gpus=1, max_replicas=1, gpu_pool="g5-serving"),
    ), observability=RayObservability(**observability))
    return ray_cluster(cfg, "team-obs", "obs")


def pod_specs(cluster: Obj) -> list[Obj]:
    spec = cluster["spec"]
    return [spec["headGroupSpec"]["template"]["spec"], *(g["template"]["spec"] for g in spec["workerGroupSpecs"])]


def test_without_opt_in_the_ray_pods_are_untouched() -> None:
    cluster = watched_cluster()
    assert cluster == watched_cluster(metrics=False, log_shipping=False)
    for pod in pod_specs(cluster):
        assert "initContainers" not in pod
        assert {v["name"] for v in pod["volumes"]} == {"dshm"}
    head = pod_specs(cluster)[0]["containers"][0]
    assert {p["name"] for p in head["ports"]} & set(METRICS_PORT_NAMES) == {"metrics"}
    assert not any(e["name"].startswith("RAY_GRAFANA") for e in head["env"])


def test_log_shipping_adds_a_native_fluent_bit_sidecar_to_every_ray_pod() -> None:
    cluster = watched_cluster(log_shipping=True)
    assert strict(cluster) == []
    for pod in pod_specs(cluster):
        (sidecar,) = pod["initContainers"]
        assert sidecar["image"] == FLUENT_BIT_IMAGE and sidecar["restartPolicy"] == "Always"
        assert sidecar["resources"]["requests"] == sidecar["resources"]["limits"] == {
            "cpu": LOG_SHIPPER_CPU, "memory": LOG_SHIPPER_MEMORY}
        (ray,) = pod["containers"]
        assert log_shipping.ray_logs_mount() in ray["volumeMounts"]
        mounts = {m["name"]: m for m in sidecar["volumeMounts"]}
        assert mounts[log_shipping.RAY_LOGS_VOLUME] == {"name": "ray-logs", "mountPath": "/tmp/ray", "readOnly": True}
        volumes = {v["name"]: v for v in pod["volumes"]}
        assert set(mounts) <= set(volumes)
        assert volumes["ray-logs"] == {"name": "ray-logs", "emptyDir": {}}
        token = volumes[log_shipping.TOKEN_VOLUME]["projected"]["sources"][0]["serviceAccountToken"]
        assert token["audience"] == "sts.amazonaws.com"
        env = {e["name"]: e for e in sidecar["env"]}
        assert env["AWS_ROLE_ARN"]["valueFrom"]["configMapKeyRef"]["name"] == OBSERVABILITY_CONFIG_MAP
        assert env["AWS_WEB_IDENTITY_TOKEN_FILE"]["value"].startswith(mounts[log_shipping.TOKEN_VOLUME]["mountPath"])
    # Workers still get no Kubernetes API token; the sidecar's token is for STS only.
    assert all(p["automountServiceAccountToken"] is False for p in pod_specs(cluster)[1:])
    assert rules.images_pinned("kubernetes:ray.io/v1:RayCluster", cluster) == []


def test_metrics_wire_the_head_to_prometheus_and_grafana_through_the_team_config_map() -> None:
    cluster = watched_cluster(metrics=True)
    assert strict(cluster) == []
    head = pod_specs(cluster)[0]["containers"][0]
    assert [p["name"] for p in head["ports"] if p["name"] in METRICS_PORT_NAMES] == list(METRICS_PORT_NAMES)
    env = {e["name"]: e for e in head["env"]}
    for key in (PROMETHEUS_HOST_ENV, PROMETHEUS_NAME_ENV, GRAFANA_HOST_ENV, GRAFANA_IFRAME_HOST_ENV):
        assert env[key]["valueFrom"]["configMapKeyRef"] == {"name": OBSERVABILITY_CONFIG_MAP, "key": key,
                                                            "optional": True}
    assert env["RAY_GRAFANA_CLUSTER_FILTER"]["value"] == "watched"


def test_the_team_config_map_carries_only_what_the_team_chose_and_the_platform_offers() -> None:
    platform = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["observability"]
    both = observability_config_map("team-obs", "obs", RayObservability(metrics=True, log_shipping=True), platform)
    assert strict(both) == []
    data = both["data"]
    assert data[PROMETHEUS_HOST_ENV] == "http://kube-prometheus-stack-prometheus.monitoring.svc:9090"
    assert data[GRAFANA_HOST_ENV] == "http://kube-prometheus-stack-grafana.monitoring.svc:80"
    assert data[GRAFANA_IFRAME_HOST_ENV] == "http://localhost:3000" and data[PROMETHEUS_NAME_ENV] == DATASOURCE
    assert data["AWS_REGION"] == "us-east-1" and data["AWS_ROLE_ARN"].endswith("log-shipper-irsa")
    conf = data[log_shipping.CONFIG_KEY]
    assert "log_group_name    /ray-platform/ray-prod/ray" in conf and "auto_create_group Off" in conf
    assert "/tmp/ray/session_latest/logs/*.log" in conf and "serve/*.log" in conf
    metrics_only = observability_config_map("team-obs", "obs", RayObservability(metrics=True), platform)["data"]
    assert log_shipping.CONFIG_KEY not in metrics_only and PROMETHEUS_HOST_ENV in metrics_only
    no_grafana = observability_config_map("team-obs", "obs", RayObservability(metrics=True),
                                          {**platform, "grafana": None})["data"]
    assert GRAFANA_HOST_ENV not in no_grafana and PROMETHEUS_HOST_ENV in no_grafana
