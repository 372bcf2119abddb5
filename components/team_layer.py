"""Wiring of a team stack: the platform stack's outputs, the team's namespace, its RayClusters.

Everything Kubernetes goes through a provider built from the platform stack's kubeconfig
output, so a team stack can only reach the cluster its platform stack names.
"""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config import TeamStackConfig
from components.constants import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, RAY_DASHBOARD_PORT, RAY_SERVE_PORT
from components.post_deploy import declare_jobs
from components.ray_cluster import RayCluster, RayClusterArgs
from components.team import Team, TeamArgs
from components.versions import KUBERAY_VERSION


class PlatformMismatch(Exception):
    """The deployed platform stack does not offer what this team stack was built against."""


def check_platform(platform: str, outputs: dict[str, Any]) -> dict[str, Any]:
    """Fail the update when the platform stack was deployed from a different contract.

    The config check (components/config.py) compares against the platform's stack file;
    this compares against what is actually deployed: the RayCluster schema and the GPU
    taint the tolerations are written for.
    """
    problems = []
    if outputs.get("kuberayVersion") != KUBERAY_VERSION:
        problems.append(f"KubeRay {outputs.get('kuberayVersion')} is deployed but these RayClusters are written "
                        f"for {KUBERAY_VERSION}; deploy the platform stack first")
    expected_taint = {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    if outputs.get("gpuTaint") != expected_taint:
        problems.append(f"GPU nodes carry the taint {outputs.get('gpuTaint')}, the GPU groups tolerate {expected_taint}")
    if problems:
        raise PlatformMismatch(f"platform stack {platform}: " + "; ".join(problems))
    return {"stack": platform, "clusterName": outputs.get("clusterName"), "kuberayVersion": KUBERAY_VERSION}


def _service_urls(cfg: TeamStackConfig, name: str, cluster: RayCluster) -> dict[str, str]:
    namespace = cfg.team.namespace
    dashboard = f"http://{cluster.head_service}.{namespace}.svc:{RAY_DASHBOARD_PORT}"
    serve = f"http://{cluster.serve_service}.{namespace}.svc:{RAY_SERVE_PORT}"
    if cfg.dashboard is not None:
        # Where the deployer reaches the cluster from (e.g. an internal ingress per cluster).
        dashboard = cfg.dashboard.url.format(cluster=name, namespace=namespace)
        serve = cfg.dashboard.serve_url.format(cluster=name, namespace=namespace)
    return {
        "name": name,
        "headService": f"{cluster.head_service}.{namespace}.svc",
        "dashboardService": f"{cluster.head_service}.{namespace}.svc:{RAY_DASHBOARD_PORT}",
        "serveService": f"{cluster.serve_service}.{namespace}.svc:{RAY_SERVE_PORT}",
        "dashboardUrl": dashboard,
        "serveUrl": serve,
    }


def add_job_hooks(cfg: TeamStackConfig, clusters: dict[str, RayCluster]) -> dict[str, Any]:
    """The post-deploy Ray Job SDK hooks over `cfg.jobs`, each after the RayCluster it runs on."""
    jobs = declare_jobs(cfg, depends_on={name: [cluster] for name, cluster in clusters.items()})
    if not jobs:
        return {}
    return {"jobs": {name: {"submissionId": job.submission_id, "status": job.status, "jobUrl": job.job_url,
                            "endpoint": job.endpoint, "result": job.result} for name, job in jobs.items()}}


def build_team(cfg: TeamStackConfig) -> dict[str, Any]:
    """Declare every resource of a team stack; returns its stack outputs."""
    team_name = cfg.team.name
    platform = pulumi.StackReference(cfg.platform_stack)
    contract = pulumi.Output.all(
        kuberayVersion=platform.get_output("kuberayVersion"), gpuTaint=platform.get_output("gpuTaint"),
        clusterName=platform.get_output("clusterName"),
    ).apply(lambda outputs: check_platform(cfg.platform_stack, outputs))
    provider = k8s.Provider(
        f"{team_name}-k8s",
        # Through the contract check: no Kubernetes object is touched on a mismatched platform.
        kubeconfig=pulumi.Output.all(contract, platform.require_output("kubeconfig")).apply(lambda v: v[1]),
        context=platform.get_output("kubeContext"),
        # A team owns only its namespace; the provider must never pick a default one.
        namespace=cfg.team.namespace,
    )
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
    load_balanced = tuple(c.name for c in cfg.ray_clusters if c.head.service_type == "LoadBalancer-internal")
    team = Team(team_name, TeamArgs(config=cfg.team, kuberay_namespace=platform.require_output("kuberayNamespace"),
                                    load_balanced_clusters=load_balanced), opts=k8s_opts)
    clusters = {
        c.name: RayCluster(
            f"{team_name}-{c.name}",
            RayClusterArgs(config=c, namespace=cfg.team.namespace, team=team_name,
                           redis_password=cfg.redis_password, auth_token=cfg.dashboard_token,
                           # Pods created before the quota and limit defaults exist would escape both.
                           prerequisites=(team.namespace, team.quota, team.limit_range)),
            opts=k8s_opts,
        )
        for c in cfg.ray_clusters
    }
    return {
        "platform": contract,
        "namespace": cfg.team.namespace,
        "rayClusters": [_service_urls(cfg, name, cluster) for name, cluster in clusters.items()],
        **add_job_hooks(cfg, clusters),
    }
