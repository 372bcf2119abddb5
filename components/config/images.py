"""A team's images and secrets on its RayClusters: `rayClusters[].image`, `workerGroups[].image`,
the team stack's `secrets`, and the secret environment the jobs on each cluster read."""
from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from components.config.model import DNS1123, SECRET_PLACEHOLDER, JobConfig, RayClusterConfig
from components.config.reader import MISSING, Node, Problems, check_dns, ns
from components.config.work import TAG_RAY_VERSION, ClusterRuntime, ImageConfig, SecretEnv
from components.versions import RAY_VERSION


def image_tag(name: str) -> str | None:
    """The tag of an image reference (None when it has none, or only a digest)."""
    last = name.split("@", 1)[0].rsplit("/", 1)[-1]
    return last.split(":", 1)[1] if ":" in last else None


def parse_image(p: Problems, node: Node) -> ImageConfig | None:
    """`image: {name, rayVersion, pullSecrets}`: a team image, whose Ray must be the platform's."""
    inode = node.child("image")
    if inode is None:
        return None
    name = inode.str("name", None, "registry.example.com/vision/ray:2.60.0-py311")
    stated = inode.str("rayVersion", None, RAY_VERSION)
    pull_secrets = inode.str_list("pullSecrets", [],
                                  item=lambda path, v: check_dns(p, path, v, 253, "Secret name", pattern=DNS1123))
    inode.done()
    if name is None:
        p.missing(inode.key("name"), "registry.example.com/vision/ray:2.60.0-py311")
        return None
    tag = image_tag(name) or ""
    from_tag = TAG_RAY_VERSION.match(tag)
    version = stated or (from_tag.group(1) if from_tag else None)
    if version is None:
        p.bad(inode.key("rayVersion"), None, f"the tag of {name!r} does not say its Ray version: state it "
                                              f"(rayVersion: {RAY_VERSION})")
        return None
    if stated is not None and from_tag is not None and from_tag.group(1) != stated:
        p.bad(inode.key("rayVersion"), stated, f"the tag of {name!r} says Ray {from_tag.group(1)}")
    elif version != RAY_VERSION:
        where = inode.key("rayVersion") if stated is not None else inode.key("name")
        p.bad(where, stated or name, f"the image runs Ray {version}, the platform Ray {RAY_VERSION} (the hook's "
                                     f"Job SDK client and the cluster must agree): build the image FROM "
                                     f"rayproject/ray:{RAY_VERSION}-...")
    return ImageConfig(name=name, ray_version=version, pull_secrets=pull_secrets)


def cluster_runtime(p: Problems, node: Node, group_nodes: list[Node]) -> ClusterRuntime:
    head = parse_image(p, node)
    groups: dict[str, ImageConfig] = {}
    for g in group_nodes:
        image = parse_image(p, g)
        if image is not None and isinstance(g.data.get("name"), str):
            groups[g.data["name"]] = image
    return ClusterRuntime(head_image=head, group_images=groups)


def parse_secrets(p: Problems, root: Node, secret_keys: Collection[str] | None) -> frozenset[str] | None:
    """The names of the team stack's `secrets`; None when unreadable (one encrypted map, read offline).

    Each entry must be a Pulumi secret (`pulumi config set --secret --path 'ray-platform:secrets.<name>'`).
    `secret_keys`: the config keys the engine (or the offline reader) holds as secrets; None: unknown.
    """
    value = root.raw("secrets")
    if value is MISSING or value is None:
        return frozenset()
    if value == SECRET_PLACEHOLDER:
        return None
    if not isinstance(value, dict):
        p.bad(ns("secrets"), "<not shown>", "expected a map of name -> Pulumi secret")
        return frozenset()
    encrypted = secret_keys is None or ns("secrets") in secret_keys
    for name, entry in value.items():
        path = f"{ns('secrets')}.{name}"
        check_dns(p, path, str(name), 253, "secret name", pattern=DNS1123)
        if not isinstance(entry, str):
            p.bad(path, "<not shown>", "expected a string (a Pulumi secret)")
        elif not encrypted:
            p.bad(path, "<a plain value, not shown>", f"a secret given in plain text is refused: set it with "
                                                      f"pulumi config set --secret --path '{path}' <value>")
    return frozenset(str(k) for k in value)


def with_job_env(p: Problems, clusters: tuple[RayClusterConfig, ...],
                 jobs: tuple[JobConfig, ...]) -> tuple[RayClusterConfig, ...]:
    """Each cluster with the secret environment of the jobs that run on it (one source per variable)."""
    out = []
    for cluster in clusters:
        env: dict[str, SecretEnv] = {}
        for i, job in enumerate(jobs):
            if job.cluster != cluster.name:
                continue
            for item in job.work.env:
                known = env.setdefault(item.var, item)
                if known != item:
                    p.bad(f"{ns('jobs')}[{i}].env.{item.var}", _ref(item),
                          f"another job on RayCluster {cluster.name!r} reads {item.var} from {_ref(known)}; the "
                          "cluster's pods carry one value per variable")
        out.append(replace(cluster, runtime=replace(cluster.runtime, env=tuple(env[k] for k in sorted(env)))))
    return tuple(out)


def _ref(env: SecretEnv) -> Mapping[str, Any]:
    return {"secret": env.secret} if env.secret else {"secretKeyRef": {"name": env.k8s_secret, "key": env.k8s_key}}
