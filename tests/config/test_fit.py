"""Quota and sizing math (components/config/fit.py): Kubernetes quantities, what the RayClusters
request at max scale, and what the KubeRay custom resources start on top."""
from __future__ import annotations

import pytest

from components.config.fit import kuberay_demand, max_demand, quantity_value
from components.config.model import SECRET_PLACEHOLDER, RayClusterConfig, TeamStackConfig
from components.config.stack import parse
from tests.config.test_jobs import SERVE_BASE, with_job, with_serve
from tests.config.test_team import GOOD, lookup, with_change, with_changes

QUANTITIES = [
    ("4", 4.0), ("500m", 0.5), ("0.5", 0.5), ("16Gi", 16 * 2**30), ("512Mi", 512 * 2**20), ("1Ki", 1024.0),
    ("2G", 2e9), ("3k", 3e3),
    # Already reported as bad by the reader: counted as nothing, so one bad value is one problem.
    ("lots", 0.0), (None, 0.0),
]


@pytest.mark.parametrize(("quantity", "value"), QUANTITIES, ids=[str(q) for q, _ in QUANTITIES])
def test_quantities_in_base_units(quantity: str | None, value: float) -> None:
    assert quantity_value(quantity) == pytest.approx(value)


def test_max_demand_counts_heads_autoscalers_and_every_group_at_max_replicas() -> None:
    cfg = parse(GOOD, "vision-prod", None, lookup)
    assert isinstance(cfg, TeamStackConfig)
    need = max_demand(cfg.ray_clusters)
    assert need.gpus == 4 and need.pods == 1 + 2 + 4
    assert need.cpu == pytest.approx(2 + 0.5 + 4 * 2 + 6 * 4)
    assert need.memory == pytest.approx((8 + 16 * 2 + 24 * 4) * 2**30 + 512 * 2**20)
    assert max_demand((RayClusterConfig(name="a"), RayClusterConfig(name="b"))).pods == 2


def test_the_demand_of_a_capped_ephemeral_cluster() -> None:
    cfg = parse(with_job(kuberay_ephemeral=True, kuberay_workerGroups={"cpu": 1}), "demo-dev")
    assert isinstance(cfg, TeamStackConfig)
    extra = kuberay_demand(cfg.jobs, cfg.ray_clusters)
    # submitter (500m, 1Gi) + head (2 + 500m autoscaler, 8Gi + 512Mi) + one worker (2, 8Gi); no GPU group
    assert (extra.cpu, extra.memory / 2**30, extra.gpus, extra.pods) == (5.0, 1 + 8.5 + 8, 0, 3)
    full = parse(with_job(kuberay_ephemeral=True), "demo-dev")
    assert isinstance(full, TeamStackConfig)
    assert kuberay_demand(full.jobs, full.ray_clusters).gpus == 1
    # HTTPMode: the operator submits, no submitter pod.
    http = parse(with_job(kuberay_ephemeral=True, kuberay_workerGroups={"cpu": 1}, kuberay_submissionMode="HTTPMode"),
                 "demo-dev")
    assert isinstance(http, TeamStackConfig)
    assert (kuberay_demand(http.jobs, http.ray_clusters).cpu, kuberay_demand(http.jobs, http.ray_clusters).pods) == \
        (4.5, 2)


def test_a_new_cluster_upgrade_needs_room_for_a_second_cluster() -> None:
    cfg = parse(with_serve(kuberay={"codeUri": "gs://web-artifacts/jobs-2.1.0.zip"}), "web-dev")
    assert isinstance(cfg, TeamStackConfig)
    # NewCluster: a second copy of the `web` cluster (head, autoscaler, 2 workers) while upgrading.
    assert kuberay_demand(cfg.jobs, cfg.ray_clusters).cpu == pytest.approx(2 + 0.5 + 2 * 2)
    in_place = parse(SERVE_BASE, "web-dev")
    assert isinstance(in_place, TeamStackConfig)
    assert kuberay_demand(in_place.jobs, in_place.ray_clusters).cpu == 0


def test_a_redis_fault_tolerant_cluster_needs_room_for_its_cleanup_job() -> None:
    redis = with_changes(("rayClusters.0.gcsFaultTolerance", {"backend": "redis", "redisAddress": "redis:6379"}),
                         ("redisPassword", SECRET_PLACEHOLDER))
    cfg = parse(redis, "vision-prod", None, lookup)
    assert isinstance(cfg, TeamStackConfig)
    # KubeRay's cleanup Job pod, hard-coded in the operator: 200m, 256Mi, while the other clusters run on.
    extra = kuberay_demand(cfg.jobs, cfg.ray_clusters)
    assert (extra.cpu, extra.memory, extra.gpus, extra.pods) == (pytest.approx(0.2), 256 * 2**20, 0, 1)
    rocksdb = parse(with_change("rayClusters.0.gcsFaultTolerance", {"backend": "rocksdb"}), "vision-prod", None,
                    lookup)
    assert isinstance(rocksdb, TeamStackConfig)
    assert kuberay_demand(rocksdb.jobs, rocksdb.ray_clusters).pods == 0
