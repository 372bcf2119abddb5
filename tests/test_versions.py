"""The pins of components/versions.py agree with the requirements and with each other."""
from __future__ import annotations

import re
from pathlib import Path

from components.versions import EKS_VERSIONS, RAY_IMAGE_CPU, RAY_IMAGE_GPU, RAY_VERSION

ROOT = Path(__file__).resolve().parents[1]


def test_ray_versions_agree_everywhere() -> None:
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-\[\],]+)==(\S+)", (ROOT / "requirements.txt").read_text(), re.M))
    assert pins["ray[default]"] == RAY_VERSION, "client ray must equal the cluster's Ray"
    for line in (ROOT / "requirements-dev.txt").read_text().splitlines():
        if line.startswith("ray["):
            assert line.endswith(f"=={RAY_VERSION}")
    assert RAY_IMAGE_CPU.split(":")[1].startswith(RAY_VERSION + "-")
    assert RAY_IMAGE_GPU.split(":")[1].startswith(RAY_VERSION + "-") and RAY_IMAGE_GPU.endswith("-gpu")


def test_every_supported_eks_version_has_a_matching_autoscaler() -> None:
    for k8s_version, image_tag in EKS_VERSIONS.items():
        assert image_tag.startswith(f"v{k8s_version}.")
