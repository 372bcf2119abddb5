"""Cluster Autoscaler (Helm) with an IRSA role, so GPU pools scale from zero and back."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws

from components.specs import iam_policies
from components.platform.eks_cluster import SYSTEM_NODE_SELECTOR, EksAccess, irsa_role
from components.platform.helm import pinned_release
from components.versions import (
    CLUSTER_AUTOSCALER_CHART, CLUSTER_AUTOSCALER_CHART_REPO, CLUSTER_AUTOSCALER_CHART_VERSION, EKS_VERSIONS,
)

NAMESPACE = "kube-system"
SERVICE_ACCOUNT = "cluster-autoscaler"


@dataclass(frozen=True)
class ClusterAutoscalerArgs:
    # A plain string, not eks.cluster_name: the IAM policy and the chart values are built from it.
    cluster_name: str
    kubernetes_version: str
    eks: EksAccess
    # Empty GPU pools are scaled down after this long idle: the main cost lever.
    scale_down_unneeded: str = "10m"
    helm_repository: str | None = None


def autoscaler_values(cluster_name: str, region: str, kubernetes_version: str, role_arn: str,
                      scale_down_unneeded: str) -> dict[str, Any]:
    return {
        "cloudProvider": "aws",
        "awsRegion": region,
        "autoDiscovery": {"clusterName": cluster_name},
        # The autoscaler only supports its own Kubernetes minor.
        "image": {"tag": EKS_VERSIONS[kubernetes_version]},
        "rbac": {"serviceAccount": {"create": True, "name": SERVICE_ACCOUNT,
                                    "annotations": {"eks.amazonaws.com/role-arn": role_arn}}},
        "extraArgs": {
            "balance-similar-node-groups": "true",
            "skip-nodes-with-system-pods": "false",
            "expander": "least-waste",
            "scale-down-unneeded-time": scale_down_unneeded,
        },
        "nodeSelector": SYSTEM_NODE_SELECTOR,
        "podDisruptionBudget": {"maxUnavailable": 1},
    }


class ClusterAutoscaler(pulumi.ComponentResource):
    role_arn: pulumi.Output[str]

    def __init__(self, name: str, args: ClusterAutoscalerArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:ClusterAutoscaler", name, None, opts)
        child = pulumi.ResourceOptions(parent=self)
        role = irsa_role(f"{name}-irsa", args.eks, NAMESPACE, SERVICE_ACCOUNT, child)
        aws.iam.RolePolicy(f"{name}-policy", role=role.id,
                           policy=iam_policies.to_json(iam_policies.cluster_autoscaler_policy(args.cluster_name)),
                           opts=child)
        values = role.arn.apply(lambda arn: autoscaler_values(
            args.cluster_name, args.eks.region, args.kubernetes_version, arn, args.scale_down_unneeded))
        pinned_release(f"{name}-release", chart=CLUSTER_AUTOSCALER_CHART, version=CLUSTER_AUTOSCALER_CHART_VERSION,
                       repo=CLUSTER_AUTOSCALER_CHART_REPO, mirror=args.helm_repository, namespace=NAMESPACE, values=values, parent=self)
        self.role_arn = role.arn
        self.register_outputs({"roleArn": self.role_arn})
