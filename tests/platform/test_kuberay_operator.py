"""Where the KubeRay operator's CRDs come from and how it is configured (components/platform/kuberay_operator.py)."""
from __future__ import annotations

import tarfile
from typing import Any

import yaml

from components.platform.kuberay_operator import (
    CHART_FEATURE_GATES, KubeRayOperatorArgs, crd_urls, operator_values,
)
from components.versions import KUBERAY_VERSION
from tools.k8s_schema import kuberay_crd_dir


def test_kuberay_crds_come_from_the_pinned_tag() -> None:
    assert all(f"/v{KUBERAY_VERSION}/" in url for url in crd_urls())
    names = sorted(p.name for p in kuberay_crd_dir().glob("*.yaml"))
    assert sorted(u.rsplit("/", 1)[1] for u in crd_urls()) == names


def chart_values() -> dict[str, Any]:
    """values.yaml of the pinned kuberay-operator chart, from the chart mirror beside the repo."""
    chart = kuberay_crd_dir().parents[1] / "helm-repo" / f"kuberay-operator-{KUBERAY_VERSION}.tgz"
    with tarfile.open(chart) as tgz:
        member = tgz.extractfile("kuberay-operator/values.yaml")
        assert member is not None
        return dict(yaml.safe_load(member.read()))


def test_feature_gates_keep_the_charts_defaults_and_add_the_embedded_gcs_storage() -> None:
    # A `featureGates` value replaces the chart's list: every default must be restated as it is.
    defaults = {g["name"]: g["enabled"] for g in chart_values()["featureGates"]}
    assert CHART_FEATURE_GATES == defaults
    values = operator_values(KubeRayOperatorArgs(namespace="kuberay-system"))
    gates = {g["name"]: g["enabled"] for g in values["featureGates"]}
    assert gates == {**defaults, "GCSFaultToleranceEmbeddedStorage": True}
