"""docs/config.md and Pulumi.yaml document exactly the keys the config parsers accept.

The keys come from the parsers themselves: every key a parser reads goes through `Node.raw`,
so parsing stack configs that open every branch (each block present, each provider, each kind
of kuberay job) and recording those reads yields every key path there is, with the allowed
values of the keys that have a fixed set.
"""
from __future__ import annotations

import contextlib
import functools
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config.model import ConfigError
from components.config.reader import Node
from components.config.stack import PLATFORM_KEYS, TEAM_KEYS, parse
from components.constants import PROJECT

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "config.md").read_text()
PULUMI_YAML: dict[str, Any] = yaml.safe_load((ROOT / "Pulumi.yaml").read_text())["config"]

# Branch selectors only: the parsers read every key of a block once the block is there, whatever
# its values, and report the missing ones (the errors are beside the point here).
EVERY_BRANCH: list[dict[str, Any]] = [
    {"layer": "platform", "cluster": {"provider": "eks", "systemNodes": {}}, "network": {}, "gpuPools": [{}],
     "addons": {}, "kuberay": {},
     "observability": {"prometheus": {}, "grafana": {}, "dcgmExporter": {}, "logShipping": {}}, "sources": {},
     "queues": {"cohorts": [{}], "priorityClasses": {}},
     "capacity": {"provisioner": "karpenter", "cpuPool": {}, "karpenter": {}}},
    {"layer": "platform", "cluster": {"provider": "existing"}, "gpuPools": [{}]},
    {"layer": "team", "team": {"quota": {}, "limitRange": {}},
     "rayClusters": [{"head": {}, "workerGroups": [{"image": {}}], "gcsFaultTolerance": {}, "autoscaler": {},
                      "image": {}}],
     "jobs": [{"kind": "train", "resources": {}, "submission": "kuberay", "kuberay": {}},
              {"kind": "serve", "submission": "kuberay", "kuberay": {}},
              {"entrypoint": "x", "code": {}, "env": {}}, {"serve": {}}],
     "dashboard": {}, "observability": {}, "queue": {"cpu": {}, "memory": {}, "gpus": {"<pool>": {}}},
     "secrets": {}},
]


def segments(path: str) -> tuple[str, ...]:
    """`ray-platform:jobs[0].kuberay.codeUri` -> ("jobs", "kuberay", "codeUri")."""
    return tuple(re.sub(r"\[\d+\]", "", path.removeprefix(f"{PROJECT}:")).split("."))


@functools.cache
def accepted() -> dict[tuple[str, ...], frozenset[str]]:
    """Every key path the parsers read, with its allowed values (empty: no fixed set)."""
    keys: dict[tuple[str, ...], frozenset[str]] = {}
    read, read_str = Node.raw, Node.str

    def raw(node: Node, name: str) -> Any:
        keys.setdefault(segments(node.key(name)), frozenset())
        return read(node, name)

    def str_(node: Node, name: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("choices"):
            keys[segments(node.key(name))] = frozenset(kwargs["choices"])
        return read_str(node, name, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Node, "raw", raw)
        patch.setattr(Node, "str", str_)
        for raw_config in EVERY_BRANCH:
            with contextlib.suppress(ConfigError):
                parse(raw_config, "every-branch", "us-west-2", lambda _: None)
    return keys


def top_level() -> set[str]:
    return {path[0] for path in accepted()}


def test_the_recorded_keys_are_the_keys_each_layer_accepts() -> None:
    assert top_level() == set(PLATFORM_KEYS) | set(TEAM_KEYS)
    assert ("cluster", "systemNodes", "diskSizeGiB") in accepted()
    assert ("jobs", "kuberay", "clusterDeletionDelaySeconds") in accepted()


# --- Pulumi.yaml -------------------------------------------------------------------------------


def required_everywhere() -> set[str]:
    """The top-level keys both layers report missing when a stack leaves them out."""
    required = set()
    for key in set(PLATFORM_KEYS) & set(TEAM_KEYS):
        missing = 0
        for layer in ("platform", "team"):
            raw = {"layer": layer, "environment": "dev"}
            raw.pop(key, None)
            try:
                parse(raw, "s", "us-west-2", lambda _: None)
            except ConfigError as exc:
                missing += f"pulumi config set '{PROJECT}:{key}'" in str(exc)
        if missing == 2:
            required.add(key)
    return required


def test_pulumi_yaml_declares_exactly_the_keys_every_stack_sets() -> None:
    # The engine refuses a stack that has no value for a key declared without a default
    # ("validating stack config: Stack ... is missing configuration values"), so a per-layer or
    # optional key declared there would break every stack of the other layer.
    assert set(PULUMI_YAML) == required_everywhere() == {"layer", "environment"}
    assert not any(spec.get("secret") or "default" in spec for spec in PULUMI_YAML.values())


@pytest.mark.parametrize("key", sorted(PULUMI_YAML))
def test_pulumi_yaml_describes_every_key_of_a_block(key: str) -> None:
    description = PULUMI_YAML[key]["description"]
    children = {path[1] for path in accepted() if path[0] == key and len(path) > 1}
    assert not [c for c in sorted(children) if not re.search(rf"\b{c}\b", description)], description


@pytest.mark.parametrize("key", sorted(PULUMI_YAML))
def test_pulumi_yaml_lists_the_allowed_values_the_parser_allows(key: str) -> None:
    """`name: a|b` in a description names a key under `key` and exactly its allowed values."""
    description = PULUMI_YAML[key]["description"]
    for name, values in re.findall(r"\b(\w+): ([\w-]+(?:\|[\w-]+)+)", description):
        allowed = {choices for path, choices in accepted().items() if path[0] == key and path[-1] == name}
        assert frozenset(values.split("|")) in allowed, (name, values, allowed)


# --- docs/config.md ----------------------------------------------------------------------------

SECTIONS = re.split(r"^#+ .*$", DOC, flags=re.M)


def code_names(text: str) -> set[str]:
    """The key names in `code` spans: `workerGroups[].gpus` names workerGroups and gpus, `maxCpu: "32"` maxCpu."""
    return {part for span in re.findall(r"`([^`]+)`", text)
            for part in re.split(r"\[\]\.|\.|\[\]", span.split(": ")[0])}


def documented_under(key: str) -> set[str]:
    """The key names of every section that documents the top-level key `key`."""
    names: set[str] = set()
    for heading, body in zip(re.findall(r"^#+ .*$", DOC, flags=re.M), SECTIONS[1:]):
        section = heading + body
        if key in code_names(section):
            names |= code_names(section)
    return names


@pytest.mark.parametrize("key", sorted(set(PLATFORM_KEYS) | set(TEAM_KEYS)))
def test_docs_document_every_key_in_the_section_of_its_top_level_key(key: str) -> None:
    names = documented_under(key)
    paths = [path for path in accepted() if path[0] == key]
    assert not [".".join(p) for p in paths if not set(p) <= names]


def test_docs_key_tables_name_no_key_the_parsers_do_not_read() -> None:
    known = {name for path in accepted() for name in path}
    rows = [row for table in re.findall(r"^\| key \|.*\n\|[-|]+\|\n((?:\|.*\n)+)", DOC, flags=re.M)
            for row in table.splitlines()]
    unknown = {name for row in rows for name in code_names(row.split("|")[1])} - known
    assert not unknown
