"""Wiring of a platform stack: network, EKS, GPU pools and add-ons, or an existing cluster."""
from __future__ import annotations

import os
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.platform.cluster_autoscaler import ClusterAutoscaler, ClusterAutoscalerArgs
from components.config.model import PlatformConfig
from components.platform.block_storage import BlockStorage, BlockStorageArgs
from components.platform.cpu_node_pool import CpuNodePool, CpuNodePoolArgs
from components.platform.eks_cluster import (
    SYSTEM_NODE_SELECTOR, EksAccess, EksCluster, EksClusterArgs, NodeGroupPlacement,
)
from components.platform.gpu_node_pool import GpuNodePool, GpuNodePoolArgs
from components.platform.karpenter import Karpenter, KarpenterArgs
from components.platform.kuberay_operator import KubeRayOperator, KubeRayOperatorArgs
from components.platform.kueue import Kueue, KueueArgs
from components.platform.network import Network, NetworkArgs
from components.platform.nvidia_device_plugin import NvidiaDevicePlugin, NvidiaDevicePluginArgs
from components.platform.observability import Observability, ObservabilityArgs
from components.specs.gpu_nodes import cpu_pool_labels, gpu_taint, pool_labels
from components.specs.karpenter import discovery_selector
from components.specs.kueue import platform_outputs as queue_outputs
from components.specs.monitoring import platform_outputs
from components.versions import KUBERAY_VERSION, RAY_VERSION


def build_platform(cfg: PlatformConfig) -> dict[str, Any]:
    """Declare every resource of a platform stack; returns the stack outputs team stacks read."""
    name = cfg.cluster.name
    outputs: dict[str, Any] = {
        "environment": cfg.environment,
        "clusterName": name,
        "clusterProvider": cfg.cluster.provider,
        "kubernetesVersion": cfg.cluster.kubernetes_version,
        "gpuTaint": gpu_taint(),
        "gpuPools": [{
            "name": pool.name, "labels": pool_labels(pool), "instanceTypes": list(pool.instance_types),
            "gpusPerNode": pool.gpus_per_node, "capacityType": pool.capacity_type, "maxSize": pool.max_size,
            "gpuLimit": pool.gpu_limit, "onDemandFallback": pool.on_demand_fallback,
        } for pool in cfg.gpu_pools],
        "kuberayVersion": KUBERAY_VERSION,
        "kuberayNamespace": cfg.kuberay.namespace,
        "rayVersion": RAY_VERSION,
        # None when the platform runs no Kueue: team stacks then cannot declare a queue.
        "queues": queue_outputs(cfg.queues, cfg.gpu_pools),
    }
    node_selector: dict[str, str] | None = None
    eks: EksAccess | None = None
    if cfg.is_eks:
        provider, eks_outputs, eks = _build_eks(cfg)
        outputs.update(eks_outputs)
        node_selector = SYSTEM_NODE_SELECTOR
    else:
        kubeconfig = pulumi.Output.secret(cfg.kubeconfig or os.path.expanduser(cfg.cluster.kubeconfig_path or ""))
        provider = k8s.Provider(f"{name}-k8s", kubeconfig=kubeconfig, context=cfg.cluster.kube_context)
        outputs.update({"kubeconfig": kubeconfig, "kubeContext": cfg.cluster.kube_context,
                        "endpoint": None, "oidcProviderArn": None})
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": provider})
    # An existing cluster brings its own storage (its default class serves the claims).
    observability_name = f"{name}-observability"
    storage = BlockStorage(f"{name}-storage", BlockStorageArgs(eks=eks, moved_from=observability_name),
                           opts=k8s_opts) if eks is not None else None
    storage_class = storage.storage_class if storage is not None else None
    outputs["storageClass"] = storage_class
    if cfg.addons.nvidia_device_plugin:
        NvidiaDevicePlugin(f"{name}-nvidia", NvidiaDevicePluginArgs(helm_repository=cfg.sources.helm_repository),
                           opts=k8s_opts)
    kuberay = KubeRayOperator(f"{name}-kuberay", KubeRayOperatorArgs(
        namespace=cfg.kuberay.namespace, watch_namespaces=cfg.kuberay.watch_namespaces,
        node_selector=node_selector, helm_repository=cfg.sources.helm_repository,
        crd_source=cfg.sources.kuberay_crds), opts=k8s_opts)
    if cfg.queues is not None:
        Kueue(f"{name}-kueue", KueueArgs(config=cfg.queues, gpu_pools=cfg.gpu_pools, node_selector=node_selector,
                                         helm_repository=cfg.sources.helm_repository, after=(kuberay.release,)),
              opts=k8s_opts)
    # Team stacks read this even when nothing is installed: it tells them what they may opt into.
    outputs["observability"] = Observability(observability_name, ObservabilityArgs(
        config=cfg.observability, cluster_name=name, kuberay_namespace=cfg.kuberay.namespace,
        grafana_admin_password=cfg.grafana_admin_password, node_selector=node_selector, eks=eks,
        default_storage_class=storage_class, storage_ready=storage.ready if storage is not None else (),
        helm_repository=cfg.sources.helm_repository),
        opts=k8s_opts).outputs if cfg.observability.installs_anything else platform_outputs(cfg.observability, None)
    return outputs


def _build_eks(cfg: PlatformConfig) -> tuple[k8s.Provider, dict[str, Any], EksAccess]:
    name = cfg.cluster.name
    region = cfg.aws_region or ""
    capacity = cfg.capacity
    # Karpenter finds the subnets to launch into by the platform's discovery tag.
    network = Network(f"{name}-net", NetworkArgs(
        config=cfg.network, cluster_name=name,
        private_subnet_tags=discovery_selector(name) if capacity.uses_karpenter else {}))
    cluster = EksCluster(f"{name}", EksClusterArgs(
        config=cfg.cluster, region=region, environment=cfg.environment, vpc_id=network.vpc_id,
        private_subnet_ids=network.private_subnet_ids, public_subnet_ids=network.public_subnet_ids))
    access = EksAccess(region=region, cluster_name=cluster.cluster_name, oidc_provider_arn=cluster.oidc_provider_arn,
                       oidc_issuer_url=cluster.oidc_issuer_url)
    k8s_opts = pulumi.ResourceOptions(providers={"kubernetes": cluster.provider})
    pools: list[GpuNodePool] = []
    if capacity.uses_karpenter:
        Karpenter(f"{name}-karpenter", KarpenterArgs(
            cluster_name=name, eks=access, cluster_security_group_id=cluster.cluster_security_group_id,
            capacity=capacity, gpu_pools=cfg.gpu_pools, helm_repository=cfg.sources.helm_repository), opts=k8s_opts)
    else:
        placement = NodeGroupPlacement(cluster_name=cluster.cluster_name, node_role_arn=cluster.node_role_arn,
                                       subnet_ids=network.private_subnet_ids,
                                       kubernetes_version=cfg.cluster.kubernetes_version)
        pools = [GpuNodePool(f"{name}-{pool.name}", GpuNodePoolArgs(config=pool, placement=placement))
                 for pool in cfg.gpu_pools]
        cpu_pool = CpuNodePool(f"{name}-{capacity.cpu_pool.name}",
                               CpuNodePoolArgs(config=capacity.cpu_pool, placement=placement))
        if cfg.addons.cluster_autoscaler:
            ClusterAutoscaler(f"{name}-autoscaler", ClusterAutoscalerArgs(
                cluster_name=name, kubernetes_version=cfg.cluster.kubernetes_version, eks=access,
                helm_repository=cfg.sources.helm_repository),
                opts=pulumi.ResourceOptions(providers={"kubernetes": cluster.provider}, depends_on=[*pools, cpu_pool]))
    return cluster.provider, {
        "provisioner": capacity.provisioner,
        "cpuPool": {"name": capacity.cpu_pool.name, "labels": cpu_pool_labels(capacity.cpu_pool),
                    "maxSize": capacity.cpu_pool.max_size},
        "kubeconfig": cluster.kubeconfig,
        "kubeContext": None,
        "endpoint": cluster.endpoint,
        "oidcProviderArn": cluster.oidc_provider_arn,
        "vpcId": network.vpc_id,
        "privateSubnetIds": network.private_subnet_ids,
        "gpuNodeGroups": [pool.node_group.node_group_name for pool in pools],
    }, access
