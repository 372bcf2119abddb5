"""Strict offline schema validation of rendered Kubernetes objects.

The goal is to reject, before anything reaches a cluster, what
`kubectl apply --validate=strict` would reject: unknown fields, wrong types,
missing required fields, kinds the API server does not know.

* Core kinds use kubernetes-validate's strict schemas for the cluster's minor.
* ray.io kinds use the real KubeRay CRDs (the release pinned in
  components/versions.py), turned into strict JSON Schemas.
* kueue.x-k8s.io kinds use the real Kueue CRDs of KUEUE_VERSION, the same way.
* karpenter.sh and karpenter.k8s.aws kinds use the real Karpenter CRDs of KARPENTER_VERSION, the same way.
* Any other custom kind needs its CRD file passed in `extra_crds`; otherwise it
  is reported as unknown, unless the caller opts out with `allow_unknown_kinds`.

CEL rules (`x-kubernetes-validations`) are not evaluated: there is no CEL
interpreter here and the KubeRay ones only guard updates (`self == oldSelf`) or
enum-like values the operator re-checks.

Usage: python -m tools.k8s_schema DIR [--k8s-version 1.34] [--crd FILE ...]
"""
from __future__ import annotations

import argparse
import functools
import json
import os
import re
import sys
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml
from kubernetes_validate.utils import all_versions, major_minor, schema_contents
from packaging.version import Version
from referencing import Registry, Resource

from components.versions import DEFAULT_EKS_VERSION, KARPENTER_VERSION, KUBERAY_VERSION, KUEUE_VERSION

ROOT = Path(__file__).resolve().parents[1]
KUBERAY_CRDS_ENV = "RAY_PLATFORM_KUBERAY_CRDS"
KUEUE_CRDS_ENV = "RAY_PLATFORM_KUEUE_CRDS"
KARPENTER_CRDS_ENV = "RAY_PLATFORM_KARPENTER_CRDS"
RAY_GROUP = "ray.io"
# KubeRay derives Service and Pod names from the RayCluster name, so it only
# accepts a DNS-1035 label (validateRayClusterMetadata in the operator).
DNS_1035_LABEL = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")
DNS_1035_MAX = 63
_OBJECT_META_REF = "https://kubernetes.io/api/_definitions.json#/$defs/io.k8s.apimachinery.pkg.apis.meta.v1.ObjectMeta"
# The C loader parses the ~1 MB KubeRay CRDs several times faster.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

PathSegment = str | int


def _shared_crd_dir(env: str, name: str, version: str) -> Path:
    override = os.environ.get(env)
    if override:
        return Path(override)
    return ROOT / ".." / "shared" / name / f"v{version}"


def kuberay_crd_dir() -> Path:
    """Where the pinned KubeRay CRDs live: $RAY_PLATFORM_KUBERAY_CRDS or shared/ beside the repo."""
    return _shared_crd_dir(KUBERAY_CRDS_ENV, "kuberay-crds", KUBERAY_VERSION)


def karpenter_crd_dir() -> Path:
    """Where the pinned Karpenter CRDs live: $RAY_PLATFORM_KARPENTER_CRDS or shared/ beside the repo."""
    return _shared_crd_dir(KARPENTER_CRDS_ENV, "karpenter-crds", KARPENTER_VERSION)


def kueue_crd_dir() -> Path:
    """Where the pinned Kueue CRDs live: $RAY_PLATFORM_KUEUE_CRDS or shared/ beside the repo."""
    return _shared_crd_dir(KUEUE_CRDS_ENV, "kueue-crds", KUEUE_VERSION.removeprefix("v"))


def core_schema_version(k8s_version: str) -> str:
    """The newest schema release kubernetes-validate ships for the minor of `k8s_version`.

    Raises ValueError for a minor it does not ship: validating against another
    minor's schemas would silently accept or reject the wrong fields.
    """
    minor = major_minor(k8s_version.removeprefix("v"))
    candidates = [v for v in all_versions() if major_minor(v) == minor]
    if not candidates:
        shipped = sorted({major_minor(v) for v in all_versions()}, key=Version)
        raise ValueError(
            f"kubernetes-validate {kubernetes_validate.__version__} has no schemas for Kubernetes {minor}; "
            f"it ships {shipped[0]} to {shipped[-1]}"
        )
    return max(candidates, key=Version)


# ---------------------------------------------------------------- CRD schemas


def strict_schema(node: Any) -> Any:
    """Turn a CRD structural schema (OpenAPI v3 + Kubernetes extensions) into a strict JSON Schema.

    Mirrors how the API server treats the extensions, plus strict field
    validation: an object schema listing `properties` rejects any other field
    unless it declares `additionalProperties` or preserves unknown fields.
    """
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in ("properties", "patternProperties"):
            out[key] = {name: strict_schema(sub) for name, sub in value.items()}
        elif key in ("items", "additionalProperties", "not"):
            out[key] = strict_schema(value)
        elif key in ("allOf", "anyOf", "oneOf"):
            out[key] = [strict_schema(sub) for sub in value]
        else:
            out[key] = value
    if node.get("x-kubernetes-int-or-string"):
        # controller-gen emits anyOf [integer, string]; one type check reports a
        # bad value once instead of once per branch.
        if out.get("anyOf") == [{"type": "integer"}, {"type": "string"}]:
            del out["anyOf"]
        out["type"] = ["integer", "string"]
    if node.get("x-kubernetes-embedded-resource"):
        # An embedded object is a full Kubernetes object even when the schema
        # does not spell out its type meta.
        properties = out.setdefault("properties", {})
        properties.setdefault("apiVersion", {"type": "string"})
        properties.setdefault("kind", {"type": "string"})
        properties.setdefault("metadata", {"type": "object"})
        out["required"] = sorted({*out.get("required", []), "apiVersion", "kind"})
    if node.get("nullable"):
        if isinstance(out.get("type"), str):
            out["type"] = [out["type"], "null"]
        if "enum" in out:
            out["enum"] = [*out["enum"], None]
    if (
        "properties" in out
        and "additionalProperties" not in out
        and not node.get("x-kubernetes-preserve-unknown-fields")
    ):
        out["additionalProperties"] = False
    return out


def _list_type(
    validator: jsonschema.protocols.Validator, list_type: str, instance: Any, schema: dict[str, Any]
) -> Iterator[jsonschema.ValidationError]:
    """x-kubernetes-list-type: the API server rejects duplicate set items and duplicate map keys."""
    if not validator.is_type(instance, "array") or list_type not in ("set", "map"):
        return
    seen: dict[str, int] = {}
    key_names = schema.get("x-kubernetes-list-map-keys", [])
    item_properties = schema.get("items", {}).get("properties", {})
    for index, item in enumerate(instance):
        if list_type == "map":
            if not isinstance(item, dict):
                continue  # the items schema reports the type error
            # A missing key counts as its default (e.g. a port's protocol is TCP).
            key_value: Any = {k: item.get(k, item_properties.get(k, {}).get("default")) for k in key_names}
        else:
            key_value = item
        key = json.dumps(key_value, sort_keys=True)
        if key in seen:
            yield jsonschema.ValidationError(
                f"duplicate entry {key} (same as item {seen[key]})", path=[index]
            )
        else:
            seen[key] = index


_CrdValidator = jsonschema.validators.extend(
    # OpenAPI v3.0 schema objects follow draft 4 semantics (e.g. boolean exclusiveMinimum).
    jsonschema.Draft4Validator,
    {"x-kubernetes-list-type": _list_type},
)


@dataclass(frozen=True)
class CrdVersion:
    """One version of one custom kind, as a CRD declares it."""

    group: str
    kind: str
    version: str
    served: bool
    validator: jsonschema.protocols.Validator | None


@functools.cache
def _load_crd_file(path: Path) -> tuple[CrdVersion, ...]:
    versions: list[CrdVersion] = []
    with path.open() as handle:
        documents = [doc for doc in yaml.load_all(handle, Loader=_YAML_LOADER) if doc]
    for doc in documents:
        if doc.get("kind") != "CustomResourceDefinition":
            continue
        spec = doc["spec"]
        for entry in spec["versions"]:
            raw = entry.get("schema", {}).get("openAPIV3Schema")
            versions.append(
                CrdVersion(
                    group=spec["group"],
                    kind=spec["names"]["kind"],
                    version=entry["name"],
                    served=bool(entry.get("served")),
                    validator=_CrdValidator(strict_schema(raw)) if raw else None,
                )
            )
    if not versions:
        raise ValueError(f"{path}: no CustomResourceDefinition found")
    return tuple(versions)


def _crd_files(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            files.extend(sorted([*path.glob("*.yaml"), *path.glob("*.yml")]))
        elif path.is_file():
            files.append(path)
        else:
            raise FileNotFoundError(f"CRD file or directory not found: {path}")
    return [f.resolve() for f in files]


@functools.cache
def _crd_index(files: tuple[Path, ...]) -> dict[tuple[str, str], dict[str, CrdVersion]]:
    index: dict[tuple[str, str], dict[str, CrdVersion]] = {}
    for file in files:
        for crd in _load_crd_file(file):
            index.setdefault((crd.group, crd.kind), {})[crd.version] = crd
    return index


def crd_index(extra_crds: Sequence[Path] = ()) -> dict[tuple[str, str], dict[str, CrdVersion]]:
    """(group, kind) -> version -> CrdVersion, from the KubeRay, Kueue and Karpenter CRDs plus `extra_crds`
    (files or dirs)."""
    pinned = ((kuberay_crd_dir(), KUBERAY_CRDS_ENV, "ray.io_*.yaml"),
              (kueue_crd_dir(), KUEUE_CRDS_ENV, "kueue.x-k8s.io_*.yaml"),
              (karpenter_crd_dir(), KARPENTER_CRDS_ENV, "karpenter.sh_*.yaml and karpenter.k8s.aws_*.yaml"))
    for folder, env, files in pinned:
        if not folder.is_dir():
            raise FileNotFoundError(f"CRDs not found at {folder}; set {env} to the folder holding {files}")
    return _crd_index(tuple(_crd_files([*(folder for folder, _, _ in pinned), *extra_crds])))


@functools.cache
def _object_meta_validator(schema_version: str) -> jsonschema.protocols.Validator:
    """Strict ObjectMeta: the API server checks a custom resource's metadata like any object's."""
    definitions = schema_contents(
        f"kubernetes-json-schema/v{schema_version}-local-strict/_definitions.json", schema_version
    )
    registry: Registry = Resource.from_contents(definitions) @ Registry()
    return jsonschema.Draft202012Validator({"$ref": _OBJECT_META_REF}, registry=registry)


# ---------------------------------------------------------------- validation


def format_path(path: Iterable[PathSegment]) -> str:
    """['spec', 'containers', 0, 'image'] -> 'spec.containers[0].image'."""
    text = ""
    for segment in path:
        if isinstance(segment, int):
            text += f"[{segment}]"
        else:
            text += f".{segment}" if text else segment
    return text or "<root>"


def _describe(error: jsonschema.ValidationError, prefix: Sequence[PathSegment] = ()) -> list[tuple[str, str]]:
    """(path, message) pairs; an unknown field is reported at its own path, as kubectl does."""
    path = [*prefix, *error.absolute_path]
    if error.validator == "additionalProperties" and error.validator_value is False and isinstance(error.instance, dict):
        known = error.schema.get("properties", {})
        return [(format_path([*path, field]), "unknown field") for field in error.instance if field not in known]
    return [(format_path(path), error.message)]


def _identity(obj: dict[str, Any]) -> str:
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    return f"{obj.get('kind') or '<no kind>'}/{name or '<no name>'}"


def _check_identity(obj: dict[str, Any]) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    for field in ("apiVersion", "kind"):
        if not isinstance(obj.get(field), str) or not obj.get(field):
            problems.append((field, "required, a non-empty string"))
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, dict) else None
    if not isinstance(name, str) or not name:
        problems.append(("metadata.name", "required, a non-empty string"))
    elif str(obj.get("apiVersion", "")).startswith(f"{RAY_GROUP}/"):
        if len(name) > DNS_1035_MAX or not DNS_1035_LABEL.match(name):
            problems.append(
                ("metadata.name", f"{name!r} is not a DNS-1035 label (lower-case alphanumerics and '-', "
                                  f"starting with a letter, at most {DNS_1035_MAX} characters)")
            )
    return problems


def _validate_custom(
    obj: dict[str, Any], versions: dict[str, CrdVersion], version: str, schema_version: str
) -> list[tuple[str, str]]:
    crd = versions.get(version)
    if crd is None or not crd.served:
        served = sorted(f"{v.group}/{v.version}" for v in versions.values() if v.served)
        return [("apiVersion", f"{obj['apiVersion']} is not served for {obj['kind']}; served: {', '.join(served)}")]
    if crd.validator is None:
        return []  # a CRD without a schema accepts anything, as the API server does
    errors = sorted(crd.validator.iter_errors(obj), key=lambda e: [str(p) for p in e.absolute_path])
    problems = [pair for error in errors for pair in _describe(error)]
    metadata = obj.get("metadata")
    if isinstance(metadata, dict):
        meta_errors = _object_meta_validator(schema_version).iter_errors(metadata)
        problems += [pair for error in meta_errors for pair in _describe(error, prefix=["metadata"])]
    return problems


def _validate_core(obj: dict[str, Any], schema_version: str, allow_unknown_kinds: bool) -> list[tuple[str, str]]:
    # InvalidSchemaError (a corrupt package) and unresolvable $refs propagate:
    # they are a broken install, not a problem of the object.
    try:
        kubernetes_validate.validate(obj, schema_version, strict=True)
    except kubernetes_validate.ValidationError as error:
        # kubernetes-validate stops at the first error.
        return _describe(error)
    except kubernetes_validate.SchemaNotFoundError:
        if allow_unknown_kinds:
            return []
        return [(
            "kind",
            f"unknown kind {obj['kind']} in {obj['apiVersion']}: no schema in Kubernetes "
            f"{major_minor(schema_version)} nor in the CRDs given (pass its CRD file in extra_crds)",
        )]
    return []


def validate_object(
    obj: dict[str, Any],
    k8s_version: str,
    *,
    extra_crds: Sequence[Path] = (),
    allow_unknown_kinds: bool = False,
) -> list[str]:
    """Errors that strict server-side validation would raise for `obj`; empty when valid.

    Each error reads "Kind/name: json.path: message". `extra_crds` adds CRD files
    (or folders of them) to the KubeRay ones; `allow_unknown_kinds` accepts kinds
    no schema covers instead of reporting them. Raises ValueError when
    kubernetes-validate has no schemas for `k8s_version`'s minor.
    """
    schema_version = core_schema_version(k8s_version)
    who = _identity(obj)
    problems = _check_identity(obj)
    if any(path in ("apiVersion", "kind") for path, _ in problems):
        return [f"{who}: {path}: {message}" for path, message in problems]
    group, _, version = obj["apiVersion"].rpartition("/")
    versions = crd_index(extra_crds).get((group, obj["kind"]))
    if versions is not None:
        problems += _validate_custom(obj, versions, version, schema_version)
    else:
        problems += _validate_core(obj, schema_version, allow_unknown_kinds)
    return [f"{who}: {path}: {message}" for path, message in problems]


def validate_dir(
    path: Path,
    k8s_version: str,
    *,
    extra_crds: Sequence[Path] = (),
    allow_unknown_kinds: bool = False,
) -> dict[str, list[str]]:
    """Validate every document of every *.yaml / *.yml file under `path` (recursively).

    Returns one entry per file, keyed by its path relative to `path`, with an
    empty list for a file whose objects are all valid.
    """
    if not path.is_dir():
        raise NotADirectoryError(f"not a directory: {path}")
    results: dict[str, list[str]] = {}
    files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
    for file in files:
        key = file.relative_to(path).as_posix()
        try:
            documents = list(yaml.load_all(file.read_text(), Loader=_YAML_LOADER))
        except yaml.YAMLError as error:
            results[key] = [f"not valid YAML: {error}"]
            continue
        errors: list[str] = []
        for index, document in enumerate(documents):
            if document is None:
                continue  # an empty document, e.g. a trailing '---'
            if not isinstance(document, dict):
                errors.append(f"document {index}: expected a Kubernetes object, got {type(document).__name__}")
                continue
            errors += validate_object(
                document, k8s_version, extra_crds=extra_crds, allow_unknown_kinds=allow_unknown_kinds
            )
        results[key] = errors
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", type=Path, help="folder of rendered manifests (searched recursively)")
    parser.add_argument("--k8s-version", default=DEFAULT_EKS_VERSION, help="cluster minor, e.g. 1.34")
    parser.add_argument("--crd", type=Path, action="append", default=[], help="extra CRD file or folder (repeatable)")
    parser.add_argument("--allow-unknown-kinds", action="store_true", help="accept kinds no schema covers")
    args = parser.parse_args(argv)
    results = validate_dir(
        args.directory, args.k8s_version, extra_crds=args.crd, allow_unknown_kinds=args.allow_unknown_kinds
    )
    failed = {file: errors for file, errors in results.items() if errors}
    for file, errors in failed.items():
        for error in errors:
            print(f"{file}: {error}")
    print(f"{len(results)} file(s) checked against Kubernetes {args.k8s_version}, {len(failed)} with errors")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
