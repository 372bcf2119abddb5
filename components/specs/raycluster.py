"""The RayCluster (`ray.io/v1`) object of one team cluster, as a pure function of its config.

No Pulumi here: the same dict is what `components/team/ray_cluster.py` hands to the engine, what
the offline render writes, and what the tests validate against the pinned KubeRay CRD.
Every field name below exists in the KubeRay v1.7.0 CRD (`ray.io_rayclusters.yaml`).

Scheduling contract with the platform layer (constants shared with the node pools):
GPU worker groups tolerate the GPU taint and select the pool's label; everything without
GPUs (head, CPU workers) runs on the CPU pool: node affinity keeps it off the system and GPU
nodes and prefers the CPU role, and should it land on a GPU node anyway, it sees no GPU because
`NVIDIA_VISIBLE_DEVICES=void` hides them from the NVIDIA runtime. Disruption safety (the head's
annotations, the workers' drain hook) is components/specs/ray_disruption.py.

Observability contract with the platform layer (the team opts in, RayClusterConfig.observability):
the platform-dependent values (Prometheus and Grafana URLs, log group, region, IAM role) are
not in this object but in the team's ConfigMap `observability_config_map` builds from the
platform stack's `observability` output, which the pods reference by key. So this object stays
a pure function of the team's own config, whatever the platform deployed.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from components.specs import log_shipping, ray_disruption
from components.specs.team_runtime import apply_team_runtime
from components.config.fit import (
    AUTOSCALER_CONTAINER, LOG_SHIPPER_CONTAINER, RAY_HEAD_CONTAINER, RAY_WORKER_CONTAINER, ContainerSize,
    container_size, head_pod_containers, quantity_value, worker_pod_containers,
)
from components.config.model import LB_SERVICE_TYPE, RayClusterConfig, RayObservability, WorkerGroupConfig
from components.constants import (
    GPU_NODE_LABEL, GPU_RESOURCE, PART_OF_LABEL, PROJECT, RAY_CLIENT_PORT, RAY_DASHBOARD_PORT, RAY_GCS_PORT,
    RAY_METRICS_PORT, RAY_SERVE_PORT, TEAM_LABEL,
)
from components.specs.gpu_nodes import gpu_toleration, on_cpu_pool, pool_node_selector
from components.specs.queueing import ELASTIC_JOB_ANNOTATION, fixed_size, queue_labels
from components.versions import RAY_IMAGE_CPU, RAY_IMAGE_GPU, RAY_VERSION

API_VERSION = "ray.io/v1"
KIND = "RayCluster"

# rayproject/ray images run as the `ray` user (uid 1000, primary group `users`, gid 100). The
# image names its user rather than its uid, so the kubelet can only enforce runAsNonRoot when
# the uid is spelled out here.
RAY_UID = 1000
RAY_GID = 100

# Keys the KubeRay operator reads from the Secrets this platform creates.
REDIS_PASSWORD_KEY = "password"
AUTH_TOKEN_KEY = "auth_token"  # KubeRay's authOptions.secretName contract

# KubeRay creates `<cluster>-serve-svc` for a plain RayCluster only when asked to.
ENABLE_SERVE_SERVICE_ANNOTATION = "ray.io/enable-serve-service"
# The in-tree cloud controller reads the first, the AWS Load Balancer Controller the second;
# both are set so the head's load balancer stays internal whichever controller provisions it.
INTERNAL_LB_ANNOTATIONS = {
    "service.beta.kubernetes.io/aws-load-balancer-internal": "true",
    "service.beta.kubernetes.io/aws-load-balancer-scheme": "internal",
}
# Pinned so a KubeRay upgrade cannot switch the autoscaler implementation under running clusters.
AUTOSCALER_VERSION = "v2"

SHM_VOLUME = "dshm"
# The containers and their sizes come from components/config/fit.py, which the quota math sums.
HEAD_CONTAINER = RAY_HEAD_CONTAINER
WORKER_CONTAINER = RAY_WORKER_CONTAINER

# Besides each node's metrics port, the head serves the autoscaler's metrics (its sidecar
# container shares the pod's network) and the dashboard's own; Ray's Grafana dashboards use
# the autoscaler's. Declared as container ports so a PodMonitor can select them by name.
AUTOSCALER_METRICS_PORT = 44217
DASHBOARD_METRICS_PORT = 44227
METRICS_PORT_NAMES = ("metrics", "as-metrics", "dash-metrics")

# One ConfigMap per team namespace, written from the platform stack's `observability` output.
OBSERVABILITY_CONFIG_MAP = "ray-platform-observability"
# Ray's dashboard reads these (ray/dashboard/modules/metrics/metrics_head.py): where it queries
# Prometheus and checks Grafana from inside the cluster, the datasource its dashboards use, and
# where a user's browser loads the embedded Grafana panels from.
PROMETHEUS_HOST_ENV = "RAY_PROMETHEUS_HOST"
PROMETHEUS_NAME_ENV = "RAY_PROMETHEUS_NAME"
GRAFANA_HOST_ENV = "RAY_GRAFANA_HOST"
GRAFANA_IFRAME_HOST_ENV = "RAY_GRAFANA_IFRAME_HOST"
GRAFANA_CLUSTER_FILTER_ENV = "RAY_GRAFANA_CLUSTER_FILTER"


# --------------------------------------------------------------------------- names


def head_service_name(cluster: str) -> str:
    """The head Service KubeRay creates (GCS, dashboard, client, metrics)."""
    return f"{cluster}-head-svc"


def serve_service_name(cluster: str) -> str:
    """The Ray Serve Service KubeRay creates when ENABLE_SERVE_SERVICE_ANNOTATION is set."""
    return f"{cluster}-serve-svc"


def redis_secret_name(cluster: str) -> str:
    return f"{cluster}-gcs-redis"


def auth_secret_name(cluster: str) -> str:
    # Not `<cluster>`: that is the name KubeRay uses when it generates a token Secret itself.
    return f"{cluster}-auth-token"


def gcs_volume_claim_name(cluster: str) -> str:
    return f"{cluster}-gcs-rocksdb"


def common_labels(team: str) -> dict[str, str]:
    return {TEAM_LABEL: team, PART_OF_LABEL: PROJECT}




# --------------------------------------------------------------------------- pod parts


def guaranteed_resources(cpu: str, memory: str, gpus: int) -> dict[str, dict[str, str]]:
    # requests == limits: Guaranteed QoS, so the kubelet never evicts a Ray node for
    # memory pressure caused by a neighbour, and the quota counts what is really held.
    amounts = {"cpu": cpu, "memory": memory}
    if gpus:
        amounts[GPU_RESOURCE] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def container_security_context() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}}


def pod_security_context() -> dict[str, Any]:
    return {
        "runAsNonRoot": True,
        "runAsUser": RAY_UID,
        "runAsGroup": RAY_GID,
        # Volumes (the GCS RocksDB claim) are made writable for the ray user.
        "fsGroup": RAY_GID,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def _port(name: str, port: int) -> dict[str, Any]:
    return {"name": name, "containerPort": port, "protocol": "TCP"}


def _sized(containers: tuple[ContainerSize, ...], name: str) -> ContainerSize:
    size = container_size(containers, name)
    if size is None:
        raise ValueError(f"no {name!r} container in the pod's sizing: {containers}")
    return size


def _ray_container(size: ContainerSize, image: str, ports: list[dict[str, Any]]) -> dict[str, Any]:
    gpus = size.gpus
    container: dict[str, Any] = {
        "name": size.name,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "resources": guaranteed_resources(size.cpu, size.memory, gpus),
        "ports": ports,
        "volumeMounts": [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}],
        "securityContext": container_security_context(),
    }
    if not gpus:
        # The NVIDIA runtime exposes every GPU of the node to a container that asks for none
        # when its image says NVIDIA_VISIBLE_DEVICES=all; `void` exposes none.
        container["env"] = [{"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"}]
    return container




def _metrics_env(cluster: str) -> list[dict[str, Any]]:
    # Optional references: a platform without Grafana leaves its keys out of the ConfigMap, and
    # the dashboard then simply shows no embedded panels.
    refs = [{"name": key, "valueFrom": {"configMapKeyRef": {"name": OBSERVABILITY_CONFIG_MAP, "key": key,
                                                            "optional": True}}}
            for key in (PROMETHEUS_HOST_ENV, PROMETHEUS_NAME_ENV, GRAFANA_HOST_ENV, GRAFANA_IFRAME_HOST_ENV)]
    # The embedded panels show this cluster (the PodMonitors label its series ray_io_cluster).
    return [*refs, {"name": GRAFANA_CLUSTER_FILTER_ENV, "value": cluster}]


def _ship_logs(template: dict[str, Any], containers: tuple[ContainerSize, ...]) -> None:
    """If the pod's sizing has the log shipper: put /tmp/ray of the pod's Ray container on a volume
    the Fluent Bit sidecar reads, and add the sidecar at its size."""
    size = container_size(containers, LOG_SHIPPER_CONTAINER)
    if size is None:
        return
    spec = template["spec"]
    spec["containers"][0]["volumeMounts"].append(log_shipping.ray_logs_mount())
    spec["volumes"].extend(log_shipping.volumes(OBSERVABILITY_CONFIG_MAP))
    spec["initContainers"] = [log_shipping.sidecar(OBSERVABILITY_CONFIG_MAP, size)]


def _pod_template(container: dict[str, Any], shm_size: str, gpus: int, gpu_pool: str | None,
                  labels: dict[str, str]) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "containers": [container],
        "volumes": [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}],
        "securityContext": pod_security_context(),
    }
    if gpus:
        spec["tolerations"] = [gpu_toleration()]
        spec["nodeSelector"] = pool_node_selector(gpu_pool) if gpu_pool else {GPU_NODE_LABEL: "true"}
    else:
        spec["affinity"] = on_cpu_pool()
    return {"metadata": {"labels": dict(labels)}, "spec": spec}


# The object store lives in /dev/shm, a memory-backed emptyDir capped at the group's shmSize. Ray
# sizes its store at 30% of the pod's memory, which outgrows most shmSizes, and then falls back to
# disk; sized from shmSize, with headroom for what else Ray keeps there, it never does.
OBJECT_STORE_SHARE_OF_SHM = 0.9


def object_store_bytes(shm_size: str) -> int:
    return int(quantity_value(shm_size) * OBJECT_STORE_SHARE_OF_SHM)


def _ray_start_params(gpus: int, shm_size: str) -> dict[str, str]:
    # Ray would otherwise count the node's GPUs itself; the pod's allocation is the truth.
    return {"num-gpus": str(gpus), "metrics-export-port": str(RAY_METRICS_PORT),
            "object-store-memory": str(object_store_bytes(shm_size))}


# --------------------------------------------------------------------------- groups


def head_group_spec(cfg: RayClusterConfig, labels: dict[str, str]) -> dict[str, Any]:
    head = cfg.head
    containers = head_pod_containers(cfg)
    ports = [_port("gcs-server", RAY_GCS_PORT), _port("dashboard", RAY_DASHBOARD_PORT),
             _port("client", RAY_CLIENT_PORT), _port("serve", RAY_SERVE_PORT), _port("metrics", RAY_METRICS_PORT)]
    if cfg.observability.metrics:
        ports += [_port("as-metrics", AUTOSCALER_METRICS_PORT), _port("dash-metrics", DASHBOARD_METRICS_PORT)]
    container = _ray_container(_sized(containers, HEAD_CONTAINER), RAY_IMAGE_CPU, ports)
    if cfg.observability.metrics:
        container["env"] += _metrics_env(cfg.name)
    params = {
        **_ray_start_params(0, cfg.head.shm_size),
        # The dashboard must listen on the pod IP for the head Service to reach it.
        "dashboard-host": "0.0.0.0",
        # No Ray tasks on the head: it holds the GCS and the dashboard, and a task that
        # exhausts its memory takes the whole cluster down with it.
        "num-cpus": "0",
    }
    template = _pod_template(container, head.shm_size, 0, None, labels)
    template["metadata"]["annotations"] = ray_disruption.head_annotations()
    group: dict[str, Any] = {
        "serviceType": "ClusterIP",
        "rayStartParams": params,
        "template": template,
    }
    apply_team_runtime(group["template"], cfg.runtime, None, HEAD_CONTAINER)
    _ship_logs(group["template"], containers)
    if head.service_type == LB_SERVICE_TYPE:
        # The type on the head Service template, beside its internal-LB annotations, and
        # `serviceType` left at ClusterIP: KubeRay gives `<name>-serve-svc` the head group's
        # `serviceType` but not the template's annotations (common/service.go, BuildServeService),
        # so a LoadBalancer there would be a second, public load balancer.
        group["headService"] = {"metadata": {"annotations": dict(INTERNAL_LB_ANNOTATIONS)},
                                "spec": {"type": "LoadBalancer"}}
    return group


def worker_group_spec(cfg: RayClusterConfig, group: WorkerGroupConfig, labels: dict[str, str]) -> dict[str, Any]:
    containers = worker_pod_containers(cfg, group)
    image = RAY_IMAGE_GPU if group.gpus else RAY_IMAGE_CPU
    container = _ray_container(_sized(containers, WORKER_CONTAINER), image, [_port("metrics", RAY_METRICS_PORT)])
    container["lifecycle"] = ray_disruption.worker_lifecycle()
    template = _pod_template(container, group.shm_size, group.gpus, group.gpu_pool, labels)
    # Ray workers never call the Kubernetes API; only the head's autoscaler does.
    template["spec"]["automountServiceAccountToken"] = False
    template["spec"]["terminationGracePeriodSeconds"] = ray_disruption.WORKER_TERMINATION_GRACE_SECONDS
    apply_team_runtime(template, cfg.runtime, group.name, WORKER_CONTAINER)
    _ship_logs(template, containers)
    # Admitted at a fixed size (an ephemeral RayJob's queued cluster): all of maxReplicas or nothing.
    fixed = fixed_size(cfg)
    return {
        "groupName": group.name,
        "replicas": group.max_replicas if fixed else group.replicas,
        "minReplicas": group.max_replicas if fixed else group.min_replicas,
        "maxReplicas": group.max_replicas,
        "rayStartParams": _ray_start_params(group.gpus, group.shm_size),
        "template": template,
    }


def _autoscaler_options(cfg: RayClusterConfig) -> dict[str, Any]:
    # KubeRay builds the autoscaler container of the head pod from these options.
    size = _sized(head_pod_containers(cfg), AUTOSCALER_CONTAINER)
    return {
        "version": AUTOSCALER_VERSION,
        "idleTimeoutSeconds": cfg.idle_timeout_seconds,
        "upscalingMode": cfg.upscaling_mode,
        "resources": guaranteed_resources(size.cpu, size.memory, size.gpus),
        "securityContext": container_security_context(),
    }


def _gcs_fault_tolerance_options(cfg: RayClusterConfig) -> dict[str, Any] | None:
    ft = cfg.gcs_fault_tolerance
    if ft is None:
        return None
    if ft.backend == "redis":
        return {
            "backend": "redis",
            "redisAddress": ft.redis_address,
            "redisPassword": {"valueFrom": {"secretKeyRef": {
                "name": redis_secret_name(cfg.name), "key": REDIS_PASSWORD_KEY}}},
        }
    # The claim is created by this platform (components/team/ray_cluster.py), so it shows in the
    # preview and its lifecycle follows the stack rather than one RayCluster object.
    return {"backend": "rocksdb", "storage": {"claimName": gcs_volume_claim_name(cfg.name)}}


def gcs_volume_claim(cfg: RayClusterConfig, namespace: str, team: str) -> dict[str, Any] | None:
    """The claim holding the GCS's RocksDB (backend: rocksdb), or None for other backends."""
    ft = cfg.gcs_fault_tolerance
    if ft is None or ft.backend != "rocksdb":
        return None
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": gcs_volume_claim_name(cfg.name), "namespace": namespace, "labels": common_labels(team)},
        # Only the head pod mounts it.
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": ft.storage_size}}},
    }


# --------------------------------------------------------------------------- cluster


def ray_cluster(cfg: RayClusterConfig, namespace: str, team: str) -> dict[str, Any]:
    """The full RayCluster object for `cfg` in the team's namespace."""
    labels = common_labels(team)
    spec: dict[str, Any] = {
        "rayVersion": RAY_VERSION,
        # The Ray autoscaler adds workers when tasks ask for resources (GPU groups scale up
        # from minReplicas, usually 0) and removes them after idleTimeoutSeconds. Kueue refuses
        # it on a queued cluster unless the cluster is an elastic job (Queueing.elastic).
        "enableInTreeAutoscaling": not fixed_size(cfg),
        "headGroupSpec": head_group_spec(cfg, labels),
        "workerGroupSpecs": [worker_group_spec(cfg, g, labels) for g in cfg.worker_groups],
    }
    if not fixed_size(cfg):
        spec["autoscalerOptions"] = _autoscaler_options(cfg)
    annotations = {ENABLE_SERVE_SERVICE_ANNOTATION: "true"}
    # Not `suspend: true` here: Kueue's admission webhook suspends a queued RayCluster as it is
    # created (and refuses the create when it cannot), then unsuspends it on admission; a spec that
    # said `suspend: true` would re-suspend the admitted cluster on every later update.
    if cfg.queue is not None and cfg.queue.elastic:
        annotations[ELASTIC_JOB_ANNOTATION] = "true"
    ft = _gcs_fault_tolerance_options(cfg)
    if ft is not None:
        spec["gcsFaultToleranceOptions"] = ft
    if cfg.auth:
        spec["authOptions"] = {"mode": "token", "secretName": auth_secret_name(cfg.name)}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": {
            "name": cfg.name,
            "namespace": namespace,
            "labels": {**labels, **queue_labels(cfg.queue)},
            "annotations": annotations,
        },
        "spec": spec,
    }


def observability_config_map(namespace: str, team: str, wanted: RayObservability,
                             platform: Mapping[str, Any]) -> dict[str, Any]:
    """The team's ConfigMap the Ray pods read, from the platform stack's `observability` output.

    Only the pieces the team opted into, and of those only what the platform offers (the
    deploy-time contract check in components/team/layer.py fails the update when a piece the
    team wants is missing, so a key the pods need is never silently absent).
    """
    data: dict[str, str] = {}
    prometheus, grafana, logs = platform.get("prometheus"), platform.get("grafana"), platform.get("logShipping")
    if wanted.metrics and prometheus:
        data[PROMETHEUS_HOST_ENV] = prometheus["url"]
        data[PROMETHEUS_NAME_ENV] = prometheus["datasource"]
        if grafana:
            data[GRAFANA_HOST_ENV] = grafana["url"]
            data[GRAFANA_IFRAME_HOST_ENV] = grafana["iframeHost"]
    if wanted.log_shipping and logs:
        data.update(log_shipping.config_data(logs["logGroup"], logs["region"], logs["roleArn"]))
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": OBSERVABILITY_CONFIG_MAP, "namespace": namespace, "labels": common_labels(team)},
        "data": data,
    }
