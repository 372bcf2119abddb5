"""Label, taint and naming constants shared by node pools and RayCluster specs.

Defined once so a GPU node pool's taint and a Ray GPU worker's toleration can never
drift apart.
"""
from __future__ import annotations

PROJECT = "ray-platform"
# On every Kubernetes object the platform creates.
PART_OF_LABEL = "app.kubernetes.io/part-of"

# The taint every GPU node carries; only pods that tolerate it (Ray GPU workers, the
# NVIDIA device plugin) land on GPU nodes, so CPU pods never hold expensive capacity.
GPU_TAINT_KEY = "nvidia.com/gpu"
GPU_TAINT_VALUE = "true"
GPU_TAINT_EFFECT = "NoSchedule"
# EKS managed node groups spell effects in their API enum.
EKS_TAINT_EFFECT = "NO_SCHEDULE"
GPU_RESOURCE = "nvidia.com/gpu"

# Node labels the platform sets on its node groups; RayCluster worker groups select on them.
LABEL_PREFIX = "ray-platform.io"
NODE_POOL_LABEL = f"{LABEL_PREFIX}/pool"
NODE_ROLE_LABEL = f"{LABEL_PREFIX}/role"
GPU_NODE_LABEL = f"{LABEL_PREFIX}/gpu"
# On the namespace, every RayCluster and every Ray pod: cost allocation and policy find the team by it.
TEAM_LABEL = f"{LABEL_PREFIX}/team"
# The AWS tag on the EKS cluster the policy pack reads the environment from (prod: private endpoint only).
ENVIRONMENT_TAG = f"{PROJECT}/environment"
ROLE_SYSTEM = "system"
ROLE_GPU = "gpu"
# The CPU pool Ray heads and CPU workers run on, apart from the add-ons on the system nodes.
ROLE_CPU = "cpu"

# Karpenter finds the platform's subnets and security group by this tag (value: the cluster name).
KARPENTER_DISCOVERY_TAG = "karpenter.sh/discovery"
# Why a spot GPU pool has no on-demand fallback, where reviewers and the policy pack read it: an
# annotation on its Karpenter NodePool, a tag on its managed node group.
NO_FALLBACK_ANNOTATION = f"{LABEL_PREFIX}/no-on-demand-fallback"
NO_FALLBACK_TAG = f"{PROJECT}/no-on-demand-fallback"
# Pod annotations that keep a pod's node from voluntary disruption: Karpenter's consolidation,
# drift and expiry, and the Cluster Autoscaler's scale-down. Every Ray head carries both.
DO_NOT_DISRUPT_ANNOTATION = "karpenter.sh/do-not-disrupt"
SAFE_TO_EVICT_ANNOTATION = "cluster-autoscaler.kubernetes.io/safe-to-evict"

# Ray ports (KubeRay defaults) that team NetworkPolicies guard.
RAY_GCS_PORT = 6379
RAY_DASHBOARD_PORT = 8265
RAY_CLIENT_PORT = 10001
RAY_SERVE_PORT = 8000
RAY_METRICS_PORT = 8080

# KubeRay's API group and its own pod labels (which single out a cluster's head pod).
RAY_GROUP = "ray.io"
RAY_CLUSTER_LABEL = f"{RAY_GROUP}/cluster"
RAY_NODE_TYPE_LABEL = f"{RAY_GROUP}/node-type"

# Ray job metadata keys on every job the platform submits (post-deploy hook, KubeRay RayJob):
# `make jobs` shows the kind, local mode follows a job by its name.
METADATA_KIND = f"{PROJECT}/kind"
METADATA_JOB_NAME = f"{PROJECT}/job-name"
METADATA_CODE_HASH = f"{PROJECT}/code-hash"

# Kueue's API group and the labels by which it queues a RayJob or RayCluster (docs/queues.md).
KUEUE_GROUP = "kueue.x-k8s.io"
QUEUE_NAME_LABEL = f"{KUEUE_GROUP}/queue-name"
PRIORITY_CLASS_LABEL = f"{KUEUE_GROUP}/priority-class"
