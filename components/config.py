"""Typed stack configuration: every key, default and check of a stack file lives here.

`load()` reads the stack's config once (through `pulumi.Config`) and hands the raw
values to `parse()`, a pure function that returns frozen dataclasses or raises one
`ConfigError` listing every problem: the full key path, the bad value, what is
allowed, and for a missing key the `pulumi config set` line that fixes it.

Keys live under the project namespace (`ray-platform:<key>`); `aws:region` is read for
EKS stacks. See docs/config.md for every knob.
"""
from __future__ import annotations

import ipaddress
import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from components.constants import PROJECT
from components.versions import DEFAULT_EKS_VERSION, EKS_VERSIONS

LAYERS = ("platform", "team")
PROVIDERS = ("eks", "existing")
CAPACITY_TYPES = ("ON_DEMAND", "SPOT")
# Managed node group AMI types that ship the NVIDIA driver and container toolkit.
GPU_AMI_TYPES = ("AL2023_x86_64_NVIDIA", "AL2023_ARM_64_NVIDIA", "BOTTLEROCKET_x86_64_NVIDIA",
                 "BOTTLEROCKET_ARM_64_NVIDIA")
# Instance families with NVIDIA GPUs; a typo such as "m5.xlarge" in a GPU pool is caught here.
GPU_INSTANCE_FAMILIES = ("g4dn", "g5", "g5g", "g6", "g6e", "gr6", "p3", "p4d", "p4de", "p5", "p5e",
                         "p5en", "p6")
CONTROL_PLANE_LOG_TYPES = ("api", "audit", "authenticator", "controllerManager", "scheduler")
NAT_MODES = ("single", "perAz")
JOB_KINDS = ("train", "infer", "serve", "tune", "core")
JOB_WAITS = ("none", "running", "succeeded")
SUBMISSIONS = ("sdk", "kuberay")
DASHBOARD_ACCESS = ("tunnel", "url")
SERVICE_TYPES = ("ClusterIP", "LoadBalancer-internal")
# NewClusterWithIncrementalUpgrade needs the Gateway API, which the platform does not install.
UPGRADE_STRATEGIES = ("NewCluster", "None")
# Archives Ray's runtime_env downloads on the cluster itself; file:// would name a path on the node.
CODE_URI = re.compile(r"^(s3|gs|https)://\S+\.zip$")
# KubeRay appends 6 characters to a RayJob's or RayService's name for the RayCluster it
# creates, and refuses longer names (MaxRayJobNameLength, MaxRayServiceNameLength).
KUBERAY_CR_NAME_MAX = 47
# The pod KubeRay starts per RayJob to run `ray job submit` and follow its logs: it only
# talks HTTP, and counts against the team quota like any pod.
SUBMITTER_CPU = "500m"
SUBMITTER_MEMORY = "1Gi"
GCS_FT_BACKENDS = ("redis", "rocksdb")
UPSCALING_MODES = ("Default", "Aggressive", "Conservative")
# KubeRay names Services after the RayCluster, so the CR name is a DNS-1035 label
# with room for KubeRay's suffixes (KubeRay itself rejects names longer than this).
RAYCLUSTER_NAME_MAX = 53
DNS1035 = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS1123 = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|Pi|k|M|G|T|P)?$")
ARN = re.compile(r"^arn:aws[a-zA-Z-]*:iam::\d{12}:(role|user)/[\w+=,.@/-]+$")
STACK_REF = re.compile(r"^([A-Za-z0-9_.-]+/){0,2}[A-Za-z0-9_.-]+$")
# Prometheus' retention flag: one number and unit (a compound such as 1d12h is not accepted here).
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
SECRET_PLACEHOLDER = "[secret]"


class ConfigError(Exception):
    """All problems of one stack's config, reported together."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.stack = stack
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"stack {stack!r} has {len(problems)} config problem(s):\n{lines}")


# --------------------------------------------------------------------------- dataclasses


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
class SystemNodesConfig:
    instance_types: tuple[str, ...] = ("m6i.large",)
    min_size: int = 2
    desired_size: int = 2
    max_size: int = 4
    disk_size_gib: int = 50


@dataclass(frozen=True)
class GpuPoolConfig:
    name: str
    instance_types: tuple[str, ...]
    capacity_type: str = "ON_DEMAND"
    min_size: int = 0
    desired_size: int = 0
    max_size: int = 2
    ami_type: str = "AL2023_x86_64_NVIDIA"
    disk_size_gib: int = 200
    gpus_per_node: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)


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
    # The team's choice (TeamStackConfig.observability), copied here because the spec builder
    # sees one cluster at a time.
    observability: RayObservability = RayObservability()


@dataclass(frozen=True)
class JobResources:
    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None


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


StackConfig = PlatformConfig | TeamStackConfig

# --------------------------------------------------------------------------- reading


class _Problems:
    def __init__(self) -> None:
        self.items: list[str] = []

    def bad(self, path: str, value: Any, allowed: str) -> None:
        self.items.append(f"{path}: got {_show(value)}; {allowed}")

    def missing(self, path: str, example: str) -> None:
        self.items.append(f"{path}: required but not set; fix: {_set_cmd(path, example)}")


def _show(value: Any) -> str:
    text = json.dumps(value, default=str) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _set_cmd(path: str, example: str) -> str:
    nested = "." in path.split(":", 1)[1] or "[" in path
    return f"pulumi config set {'--path ' if nested else ''}'{path}' {example}"


_MISSING = object()


class _Node:
    """A mapping in the config tree that knows its key path and reports into _Problems."""

    def __init__(self, problems: _Problems, path: str, data: Mapping[str, Any]) -> None:
        self.p = problems
        self.path = path
        self.data = data
        self.seen: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path and not self.path.endswith(":") else f"{self.path}{name}"

    def raw(self, name: str) -> Any:
        self.seen.add(name)
        return self.data.get(name, _MISSING)

    def _typed(self, name: str, kinds: tuple[type, ...], what: str, default: Any, example: str) -> Any:
        value = self.raw(name)
        if value is _MISSING or value is None:
            if default is _MISSING:
                self.p.missing(self.key(name), example)
                return None
            return default
        # bool is an int to isinstance; `true` is not a number here.
        if (isinstance(value, bool) and bool not in kinds) or not isinstance(value, kinds):
            self.p.bad(self.key(name), value, f"expected {what}")
            return None if default is _MISSING else default
        return value

    def str(self, name: str, default: Any = _MISSING, example: str = "<value>",
            choices: tuple[str, ...] | None = None, pattern: re.Pattern[str] | None = None,
            rule: str = "") -> Any:
        value = self._typed(name, (str,), "a string", default, example)
        if value is None or value == default:
            return value
        if choices is not None and value not in choices:
            self.p.bad(self.key(name), value, f"allowed: {', '.join(choices)}")
        elif pattern is not None and not pattern.match(value):
            self.p.bad(self.key(name), value, rule)
        return value

    def int(self, name: str, default: Any = _MISSING, example: str = "1", minimum: int | None = None,
            maximum: int | None = None) -> Any:
        value = self._typed(name, (int,), "an integer", default, example)
        if isinstance(value, int) and not isinstance(value, bool):
            if minimum is not None and value < minimum:
                self.p.bad(self.key(name), value, f"must be >= {minimum}")
            elif maximum is not None and value > maximum:
                self.p.bad(self.key(name), value, f"must be <= {maximum}")
        return value

    def number(self, name: str, minimum: float = 0) -> float | None:
        value = self._typed(name, (int, float), "a number", None, "1")
        if value is not None and value < minimum:
            self.p.bad(self.key(name), value, f"must be >= {minimum}")
        return None if value is None else float(value)

    def bool(self, name: str, default: bool) -> bool:
        value = self._typed(name, (bool,), "true or false", default, "true")
        return bool(value)

    def quantity(self, name: str, default: Any = _MISSING, example: str = "4") -> Any:
        value = self.raw(name)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
            self.data = {**self.data, name: value}
        self.seen.discard(name)
        return self.str(name, default, example, pattern=QUANTITY,
                        rule="expected a Kubernetes quantity such as 4, 500m, 16Gi")

    def str_list(self, name: str, default: Any = _MISSING, example: str = "'[\"a\"]'",
                 item: Callable[[str, Any], None] | None = None) -> tuple[str, ...]:
        value = self._typed(name, (list,), "a list of strings", default, example)
        if value is None:
            return ()
        out: list[str] = []
        for i, v in enumerate(value):
            if not isinstance(v, str):
                self.p.bad(f"{self.key(name)}[{i}]", v, "expected a string")
                continue
            if item is not None:
                item(f"{self.key(name)}[{i}]", v)
            out.append(v)
        return tuple(out)

    def str_map(self, name: str) -> dict[str, str]:
        value = self._typed(name, (dict,), "a map of string to string", {}, "")
        out: dict[str, str] = {}
        for k, v in (value or {}).items():
            if not isinstance(v, str):
                self.p.bad(f"{self.key(name)}.{k}", v, "expected a string (quote numbers and booleans)")
            else:
                out[str(k)] = v
        return out

    def any_map(self, name: str) -> dict[str, Any]:
        return dict(self._typed(name, (dict,), "a map", {}, "") or {})

    def child(self, name: str, required: bool = False, example: str = "'{...}'") -> "_Node | None":
        value = self._typed(name, (dict,), "a map", _MISSING if required else None, example)
        return None if value is None else _Node(self.p, self.key(name), value)

    def children(self, name: str, required: bool = False) -> list["_Node"]:
        value = self._typed(name, (list,), "a list of maps", _MISSING if required else [], "'[...]'")
        nodes: list[_Node] = []
        for i, item in enumerate(value or []):
            if not isinstance(item, dict):
                self.p.bad(f"{self.key(name)}[{i}]", item, "expected a map")
                continue
            nodes.append(_Node(self.p, f"{self.key(name)}[{i}]", item))
        return nodes

    def done(self) -> None:
        """Report keys nobody read: a typo must not silently fall back to a default."""
        for extra in sorted(set(self.data) - self.seen):
            allowed = ", ".join(sorted(self.seen))
            self.p.bad(self.key(extra), self.data[extra], f"unknown key; known keys here: {allowed}")


def _ns(key: str) -> str:
    return f"{PROJECT}:{key}"


def _check_dns(p: _Problems, path: str, value: str | None, max_len: int, what: str,
               pattern: re.Pattern[str] = DNS1035) -> None:
    if value is None:
        return
    if not pattern.match(value) or len(value) > max_len:
        kind = "DNS-1035 label" if pattern is DNS1035 else "DNS-1123 label"
        p.bad(path, value, f"{what} must be a {kind}: lowercase letters, digits and '-', "
                           f"starting with a letter, ending alphanumeric, at most {max_len} characters")


def _check_range(p: _Problems, node: _Node, lo: str, mid: str | None, hi: str,
                 vals: tuple[int | None, int | None, int | None]) -> None:
    low, desired, high = vals
    if low is None or high is None:
        return
    if low > high:
        p.bad(node.key(lo), low, f"{lo} must be <= {hi} ({high})")
    if mid is not None and desired is not None and not (low <= desired <= high):
        p.bad(node.key(mid), desired, f"{mid} must lie between {lo} ({low}) and {hi} ({high})")


# --------------------------------------------------------------------------- platform


def _parse_network(p: _Problems, root: _Node) -> NetworkConfig:
    node = root.child("network")
    if node is None:
        return NetworkConfig()
    cidr = node.str("vpcCidr", NetworkConfig.vpc_cidr, "10.0.0.0/16")
    try:
        net = ipaddress.ip_network(cidr)
        if net.prefixlen > 20:
            p.bad(node.key("vpcCidr"), cidr, "needs room for 2 subnets per AZ: use a /20 or larger")
    except ValueError:
        p.bad(node.key("vpcCidr"), cidr, "expected an IPv4 CIDR such as 10.0.0.0/16")
    cfg = NetworkConfig(
        vpc_cidr=cidr,
        az_count=node.int("azCount", NetworkConfig.az_count, minimum=2, maximum=6),
        nat=node.str("natGateways", NetworkConfig.nat, choices=NAT_MODES),
        existing_vpc_id=node.str("existingVpcId", None, pattern=re.compile(r"^vpc-[0-9a-f]+$"),
                                 rule="expected a VPC id such as vpc-0abc123"),
        existing_private_subnet_ids=node.str_list("existingPrivateSubnetIds", []),
        existing_public_subnet_ids=node.str_list("existingPublicSubnetIds", []),
    )
    if cfg.uses_existing_vpc and len(cfg.existing_private_subnet_ids) < 2:
        p.bad(node.key("existingPrivateSubnetIds"), list(cfg.existing_private_subnet_ids),
              "an existing VPC needs >= 2 private subnet ids in different AZs (EKS requires 2 AZs)")
    if not cfg.uses_existing_vpc and (cfg.existing_private_subnet_ids or cfg.existing_public_subnet_ids):
        p.bad(node.key("existingVpcId"), None, "subnet ids were given without existingVpcId")
    node.done()
    return cfg


def _parse_system_nodes(node: _Node | None) -> SystemNodesConfig:
    if node is None:
        return SystemNodesConfig()
    d = SystemNodesConfig()
    cfg = SystemNodesConfig(
        instance_types=node.str_list("instanceTypes", list(d.instance_types)),
        min_size=node.int("minSize", d.min_size, minimum=1),
        desired_size=node.int("desiredSize", d.desired_size, minimum=1),
        max_size=node.int("maxSize", d.max_size, minimum=1),
        disk_size_gib=node.int("diskSizeGiB", d.disk_size_gib, minimum=20),
    )
    for i, it in enumerate(cfg.instance_types):
        if it.split(".")[0] in GPU_INSTANCE_FAMILIES:
            node.p.bad(f"{node.key('instanceTypes')}[{i}]", it, "the system node group must not use GPU instances")
    _check_range(node.p, node, "minSize", "desiredSize", "maxSize",
                 (cfg.min_size, cfg.desired_size, cfg.max_size))
    node.done()
    return cfg


def _check_cidr(p: _Problems, path: str, value: str) -> None:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        p.bad(path, value, "expected a CIDR such as 203.0.113.0/24")
        return
    if value in ("0.0.0.0/0", "::/0"):
        p.bad(path, value, "opening the API server to the whole internet is refused; list your office/VPN CIDRs")


def _check_arn(p: _Problems, path: str, value: str) -> None:
    if not ARN.match(value):
        p.bad(path, value, "expected an IAM role or user ARN such as arn:aws:iam::123456789012:role/admins")


def _parse_cluster(p: _Problems, root: _Node, environment: str | None) -> ClusterConfig | None:
    node = root.child("cluster", required=True, example="'{\"provider\": \"eks\", \"name\": \"ray-dev\"}'")
    if node is None:
        return None
    provider = node.str("provider", _MISSING, "eks", choices=PROVIDERS)
    name = node.str("name", _MISSING, "ray-dev")
    _check_dns(p, node.key("name"), name, 100, "cluster name", DNS1123)
    d = ClusterConfig(provider="eks", name="x")
    if provider == "existing":
        cfg = ClusterConfig(
            provider=provider, name=name,
            kubernetes_version=node.str("kubernetesVersion", d.kubernetes_version, choices=tuple(EKS_VERSIONS)),
            kubeconfig_path=node.str("kubeconfigPath", None),
            kube_context=node.str("context", None),
        )
        node.done()
        return cfg
    public = node.bool("endpointPublicAccess", d.endpoint_public_access)
    cidrs = node.str_list("publicAccessCidrs", [], item=lambda path, v: _check_cidr(p, path, v))
    if public and not cidrs:
        p.bad(node.key("publicAccessCidrs"), [], "a public endpoint needs an allow-list of CIDRs")
    if not public and cidrs:
        p.bad(node.key("publicAccessCidrs"), list(cidrs), "only meaningful with endpointPublicAccess: true")
    if public and environment == "prod":
        p.bad(node.key("endpointPublicAccess"), True, "prod clusters use the private endpoint only")
    log_types = node.str_list("logTypes", list(d.log_types))
    for i, lt in enumerate(log_types):
        if lt not in CONTROL_PLANE_LOG_TYPES:
            p.bad(f"{node.key('logTypes')}[{i}]", lt, f"allowed: {', '.join(CONTROL_PLANE_LOG_TYPES)}")
    cfg = ClusterConfig(
        provider=provider or "eks", name=name,
        kubernetes_version=node.str("kubernetesVersion", d.kubernetes_version, choices=tuple(EKS_VERSIONS)),
        endpoint_public_access=public,
        public_access_cidrs=cidrs,
        admin_principal_arns=node.str_list("adminPrincipalArns", [], item=lambda path, v: _check_arn(p, path, v)),
        log_types=log_types,
        system_nodes=_parse_system_nodes(node.child("systemNodes")),
        kms_deletion_window_days=node.int("kmsDeletionWindowDays", d.kms_deletion_window_days,
                                          minimum=7, maximum=30),
    )
    node.done()
    return cfg


def _check_unique(p: _Problems, list_path: str, names: list[str], message: str) -> None:
    """Report every repeat of a name at `<list_path>[i].name`; `{first}` in `message` is the first index."""
    first: dict[str, int] = {}
    for i, name in enumerate(names):
        if name in first:
            p.bad(f"{list_path}[{i}].name", name, message.format(first=first[name]))
        first.setdefault(name, i)


def _parse_gpu_pool(p: _Problems, node: _Node) -> GpuPoolConfig:
    name = node.str("name", _MISSING, "g5-ondemand")
    _check_dns(p, node.key("name"), name, 40, "GPU pool name")
    instance_types = node.str_list("instanceTypes", _MISSING, "'[\"g5.xlarge\"]'")
    if node.raw("instanceTypes") is not _MISSING and not instance_types:
        p.bad(node.key("instanceTypes"), [], "a GPU pool needs at least one instance type")
    for i, it in enumerate(instance_types):
        if it.split(".")[0] not in GPU_INSTANCE_FAMILIES:
            p.bad(f"{node.key('instanceTypes')}[{i}]", it,
                  f"not an NVIDIA GPU instance type; families: {', '.join(GPU_INSTANCE_FAMILIES)}")
    d = GpuPoolConfig(name="x", instance_types=())
    labels = node.str_map("labels")
    for k in labels:
        if k.startswith("ray-platform.io/"):
            p.bad(f"{node.key('labels')}.{k}", labels[k], "the ray-platform.io/ prefix is reserved for labels the platform sets")
    cfg = GpuPoolConfig(
        name=name, instance_types=instance_types,
        capacity_type=node.str("capacityType", d.capacity_type, choices=CAPACITY_TYPES),
        min_size=node.int("minSize", d.min_size, minimum=0),
        desired_size=node.int("desiredSize", d.desired_size, minimum=0),
        max_size=node.int("maxSize", d.max_size, minimum=1),
        ami_type=node.str("amiType", d.ami_type, choices=GPU_AMI_TYPES),
        disk_size_gib=node.int("diskSizeGiB", d.disk_size_gib, minimum=50),
        gpus_per_node=node.int("gpusPerNode", d.gpus_per_node, minimum=1, maximum=16),
        labels=labels,
    )
    _check_range(p, node, "minSize", "desiredSize", "maxSize", (cfg.min_size, cfg.desired_size, cfg.max_size))
    node.done()
    return cfg


def _parse_platform(p: _Problems, root: _Node, stack: str, environment: str | None,
                    aws_region: str | None) -> PlatformConfig | None:
    cluster = _parse_cluster(p, root, environment)
    network = _parse_network(p, root)
    pools = tuple(_parse_gpu_pool(p, n) for n in root.children("gpuPools"))
    _check_unique(p, _ns("gpuPools"), [pool.name for pool in pools], "duplicates gpuPools[{first}].name")
    addons_node = root.child("addons")
    addons = AddonsConfig()
    if addons_node is not None:
        addons = AddonsConfig(
            cluster_autoscaler=addons_node.bool("clusterAutoscaler", addons.cluster_autoscaler),
            nvidia_device_plugin=addons_node.bool("nvidiaDevicePlugin", addons.nvidia_device_plugin),
        )
        addons_node.done()
    kr_node = root.child("kuberay")
    kuberay = KubeRayConfig()
    if kr_node is not None:
        ns = kr_node.str("namespace", kuberay.namespace)
        _check_dns(p, kr_node.key("namespace"), ns, 63, "namespace", DNS1123)
        kuberay = KubeRayConfig(namespace=ns, watch_namespaces=kr_node.str_list("watchNamespaces", []))
        kr_node.done()
    kubeconfig = root.str("kubeconfig", None)
    observability = _parse_observability(p, root, cluster)
    grafana_admin_password = root.str("grafanaAdminPassword", None)
    if observability.grafana is not None and grafana_admin_password is None:
        p.missing(_ns("grafanaAdminPassword"), "--secret \"$(openssl rand -base64 24)\"")
    if observability.grafana is None and grafana_admin_password is not None:
        p.bad(_ns("grafanaAdminPassword"), SECRET_PLACEHOLDER, "only used with observability.grafana")
    if cluster is None:
        return None
    if cluster.provider == "eks":
        if not aws_region:
            p.missing("aws:region", "us-west-2")
        if pools and not addons.nvidia_device_plugin:
            p.bad(f"{_ns('addons')}.nvidiaDevicePlugin", False,
                  "GPU pools on EKS need the NVIDIA device plugin, or no pod can request nvidia.com/gpu")
        if kubeconfig is not None:
            p.bad(_ns("kubeconfig"), SECRET_PLACEHOLDER, "only for cluster.provider: existing; EKS builds its own")
    elif cluster.provider == "existing":
        if pools:
            p.bad(_ns("gpuPools"), [pl.name for pl in pools],
                  "gpuPools create AWS node groups; an existing cluster brings its own nodes (label them instead)")
        if addons.cluster_autoscaler:
            p.bad(f"{_ns('addons')}.clusterAutoscaler", True,
                  "the Cluster Autoscaler here is AWS-specific; set it to false for existing clusters")
        if (kubeconfig is None) == (cluster.kubeconfig_path is None):
            p.bad(f"{_ns('cluster')}.kubeconfigPath", cluster.kubeconfig_path,
                  f"an existing cluster needs exactly one of cluster.kubeconfigPath or the secret "
                  f"{_ns('kubeconfig')} (pulumi config set --secret {_ns('kubeconfig')} < kubeconfig.yaml)")
    return PlatformConfig(stack=stack, environment=environment or "", cluster=cluster, network=network,
                          gpu_pools=pools, addons=addons, kuberay=kuberay, aws_region=aws_region,
                          kubeconfig=kubeconfig, observability=observability,
                          grafana_admin_password=grafana_admin_password)


def _piece(node: _Node, name: str) -> _Node | None:
    """The block of one observability piece, or None when it is absent or `enabled: false`."""
    child = node.child(name)
    if child is None:
        return None
    enabled = child.bool("enabled", True)
    if not enabled:
        # Its other settings may stay in the file (an existing cluster switching a piece off).
        child.seen.update(child.data)
    return child if enabled else None


def _parse_observability(p: _Problems, root: _Node, cluster: ClusterConfig | None) -> ObservabilityConfig:
    node = root.child("observability")
    d = ObservabilityConfig()
    if node is None:
        return d
    namespace = node.str("namespace", d.namespace)
    _check_dns(p, node.key("namespace"), namespace, 63, "namespace", DNS1123)
    prometheus = grafana = log_shipping = None
    pnode = _piece(node, "prometheus")
    if pnode is not None:
        dp = PrometheusConfig()
        prometheus = PrometheusConfig(
            retention=pnode.str("retention", dp.retention, pattern=PROMETHEUS_DURATION,
                                rule="expected a Prometheus duration such as 15d, 12h or 2w"),
            storage_size=pnode.quantity("storageSize", dp.storage_size, "50Gi"),
            storage_class=pnode.str("storageClass", None),
        )
        pnode.done()
    gnode = _piece(node, "grafana")
    if gnode is not None:
        grafana = GrafanaConfig(iframe_host=gnode.str(
            "iframeHost", GrafanaConfig.iframe_host, pattern=HTTP_URL,
            rule="expected the URL a browser reaches Grafana at, such as http://localhost:3000"))
        gnode.done()
        if prometheus is None:
            p.bad(gnode.key("enabled"), True, "Grafana shows the Ray dashboards from this platform's Prometheus; "
                                              "enable observability.prometheus too")
    dnode = _piece(node, "dcgmExporter")
    if dnode is not None:
        dnode.done()
    lnode = _piece(node, "logShipping")
    if lnode is not None:
        dl = LogShippingConfig()
        log_shipping = LogShippingConfig(
            destination=lnode.str("destination", dl.destination, choices=LOG_DESTINATIONS),
            retention_days=lnode.int("retentionDays", dl.retention_days),
        )
        days = log_shipping.retention_days
        if isinstance(days, int) and days not in CLOUDWATCH_RETENTION_DAYS:
            p.bad(lnode.key("retentionDays"), days,
                  f"CloudWatch Logs accepts: {', '.join(map(str, CLOUDWATCH_RETENTION_DAYS))}")
        if log_shipping.destination == "none":
            p.bad(lnode.key("destination"), "none", "contradicts enabled: true; set logShipping.enabled: false")
            log_shipping = None
        elif cluster is not None and cluster.provider == "existing":
            p.bad(lnode.key("enabled"), True,
                  "shipping to CloudWatch needs an IAM role for service accounts (IRSA), which only EKS "
                  "platform stacks create; set observability.logShipping.enabled: false")
        lnode.done()
    node.done()
    return ObservabilityConfig(namespace=namespace, prometheus=prometheus, grafana=grafana,
                               dcgm_exporter=dnode is not None, log_shipping=log_shipping)


# --------------------------------------------------------------------------- team


def _check_group(p: _Problems, path: str, value: str) -> None:
    if not value.strip():
        p.bad(path, value, "a group name must not be empty (it becomes a RoleBinding subject)")


def _check_not_above(p: _Problems, path: str, value: str | None, ceiling: str, what: str) -> None:
    if value is not None and _quantity_value(value) > _quantity_value(ceiling):
        p.bad(path, value, f"must be <= {what} ({ceiling})")


def _parse_team(p: _Problems, root: _Node) -> TeamConfig | None:
    node = root.child("team", required=True, example="'{\"name\": \"vision\", ...}'")
    if node is None:
        return None
    name = node.str("name", _MISSING, "vision")
    _check_dns(p, node.key("name"), name, 40, "team name")
    groups = node.str_list("groups", _MISSING, "'[\"vision-engineers\"]'",
                           item=lambda path, v: _check_group(p, path, v))
    if node.raw("groups") is not _MISSING and not groups:
        p.bad(node.key("groups"), [], "name at least one group to bind the team's Role to")
    qnode = node.child("quota", required=True, example="'{\"cpu\": \"64\", \"memory\": \"256Gi\", \"gpus\": 8}'")
    quota = None
    if qnode is not None:
        cpu = qnode.quantity("cpu", _MISSING, "64")
        memory = qnode.quantity("memory", _MISSING, "256Gi")
        gpus = qnode.int("gpus", _MISSING, "8", minimum=0)
        pods = qnode.int("pods", QuotaConfig.pods, minimum=1)
        qnode.done()
        if None not in (cpu, memory, gpus):
            quota = QuotaConfig(cpu=cpu, memory=memory, gpus=gpus, pods=pods)
    lnode = node.child("limitRange")
    limit_range = LimitRangeConfig()
    if lnode is not None:
        limit_range = LimitRangeConfig(
            default_cpu=lnode.quantity("defaultCpu", limit_range.default_cpu),
            default_memory=lnode.quantity("defaultMemory", limit_range.default_memory),
            max_cpu=lnode.quantity("maxCpu", limit_range.max_cpu),
            max_memory=lnode.quantity("maxMemory", limit_range.max_memory),
        )
        _check_not_above(p, lnode.key("defaultCpu"), limit_range.default_cpu, limit_range.max_cpu, "maxCpu")
        _check_not_above(p, lnode.key("defaultMemory"), limit_range.default_memory, limit_range.max_memory,
                         "maxMemory")
        lnode.done()
    network_policy = node.bool("networkPolicy", True)
    node.done()
    if quota is None or name is None:
        return None
    return TeamConfig(name=name, groups=groups, quota=quota, limit_range=limit_range,
                      network_policy=network_policy)


def _check_shm(p: _Problems, node: _Node, shm: str | None, memory: str | None) -> None:
    # /dev/shm is a memory-backed emptyDir: whatever Ray's object store puts there counts
    # against the container's memory limit, so it has to leave room for the Ray processes.
    if shm is not None and memory is not None and _quantity_value(shm) >= _quantity_value(memory):
        p.bad(node.key("shmSize"), shm, f"must be smaller than the container's memory ({memory}); "
                                        f"/dev/shm is carved out of it")


def _parse_worker_group(p: _Problems, node: _Node) -> WorkerGroupConfig:
    name = node.str("name", _MISSING, "gpu")
    _check_dns(p, node.key("name"), name, 30, "worker group name")
    d = WorkerGroupConfig(name="x", cpu="1", memory="1Gi")
    cfg = WorkerGroupConfig(
        name=name,
        cpu=node.quantity("cpu", _MISSING, "4"),
        memory=node.quantity("memory", _MISSING, "16Gi"),
        gpus=node.int("gpus", d.gpus, minimum=0, maximum=16),
        replicas=node.int("replicas", d.replicas, minimum=0),
        min_replicas=node.int("minReplicas", d.min_replicas, minimum=0),
        max_replicas=node.int("maxReplicas", d.max_replicas, minimum=0),
        shm_size=node.quantity("shmSize", d.shm_size),
        gpu_pool=node.str("gpuPool", None),
    )
    _check_range(p, node, "minReplicas", "replicas", "maxReplicas",
                 (cfg.min_replicas, cfg.replicas, cfg.max_replicas))
    _check_shm(p, node, cfg.shm_size, cfg.memory)
    if cfg.gpus == 0 and cfg.gpu_pool is not None:
        p.bad(node.key("gpuPool"), cfg.gpu_pool, "a CPU worker group (gpus: 0) must not target a GPU pool")
    node.done()
    return cfg


def _parse_gcs_fault_tolerance(p: _Problems, node: _Node | None) -> GcsFaultToleranceConfig | None:
    if node is None:
        return None
    backend = node.str("backend", _MISSING, "redis", choices=GCS_FT_BACKENDS)
    ft = GcsFaultToleranceConfig(
        backend=backend,
        redis_address=node.str("redisAddress", None),
        storage_size=node.quantity("storageSize", GcsFaultToleranceConfig.storage_size),
    )
    if backend == "redis" and not ft.redis_address:
        p.missing(node.key("redisAddress"), "redis.example.internal:6379")
    if backend == "rocksdb" and ft.redis_address:
        p.bad(node.key("redisAddress"), ft.redis_address, "only used with backend: redis")
    if backend == "redis" and "storageSize" in node.data:
        p.bad(node.key("storageSize"), node.data["storageSize"],
              "only used with backend: rocksdb (the size of the head's GCS volume)")
    node.done()
    return ft


def _parse_ray_cluster(p: _Problems, node: _Node) -> RayClusterConfig:
    name = node.str("name", _MISSING, "ray")
    _check_dns(p, node.key("name"), name, RAYCLUSTER_NAME_MAX, "RayCluster name")
    hnode = node.child("head")
    head = HeadConfig()
    if hnode is not None:
        head = HeadConfig(
            cpu=hnode.quantity("cpu", head.cpu),
            memory=hnode.quantity("memory", head.memory),
            shm_size=hnode.quantity("shmSize", head.shm_size),
            service_type=hnode.str("serviceType", head.service_type, choices=SERVICE_TYPES),
        )
        _check_shm(p, hnode, head.shm_size, head.memory)
        hnode.done()
    groups = tuple(_parse_worker_group(p, n) for n in node.children("workerGroups"))
    _check_unique(p, node.key("workerGroups"), [g.name for g in groups], "worker group names must be unique")
    ft = _parse_gcs_fault_tolerance(p, node.child("gcsFaultTolerance"))
    anode = node.child("autoscaler")
    d = RayClusterConfig(name="x")
    idle, mode = d.idle_timeout_seconds, d.upscaling_mode
    autoscaler_cpu, autoscaler_memory = d.autoscaler_cpu, d.autoscaler_memory
    if anode is not None:
        idle = anode.int("idleTimeoutSeconds", idle, minimum=30)
        mode = anode.str("upscalingMode", mode, choices=UPSCALING_MODES)
        autoscaler_cpu = anode.quantity("cpu", autoscaler_cpu)
        autoscaler_memory = anode.quantity("memory", autoscaler_memory)
        anode.done()
    cfg = RayClusterConfig(name=name, head=head, worker_groups=groups, idle_timeout_seconds=idle,
                           upscaling_mode=mode, autoscaler_cpu=autoscaler_cpu,
                           autoscaler_memory=autoscaler_memory, gcs_fault_tolerance=ft,
                           auth=node.bool("auth", False))
    node.done()
    return cfg


def _check_code_uri(p: _Problems, path: str, value: str | None) -> None:
    if value is not None and not CODE_URI.match(value):
        p.bad(path, value, "expected a remote .zip (s3://, gs:// or https://) whose single top-level directory "
                           "holds the jobs/ package; the kuberay path never ships a local path")


def _worker_group_caps(p: _Problems, node: _Node, cluster: RayClusterConfig | None) -> dict[str, int]:
    caps: dict[str, int] = {}
    known = sorted(g.name for g in cluster.worker_groups) if cluster is not None else None
    for group, cap in node.any_map("workerGroups").items():
        path = f"{node.key('workerGroups')}.{group}"
        if known is not None and group not in known:
            p.bad(path, cap, f"no such worker group in the job's RayCluster; known: {', '.join(known) or 'none'}")
        elif isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            p.bad(path, cap, "expected the most workers of this group the job's cluster may have (an integer >= 1)")
        else:
            caps[str(group)] = cap
    return caps


def _parse_kuberay(p: _Problems, node: _Node, kind: str | None,
                   cluster: RayClusterConfig | None) -> KubeRayJobConfig | KubeRayServiceConfig | None:
    kr = node.child("kuberay", required=True, example="'{\"codeUri\": \"s3://my-bucket/ray-platform/jobs-1.0.0.zip\"}'")
    if kr is None:
        return None
    code_uri = kr.str("codeUri", _MISSING, "s3://my-bucket/ray-platform/jobs-1.0.0.zip")
    _check_code_uri(p, kr.key("codeUri"), code_uri)
    cfg: KubeRayJobConfig | KubeRayServiceConfig
    if kind == "serve":
        ds = KubeRayServiceConfig(code_uri="")
        cfg = KubeRayServiceConfig(
            code_uri=code_uri or "",
            upgrade_strategy=kr.str("upgradeStrategy", ds.upgrade_strategy, choices=UPGRADE_STRATEGIES),
            service_type=kr.str("serviceType", ds.service_type, choices=SERVICE_TYPES),
            initializing_timeout_seconds=kr.int("initializingTimeoutSeconds", None, minimum=60),
            health_check_period_seconds=kr.number("healthCheckPeriodSeconds", minimum=1),
            health_check_timeout_seconds=kr.number("healthCheckTimeoutSeconds", minimum=1),
            cluster_deletion_delay_seconds=kr.int("clusterDeletionDelaySeconds", None, minimum=0),
        )
        if cfg.cluster_deletion_delay_seconds is not None and cfg.upgrade_strategy != "NewCluster":
            p.bad(kr.key("clusterDeletionDelaySeconds"), cfg.cluster_deletion_delay_seconds,
                  "only with upgradeStrategy: NewCluster (how long the old cluster outlives the switch)")
    else:
        dj = KubeRayJobConfig(code_uri="")
        ephemeral = kr.bool("ephemeral", dj.ephemeral)
        cfg = KubeRayJobConfig(
            code_uri=code_uri or "", ephemeral=ephemeral,
            worker_groups=_worker_group_caps(p, kr, cluster),
            ttl_seconds_after_finished=kr.int("ttlSecondsAfterFinished", dj.ttl_seconds_after_finished, minimum=0),
            active_deadline_seconds=kr.int("activeDeadlineSeconds", None, minimum=1),
            backoff_limit=kr.int("backoffLimit", dj.backoff_limit, minimum=0, maximum=10),
        )
        if not ephemeral:
            for key in ("workerGroups", "ttlSecondsAfterFinished"):
                if key in kr.data:
                    p.bad(kr.key(key), kr.data[key],
                          "only with ephemeral: true (a job on the long-lived cluster leaves that cluster as it is)")
            if cfg.backoff_limit:
                p.bad(kr.key("backoffLimit"), cfg.backoff_limit,
                      "only with ephemeral: true: KubeRay retries a job on a new cluster, which a job on the "
                      "long-lived cluster cannot have")
    kr.done()
    return cfg


def _parse_job(p: _Problems, node: _Node, clusters: Mapping[str, RayClusterConfig]) -> JobConfig:
    name = node.str("name", _MISSING, "train-digits")
    _check_dns(p, node.key("name"), name, 40, "job name")
    cluster = node.str("cluster", _MISSING, "ray")
    if cluster is not None and clusters and cluster not in clusters:
        p.bad(node.key("cluster"), cluster, f"no such RayCluster in this stack; known: {', '.join(sorted(clusters))}")
    rnode = node.child("resources")
    resources = JobResources()
    if rnode is not None:
        resources = JobResources(cpus=rnode.number("cpus"), gpus=rnode.number("gpus"),
                                 memory=rnode.int("memoryBytes", None, minimum=1))
        rnode.done()
    kind = node.str("kind", _MISSING, "train", choices=JOB_KINDS)
    submission = node.str("submission", JobConfig.submission, choices=SUBMISSIONS)
    kuberay = None
    if submission == "kuberay":
        kuberay = _parse_kuberay(p, node, kind, clusters.get(cluster or ""))
    elif node.raw("kuberay") is not _MISSING:
        p.bad(node.key("kuberay"), node.data["kuberay"], "only with submission: kuberay")
    cfg = JobConfig(
        name=name, kind=kind,
        cluster=cluster,
        settings=node.any_map("settings"),
        runtime_env=node.any_map("runtimeEnv"),
        resources=resources,
        wait=node.str("wait", JobConfig.wait, choices=JOB_WAITS),
        timeout_seconds=node.int("timeoutSeconds", JobConfig.timeout_seconds, minimum=10),
        depends_on=node.str_list("dependsOn", []),
        submission=submission,
        kuberay=kuberay,
    )
    for key in ("py_modules", "working_dir"):
        if key in cfg.runtime_env:
            p.bad(f"{node.key('runtimeEnv')}.{key}", cfg.runtime_env[key],
                  "set by the platform (the jobs/ package is shipped and hashed for you, or kuberay.codeUri)")
    if isinstance(kuberay, KubeRayServiceConfig):
        if rnode is not None:
            p.bad(node.key("resources"), node.data["resources"],
                  "a RayService has no driver to reserve resources for; size the Serve replicas with "
                  "settings.num_cpus / use_gpu")
        if cfg.wait == "running":
            p.bad(node.key("wait"), cfg.wait, "a RayService is waited for until it is Ready: use succeeded or none")
    elif isinstance(kuberay, KubeRayJobConfig) and resources.memory is not None:
        p.bad(f"{node.key('resources')}.memoryBytes", resources.memory,
              "a RayJob cannot reserve entrypoint memory (the CRD has no field for it); use cpus/gpus, "
              "or submission: sdk")
    node.done()
    return cfg


def rayservice_owners(jobs: tuple[JobConfig, ...]) -> dict[str, JobConfig]:
    """RayCluster name -> the serve job whose RayService owns (creates and upgrades) that cluster."""
    owners: dict[str, JobConfig] = {}
    for job in jobs:
        if isinstance(job.kuberay, KubeRayServiceConfig):
            owners.setdefault(job.cluster, job)
    return owners


def _check_rayservice_ownership(p: _Problems, jobs: tuple[JobConfig, ...],
                                clusters: Mapping[str, RayClusterConfig]) -> None:
    owners = rayservice_owners(jobs)
    for i, job in enumerate(jobs):
        owner = owners.get(job.cluster)
        path = f"{_ns('jobs')}[{i}].cluster"
        if owner is None or owner is job:
            if owner is job and len(job.cluster) > KUBERAY_CR_NAME_MAX:
                p.bad(path, job.cluster, f"the RayService takes its cluster's name, which KubeRay limits to "
                                         f"{KUBERAY_CR_NAME_MAX} characters")
            ft = clusters[job.cluster].gcs_fault_tolerance if job.cluster in clusters else None
            if owner is job and ft is not None and ft.backend == "rocksdb":
                # Its volume is ReadWriteOnce and belongs to one head, while a RayService runs a
                # second cluster during every NewCluster upgrade.
                p.bad(path, job.cluster, "a RayService's cluster cannot keep its GCS in rocksdb (one volume, "
                                         "one head); use gcsFaultTolerance.backend: redis")
            continue
        what = "one RayService per cluster" if isinstance(job.kuberay, KubeRayServiceConfig) else \
            "no RayCluster of that name exists for this job to run on"
        p.bad(path, job.cluster, f"RayCluster {job.cluster!r} is owned by the RayService of job {owner.name!r} "
                                 f"(submission: kuberay); {what}")


def _parse_jobs(p: _Problems, root: _Node, clusters: Mapping[str, RayClusterConfig]) -> tuple[JobConfig, ...]:
    jobs = tuple(_parse_job(p, n, clusters) for n in root.children("jobs"))
    names = [j.name for j in jobs]
    _check_unique(p, _ns("jobs"), names, "job names must be unique")
    for i, job in enumerate(jobs):
        for k, dep in enumerate(job.depends_on):
            if dep not in names:
                p.bad(f"{_ns('jobs')}[{i}].dependsOn[{k}]", dep, f"no such job; known: {', '.join(names)}")
            elif names.index(dep) >= i:
                p.bad(f"{_ns('jobs')}[{i}].dependsOn[{k}]", dep, "a job may depend only on jobs listed before it")
    _check_rayservice_ownership(p, jobs, clusters)
    return jobs


def _parse_dashboard(p: _Problems, root: _Node) -> DashboardConfig:
    d = DashboardConfig()
    node = root.child("dashboard")
    if node is None:
        return d
    url = node.str("url", None, "'http://{cluster}-head-svc.{namespace}.svc:8265'")
    # A configured URL only means something in url mode, so it selects that mode.
    access = node.str("access", "url" if url is not None else d.access, choices=DASHBOARD_ACCESS)
    if access == "url" and url is None:
        p.missing(node.key("url"), "'http://{cluster}-head-svc.{namespace}.svc:8265'")
    if access == "tunnel" and url is not None:
        p.bad(node.key("url"), url, "only with access: url; the tunnel finds each cluster's head pod itself")
    if url is not None and not url.startswith(("http://", "https://")):
        p.bad(node.key("url"), url, "expected an http:// or https:// URL template with {cluster} and {namespace}")
    cfg = DashboardConfig(access=access or d.access, url=url or d.url,
                          serve_url=node.str("serveUrl", d.serve_url))
    node.done()
    return cfg


def _quantity_value(q: str | None) -> float:
    """Kubernetes quantity to a float in base units (cores or bytes); 0 for a value already reported bad."""
    m = re.match(r"^([0-9.]+)([a-zA-Z]*)$", q) if isinstance(q, str) else None
    if not m:
        return 0.0
    number, unit = float(m.group(1)), m.group(2)
    scale = {"": 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50}
    return number * scale.get(unit, 1)


@dataclass(frozen=True)
class Demand:
    """What the RayClusters of one namespace request at max scale (every group at maxReplicas)."""

    cpu: float
    memory: float
    gpus: int
    pods: int


def max_demand(clusters: tuple[RayClusterConfig, ...]) -> Demand:
    cpu = memory = 0.0
    gpus = pods = 0
    for c in clusters:
        # Every Ray pod of a team that ships its logs also runs the Fluent Bit sidecar.
        shipper_cpu = _quantity_value(LOG_SHIPPER_CPU) if c.observability.log_shipping else 0.0
        shipper_memory = _quantity_value(LOG_SHIPPER_MEMORY) if c.observability.log_shipping else 0.0
        # The head pod runs Ray and the autoscaler sidecar.
        cpu += _quantity_value(c.head.cpu) + _quantity_value(c.autoscaler_cpu) + shipper_cpu
        memory += _quantity_value(c.head.memory) + _quantity_value(c.autoscaler_memory) + shipper_memory
        pods += 1
        for g in c.worker_groups:
            cpu += (_quantity_value(g.cpu) + shipper_cpu) * g.max_replicas
            memory += (_quantity_value(g.memory) + shipper_memory) * g.max_replicas
            gpus += g.gpus * g.max_replicas
            pods += g.max_replicas
    return Demand(cpu=cpu, memory=memory, gpus=gpus, pods=pods)


def ephemeral_cluster(job: JobConfig, base: RayClusterConfig) -> RayClusterConfig:
    """The cluster an ephemeral RayJob brings up: `base` with only the capped worker groups.

    Without GCS fault tolerance: a cluster that lives for one job has no state worth keeping
    across a head restart, and it would only add load on the long-lived cluster's Redis.
    """
    caps = job.kuberay.worker_groups if isinstance(job.kuberay, KubeRayJobConfig) else {}
    groups = tuple(
        replace(g, max_replicas=caps[g.name], min_replicas=min(g.min_replicas, caps[g.name]),
                replicas=min(g.replicas, caps[g.name])) if caps else g
        for g in base.worker_groups if not caps or g.name in caps)
    return replace(base, worker_groups=groups, gcs_fault_tolerance=None)


def _plus(a: Demand, b: Demand) -> Demand:
    return Demand(cpu=a.cpu + b.cpu, memory=a.memory + b.memory, gpus=a.gpus + b.gpus, pods=a.pods + b.pods)


def kuberay_demand(jobs: tuple[JobConfig, ...], clusters: tuple[RayClusterConfig, ...]) -> Demand:
    """What the KubeRay custom resources add to the long-lived RayClusters at max scale.

    Every RayJob runs a submitter pod; an ephemeral RayJob brings its own cluster; a RayService
    upgraded with NewCluster runs a second copy of its cluster until the new one takes over. A
    RayService's own cluster replaces the RayCluster of that name, so it is already counted.
    """
    by_name = {c.name: c for c in clusters}
    total = Demand(cpu=0.0, memory=0.0, gpus=0, pods=0)
    for job in jobs:
        base = by_name.get(job.cluster)
        if isinstance(job.kuberay, KubeRayJobConfig):
            total = _plus(total, Demand(cpu=_quantity_value(SUBMITTER_CPU), memory=_quantity_value(SUBMITTER_MEMORY),
                                        gpus=0, pods=1))
            if job.kuberay.ephemeral and base is not None:
                total = _plus(total, max_demand((ephemeral_cluster(job, base),)))
        elif isinstance(job.kuberay, KubeRayServiceConfig) and job.kuberay.upgrade_strategy == "NewCluster" \
                and base is not None:
            total = _plus(total, max_demand((base,)))
    return total


def _check_kuberay_fit(p: _Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...],
                       jobs: tuple[JobConfig, ...]) -> None:
    """The quota must also hold what the KubeRay custom resources start (see kuberay_demand).

    Reported only where the RayClusters alone fit: otherwise _check_quota_fit already says so.
    """
    base, extra = max_demand(clusters), kuberay_demand(jobs, clusters)
    quota = team.quota
    names = ", ".join(j.name for j in jobs if j.kuberay is not None)
    why = (f"the RayClusters at max scale plus what the KubeRay jobs ({names}) start (submitter pods, "
           f"ephemeral RayJob clusters, a RayService's second cluster during a NewCluster upgrade)")
    fix = "raise the quota, cap ephemeral clusters with kuberay.workerGroups, or use upgradeStrategy: None"
    gib = 2**30
    # (key, value shown, quota, RayClusters, KubeRay extra, total format, excess format)
    dimensions = (
        ("gpus", quota.gpus, float(quota.gpus), float(base.gpus), float(extra.gpus), "{:g} GPUs", "{:g}"),
        ("cpu", quota.cpu, _quantity_value(quota.cpu), base.cpu, extra.cpu, "{:g} CPUs", "{:g}"),
        ("memory", quota.memory, _quantity_value(quota.memory) / gib, base.memory / gib, extra.memory / gib,
         "{:g}Gi", "{:g}Gi"),
        ("pods", quota.pods, float(quota.pods), float(base.pods), float(extra.pods), "{:g} pods", "{:g}"),
    )
    for key, shown, cap, used, more, total_fmt, excess_fmt in dimensions:
        if used <= cap + 1e-9 and used + more > cap + 1e-9:
            p.bad(f"{_ns('team')}.quota.{key}", shown,
                  f"{why} can request {total_fmt.format(used + more)}, {excess_fmt.format(used + more - cap)} "
                  f"more than the quota; {fix}")


def _check_quota_fit(p: _Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...]) -> None:
    """Max demand of every RayCluster in the namespace must fit the team quota.

    Otherwise the autoscaler asks for workers the quota refuses: the pods are never
    created and a job waits for resources forever instead of failing at `pulumi up`.
    """
    need = max_demand(clusters)
    quota = team.quota
    path = f"{_ns('team')}.quota"
    if need.gpus > quota.gpus:
        p.bad(f"{path}.gpus", quota.gpus,
              f"the RayClusters can scale to {need.gpus} GPUs, {need.gpus - quota.gpus} more than the quota; "
              f"raise the quota or lower maxReplicas")
    quota_cpu, quota_mem = _quantity_value(quota.cpu), _quantity_value(quota.memory)
    if need.cpu > quota_cpu + 1e-9:
        p.bad(f"{path}.cpu", quota.cpu,
              f"the RayClusters (heads and autoscalers included) can request {need.cpu:g} CPUs at max scale, "
              f"{need.cpu - quota_cpu:g} more than the quota")
    if need.memory > quota_mem:
        p.bad(f"{path}.memory", quota.memory,
              f"the RayClusters (heads and autoscalers included) can request {need.memory / 2**30:g}Gi at max "
              f"scale, {(need.memory - quota_mem) / 2**30:g}Gi more than the quota")
    if need.pods > quota.pods:
        p.bad(f"{path}.pods", quota.pods,
              f"the RayClusters can run {need.pods} pods at max scale, {need.pods - quota.pods} more than the quota")
    for c_i, c in enumerate(clusters):
        for g_i, g in enumerate(c.worker_groups):
            if g.gpus > quota.gpus:
                p.bad(f"{_ns('rayClusters')}[{c_i}].workerGroups[{g_i}].gpus", g.gpus,
                      f"one worker needs more GPUs than the team quota ({quota.gpus})")


def _check_limit_range(p: _Problems, team: TeamConfig, clusters: tuple[RayClusterConfig, ...]) -> None:
    """A container above the namespace's LimitRange max is refused at pod creation, and KubeRay
    would retry it forever; say so before deploying."""
    lr = team.limit_range
    for c_i, c in enumerate(clusters):
        base = f"{_ns('rayClusters')}[{c_i}]"
        containers = [(f"{base}.head", c.head.cpu, c.head.memory)]
        containers += [(f"{base}.workerGroups[{g_i}]", g.cpu, g.memory) for g_i, g in enumerate(c.worker_groups)]
        for path, cpu, memory in containers:
            _check_not_above(p, f"{path}.cpu", cpu, lr.max_cpu, "the team's limitRange.maxCpu")
            _check_not_above(p, f"{path}.memory", memory, lr.max_memory, "the team's limitRange.maxMemory")


def _check_observability_against_platform(p: _Problems, wanted: RayObservability,
                                           platform: PlatformConfig) -> None:
    offered = platform.observability
    if wanted.metrics and offered.prometheus is None:
        p.bad(f"{_ns('observability')}.metrics", True,
              f"platform stack {platform.stack!r} installs no Prometheus (its observability.prometheus)")
    if wanted.log_shipping and offered.log_shipping is None:
        p.bad(f"{_ns('observability')}.logShipping", True,
              f"platform stack {platform.stack!r} ships no logs (its observability.logShipping)")


def _check_against_platform(p: _Problems, team: TeamConfig | None, clusters: tuple[RayClusterConfig, ...],
                            platform: PlatformConfig) -> None:
    watched = platform.kuberay.watch_namespaces
    if team is not None and watched and team.namespace not in watched:
        p.bad(f"{_ns('team')}.name", team.name,
              f"namespace {team.namespace!r} is not watched by the KubeRay operator of platform stack "
              f"{platform.stack!r} (kuberay.watchNamespaces: {', '.join(watched)}); add it there first")
    pools = {pool.name: pool for pool in platform.gpu_pools}
    for c_i, c in enumerate(clusters):
        for g_i, g in enumerate(c.worker_groups):
            path = f"{_ns('rayClusters')}[{c_i}].workerGroups[{g_i}]"
            if g.gpus == 0:
                continue
            if not pools:
                # An existing cluster brings its own GPU nodes, labelled by hand; only EKS pools are known here.
                if platform.is_eks:
                    p.bad(f"{path}.gpus", g.gpus, f"platform stack {platform.stack!r} has no GPU pools (CPU-only)")
                continue
            if g.gpu_pool is not None and g.gpu_pool not in pools:
                p.bad(f"{path}.gpuPool", g.gpu_pool,
                      f"platform stack {platform.stack!r} has GPU pools: {', '.join(pools)}")
                continue
            candidates = [pools[g.gpu_pool]] if g.gpu_pool is not None else list(pools.values())
            # Workers of one group that fit on the pool(s) at the pools' max size.
            capacity = sum(pool.max_size * (pool.gpus_per_node // g.gpus) for pool in candidates)
            if capacity == 0 and g.gpu_pool is not None:
                p.bad(f"{path}.gpus", g.gpus,
                      f"GPU pool {g.gpu_pool!r} has {pools[g.gpu_pool].gpus_per_node} GPU(s) per node")
            elif capacity == 0:
                per_node = ", ".join(f"{pool.name}: {pool.gpus_per_node}" for pool in candidates)
                p.bad(f"{path}.gpus", g.gpus, f"no GPU node of platform stack {platform.stack!r} has that many "
                                              f"GPUs (GPUs per node: {per_node})")
            elif g.max_replicas > capacity:
                where = f"GPU pool {g.gpu_pool!r}" if g.gpu_pool is not None else "the GPU pools together"
                p.bad(f"{path}.maxReplicas", g.max_replicas,
                      f"{where} of platform stack {platform.stack!r} can hold at most {capacity} worker(s) "
                      f"of {g.gpus} GPU(s) at their maxSize")


def _parse_team_stack(p: _Problems, root: _Node, stack: str, environment: str | None,
                      platform_lookup: Callable[[str], PlatformConfig | None] | None) -> TeamStackConfig | None:
    platform_stack = root.str("platformStack", _MISSING, "my-org/ray-platform/dev", pattern=STACK_REF,
                              rule="expected a stack reference such as my-org/ray-platform/dev")
    team = _parse_team(p, root)
    observability = _parse_team_observability(root)
    clusters = tuple(replace(_parse_ray_cluster(p, n), observability=observability)
                     for n in root.children("rayClusters", required=True))
    if root.raw("rayClusters") is not _MISSING and not clusters:
        p.bad(_ns("rayClusters"), [], "declare at least one RayCluster")
    _check_unique(p, _ns("rayClusters"), [c.name for c in clusters], "RayCluster names must be unique in a team")
    jobs = _parse_jobs(p, root, {c.name: c for c in clusters if c.name})
    dashboard = _parse_dashboard(p, root)
    redis_password = root.str("redisPassword", None)
    dashboard_token = root.str("dashboardToken", None)
    uses_redis = any(c.gcs_fault_tolerance and c.gcs_fault_tolerance.backend == "redis" for c in clusters)
    if uses_redis and redis_password is None:
        p.missing(_ns("redisPassword"), "--secret <password>")
    for i, c in enumerate(clusters):
        if c.auth and dashboard_token is None:
            p.bad(f"{_ns('rayClusters')}[{i}].auth", True,
                  f"token auth needs the secret {_ns('dashboardToken')} (pulumi config set --secret "
                  f"{_ns('dashboardToken')} <token>)")
    if team is not None:
        _check_quota_fit(p, team, clusters)
        _check_kuberay_fit(p, team, clusters, jobs)
        _check_limit_range(p, team, clusters)
    if platform_stack and platform_lookup is not None:
        platform = platform_lookup(platform_stack.rsplit("/", 1)[-1])
        if platform is not None:
            _check_against_platform(p, team, clusters, platform)
            _check_observability_against_platform(p, observability, platform)
    if team is None or platform_stack is None or not clusters:
        return None
    return TeamStackConfig(stack=stack, environment=environment or "", platform_stack=platform_stack,
                           team=team, ray_clusters=clusters, jobs=jobs, dashboard=dashboard,
                           redis_password=redis_password, dashboard_token=dashboard_token,
                           observability=observability)


def _parse_team_observability(root: _Node) -> RayObservability:
    node = root.child("observability")
    if node is None:
        return RayObservability()
    cfg = RayObservability(metrics=node.bool("metrics", False), log_shipping=node.bool("logShipping", False))
    node.done()
    return cfg


# --------------------------------------------------------------------------- entry points

PLATFORM_KEYS = ("layer", "environment", "cluster", "network", "gpuPools", "addons", "kuberay", "kubeconfig",
                 "observability", "grafanaAdminPassword")
TEAM_KEYS = ("layer", "environment", "platformStack", "team", "rayClusters", "jobs", "dashboard",
             "redisPassword", "dashboardToken", "observability")
SECRET_KEYS = ("kubeconfig", "redisPassword", "dashboardToken", "grafanaAdminPassword")


def parse(raw: Mapping[str, Any], stack: str, aws_region: str | None = None,
          platform_lookup: Callable[[str], PlatformConfig | None] | None = None) -> StackConfig:
    """Validate one stack's config (keys without the project prefix) into dataclasses.

    `platform_lookup` resolves a platform stack's short name to its config when the
    platform stack file is at hand, so a team stack is checked against the platform's
    GPU pools before anything is deployed.
    """
    p = _Problems()
    root = _Node(p, f"{PROJECT}:", dict(raw))
    layer = root.str("layer", _MISSING, "platform", choices=LAYERS)
    environment = root.str("environment", _MISSING, "dev", pattern=DNS1123,
                           rule="expected a short lowercase name such as dev, staging, prod, local")
    result: StackConfig | None = None
    if layer == "platform":
        result = _parse_platform(p, root, stack, environment, aws_region)
        allowed = PLATFORM_KEYS
    elif layer == "team":
        result = _parse_team_stack(p, root, stack, environment, platform_lookup)
        allowed = TEAM_KEYS
    else:
        allowed = ()
    if allowed:
        for extra in sorted(set(raw) - set(allowed)):
            p.bad(_ns(extra), raw[extra], f"not a {layer}-layer key; known: {', '.join(allowed)}")
    if p.items or result is None:
        raise ConfigError(stack, p.items or ["config is incomplete"])
    return result


def raw_from_pulumi_config(all_config: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Split the engine's flat `project:key -> string` map into our keys and aws:region."""
    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    for key, value in all_config.items():
        if not key.startswith(prefix):
            continue
        short = key[len(prefix):]
        try:
            raw[short] = json.loads(value) if short not in SECRET_KEYS else value
        except (TypeError, ValueError):
            raw[short] = value
    return raw, all_config.get("aws:region")


def load(platform_lookup: Callable[[str], PlatformConfig | None] | None = None) -> StackConfig:
    """Read the current stack's config from the Pulumi runtime (engine or mocks) and parse it."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    all_config = dict(runtime_config.CONFIG.get() or runtime_config.get_config_env())
    raw, region = raw_from_pulumi_config(all_config)
    return parse(raw, pulumi.get_stack(), region, platform_lookup)


def read_stack_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """A `Pulumi.<stack>.yaml` as the engine would pass it: flat `ns:key -> string`, secret keys.

    Encrypted (`secure:`) values cannot be decrypted offline; they become a placeholder
    and are reported as secret keys, so offline renders still treat them as secrets.
    """
    import yaml

    doc = yaml.safe_load(path.read_text()) or {}
    flat: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        if isinstance(value, dict) and set(value) == {"secure"}:
            flat[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        else:
            flat[key] = value if isinstance(value, str) else json.dumps(value)
    return flat, secret_keys


def stack_name(path: Path) -> str:
    return path.name[len("Pulumi."):-len(".yaml")]


def stack_file(stacks_dir: Path, stack: str) -> Path:
    """The stack file of `stack` in `stacks_dir`; a fully qualified reference (org/project/name) counts by its name."""
    return stacks_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def parse_stack_file(path: Path, platform_lookup: Callable[[str], PlatformConfig | None] | None = None
                     ) -> StackConfig:
    """Parse a stack file as `pulumi up` would see it (secrets as placeholders)."""
    flat, _ = read_stack_file(path)
    raw, region = raw_from_pulumi_config(flat)
    return parse(raw, stack_name(path), region, platform_lookup)


def platform_lookup_from_dir(stacks_dir: Path) -> Callable[[str], PlatformConfig | None]:
    """Resolve a platform stack by short name from the repo's stack files (None if absent or broken)."""

    def lookup(name: str) -> PlatformConfig | None:
        path = stack_file(stacks_dir, name)
        if not path.exists():
            return None
        try:
            cfg = parse_stack_file(path)
        except ConfigError:
            return None
        return cfg if isinstance(cfg, PlatformConfig) else None

    return lookup
