"""One ML team's slice of the cluster: its namespace, quota, default limits, RBAC and ingress policy.

The object bodies come from components/specs/namespace.py; this declares them in order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import TeamConfig
from components.specs.namespace import (
    limit_range_spec, load_balancer_policy_spec, namespace_labels, network_policy_spec, quota_hard,
    role_binding_subjects, role_rules,
)
from components.specs.raycluster import common_labels


@dataclass(frozen=True)
class TeamArgs:
    config: TeamConfig
    # Where the platform runs the KubeRay operator (a platform stack output).
    kuberay_namespace: pulumi.Input[str]
    # RayClusters whose head Service is an internal load balancer: their heads take traffic
    # from outside the pod network.
    load_balanced_clusters: tuple[str, ...] = ()
    # The platform's monitoring namespace when the team lets its Prometheus scrape the Ray pods.
    monitoring_namespace: pulumi.Input[str] | None = None


class Team(pulumi.ComponentResource):
    namespace: k8s.core.v1.Namespace
    quota: k8s.core.v1.ResourceQuota
    limit_range: k8s.core.v1.LimitRange

    def __init__(self, name: str, args: TeamArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:Team", name, None, opts)
        team = args.config
        labels = common_labels(team.name)
        child = pulumi.ResourceOptions(parent=self)
        self.namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata={"name": team.namespace, "labels": namespace_labels(team)}, opts=child)
        # Every namespaced object takes the namespace's name as an output, so it is created
        # after the namespace and deleted before it.
        namespace = self.namespace.metadata.apply(lambda m: m.name)

        def meta(object_name: str) -> dict[str, Any]:
            return {"name": object_name, "namespace": namespace, "labels": labels}

        self.quota = k8s.core.v1.ResourceQuota(
            f"{name}-quota", metadata=meta(f"{team.name}-quota"), spec={"hard": quota_hard(team)}, opts=child)
        self.limit_range = k8s.core.v1.LimitRange(
            f"{name}-limits", metadata=meta(f"{team.name}-limits"), spec=limit_range_spec(team), opts=child)
        role = k8s.rbac.v1.Role(f"{name}-role", metadata=meta(f"{team.name}-ray-users"), rules=role_rules(),
                                opts=child)
        k8s.rbac.v1.RoleBinding(
            f"{name}-rolebinding", metadata=meta(f"{team.name}-ray-users"),
            role_ref={"apiGroup": "rbac.authorization.k8s.io", "kind": "Role",
                      "name": role.metadata.apply(lambda m: m.name)},
            subjects=role_binding_subjects(team), opts=child)
        if team.network_policy:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol", metadata=meta(f"{team.name}-ray-ingress"),
                spec=network_policy_spec(args.kuberay_namespace, args.monitoring_namespace), opts=child)
            for cluster in args.load_balanced_clusters:
                k8s.networking.v1.NetworkPolicy(
                    f"{name}-netpol-{cluster}-lb", metadata=meta(f"{cluster}-internal-lb"),
                    spec=load_balancer_policy_spec(cluster), opts=child)
        self.register_outputs({"namespace": namespace})
