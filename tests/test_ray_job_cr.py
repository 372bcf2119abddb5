"""`submission: kuberay` batch jobs as RayJob custom resources (components/team/ray_job_cr.py) and
the quota they need (waiting for them: tests/hooks/test_kuberay_wait.py).

Every RayJob rendered for every team stack validates strictly against the pinned KubeRay CRD and
keeps the platform's contracts; the entrypoint and runtime env a RayJob carries run for real on
the local Ray head, with the code archive as a file:// URI standing in for s3://.
"""
from __future__ import annotations

import re
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.job_submission import JobSubmissionClient

from components.config.fit import ephemeral_cluster, kuberay_demand, max_demand
from components.config.model import (
    CODE_URI, DNS1035, KUBERAY_CR_NAME_MAX, JobConfig, JobResources, KubeRayJobConfig, RayClusterConfig,
    WorkerGroupConfig,
)
from components.constants import GPU_RESOURCE, GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE
from components.team.post_deploy import JOBS_DIR, entrypoint
from components.specs.digest import spec_digest
from components.specs.rayjob import KIND, SUBMITTER_CONTAINER, ray_job
from components.versions import RAY_VERSION
from jobs.common import parse_result
from tests.stacks import config_of, ids, manifests_of, ray_pods, rendered, stack_files
from tools.k8s_schema import validate_object
from tools.local_ray import LocalRay
from tools.render import STACKS_DIR

Obj = dict[str, Any]
TEAM = stack_files("team")
ARCHIVE_TOP = "ray-platform-jobs"


def ray_jobs(path: Path) -> list[Obj]:
    return manifests_of(rendered(path), KIND)


def jobs_archive(directory: Path) -> str:
    """The code archive CI publishes (`git archive --prefix=ray-platform-jobs/ HEAD jobs`), as a file:// URI."""
    path = directory / "jobs-test.zip"
    with zipfile.ZipFile(path, "w") as archive:
        for source in sorted(JOBS_DIR.rglob("*.py")):
            archive.write(source, f"{ARCHIVE_TOP}/jobs/{source.relative_to(JOBS_DIR).as_posix()}")
    return path.as_uri()


# --- every RayJob of every stack -------------------------------------------------------------

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
        # Exactly what the SDK path runs (and tests/test_jobs.py runs for real).
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
    assert extra.gpus == 1 and extra.pods == 1 + max_demand((ephemeral_cluster(train, base),)).pods
    need = max_demand(cfg.ray_clusters)
    assert need.gpus + extra.gpus <= cfg.team.quota.gpus


# --- the builder -------------------------------------------------------------------------------

CLUSTER = RayClusterConfig(name="batch", worker_groups=(
    WorkerGroupConfig(name="cpu", cpu="2", memory="8Gi", min_replicas=1, replicas=2, max_replicas=4),
    WorkerGroupConfig(name="gpu", cpu="4", memory="16Gi", gpus=1, max_replicas=2, gpu_pool="g5"),
))


def core_job(**kuberay: Any) -> JobConfig:
    return JobConfig(name="core-stats", kind="core", cluster="batch", settings={"num_chunks": 4},
                     resources=JobResources(cpus=0.5),
                     submission="kuberay", kuberay=KubeRayJobConfig(code_uri="s3://b/jobs-1.zip", **kuberay))


def test_the_name_changes_exactly_when_the_spec_does() -> None:
    job = core_job()
    first = ray_job(job, CLUSTER, "team-x", "x", entrypoint(job))
    assert first == ray_job(job, CLUSTER, "team-x", "x", entrypoint(job))
    changed = core_job(active_deadline_seconds=60)
    assert ray_job(changed, CLUSTER, "team-x", "x", entrypoint(changed))["metadata"]["name"] != \
        first["metadata"]["name"]
    assert first["spec"]["clusterSelector"] == {"ray.io/cluster": "batch"}
    assert first["spec"]["entrypointNumCpus"] == 0.5 and "entrypointNumGpus" not in first["spec"]


def test_ephemeral_clusters_take_only_the_capped_groups_and_no_gcs_state() -> None:
    job = core_job(ephemeral=True, worker_groups={"cpu": 1})
    spec = ray_job(job, CLUSTER, "team-x", "x", entrypoint(job))["spec"]
    (group,) = spec["rayClusterSpec"]["workerGroupSpecs"]
    assert (group["groupName"], group["minReplicas"], group["replicas"], group["maxReplicas"]) == ("cpu", 1, 1, 1)
    everything = core_job(ephemeral=True)
    assert len(ray_job(everything, CLUSTER, "team-x", "x", entrypoint(everything))["spec"]["rayClusterSpec"][
        "workerGroupSpecs"]) == 2


# --- the RayJob's entrypoint and runtime env, for real on the local Ray head --------------------

@pytest.mark.ray
@pytest.mark.timeout(240)
def test_the_rayjob_entrypoint_and_runtime_env_run_the_jobs_package_from_the_archive(
        ray_head: LocalRay, tmp_path: Path) -> None:
    job = core_job()
    spec = ray_job(job, CLUSTER, "team-x", "x", entrypoint(job))["spec"]
    runtime_env = yaml.safe_load(spec["runtimeEnvYAML"])
    assert runtime_env == {"working_dir": "s3://b/jobs-1.zip"}
    # The one substitution: the archive from a file:// URI instead of S3 (same download-and-unpack path).
    runtime_env["working_dir"] = jobs_archive(tmp_path)
    client = JobSubmissionClient(ray_head.dashboard_url)

    def run(entry: str) -> str:
        # As KubeRay's submitter does: `ray job submit --runtime-env-json --metadata-json
        # --entrypoint-num-cpus -- <entrypoint>`.
        sid = client.submit_job(entrypoint=entry, runtime_env=runtime_env, metadata=spec["metadata"],
                                entrypoint_num_cpus=spec["entrypointNumCpus"])
        deadline = time.monotonic() + 180
        while not (status := client.get_job_status(sid)).is_terminal():
            assert time.monotonic() < deadline, client.get_job_logs(sid)[-2000:]
            time.sleep(0.5)
        logs = client.get_job_logs(sid)
        assert status == "SUCCEEDED", logs[-3000:]
        return logs

    result = parse_result(run(spec["entrypoint"]))
    assert result is not None and result["rows"] == 1797 and result["chunks"] == 4
    where = run("python -c 'import jobs; print(\"jobs from\", jobs.__file__)'")
    location = re.search(r"jobs from (\S+)", where)
    assert location is not None and "runtime_resources" in location.group(1)
    assert not location.group(1).startswith(str(JOBS_DIR.parent)), "imported the checkout, not the archive"
