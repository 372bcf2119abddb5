"""Platform stack config (`layer: platform`): the cluster, its network, GPU pools, add-ons,
the KubeRay operator and observability."""
from __future__ import annotations

import ipaddress
import re
from dataclasses import replace

from components.config.model import (
    ARN, CAPACITY_TYPES, CLOUDWATCH_RETENTION_DAYS, CONTROL_PLANE_LOG_TYPES, DNS1123, DNS_LABEL_MAX, GPU_AMI_TYPES,
    GPU_INSTANCE_FAMILIES, HTTP_URL, LOG_DESTINATIONS, NAT_MODES, PROMETHEUS_DURATION, PROVIDERS, SECRET_PLACEHOLDER,
    AddonsConfig, ClusterConfig, GpuPoolConfig, GrafanaConfig, KubeRayConfig, LogShippingConfig, NetworkConfig,
    ObservabilityConfig, PlatformConfig, PrometheusConfig, SourcesConfig, SystemNodesConfig,
)
from components.config.queues import parse_platform_queues
from components.config.capacity import parse_capacity, parse_consolidation, parse_fallback
from components.config.pools import IAM_ROLE_NAME_MAX, NODE_ROLE_SUFFIX
from components.config.reader import MISSING, Node, Problems, check_dns, check_range, check_unique, ns
from components.constants import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE, LABEL_PREFIX, NODE_POOL_LABEL
from components.versions import EKS_VERSIONS


def _parse_network(p: Problems, root: Node) -> NetworkConfig:
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


def _parse_system_nodes(node: Node | None) -> SystemNodesConfig:
    if node is None:
        return SystemNodesConfig()
    cfg = SystemNodesConfig(
        instance_types=node.str_list("instanceTypes", list(SystemNodesConfig.instance_types)),
        min_size=node.int("minSize", SystemNodesConfig.min_size, minimum=1),
        desired_size=node.int("desiredSize", SystemNodesConfig.desired_size, minimum=1),
        max_size=node.int("maxSize", SystemNodesConfig.max_size, minimum=1),
        disk_size_gib=node.int("diskSizeGiB", SystemNodesConfig.disk_size_gib, minimum=20),
    )
    for i, it in enumerate(cfg.instance_types):
        if it.split(".")[0] in GPU_INSTANCE_FAMILIES:
            node.p.bad(f"{node.key('instanceTypes')}[{i}]", it, "the system node group must not use GPU instances")
    check_range(node.p, node, "minSize", "desiredSize", "maxSize",
                 (cfg.min_size, cfg.desired_size, cfg.max_size))
    node.done()
    return cfg


def _check_cidr(p: Problems, path: str, value: str) -> None:
    try:
        ipaddress.ip_network(value)
    except ValueError:
        p.bad(path, value, "expected a CIDR such as 203.0.113.0/24")
        return
    if value in ("0.0.0.0/0", "::/0"):
        p.bad(path, value, "opening the API server to the whole internet is refused; list your office/VPN CIDRs")


def _check_arn(p: Problems, path: str, value: str) -> None:
    if not ARN.match(value):
        p.bad(path, value, "expected an IAM role or user ARN such as arn:aws:iam::123456789012:role/admins")


def _parse_cluster(p: Problems, root: Node, environment: str | None) -> ClusterConfig | None:
    node = root.child("cluster", required=True, example="'{\"provider\": \"eks\", \"name\": \"ray-dev\"}'")
    if node is None:
        return None
    provider = node.str("provider", MISSING, "eks", choices=PROVIDERS)
    name = node.str("name", MISSING, "ray-dev")
    check_dns(p, node.key("name"), name, 100, "cluster name", DNS1123)
    if provider == "existing":
        cfg = ClusterConfig(
            provider=provider, name=name,
            kubernetes_version=node.str("kubernetesVersion", ClusterConfig.kubernetes_version,
                                        choices=tuple(EKS_VERSIONS)),
            kubeconfig_path=node.str("kubeconfigPath", None),
            kube_context=node.str("context", None),
        )
        node.done()
        return cfg
    public = node.bool("endpointPublicAccess", ClusterConfig.endpoint_public_access)
    cidrs = node.str_list("publicAccessCidrs", [], item=lambda path, v: _check_cidr(p, path, v))
    if public and not cidrs:
        p.bad(node.key("publicAccessCidrs"), [], "a public endpoint needs an allow-list of CIDRs")
    if not public and cidrs:
        p.bad(node.key("publicAccessCidrs"), list(cidrs), "only meaningful with endpointPublicAccess: true")
    if public and environment == "prod":
        p.bad(node.key("endpointPublicAccess"), True, "prod clusters use the private endpoint only")
    log_types = node.str_list("logTypes", list(ClusterConfig.log_types))
    for i, lt in enumerate(log_types):
        if lt not in CONTROL_PLANE_LOG_TYPES:
            p.bad(f"{node.key('logTypes')}[{i}]", lt, f"allowed: {', '.join(CONTROL_PLANE_LOG_TYPES)}")
    cfg = ClusterConfig(
        provider=provider or "eks", name=name,
        kubernetes_version=node.str("kubernetesVersion", ClusterConfig.kubernetes_version,
                                    choices=tuple(EKS_VERSIONS)),
        endpoint_public_access=public,
        public_access_cidrs=cidrs,
        admin_principal_arns=node.str_list("adminPrincipalArns", [], item=lambda path, v: _check_arn(p, path, v)),
        log_types=log_types,
        system_nodes=_parse_system_nodes(node.child("systemNodes")),
        kms_deletion_window_days=node.int("kmsDeletionWindowDays", ClusterConfig.kms_deletion_window_days,
                                          minimum=7, maximum=30),
    )
    node.done()
    return cfg



# What an EKS pool's node group is made of; an existing cluster's GPU nodes exist already.
EKS_POOL_KEYS = ("instanceTypes", "capacityType", "minSize", "desiredSize", "amiType", "diskSizeGiB",
                 "onDemandFallback", "noFallbackReason", "consolidationPolicy")


def _parse_gpu_pool(p: Problems, node: Node, provider: str | None, provisioner: str) -> GpuPoolConfig:
    name = node.str("name", MISSING, "g5-ondemand")
    check_dns(p, node.key("name"), name, 40, "GPU pool name")
    labels = node.str_map("labels")
    for k in labels:
        if k.startswith(f"{LABEL_PREFIX}/"):
            p.bad(f"{node.key('labels')}.{k}", labels[k],
                  f"the {LABEL_PREFIX}/ prefix is reserved for labels the platform sets")
    gpus_per_node = node.int("gpusPerNode", GpuPoolConfig.gpus_per_node, minimum=1, maximum=16)
    if provider == "existing":
        # Teams select these nodes exactly as on EKS: by the pool label, tolerating the GPU taint.
        for key in (k for k in EKS_POOL_KEYS if k in node.data):
            p.bad(node.key(key), node.raw(key),
                  f"only for EKS pools: an existing cluster's GPU nodes exist already; label them "
                  f"{NODE_POOL_LABEL}={name or '<name>'} and taint them {GPU_TAINT_KEY}={GPU_TAINT_VALUE}:"
                  f"{GPU_TAINT_EFFECT}")
        cfg = GpuPoolConfig(name=name, instance_types=(), labels=labels, gpus_per_node=gpus_per_node,
                            max_size=node.int("maxSize", GpuPoolConfig.max_size, minimum=1))
        node.done()
        return cfg
    instance_types = node.str_list("instanceTypes", MISSING, "'[\"g5.xlarge\"]'")
    if node.raw("instanceTypes") is not MISSING and not instance_types:
        p.bad(node.key("instanceTypes"), [], "a GPU pool needs at least one instance type")
    for i, it in enumerate(instance_types):
        if it.split(".")[0] not in GPU_INSTANCE_FAMILIES:
            p.bad(f"{node.key('instanceTypes')}[{i}]", it,
                  f"not an NVIDIA GPU instance type; families: {', '.join(GPU_INSTANCE_FAMILIES)}")
    capacity_type = node.str("capacityType", GpuPoolConfig.capacity_type, choices=CAPACITY_TYPES)
    fallback, no_fallback_reason = parse_fallback(node, capacity_type, provisioner)
    cfg = GpuPoolConfig(
        name=name, instance_types=instance_types,
        capacity_type=capacity_type,
        on_demand_fallback=fallback, no_fallback_reason=no_fallback_reason,
        consolidation_policy=parse_consolidation(node, provisioner),
        min_size=node.int("minSize", GpuPoolConfig.min_size, minimum=0),
        desired_size=node.int("desiredSize", GpuPoolConfig.desired_size, minimum=0),
        max_size=node.int("maxSize", GpuPoolConfig.max_size, minimum=1),
        ami_type=node.str("amiType", GpuPoolConfig.ami_type, choices=GPU_AMI_TYPES),
        disk_size_gib=node.int("diskSizeGiB", GpuPoolConfig.disk_size_gib, minimum=50),
        gpus_per_node=gpus_per_node,
        labels=labels,
    )
    check_range(p, node, "minSize", "desiredSize", "maxSize", (cfg.min_size, cfg.desired_size, cfg.max_size))
    node.done()
    return cfg


def parse_platform(p: Problems, root: Node, stack: str, environment: str | None,
                    aws_region: str | None) -> PlatformConfig | None:
    cluster = _parse_cluster(p, root, environment)
    network = _parse_network(p, root)
    provider = cluster.provider if cluster else None
    capacity = parse_capacity(p, root, provider, environment)
    pools = tuple(_parse_gpu_pool(p, n, provider, capacity.provisioner) for n in root.children("gpuPools"))
    check_unique(p, ns("gpuPools"), [pool.name for pool in pools], "duplicates gpuPools[{first}].name")
    addons_node = root.child("addons")
    addons = AddonsConfig()
    if addons_node is not None:
        addons = AddonsConfig(
            cluster_autoscaler=addons_node.bool("clusterAutoscaler", AddonsConfig.cluster_autoscaler),
            nvidia_device_plugin=addons_node.bool("nvidiaDevicePlugin", AddonsConfig.nvidia_device_plugin),
        )
        if capacity.uses_karpenter and addons_node.data.get("clusterAutoscaler") is True:
            p.bad(f"{ns('addons')}.clusterAutoscaler", True,
                  "Karpenter provisions the nodes (capacity.provisioner: karpenter); the Cluster Autoscaler would "
                  "fight it over them: leave it unset or false")
        addons_node.done()
    if capacity.uses_karpenter:
        addons = replace(addons, cluster_autoscaler=False)
    kr_node = root.child("kuberay")
    kuberay = KubeRayConfig()
    if kr_node is not None:
        namespace = kr_node.str("namespace", KubeRayConfig.namespace)
        check_dns(p, kr_node.key("namespace"), namespace, DNS_LABEL_MAX, "namespace", DNS1123)
        kuberay = KubeRayConfig(namespace=namespace, watch_namespaces=kr_node.str_list("watchNamespaces", []))
        kr_node.done()
    kubeconfig = root.str("kubeconfig", None)
    observability = _parse_observability(p, root, cluster)
    grafana_admin_password = root.str("grafanaAdminPassword", None)
    if observability.grafana is not None and grafana_admin_password is None:
        p.missing(ns("grafanaAdminPassword"), "--secret \"$(openssl rand -base64 24)\"")
    if observability.grafana is None and grafana_admin_password is not None:
        p.bad(ns("grafanaAdminPassword"), SECRET_PLACEHOLDER, "only used with observability.grafana")
    sources = _parse_sources(root)
    queues = parse_platform_queues(p, root, pools)
    if cluster is None:
        return None
    if capacity.uses_karpenter and cluster.name and len(cluster.name) > IAM_ROLE_NAME_MAX - len(NODE_ROLE_SUFFIX):
        p.bad(f"{ns('cluster')}.name", cluster.name,
              f"with Karpenter at most {IAM_ROLE_NAME_MAX - len(NODE_ROLE_SUFFIX)} characters: the node role is "
              f"named <cluster>{NODE_ROLE_SUFFIX} (IAM: 64 at most)")
    if cluster.provider == "eks":
        if not aws_region:
            p.missing("aws:region", "us-west-2")
        if pools and not addons.nvidia_device_plugin:
            p.bad(f"{ns('addons')}.nvidiaDevicePlugin", False,
                  "GPU pools on EKS need the NVIDIA device plugin, or no pod can request nvidia.com/gpu")
        if kubeconfig is not None:
            p.bad(ns("kubeconfig"), SECRET_PLACEHOLDER, "only for cluster.provider: existing; EKS builds its own")
    elif cluster.provider == "existing":
        if addons.cluster_autoscaler:
            p.bad(f"{ns('addons')}.clusterAutoscaler", True,
                  "the Cluster Autoscaler here is AWS-specific; set it to false for existing clusters")
        if (kubeconfig is None) == (cluster.kubeconfig_path is None):
            p.bad(f"{ns('cluster')}.kubeconfigPath", cluster.kubeconfig_path,
                  f"an existing cluster needs exactly one of cluster.kubeconfigPath or the secret "
                  f"{ns('kubeconfig')} (pulumi config set --secret {ns('kubeconfig')} < kubeconfig.yaml)")
    return PlatformConfig(stack=stack, environment=environment or "", cluster=cluster, network=network,
                          gpu_pools=pools, addons=addons, kuberay=kuberay, aws_region=aws_region,
                          kubeconfig=kubeconfig, observability=observability,
                          grafana_admin_password=grafana_admin_password, sources=sources, queues=queues,
                          capacity=capacity)


def _parse_sources(root: Node) -> SourcesConfig:
    node = root.child("sources")
    if node is None:
        return SourcesConfig()
    cfg = SourcesConfig(
        helm_repository=node.str("helmRepository", SourcesConfig.helm_repository, pattern=HTTP_URL,
                                 rule="expected the http(s) URL of a Helm repository (its index.yaml's folder)"),
        kuberay_crds=node.str("kuberayCrds", SourcesConfig.kuberay_crds),
    )
    node.done()
    return cfg


def _piece(node: Node, name: str) -> Node | None:
    """The block of one observability piece, or None when it is absent or `enabled: false`."""
    child = node.child(name)
    if child is None:
        return None
    enabled = child.bool("enabled", True)
    if not enabled:
        # Its other settings may stay in the file (an existing cluster switching a piece off).
        child.seen.update(child.data)
    return child if enabled else None


def _parse_observability(p: Problems, root: Node, cluster: ClusterConfig | None) -> ObservabilityConfig:
    node = root.child("observability")
    if node is None:
        return ObservabilityConfig()
    namespace = node.str("namespace", ObservabilityConfig.namespace)
    check_dns(p, node.key("namespace"), namespace, DNS_LABEL_MAX, "namespace", DNS1123)
    prometheus = grafana = log_shipping = None
    pnode = _piece(node, "prometheus")
    if pnode is not None:
        prometheus = PrometheusConfig(
            retention=pnode.str("retention", PrometheusConfig.retention, pattern=PROMETHEUS_DURATION,
                                rule="expected a Prometheus duration such as 15d, 12h or 2w"),
            storage_size=pnode.quantity("storageSize", PrometheusConfig.storage_size, "50Gi"),
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
        log_shipping = LogShippingConfig(
            destination=lnode.str("destination", LogShippingConfig.destination, choices=LOG_DESTINATIONS),
            retention_days=lnode.int("retentionDays", LogShippingConfig.retention_days),
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

