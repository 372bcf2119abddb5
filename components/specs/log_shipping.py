"""Ray log persistence: a Fluent Bit sidecar in every Ray pod ships /tmp/ray to CloudWatch Logs.

Pure builders (no Pulumi), used by the RayCluster spec builder and the team layer.

Why a sidecar and not a node DaemonSet: Ray writes its logs (raylet, GCS, dashboard, workers,
job drivers, Serve) under /tmp/ray inside the container, not to stdout, so a node agent could
only read them if every Ray pod put /tmp/ray on a hostPath volume, and the team namespaces
enforce the `baseline` Pod Security Standard, which forbids hostPath. KubeRay's documented
pattern is this one: an emptyDir shared at /tmp/ray by the Ray container and a Fluent Bit
sidecar. The sidecar is a native sidecar (an init container with restartPolicy Always), so it
starts before Ray, is stopped only after the Ray container has exited, and flushes what is
left (`Grace`) on its way out: a job's last lines reach CloudWatch even when the head dies.

Credentials: the sidecar reads a projected ServiceAccount token with the STS audience and
assumes the platform's log-shipping role (IRSA) with it. The token is mounted explicitly
rather than injected by the EKS webhook through a ServiceAccount annotation, so the pods keep
the ServiceAccounts KubeRay gives them and workers keep automountServiceAccountToken: false.
"""
from __future__ import annotations

from typing import Any

from components.config.fit import LOG_SHIPPER_CONTAINER, ContainerSize
from components.versions import FLUENT_BIT_IMAGE

CONTAINER = LOG_SHIPPER_CONTAINER
RAY_LOGS_VOLUME = "ray-logs"
RAY_TEMP_DIR = "/tmp/ray"
STATE_VOLUME = "fluent-bit-state"
STATE_DIR = "/fluent-bit/state"
CONFIG_VOLUME = "fluent-bit-config"
CONFIG_DIR = "/fluent-bit/etc/ray-platform"
TOKEN_VOLUME = "aws-iam-token"
TOKEN_DIR = "/var/run/secrets/eks.amazonaws.com/serviceaccount"
STS_AUDIENCE = "sts.amazonaws.com"
# Keys of the team's observability ConfigMap (components/specs/raycluster.py) the sidecar reads.
CONFIG_KEY = "fluent-bit.conf"
REGION_KEY = "AWS_REGION"
ROLE_ARN_KEY = "AWS_ROLE_ARN"
# Ray's own log files (session_latest follows a restarted Ray into its new session directory);
# Serve writes per-replica logs one level down.
LOG_GLOBS = tuple(f"{RAY_TEMP_DIR}/session_latest/logs/{pattern}"
                  for pattern in ("*.log", "*.out", "*.err", "serve/*.log"))


def fluent_bit_config(log_group: str) -> str:
    """Tail Ray's log files into one CloudWatch stream per pod and file.

    Region and pod identity come from the environment (`${...}` is Fluent Bit's own
    interpolation), so one ConfigMap serves every pod of the namespace.
    """
    return "\n".join([
        "[SERVICE]",
        "    Flush            5",
        # On SIGTERM, keep flushing for up to 25 s (within the pod's 30 s grace period).
        "    Grace            25",
        "    Log_Level        warn",
        "",
        "[INPUT]",
        "    Name             tail",
        "    Tag              ray.*",
        f"    Path             {','.join(LOG_GLOBS)}",
        "    Path_Key         file",
        # Offsets survive a sidecar restart, so nothing is shipped twice or skipped.
        f"    DB               {STATE_DIR}/tail.db",
        # Files written before the sidecar got to them (Ray's start-up) are shipped whole.
        "    Read_from_Head   On",
        "    Refresh_Interval 5",
        # Back-pressure instead of growing past the container's memory limit.
        "    Mem_Buf_Limit    32MB",
        "    Skip_Long_Lines  On",
        "",
        "[OUTPUT]",
        "    Name              cloudwatch_logs",
        "    Match             ray.*",
        "    region            ${AWS_REGION}",
        f"    log_group_name    {log_group}",
        "    log_stream_prefix ${POD_NAMESPACE}.${POD_NAME}.",
        # The platform creates the group with its retention; the role may not create groups.
        "    auto_create_group Off",
        "",
    ])


def _config_map_env(name: str, config_map: str, key: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"configMapKeyRef": {"name": config_map, "key": key}}}


def _field_env(name: str, path: str) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}


def sidecar(config_map: str, size: ContainerSize) -> dict[str, Any]:
    """The Fluent Bit container, for the pod's initContainers (restartPolicy Always: a native sidecar).

    `size` is its entry in the pod's sizing (components/config/fit.py), which the quota math counts."""
    resources = {"cpu": size.cpu, "memory": size.memory}
    return {
        "name": size.name,
        "image": FLUENT_BIT_IMAGE,
        "imagePullPolicy": "IfNotPresent",
        "restartPolicy": "Always",
        "command": ["/fluent-bit/bin/fluent-bit"],
        "args": ["-c", f"{CONFIG_DIR}/{CONFIG_KEY}"],
        "env": [
            _config_map_env(REGION_KEY, config_map, REGION_KEY),
            _config_map_env(ROLE_ARN_KEY, config_map, ROLE_ARN_KEY),
            {"name": "AWS_WEB_IDENTITY_TOKEN_FILE", "value": f"{TOKEN_DIR}/token"},
            _field_env("POD_NAME", "metadata.name"),
            _field_env("POD_NAMESPACE", "metadata.namespace"),
        ],
        # requests == limits, like the Ray containers: Guaranteed QoS and honest quota accounting.
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "volumeMounts": [
            {"name": RAY_LOGS_VOLUME, "mountPath": RAY_TEMP_DIR, "readOnly": True},
            {"name": STATE_VOLUME, "mountPath": STATE_DIR},
            {"name": CONFIG_VOLUME, "mountPath": CONFIG_DIR, "readOnly": True},
            {"name": TOKEN_VOLUME, "mountPath": TOKEN_DIR, "readOnly": True},
        ],
        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]},
                            "readOnlyRootFilesystem": True},
    }


def ray_logs_mount() -> dict[str, str]:
    """Where the Ray container writes its logs: the volume the sidecar reads."""
    return {"name": RAY_LOGS_VOLUME, "mountPath": RAY_TEMP_DIR}


def volumes(config_map: str) -> list[dict[str, Any]]:
    return [
        {"name": RAY_LOGS_VOLUME, "emptyDir": {}},
        {"name": STATE_VOLUME, "emptyDir": {"sizeLimit": "64Mi"}},
        {"name": CONFIG_VOLUME, "configMap": {"name": config_map, "items": [{"key": CONFIG_KEY, "path": CONFIG_KEY}]}},
        {"name": TOKEN_VOLUME, "projected": {"sources": [{"serviceAccountToken": {
            "audience": STS_AUDIENCE, "expirationSeconds": 86400, "path": "token"}}]}},
    ]


def config_data(log_group: str, region: str, role_arn: str) -> dict[str, str]:
    """The sidecar's part of the team's observability ConfigMap."""
    return {CONFIG_KEY: fluent_bit_config(log_group), REGION_KEY: region, ROLE_ARN_KEY: role_arn}
