"""Block storage of an EKS platform: the EBS CSI driver and the cluster's default StorageClass.

EKS ships no CSI driver, and new EKS clusters (Kubernetes 1.30 and later) mark no
StorageClass as the default: without both, every PersistentVolumeClaim on the platform
stays Pending, whether Prometheus' volume or a team RayCluster's GCS RocksDB
(`gcsFaultTolerance.backend: rocksdb`). The driver runs as the EKS add-on with its own
IRSA role; the add-on version is left to EKS, which picks its default for the cluster's
Kubernetes minor.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_aws as aws
import pulumi_kubernetes as k8s

from components.specs import iam_policies
from components.constants import PART_OF_LABEL, PROJECT
from components.platform.eks_cluster import EksAccess, irsa_role
from components.platform.observability import OBSERVABILITY_TYPE

EBS_CSI_ADDON = "aws-ebs-csi-driver"
EBS_CSI_NAMESPACE = "kube-system"
EBS_CSI_SERVICE_ACCOUNT = "ebs-csi-controller-sa"
STORAGE_CLASS = "ray-platform-gp3"
DEFAULT_CLASS_ANNOTATION = "storageclass.kubernetes.io/is-default-class"


def gp3_storage_class() -> dict[str, Any]:
    """The platform's default class: encrypted gp3 volumes from the EBS CSI driver."""
    return {
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": STORAGE_CLASS, "labels": {PART_OF_LABEL: PROJECT},
                     # Claims that name no class (a RayCluster's GCS volume) get this one.
                     "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
        "provisioner": "ebs.csi.aws.com",
        "parameters": {"type": "gp3", "encrypted": "true"},
        # In the zone of the node the pod lands on: an EBS volume cannot cross zones.
        "volumeBindingMode": "WaitForFirstConsumer",
        "allowVolumeExpansion": True,
        "reclaimPolicy": "Delete",
    }


@dataclass(frozen=True)
class BlockStorageArgs:
    eks: EksAccess
    # The Observability component (by name) whose children these resources were before they
    # became the platform's: aliased, `pulumi up` moves them instead of creating a second
    # add-on and class of the same names next to the old ones, which EKS and the API refuse.
    moved_from: str | None = None


class BlockStorage(pulumi.ComponentResource):
    """The EBS CSI add-on (IRSA) and the default gp3 StorageClass; `ready` is what claims wait for."""

    storage_class: str
    ready: list[pulumi.Resource]

    def __init__(self, name: str, args: BlockStorageArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:BlockStorage", name, None, opts)
        eks = args.eks

        def child(suffix: str, depends_on: list[pulumi.Resource] | None = None) -> pulumi.ResourceOptions:
            aliases = None
            if args.moved_from is not None:
                aliases = [pulumi.Alias(name=f"{args.moved_from}-{suffix}",
                                        parent=pulumi.create_urn(args.moved_from, OBSERVABILITY_TYPE))]
            return pulumi.ResourceOptions(parent=self, depends_on=depends_on, aliases=aliases)

        role = irsa_role(f"{name}-ebs-csi-irsa", eks, EBS_CSI_NAMESPACE, EBS_CSI_SERVICE_ACCOUNT,
                         child("ebs-csi-irsa"))
        attachment = aws.iam.RolePolicyAttachment(f"{name}-ebs-csi-policy", role=role.name,
                                                  policy_arn=iam_policies.EBS_CSI_DRIVER_POLICY,
                                                  opts=child("ebs-csi-policy"))
        addon = aws.eks.Addon(f"{name}-ebs-csi", cluster_name=eks.cluster_name, addon_name=EBS_CSI_ADDON,
                              service_account_role_arn=role.arn, resolve_conflicts_on_create="OVERWRITE",
                              resolve_conflicts_on_update="OVERWRITE", opts=child("ebs-csi", [attachment]))
        spec = gp3_storage_class()
        storage_class = k8s.storage.v1.StorageClass(
            f"{name}-gp3", metadata=spec["metadata"], provisioner=spec["provisioner"], parameters=spec["parameters"],
            volume_binding_mode=spec["volumeBindingMode"], allow_volume_expansion=spec["allowVolumeExpansion"],
            reclaim_policy=spec["reclaimPolicy"], opts=child("gp3"))
        self.storage_class = STORAGE_CLASS
        self.ready = [addon, storage_class]
        self.register_outputs({"storageClass": self.storage_class, "csiDriverRole": role.arn})
