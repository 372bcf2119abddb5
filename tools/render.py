"""Offline render: evaluate the real Pulumi program for a stack under the SDK's mock engine.

Writes `<out>/<stack>/resources.json` (every resource: type, name, urn, parent, inputs;
secrets as "[secret]"), `<out>/<stack>/outputs.json` and `<out>/<stack>/manifests/`
(one YAML per Kubernetes object the program declares directly), and prints a tree.

    python -m tools.render --stack dev
    python -m tools.render --config path/to/Pulumi.mine.yaml
    python -m tools.render --all [--out build/render]
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import runpy
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pulumi
import yaml
from google.protobuf import json_format, struct_pb2
from pulumi.runtime import mocks, rpc
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.settings import get_root_resource
from pulumi.runtime.sync_await import _sync_await

from components.config.model import SECRET_PLACEHOLDER as SECRET
from components.config.model import ConfigError
from components.config.stack_files import read_stack_file, stack_file, stack_name
from components.constants import PROJECT

ROOT = Path(__file__).resolve().parents[1]
STACKS_DIR = ROOT / "stacks"
PROGRAM = ROOT / "__main__.py"
PROJECT_ROOT_PLACEHOLDER = "<project>"
UNKNOWN = "[unknown]"
# Types that are not Kubernetes objects themselves, though their tokens start with kubernetes:.
NON_MANIFEST_TYPES = ("kubernetes:helm.sh/v3:Release", "kubernetes:yaml/v2:ConfigFile", "pulumi:providers:kubernetes")
DYNAMIC_PROVIDER_KEY = "__provider"


@dataclass
class Rendered:
    stack: str
    resources: list[dict[str, Any]] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)
    # URN -> names of the resources it waits for (depends_on and inputs), for ordering tests.
    dependencies: dict[str, list[str]] = field(default_factory=dict)

    def manifests(self) -> list[dict[str, Any]]:
        return [r["inputs"] for r in self.resources if is_manifest_type(r["type"])]


def is_manifest_type(type_: str) -> bool:
    return type_.startswith("kubernetes:") and type_ not in NON_MANIFEST_TYPES


def all_stack_files() -> list[Path]:
    return sorted(STACKS_DIR.glob("Pulumi.*.yaml"))


# --------------------------------------------------------------------------- mock engine


def _decode(value: Any) -> Any:
    """Plain JSON from a wire-format property value; secrets masked, resource refs as URNs."""
    if isinstance(value, dict):
        sig = value.get(rpc._special_sig_key)
        if sig == rpc._special_secret_sig:
            return _mask(_decode(value.get("value")))
        if sig == rpc._special_resource_sig:
            return value.get("urn", "")
        if sig in (rpc._special_asset_sig, rpc._special_archive_sig):
            return value.get("path") or value.get("uri") or "[asset]"
        if sig == rpc._special_output_value_sig:
            return SECRET if value.get("secret") else _decode(value.get("value", UNKNOWN))
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    if value == rpc.UNKNOWN:
        return UNKNOWN
    if isinstance(value, str) and str(ROOT) in value:
        # Local paths (the jobs package shipped by the hook) differ per checkout; a render
        # must not, or every plan diff between two worktrees would show them.
        return value.replace(str(ROOT), PROJECT_ROOT_PLACEHOLDER)
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _mask(value: Any) -> Any:
    """A secret with its structure kept and every value hidden: a Secret's stringData stays a map
    of keys to "[secret]", which reviewers can read and the schema validator accepts."""
    if isinstance(value, dict):
        return {k: _mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_mask(v) for v in value]
    return SECRET


class RecordingMonitor(mocks.MockMonitor):
    """The SDK's mock monitor, also recording what a preview would show: parent, raw inputs."""

    def __init__(self, mocks_impl: mocks.Mocks) -> None:
        super().__init__(mocks_impl)
        self.recorded: list[dict[str, Any]] = []
        self.dependencies: dict[str, list[str]] = {}

    def RegisterResource(self, request: Any) -> Any:  # noqa: N802 - gRPC method name
        response = super().RegisterResource(request)
        if request.type != "pulumi:pulumi:Stack":
            inputs = _decode(json_format.MessageToDict(request.object, preserving_proto_field_name=True)
                             if isinstance(request.object, struct_pb2.Struct) else {})
            if DYNAMIC_PROVIDER_KEY in inputs:
                inputs[DYNAMIC_PROVIDER_KEY] = "[serialized dynamic provider]"
            self.recorded.append({
                "type": request.type,
                "name": request.name,
                "urn": response.urn,
                "parent": request.parent or None,
                "custom": bool(request.custom),
                "inputs": inputs,
                # What a move keeps (the name and parent a resource had before), as the engine gets it.
                **({"aliases": [json_format.MessageToDict(a.spec) for a in request.aliases if a.HasField("spec")]}
                   if request.aliases else {}),
            })
            self.dependencies[response.urn] = [urn.rsplit("::", 1)[-1] for urn in request.dependencies]
        return response


class PlatformMocks(mocks.Mocks):
    """Engine stand-in: echoes inputs and fills the outputs AWS would compute with plausible values."""

    def __init__(self, region: str, references: dict[str, Rendered] | None = None) -> None:
        self.region = region or "us-west-2"
        # Stack reference name -> that stack's render, done before this run (see render_stack).
        self.references = references or {}

    def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        state = dict(args.inputs)
        rid = f"{args.name}-id"
        typ = args.typ
        state.setdefault("arn", f"arn:aws:mock:{self.region}:123456789012:{typ.split(':')[-1].lower()}/{args.name}")
        if typ == "aws:eks/cluster:Cluster":
            issuer = f"https://oidc.eks.{self.region}.amazonaws.com/id/{args.name.upper()}"
            state.update(
                endpoint=f"https://{args.name}.gr7.{self.region}.eks.amazonaws.com",
                certificateAuthority={"data": base64.b64encode(b"mock-ca").decode()},
                identities=[{"oidcs": [{"issuer": issuer}]}],
                vpcConfig={**state.get("vpcConfig", {}), "clusterSecurityGroupId": f"sg-{args.name}"})
        elif typ == "aws:eks/nodeGroup:NodeGroup":
            state.setdefault("nodeGroupName", f"{state.get('nodeGroupNamePrefix', '')}{args.name}")
            state["resources"] = [{"autoscalingGroups": [{"name": f"eks-{args.name}-asg"}]}]
        elif typ == "aws:ec2/launchTemplate:LaunchTemplate":
            state["latestVersion"] = 1
            rid = f"lt-{args.name}"
        elif typ == "aws:kms/key:Key":
            state["keyId"] = f"key-{args.name}"
        elif typ == "aws:ec2/vpc:Vpc":
            rid = f"vpc-{args.name}"
        elif typ == "aws:ec2/subnet:Subnet":
            rid = f"subnet-{args.name}"
        elif typ == "pulumi:pulumi:StackReference":
            state.update(self.stack_reference_state(str(state.get("name", args.name))))
        return rid, state

    def stack_reference_state(self, name: str) -> dict[str, Any]:
        """Outputs of a referenced stack as the engine reports them: secret ones listed as such
        (their values are placeholders, as offline renders never see a secret's value)."""
        rendered = self.references.get(name)
        outputs = rendered.outputs if rendered is not None else {}
        return {
            "outputs": {k: (f"mock-{k}" if v == SECRET else v) for k, v in outputs.items()},
            "secretOutputNames": sorted(k for k, v in outputs.items() if v == SECRET),
        }

    def call(self, args: mocks.MockCallArgs) -> dict[str, Any]:
        if args.token == "aws:index/getAvailabilityZones:getAvailabilityZones":
            names = [f"{self.region}{s}" for s in "abcdef"]
            return {"names": names, "zoneIds": [f"z-{n}" for n in names], "id": self.region}
        if args.token == "aws:index/getCallerIdentity:getCallerIdentity":
            return {"accountId": "123456789012", "arn": "arn:aws:iam::123456789012:user/mock", "userId": "mock"}
        return {}


# --------------------------------------------------------------------------- rendering


def _resolve_outputs(stack_outputs: dict[str, Any]) -> dict[str, Any]:
    resolved: dict[str, Any] = {}
    for key, value in stack_outputs.items():
        out = pulumi.Output.from_input(value)
        if _sync_await(out.is_secret()):
            resolved[key] = SECRET
        else:
            resolved[key] = json.loads(json.dumps(_sync_await(out.future()), default=str))
    return resolved


_REFERENCE_RENDERS: dict[tuple[Path, Path, int], Rendered] = {}


def _referenced_stacks(flat: dict[str, str], stacks_dir: Path) -> dict[str, Rendered]:
    """Render the platform stack a team stack references, from <stacks_dir>/Pulumi.<last segment>.yaml.

    Done before the referencing stack's own run: one mock engine session at a time.
    """
    reference = flat.get(f"{PROJECT}:platformStack")
    if not reference:
        return {}
    path = stack_file(stacks_dir, reference)
    if not path.exists():
        return {}
    # Every team stack of an environment references the same platform stack: render it
    # once per process (and again only if its file changes), so an org renders linearly.
    key = (path.resolve(), stacks_dir.resolve(), path.stat().st_mtime_ns)
    if key not in _REFERENCE_RENDERS:
        _REFERENCE_RENDERS[key] = render_stack(path, stacks_dir)
    return {reference: _REFERENCE_RENDERS[key]}


def render_stack(stack_file: Path, stacks_dir: Path = STACKS_DIR) -> Rendered:
    """Run the real program for one stack file under mocks; raises ConfigError on bad config.

    StackReferences resolve to stack files in `stacks_dir` (bench/ renders generated stacks).
    """
    flat, secret_keys = read_stack_file(stack_file)
    name = stack_name(stack_file)
    references = _referenced_stacks(flat, stacks_dir)
    # set_mocks reuses an existing root Stack resource; a fresh one keeps the exports of a
    # previous render (e.g. the referenced platform stack's) out of this one.
    runtime_settings.ROOT.set(None)
    # The SDK awaits on the thread's current loop; an earlier asyncio.run() in the same
    # process (the monitor CLI, the Job SDK's log tailing) leaves the main thread without one.
    asyncio.set_event_loop(asyncio.new_event_loop())
    # As the engine's language host does: the whole config as the PULUMI_CONFIG bag the program
    # reads, and in the SDK's config store.
    engine_env = {"PULUMI_CONFIG": json.dumps(flat), "PULUMI_CONFIG_SECRET_KEYS": json.dumps(secret_keys)}
    pulumi.runtime.set_all_config(flat, secret_keys)
    monitor = RecordingMonitor(PlatformMocks(flat.get("aws:region", ""), references))
    mocks.set_mocks(monitor.mocks, project=PROJECT, stack=name, preview=False, monitor=monitor)
    error: list[BaseException] = []

    def program() -> None:
        try:
            runpy.run_path(str(PROGRAM), run_name="__main__")
        except pulumi.RunError as err:
            error.append(err)

    before = {key: os.environ.get(key) for key in engine_env}
    os.environ.update(engine_env)
    try:
        mocks.test(program)()
    finally:
        for key, value in before.items():
            if value is None:
                os.environ.pop(key)
            else:
                os.environ[key] = value
    if error:
        cause = error[0].__cause__ or error[0].__context__
        raise cause if isinstance(cause, ConfigError) else error[0]
    root = get_root_resource()
    outputs = _resolve_outputs(dict(root.outputs)) if root is not None else {}
    return Rendered(stack=name, resources=list(monitor.recorded), outputs=outputs,
                    dependencies=dict(monitor.dependencies))


def manifest_filename(obj: dict[str, Any]) -> str:
    meta = obj.get("metadata") or {}
    parts = [obj.get("kind", "object"), meta.get("namespace") or "cluster", meta.get("name") or "unnamed"]
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", "-".join(str(p) for p in parts)) + ".yaml"


def _sorted_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _sorted_keys(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted_keys(v) for v in value]
    return value


def manifest_yaml(obj: dict[str, Any]) -> str:
    """YAML as kubectl users read it: apiVersion, kind, metadata first, then every key sorted.

    The engine hands properties over as protobuf maps, whose order is arbitrary; a stable
    order keeps renders diffable.
    """
    head = ("apiVersion", "kind", "metadata")
    ordered = {k: _sorted_keys(obj[k]) for k in head if k in obj}
    ordered.update({k: _sorted_keys(obj[k]) for k in sorted(obj) if k not in head})
    return yaml.safe_dump(ordered, sort_keys=False)


def write_render(rendered: Rendered, out_dir: Path) -> Path:
    target = out_dir / rendered.stack
    manifests_dir = target / "manifests"
    manifests_dir.mkdir(parents=True, exist_ok=True)
    for old in manifests_dir.glob("*.yaml"):
        old.unlink()
    resources = sorted(rendered.resources, key=lambda r: r["urn"])
    (target / "resources.json").write_text(json.dumps(resources, indent=2, sort_keys=True) + "\n")
    (target / "outputs.json").write_text(json.dumps(rendered.outputs, indent=2, sort_keys=True) + "\n")
    for obj in rendered.manifests():
        (manifests_dir / manifest_filename(obj)).write_text(manifest_yaml(obj))
    return target


def tree(rendered: Rendered) -> str:
    """Resources as an indented tree under their parents, like `pulumi preview` shows them."""
    children: dict[str | None, list[dict[str, Any]]] = {}
    urns = {r["urn"] for r in rendered.resources}
    for r in rendered.resources:
        children.setdefault(r["parent"] if r["parent"] in urns else None, []).append(r)
    lines = [f"+ pulumi:pulumi:Stack {PROJECT}-{rendered.stack}"]

    def walk(parent: str | None, depth: int) -> None:
        for r in children.get(parent, []):
            lines.append(f"{'    ' * depth}+ {r['type']} {r['name']}")
            walk(r["urn"], depth + 1)

    walk(None, 1)
    lines.append(f"{len(rendered.resources)} resources, {len(rendered.manifests())} Kubernetes objects")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.render", description=__doc__.split("\n\n")[0])
    which = parser.add_mutually_exclusive_group(required=True)
    which.add_argument("--stack", help="stack name: renders stacks/Pulumi.<stack>.yaml")
    which.add_argument("--config", type=Path, help="path to any Pulumi.<stack>.yaml")
    which.add_argument("--all", action="store_true", help="every stack in stacks/")
    parser.add_argument("--out", type=Path, default=ROOT / "build" / "render")
    parser.add_argument("--quiet", action="store_true", help="no tree, one line per stack")
    args = parser.parse_args(argv)
    if args.all:
        files = all_stack_files()
    elif args.config:
        files = [args.config]
    else:
        files = [stack_file(STACKS_DIR, args.stack)]
    status = 0
    for path in files:
        if not path.exists():
            known = ", ".join(stack_name(p) for p in all_stack_files())
            print(f"error: no stack file {path}; known stacks: {known}", file=sys.stderr)
            return 1
        try:
            rendered = render_stack(path)
        except ConfigError as err:
            print(f"error: {err}", file=sys.stderr)
            status = 1
            continue
        target = write_render(rendered, args.out)
        print(f"{rendered.stack}: {len(rendered.resources)} resources -> {target}" if args.quiet
              else f"{tree(rendered)}\nwritten to {target}\n")
    return status


if __name__ == "__main__":
    sys.exit(main())
