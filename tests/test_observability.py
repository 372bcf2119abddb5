"""Observability: config, the monitoring stack of every platform stack, a team that opts in, and
the metric names its dashboards and alerts use, checked against what a real Ray exports.

Schemas: core kinds and the RayCluster validate against the upstream schemas and the pinned
KubeRay CRDs; PodMonitor and PrometheusRule against the hand-written strict subsets of the
prometheus-operator CRDs in tests/schemas/ (no package ships the real ones offline).
"""
from __future__ import annotations

import copy
import json
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import promql_parser
import pytest
from ray.job_submission import JobStatus, JobSubmissionClient

import tools.render as render
from components.specs import iam_policies, log_shipping
from components.config.fit import max_demand
from components.config.model import (
    LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY, ConfigError, PlatformConfig, RayClusterConfig, RayObservability,
    TeamStackConfig, WorkerGroupConfig,
)
from components.config.stack import parse
from components.config.stack_files import platform_lookup_from_dir
from components.constants import GPU_NODE_LABEL, GPU_TAINT_EFFECT, GPU_TAINT_KEY, RAY_METRICS_PORT
from components.platform.observability import TEAM_NAMESPACES
from components.specs.monitoring import (
    ADMIN_SECRET, DASHBOARD_LABEL, DATASOURCE, FOLDER_ANNOTATION, MONITORING_API, RAY_DASHBOARDS, alert_groups,
    dcgm_dashboard, dcgm_exporter_values, pod_monitors, prometheus_rule, ray_dashboard_file,
)
from components.specs.raycluster import (
    GRAFANA_HOST_ENV, GRAFANA_IFRAME_HOST_ENV, HEAD_CONTAINER, METRICS_PORT_NAMES, OBSERVABILITY_CONFIG_MAP,
    PROMETHEUS_HOST_ENV, PROMETHEUS_NAME_ENV, observability_config_map, ray_cluster,
)
from components.team.layer import PlatformMismatch, check_platform
from components.versions import (
    DCGM_EXPORTER_CHART_REPO, DCGM_EXPORTER_VERSION, FLUENT_BIT_IMAGE, KUBE_PROMETHEUS_STACK_CHART_REPO,
    KUBE_PROMETHEUS_STACK_VERSION, KUBERAY_VERSION,
)
from tests.config_edits import DELETE, assert_problem_at, with_change
from policy import rules
from tests.stacks import ids, manifests_of, of_type, rendered, stack_files
from tools.export_dashboards import generated_dir, wait_for_dashboards
from tools.k8s_schema import validate_object
from tools.local_ray import LocalRay

Obj = dict[str, Any]
ROOT = Path(__file__).resolve().parents[1]
MONITORING_CRDS = [ROOT / "tests" / "schemas"]
PLATFORM = stack_files("platform")
STACKS = platform_lookup_from_dir(render.STACKS_DIR)
K8S = "1.34"
# A ConfigMap holds at most 1 MiB (etcd's object size limit, enforced by the API server).
CONFIG_MAP_LIMIT = 1024 * 1024


def strict(obj: Obj) -> list[str]:
    return validate_object(obj, K8S, extra_crds=MONITORING_CRDS)


# --------------------------------------------------------------------------- platform config

PLATFORM_GOOD: dict[str, Any] = {
    "layer": "platform",
    "environment": "dev",
    "cluster": {"provider": "eks", "name": "ray-dev"},
    "observability": {
        "prometheus": {"retention": "7d", "storageSize": "20Gi"},
        "grafana": {},
        "dcgmExporter": {},
        "logShipping": {"retentionDays": 14},
    },
    "grafanaAdminPassword": "[secret]",
}
EXISTING: dict[str, Any] = {
    "layer": "platform",
    "environment": "local",
    "cluster": {"provider": "existing", "name": "kind", "kubeconfigPath": "~/.kube/config"},
    "addons": {"clusterAutoscaler": False, "nvidiaDevicePlugin": False},
}


def platform_with(path: str, value: Any, base: dict[str, Any] = PLATFORM_GOOD) -> dict[str, Any]:
    """`base` with one value set at a dotted path (observability.prometheus.retention); None deletes it."""
    return with_change(path, DELETE if value is None else value, base)


def test_platform_observability_defaults_and_switches() -> None:
    cfg = parse(PLATFORM_GOOD, "dev", "us-west-2")
    assert isinstance(cfg, PlatformConfig)
    obs = cfg.observability
    assert obs.namespace == "monitoring" and obs.dcgm_exporter
    assert obs.prometheus is not None and (obs.prometheus.retention, obs.prometheus.storage_size) == ("7d", "20Gi")
    assert obs.grafana is not None and obs.grafana.iframe_host == "http://localhost:3000"
    assert obs.log_shipping is not None and (obs.log_shipping.destination, obs.log_shipping.retention_days) == (
        "cloudwatch", 14)
    # No key: nothing installed, and no Grafana password needed.
    bare = parse(platform_with("observability", None, platform_with("grafanaAdminPassword", None)), "dev", "us-west-2")
    assert isinstance(bare, PlatformConfig) and not bare.observability.installs_anything
    # An existing cluster switches pieces off and may keep their settings in the file.
    off = {"prometheus": {"retention": "2d"}, "dcgmExporter": {"enabled": False},
           "logShipping": {"enabled": False, "retentionDays": 30}}
    local = parse({**EXISTING, "observability": off}, "local")
    assert isinstance(local, PlatformConfig)
    assert local.observability.prometheus is not None and local.observability.grafana is None
    assert not local.observability.dcgm_exporter and local.observability.log_shipping is None


PLATFORM_BAD = [
    ("Grafana without Prometheus", platform_with("observability.prometheus", None),
     "ray-platform:observability.grafana.enabled", "enable observability.prometheus too"),
    ("Grafana without its password", platform_with("grafanaAdminPassword", None),
     "ray-platform:grafanaAdminPassword", "pulumi config set 'ray-platform:grafanaAdminPassword' --secret"),
    ("password without Grafana", platform_with("observability.grafana", None),
     "ray-platform:grafanaAdminPassword", "only used with observability.grafana"),
    ("retention in words", platform_with("observability.prometheus.retention", "15 days"),
     "ray-platform:observability.prometheus.retention", "expected a Prometheus duration"),
    ("storage size not a quantity", platform_with("observability.prometheus.storageSize", "lots"),
     "ray-platform:observability.prometheus.storageSize", "Kubernetes quantity"),
    ("retention CloudWatch refuses", platform_with("observability.logShipping.retentionDays", 10),
     "ray-platform:observability.logShipping.retentionDays", "CloudWatch Logs accepts: 1, 3, 5, 7, 14"),
    ("unknown log destination", platform_with("observability.logShipping.destination", "s3"),
     "ray-platform:observability.logShipping.destination", "allowed: cloudwatch, none"),
    ("enabled but nowhere to ship", platform_with("observability.logShipping.destination", "none"),
     "ray-platform:observability.logShipping.destination", "contradicts enabled: true"),
    ("CloudWatch from an existing cluster", {**EXISTING, "observability": {"logShipping": {}}},
     "ray-platform:observability.logShipping.enabled", "only EKS platform stacks create"),
    ("enabled is not a boolean", platform_with("observability.dcgmExporter", {"enabled": "yes"}),
     "ray-platform:observability.dcgmExporter.enabled", "expected true or false"),
    ("typo in a piece", platform_with("observability.prometheus.retension", "7d"),
     "ray-platform:observability.prometheus.retension", "unknown key; known keys here:"),
    ("typo in a piece's name", platform_with("observability.grafanna", {}),
     "ray-platform:observability.grafanna", "unknown key; known keys here:"),
    ("namespace not a DNS label", platform_with("observability.namespace", "Monitoring"),
     "ray-platform:observability.namespace", "DNS-1123"),
    ("iframe host without scheme", platform_with("observability.grafana.iframeHost", "localhost:3000"),
     "ray-platform:observability.grafana.iframeHost", "expected the URL a browser reaches Grafana at"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in PLATFORM_BAD], ids=[c[0] for c in PLATFORM_BAD])
def test_bad_platform_observability_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw, "dev", "us-west-2")
    assert_problem_at(err.value, path, allowed)


# --------------------------------------------------------------------------- team config

TEAM_GOOD: dict[str, Any] = {
    "layer": "team",
    "environment": "prod",
    "platformStack": "my-org/ray-platform/prod",
    "team": {"name": "obs", "groups": ["obs-engineers"], "quota": {"cpu": "16", "memory": "64Gi", "gpus": 1}},
    "rayClusters": [{"name": "watched", "head": {"cpu": "1", "memory": "4Gi", "shmSize": "1Gi"},
                     "workerGroups": [{"name": "cpu", "cpu": "1", "memory": "2Gi", "shmSize": "512Mi",
                                       "maxReplicas": 2}]}],
    "observability": {"metrics": True, "logShipping": True},
}
# A platform stack that offers nothing (no observability key), for the checks against it.
BARE = parse({**EXISTING}, "bare")


def team_lookup(name: str) -> PlatformConfig | None:
    return BARE if name == "bare" else STACKS(name)


def test_team_opt_in_reaches_every_cluster_and_the_quota_counts_the_sidecars() -> None:
    cfg = parse(TEAM_GOOD, "obs-prod", None, team_lookup)
    assert isinstance(cfg, TeamStackConfig) and cfg.observability == RayObservability(metrics=True, log_shipping=True)
    assert all(c.observability == cfg.observability for c in cfg.ray_clusters)
    off = parse({k: v for k, v in TEAM_GOOD.items() if k != "observability"}, "obs-prod", None, team_lookup)
    assert isinstance(off, TeamStackConfig) and off.observability == RayObservability()
    shipping, silent = max_demand(cfg.ray_clusters), max_demand(off.ray_clusters)
    pods = shipping.pods  # head + 2 workers, each with one sidecar
    assert shipping.cpu == pytest.approx(silent.cpu + pods * 0.1)
    assert shipping.memory == pytest.approx(silent.memory + pods * 128 * 2**20)
    assert (LOG_SHIPPER_CPU, LOG_SHIPPER_MEMORY) == ("100m", "128Mi")


TEAM_BAD = [
    ("metrics on a platform without Prometheus", {**TEAM_GOOD, "platformStack": "org/ray-platform/bare"},
     "ray-platform:observability.metrics", "platform stack 'bare' installs no Prometheus"),
    ("log shipping on a platform that ships none", {**TEAM_GOOD, "platformStack": "org/ray-platform/bare"},
     "ray-platform:observability.logShipping", "platform stack 'bare' ships no logs"),
    ("typo", {**TEAM_GOOD, "observability": {"logs": True}}, "ray-platform:observability.logs", "unknown key"),
    ("sidecars do not fit the quota", {**TEAM_GOOD, "team": {**TEAM_GOOD["team"], "quota": {
        "cpu": "3.6", "memory": "64Gi", "gpus": 1}}}, "ray-platform:team.quota.cpu", "can request 3.8 CPUs"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in TEAM_BAD], ids=[c[0] for c in TEAM_BAD])
def test_bad_team_observability_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw, "obs-prod", None, team_lookup)
    assert_problem_at(err.value, path, allowed)


def test_the_deployed_platform_must_offer_what_the_team_opted_into() -> None:
    good = {"kuberayVersion": KUBERAY_VERSION,
            "gpuTaint": {"key": GPU_TAINT_KEY, "value": "true", "effect": GPU_TAINT_EFFECT}, "clusterName": "c"}
    wanted = RayObservability(metrics=True, log_shipping=True)
    check_platform("org/p/prod", good)  # a team that opts into nothing needs nothing
    with pytest.raises(PlatformMismatch, match="runs no Prometheus.*ships no logs"):
        check_platform("org/p/prod", {**good, "observability": {"prometheus": None, "logShipping": None}}, wanted)
    offered = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["observability"]
    assert check_platform("org/p/prod", {**good, "observability": offered}, wanted)["clusterName"] == "c"


# --------------------------------------------------------------------------- pure builders


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


def test_monitors_select_ray_pods_by_kuberay_labels_on_ports_the_pods_declare() -> None:
    monitors = {m["metadata"]["name"]: m for m in pod_monitors("monitoring", "kuberay-system")}
    for monitor in monitors.values():
        assert strict(monitor) == [], monitor["metadata"]["name"]
    cluster = watched_cluster(metrics=True)
    head_ports = {p["name"] for p in pod_specs(cluster)[0]["containers"][0]["ports"]}
    worker_ports = {p["name"] for p in pod_specs(cluster)[1]["containers"][0]["ports"]}
    for name, node_type, ports in (("ray-head", "head", head_ports), ("ray-workers", "worker", worker_ports)):
        spec = monitors[name]["spec"]
        assert spec["namespaceSelector"] == {"any": True}
        assert spec["selector"]["matchLabels"] == {"ray.io/node-type": node_type}
        assert {"key": "ray.io/cluster", "operator": "Exists"} in spec["selector"]["matchExpressions"]
        endpoints = spec["podMetricsEndpoints"]
        assert {e["port"] for e in endpoints} <= ports
        assert all(e["relabelings"][0]["targetLabel"] == "ray_io_cluster" for e in endpoints)
    assert {p["containerPort"] for p in pod_specs(cluster)[1]["containers"][0]["ports"]} == {RAY_METRICS_PORT}
    assert monitors["kuberay-operator"]["spec"]["namespaceSelector"] == {"matchNames": ["kuberay-system"]}
    misspelled = copy.deepcopy(monitors["ray-head"])
    misspelled["spec"]["podMetricsEndpoints"][0]["intervall"] = "15s"
    assert any("intervall: unknown field" in e for e in strict(misspelled))


def test_alert_rules_are_a_strict_prometheus_rule_and_cover_what_the_issue_asks() -> None:
    rule = prometheus_rule("monitoring", dcgm_exporter=True)
    assert strict(rule) == []
    alerts = {r["alert"]: r for g in rule["spec"]["groups"] for r in g["rules"]}
    assert {"RayJobFailed", "RayTasksFailed", "RayServeApplicationUnhealthy", "RayServeHighErrorRate",
            "RayHeadRestarted", "GpuNodeIdle"} <= set(alerts)
    assert f'container="{HEAD_CONTAINER}"' in alerts["RayHeadRestarted"]["expr"]
    for alert in alerts.values():
        promql_parser.parse(alert["expr"])
        assert alert["labels"]["severity"] in ("warning", "critical") and alert["annotations"]["summary"]
    assert "GpuNodeIdle" not in {r["alert"] for g in alert_groups(dcgm_exporter=False) for r in g["rules"]}
    bad = copy.deepcopy(rule)
    bad["spec"]["groups"][0]["rules"][0]["for"] = "ten minutes"
    assert any("for" in e for e in strict(bad))


def test_dcgm_exporter_runs_only_on_gpu_nodes_and_tolerates_their_taint() -> None:
    values = dcgm_exporter_values(service_monitor=True)
    assert values["nodeSelector"] == {GPU_NODE_LABEL: "true"}
    assert values["tolerations"] == [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}]
    # The DaemonSet itself is the chart's (no chart download offline); what this platform hands it
    # for scheduling and resources must still be valid pod fields, checked strictly here.
    daemon_set = {
        "apiVersion": "apps/v1", "kind": "DaemonSet", "metadata": {"name": "dcgm-exporter", "namespace": "monitoring"},
        "spec": {"selector": {"matchLabels": {"app": "dcgm"}}, "template": {
            "metadata": {"labels": {"app": "dcgm"}},
            "spec": {"nodeSelector": values["nodeSelector"], "tolerations": values["tolerations"],
                     "containers": [{"name": "exporter", "image": "x:1", "resources": values["resources"]}]}}},
    }
    assert strict(daemon_set) == []


def test_dashboards_load_and_fit_a_config_map() -> None:
    for name in RAY_DASHBOARDS:
        board = json.loads(ray_dashboard_file(name).read_text())
        assert board["uid"] and board["panels"], name
    assert {t["name"] for t in dcgm_dashboard()["templating"]["list"]} == {"datasource"}


def test_log_shipping_iam_appends_to_one_group_and_trusts_only_team_namespaces() -> None:
    arn = "arn:aws:logs:us-east-1:123456789012:log-group:/ray-platform/ray-prod/ray"
    (statement,) = iam_policies.log_shipping_policy(arn)["Statement"]
    assert set(statement["Action"]) == {"logs:CreateLogStream", "logs:DescribeLogStreams", "logs:PutLogEvents"}
    assert statement["Resource"] == [arn, f"{arn}:log-stream:*"]
    trust = iam_policies.irsa_trust_policy("arn:aws:iam::1:oidc-provider/o/id/X", "https://o/id/X",
                                           TEAM_NAMESPACES, "*")
    condition = trust["Statement"][0]["Condition"]
    assert condition == {"StringLike": {"o/id/X:sub": "system:serviceaccount:team-*:*"},
                         "StringEquals": {"o/id/X:aud": "sts.amazonaws.com"}}


# --------------------------------------------------------------------------- every platform stack


def releases(path: Path) -> dict[str, Obj]:
    return {x["inputs"]["chart"]: x["inputs"] for x in of_type(rendered(path), "kubernetes:helm.sh/v3:Release")}


def chart_monitors(values: Obj) -> list[Obj]:
    """The PodMonitors and the PrometheusRule the chart creates from its values, as objects."""
    namespace = "monitoring"
    monitors = [{"apiVersion": MONITORING_API, "kind": "PodMonitor",
                 "metadata": {"name": item["name"], "namespace": namespace, "labels": item["additionalLabels"]},
                 "spec": {k: v for k, v in item.items() if k not in ("name", "additionalLabels")}}
                for item in values["prometheus"]["additionalPodMonitors"]]
    rules_ = [{"apiVersion": MONITORING_API, "kind": "PrometheusRule",
               "metadata": {"name": f"kube-prometheus-stack-{name}", "namespace": namespace}, "spec": spec}
              for name, spec in values["additionalPrometheusRulesMap"].items()]
    return monitors + rules_


@pytest.mark.parametrize("path", PLATFORM, ids=ids(PLATFORM))
def test_every_platform_stack_renders_its_monitoring_strictly(path: Path) -> None:
    r = rendered(path)
    cfg = STACKS(r.stack)
    assert cfg is not None
    obs, outputs = cfg.observability, r.outputs["observability"]
    assert outputs["namespace"] == obs.namespace
    assert (outputs["prometheus"] is not None) == (obs.prometheus is not None)
    assert (outputs["logShipping"] is not None) == (obs.log_shipping is not None)
    charts = releases(path)
    monitoring = [m for m in r.manifests() if m["metadata"].get("namespace") == obs.namespace
                  or m["metadata"].get("name") == obs.namespace]
    for obj in monitoring:
        assert strict(obj) == [], obj["metadata"]
    if obs.prometheus is not None:
        stack = charts["kube-prometheus-stack"]
        assert stack["version"] == KUBE_PROMETHEUS_STACK_VERSION
        assert stack["repositoryOpts"]["repo"] == KUBE_PROMETHEUS_STACK_CHART_REPO
        spec = stack["values"]["prometheus"]["prometheusSpec"]
        assert spec["retention"] == obs.prometheus.retention
        claim = spec["storageSpec"]["volumeClaimTemplate"]["spec"]
        assert claim["resources"]["requests"]["storage"] == obs.prometheus.storage_size
        assert not spec["podMonitorSelectorNilUsesHelmValues"] and not spec["ruleSelectorNilUsesHelmValues"]
        for obj in chart_monitors(stack["values"]):
            assert strict(obj) == [], obj["metadata"]
    if obs.grafana is not None:
        grafana = charts["kube-prometheus-stack"]["values"]["grafana"]
        assert grafana["service"]["type"] == "ClusterIP" and grafana["admin"]["existingSecret"] == ADMIN_SECRET
        assert grafana["grafana.ini"]["security"]["allow_embedding"] is True
        (secret,) = [m for m in monitoring if m["kind"] == "Secret"]
        assert secret["metadata"]["name"] == ADMIN_SECRET and set(secret["stringData"].values()) == {render.SECRET}
        boards = [m for m in monitoring if m["kind"] == "ConfigMap"]
        assert len(boards) == len(RAY_DASHBOARDS) + obs.dcgm_exporter
        for board in boards:
            assert board["metadata"]["labels"][DASHBOARD_LABEL] == "1"
            assert board["metadata"]["annotations"][FOLDER_ANNOTATION] in ("Ray", "GPUs")
            (content,) = board["data"].values()
            assert json.loads(content)["panels"] and len(content.encode()) < CONFIG_MAP_LIMIT / 2
    assert ("dcgm-exporter" in charts) == obs.dcgm_exporter
    if obs.dcgm_exporter:
        dcgm = charts["dcgm-exporter"]
        assert dcgm["version"] == DCGM_EXPORTER_VERSION and dcgm["repositoryOpts"]["repo"] == DCGM_EXPORTER_CHART_REPO
        assert dcgm["values"] == dcgm_exporter_values(service_monitor=obs.prometheus is not None)
    if obs.log_shipping is not None:
        (group,) = [x for x in of_type(r, "aws:cloudwatch/logGroup:LogGroup") if x["name"].endswith("-ray-logs")]
        assert group["inputs"]["retentionInDays"] == obs.log_shipping.retention_days
        (role,) = [x for x in of_type(r, "aws:iam/role:Role") if x["name"].endswith("-log-shipper-irsa")]
        assert "team-*" in role["inputs"]["assumeRolePolicy"]


def test_the_shipped_environments_enable_observability_and_local_turns_pieces_off() -> None:
    configs = {p.name: STACKS(p.name.split(".")[1]) for p in PLATFORM}
    for name in ("Pulumi.dev.yaml", "Pulumi.staging.yaml", "Pulumi.prod.yaml"):
        obs = configs[name].observability  # type: ignore[union-attr]
        assert obs.prometheus and obs.grafana and obs.dcgm_exporter and obs.log_shipping, name
    local = configs["Pulumi.local.yaml"].observability  # type: ignore[union-attr]
    assert local.prometheus and not local.dcgm_exporter and local.log_shipping is None


# --------------------------------------------------------------------------- a team that opts in

OPTED_IN_STACK = """
config:
  ray-platform:layer: team
  ray-platform:environment: prod
  ray-platform:platformStack: my-org/ray-platform/prod
  ray-platform:team:
    name: obs
    groups: [obs-engineers]
    quota: {cpu: "16", memory: 64Gi, gpus: 1, pods: 10}
  ray-platform:rayClusters:
    - name: watched
      head: {cpu: "1", memory: 4Gi, shmSize: 1Gi}
      workerGroups:
        - {name: cpu, cpu: "1", memory: 2Gi, shmSize: 512Mi, maxReplicas: 2}
        - {name: gpu, gpuPool: g5-serving, gpus: 1, cpu: "4", memory: 16Gi, shmSize: 2Gi, maxReplicas: 1}
  ray-platform:observability:
    metrics: true
    logShipping: true
"""


@pytest.fixture(scope="module")
def opted_in(tmp_path_factory: pytest.TempPathFactory) -> tuple[render.Rendered, dict[str, list[str]]]:
    """The opted-in team stack rendered against prod, with every resource's dependencies."""
    path = tmp_path_factory.mktemp("obs") / "Pulumi.obs-prod.yaml"
    path.write_text(OPTED_IN_STACK)
    r = render.render_stack(path)
    return r, r.dependencies


def test_an_opted_in_team_renders_strictly_and_passes_the_policy(
        opted_in: tuple[render.Rendered, dict[str, list[str]]]) -> None:
    r, _ = opted_in
    for obj in r.manifests():
        assert strict(obj) == [], obj["metadata"]
    results = rules.check_stack([(x["type"], x["inputs"]) for x in r.resources])
    assert {k: v for k, v in results.items() if v and k not in rules.ADVISORY_STACK_RULES} == {}


def test_an_opted_in_team_gets_the_platform_values_sidecars_and_a_scrape_rule(
        opted_in: tuple[render.Rendered, dict[str, list[str]]]) -> None:
    r, dependencies = opted_in
    objects = {(m["kind"], m["metadata"]["name"]): m for m in r.manifests()}
    config_map = objects[("ConfigMap", OBSERVABILITY_CONFIG_MAP)]
    platform = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["observability"]
    expected = observability_config_map("team-obs", "obs", RayObservability(metrics=True, log_shipping=True), platform)
    assert config_map["data"] == expected["data"]
    cluster = objects[("RayCluster", "watched")]
    assert all(pod["initContainers"][0]["name"] == log_shipping.CONTAINER for pod in pod_specs(cluster))
    (policy,) = manifests_of(r, "NetworkPolicy")
    scrape = policy["spec"]["ingress"][-1]
    assert scrape["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    assert [p["port"] for p in scrape["ports"]] == [8080, 44217, 44227]
    (resource,) = [x for x in r.resources if x["type"] == "kubernetes:ray.io/v1:RayCluster"]
    assert "obs-observability" in dependencies[resource["urn"]], "pods must not start before their ConfigMap"


# --------------------------------------------------------------------------- metric names vs a real Ray

# Grafana template variables in range and step positions; label values stay strings and parse.
GRAFANA_DURATION = re.compile(r"\$(__rate_interval|__interval|__range|interval|window)\b|\$\{[^}]+\}")
# Exported by other programs than Ray, so a local Ray cannot show them; where each comes from.
EXTERNAL_METRICS = {
    "kuberay_job_deployment_status": "the KubeRay operator's metrics (/metrics on its `http` port, v1.7)",
    "kube_pod_container_status_restarts_total": "kube-state-metrics, bundled with kube-prometheus-stack",
    "DCGM_FI_DEV_GPU_UTIL": "dcgm-exporter, default counters (etc/default-counters.csv of the exporter)",
    "DCGM_FI_DEV_FB_USED": "dcgm-exporter, default counters",
    "DCGM_FI_DEV_POWER_USAGE": "dcgm-exporter, default counters",
    "DCGM_FI_DEV_GPU_TEMP": "dcgm-exporter, default counters",
}
# Referenced by Ray's own dashboards but not exported by a 2-CPU, GPU-less, single-node Ray
# running the workload below; each is absent for the reason given. Everything else a dashboard
# or an alert rule references must be among the names the real head exported.
NOT_EXPORTED_HERE = {
    **dict.fromkeys(("ray_node_gpus_available", "ray_node_gpus_utilization", "ray_node_gram_available",
                     "ray_node_gram_used", "ray_node_gpu_power_milliwatts", "ray_node_gpu_temperature_celsius",
                     "ray_component_gpu_memory_mb", "ray_component_gpu_percentage"),
                    "GPU telemetry: only exported where the node has NVIDIA GPUs"),
    **dict.fromkeys(("ray_tpu_duty_cycle", "ray_tpu_memory_bandwidth_utilization", "ray_tpu_memory_total",
                     "ray_tpu_memory_used", "ray_tpu_tensorcore_utilization"), "TPU telemetry: TPU nodes only"),
    "autoscaler_recently_failed_nodes": "only after a node launch failed; a local head has no node provider",
    "ray_memory_manager_worker_eviction_total": "only after the memory monitor killed a worker (OOM)",
    "ray_node_manager_unexpected_worker_failure_total": "only after a worker process crashed",
    **dict.fromkeys(("ray_serve_num_ongoing_grpc_requests", "ray_serve_num_grpc_requests_total",
                     "ray_serve_num_grpc_error_requests_total", "ray_serve_grpc_request_latency_ms_bucket"),
                    "needs Serve's gRPC proxy (grpc_options), which the workload does not start"),
    **dict.fromkeys(("ray_serve_multiplexed_models_load_counter_total",
                     "ray_serve_multiplexed_models_unload_counter_total", "ray_serve_num_multiplexed_models",
                     "ray_serve_registered_multiplexed_model_id",
                     "ray_serve_multiplexed_get_model_requests_counter_total",
                     "ray_serve_multiplexed_model_load_latency_ms_bucket",
                     "ray_serve_multiplexed_model_unload_latency_ms_bucket"),
                    "needs a Serve deployment with model multiplexing"),
    # Not a workload gap: Ray 2.60's Data dashboard queries a name Ray does not export (its
    # OpRuntimeMetrics property is average_task_completion_time_excl_backpressure_s), so that
    # panel stays empty until Ray fixes its dashboard.
    "ray_data_task_completion_time_excl_backpressure_s": "not exported by Ray 2.60 at all (a stale dashboard panel)",
}
# Ray Data exports its per-node and cluster-utilisation series only when asked to; the workload
# asks, so the Data dashboard's panels are checked too (docs/observability.md says how jobs opt in).
DATA_METRICS_ENV = {"RAY_DATA_PER_NODE_METRICS": "1", "RAY_DATA_CLUSTER_AUTOSCALER": "V2"}


def metric_names(expr: str) -> set[str]:
    """Metric names an expression selects, by name or by a `__name__` matcher (regexes kept as `~re`)."""
    names: set[str] = set()

    def visit(node: promql_parser.Expr) -> None:
        if isinstance(node, promql_parser.VectorSelector):
            if node.name:
                names.add(node.name)
            for matcher in node.matchers.matchers:
                if matcher.name == "__name__":
                    regex = matcher.op == promql_parser.MatchOp.Re
                    names.add(f"~{matcher.value}" if regex else matcher.value)

    promql_parser.walk(promql_parser.parse(GRAFANA_DURATION.sub("5m", expr)), visit)
    return names


def dashboard_expressions(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        if isinstance(node.get("expr"), str) and node["expr"].strip():
            yield node["expr"]
        for value in node.values():
            yield from dashboard_expressions(value)
    elif isinstance(node, list):
        for value in node:
            yield from dashboard_expressions(value)


def referenced_metrics() -> dict[str, set[str]]:
    """Metric name -> where it is used, over Ray's dashboards, the GPU dashboard and the alert rules."""
    used: dict[str, set[str]] = {}
    sources: dict[str, list[str]] = {
        f"dashboard {name}": list(dashboard_expressions(json.loads(ray_dashboard_file(name).read_text())))
        for name in RAY_DASHBOARDS}
    sources["dashboard gpu"] = list(dashboard_expressions(dcgm_dashboard()))
    sources["alert rules"] = [r["expr"] for g in alert_groups(dcgm_exporter=True) for r in g["rules"]]
    for where, exprs in sources.items():
        for expr in exprs:
            for name in metric_names(expr):
                used.setdefault(name, set()).add(where)
    return used


def test_every_expression_parses_and_names_metrics() -> None:
    used = referenced_metrics()
    assert "ray_node_cpu_utilization" in used and "ray_serve_deployment_replica_healthy" in used
    assert set(EXTERNAL_METRICS) <= set(used), "an external metric nothing uses anymore"
    assert set(NOT_EXPORTED_HERE) <= set(used), "an allow-listed metric nothing uses anymore"


WORKLOAD = '''
import sys, tempfile, time
import ray
from ray import serve

ray.init()

@ray.remote(num_cpus=0.1)
def square(x):
    return x * x

@ray.remote(num_cpus=0.1, max_retries=0)
def fail():
    raise ValueError("expected by the test")

@ray.remote(num_cpus=0.1)
class Counter:
    def __init__(self):
        self.n = 0
    def add(self):
        self.n += 1
        return self.n

assert ray.get([square.remote(i) for i in range(8)])[3] == 9
assert ray.get(Counter.remote().add.remote()) == 1
try:
    ray.get(fail.remote())
except ray.exceptions.RayTaskError:
    pass

def slow(batch):
    time.sleep(0.5)
    return {"id": batch["id"] * 2}

dataset = ray.data.range(2000, override_num_blocks=8).map_batches(slow, num_cpus=0.1)
assert sum(len(b["id"]) for b in dataset.iter_batches(batch_size=100)) == 2000

import ray.train
from ray.train import Checkpoint, RunConfig, ScalingConfig
from ray.train.torch import TorchTrainer

def train_func(config):
    for step in range(3):
        directory = tempfile.mkdtemp()
        open(f"{directory}/step", "w").write(str(step))
        ray.train.report({"loss": 1.0 / (step + 1)}, checkpoint=Checkpoint.from_directory(directory))
        time.sleep(1)

TorchTrainer(train_func, scaling_config=ScalingConfig(num_workers=1, resources_per_worker={"CPU": 0.1}),
             run_config=RunConfig(name="obs-probe", storage_path=tempfile.mkdtemp())).fit()

@serve.deployment(ray_actor_options={"num_cpus": 0})
class Echo:
    def __call__(self, request):
        if request.query_params.get("fail"):
            raise RuntimeError("expected by the test")
        return "ok"

serve.start(http_options={"host": "127.0.0.1", "port": int(sys.argv[1])})
serve.run(Echo.bind(), name="obs-probe", route_prefix="/obs-probe")
'''


def scrape(temp_dir: Path) -> set[str]:
    """Metric names served by every endpoint in Ray's Prometheus service discovery file, which
    Ray rewrites as its processes come up (the node's metrics agent is listed seconds after start)."""
    discovery = json.loads((temp_dir / "prom_metrics_service_discovery.json").read_text())
    names: set[str] = set()
    for target in (t for group in discovery for t in group["targets"]):
        port = target.rsplit(":", 1)[1]
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as resp:
                text = resp.read().decode()
        except OSError:
            continue  # an endpoint that is not up yet; the next poll tries again
        names |= {line.split("{", 1)[0].split(" ", 1)[0] for line in text.splitlines()
                  if line and not line.startswith("#")}
    return names


def missing_metrics(exported: set[str]) -> dict[str, list[str]]:
    """Referenced metric -> where, for each neither exported nor explained (allow-list, external)."""
    missing: dict[str, list[str]] = {}
    for name, where in sorted(referenced_metrics().items()):
        if name in EXTERNAL_METRICS or name in NOT_EXPORTED_HERE:
            continue
        found = any(re.fullmatch(name[1:], e) for e in exported) if name.startswith("~") else name in exported
        if not found:
            missing[name] = sorted(where)
    return missing


def run_job(client: JobSubmissionClient, entrypoint: str, working_dir: Path, timeout: float) -> str:
    job = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": str(working_dir)})
    deadline = time.monotonic() + timeout
    while not client.get_job_status(job).is_terminal():
        assert time.monotonic() < deadline, f"job {job} still running after {timeout:.0f}s"
        time.sleep(1)
    return job


@pytest.mark.ray
def test_the_committed_dashboards_are_what_this_ray_generates(ray_head: LocalRay) -> None:
    generated = wait_for_dashboards(Path(ray_head.temp_dir))
    assert generated == generated_dir(Path(ray_head.temp_dir))
    for name in RAY_DASHBOARDS:
        committed = json.loads(ray_dashboard_file(name).read_text())
        assert json.loads((generated / ray_dashboard_file(name).name).read_text()) == committed, (
            f"{name}: Ray now generates a different dashboard; run `python -m tools.export_dashboards`")


@pytest.mark.ray
def test_every_ray_metric_the_dashboards_and_alerts_use_is_exported_by_a_real_head(
        ray_head: LocalRay, tmp_path: Path) -> None:
    """Run tasks, an actor, a failing task, Ray Data, Ray Train and a Serve app on the real head,
    scraping every metrics endpoint Ray lists (node, autoscaler, dashboard) while they run:
    some gauges (Ray Data's operator state) exist only while a dataset executes."""
    (tmp_path / "workload.py").write_text(WORKLOAD)
    (tmp_path / "cleanup.py").write_text("from ray import serve\nserve.delete('obs-probe')\n")
    temp_dir = Path(ray_head.temp_dir)
    client = JobSubmissionClient(ray_head.dashboard_url)
    exported: set[str] = set()
    job = client.submit_job(entrypoint=f"python workload.py {ray_head.serve_port}",
                            runtime_env={"working_dir": str(tmp_path), "env_vars": DATA_METRICS_ENV})
    try:
        deadline = time.monotonic() + 600
        while not client.get_job_status(job).is_terminal():
            assert time.monotonic() < deadline, "workload still running after 600s"
            exported |= scrape(temp_dir)
            time.sleep(2)
        assert client.get_job_status(job) == JobStatus.SUCCEEDED, client.get_job_logs(job)[-3000:]
        # Requests through Serve's proxy (which may predate this test, on its own port).
        with urllib.request.urlopen(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=10) as resp:
            port = json.load(resp)["http_options"]["port"]
        for _ in range(5):
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/obs-probe", timeout=10) as resp:
                assert resp.read() == b"ok"
        for path, code in (("/obs-probe-missing", 404), ("/obs-probe?fail=1", 500)):
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10)
            assert err.value.code == code
        # Replicas and proxies push their metrics every few seconds: poll, bounded.
        settle = time.monotonic() + 60
        while missing_metrics(exported) and time.monotonic() < settle:
            time.sleep(2)
            exported |= scrape(temp_dir)
    finally:
        run_job(client, "python cleanup.py", tmp_path, timeout=120)
    missing = missing_metrics(exported)
    assert missing == {}, f"referenced but not exported by Ray ({len(exported)} names seen): {missing}"
