"""Where the KubeRay operator's CRDs come from (components/platform/kuberay_operator.py)."""
from __future__ import annotations

from components.platform.kuberay_operator import crd_urls
from components.versions import KUBERAY_VERSION
from tools.k8s_schema import kuberay_crd_dir


def test_kuberay_crds_come_from_the_pinned_tag() -> None:
    assert all(f"/v{KUBERAY_VERSION}/" in url for url in crd_urls())
    names = sorted(p.name for p in kuberay_crd_dir().glob("*.yaml"))
    assert sorted(u.rsplit("/", 1)[1] for u in crd_urls()) == names
