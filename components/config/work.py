"""What a job runs: its entrypoint or Serve app, where its code comes from, the secrets it reads,
and the images its RayCluster runs. The typed half of a job's `entrypoint`/`code`/`serve`/`env`
keys and a cluster's `image` keys; components/config/jobs.py and team.py parse them.

The five built-in jobs (`kind: train|infer|serve|tune|core`) are presets of the same thing: an
entrypoint (`python -m jobs.<kind> --config-json <settings>`) and code (the jobs/ package),
expanded where a job is turned into a submission (components/clients/ray_jobs.py).
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

# A job's code from a directory is zipped and uploaded through Ray's GCS on every change: data,
# weights and virtualenvs belong in storage or the image (Ray itself refuses 512 MiB packages).
CODE_MAX_BYTES = 100 * 1024 * 1024
# Archives Ray's runtime_env downloads on the cluster itself; file:// would name a path on the node.
CODE_URI = re.compile(r"^(s3|gs|https)://\S+\.zip$")
# POSIX environment variable names.
ENV_VAR = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
# `package.module:attribute`, as Serve's import_path.
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")
# A Kubernetes Secret's data key.
SECRET_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
# The Ray version in an image tag such as 2.60.0-py311-cu121 (rayproject/ray's scheme).
TAG_RAY_VERSION = re.compile(r"^(\d+\.\d+\.\d+)(?:$|[-_])")


@dataclass(frozen=True)
class CodeConfig:
    """Where a job's code comes from. A job without one runs what its image holds."""

    # An absolute directory, shipped by the hook as the job's working_dir (the presets: as a py_module).
    path: str | None = None
    # A remote .zip Ray downloads on the cluster.
    uri: str | None = None
    # sha256 of what is shipped: the files of `path` that Ray uploads (ignore files honoured).
    digest: str = ""
    # Shipped as an importable package beside the working dir (py_modules), not as the working dir.
    as_module: bool = False


@dataclass(frozen=True)
class SecretEnv:
    """One environment variable of a job read from a secret, never from the stack file in plain text.

    `secret`: a key of the team stack's `secrets` (a Pulumi secret); or `k8s_secret`/`k8s_key`: a
    Kubernetes Secret in the team's namespace. Either way the value reaches the Ray pods through a
    Kubernetes Secret reference, so it is in no job's runtime env, metadata or the hook's state.
    """

    var: str
    secret: str | None = None
    k8s_secret: str | None = None
    k8s_key: str | None = None


@dataclass(frozen=True)
class ServeAppConfig:
    """A team's Serve application by import path (a builder function or an Application)."""

    import_path: str
    app_name: str
    route_prefix: str
    args: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobResources:
    """What a job's entrypoint (its driver) reserves."""

    cpus: float | None = None
    gpus: float | None = None
    memory: int | None = None


@dataclass(frozen=True)
class WorkConfig:
    """A job's work; for a preset only its code is set (the entrypoint follows from its settings)."""

    entrypoint: str | None = None
    code: CodeConfig | None = None
    serve: ServeAppConfig | None = None
    env: tuple[SecretEnv, ...] = ()

    @property
    def custom(self) -> bool:
        return self.entrypoint is not None or self.serve is not None


@dataclass(frozen=True)
class ImageConfig:
    name: str
    ray_version: str
    pull_secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ClusterRuntime:
    """A RayCluster's team images (None: the stock rayproject/ray image) and the secret
    environment the jobs on it read (filled in from the jobs)."""

    head_image: ImageConfig | None = None
    # Worker group name -> its image; a group without one runs the head's (or the stock) image.
    group_images: Mapping[str, ImageConfig] = field(default_factory=dict)
    env: tuple[SecretEnv, ...] = ()

    def image_of(self, group: str | None) -> ImageConfig | None:
        """The image of worker group `group` (None: the head)."""
        return self.head_image if group is None else self.group_images.get(group, self.head_image)

    @property
    def pull_secrets(self) -> tuple[str, ...]:
        images = [self.head_image, *self.group_images.values()]
        return tuple(sorted({s for image in images if image is not None for s in image.pull_secrets}))
