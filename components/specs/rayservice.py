"""The KubeRay RayService object of a `submission: kuberay` serve job, as a pure function of its config.

Same Serve application as the SDK path: serveConfigV2 deploys `import_path: jobs.serve:app`, the
module-level app jobs/serve.py builds from $RAY_PLATFORM_JOB_CONFIG, which is set to the settings
the SDK path passes with --config-json. The deployment's options (replicas or autoscaling, actor
resources, health checks) are spelled out as well, so a review sees them and Serve applies a
change to them in place; a test checks they equal what the app itself binds.

Ownership: a RayService creates and upgrades its own RayCluster, shaped by the stack's rayClusters
entry `cluster` (same spec builder), so that entry gets no separate long-lived RayCluster and the
RayService takes its name: KubeRay's `<name>-head-svc` and `<name>-serve-svc` keep the addresses
the cluster had. Its pods carry RAY_SERVICE_LABEL, which outlives KubeRay's per-cluster
`ray.io/cluster` label across upgrades, for the internal load balancer's NetworkPolicy.

Upgrades (`upgradeStrategy`): NewCluster starts a second cluster when the cluster spec changes and
switches traffic once it is ready: no downtime, twice the capacity meanwhile (the config check
counts it against the quota). None never runs two clusters, for scarce GPUs: KubeRay applies Serve
config changes in place but ignores cluster changes, so a cluster change replaces the RayService
(delete, then create: downtime, and `pulumi preview` says so).

Health: KubeRay 1.7 ignores serviceUnhealthySecondThreshold and deploymentUnhealthySecondThreshold
(deprecated no-ops since 1.1). What replaces them: the `ray.io/initializing-timeout` annotation (a
RayService not Ready in time is marked failed, reason InitializingTimeout, instead of retrying
forever) and Serve's own replica health checks (health_check_period_s / health_check_timeout_s).

Serve service: internal only, ClusterIP or an AWS internal load balancer. The head pod is left out
of it: the head runs no replicas and holds the GCS.
"""
from __future__ import annotations

import copy
import json
from collections.abc import Mapping
from typing import Any

import yaml

from components.config.model import LB_SERVICE_TYPE, JobConfig, KubeRayServiceConfig, RayClusterConfig
from components.constants import LABEL_PREFIX, RAY_NODE_TYPE_LABEL, RAY_SERVE_PORT
from components.specs.namespace import load_balancer_policy_spec
from components.specs.raycluster import (
    API_VERSION, INTERNAL_LB_ANNOTATIONS, common_labels, ray_cluster, serve_service_name,
)
from components.specs.rayjob import SKIP_AWAIT, code_runtime_env
from jobs.common import CONFIG_ENV_VAR

KIND = "RayService"
IMPORT_PATH = "jobs.serve:app"
# The @serve.deployment class in jobs/serve.py, and its ServeConfig defaults where settings give none.
SERVE_DEPLOYMENT = "DigitsClassifier"
DEFAULT_REPLICA_CPUS = 0.25
DEFAULT_MAX_ONGOING_REQUESTS = 5
RAY_SERVICE_LABEL = f"{LABEL_PREFIX}/ray-service"
INITIALIZING_TIMEOUT_ANNOTATION = "ray.io/initializing-timeout"


def deployment_options(settings: Mapping[str, Any], cfg: KubeRayServiceConfig) -> dict[str, Any]:
    """The Serve deployment's options in the Serve config, as jobs.serve.build_app binds them."""
    options: dict[str, Any] = {
        "name": SERVE_DEPLOYMENT,
        "ray_actor_options": {"num_cpus": float(settings.get("num_cpus", DEFAULT_REPLICA_CPUS)),
                              "num_gpus": 1 if settings.get("use_gpu") else 0},
        "max_ongoing_requests": settings.get("max_ongoing_requests", DEFAULT_MAX_ONGOING_REQUESTS),
    }
    if settings.get("max_replicas") is not None:
        minimum = settings.get("min_replicas")
        options["autoscaling_config"] = {"min_replicas": 1 if minimum is None else minimum,
                                         "max_replicas": settings["max_replicas"]}
        if settings.get("target_ongoing_requests") is not None:
            options["autoscaling_config"]["target_ongoing_requests"] = settings["target_ongoing_requests"]
    else:
        options["num_replicas"] = settings.get("num_replicas") or 1
    if cfg.health_check_period_seconds is not None:
        options["health_check_period_s"] = cfg.health_check_period_seconds
    if cfg.health_check_timeout_seconds is not None:
        options["health_check_timeout_s"] = cfg.health_check_timeout_seconds
    return options


def serve_config_v2(job: JobConfig, settings: Mapping[str, Any], cfg: KubeRayServiceConfig) -> str:
    """The Serve config (YAML) of the one application this RayService runs."""
    runtime_env = code_runtime_env(job, cfg.code_uri)
    app: dict[str, Any] = {"name": settings["app_name"], "route_prefix": settings["route_prefix"]}
    if job.work.serve is not None:
        # A team's app: its import path and args; its deployments' options are its own.
        app |= {"import_path": job.work.serve.import_path, "runtime_env": runtime_env}
        if job.work.serve.args:
            app["args"] = dict(job.work.serve.args)
    else:
        runtime_env["env_vars"] = {**dict(job.runtime_env.get("env_vars") or {}),
                                   CONFIG_ENV_VAR: json.dumps(dict(settings), sort_keys=True)}
        app |= {"import_path": IMPORT_PATH, "runtime_env": runtime_env,
                "deployments": [deployment_options(settings, cfg)]}
    config = {
        "proxy_location": "EveryNode",
        "http_options": {"host": "0.0.0.0", "port": RAY_SERVE_PORT},
        "applications": [app],
    }
    return yaml.safe_dump(config, sort_keys=False)


def serve_service(name: str, service_type: str, labels: dict[str, str]) -> dict[str, Any]:
    """The Serve Service template; KubeRay fills in the selector of the active cluster."""
    metadata: dict[str, Any] = {"name": serve_service_name(name), "labels": dict(labels)}
    if service_type == LB_SERVICE_TYPE:
        metadata["annotations"] = dict(INTERNAL_LB_ANNOTATIONS)
    return {"metadata": metadata, "spec": {
        "type": "LoadBalancer" if service_type == LB_SERVICE_TYPE else "ClusterIP",
        "ports": [{"name": "serve", "port": RAY_SERVE_PORT, "targetPort": RAY_SERVE_PORT, "protocol": "TCP"}],
    }}


def _with_pod_label(cluster_spec: dict[str, Any], key: str, value: str) -> dict[str, Any]:
    spec = copy.deepcopy(cluster_spec)
    for group in [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]:
        group["template"].setdefault("metadata", {}).setdefault("labels", {})[key] = value
    return spec


def ray_service(job: JobConfig, cluster: RayClusterConfig, namespace: str, team: str,
                settings: Mapping[str, Any]) -> dict[str, Any]:
    """The RayService object of a `submission: kuberay` serve job, owning a cluster shaped like `cluster`."""
    if not isinstance(job.kuberay, KubeRayServiceConfig):
        raise ValueError(f"job {job.name!r} is not a kuberay serve job")
    cfg = job.kuberay
    labels = common_labels(team)
    spec: dict[str, Any] = {
        "serveConfigV2": serve_config_v2(job, settings, cfg),
        "rayClusterConfig": _with_pod_label(ray_cluster(cluster, namespace, team)["spec"], RAY_SERVICE_LABEL,
                                            cluster.name),
        "upgradeStrategy": {"type": cfg.upgrade_strategy},
        "serveService": serve_service(cluster.name, cfg.service_type, labels),
        "excludeHeadPodFromServeSvc": True,
    }
    if cfg.cluster_deletion_delay_seconds is not None:
        spec["rayClusterDeletionDelaySeconds"] = cfg.cluster_deletion_delay_seconds
    annotations = dict(SKIP_AWAIT)
    if cfg.initializing_timeout_seconds is not None:
        annotations[INITIALIZING_TIMEOUT_ANNOTATION] = f"{cfg.initializing_timeout_seconds}s"
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {"name": cluster.name, "namespace": namespace, "labels": dict(labels),
                     "annotations": annotations},
        "spec": spec,
    }


def internal_lb_policy(cluster: RayClusterConfig, cfg: KubeRayServiceConfig) -> dict[str, Any] | None:
    """NetworkPolicy spec admitting internal load balancer traffic to the RayService's pods, if any.

    As for a load-balanced RayCluster's head (components/specs/namespace.py), but selected by
    RAY_SERVICE_LABEL; a load-balanced Serve service reaches every pod of the service.
    """
    head_lb, serve_lb = cluster.head.service_type == LB_SERVICE_TYPE, cfg.service_type == LB_SERVICE_TYPE
    if not (head_lb or serve_lb):
        return None
    spec = load_balancer_policy_spec(cluster.name)
    selector = {RAY_SERVICE_LABEL: cluster.name}
    if not serve_lb:
        selector[RAY_NODE_TYPE_LABEL] = "head"
    ingress = spec["ingress"] if head_lb else [{"ports": [{"protocol": "TCP", "port": RAY_SERVE_PORT}]}]
    return {**spec, "podSelector": {"matchLabels": selector}, "ingress": ingress}
