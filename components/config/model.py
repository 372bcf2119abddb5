"""The typed config: allowed values, sizing constants, the frozen dataclasses every layer reads,
and the one error a stack with bad config fails with.

Every default lives here, in the dataclasses' fields; the parsers read them from the fields.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from components.config.queue_model import Queueing, QueuesConfig, TeamQueueConfig
from components.config.work import ClusterRuntime, JobResources, WorkConfig
from components.config.pools import (  # noqa: F401 - the pool model's names, also read from here
    CAPACITY_TYPES, GPU_AMI_TYPES, GPU_INSTANCE_FAMILIES, CapacityConfig, GpuPoolConfig, SystemNodesConfig,
)
from components.versions import DEFAULT_EKS_VERSION
from jobs.common import JOB_NAMES

LAYERS = ("platform", "team")
PROVIDERS = ("eks", "existing")
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
NAT_MODES = ("single", "perAz")
JOB_KINDS = JOB_NAMES  # a job's kind is the module jobs.<kind> it runs
JOB_WAITS = ("none", "running", "succeeded")
SUBMISSIONS = ("sdk", "kuberay")
DASHBOARD_ACCESS = ("tunnel", "url")
# A Service of type LoadBalancer behind an internal AWS load balancer (specs/raycluster.py).
LB_SERVICE_TYPE = "LoadBalancer-internal"
SERVICE_TYPES = ("ClusterIP", LB_SERVICE_TYPE)
# NewClusterWithIncrementalUpgrade needs the Gateway API, which the platform does not install.
UPGRADE_STRATEGIES = ("NewCluster", "None")
# How KubeRay submits a RayJob: K8sJobMode runs a submitter pod (`ray job submit` in the cluster);
# HTTPMode has the operator itself POST the job to the head's dashboard (no pod, no quota).
# SidecarMode (refused with clusterSelector) and InteractiveMode (waits for a job id) are not offered.
K8S_JOB_MODE = "K8sJobMode"
RAYJOB_SUBMISSION_MODES = (K8S_JOB_MODE, "HTTPMode")
# The pod KubeRay starts per RayJob to run `ray job submit` and follow its logs: it only
# talks HTTP, and counts against the team quota like any pod.
SUBMITTER_CPU = "500m"
SUBMITTER_MEMORY = "1Gi"
GCS_FT_BACKENDS = ("redis", "rocksdb")
UPSCALING_MODES = ("Default", "Aggressive", "Conservative")

# Name limits, each derived from the one it must leave room in.
# A Kubernetes object name that is also a Service name or label value is a DNS label.
DNS_LABEL_MAX = 63
# KubeRay names Services after the RayCluster and refuses a cluster name whose longest Service
# name, `<name>-serve-svc`, would not be a DNS label (MaxRayClusterNameLength).
RAYCLUSTER_NAME_MAX = DNS_LABEL_MAX - len("-serve-svc")
# KubeRay appends 6 characters to a RayJob's or RayService's name for the RayCluster it
# creates, and refuses longer names (MaxRayJobNameLength, MaxRayServiceNameLength).
KUBERAY_CR_NAME_MAX = RAYCLUSTER_NAME_MAX - 6
# A kuberay batch job's RayJob is `<job name>-<this many characters of its spec digest>`.
RAYJOB_DIGEST_CHARS = 6
# Every job may be switched to submission: kuberay, so its name leaves room for the digest.
JOB_NAME_MAX = KUBERAY_CR_NAME_MAX - len("-") - RAYJOB_DIGEST_CHARS
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def is_dns_label(value: str, max_len: int, pattern: re.Pattern[str] = DNS1035) -> bool:
    """The one check of a name against its rule (DNS1035 or DNS1123) and its limit (above)."""
    return bool(pattern.match(value)) and len(value) <= max_len


QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
STACK_REF = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
# Prometheus' retention flag: one number and unit (not a compound such as 1d12h).
PROMETHEUS_DURATION = re.compile(r"^[0-9]+(ms|s|m|h|d|w|y)$")
HTTP_URL = re.compile(r"^https?://[^\s/]+(:[0-9]+)?(/\S*)?$")
LOG_DESTINATIONS = ("cloudwatch", "none")
# The only retention periods CloudWatch Logs accepts (PutRetentionPolicy).
CLOUDWATCH_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192,
                             2557, 2922, 3288, 3653)
# The Fluent Bit sidecar in every Ray pod of a team that ships its logs; counted against the
# team quota like the autoscaler. Its tail buffer is capped well below the memory limit.
LOG_SHIPPER_CPU = "100m"
LOG_SHIPPER_MEMORY = "128Mi"
# What an encrypted value shows as wherever it cannot be decrypted: offline reads of a stack
# file, renders, plan diffs.
SECRET_PLACEHOLDER = "[secret]"


class ConfigError(Exception):
    """All problems of one stack's config, reported together."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stack {stack!r} has {len(problems)} config problem(s):\n{lines}")


@dataclass(frozen=True)
class NetworkConfig:
    vpc_cidr: str = "10.0.0.0/16"
    az_count: int = 2
    nat: str = "single"
    existing_vpc_id: str | None = None
    existing_private_subnet_ids: tuple[str, ...] = ()
    existing_public_subnet_ids: tuple[str, ...] = ()

    @property
    def uses_existing_vpc(self) -> bool:
        return self.existing_vpc_id is not None


@dataclass(frozen=True)
class ClusterConfig:
    provider: str
    name: str
    kubernetes_version: str = DEFAULT_EKS_VERSION
    endpoint_public_access: bool = False
    public_access_cidrs: tuple[str, ...] = ()
    admin_principal_arns: tuple[str, ...] = ()
    log_types: tuple[str, ...] = CONTROL_PLANE_LOG_TYPES
    system_nodes: SystemNodesConfig = SystemNodesConfig()
    kms_deletion_window_days: int = 30
    kubeconfig_path: str | None = None
    kube_context: str | None = None


@dataclass(frozen=True)
class AddonsConfig:
    cluster_autoscaler: bool = True
    nvidia_device_plugin: bool = True


@dataclass(frozen=True)
class KubeRayConfig:
    namespace: str = "kuberay-system"
    # Empty means the operator watches every namespace (team namespaces come and go).
    watch_namespaces: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrometheusConfig:
    retention: str = "15d"
    storage_size: str = "50Gi"
    # None: on EKS the platform's encrypted gp3 class, elsewhere the cluster's default class.
    storage_class: str | None = None


@dataclass(frozen=True)
class GrafanaConfig:
    # Where a user's browser reaches Grafana (the Ray dashboard embeds its panels from there):
    # by default the port-forward of docs/observability.md.
    iframe_host: str = "http://localhost:3000"


@dataclass(frozen=True)
class LogShippingConfig:
    destination: str = "cloudwatch"
    retention_days: int = 30


@dataclass(frozen=True)
class ObservabilityConfig:
    """`ray-platform:observability` of a platform stack: a piece is installed when its block is
    present and not `enabled: false`, so a stack without the key installs none of them."""

    namespace: str = "monitoring"
    prometheus: PrometheusConfig | None = None
    grafana: GrafanaConfig | None = None
    dcgm_exporter: bool = False
    log_shipping: LogShippingConfig | None = None

    @property
    def installs_anything(self) -> bool:
        return any((self.prometheus, self.grafana, self.dcgm_exporter, self.log_shipping))


@dataclass(frozen=True)
class SourcesConfig:
    """Where charts and CRDs come from: None is upstream; an internal mirror for air-gapped installs."""

    # One Helm repository serving every chart the platform installs, at the pinned versions.
    helm_repository: str | None = None
    # A directory or URL holding the ray.io_<plural>.yaml CRD files of KUBERAY_VERSION.
    kuberay_crds: str | None = None


@dataclass(frozen=True)
class PlatformConfig:
    stack: str
    environment: str
    cluster: ClusterConfig
    network: NetworkConfig
    gpu_pools: tuple[GpuPoolConfig, ...]
    addons: AddonsConfig
    kuberay: KubeRayConfig
    aws_region: str | None
    # Inline kubeconfig for `existing` clusters (a Pulumi secret); None with a path or on EKS.
    kubeconfig: str | None = None
    observability: ObservabilityConfig = ObservabilityConfig()
    # A Pulumi secret; required exactly when Grafana is installed.
    grafana_admin_password: str | None = None
    sources: SourcesConfig = SourcesConfig()
    queues: QueuesConfig | None = None
    capacity: CapacityConfig = CapacityConfig()

    @property
    def is_eks(self) -> bool:
        return self.cluster.provider == "eks"


@dataclass(frozen=True)
class QuotaConfig:
    cpu: str
    memory: str
    gpus: int
    pods: int = 100


@dataclass(frozen=True)
class LimitRangeConfig:
    default_cpu: str = "1"
    default_memory: str = "2Gi"
    max_cpu: str = "32"
    max_memory: str = "256Gi"


@dataclass(frozen=True)
class TeamConfig:
    name: str
    groups: tuple[str, ...]
    quota: QuotaConfig
    limit_range: LimitRangeConfig = LimitRangeConfig()
    network_policy: bool = True

    @property
    def namespace(self) -> str:
        return f"team-{self.name}"


@dataclass(frozen=True)
class HeadConfig:
    cpu: str = "2"
    memory: str = "8Gi"
    shm_size: str = "2Gi"
    service_type: str = "ClusterIP"


@dataclass(frozen=True)
class WorkerGroupConfig:
    name: str
    cpu: str
    memory: str
    gpus: int = 0
    replicas: int = 0
    min_replicas: int = 0
    max_replicas: int = 1
    shm_size: str = "1Gi"
    gpu_pool: str | None = None


@dataclass(frozen=True)
class GcsFaultToleranceConfig:
    backend: str
    redis_address: str | None = None
    storage_size: str = "10Gi"


@dataclass(frozen=True)
class RayObservability:
    """`ray-platform:observability` of a team stack: which of the platform's pieces its RayClusters use.

    Off by default: each adds objects to the team's namespace (a ConfigMap, a NetworkPolicy rule,
    a sidecar per Ray pod), so a team opts in with one line once the platform offers the piece.
    """

    # Prometheus may scrape the Ray pods; the Ray dashboard embeds the platform's Grafana.
    metrics: bool = False
    # A Fluent Bit sidecar per Ray pod ships /tmp/ray logs to the platform's log destination.
    log_shipping: bool = False


@dataclass(frozen=True)
class RayClusterConfig:
    name: str
    head: HeadConfig = HeadConfig()
    worker_groups: tuple[WorkerGroupConfig, ...] = ()
    idle_timeout_seconds: int = 300
    upscaling_mode: str = "Default"
    # The autoscaler sidecar in the head pod; counted against the team quota like any container.
    autoscaler_cpu: str = "500m"
    autoscaler_memory: str = "512Mi"
    gcs_fault_tolerance: GcsFaultToleranceConfig | None = None
    auth: bool = False
    # The team's choices (observability; the queue, none for a RayService's cluster), copied here
    # because the spec builder sees one cluster at a time.
    observability: RayObservability = RayObservability()
    queue: Queueing | None = None
    runtime: ClusterRuntime = ClusterRuntime()


@dataclass(frozen=True)
class KubeRayJobConfig:
    """`submission: kuberay` for a batch job (train, infer, tune, core): a KubeRay RayJob."""

    # A .zip whose single top-level directory holds the jobs/ package; the runtime env's working_dir.
    code_uri: str
    # False: the job runs on the stack's long-lived RayCluster `cluster` (clusterSelector).
    # True: on a cluster of its own shaped like `cluster`, deleted when the job ends.
    ephemeral: bool = False
    # Ephemeral only: the worker groups of `cluster` the job's cluster keeps, each capped at
    # this many workers; empty keeps every group as configured.
    worker_groups: Mapping[str, int] = field(default_factory=dict)
    ttl_seconds_after_finished: int = 600
    active_deadline_seconds: int | None = None
    backoff_limit: int = 0
    # Ephemeral in a queued team: this job's WorkloadPriorityClass instead of queue.priorityClass,
    # so one team's urgent run can preempt its own experiments (withinClusterQueue: LowerPriority).
    priority_class: str | None = None
    submission_mode: str = K8S_JOB_MODE

    @property
    def runs_submitter(self) -> bool:
        """KubeRay runs a submitter pod for it (K8sJobMode), which counts against the quota."""
        return self.submission_mode == K8S_JOB_MODE


@dataclass(frozen=True)
class KubeRayServiceConfig:
    """`submission: kuberay` for a serve job: a KubeRay RayService that owns the cluster `cluster`."""

    code_uri: str
    upgrade_strategy: str = "NewCluster"
    service_type: str = "ClusterIP"
    initializing_timeout_seconds: int | None = None
    health_check_period_seconds: float | None = None
    health_check_timeout_seconds: float | None = None
    cluster_deletion_delay_seconds: int | None = None


@dataclass(frozen=True)
class JobConfig:
    name: str
    kind: str
    cluster: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    resources: JobResources = JobResources()
    wait: str = "succeeded"
    timeout_seconds: int = 1800
    depends_on: tuple[str, ...] = ()
    submission: str = "sdk"
    kuberay: KubeRayJobConfig | KubeRayServiceConfig | None = None
    work: WorkConfig = WorkConfig()


@dataclass(frozen=True)
class DashboardConfig:
    """How `pulumi up` reaches each RayCluster's dashboard for the SDK-path jobs."""

    # tunnel: port-forward to the head pod through the Kubernetes API, which `pulumi up` reaches
    # anyway; url: the `url` template, for a dashboard reachable from where `pulumi up` runs.
    access: str = "tunnel"
    # Templates with {cluster} and {namespace}. In tunnel mode `url` is only reported (job links).
    url: str = "http://{cluster}-head-svc.{namespace}.svc:8265"
    serve_url: str = "http://{cluster}-serve-svc.{namespace}.svc:8000"


@dataclass(frozen=True)
class TeamStackConfig:
    stack: str
    environment: str
    platform_stack: str
    team: TeamConfig
    ray_clusters: tuple[RayClusterConfig, ...]
    jobs: tuple[JobConfig, ...]
    dashboard: DashboardConfig
    # Secrets (Pulumi secrets in the stack file); None when not configured.
    redis_password: str | None = None
    dashboard_token: str | None = None
    observability: RayObservability = RayObservability()
    queue: TeamQueueConfig | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)  # `secrets`: Pulumi secrets jobs read by name


StackConfig = PlatformConfig | TeamStackConfig
