"""A `submission: kuberay` serve job: its RayService, the Secrets and NetworkPolicy it needs, its waiter.

The object, and why it looks as it does, is components/specs/rayservice.py.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import JobConfig, KubeRayServiceConfig, RayClusterConfig
from components.hooks.kuberay_wait import wait_on
from components.specs.raycluster import common_labels, head_service_name, serve_service_name
from components.specs.rayservice import internal_lb_policy, ray_service
from components.team.access import ClusterAccess
from components.team.secrets import cluster_secrets


@dataclass(frozen=True)
class RayServiceArgs:
    job: JobConfig
    cluster: RayClusterConfig
    namespace: str
    team: str
    # The settings handed to the app (clients.ray_jobs.effective_settings: with app_name, route_prefix).
    settings: Mapping[str, Any]
    access: ClusterAccess
    network_policy: bool
    # Pulumi secrets from the team stack's config, when the cluster config asks for them.
    redis_password: pulumi.Input[str] | None = None
    auth_token: pulumi.Input[str] | None = None
    # Created before the RayService: the jobs it depends on (e.g. the training run).
    depends_on: tuple[pulumi.Resource, ...] = ()


class RayService(pulumi.ComponentResource):
    """The RayService of a kuberay serve job, its Secrets and NetworkPolicy, and optionally its waiter."""

    custom_resource: k8s.apiextensions.CustomResource
    head_service: str
    serve_service: str
    done: pulumi.Resource
    status: pulumi.Output[str] | None

    def __init__(self, name: str, args: RayServiceArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:RayService", name, None, opts)
        cluster, job = args.cluster, args.job
        if not isinstance(job.kuberay, KubeRayServiceConfig):
            raise ValueError(f"job {job.name!r} is not a kuberay serve job")
        manifest = ray_service(job, cluster, args.namespace, args.team, args.settings)
        labels = common_labels(args.team)
        child = pulumi.ResourceOptions(parent=self, depends_on=list(args.access.prerequisites))

        needs: list[pulumi.Resource] = [
            *args.access.prerequisites, *args.depends_on,
            *cluster_secrets(name, cluster, args.namespace, args.team, args.redis_password, args.auth_token, child),
        ]
        policy = internal_lb_policy(cluster, job.kuberay)
        if args.network_policy and policy is not None:
            k8s.networking.v1.NetworkPolicy(
                f"{name}-netpol-lb", metadata={"name": f"{cluster.name}-internal-lb", "namespace": args.namespace,
                                               "labels": labels},
                spec=policy, opts=child)
        # With upgradeStrategy None, KubeRay would ignore a changed cluster spec: replace instead.
        in_place = job.kuberay.upgrade_strategy == "None"
        self.custom_resource = k8s.apiextensions.CustomResource(
            name, api_version=manifest["apiVersion"], kind=manifest["kind"], metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=needs,
                                        replace_on_changes=["spec.rayClusterConfig"] if in_place else None,
                                        delete_before_replace=in_place))
        self.head_service = head_service_name(cluster.name)
        self.serve_service = serve_service_name(cluster.name)
        self.done, self.status = wait_on(name, self.custom_resource, manifest, job.wait, job.timeout_seconds,
                                         args.access.kubeconfig, args.access.context, parent=self)
        self.register_outputs({"name": cluster.name, "headService": self.head_service})
