"""Helpers for tests over every stack file: discovery and one cached render per stack."""
from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import Any

import yaml

from components.config.model import TeamStackConfig
from components.config.stack_files import parse_stack_file, platform_lookup_from_dir
from components.constants import PROJECT
from tools.k8s_schema import validate_object
from tools.render import Rendered, all_stack_files, render_stack

ROOT = Path(__file__).resolve().parents[2]
# Hand-written strict subsets of the prometheus-operator CRDs (no package ships the real ones offline).
MONITORING_CRDS = [ROOT / "tests" / "schemas"]
K8S = "1.34"


def layer_of(path: Path) -> str:
    return str((yaml.safe_load(path.read_text())["config"]).get(f"{PROJECT}:layer"))


def stack_files(layer: str) -> list[Path]:
    """Every stack file of a layer: a new file in stacks/ is tested with no code change."""
    return [p for p in all_stack_files() if layer_of(p) == layer]


@functools.cache
def rendered(path: Path) -> Rendered:
    return render_stack(path)


def of_type(r: Rendered, type_: str) -> list[dict[str, Any]]:
    return [res for res in r.resources if res["type"] == type_]


def manifests_of(r: Rendered, kind: str) -> list[dict[str, Any]]:
    """The rendered Kubernetes objects of one kind."""
    return [m for m in r.manifests() if m["kind"] == kind]


def ids(paths: list[Path]) -> list[str]:
    return [p.name for p in paths]


def ray_pods(cluster: dict[str, Any]) -> list[tuple[str, dict[str, Any], dict[str, Any], Any]]:
    """(group, pod spec, Ray container, GPUs) of a RayCluster spec, after the checks every Ray pod
    passes wherever the spec is embedded: image and rayVersion agree, GPU image exactly when GPUs."""
    from components.constants import GPU_RESOURCE
    from components.versions import RAY_IMAGE_REPOSITORY, RAY_VERSION

    assert cluster["rayVersion"] == RAY_VERSION
    pods = [("head", cluster["headGroupSpec"]["template"]["spec"])] + [
        (g["groupName"], g["template"]["spec"]) for g in cluster.get("workerGroupSpecs", [])]
    checked = []
    for group, pod in pods:
        (container,) = pod["containers"]
        repository, tag = container["image"].rsplit(":", 1)
        assert repository == RAY_IMAGE_REPOSITORY and tag.split("-")[0] == RAY_VERSION, group
        gpus = container["resources"]["limits"].get(GPU_RESOURCE)
        assert tag.endswith("-gpu") == (gpus is not None), group
        checked.append((group, pod, container, gpus))
    return checked


def config_of(path: Path) -> TeamStackConfig:
    """A shipped team stack's parsed config, checked against its platform stack file."""
    cfg = parse_stack_file(path, platform_lookup_from_dir(path.parent))
    assert isinstance(cfg, TeamStackConfig)
    return cfg


def strict(obj: dict[str, Any]) -> list[str]:
    """Schema errors of one object: core kinds upstream, KubeRay by its CRDs, monitoring by tests/schemas."""
    return validate_object(obj, K8S, extra_crds=MONITORING_CRDS)


def quantity(q: str) -> float:
    """A Kubernetes quantity in base units (cores, bytes), parsed here rather than by the code under test."""
    m = re.fullmatch(r"([0-9.]+)(m|Ki|Mi|Gi|Ti|k|M|G|T)?", str(q))
    assert m, q
    scale = {None: 1, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
             "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}
    return float(m.group(1)) * scale[m.group(2)]
