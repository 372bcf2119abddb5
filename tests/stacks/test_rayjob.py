"""Every RayJob rendered for every team stack (`submission: kuberay` batch jobs) validates strictly
against the pinned KubeRay CRD and keeps the platform's contracts."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config.fit import ephemeral_cluster, kuberay_demand, max_demand
from components.config.model import DNS1035, KUBERAY_CR_NAME_MAX
from components.config.work import CODE_URI
from components.constants import GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE
from components.clients.ray_jobs import entrypoint
from components.specs.digest import spec_digest
from components.specs.rayjob import KIND, SUBMITTER_CONTAINER
from components.versions import RAY_VERSION
from tests.stacks import config_of, ids, manifests_of, ray_pods, rendered, stack_files
from tools.k8s_schema import validate_object
from tools.render import STACKS_DIR

Obj = dict[str, Any]
TEAM = stack_files("team")


def ray_jobs(path: Path) -> list[Obj]:
    return manifests_of(rendered(path), KIND)


def test_vision_prod_runs_an_ephemeral_rayjob() -> None:
    (job,) = ray_jobs(STACKS_DIR / "Pulumi.vision-prod.yaml")
    assert job["spec"]["shutdownAfterJobFinishes"] is True and "rayClusterSpec" in job["spec"]


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_rayjob_validates_strictly_against_the_crd(path: Path) -> None:
    for obj in ray_jobs(path):
        assert validate_object(obj, "1.34") == [], obj["metadata"]["name"]
        name = obj["metadata"]["name"]
        assert DNS1035.match(name) and len(name) <= KUBERAY_CR_NAME_MAX, name


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_every_rayjob_runs_the_jobs_entrypoint_with_remote_code(path: Path) -> None:
    cfg = config_of(path)
    jobs = {j.name: j for j in cfg.jobs}
    for obj in ray_jobs(path):
        spec = obj["spec"]
        job = jobs[spec["metadata"]["ray-platform/job-name"]]
        # Exactly what the SDK path runs (and tests/jobs/test_jobs.py runs for real).
        assert spec["entrypoint"] == entrypoint(job)
        assert spec["entrypoint"].startswith(f"python -m jobs.{job.kind} --config-json ")
        env = yaml.safe_load(spec["runtimeEnvYAML"])
        assert CODE_URI.match(env["working_dir"]) and "py_modules" not in env
        assert obj["metadata"]["name"] == f"{job.name}-{spec_digest(spec)[:6]}"


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_rayjob_clusters_keep_the_platform_contracts(path: Path) -> None:
    cfg = config_of(path)
    declared = {m["metadata"]["name"] for m in manifests_of(rendered(path), "RayCluster")}
    for obj in ray_jobs(path):
        spec = obj["spec"]
        if "clusterSelector" in spec:
            # The long-lived cluster it selects is declared by the same stack; KubeRay retries
            # only by creating clusters, so no retries here (and no TTL, which needs shutdown).
            assert spec["clusterSelector"]["ray.io/cluster"] in declared
            assert spec["backoffLimit"] == 0 and "rayClusterSpec" not in spec
            assert not spec.get("shutdownAfterJobFinishes") and not spec.get("ttlSecondsAfterFinished")
            continue
        # Ephemeral: always torn down, whatever the outcome.
        rules = (spec.get("deletionStrategy") or {}).get("deletionRules")
        assert (spec.get("shutdownAfterJobFinishes") is True and "ttlSecondsAfterFinished" in spec) or rules
        cluster = spec["rayClusterSpec"]
        for group, pod, container, gpus in ray_pods(cluster):
            if gpus is not None:
                assert container["resources"]["requests"][GPU_RESOURCE] == gpus
                assert {"key": GPU_TAINT_KEY, "operator": "Equal", "value": GPU_TAINT_VALUE,
                        "effect": GPU_TAINT_EFFECT} in pod["tolerations"], group
        assert "gcsFaultToleranceOptions" not in cluster
    assert all(j.kuberay is None or j.submission == "kuberay" for j in cfg.jobs)


@pytest.mark.parametrize("path", TEAM, ids=ids(TEAM))
def test_the_submitter_is_light_and_never_holds_an_api_token(path: Path) -> None:
    for obj in ray_jobs(path):
        spec = obj["spec"]
        assert spec["submissionMode"] == "K8sJobMode" and spec["submitterConfig"]["backoffLimit"] >= 1
        pod = spec["submitterPodTemplate"]["spec"]
        (container,) = pod["containers"]
        assert container["name"] == SUBMITTER_CONTAINER and "command" not in container  # KubeRay's own command
        assert container["image"].split(":")[1].startswith(RAY_VERSION)
        assert container["resources"]["requests"] == container["resources"]["limits"]
        assert pod["automountServiceAccountToken"] is False and pod["restartPolicy"] == "Never"
        assert pod["securityContext"]["runAsNonRoot"] is True


def test_vision_prods_ephemeral_cluster_is_capped_and_fits_the_quota() -> None:
    cfg = config_of(STACKS_DIR / "Pulumi.vision-prod.yaml")
    train = next(j for j in cfg.jobs if j.name == "train-digits")
    (job,) = ray_jobs(STACKS_DIR / "Pulumi.vision-prod.yaml")
    groups = job["spec"]["rayClusterSpec"]["workerGroupSpecs"]
    assert [(g["groupName"], g["maxReplicas"]) for g in groups] == [("l40s-spot", 1)]
    assert (job["spec"]["ttlSecondsAfterFinished"], job["spec"]["activeDeadlineSeconds"],
            job["spec"]["backoffLimit"]) == (600, 3600, 1)
    extra = kuberay_demand(cfg.jobs, cfg.ray_clusters)
    base = next(c for c in cfg.ray_clusters if c.name == "train")
    # The submitter, the ephemeral cluster, and the Redis cleanup Job of each fault-tolerant cluster.
    redis = [c for c in cfg.ray_clusters if c.gcs_fault_tolerance and c.gcs_fault_tolerance.backend == "redis"]
    assert len(redis) == 1
    assert extra.gpus == 1 and extra.pods == 1 + max_demand((ephemeral_cluster(train, base),)).pods + len(redis)
    need = max_demand(cfg.ray_clusters)
    assert need.gpus + extra.gpus <= cfg.team.quota.gpus
