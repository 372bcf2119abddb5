"""One team RayCluster: the `ray.io/v1` custom resource from the pure spec builder, plus the
Kubernetes objects it refers to (the Redis password and auth token Secrets, the GCS volume).

The RayCluster CRD is installed by the platform stack's KubeRay operator component. A team
stack cannot depend on a resource of another stack, so the ordering "CRDs before
RayClusters" holds by construction (a team stack is deployed onto a running platform; the
StackReference fails if the platform stack has never been deployed) and, inside the team
stack, the RayCluster waits for what its pods need: the namespace, its ResourceQuota and
LimitRange (`RayClusterArgs.prerequisites`), and its own Secrets and claim.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import RayClusterConfig
from components.hooks.kuberay_wait import ACCEPTED, wait_on
from components.specs.ray_disruption import worker_group_pdb
from components.specs.raycluster import (
    common_labels, gcs_volume_claim, head_service_name, ray_cluster, serve_service_name,
)
from components.team.access import ClusterAccess
from components.team.secrets import cluster_secrets

# How long the operator gets to take a RayCluster's spec (it does so within seconds when it runs).
ACCEPT_TIMEOUT_S = 300


@dataclass(frozen=True)
class RayClusterArgs:
    config: RayClusterConfig
    namespace: str
    team: str
    # The team's Kubernetes access; its prerequisites are created before any object here (given
    # to every child: a component's own depends_on does not hold back the resources inside it).
    access: ClusterAccess
    # Pulumi secrets from the team stack's config; required when the config asks for them.
    redis_password: pulumi.Input[str] | None = None
    auth_token: pulumi.Input[str] | None = None


class RayCluster(pulumi.ComponentResource):
    custom_resource: k8s.apiextensions.CustomResource
    head_service: str
    serve_service: str

    def __init__(self, name: str, args: RayClusterArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:RayCluster", name, None, opts)
        cfg = args.config
        manifest = ray_cluster(cfg, args.namespace, args.team)
        prerequisites = args.access.prerequisites
        child = pulumi.ResourceOptions(parent=self, depends_on=list(prerequisites))

        needs: list[pulumi.Resource] = [
            *prerequisites,
            *cluster_secrets(name, cfg, args.namespace, args.team, args.redis_password, args.auth_token, child),
        ]
        claim = gcs_volume_claim(cfg, args.namespace, args.team)
        if claim is not None:
            needs.append(k8s.core.v1.PersistentVolumeClaim(
                f"{name}-gcs", metadata=claim["metadata"], spec=claim["spec"], opts=child))

        self.custom_resource = k8s.apiextensions.CustomResource(
            name,
            api_version=manifest["apiVersion"],
            kind=manifest["kind"],
            metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=needs),
        )
        for group in cfg.worker_groups:
            pdb = worker_group_pdb(cfg.name, group.name, args.namespace, common_labels(args.team))
            k8s.policy.v1.PodDisruptionBudget(f"{name}-{group.name}-pdb", metadata=pdb["metadata"], spec=pdb["spec"],
                                              opts=child)
        # The operator refuses a spec it cannot run with only a Warning event and no status: wait
        # until it has taken this one, so that `pulumi up` fails with its reason instead. Jobs on the
        # cluster depend on this component, so on this wait too.
        wait_on(name, self.custom_resource, manifest, ACCEPTED, ACCEPT_TIMEOUT_S, args.access.kubeconfig,
                args.access.context, parent=self)
        self.head_service = head_service_name(cfg.name)
        self.serve_service = serve_service_name(cfg.name)
        self.register_outputs({"name": cfg.name, "headService": self.head_service})
