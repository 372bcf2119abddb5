"""The jobs of a team stack: what each runs, where, and how it is submitted (the SDK, or a
KubeRay RayJob or RayService)."""
from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from components.config.code import files_digest, repository_root, runtime_env_keys, shipped_files
from components.config.model import (
    DNS1123, JOB_KINDS, JOB_NAME_MAX, JOB_WAITS, KUBERAY_CR_NAME_MAX, RAYJOB_SUBMISSION_MODES, SERVICE_TYPES, SUBMISSIONS,
    UPGRADE_STRATEGIES,
    JobConfig, JobResources, KubeRayJobConfig, KubeRayServiceConfig, RayClusterConfig,
)
from components.config.reader import MISSING, Node, Problems, check_dns, check_unique, ns
from components.config.work import (
    CODE_MAX_BYTES, CODE_URI, ENV_VAR, IMPORT_PATH, SECRET_KEY, CodeConfig, SecretEnv, ServeAppConfig, WorkConfig,
)
from jobs.common import JOBS_DIR

# Where a job's code path is resolved when the caller names no stack file: the project's stacks/.
DEFAULT_STACK_DIR = JOBS_DIR.parent / "stacks"
# The settings of a team's Serve app (launcher/serve.py): where Serve listens, should the app be the
# one to start it, and its ingress deployment's scale, as for the built-in serve job.
SERVE_APP_SCALE = ("num_replicas", "min_replicas", "max_replicas", "target_ongoing_requests", "num_cpus", "num_gpus",
                   "max_ongoing_requests")
SERVE_APP_SETTINGS = ("http_host", "http_port", *SERVE_APP_SCALE)
# Keys of runtimeEnv the platform sets from `code`.
PLATFORM_RUNTIME_ENV = ("working_dir", "py_modules")


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


def _parse_kuberay(p: Problems, node: Node, kind: str | None, cluster: RayClusterConfig | None,
                   work: WorkConfig) -> KubeRayJobConfig | KubeRayServiceConfig | None:
    kr = node.child("kuberay", required=not work.custom,
                    example="'{\"codeUri\": \"s3://my-bucket/ray-platform/jobs-1.0.0.zip\"}'")
    if work.custom:
        # A team's job brings its code as code.uri (or in its image); KubeRay never ships a local path.
        if work.code is not None and work.code.path is not None:
            p.bad(f"{node.key('code')}.path", node.data["code"]["path"],
                  "the kuberay path never ships a local path: give code.uri (a remote .zip) or use the image's code")
        kr = kr or Node(p, node.key("kuberay"), {})
        code_uri = None
        if "codeUri" in kr.data:
            p.bad(kr.key("codeUri"), kr.data["codeUri"], "for the built-in jobs; a team's job gives code.uri")
            kr.raw("codeUri")
    elif kr is None:
        return None
    else:
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
            priority_class=kr.str("priorityClass", None),
            submission_mode=kr.str("submissionMode", KubeRayJobConfig.submission_mode, choices=RAYJOB_SUBMISSION_MODES),
        )
        if not ephemeral:
            for key in ("workerGroups", "ttlSecondsAfterFinished", "priorityClass"):
                if key in kr.data:
                    p.bad(kr.key(key), kr.data[key],
                          "only with ephemeral: true (a job on the long-lived cluster leaves that cluster as it is)")
            if cfg.backoff_limit:
                p.bad(kr.key("backoffLimit"), cfg.backoff_limit,
                      "only with ephemeral: true: KubeRay retries a job on a new cluster, which a job on the "
                      "long-lived cluster cannot have")
    kr.done()
    return cfg


def _mib(size: int) -> str:
    return f"{size / 2**20:.1f} MiB"


def _code_dir(p: Problems, key: str, path: str, stack_dir: Path, excludes: list[str]) -> CodeConfig | None:
    root = repository_root(stack_dir)
    target = (stack_dir / path).resolve()
    if not target.is_relative_to(root):
        p.bad(key, path, f"resolves to {target}, outside the repository {root}: a job ships code from the "
                         "checkout being deployed")
        return None
    if not target.is_dir():
        p.bad(key, path, f"no such directory {target} (a path is relative to the stack file's directory, {stack_dir})")
        return None
    files = shipped_files(target, excludes)
    size = sum(f.stat().st_size for f in files)
    if size > CODE_MAX_BYTES:
        largest = sorted(files, key=lambda f: f.stat().st_size, reverse=True)[:3]
        names = ", ".join(f"{f.relative_to(target)} ({_mib(f.stat().st_size)})" for f in largest)
        p.bad(key, path, f"ships {_mib(size)}, over the {_mib(CODE_MAX_BYTES)} a job's code may have (largest: "
                         f"{names}); list data, weights and environments in its .rayignore or .gitignore (or "
                         "runtimeEnv.excludes) and put them in storage or the image")
    return CodeConfig(path=str(target), digest=files_digest(target, files))


def _parse_code(p: Problems, node: Node, stack_dir: Path, excludes: list[str]) -> CodeConfig | None:
    cnode = node.child("code")
    if cnode is None:
        return None
    path = cnode.str("path", None)
    uri = cnode.str("uri", None)
    cnode.done()
    if (path is None) == (uri is None):
        p.bad(node.key("code"), cnode.data, "give exactly one of path (a directory, relative to the stack file) or "
                                            "uri (a remote .zip); leave code out to run what the image holds")
        return None
    if uri is not None:
        if not CODE_URI.match(uri):
            p.bad(cnode.key("uri"), uri, "unsupported URI: expected a remote .zip Ray can fetch on the cluster "
                                         "(s3://, gs:// or https://, ending in .zip)")
        return CodeConfig(uri=uri, digest=hashlib.sha256(uri.encode()).hexdigest())
    return _code_dir(p, cnode.key("path"), path, stack_dir, excludes)


def _parse_env(p: Problems, node: Node, secret_names: frozenset[str] | None) -> tuple[SecretEnv, ...]:
    """`env`: each variable from a secret by reference; a plain value is refused without being echoed."""
    refs = node.any_map("env")
    out: list[SecretEnv] = []
    for var, ref in refs.items():
        key = f"{node.key('env')}.{var}"
        if not ENV_VAR.match(str(var)):
            p.bad(key, var, "expected an environment variable name (letters, digits, '_', not starting with a digit)")
        if isinstance(ref, dict) and set(ref) == {"secret"} and isinstance(ref["secret"], str):
            if secret_names is not None and ref["secret"] not in secret_names:
                p.bad(f"{key}.secret", ref["secret"], f"no such entry in {ns('secrets')}; known: "
                                                      f"{', '.join(sorted(secret_names)) or 'none'}")
            out.append(SecretEnv(str(var), secret=ref["secret"]))
            continue
        ref_node = ref.get("secretKeyRef") if isinstance(ref, dict) and set(ref) == {"secretKeyRef"} else None
        if isinstance(ref_node, dict) and set(ref_node) == {"name", "key"} and \
                all(isinstance(v, str) for v in ref_node.values()):
            check_dns(p, f"{key}.secretKeyRef.name", ref_node["name"], 253, "Secret name", pattern=DNS1123)
            if not SECRET_KEY.match(ref_node["key"]):
                p.bad(f"{key}.secretKeyRef.key", ref_node["key"], "expected a Secret data key ([-._a-zA-Z0-9]+)")
            out.append(SecretEnv(str(var), k8s_secret=ref_node["name"], k8s_key=ref_node["key"]))
            continue
        shown = ref if isinstance(ref, dict) else "<a plain value, not shown>"
        p.bad(key, shown, f"a secret given in plain text is refused: expected {{secret: <name>}} (an entry of "
                          f"{ns('secrets')}, set with pulumi config set --secret --path) or {{secretKeyRef: {{name, "
                          "key}}}} (a Kubernetes Secret in the team's namespace); plain variables go in "
                          "runtimeEnv.env_vars")
    plain = set((node.data.get("runtimeEnv") or {}).get("env_vars") or {}) if isinstance(
        node.data.get("runtimeEnv"), dict) else set()
    for env in out:
        if env.var in plain:
            p.bad(f"{node.key('env')}.{env.var}", env.var, "also set in runtimeEnv.env_vars; one source per variable")
    return tuple(out)


def _check_runtime_env(p: Problems, node: Node, runtime_env: Mapping[str, Any]) -> None:
    for key, value in runtime_env.items():
        path = f"{node.key('runtimeEnv')}.{key}"
        if key in PLATFORM_RUNTIME_ENV:
            p.bad(path, value, "set by the platform from the job's code (code.path or code.uri; the built-in "
                               "jobs ship the jobs/ package), or kuberay.codeUri")
        elif key not in runtime_env_keys():
            known = sorted(k for k in runtime_env_keys() - set(PLATFORM_RUNTIME_ENV) if not k.startswith("_"))
            p.bad(path, value, f"not a runtime_env key Ray knows; known: {', '.join(known)}")


def _parse_serve(p: Problems, node: Node, name: str | None) -> ServeAppConfig | None:
    snode = node.child("serve")
    if snode is None:
        return None
    import_path = snode.str("importPath", MISSING, "vision.serve:build", pattern=IMPORT_PATH,
                            rule="expected module:attribute (an Application or a function that builds one), "
                                 "such as vision.serve:build")
    args = snode.any_map("args")
    route = snode.str("routePrefix", f"/{name}")
    if isinstance(route, str) and not route.startswith("/"):
        p.bad(snode.key("routePrefix"), route, "must start with '/'")
    snode.done()
    return ServeAppConfig(import_path=import_path or "", app_name=name or "", route_prefix=route, args=args)


def _parse_work(p: Problems, node: Node, name: str | None, kind: str | None, stack_dir: Path,
                secret_names: frozenset[str] | None) -> WorkConfig:
    entrypoint = node.str("entrypoint", None)
    serve = _parse_serve(p, node, name)
    given = [k for k in ("kind", "entrypoint", "serve") if node.data.get(k) is not None]
    if len(given) > 1:
        p.bad(node.key(given[1]), node.data[given[1]],
              f"a job runs one thing: {' and '.join(given)} are given; kind names a built-in job, entrypoint "
              "runs a command, serve deploys a Serve application")
    elif not given:
        p.missing(node.key("entrypoint"), "'python -m my_team.train' (or set kind: a built-in job, or serve)")
    if entrypoint is not None and not entrypoint.strip():
        p.bad(node.key("entrypoint"), entrypoint, "must not be empty: the command the job runs")
    runtime_env = node.data.get("runtimeEnv")
    excludes = list(runtime_env.get("excludes") or []) if isinstance(runtime_env, dict) else []
    code = _parse_code(p, node, stack_dir, excludes)
    if kind is not None and code is not None and len(given) == 1:
        p.bad(node.key("code"), node.data["code"], "a built-in job ships the jobs/ package; code is for entrypoint "
                                                   "and serve jobs")
    env = _parse_env(p, node, secret_names)
    if kind is not None:
        code = CodeConfig(path=str(JOBS_DIR), digest=presets_digest(), as_module=True)
    return WorkConfig(entrypoint=entrypoint.strip() if entrypoint else None, code=code, serve=serve, env=env)


def presets_digest() -> str:
    """sha256 of the built-in jobs' sources: a change to jobs/ replaces the built-in jobs only."""
    return files_digest(JOBS_DIR, sorted(JOBS_DIR.rglob("*.py")))


def _check_settings(p: Problems, node: Node, work: WorkConfig, settings: Mapping[str, Any]) -> None:
    if work.entrypoint is not None and settings:
        p.bad(node.key("settings"), settings, "only for built-in jobs and serve apps; an entrypoint takes its "
                                              "arguments on its command line (or runtimeEnv.env_vars)")
    elif work.serve is not None:
        for key in sorted(set(settings) - set(SERVE_APP_SETTINGS)):
            p.bad(f"{node.key('settings')}.{key}", settings[key],
                  f"not a setting of a Serve app; allowed: {', '.join(SERVE_APP_SETTINGS)} (the app's own "
                  "parameters go in serve.args)")
        _check_serve_scale(p, node, settings)


def _check_serve_scale(p: Problems, node: Node, settings: Mapping[str, Any]) -> None:
    path = node.key("settings")
    for key in SERVE_APP_SCALE:
        value = settings.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0):
            p.bad(f"{path}.{key}", value, "expected a number >= 0")
    if settings.get("num_replicas") is not None and settings.get("max_replicas") is not None:
        p.bad(f"{path}.num_replicas", settings["num_replicas"], "either num_replicas (fixed) or min/max_replicas "
                                                                "(autoscaling), not both")
    for key in ("min_replicas", "target_ongoing_requests"):
        if settings.get(key) is not None and settings.get("max_replicas") is None:
            p.bad(f"{path}.{key}", settings[key], "needs max_replicas (autoscaling)")
    if node.data.get("submission") == "kuberay":
        for key in sorted(set(settings) & set(SERVE_APP_SCALE)):
            p.bad(f"{path}.{key}", settings[key], "not with submission: kuberay: KubeRay deploys the Serve config, "
                                                  "whose deployment options name deployments of the team's app; "
                                                  "scale it in its code or through serve.args")


def _parse_job(p: Problems, node: Node, clusters: Mapping[str, RayClusterConfig], stack_dir: Path,
               secret_names: frozenset[str] | None) -> JobConfig:
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
    preset = node.str("kind", None, "train", choices=JOB_KINDS)
    work = _parse_work(p, node, name, preset, stack_dir, secret_names)
    # What the hook runs: a built-in job by its name, a team's command, or a Serve app.
    kind = preset or ("serve" if work.serve is not None else "job")
    submission = node.str("submission", JobConfig.submission, choices=SUBMISSIONS)
    kuberay = None
    if submission == "kuberay":
        kuberay = _parse_kuberay(p, node, kind, clusters.get(cluster or ""), work)
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
        work=work,
    )
    _check_runtime_env(p, node, cfg.runtime_env)
    _check_settings(p, node, work, cfg.settings)
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


def parse_jobs(p: Problems, root: Node, clusters: Mapping[str, RayClusterConfig], stack_dir: Path = DEFAULT_STACK_DIR,
               secret_names: frozenset[str] | None = None) -> tuple[JobConfig, ...]:
    """`stack_dir`: where code paths are relative to; `secret_names`: the `secrets` entries (None: unknown)."""
    jobs = tuple(_parse_job(p, n, clusters, stack_dir, secret_names) for n in root.children("jobs"))
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

