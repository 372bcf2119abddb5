"""The Kubernetes objects of one team's namespace: labels, quota, default limits, RBAC, ingress policy.

The team's groups may run Ray (RayClusters, RayJobs, RayServices) and read what it produces
(pods, logs, services, events) in their namespace and nowhere else; they cannot touch the
quota, the limits or the policy that bound them. No Pulumi here: components/team/team.py
declares these bodies, and tests read exactly what it declares.
"""
from __future__ import annotations

from typing import Any

from components.config.model import TeamConfig
from components.constants import (
    GPU_RESOURCE, RAY_CLIENT_PORT, RAY_CLUSTER_LABEL, RAY_DASHBOARD_PORT, RAY_GROUP, RAY_METRICS_PORT,
    RAY_NODE_TYPE_LABEL, RAY_SERVE_PORT,
)
from components.specs.raycluster import AUTOSCALER_METRICS_PORT, DASHBOARD_METRICS_PORT, common_labels

RAY_RESOURCES = ("rayclusters", "rayjobs", "rayservices")
MANAGE = ("get", "list", "watch", "create", "update", "patch", "delete")
READ = ("get", "list", "watch")
NAMESPACE_NAME_LABEL = "kubernetes.io/metadata.name"


def namespace_labels(team: TeamConfig) -> dict[str, str]:
    return {
        **common_labels(team.name),
        # Baseline is enforced: KubeRay injects containers (init, autoscaler) whose security
        # context this platform does not fully control. Restricted is reported so gaps show.
        "pod-security.kubernetes.io/enforce": "baseline",
        "pod-security.kubernetes.io/warn": "restricted",
        "pod-security.kubernetes.io/audit": "restricted",
    }


def quota_hard(team: TeamConfig) -> dict[str, str]:
    quota = team.quota
    # Ray containers set requests == limits, so one number bounds both. Extended resources
    # such as GPUs cannot be overcommitted and Kubernetes enforces them only under the
    # `requests.` prefix: that single entry caps the GPUs the namespace can hold.
    return {
        "requests.cpu": quota.cpu,
        "limits.cpu": quota.cpu,
        "requests.memory": quota.memory,
        "limits.memory": quota.memory,
        f"requests.{GPU_RESOURCE}": str(quota.gpus),
        "pods": str(quota.pods),
    }


def limit_range_spec(team: TeamConfig) -> dict[str, Any]:
    lr = team.limit_range
    defaults = {"cpu": lr.default_cpu, "memory": lr.default_memory}
    # Defaults matter because the quota covers limits: a container KubeRay injects without
    # resources would otherwise be refused by the quota.
    return {"limits": [{
        "type": "Container",
        "default": dict(defaults),
        "defaultRequest": dict(defaults),
        "max": {"cpu": lr.max_cpu, "memory": lr.max_memory},
    }]}


def role_rules() -> list[dict[str, Any]]:
    return [
        {"apiGroups": [RAY_GROUP], "resources": list(RAY_RESOURCES), "verbs": list(MANAGE)},
        {"apiGroups": [""], "resources": ["pods", "services", "events"], "verbs": list(READ)},
        {"apiGroups": [""], "resources": ["pods/log"], "verbs": ["get"]},
        # The dashboard is ClusterIP-only by default: `kubectl port-forward` is how people reach it.
        {"apiGroups": [""], "resources": ["pods/portforward"], "verbs": ["create"]},
    ]


def role_binding_subjects(team: TeamConfig) -> list[dict[str, str]]:
    return [{"kind": "Group", "name": group, "apiGroup": "rbac.authorization.k8s.io"} for group in team.groups]


def _tcp(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": port} for port in ports]


def network_policy_spec(kuberay_namespace: Any, monitoring_namespace: Any = None) -> dict[str, Any]:
    """Ingress to every pod of the namespace: its own pods, the KubeRay operator on the dashboard,
    and, when the team is monitored, the platform's Prometheus on the metrics ports only.

    The namespaces are platform stack outputs: strings, or Pulumi outputs the engine resolves.
    """
    ingress: list[dict[str, Any]] = [
        # Ray nodes talk to each other on many ports (GCS, raylets, object manager, workers).
        {"from": [{"podSelector": {}}]},
        # The operator reads job and Serve status through the dashboard API.
        {"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: kuberay_namespace}}}],
         "ports": _tcp(RAY_DASHBOARD_PORT)},
    ]
    if monitoring_namespace is not None:
        ingress.append({"from": [{"namespaceSelector": {"matchLabels": {NAMESPACE_NAME_LABEL: monitoring_namespace}}}],
                        "ports": _tcp(RAY_METRICS_PORT, AUTOSCALER_METRICS_PORT, DASHBOARD_METRICS_PORT)})
    return {"podSelector": {}, "policyTypes": ["Ingress"], "ingress": ingress}


def load_balancer_policy_spec(cluster: str) -> dict[str, Any]:
    """Traffic through an internal load balancer comes from VPC addresses, not pods: admit it to
    the head's client-facing ports only (the load balancer itself is not reachable from outside)."""
    return {
        "podSelector": {"matchLabels": {RAY_CLUSTER_LABEL: cluster, RAY_NODE_TYPE_LABEL: "head"}},
        "policyTypes": ["Ingress"],
        "ingress": [{"ports": _tcp(RAY_DASHBOARD_PORT, RAY_CLIENT_PORT, RAY_SERVE_PORT)}],
    }
