"""The KubeRay RayJob object of a `submission: kuberay` batch job, as a pure function of its config.

Same job code and job config as the SDK path (components/clients/ray_jobs.py): the entrypoint is the
same `python -m jobs.<kind> --config-json ...`; only the submission changes. KubeRay's submitter
pod runs `ray job submit` inside the cluster, so nothing outside the cluster talks to Ray.

Code: the SDK path uploads the local jobs/ package, which KubeRay cannot do. The runtime env's
`working_dir` is `kuberay.codeUri` instead, a .zip whose single top-level directory holds jobs/
(a CI artifact on S3, or a git archive URL); Ray downloads it on the cluster. Never a local path.

Cluster: `ephemeral: false` selects the stack's long-lived RayCluster `cluster` (clusterSelector);
`ephemeral: true` brings up a cluster of the same shape (worker groups optionally capped), built by
the same spec builder, and deletes it `ttlSecondsAfterFinished` after the job ends, whatever the
outcome. That is `shutdownAfterJobFinishes`, not `deletionStrategy.deletionRules`, on purpose: rules
match only SUCCEEDED or FAILED jobs and a deployment Failed, so a STOPPED job's cluster would stay up.

Identity: KubeRay runs a RayJob once and ignores later changes to its spec, so the CR's name
carries a digest of the spec: any change is a new RayJob, which `pulumi preview` shows as a
replacement (the new one is created, then the old one deleted, its finalizer stopping a job still
running).

Submitter (`submissionMode: K8sJobMode`, the default): a light pod (KubeRay fills in its command)
that tolerates a dashboard still starting: KubeRay's submit command first loops until the
dashboard's GCS health check passes, and asks `ray job status` before submitting, so the submitter
Job's retries never submit twice. `HTTPMode`: no pod; once the cluster is ready the operator itself
asks the head's dashboard for the job (by its id) and submits it when the dashboard does not know it,
so the operator must reach the dashboard (the namespace's NetworkPolicy admits it there).
"""
from __future__ import annotations

from typing import Any

import yaml

from components.config import fit
from components.config.fit import ephemeral_cluster, submitter_pod_containers
from components.config.model import RAYJOB_DIGEST_CHARS, JobConfig, KubeRayJobConfig, RayClusterConfig
from components.constants import METADATA_JOB_NAME, METADATA_KIND, RAY_CLUSTER_LABEL
from components.specs.digest import spec_digest
from components.specs.gpu_nodes import on_cpu_pool
from components.specs.raycluster import (
    API_VERSION, common_labels, container_security_context, guaranteed_resources, pod_security_context,
    ray_cluster,
)
from components.specs.queueing import job_queueing, queue_labels
from components.versions import RAY_IMAGE_CPU

KIND = "RayJob"
SUBMITTER_CONTAINER = fit.SUBMITTER_CONTAINER
# Retries of the submitter Job, for a dashboard that drops a connection while it starts.
SUBMITTER_BACKOFF_LIMIT = 3
# pulumi-kubernetes has no await logic for KubeRay kinds; components/hooks/kuberay_wait.py waits instead.
SKIP_AWAIT = {"pulumi.com/skipAwait": "true"}


def code_runtime_env(job: JobConfig, code_uri: str) -> dict[str, Any]:
    """The job's runtime env with its code as working_dir: `python -m jobs.<kind>` and Serve's
    `jobs.serve:app` then import the jobs/ package from the top of the unpacked archive. A team's
    job has its code.uri there instead, or no working_dir when its image holds the code."""
    code = job.work.code
    uri = code_uri or (code.uri if code is not None and job.work.custom else None)
    return {**job.runtime_env, **({"working_dir": uri} if uri else {})}


def ray_job_metadata(job: JobConfig, team: str) -> dict[str, str]:
    """Ray job metadata, under the keys the SDK path uses, so `make jobs` lists both alike."""
    return {"ray-platform/team": team, "ray-platform/cluster": job.cluster, METADATA_KIND: job.kind,
            METADATA_JOB_NAME: job.name}


def submitter_template(labels: dict[str, str]) -> dict[str, Any]:
    """The submitter pod: the Ray image for the `ray` CLI, a fraction of a CPU, no API token, off GPU nodes."""
    # Sized where the quota math counts it (components/config/fit.py).
    (size,) = submitter_pod_containers()
    container = {
        "name": size.name,
        "image": RAY_IMAGE_CPU,
        "imagePullPolicy": "IfNotPresent",
        "resources": guaranteed_resources(size.cpu, size.memory, size.gpus),
        "securityContext": container_security_context(),
    }
    return {"metadata": {"labels": dict(labels)}, "spec": {
        "restartPolicy": "Never",
        "containers": [container],
        "securityContext": pod_security_context(),
        "automountServiceAccountToken": False,
        "affinity": on_cpu_pool(),
    }}


def ray_job(job: JobConfig, cluster: RayClusterConfig, namespace: str, team: str, entrypoint: str) -> dict[str, Any]:
    """The RayJob object of a `submission: kuberay` batch job running `entrypoint` on (a copy of) `cluster`."""
    if not isinstance(job.kuberay, KubeRayJobConfig):
        raise ValueError(f"job {job.name!r} is not a kuberay batch job")
    kr = job.kuberay
    labels = common_labels(team)
    spec: dict[str, Any] = {
        "entrypoint": entrypoint,
        "runtimeEnvYAML": yaml.safe_dump(code_runtime_env(job, kr.code_uri), sort_keys=True),
        "metadata": ray_job_metadata(job, team),
        "submissionMode": kr.submission_mode,
        "backoffLimit": kr.backoff_limit,
    }
    if kr.runs_submitter:
        spec["submitterPodTemplate"] = submitter_template(labels)
        spec["submitterConfig"] = {"backoffLimit": SUBMITTER_BACKOFF_LIMIT}
    if job.resources.cpus is not None:
        spec["entrypointNumCpus"] = job.resources.cpus
    if job.resources.gpus is not None:
        spec["entrypointNumGpus"] = job.resources.gpus
    if kr.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = kr.active_deadline_seconds
    if kr.ephemeral:
        spec["rayClusterSpec"] = ray_cluster(ephemeral_cluster(job, cluster), namespace, team)["spec"]
        if cluster.queue is not None:
            # Created suspended: nothing starts until Kueue admits the job and its cluster whole. Safe
            # to state, unlike on a RayCluster: a RayJob's spec never changes (the digest in its name).
            spec["suspend"] = True
        spec["shutdownAfterJobFinishes"] = True
        spec["ttlSecondsAfterFinished"] = kr.ttl_seconds_after_finished
    else:
        spec["clusterSelector"] = {RAY_CLUSTER_LABEL: cluster.name}
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        # In a queued team every RayJob names the queue; Kueue leaves one on an existing cluster
        # (clusterSelector) alone, having admitted that cluster instead (docs/queues.md).
        "metadata": {"name": f"{job.name}-{spec_digest(spec)[:RAYJOB_DIGEST_CHARS]}", "namespace": namespace,
                     "labels": {**labels, **queue_labels(job_queueing(job, cluster))}, "annotations": dict(SKIP_AWAIT)},
        "spec": spec,
    }
