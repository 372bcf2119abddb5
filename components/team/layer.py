"""Wiring of a team stack: the platform stack's outputs, the team's namespace, its RayClusters,
and the jobs that run on them after deploy.

Everything Kubernetes goes through a provider built from the platform stack's kubeconfig
output, so a team stack can only reach the cluster its platform stack names; the same
kubeconfig (a secret) lets `pulumi up` tunnel to dashboards and wait for KubeRay resources.
A cluster owned by a RayService (a `submission: kuberay` serve job) is declared by that
RayService instead of as a RayCluster.
"""
from __future__ import annotations

from collections.abc import Collection
from typing import Any

import pulumi
import pulumi_kubernetes as k8s
from pulumi.stack_reference import StackReferenceOutputDetails

from components.config.jobs import rayservice_owners
from components.config.model import LB_SERVICE_TYPE, RayObservability, TeamStackConfig
from components.config.queue_model import TeamQueueConfig, local_queue_name
from components.config.queues import job_priority_classes
from components.constants import RAY_DASHBOARD_PORT, RAY_SERVE_PORT
from components.team.access import ClusterAccess
from components.team.post_deploy import cluster_url, declare_jobs
from components.team.queue import TeamQueue, TeamQueueArgs
from components.team.ray_cluster import RayCluster, RayClusterArgs
from components.specs.gpu_nodes import gpu_taint
from components.specs.raycluster import common_labels, head_service_name, observability_config_map, serve_service_name
from components.specs.team_runtime import JOB_SECRETS
from components.team.team import Team, TeamArgs
from components.versions import KUBERAY_VERSION


class PlatformMismatch(Exception):
    """The deployed platform stack does not offer what this team stack was built against."""


def check_platform(platform: str, outputs: dict[str, Any], observability: RayObservability = RayObservability(),
                   queue: TeamQueueConfig | None = None, job_classes: Collection[str] = ()
                   ) -> dict[str, Any]:
    """Fail the update when the platform stack was deployed from a different contract.

    The config check (components/config/team.py) compares against the platform's stack file;
    this compares against what is actually deployed: the RayCluster schema, the GPU
    taint the tolerations are written for, the observability pieces the team opted into, and
    Kueue with the flavors and priority class the team's queue names.
    """
    problems = []
    queues = outputs.get("queues")
    if queue is not None and not queues:
        problems.append("the team declares a queue (ray-platform:queue) but the platform runs no Kueue")
    elif queue is not None:
        missing = [f for f in queue.gpus if f not in queues.get("flavors", [])]
        if missing:
            problems.append(f"the team's queue has GPUs in flavors the platform does not define: {', '.join(missing)}")
        for name in sorted({queue.priority_class, *job_classes} - set(queues.get("priorityClasses", {}))):
            problems.append(f"the priority class {name!r} is not one of the platform's (the team's queue or a job names it)")
    offered = outputs.get("observability") or {}
    if observability.metrics and not offered.get("prometheus"):
        problems.append("the team opted into metrics (observability.metrics) but the platform runs no Prometheus")
    if observability.log_shipping and not offered.get("logShipping"):
        problems.append("the team opted into log shipping (observability.logShipping) but the platform ships no logs")
    if outputs.get("kuberayVersion") != KUBERAY_VERSION:
        problems.append(f"KubeRay {outputs.get('kuberayVersion')} is deployed but these RayClusters are written "
                        f"for {KUBERAY_VERSION}; deploy the platform stack first")
    expected_taint = gpu_taint()
    if outputs.get("gpuTaint") != expected_taint:
        problems.append(f"GPU nodes carry the taint {outputs.get('gpuTaint')}, the GPU groups tolerate {expected_taint}")
    if problems:
        raise PlatformMismatch(f"platform stack {platform}: " + "; ".join(problems))
    return {"stack": platform, "clusterName": outputs.get("clusterName"), "kuberayVersion": KUBERAY_VERSION}


def platform_output(platform: pulumi.StackReference, stack: str, name: str,
                    required: bool = False) -> pulumi.Output[Any]:
    """Output `name` of the platform `stack`, secret when the platform stack has it as a secret.

    Not `StackReference.get_output`: each call of it lifts every output of the referenced
    stack into nested Outputs, so a team stack's evaluation grew with the platform's size
    (on a 50-pool platform, ~0.5 s per team stack; `make bench`). `get_output_details`
    reads the one output and says whether it is a secret.
    """
    def value(details: StackReferenceOutputDetails) -> Any:
        if details.secret_value is not None:
            return pulumi.Output.secret(details.secret_value)
        if details.value is None and required:
            raise PlatformMismatch(f"platform stack {stack}: it has no output {name!r}; "
                                   "deploy the platform stack first")
        return details.value

    # Through the reference's URN, so that what reads the output depends on the StackReference.
    return pulumi.Output.all(platform.urn, platform.get_output_details(name)).apply(lambda v: value(v[1]))


def _service_urls(cfg: TeamStackConfig, name: str) -> dict[str, str]:
    """Where a cluster is reached: its Services (named after it, whether a RayCluster or a RayService
    made them) and, for people, the dashboard and Serve URLs (by default those Services)."""
    namespace = cfg.team.namespace
    head = f"{head_service_name(name)}.{namespace}.svc"
    return {
        "name": name,
        "headService": head,
        "dashboardService": f"{head}:{RAY_DASHBOARD_PORT}",
        "serveService": f"{serve_service_name(name)}.{namespace}.svc:{RAY_SERVE_PORT}",
        "dashboardUrl": cluster_url(cfg.dashboard.url, name, namespace),
        "serveUrl": cluster_url(cfg.dashboard.serve_url, name, namespace),
    }


def build_team(cfg: TeamStackConfig) -> dict[str, Any]:
    """Declare every resource of a team stack; returns its stack outputs."""
    team_name = cfg.team.name
    platform = pulumi.StackReference(cfg.platform_stack)

    def read(name: str, required: bool = False) -> pulumi.Output[Any]:
        return platform_output(platform, cfg.platform_stack, name, required)

    observability, kube_context = read("observability"), read("kubeContext")
    contract = pulumi.Output.all(
        kuberayVersion=read("kuberayVersion"), gpuTaint=read("gpuTaint"), clusterName=read("clusterName"),
        observability=observability, queues=read("queues"),
    ).apply(lambda outputs: check_platform(
        cfg.platform_stack, outputs, cfg.observability, cfg.queue, [name for _, name in job_priority_classes(cfg.jobs)]))
    # Through the contract check: no Kubernetes object is touched on a mismatched platform.
    kubeconfig = pulumi.Output.all(contract, read("kubeconfig", required=True)).apply(lambda v: v[1])
    provider = k8s.Provider(
        f"{team_name}-k8s",
        kubeconfig=kubeconfig,
        context=kube_context,
        # A team owns only its namespace; the provider must never pick a default one.
        namespace=cfg.team.namespace,
    )
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
    owned = rayservice_owners(cfg.jobs)
    # A RayService's pods change clusters on upgrade; it declares its own load balancer policy.
    load_balanced = tuple(c.name for c in cfg.ray_clusters
                          if c.head.service_type == LB_SERVICE_TYPE and c.name not in owned)
    team = Team(team_name, TeamArgs(
        config=cfg.team, kuberay_namespace=read("kuberayNamespace", required=True),
        load_balanced_clusters=load_balanced,
        monitoring_namespace=observability.apply(lambda o: (o or {}).get("namespace")) if cfg.observability.metrics
        else None),
        opts=k8s_opts)
    # Pods created before the quota and limit defaults exist would escape both; pods that read
    # the observability ConfigMap would not start before it exists.
    prerequisites: tuple[pulumi.Resource, ...] = (team.namespace, team.quota, team.limit_range)
    if any(e.secret for j in cfg.jobs for e in j.work.env):
        # The team's `secrets` the Ray pods read by reference (components/specs/team_runtime.py).
        prerequisites += (k8s.core.v1.Secret(
            f"{team_name}-job-secrets", metadata={"name": JOB_SECRETS, "namespace": cfg.team.namespace,
                                                  "labels": common_labels(team_name)},
            type="Opaque", string_data={k: pulumi.Output.secret(v) for k, v in cfg.secrets.items()},
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[team.namespace])),)
    if cfg.observability.metrics or cfg.observability.log_shipping:
        # Its metadata does not depend on the platform; its data is the platform's output.
        metadata = observability_config_map(cfg.team.namespace, team_name, cfg.observability, {})["metadata"]
        prerequisites += (k8s.core.v1.ConfigMap(
            f"{team_name}-observability", metadata=metadata,
            # Through the contract check, like the provider: a missing piece fails the update first.
            data=pulumi.Output.all(contract, observability).apply(
                lambda v: observability_config_map(cfg.team.namespace, team_name, cfg.observability, v[1])["data"]),
            opts=pulumi.ResourceOptions(providers={"kubernetes": provider}, depends_on=[team.namespace])),)
    if cfg.queue is not None:
        # Through the contract check: a platform without Kueue fails the update before this is created.
        queue = TeamQueue(f"{team_name}-queue", TeamQueueArgs(
            team=cfg.team, queue=cfg.queue, local_queue=local_queue_name(team_name),
            platform_queues=pulumi.Output.all(contract, read("queues")).apply(lambda v: v[1]),
            prerequisites=(team.namespace,)), opts=k8s_opts)
        # RayJobs and RayClusters name the LocalQueue; created before it they would wait unadmitted.
        prerequisites += (queue.local_queue,)
    access = ClusterAccess(kubeconfig=kubeconfig, context=kube_context, k8s_opts=k8s_opts,
                           prerequisites=prerequisites)
    clusters = {
        c.name: RayCluster(
            f"{team_name}-{c.name}",
            RayClusterArgs(config=c, namespace=cfg.team.namespace, team=team_name, access=access,
                           redis_password=cfg.redis_password, auth_token=cfg.dashboard_token),
            opts=k8s_opts,
        )
        for c in cfg.ray_clusters if c.name not in owned
    }
    # Per job an SDK hook or a KubeRay RayJob/RayService (components/team/post_deploy.py).
    jobs = declare_jobs(cfg, clusters, access)
    return {
        "platform": contract,
        "namespace": cfg.team.namespace,
        "rayClusters": [_service_urls(cfg, c.name) for c in cfg.ray_clusters],
        **({"jobs": jobs} if jobs else {}),
    }
