"""The RayJob builder (components/specs/rayjob.py): its name tracks its spec, ephemeral clusters, and
the entrypoint and runtime env run for real on the local Ray head, with the code archive as a
file:// URI standing in for s3://."""
from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from ray.job_submission import JobSubmissionClient

from components.config.model import JobConfig, JobResources, KubeRayJobConfig, RayClusterConfig, WorkerGroupConfig
from components.clients.ray_jobs import entrypoint
from components.specs.rayjob import ray_job
from jobs.common import JOBS_DIR, parse_result
from tools.e2e.code_archive import jobs_archive as archive_at
from tools.local_ray import LocalRay

Obj = dict[str, Any]


def jobs_archive(directory: Path) -> str:
    """The code archive CI publishes (tools/e2e/code_archive.py), as a file:// URI."""
    return archive_at(directory).as_uri()


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


def test_http_mode_has_the_operator_submit_without_a_submitter_pod() -> None:
    job = core_job()
    default = ray_job(job, CLUSTER, "team-x", "x", entrypoint(job))["spec"]
    assert default["submissionMode"] == "K8sJobMode" and "submitterPodTemplate" in default
    http_job = core_job(submission_mode="HTTPMode")
    http = ray_job(http_job, CLUSTER, "team-x", "x", entrypoint(http_job))["spec"]
    assert http["submissionMode"] == "HTTPMode"
    assert "submitterPodTemplate" not in http and "submitterConfig" not in http
    assert {k: v for k, v in default.items() if not k.startswith("submi")} == \
        {k: v for k, v in http.items() if not k.startswith("submi")}


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
