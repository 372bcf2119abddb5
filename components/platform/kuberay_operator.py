"""KubeRay operator from the official Helm chart, with its CRDs managed deliberately.

Helm installs a chart's `crds/` only on first install and never upgrades or deletes
them, so a chart bump would run a new operator against old CRD schemas. Instead the
CRDs of exactly KUBERAY_VERSION are applied by Pulumi from the tagged upstream release, or from
the platform's `sources.kuberayCrds` mirror (server-side apply: the RayCluster CRD is too large for client-side apply's annotation)
and the Helm release skips its own copy. Bumping KUBERAY_VERSION upgrades CRDs and
operator in one `pulumi up`, CRDs first. The CRDs are retained on delete: deleting a
CRD deletes every RayCluster of every team.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.constants import PART_OF_LABEL, PROJECT
from components.platform.helm import pinned_release
from components.versions import KUBERAY_CHART, KUBERAY_CHART_REPO, KUBERAY_VERSION

# Every CRD the chart's crds/ ships: the operator watches each kind it knows, RayCronJob included.
CRD_KINDS = ("rayclusters", "raycronjobs", "rayjobs", "rayservices")
# The chart's `featureGates` default (values.yaml of kuberay-operator KUBERAY_VERSION; a test reads
# the chart). A list value replaces the chart's whole list, so the platform's restates it.
CHART_FEATURE_GATES = {
    "RayClusterStatusConditions": True, "RayJobDeletionPolicy": True, "RayMultiHostIndexing": True,
    "RayServiceIncrementalUpgrade": True, "RayCronJob": False, "RayClusterMTLS": False,
    "RayClusterNetworkPolicy": False, "RayClusterHistoryServer": False,
}
# What the platform turns on beyond them: `gcsFaultTolerance.backend: rocksdb` (the embedded
# storage) is refused by the operator without this gate, with only a Warning event on the RayCluster.
PLATFORM_FEATURE_GATES = {"GCSFaultToleranceEmbeddedStorage": True}


def feature_gates() -> dict[str, bool]:
    """The operator's feature gates as the platform deploys them: the chart's, then the platform's."""
    return {**CHART_FEATURE_GATES, **PLATFORM_FEATURE_GATES}


def crd_urls(version: str = KUBERAY_VERSION, source: str | None = None) -> list[str]:
    """Where each CRD file is read: `source` (a directory or URL holding the release's CRD files),
    else the release's tag on GitHub."""
    base = (source.rstrip("/") if source else
            f"https://raw.githubusercontent.com/ray-project/kuberay/v{version}/helm-chart/kuberay-operator/crds")
    return [f"{base}/ray.io_{kind}.yaml" for kind in CRD_KINDS]


@dataclass(frozen=True)
class KubeRayOperatorArgs:
    namespace: str
    watch_namespaces: tuple[str, ...] = ()
    node_selector: dict[str, str] | None = None
    helm_repository: str | None = None
    crd_source: str | None = None


def operator_values(args: KubeRayOperatorArgs) -> dict[str, Any]:
    values: dict[str, Any] = {
        "image": {"repository": "quay.io/kuberay/operator", "tag": f"v{KUBERAY_VERSION}"},
        "resources": {"requests": {"cpu": "100m", "memory": "512Mi"},
                      "limits": {"cpu": "1", "memory": "1Gi"}},
        "nodeSelector": args.node_selector or {},
        "featureGates": [{"name": name, "enabled": on} for name, on in feature_gates().items()],
    }
    if args.watch_namespaces:
        values["watchNamespace"] = list(args.watch_namespaces)
    return values


class KubeRayOperator(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KubeRayOperatorArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:KubeRayOperator", name, None, opts)
        namespace = k8s.core.v1.Namespace(
            f"{name}-ns", metadata=k8s.meta.v1.ObjectMetaArgs(
                name=args.namespace, labels={PART_OF_LABEL: PROJECT}),
            opts=pulumi.ResourceOptions(parent=self))
        crds = [
            k8s.yaml.v2.ConfigFile(f"{name}-crd-{kind}", file=url,
                                   opts=pulumi.ResourceOptions(parent=self, retain_on_delete=True))
            for kind, url in zip(CRD_KINDS, crd_urls(source=args.crd_source))
        ]
        self.release = pinned_release(
            f"{name}-release", chart=KUBERAY_CHART, version=KUBERAY_VERSION, repo=KUBERAY_CHART_REPO,
            mirror=args.helm_repository,
            namespace=args.namespace, skip_crds=True, values=operator_values(args), parent=self,
            depends_on=[namespace, *crds])
        self.register_outputs({"version": KUBERAY_VERSION, "namespace": args.namespace})
