"""The config model (components/config/model.py): limits that must equal what KubeRay enforces, and
allowed values that must name what exists."""
from __future__ import annotations

import pytest

from components.config.model import (
    JOB_KINDS, JOB_NAME_MAX, KUBERAY_CR_NAME_MAX, RAYCLUSTER_NAME_MAX, RAYJOB_DIGEST_CHARS, is_dns_label,
)
from jobs.common import JOBS_DIR

# KubeRay 1.7 (ray-operator/controllers/ray/utils/constant.go): MaxRayClusterNameLength and
# MaxRayJobNameLength / MaxRayServiceNameLength; a job name leaves room for `-<digest>`.
LIMITS = [("RayCluster", RAYCLUSTER_NAME_MAX, 53), ("RayJob and RayService", KUBERAY_CR_NAME_MAX, 47),
          ("job", JOB_NAME_MAX, 47 - 1 - RAYJOB_DIGEST_CHARS)]


@pytest.mark.parametrize(("limit", "expected"), [c[1:] for c in LIMITS], ids=[c[0] for c in LIMITS])
def test_name_limits_are_kuberays(limit: int, expected: int) -> None:
    assert limit == expected


NAMES = [("train-digits", 40, True), ("a" * 40, 40, True), ("a" * 41, 40, False), ("Train", 40, False),
         ("2fast", 40, False), ("ends-", 40, False), ("under_score", 40, False), ("", 40, False)]


@pytest.mark.parametrize(("name", "limit", "ok"), NAMES, ids=[f"{n[:12]!r}<={m}" for n, m, _ in NAMES])
def test_dns_labels(name: str, limit: int, ok: bool) -> None:
    assert is_dns_label(name, limit) is ok


@pytest.mark.parametrize("kind", JOB_KINDS)
def test_every_job_kind_is_a_module_of_the_jobs_package(kind: str) -> None:
    assert (JOBS_DIR / f"{kind}.py").is_file()
