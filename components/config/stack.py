"""One stack's config as a whole: the layer it names, the top-level keys each layer accepts, and
`parse`, the pure function from raw values to frozen dataclasses (or one ConfigError).

Keys live under the project namespace (`ray-platform:<key>`); `aws:region` is read for EKS
stacks. See docs/config.md for every knob.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Any

from components.config.model import DNS1123, LAYERS, ConfigError, PlatformConfig, StackConfig
from components.config.platform import parse_platform
from components.config.reader import MISSING, Node, Problems, ns
from components.config.team import parse_team_stack
from components.constants import PROJECT

PLATFORM_KEYS = ("layer", "environment", "cluster", "network", "gpuPools", "addons", "kuberay", "kubeconfig",
                 "observability", "grafanaAdminPassword", "sources", "queues", "capacity")
TEAM_KEYS = ("layer", "environment", "platformStack", "team", "rayClusters", "jobs", "dashboard",
             "redisPassword", "dashboardToken", "observability", "queue", "secrets")
SECRET_KEYS = ("kubeconfig", "redisPassword", "dashboardToken", "grafanaAdminPassword")


def parse(raw: Mapping[str, Any], stack: str, aws_region: str | None = None,
          platform_lookup: Callable[[str], PlatformConfig | None] | None = None, *,
          stack_dir: Path | None = None, secret_keys: Collection[str] | None = None) -> StackConfig:
    """Validate one stack's config (keys without the project prefix) into dataclasses.

    `platform_lookup` resolves a platform stack's short name to its config when the
    platform stack file is at hand, so a team stack is checked against the platform's
    GPU pools before anything is deployed. `stack_dir` is the stack file's directory, which jobs'
    code paths are relative to (default: the project's stacks/); `secret_keys` the full config keys
    held as secrets (None: unknown, as in tests of plain dicts).
    """
    p = Problems()
    root = Node(p, f"{PROJECT}:", dict(raw))
    layer = root.str("layer", MISSING, "platform", choices=LAYERS)
    environment = root.str("environment", MISSING, "dev", pattern=DNS1123,
                           rule="expected a short lowercase name such as dev, staging, prod, local")
    result: StackConfig | None = None
    if layer == "platform":
        result = parse_platform(p, root, stack, environment, aws_region)
        allowed = PLATFORM_KEYS
    elif layer == "team":
        result = parse_team_stack(p, root, stack, environment, platform_lookup, stack_dir=stack_dir,
                                  secret_keys=secret_keys)
        allowed = TEAM_KEYS
    else:
        allowed = ()
    if allowed:
        for extra in sorted(set(raw) - set(allowed)):
            p.bad(ns(extra), raw[extra], f"not a {layer}-layer key; known: {', '.join(allowed)}")
    if p.items or result is None:
        raise ConfigError(stack, p.items or ["config is incomplete"])
    return result


def raw_from_pulumi_config(all_config: Mapping[str, str]) -> tuple[dict[str, Any], str | None]:
    """Split the engine's flat `project:key -> string` map into our keys and aws:region."""
    raw: dict[str, Any] = {}
    prefix = f"{PROJECT}:"
    for key, value in all_config.items():
        if not key.startswith(prefix):
            continue
        short = key[len(prefix):]
        try:
            raw[short] = json.loads(value) if short not in SECRET_KEYS else value
        except (TypeError, ValueError):
            raw[short] = value
    return raw, all_config.get("aws:region")

