"""The Secrets a team's Ray cluster spec refers to, declared as Pulumi secrets.

Shared by RayCluster and RayService (components/team/ray_cluster.py, ray_service.py), whose
cluster specs reference the same names.
"""
from __future__ import annotations

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import RayClusterConfig
from components.specs.raycluster import (
    AUTH_TOKEN_KEY, REDIS_PASSWORD_KEY, auth_secret_name, common_labels, redis_secret_name,
)


def cluster_secrets(name: str, cfg: RayClusterConfig, namespace: str, team: str,
                    redis_password: pulumi.Input[str] | None, auth_token: pulumi.Input[str] | None,
                    opts: pulumi.ResourceOptions) -> list[k8s.core.v1.Secret]:
    """The GCS Redis password and Ray auth token Secrets, as far as the cluster config asks for them."""
    wanted = []
    if cfg.gcs_fault_tolerance is not None and cfg.gcs_fault_tolerance.backend == "redis":
        wanted.append(("redis", redis_secret_name(cfg.name), REDIS_PASSWORD_KEY, redis_password))
    if cfg.auth:
        wanted.append(("auth", auth_secret_name(cfg.name), AUTH_TOKEN_KEY, auth_token))
    secrets = []
    for suffix, secret_name, key, value in wanted:
        if value is None:
            # config.py rejects this combination; reaching it is a programming error.
            raise ValueError(f"RayCluster {cfg.name}: {secret_name} needs a value")
        secrets.append(k8s.core.v1.Secret(
            f"{name}-{suffix}", metadata={"name": secret_name, "namespace": namespace, "labels": common_labels(team)},
            type="Opaque", string_data={key: pulumi.Output.secret(value)}, opts=opts))
    return secrets
