"""The platform's monitoring objects (components/specs/monitoring.py): PodMonitors, alert rules,
DCGM exporter values and dashboards, validated strictly.

PodMonitor and PrometheusRule validate against the hand-written strict subsets of the
prometheus-operator CRDs in tests/schemas/ (no package ships the real ones offline).
"""
from __future__ import annotations

import copy
import json

import promql_parser

from components.constants import GPU_NODE_LABEL, GPU_TAINT_EFFECT, GPU_TAINT_KEY, RAY_METRICS_PORT
from components.specs.monitoring import (
    RAY_DASHBOARDS, alert_groups, dcgm_dashboard, dcgm_exporter_values, pod_monitors, prometheus_rule,
    ray_dashboard_file,
)
from components.specs.raycluster import HEAD_CONTAINER
from tests.stacks import strict
from tests.specs.test_raycluster_observability import pod_specs, watched_cluster


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
