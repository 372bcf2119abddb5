"""The jobs of a team stack (components/config/jobs.py): defaults and table-driven bad config of
`submission: kuberay` batch jobs (a RayJob) and serve jobs (a RayService), naming the exact key path."""
from __future__ import annotations

from typing import Any

import pytest

from components.config.model import KubeRayJobConfig, KubeRayServiceConfig, TeamStackConfig
from components.config.stack import parse
from tests.config_edits import assert_refused_at, with_first_job

# --- RayJob: a batch job ----------------------------------------------------------------------

RAYJOB_BASE: dict[str, Any] = {
    "layer": "team", "environment": "dev", "platformStack": "org/ray-platform/elsewhere",
    "team": {"name": "demo", "groups": ["devs"], "quota": {"cpu": "24", "memory": "96Gi", "gpus": 2, "pods": 10}},
    "rayClusters": [{"name": "batch", "workerGroups": [
        {"name": "cpu", "cpu": "2", "memory": "8Gi", "maxReplicas": 2},
        {"name": "gpu", "cpu": "4", "memory": "16Gi", "gpus": 1, "maxReplicas": 1}]}],
    "jobs": [{"name": "core-stats", "kind": "core", "cluster": "batch", "submission": "kuberay",
              "kuberay": {"codeUri": "s3://bucket/ray-platform/jobs-1.0.0.zip"}}],
}


def with_job(**changes: Any) -> dict[str, Any]:
    return with_first_job(RAYJOB_BASE, **changes)


def with_quota(raw: dict[str, Any], **quota: Any) -> dict[str, Any]:
    return {**raw, "team": {**raw["team"], "quota": {**raw["team"]["quota"], **quota}}}


def test_kuberay_job_config_defaults() -> None:
    cfg = parse(RAYJOB_BASE, "demo-dev")
    assert isinstance(cfg, TeamStackConfig)
    (job,) = cfg.jobs
    assert job.kuberay == KubeRayJobConfig(code_uri="s3://bucket/ray-platform/jobs-1.0.0.zip")
    assert (job.kuberay.ephemeral, job.kuberay.ttl_seconds_after_finished, job.kuberay.backoff_limit) == (False, 600, 0)
    assert job.kuberay.submission_mode == "K8sJobMode"
    http = parse(with_job(kuberay_submissionMode="HTTPMode"), "demo-dev")
    assert isinstance(http, TeamStackConfig) and http.jobs[0].kuberay.submission_mode == "HTTPMode"
    sdk = parse({**RAYJOB_BASE, "jobs": [{"name": "c", "kind": "core", "cluster": "batch"}]}, "demo-dev")
    assert isinstance(sdk, TeamStackConfig) and sdk.jobs[0].kuberay is None and sdk.jobs[0].submission == "sdk"


RAYJOB_CASES = [
    ("unknown submission", with_job(submission="operator"), "ray-platform:jobs[0].submission",
     "allowed: sdk, kuberay"),
    ("kuberay without its block", with_job(kuberay=None), "ray-platform:jobs[0].kuberay",
     "required but not set; fix: pulumi config set --path 'ray-platform:jobs[0].kuberay'"),
    ("kuberay block on an sdk job", with_job(submission="sdk"), "ray-platform:jobs[0].kuberay",
     "only with submission: kuberay"),
    ("no code URI", with_job(kuberay={"ephemeral": True}), "ray-platform:jobs[0].kuberay.codeUri",
     "required but not set"),
    ("a local path as code", with_job(kuberay_codeUri="./jobs"), "ray-platform:jobs[0].kuberay.codeUri",
     "never ships a local path"),
    ("file:// code", with_job(kuberay_codeUri="file:///srv/jobs.zip"), "ray-platform:jobs[0].kuberay.codeUri",
     "expected a remote .zip (s3://, gs:// or https://)"),
    ("code that is not a zip", with_job(kuberay_codeUri="s3://b/jobs.tar"), "ray-platform:jobs[0].kuberay.codeUri",
     "expected a remote .zip"),
    ("retries on the long-lived cluster", with_job(kuberay_backoffLimit=2), "ray-platform:jobs[0].kuberay.backoffLimit",
     "only with ephemeral: true"),
    ("TTL on the long-lived cluster", with_job(kuberay_ttlSecondsAfterFinished=60),
     "ray-platform:jobs[0].kuberay.ttlSecondsAfterFinished", "only with ephemeral: true"),
    ("caps on the long-lived cluster", with_job(kuberay_workerGroups={"cpu": 1}),
     "ray-platform:jobs[0].kuberay.workerGroups", "only with ephemeral: true"),
    ("cap of an unknown group", with_job(kuberay_ephemeral=True, kuberay_workerGroups={"tpu": 1}),
     "ray-platform:jobs[0].kuberay.workerGroups.tpu", "no such worker group in the job's RayCluster; known: cpu, gpu"),
    ("cap of zero", with_job(kuberay_ephemeral=True, kuberay_workerGroups={"cpu": 0}),
     "ray-platform:jobs[0].kuberay.workerGroups.cpu", "an integer >= 1"),
    ("negative TTL", with_job(kuberay_ephemeral=True, kuberay_ttlSecondsAfterFinished=-1),
     "ray-platform:jobs[0].kuberay.ttlSecondsAfterFinished", "must be >= 0"),
    ("zero deadline", with_job(kuberay_activeDeadlineSeconds=0), "ray-platform:jobs[0].kuberay.activeDeadlineSeconds",
     "must be >= 1"),
    ("too many retries", with_job(kuberay_ephemeral=True, kuberay_backoffLimit=11),
     "ray-platform:jobs[0].kuberay.backoffLimit", "must be <= 10"),
    ("unknown submission mode", with_job(kuberay_submissionMode="SidecarMode"),
     "ray-platform:jobs[0].kuberay.submissionMode", "allowed: K8sJobMode, HTTPMode"),
    ("a RayService key on a RayJob", with_job(kuberay_upgradeStrategy="None"),
     "ray-platform:jobs[0].kuberay.upgradeStrategy", "unknown key; known keys here:"),
    ("entrypoint memory", with_job(resources={"memoryBytes": 2**30}), "ray-platform:jobs[0].resources.memoryBytes",
     "a RayJob cannot reserve entrypoint memory"),
    ("working_dir in the runtime env", with_job(runtimeEnv={"working_dir": "."}),
     "ray-platform:jobs[0].runtimeEnv.working_dir", "or kuberay.codeUri"),
    ("ephemeral cluster beyond the GPU quota", with_quota(with_job(kuberay_ephemeral=True), gpus=1),
     "ray-platform:team.quota.gpus", "plus what the KubeRay operator starts for the KubeRay jobs (core-stats) and "
                                     "the clusters (submitter pods, ephemeral RayJob clusters, a RayService's second "
                                     "cluster during a NewCluster upgrade, the Redis cleanup Job of a fault-tolerant "
                                     "cluster being deleted) can request 2 GPUs, 1 more than the quota"),
    ("ephemeral cluster beyond the pod quota",
     with_quota(with_job(kuberay_ephemeral=True, kuberay_workerGroups={"cpu": 2}), pods=6),
     "ray-platform:team.quota.pods", "can request 8 pods, 2 more than the quota"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in RAYJOB_CASES], ids=[c[0] for c in RAYJOB_CASES])
def test_bad_kuberay_job_config_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at(raw, path, allowed, "demo-dev")


# --- RayService: a serve job --------------------------------------------------------------------

SERVE_BASE: dict[str, Any] = {
    "layer": "team", "environment": "dev", "platformStack": "org/ray-platform/elsewhere",
    "team": {"name": "web", "groups": ["devs"], "quota": {"cpu": "32", "memory": "96Gi", "gpus": 0}},
    "rayClusters": [{"name": "web", "workerGroups": [{"name": "cpu", "cpu": "2", "memory": "8Gi", "maxReplicas": 2}]},
                    {"name": "batch", "workerGroups": [{"name": "cpu", "cpu": "2", "memory": "8Gi"}]}],
    "jobs": [{"name": "serve-web", "kind": "serve", "cluster": "web", "submission": "kuberay",
              "kuberay": {"codeUri": "gs://web-artifacts/jobs-2.1.0.zip", "upgradeStrategy": "None"}}],
}


def with_serve(*extra_jobs: dict[str, Any], **changes: Any) -> dict[str, Any]:
    raw = with_first_job(SERVE_BASE, **changes)
    raw["jobs"].extend(extra_jobs)
    return raw


def test_serve_config_defaults() -> None:
    cfg = parse(with_serve(kuberay={"codeUri": "gs://web-artifacts/jobs-2.1.0.zip"}), "web-dev")
    assert isinstance(cfg, TeamStackConfig)
    (job,) = cfg.jobs
    assert job.kuberay == KubeRayServiceConfig(code_uri="gs://web-artifacts/jobs-2.1.0.zip")
    assert (job.kuberay.upgrade_strategy, job.kuberay.service_type) == ("NewCluster", "ClusterIP")


SDK_ON_WEB = {"name": "core", "kind": "core", "cluster": "web"}
SECOND_SERVICE = {"name": "serve-2", "kind": "serve", "cluster": "web", "submission": "kuberay",
                  "kuberay": {"codeUri": "gs://web-artifacts/jobs-2.1.0.zip"}}

SERVE_CASES = [
    ("incremental upgrades", with_serve(kuberay_upgradeStrategy="NewClusterWithIncrementalUpgrade"),
     "ray-platform:jobs[0].kuberay.upgradeStrategy", "allowed: NewCluster, None"),
    ("public serve service", with_serve(kuberay_serviceType="LoadBalancer"), "ray-platform:jobs[0].kuberay.serviceType",
     "allowed: ClusterIP, LoadBalancer-internal"),
    ("initializing timeout too short", with_serve(kuberay_initializingTimeoutSeconds=10),
     "ray-platform:jobs[0].kuberay.initializingTimeoutSeconds", "must be >= 60"),
    ("zero health check period", with_serve(kuberay_healthCheckPeriodSeconds=0),
     "ray-platform:jobs[0].kuberay.healthCheckPeriodSeconds", "must be >= 1"),
    ("deletion delay without NewCluster", with_serve(kuberay_clusterDeletionDelaySeconds=60),
     "ray-platform:jobs[0].kuberay.clusterDeletionDelaySeconds", "only with upgradeStrategy: NewCluster"),
    ("a RayJob key on a RayService", with_serve(kuberay_ephemeral=True), "ray-platform:jobs[0].kuberay.ephemeral",
     "unknown key; known keys here: clusterDeletionDelaySeconds, codeUri"),
    ("waiting for running", with_serve(wait="running"), "ray-platform:jobs[0].wait",
     "a RayService is waited for until it is Ready"),
    ("driver resources", with_serve(resources={"cpus": 1}), "ray-platform:jobs[0].resources",
     "a RayService has no driver"),
    ("a RayService without its cluster", with_serve(cluster=None), "ray-platform:jobs[0].cluster",
     "required but not set"),
    ("a second RayService on the cluster", with_serve(SECOND_SERVICE), "ray-platform:jobs[1].cluster",
     "RayCluster 'web' is owned by the RayService of job 'serve-web' (submission: kuberay); one RayService per "
     "cluster"),
    ("another job on the owned cluster", with_serve(SDK_ON_WEB), "ray-platform:jobs[1].cluster",
     "no RayCluster of that name exists for this job to run on"),
    ("cluster name too long for a RayService",
     {**with_serve(cluster="w" * 48), "rayClusters": [{"name": "w" * 48}]}, "ray-platform:jobs[0].cluster",
     "which KubeRay limits to 47 characters"),
    ("a RayService cluster keeping its GCS in rocksdb",
     {**SERVE_BASE, "rayClusters": [{**SERVE_BASE["rayClusters"][0], "gcsFaultTolerance": {"backend": "rocksdb"}},
                              SERVE_BASE["rayClusters"][1]]},
     "ray-platform:jobs[0].cluster", "cannot keep its GCS in rocksdb"),
    ("two clusters during a NewCluster upgrade beyond the quota",
     {**with_serve(kuberay_upgradeStrategy="NewCluster"),
      "team": {**SERVE_BASE["team"], "quota": {"cpu": "15", "memory": "96Gi", "gpus": 0}}},
     "ray-platform:team.quota.cpu", "can request 17.5 CPUs, 2.5 more than the quota; raise the quota, cap "
                                    "ephemeral clusters with kuberay.workerGroups, or use upgradeStrategy: None"),
]


@pytest.mark.parametrize(("raw", "path", "allowed"), [c[1:] for c in SERVE_CASES], ids=[c[0] for c in SERVE_CASES])
def test_bad_serve_config_names_the_key_path(raw: dict[str, Any], path: str, allowed: str) -> None:
    assert_refused_at(raw, path, allowed, "web-dev")
