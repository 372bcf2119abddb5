"""The jobs of a team stack: what each runs, where, and how it is submitted (the SDK, or a
KubeRay RayJob or RayService)."""
from __future__ import annotations

from collections.abc import Mapping

from components.config.model import (
    CODE_URI, JOB_KINDS, JOB_NAME_MAX, JOB_WAITS, KUBERAY_CR_NAME_MAX, SERVICE_TYPES, SUBMISSIONS, UPGRADE_STRATEGIES,
    JobConfig, JobResources, KubeRayJobConfig, KubeRayServiceConfig, RayClusterConfig,
)
from components.config.reader import MISSING, Node, Problems, check_dns, check_unique, ns


def _check_code_uri(p: Problems, path: str, value: str | None) -> None:
    if value is not None and not CODE_URI.match(value):
        p.bad(path, value, "expected a remote .zip (s3://, gs:// or https://) whose single top-level directory "
                           "holds the jobs/ package; the kuberay path never ships a local path")


def _worker_group_caps(p: Problems, node: Node, cluster: RayClusterConfig | None) -> dict[str, int]:
    caps: dict[str, int] = {}
    known = sorted(g.name for g in cluster.worker_groups) if cluster is not None else None
    for group, cap in node.any_map("workerGroups").items():
        path = f"{node.key('workerGroups')}.{group}"
        if known is not None and group not in known:
            p.bad(path, cap, f"no such worker group in the job's RayCluster; known: {', '.join(known) or 'none'}")
        elif isinstance(cap, bool) or not isinstance(cap, int) or cap < 1:
            p.bad(path, cap, "expected the most workers of this group the job's cluster may have (an integer >= 1)")
        else:
            caps[str(group)] = cap
    return caps


def _parse_kuberay(p: Problems, node: Node, kind: str | None,
                   cluster: RayClusterConfig | None) -> KubeRayJobConfig | KubeRayServiceConfig | None:
    kr = node.child("kuberay", required=True, example="'{\"codeUri\": \"s3://my-bucket/ray-platform/jobs-1.0.0.zip\"}'")
    if kr is None:
        return None
    code_uri = kr.str("codeUri", MISSING, "s3://my-bucket/ray-platform/jobs-1.0.0.zip")
    _check_code_uri(p, kr.key("codeUri"), code_uri)
    cfg: KubeRayJobConfig | KubeRayServiceConfig
    if kind == "serve":
        cfg = KubeRayServiceConfig(
            code_uri=code_uri or "",
            upgrade_strategy=kr.str("upgradeStrategy", KubeRayServiceConfig.upgrade_strategy, choices=UPGRADE_STRATEGIES),
            service_type=kr.str("serviceType", KubeRayServiceConfig.service_type, choices=SERVICE_TYPES),
            initializing_timeout_seconds=kr.int("initializingTimeoutSeconds", None, minimum=60),
            health_check_period_seconds=kr.number("healthCheckPeriodSeconds", minimum=1),
            health_check_timeout_seconds=kr.number("healthCheckTimeoutSeconds", minimum=1),
            cluster_deletion_delay_seconds=kr.int("clusterDeletionDelaySeconds", None, minimum=0),
        )
        if cfg.cluster_deletion_delay_seconds is not None and cfg.upgrade_strategy != "NewCluster":
            p.bad(kr.key("clusterDeletionDelaySeconds"), cfg.cluster_deletion_delay_seconds,
                  "only with upgradeStrategy: NewCluster (how long the old cluster outlives the switch)")
    else:
        ephemeral = kr.bool("ephemeral", KubeRayJobConfig.ephemeral)
        cfg = KubeRayJobConfig(
            code_uri=code_uri or "", ephemeral=ephemeral,
            worker_groups=_worker_group_caps(p, kr, cluster),
            ttl_seconds_after_finished=kr.int("ttlSecondsAfterFinished", KubeRayJobConfig.ttl_seconds_after_finished, minimum=0),
            active_deadline_seconds=kr.int("activeDeadlineSeconds", None, minimum=1),
            backoff_limit=kr.int("backoffLimit", KubeRayJobConfig.backoff_limit, minimum=0, maximum=10),
        )
        if not ephemeral:
            for key in ("workerGroups", "ttlSecondsAfterFinished"):
                if key in kr.data:
                    p.bad(kr.key(key), kr.data[key],
                          "only with ephemeral: true (a job on the long-lived cluster leaves that cluster as it is)")
            if cfg.backoff_limit:
                p.bad(kr.key("backoffLimit"), cfg.backoff_limit,
                      "only with ephemeral: true: KubeRay retries a job on a new cluster, which a job on the "
                      "long-lived cluster cannot have")
    kr.done()
    return cfg


def _parse_job(p: Problems, node: Node, clusters: Mapping[str, RayClusterConfig]) -> JobConfig:
    name = node.str("name", MISSING, "train-digits")
    check_dns(p, node.key("name"), name, JOB_NAME_MAX, "job name")
    cluster = node.str("cluster", MISSING, "ray")
    if cluster is not None and clusters and cluster not in clusters:
        p.bad(node.key("cluster"), cluster, f"no such RayCluster in this stack; known: {', '.join(sorted(clusters))}")
    rnode = node.child("resources")
    resources = JobResources()
    if rnode is not None:
        resources = JobResources(cpus=rnode.number("cpus"), gpus=rnode.number("gpus"),
                                 memory=rnode.int("memoryBytes", None, minimum=1))
        rnode.done()
    kind = node.str("kind", MISSING, "train", choices=JOB_KINDS)
    submission = node.str("submission", JobConfig.submission, choices=SUBMISSIONS)
    kuberay = None
    if submission == "kuberay":
        kuberay = _parse_kuberay(p, node, kind, clusters.get(cluster or ""))
    elif node.raw("kuberay") is not MISSING:
        p.bad(node.key("kuberay"), node.data["kuberay"], "only with submission: kuberay")
    cfg = JobConfig(
        name=name, kind=kind,
        cluster=cluster,
        settings=node.any_map("settings"),
        runtime_env=node.any_map("runtimeEnv"),
        resources=resources,
        wait=node.str("wait", JobConfig.wait, choices=JOB_WAITS),
        timeout_seconds=node.int("timeoutSeconds", JobConfig.timeout_seconds, minimum=10),
        depends_on=node.str_list("dependsOn", []),
        submission=submission,
        kuberay=kuberay,
    )
    for key in ("py_modules", "working_dir"):
        if key in cfg.runtime_env:
            p.bad(f"{node.key('runtimeEnv')}.{key}", cfg.runtime_env[key],
                  "set by the platform (the jobs/ package is shipped and hashed for you, or kuberay.codeUri)")
    if isinstance(kuberay, KubeRayServiceConfig):
        if rnode is not None:
            p.bad(node.key("resources"), node.data["resources"],
                  "a RayService has no driver to reserve resources for; size the Serve replicas with "
                  "settings.num_cpus / use_gpu")
        if cfg.wait == "running":
            p.bad(node.key("wait"), cfg.wait, "a RayService is waited for until it is Ready: use succeeded or none")
    elif isinstance(kuberay, KubeRayJobConfig) and resources.memory is not None:
        p.bad(f"{node.key('resources')}.memoryBytes", resources.memory,
              "a RayJob cannot reserve entrypoint memory (the CRD has no field for it); use cpus/gpus, "
              "or submission: sdk")
    node.done()
    return cfg


def rayservice_owners(jobs: tuple[JobConfig, ...]) -> dict[str, JobConfig]:
    """RayCluster name -> the serve job whose RayService owns (creates and upgrades) that cluster."""
    owners: dict[str, JobConfig] = {}
    for job in jobs:
        if isinstance(job.kuberay, KubeRayServiceConfig):
            owners.setdefault(job.cluster, job)
    return owners


def _check_rayservice_ownership(p: Problems, jobs: tuple[JobConfig, ...],
                                clusters: Mapping[str, RayClusterConfig]) -> None:
    owners = rayservice_owners(jobs)
    for i, job in enumerate(jobs):
        if job.cluster is None:  # reported missing already
            continue
        owner = owners.get(job.cluster)
        path = f"{ns('jobs')}[{i}].cluster"
        if owner is None or owner is job:
            if owner is job and len(job.cluster) > KUBERAY_CR_NAME_MAX:
                p.bad(path, job.cluster, f"the RayService takes its cluster's name, which KubeRay limits to "
                                         f"{KUBERAY_CR_NAME_MAX} characters")
            ft = clusters[job.cluster].gcs_fault_tolerance if job.cluster in clusters else None
            if owner is job and ft is not None and ft.backend == "rocksdb":
                # Its volume is ReadWriteOnce and belongs to one head, while a RayService runs a
                # second cluster during every NewCluster upgrade.
                p.bad(path, job.cluster, "a RayService's cluster cannot keep its GCS in rocksdb (one volume, "
                                         "one head); use gcsFaultTolerance.backend: redis")
            continue
        what = "one RayService per cluster" if isinstance(job.kuberay, KubeRayServiceConfig) else \
            "no RayCluster of that name exists for this job to run on"
        p.bad(path, job.cluster, f"RayCluster {job.cluster!r} is owned by the RayService of job {owner.name!r} "
                                 f"(submission: kuberay); {what}")


def parse_jobs(p: Problems, root: Node, clusters: Mapping[str, RayClusterConfig]) -> tuple[JobConfig, ...]:
    jobs = tuple(_parse_job(p, n, clusters) for n in root.children("jobs"))
    names = [j.name for j in jobs]
    check_unique(p, ns("jobs"), names, "job names must be unique")
    for i, job in enumerate(jobs):
        for k, dep in enumerate(job.depends_on):
            if dep not in names:
                p.bad(f"{ns('jobs')}[{i}].dependsOn[{k}]", dep, f"no such job; known: {', '.join(names)}")
            elif names.index(dep) >= i:
                p.bad(f"{ns('jobs')}[{i}].dependsOn[{k}]", dep, "a job may depend only on jobs listed before it")
    _check_rayservice_ownership(p, jobs, clusters)
    return jobs

