"""Platform observability: metrics, dashboards, GPU telemetry, alerts and the log destination.

* kube-prometheus-stack (pinned): the Prometheus operator, Prometheus with retention and a
  persistent volume from config, Alertmanager, kube-state-metrics, node-exporter and Grafana
  (ClusterIP only: reached by port-forward; admin password a Pulumi secret).
* Ray metrics: PodMonitors for Ray heads and workers in every namespace, selected by KubeRay's
  own pod labels, plus one for the KubeRay operator (its RayJob status metrics).
* Ray's Grafana dashboards (default, Serve, Serve deployment, Data, Train: the JSON Ray itself
  generates, exported by tools/export_dashboards.py) and a GPU dashboard, as ConfigMaps that
  Grafana's dashboard sidecar loads.
* Alerts: a Ray job failed, a Serve application is unhealthy, GPU nodes idle for long, a Ray
  head restarted.
* The NVIDIA DCGM exporter (pinned chart) on GPU nodes only, tolerating the GPU taint.
* Log shipping (EKS): the CloudWatch log group and the IRSA role the Fluent Bit sidecars of the
  team's Ray pods use (components/specs/log_shipping.py).

The PodMonitors and the PrometheusRule are handed to the chart (`additionalPodMonitors`,
`additionalPrometheusRulesMap`) rather than declared as Pulumi custom resources: Helm creates
them right after the CRDs it installs, so a first `pulumi up` never submits a custom resource
whose CRD does not exist yet. The objects and chart values are built in components/specs/monitoring.py.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.config.model import ObservabilityConfig
from components.constants import PART_OF_LABEL, PROJECT
from components.platform.eks_cluster import EksAccess, irsa_role
from components.platform.helm import pinned_release
from components.specs import iam_policies
from components.specs.monitoring import (
    ADMIN_PASSWORD_KEY, ADMIN_SECRET, ADMIN_USER_KEY, dashboard_config_maps, dcgm_exporter_values,
    kube_prometheus_stack_values, platform_outputs,
)
from components.versions import (
    DCGM_EXPORTER_CHART, DCGM_EXPORTER_CHART_REPO, DCGM_EXPORTER_VERSION, KUBE_PROMETHEUS_STACK_CHART,
    KUBE_PROMETHEUS_STACK_CHART_REPO, KUBE_PROMETHEUS_STACK_VERSION,
)

# components/platform/block_storage.py aliases its resources to this type: they were its children.
OBSERVABILITY_TYPE = "ray-platform:index:Observability"
# Team namespaces are team-<name> (TeamConfig.namespace): any Ray pod there may ship logs.
TEAM_NAMESPACES = "team-*"


def log_group_name(cluster_name: str) -> str:
    return f"/{PROJECT}/{cluster_name}/ray"


@dataclass(frozen=True)
class ObservabilityArgs:
    config: ObservabilityConfig
    cluster_name: str
    kuberay_namespace: str
    grafana_admin_password: pulumi.Input[str] | None = None
    node_selector: dict[str, str] | None = None
    eks: EksAccess | None = None
    # The platform's block storage (EKS): Prometheus' volume class when none is configured, and
    # what the chart waits for (components/platform/block_storage.py).
    default_storage_class: str | None = None
    storage_ready: Sequence[pulumi.Resource] = ()
    helm_repository: str | None = None


class Observability(pulumi.ComponentResource):
    """Everything under `ray-platform:observability` of a platform stack; `outputs` is what team stacks read."""

    outputs: dict[str, Any]

    def __init__(self, name: str, args: ObservabilityArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__(OBSERVABILITY_TYPE, name, None, opts)
        cfg = args.config
        child = pulumi.ResourceOptions(parent=self)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": cfg.namespace, "labels": {PART_OF_LABEL: PROJECT}}, opts=child)
        in_namespace = pulumi.ResourceOptions(parent=self, depends_on=[namespace])
        chart_needs: list[pulumi.Resource] = [namespace]
        if cfg.grafana is not None:
            if args.grafana_admin_password is None:
                # config.py requires the secret with Grafana; reaching this is a programming error.
                raise ValueError("Grafana needs ray-platform:grafanaAdminPassword")
            chart_needs.append(k8s.core.v1.Secret(
                f"{name}-grafana-admin",
                metadata={"name": ADMIN_SECRET, "namespace": cfg.namespace, "labels": {PART_OF_LABEL: PROJECT}},
                type="Opaque",
                string_data={ADMIN_USER_KEY: "admin",
                             ADMIN_PASSWORD_KEY: pulumi.Output.secret(args.grafana_admin_password)},
                opts=in_namespace))
            for board in dashboard_config_maps(cfg):
                k8s.core.v1.ConfigMap(f"{name}-{board['metadata']['name']}", metadata=board["metadata"],
                                      data=board["data"], opts=in_namespace)
        stack: k8s.helm.v3.Release | None = None
        if cfg.prometheus is not None:
            chart_needs += args.storage_ready
            storage_class = cfg.prometheus.storage_class or args.default_storage_class
            stack = pinned_release(
                f"{name}-kube-prometheus-stack", chart=KUBE_PROMETHEUS_STACK_CHART,
                version=KUBE_PROMETHEUS_STACK_VERSION, repo=KUBE_PROMETHEUS_STACK_CHART_REPO, mirror=args.helm_repository,
                namespace=cfg.namespace, parent=self, depends_on=chart_needs,
                values=kube_prometheus_stack_values(cfg, args.kuberay_namespace, storage_class, args.node_selector))
        if cfg.dcgm_exporter:
            # Its ServiceMonitor needs the CRDs the monitoring stack installs.
            pinned_release(f"{name}-dcgm-exporter", chart=DCGM_EXPORTER_CHART, version=DCGM_EXPORTER_VERSION,
                           repo=DCGM_EXPORTER_CHART_REPO, mirror=args.helm_repository, namespace=cfg.namespace, parent=self,
                           depends_on=[namespace, *([stack] if stack else [])],
                           values=dcgm_exporter_values(service_monitor=stack is not None))
        log_shipping: dict[str, Any] | None = None
        if cfg.log_shipping is not None:
            if args.eks is None:
                # config.py refuses log shipping on existing clusters (no IRSA there).
                raise ValueError("log shipping to CloudWatch needs an EKS platform")
            log_shipping = self._log_destination(name, args.cluster_name, args.eks, cfg.log_shipping.retention_days)
        self.outputs = platform_outputs(cfg, log_shipping)
        self.register_outputs(self.outputs)

    def _log_destination(self, name: str, cluster_name: str, eks: EksAccess, retention_days: int) -> dict[str, Any]:
        """The log group (retention from config) and the role every team's Fluent Bit sidecar assumes."""
        child = pulumi.ResourceOptions(parent=self)
        group = aws.cloudwatch.LogGroup(f"{name}-ray-logs", name=log_group_name(cluster_name),
                                        retention_in_days=retention_days, opts=child)
        role = irsa_role(f"{name}-log-shipper-irsa", eks, TEAM_NAMESPACES, "*", child)
        policy = group.arn.apply(lambda arn: iam_policies.to_json(iam_policies.log_shipping_policy(arn)))
        aws.iam.RolePolicy(f"{name}-log-shipper-policy", role=role.id, policy=policy, opts=child)
        return {"destination": "cloudwatch", "logGroup": group.name, "region": eks.region, "roleArn": role.arn}
