"""What a team brings to its Ray pods: its images (with their pull secrets) and the secret
environment its jobs read, applied to the pod templates components/specs/raycluster.py builds.

Secrets reach the Ray containers as Kubernetes Secret references (`valueFrom.secretKeyRef`): the
raylet's environment is every job driver's and worker's, so a job reads them as plain environment
variables while no value is in a job's runtime env, its Ray metadata or the hook's state. Entries of
the team stack's `secrets` (Pulumi secrets) live in one Secret of the team's namespace,
JOB_SECRETS; the team layer creates it before any Ray pod.
"""
from __future__ import annotations

from typing import Any

from components.config.work import ClusterRuntime, SecretEnv

JOB_SECRETS = "ray-platform-job-secrets"


def secret_env(env: tuple[SecretEnv, ...]) -> list[dict[str, Any]]:
    return [{"name": e.var, "valueFrom": {"secretKeyRef": {"name": e.k8s_secret or JOB_SECRETS,
                                                           "key": e.k8s_key or e.secret}}} for e in env]


def apply_team_runtime(template: dict[str, Any], runtime: ClusterRuntime, group: str | None, container: str) -> None:
    """Set the team's image, pull secrets and secret environment on the Ray container `container`
    of a pod template: the head's (`group` None) or worker group `group`'s."""
    (ray,) = [c for c in template["spec"]["containers"] if c["name"] == container]
    image = runtime.image_of(group)
    if image is not None:
        ray["image"] = image.name
        if image.pull_secrets:
            template["spec"]["imagePullSecrets"] = [{"name": s} for s in image.pull_secrets]
    if runtime.env:
        ray["env"] = [*ray.get("env", []), *secret_env(runtime.env)]
