"""Queueing config (components/config/queues.py): the platform's `queues`, a team's `queue`, and the
preview-time checks with numbers (quota against pools, cohort and ResourceQuota; RayClusters that can
never be admitted; flavors naming no pool)."""
from __future__ import annotations

from typing import Any

import pytest

from components.config.model import PlatformConfig, TeamStackConfig
from components.config.queue_model import CohortConfig, QueueQuota, Queueing, QueuesConfig
from components.config.stack import parse
from tests.config_edits import DELETE, assert_refused_at
from tests.config_edits import with_change as edit

PLATFORM: dict[str, Any] = {
    "layer": "platform", "environment": "dev",
    "cluster": {"provider": "eks", "name": "ray-q"},
    "gpuPools": [
        {"name": "a10g", "instanceTypes": ["g5.xlarge"], "maxSize": 4, "gpusPerNode": 1},
        {"name": "h100", "instanceTypes": ["p5.48xlarge"], "maxSize": 1, "gpusPerNode": 8},
    ],
    "queues": {"cohorts": [{"name": "ml", "teams": ["vision", "nlp"]}]},
}
TEAM: dict[str, Any] = {
    "layer": "team", "environment": "dev", "platformStack": "q",
    "team": {"name": "vision", "groups": ["vision-ml"], "quota": {"cpu": "64", "memory": "256Gi", "gpus": 12}},
    "queue": {"cpu": "32", "memory": "128Gi", "gpus": {"a10g": 2, "h100": {"nominal": 8, "lendingLimit": 4}}},
    "rayClusters": [{
        "name": "train",
        "workerGroups": [{"name": "gpu", "cpu": "6", "memory": "24Gi", "gpus": 1, "replicas": 1, "maxReplicas": 4,
                          "gpuPool": "a10g"}],
    }],
    "jobs": [{"name": "tune", "kind": "train", "cluster": "train", "submission": "kuberay",
              "kuberay": {"codeUri": "s3://b/jobs.zip", "ephemeral": True, "workerGroups": {"gpu": 2}}}],
}


def platforms(**changes: Any) -> Any:
    raw = PLATFORM
    for path, value in changes.items():
        raw = edit(path.replace("__", "."), value, raw)

    def lookup(name: str) -> PlatformConfig | None:
        cfg = parse(raw, name, "us-west-2")
        assert isinstance(cfg, PlatformConfig)
        return cfg
    return lookup


def team(raw: dict[str, Any] = TEAM, **platform_changes: Any) -> TeamStackConfig:
    cfg = parse(raw, "vision-dev", None, platforms(**platform_changes))
    assert isinstance(cfg, TeamStackConfig)
    return cfg


def test_platform_queues_default_and_parse() -> None:
    cfg = platforms()("q")
    assert cfg is not None and cfg.queues == QueuesConfig(cohorts=(CohortConfig("ml", ("vision", "nlp")),))
    assert cfg.queues.priority_classes == {"production": 1000, "batch": 100, "experiments": 10}
    assert cfg.queues.cohort_of("nlp") == "ml" and cfg.queues.cohort_of("other") is None
    assert platforms(queues=DELETE)("q").queues is None  # type: ignore[union-attr]


def test_team_queue_parses_short_and_long_forms_and_queues_its_clusters() -> None:
    cfg = team()
    assert cfg.queue is not None
    assert cfg.queue.cpu == QueueQuota("32") and cfg.queue.gpus["h100"] == QueueQuota("8", lending_limit="4")
    assert cfg.queue.priority_class == "batch"
    assert cfg.ray_clusters[0].queue == Queueing(local_queue="vision", priority_class="batch")


def test_a_rayservice_cluster_stays_out_of_the_queue() -> None:
    raw = edit("jobs", [{"name": "serve", "kind": "serve", "cluster": "train", "submission": "kuberay",
                         "kuberay": {"codeUri": "s3://b/jobs.zip"}}], TEAM)
    assert team(raw).ray_clusters[0].queue is None


BAD_PLATFORM = [
    ("queues.cohorts.0.teams", ["vision"], "queues.cohorts[0].teams", "at least two"),
    ("queues.cohorts", [{"name": "a", "teams": ["x", "y"]}, {"name": "b", "teams": ["y", "z"]}],
     "queues.cohorts[1].teams", "already in cohort 'a'"),
    ("queues.cohorts.0.name", "ML!", "queues.cohorts[0].name", "DNS-1123"),
    ("queues.priorityClasses", {"high": "1000"}, "queues.priorityClasses.high", "integer"),
    ("queues.priorityClasses", {}, "queues.priorityClasses", "at least one"),
    ("gpuPools.0.name", "cpu", "gpuPools[0].name", "CPU ResourceFlavor"),
    ("queues.cohort", "ml", "queues.cohort", "unknown key"),
]


@pytest.mark.parametrize("path,value,where,allowed", BAD_PLATFORM, ids=[b[2] + "=" + str(b[1]) for b in BAD_PLATFORM])
def test_bad_platform_queues_name_the_key_path(path: str, value: Any, where: str, allowed: str) -> None:
    assert_refused_at(edit(path, value, PLATFORM), f"ray-platform:{where}", allowed, "q", "us-west-2")


BAD_TEAM = [
    # Against the team's own ResourceQuota: Kueue must not admit what the quota then refuses.
    ("queue.cpu", "80", "queue.cpu.nominal", "nominal CPUs (80) is above its ResourceQuota (team.quota: 64)"),
    ("queue.memory", {"nominal": "128Gi", "borrowingLimit": "200Gi"}, "queue.memory.borrowingLimit",
     "nominal 128Gi + borrowing 200Gi = 328Gi memory is above the team's ResourceQuota (team.quota: 256Gi)"),
    ("queue.gpus.a10g", 6, "queue.gpus", "the nominal GPUs add up to 14, above the team's ResourceQuota"),
    ("queue.gpus.a10g", {"nominal": 2, "lendingLimit": 3}, "queue.gpus.a10g.lendingLimit", "at most its nominal"),
    # Against the platform: pools, cohort, priority classes.
    ("queue.gpus.t4", 1, "queue.gpus.t4", "flavor 't4' names no GPU pool of platform stack 'q' (pools: a10g, h100)"),
    ("queue.gpus.h100", 10, "queue.gpus.h100.nominal", "pool 'h100' holds at most 8 GPUs (1 node(s) x 8 GPU(s)"),
    ("queue.priorityClass", "urgent", "queue.priorityClass", "has priority classes: production, batch, experiments"),
    ("jobs.0.kuberay.priorityClass", "urgent", "jobs[0].kuberay.priorityClass",
     "has priority classes: production, batch, experiments"),
    ("queue.cpu", {"nominal": "8", "wat": 1}, "queue.cpu.wat", "unknown key"),
    ("queue.cpu", DELETE, "queue.cpu", "required but not set"),
]


@pytest.mark.parametrize("path,value,where,allowed", BAD_TEAM, ids=[b[2] for b in BAD_TEAM])
def test_bad_team_queue_names_the_key_path_and_the_numbers(path: str, value: Any, where: str, allowed: str) -> None:
    assert_refused_at(edit(path, value, TEAM), f"ray-platform:{where}", allowed, "vision-dev", None, platforms())


def test_the_cohort_capacity_is_the_pools_gpus() -> None:
    # Each pool holds enough, the team quota too, but all of the platform's GPU pools hold 12.
    raw = edit("team.quota.gpus", 16, edit("queue.gpus.a10g", 4, edit("queue.gpus.h100", 8, TEAM)))
    raw = edit("queue.gpus.h100", {"nominal": 8}, raw)
    cfg_platform = platforms(gpuPools__1__maxSize=1, gpuPools__0__maxSize=3)
    assert_refused_at(raw, "ray-platform:queue.gpus", "GPU pools of cohort 'ml' hold at most 11", "vision-dev",
                      None, cfg_platform)


def test_a_job_s_own_priority_class_labels_its_rayjob_and_needs_an_ephemeral_job_in_a_queued_team() -> None:
    urgent = edit("jobs.0.kuberay.priorityClass", "production", TEAM)
    kr = team(urgent).jobs[0].kuberay
    assert kr is not None and kr.priority_class == "production"  # type: ignore[union-attr]
    assert_refused_at(edit("queue", DELETE, urgent), "ray-platform:jobs[0].kuberay.priorityClass",
                      "only in a queued team", "vision-dev", None, platforms())
    on_long_lived = edit("jobs.0.kuberay", {"codeUri": "s3://b/jobs.zip", "priorityClass": "production"}, TEAM)
    assert_refused_at(on_long_lived, "ray-platform:jobs[0].kuberay.priorityClass", "only with ephemeral: true",
                      "vision-dev", None, platforms())


def test_limits_need_a_cohort_and_a_queue_needs_kueue() -> None:
    no_cohort = {"queues__cohorts": []}
    assert_refused_at(TEAM, "ray-platform:queue.gpus.h100", "is in no cohort of platform stack 'q'", "vision-dev",
                      None, platforms(**no_cohort))
    assert_refused_at(TEAM, "ray-platform:queue", "installs no Kueue", "vision-dev", None,
                      platforms(queues=DELETE))


CANNOT_ADMIT = [
    # The elastic long-lived cluster is admitted at its initial replicas: 4 A10Gs fit nominal 2 plus,
    # in the cohort, the borrowing team.quota leaves (12 - 10 nominal = 2), and the pool (4 x 1).
    ({"rayClusters.0.workerGroups.0.replicas": 4}, {}, "rayClusters[0]", None),
    ({"rayClusters.0.workerGroups.0.replicas": 4}, {"gpuPools__0__maxSize": 3}, "rayClusters[0]",
     "at its initial replicas (an elastic job), which needs 4 GPUs of pool 'a10g', and the team's queue can "
     "admit at most 3 there"),
    # Without a cohort the queue admits its nominal only.
    ({}, {"queues__cohorts": []}, "rayClusters[0]",
     "needs 3 GPUs of pool 'a10g', and the team's queue can admit at most 2 there"),
    # An ephemeral RayJob's cluster is admitted whole at its maxReplicas (the job's cap).
    ({"jobs.0.kuberay.workerGroups.gpu": 4, "rayClusters.0.workerGroups.0.replicas": 1},
     {"gpuPools__0__maxSize": 3}, "jobs[0]",
     "at its maxReplicas, which needs 4 GPUs of pool 'a10g', and the team's queue can admit at most 3"),
    ({"rayClusters.0.head.cpu": "40"}, {"queues__cohorts": []}, "rayClusters[0]", "CPUs, and the team's queue can "
                                                                                    "admit at most 32"),
]


@pytest.mark.parametrize("changes,platform_changes,where,allowed", CANNOT_ADMIT,
                         ids=[f"{c[0]}{c[1]}" for c in CANNOT_ADMIT])
def test_a_cluster_that_can_never_be_admitted_is_refused_with_numbers(
        changes: dict[str, Any], platform_changes: dict[str, Any], where: str, allowed: str | None) -> None:
    raw = edit("rayClusters.0.workerGroups.0.replicas", 3, TEAM)
    for path, value in changes.items():
        raw = edit(path, value, raw)
    lookup = platforms(**platform_changes)
    if allowed is None:
        parse(raw, "vision-dev", None, lookup)
        return
    assert_refused_at(raw, f"ray-platform:{where}", allowed, "vision-dev", None, lookup)


def test_a_cluster_needing_a_pool_without_quota_is_refused() -> None:
    raw = edit("queue.gpus", {"h100": 8}, TEAM)
    assert_refused_at(raw, "ray-platform:rayClusters[0]", "has no quota there (queue.gpus: h100)", "vision-dev",
                      None, platforms())
