"""From a team stack's `jobs:` config to the resources that run them after deploy.

Per job, `submission` picks how it reaches the cluster; the job code, its entrypoint and its
settings are the same either way:

* `sdk` (default): a post-deploy hook (components/hooks/ray_job.py) submits through the Ray Job SDK,
  to the dashboard URL or through an API-server tunnel (`dashboard.access`). The code is shipped
  by path (the `jobs/` package as a runtime_env py_module) and identified by a hash of its files,
  never imported: a change to any job file changes every job's submission id, which
  `pulumi preview` shows as a replacement.
* `kuberay`: a KubeRay custom resource, a RayJob (components/team/ray_job_cr.py) or for a serve job a
  RayService (components/team/ray_service.py), with the code from `kuberay.codeUri`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pulumi

# The pure half (config -> the hook's args) lives with RayJobArgs, so local mode and the benchmarks
# build the same args without Pulumi.
from components.clients.ray_jobs import (
    effective_settings, endpoint_for, entrypoint, ray_job_args, serve_names,
)
from components.config.model import KubeRayJobConfig, KubeRayServiceConfig, TeamStackConfig
from components.hooks.ray_job import RayJob
from components.team.access import ClusterAccess
from components.team.ray_job_cr import RayJobCr, RayJobCrArgs
from components.team.ray_service import RayService, RayServiceArgs


def cluster_url(template: str, cluster: str, namespace: str) -> str:
    return template.format(cluster=cluster, namespace=namespace)


def declare_jobs(cfg: TeamStackConfig, clusters_declared: Mapping[str, pulumi.Resource],
                 access: ClusterAccess) -> dict[str, dict[str, Any]]:
    """One resource per configured job, in order: each after its cluster and the jobs it depends on.

    `clusters_declared` maps a RayCluster's name to its resource, which a job on it waits for;
    clusters owned by a RayService are not in it. Returns the stack's `jobs` output, by job name.
    """
    outputs: dict[str, dict[str, Any]] = {}
    if not cfg.jobs:
        return outputs
    namespace, team = cfg.team.namespace, cfg.team.name
    clusters = {c.name: c for c in cfg.ray_clusters}
    # RayJob keeps it as a secret in the state.
    token = cfg.dashboard_token or None
    done: dict[str, pulumi.Resource] = {}
    for job in cfg.jobs:
        cluster = clusters_declared.get(job.cluster)
        after = (*([cluster] if cluster is not None else []), *(done[d] for d in job.depends_on))
        serve_base = cluster_url(cfg.dashboard.serve_url, job.cluster, namespace)
        route = serve_names(job)[1] if job.kind == "serve" else None
        if isinstance(job.kuberay, KubeRayServiceConfig):
            service = RayService(
                f"{team}-{job.cluster}", RayServiceArgs(
                    job=job, cluster=clusters[job.cluster], namespace=namespace, team=team,
                    settings=effective_settings(job), access=access, network_policy=cfg.team.network_policy,
                    redis_password=cfg.redis_password, auth_token=cfg.dashboard_token, depends_on=after),
                opts=access.k8s_opts)
            done[job.name] = service.done
            outputs[job.name] = {
                "submission": "kuberay", "resource": f"RayService/{namespace}/{job.cluster}",
                "status": service.status, "endpoint": endpoint_for(serve_base, route)}
        elif isinstance(job.kuberay, KubeRayJobConfig):
            cr = RayJobCr(f"{team}-rayjob-{job.name}", RayJobCrArgs(
                job=job, cluster=clusters[job.cluster], namespace=namespace, team=team, entrypoint=entrypoint(job),
                access=access, depends_on=after), opts=access.k8s_opts)
            done[job.name] = cr.done
            outputs[job.name] = {"submission": "kuberay", "resource": f"RayJob/{namespace}/{cr.cr_name}",
                                          "status": cr.status}
        else:
            hook = RayJob(
                f"{team}-job-{job.name}", ray_job_args(
                    job, dashboard_url=cluster_url(cfg.dashboard.url, job.cluster, namespace),
                    serve_endpoint_base=serve_base, auth_token=token, team=team,
                    dashboard_access=cfg.dashboard.access, kubeconfig=access.kubeconfig,
                    kube_context=access.context, namespace=namespace),
                opts=pulumi.ResourceOptions(depends_on=list(after)))
            done[job.name] = hook
            outputs[job.name] = {
                "submission": "sdk", "submissionId": hook.submission_id, "status": hook.status,
                "jobUrl": hook.job_url, "endpoint": hook.endpoint, "result": hook.result}
    return outputs
