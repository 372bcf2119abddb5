"""The monitoring objects of a platform: Ray's PodMonitors, the alert rules, Grafana's dashboards
as ConfigMaps, the values of the kube-prometheus-stack and DCGM exporter charts, and the
`observability` output team stacks read.

No Pulumi here: components/platform/observability.py hands these to the engine (the monitors and
rules through the chart's values, see there why), and tests validate the full objects.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from components.config.fit import quantity_value
from components.config.model import ObservabilityConfig, PrometheusConfig
from components.constants import PART_OF_LABEL, PROJECT, RAY_CLUSTER_LABEL, RAY_NODE_TYPE_LABEL
from components.specs.gpu_nodes import gpu_daemonset_placement
from components.specs.raycluster import HEAD_CONTAINER, METRICS_PORT_NAMES

MONITORING_API = "monitoring.coreos.com/v1"
# Set as the chart's fullnameOverride, so the Services below have these names whatever the release.
FULLNAME = "kube-prometheus-stack"
PROMETHEUS_SERVICE = f"{FULLNAME}-prometheus"
PROMETHEUS_PORT = 9090
GRAFANA_SERVICE = f"{FULLNAME}-grafana"
GRAFANA_PORT = 80
# The name of the Prometheus datasource the chart provisions in Grafana; Ray's dashboards pick it.
DATASOURCE = "Prometheus"
# Grafana's dashboard sidecar loads every ConfigMap with this label, into the annotated folder.
DASHBOARD_LABEL = "grafana_dashboard"
FOLDER_ANNOTATION = "grafana_folder"
ADMIN_SECRET = "grafana-admin"
ADMIN_USER_KEY = "admin-user"
ADMIN_PASSWORD_KEY = "admin-password"
SCRAPE_INTERVAL = "15s"

DASHBOARDS_DIR = Path(__file__).resolve().parent / "dashboards"
# Ray's dashboards this platform provisions (the LLM ones need vLLM / SGLang, which it does not run).
RAY_DASHBOARDS = ("default", "serve", "serve_deployment", "data", "train")

# Prometheus stops at this share of its volume instead of crashing on a full disk.
RETENTION_SIZE_SHARE = 0.85
# Averaged over 30 minutes and sustained for an hour: a GPU node this idle is a cost to look at.
IDLE_GPU_UTILIZATION_PERCENT = 5


def ray_dashboard_file(name: str) -> Path:
    return DASHBOARDS_DIR / f"{name}_grafana_dashboard.json"


def ray_dashboards() -> dict[str, dict[str, Any]]:
    return {name: json.loads(ray_dashboard_file(name).read_text()) for name in RAY_DASHBOARDS}


def prometheus_url(namespace: str) -> str:
    return f"http://{PROMETHEUS_SERVICE}.{namespace}.svc:{PROMETHEUS_PORT}"


def grafana_url(namespace: str) -> str:
    return f"http://{GRAFANA_SERVICE}.{namespace}.svc:{GRAFANA_PORT}"


# --------------------------------------------------------------------------- monitors and rules


def _pod_monitor(name: str, namespace: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": MONITORING_API, "kind": "PodMonitor",
            "metadata": {"name": name, "namespace": namespace, "labels": {PART_OF_LABEL: PROJECT}}, "spec": spec}


def _ray_endpoint(port: str) -> dict[str, Any]:
    return {
        "port": port,
        "path": "/metrics",
        "interval": SCRAPE_INTERVAL,
        # Ray's dashboards select a cluster by this label (KubeRay's documented relabeling).
        "relabelings": [{"sourceLabels": [f"__meta_kubernetes_pod_label_{_label_name(RAY_CLUSTER_LABEL)}"],
                         "targetLabel": "ray_io_cluster", "action": "replace"}],
    }


def _label_name(label: str) -> str:
    """A Kubernetes label key as Prometheus spells it in discovery labels."""
    return "".join(c if c.isalnum() else "_" for c in label)


def pod_monitors(namespace: str, kuberay_namespace: str) -> list[dict[str, Any]]:
    """Ray heads (node, autoscaler and dashboard metrics), Ray workers, and the KubeRay operator."""

    def ray(node_type: str, ports: tuple[str, ...]) -> dict[str, Any]:
        return {
            # Team namespaces come and go with team stacks; KubeRay's labels find their Ray pods.
            "namespaceSelector": {"any": True},
            "selector": {"matchLabels": {RAY_NODE_TYPE_LABEL: node_type},
                         "matchExpressions": [{"key": RAY_CLUSTER_LABEL, "operator": "Exists"}]},
            "podMetricsEndpoints": [_ray_endpoint(port) for port in ports],
        }

    return [
        _pod_monitor("ray-head", namespace, ray("head", METRICS_PORT_NAMES)),
        _pod_monitor("ray-workers", namespace, ray("worker", METRICS_PORT_NAMES[:1])),
        _pod_monitor("kuberay-operator", namespace, {
            "namespaceSelector": {"matchNames": [kuberay_namespace]},
            "selector": {"matchLabels": {"app.kubernetes.io/name": "kuberay-operator"}},
            "podMetricsEndpoints": [{"port": "http", "path": "/metrics", "interval": SCRAPE_INTERVAL}],
        }),
    ]


def _alert(name: str, expr: str, duration: str, severity: str, summary: str, description: str) -> dict[str, Any]:
    return {"alert": name, "expr": expr, "for": duration, "labels": {"severity": severity},
            "annotations": {"summary": summary, "description": description}}


def alert_groups(dcgm_exporter: bool) -> list[dict[str, Any]]:
    by_cluster = "namespace, ray_io_cluster"
    groups: list[dict[str, Any]] = [
        {"name": "ray-jobs", "rules": [
            _alert("RayJobFailed",
                   'max by (namespace, name) (kuberay_job_deployment_status{deployment_status="Failed"}) == 1',
                   "0m", "warning", "RayJob {{ $labels.namespace }}/{{ $labels.name }} failed",
                   "KubeRay reports the RayJob as Failed. `kubectl -n {{ $labels.namespace }} describe rayjob "
                   "{{ $labels.name }}`, and the job's logs in CloudWatch when the team ships logs."),
            # Jobs submitted through the Job SDK (the post-deploy hook, `ray job submit`) have no
            # status metric in Ray; their failures show as tasks that failed without a retry left.
            _alert("RayTasksFailed",
                   f'sum by ({by_cluster}) (delta(ray_tasks{{State="FAILED", IsRetry="0"}}[10m])) > 0',
                   "0m", "warning", "Ray tasks failed on {{ $labels.namespace }}/{{ $labels.ray_io_cluster }}",
                   "Tasks failed on this cluster in the last 10 minutes, so a job on it may have failed: "
                   "`make jobs ARGS=list` against its dashboard, or the Ray dashboard's Jobs page."),
        ]},
        {"name": "ray-serve", "rules": [
            _alert("RayServeApplicationUnhealthy",
                   f"min by ({by_cluster}, application, deployment) (ray_serve_deployment_replica_healthy) < 1",
                   "5m", "critical",
                   "Serve application {{ $labels.application }} has unhealthy replicas",
                   "Deployment {{ $labels.deployment }} on {{ $labels.namespace }}/{{ $labels.ray_io_cluster }} "
                   "has had a replica failing its health check for 5 minutes."),
            _alert("RayServeHighErrorRate",
                   f"sum by ({by_cluster}, application) (rate(ray_serve_num_http_error_requests_total[5m]))"
                   f" / sum by ({by_cluster}, application) (rate(ray_serve_num_http_requests_total[5m])) > 0.05",
                   "10m", "warning", "Serve application {{ $labels.application }} fails over 5% of requests",
                   "More than 5% of HTTP requests to {{ $labels.application }} on "
                   "{{ $labels.namespace }}/{{ $labels.ray_io_cluster }} have failed for 10 minutes."),
        ]},
        {"name": "ray-head", "rules": [
            _alert("RayHeadRestarted",
                   f'increase(kube_pod_container_status_restarts_total{{container="{HEAD_CONTAINER}"}}[15m]) > 0',
                   "0m", "critical", "Ray head {{ $labels.namespace }}/{{ $labels.pod }} restarted",
                   "The head's Ray container restarted: without GCS fault tolerance the cluster lost its job "
                   "history and running jobs. Logs of the previous run are in CloudWatch when the team ships logs."),
        ]},
    ]
    if dcgm_exporter:
        groups.append({"name": "gpu-cost", "rules": [
            _alert("GpuNodeIdle",
                   f"avg by (node) (avg_over_time(DCGM_FI_DEV_GPU_UTIL[30m])) < {IDLE_GPU_UTILIZATION_PERCENT}",
                   "1h", "warning", "GPU node {{ $labels.node }} has been idle for over an hour",
                   f"Its GPUs averaged under {IDLE_GPU_UTILIZATION_PERCENT}% utilisation for over an hour while the "
                   "node is billed: look for idle Ray workers (autoscaler idleTimeoutSeconds) or a GPU pool "
                   "whose minSize keeps nodes up."),
        ]})
    return groups


def prometheus_rule(namespace: str, dcgm_exporter: bool) -> dict[str, Any]:
    return {"apiVersion": MONITORING_API, "kind": "PrometheusRule",
            "metadata": {"name": f"{FULLNAME}-{PROJECT}", "namespace": namespace, "labels": {PART_OF_LABEL: PROJECT}},
            "spec": {"groups": alert_groups(dcgm_exporter)}}


def as_chart_pod_monitor(monitor: dict[str, Any]) -> dict[str, Any]:
    """One PodMonitor object as an item of the chart's `prometheus.additionalPodMonitors`."""
    meta = monitor["metadata"]
    return {"name": meta["name"], "additionalLabels": dict(meta["labels"]), **monitor["spec"]}


# --------------------------------------------------------------------------- dashboards


def _gpu_panel(panel_id: int, title: str, expr: str, unit: str, x: int, y: int) -> dict[str, Any]:
    return {
        "id": panel_id, "type": "timeseries", "title": title,
        "datasource": {"type": "prometheus", "uid": "${datasource}"},
        "gridPos": {"h": 8, "w": 12, "x": x, "y": y},
        "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
        "targets": [{"refId": "A", "expr": expr, "legendFormat": "{{node}} GPU {{gpu}}"}],
    }


def dcgm_dashboard() -> dict[str, Any]:
    """Per-GPU utilisation, memory, power and temperature from the DCGM exporter (default counters)."""
    panels = [
        ("GPU utilisation", "DCGM_FI_DEV_GPU_UTIL", "percent"),
        ("GPU memory used", "DCGM_FI_DEV_FB_USED", "decmbytes"),
        ("Power draw", "DCGM_FI_DEV_POWER_USAGE", "watt"),
        ("GPU temperature", "DCGM_FI_DEV_GPU_TEMP", "celsius"),
    ]
    return {
        "uid": "ray-platform-gpus", "title": "GPUs (DCGM)", "schemaVersion": 39, "version": 1,
        "tags": [PROJECT, "gpu"], "time": {"from": "now-6h", "to": "now"}, "refresh": "30s",
        "templating": {"list": [{"name": "datasource", "type": "datasource", "query": "prometheus",
                                 "current": {"text": DATASOURCE, "value": DATASOURCE}}]},
        "panels": [_gpu_panel(i + 1, title, f"avg by (node, gpu) ({metric})", unit, 12 * (i % 2), 8 * (i // 2))
                   for i, (title, metric, unit) in enumerate(panels)],
    }


def dashboard_config_map(name: str, folder: str, dashboard: dict[str, Any], namespace: str) -> dict[str, Any]:
    # Compact JSON: the Data dashboard is ~0.5 MB as Ray indents it, half the ConfigMap limit.
    return {
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": f"dashboard-{name.replace('_', '-')}", "namespace": namespace,
                     "labels": {DASHBOARD_LABEL: "1", PART_OF_LABEL: PROJECT},
                     "annotations": {FOLDER_ANNOTATION: folder}},
        "data": {f"{name}.json": json.dumps(dashboard, separators=(",", ":"), sort_keys=True)},
    }


def dashboard_config_maps(cfg: ObservabilityConfig) -> list[dict[str, Any]]:
    maps = [dashboard_config_map(f"ray_{name}", "Ray", board, cfg.namespace)
            for name, board in ray_dashboards().items()]
    if cfg.dcgm_exporter:
        maps.append(dashboard_config_map("gpu_dcgm", "GPUs", dcgm_dashboard(), cfg.namespace))
    return maps


# --------------------------------------------------------------------------- platform stack output


def platform_outputs(cfg: ObservabilityConfig, log_shipping: dict[str, Any] | None) -> dict[str, Any]:
    """The platform stack's `observability` output: what team stacks build their ConfigMap from
    (components/specs/raycluster.py, observability_config_map) and check the platform against."""
    return {
        "namespace": cfg.namespace,
        "prometheus": ({"url": prometheus_url(cfg.namespace), "datasource": DATASOURCE}
                       if cfg.prometheus is not None else None),
        "grafana": ({"url": grafana_url(cfg.namespace), "iframeHost": cfg.grafana.iframe_host}
                    if cfg.grafana is not None else None),
        "dcgmExporter": cfg.dcgm_exporter,
        "logShipping": log_shipping,
    }


# --------------------------------------------------------------------------- chart values


def retention_size(prometheus: PrometheusConfig) -> str:
    # Prometheus reads MB as MiB.
    return f"{int(quantity_value(prometheus.storage_size) * RETENTION_SIZE_SHARE / 2**20)}MB"


def kube_prometheus_stack_values(cfg: ObservabilityConfig, kuberay_namespace: str, storage_class: str | None,
                                 node_selector: dict[str, str] | None) -> dict[str, Any]:
    prometheus = cfg.prometheus
    if prometheus is None:
        raise ValueError("kube-prometheus-stack is installed only with observability.prometheus")
    placement = {"nodeSelector": dict(node_selector or {})}
    claim: dict[str, Any] = {"accessModes": ["ReadWriteOnce"],
                             "resources": {"requests": {"storage": prometheus.storage_size}}}
    if storage_class is not None:
        claim["storageClassName"] = storage_class
    values: dict[str, Any] = {
        "fullnameOverride": FULLNAME,
        "crds": {"enabled": True},
        "prometheusOperator": dict(placement),
        "prometheus": {
            "prometheusSpec": {
                **placement,
                "retention": prometheus.retention,
                "retentionSize": retention_size(prometheus),
                "storageSpec": {"volumeClaimTemplate": {"spec": claim}},
                # Select monitors and rules from every namespace, not only this release's.
                "podMonitorSelectorNilUsesHelmValues": False,
                "serviceMonitorSelectorNilUsesHelmValues": False,
                "ruleSelectorNilUsesHelmValues": False,
            },
            "additionalPodMonitors": [as_chart_pod_monitor(m) for m in pod_monitors(cfg.namespace, kuberay_namespace)],
        },
        "additionalPrometheusRulesMap": {PROJECT: {"groups": alert_groups(cfg.dcgm_exporter)}},
        "alertmanager": {"alertmanagerSpec": dict(placement)},
        "kube-state-metrics": dict(placement),
        "grafana": {"enabled": False},
    }
    if cfg.grafana is not None:
        values["grafana"] = {
            "enabled": True,
            "fullnameOverride": GRAFANA_SERVICE,
            **placement,
            "admin": {"existingSecret": ADMIN_SECRET, "userKey": ADMIN_USER_KEY, "passwordKey": ADMIN_PASSWORD_KEY},
            # Internal only: people reach it with kubectl port-forward (docs/observability.md).
            "service": {"type": "ClusterIP"},
            # The Ray dashboard shows Grafana panels in iframes.
            "grafana.ini": {"security": {"allow_embedding": True}},
            "sidecar": {"dashboards": {"enabled": True, "label": DASHBOARD_LABEL, "labelValue": "1",
                                       "folderAnnotation": FOLDER_ANNOTATION,
                                       "provider": {"foldersFromFilesStructure": True}}},
            # Dashboards come from ConfigMaps and the admin from a Secret: nothing to persist.
            "persistence": {"enabled": False},
        }
    return values


def dcgm_exporter_values(service_monitor: bool) -> dict[str, Any]:
    """On GPU nodes only (the platform's label), tolerating their taint; a node label on every series."""
    return {
        **gpu_daemonset_placement(),
        "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "512Mi"}},
        "serviceMonitor": {
            "enabled": service_monitor,
            "interval": SCRAPE_INTERVAL,
            "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_node_name"], "targetLabel": "node",
                             "action": "replace"}],
        },
    }
