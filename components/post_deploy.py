"""From a team stack's `jobs:` config to post-deploy hook resources (RayJob).

The job code is shipped by path (the `jobs/` package as a runtime_env py_module) and
identified by a hash of its files, never imported: a change to any job file changes
every job's submission id, which `pulumi preview` shows as a replacement.
"""
from __future__ import annotations

import hashlib
import json
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pulumi

from components.config import JobConfig, TeamStackConfig
from components.ray_job import RayJob, RayJobArgs

JOBS_DIR = Path(__file__).resolve().parents[1] / "jobs"


def jobs_code_hash(jobs_dir: Path = JOBS_DIR) -> str:
    """sha256 over every job source file's relative path and bytes."""
    digest = hashlib.sha256()
    for path in sorted(jobs_dir.rglob("*.py")):
        digest.update(path.relative_to(jobs_dir).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def serve_names(job: JobConfig) -> tuple[str, str]:
    """(Serve application name, route prefix) of a serve job; default to the job's name."""
    return str(job.settings.get("app_name", job.name)), str(job.settings.get("route_prefix", f"/{job.name}"))


def effective_settings(job: JobConfig) -> dict[str, Any]:
    """Settings handed to the job; serve jobs always carry the names the hook tracks them by."""
    settings = dict(job.settings)
    if job.kind == "serve":
        settings["app_name"], settings["route_prefix"] = serve_names(job)
    return settings


def entrypoint(job: JobConfig) -> str:
    return f"python -m jobs.{job.kind} --config-json {shlex.quote(json.dumps(effective_settings(job), sort_keys=True))}"


def cluster_url(template: str, cluster: str, namespace: str) -> str:
    return template.format(cluster=cluster, namespace=namespace)


def ray_job_args(job: JobConfig, *, dashboard_url: pulumi.Input[str], serve_endpoint_base: str | None,
                 auth_token: pulumi.Input[str] | None, code_hash: str, team: str,
                 jobs_dir: Path = JOBS_DIR) -> RayJobArgs:
    app_name, route_prefix = serve_names(job) if job.kind == "serve" else (None, None)
    return RayJobArgs(
        job_name=job.name,
        kind=job.kind,
        entrypoint=entrypoint(job),
        runtime_env={**job.runtime_env, "py_modules": [str(jobs_dir)]},
        code_hash=code_hash,
        dashboard_url=dashboard_url,
        auth_token=auth_token,
        entrypoint_num_cpus=job.resources.cpus,
        entrypoint_num_gpus=job.resources.gpus,
        entrypoint_memory=job.resources.memory,
        metadata={"ray-platform/team": team, "ray-platform/cluster": job.cluster},
        wait=job.wait,
        timeout_seconds=job.timeout_seconds,
        serve_app_name=app_name,
        serve_route_prefix=route_prefix,
        serve_endpoint_base=serve_endpoint_base if job.kind == "serve" else None,
    )


def declare_jobs(cfg: TeamStackConfig, depends_on: Mapping[str, list[pulumi.Resource]],
                 parent: pulumi.Resource | None = None) -> dict[str, RayJob]:
    """One RayJob per configured job, ordered by dependsOn (and after its RayCluster)."""
    if not cfg.jobs or cfg.dashboard is None:
        return {}
    code_hash = jobs_code_hash()
    token = pulumi.Output.secret(cfg.dashboard_token) if cfg.dashboard_token else None
    created: dict[str, RayJob] = {}
    for job in cfg.jobs:
        namespace = cfg.team.namespace
        args = ray_job_args(
            job, dashboard_url=cluster_url(cfg.dashboard.url, job.cluster, namespace),
            serve_endpoint_base=cluster_url(cfg.dashboard.serve_url, job.cluster, namespace),
            auth_token=token, code_hash=code_hash, team=cfg.team.name)
        created[job.name] = RayJob(
            f"{cfg.team.name}-job-{job.name}", args,
            opts=pulumi.ResourceOptions(
                parent=parent,
                depends_on=[*depends_on.get(job.cluster, []), *(created[d] for d in job.depends_on)]))
    return created
