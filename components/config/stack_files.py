"""Stack files (`stacks/Pulumi.<stack>.yaml`) read offline as plain YAML: the engine's flat
`ray-platform:key -> string` map, with encrypted values as a placeholder."""
from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import yaml

from components.config.model import SECRET_PLACEHOLDER, ConfigError, PlatformConfig, StackConfig
from components.config.stack import parse, raw_from_pulumi_config


def read_stack_file(path: Path) -> tuple[dict[str, str], list[str]]:
    """A `Pulumi.<stack>.yaml` as the engine would pass it: flat `ns:key -> string`, secret keys.

    Encrypted (`secure:`) values cannot be decrypted offline; they become a placeholder
    and are reported as secret keys, so offline renders still treat them as secrets.
    """
    doc = yaml.safe_load(path.read_text()) or {}
    flat: dict[str, str] = {}
    secret_keys: list[str] = []
    for key, value in (doc.get("config") or {}).items():
        if _secure(value):
            flat[key] = SECRET_PLACEHOLDER
            secret_keys.append(key)
        elif isinstance(value, dict) and value and all(_secure(v) for v in value.values()):
            # A map of secrets (`pulumi config set --secret --path 'key.name'`): secret only when every entry is.
            flat[key] = json.dumps({k: SECRET_PLACEHOLDER for k in value})
            secret_keys.append(key)
        else:
            flat[key] = value if isinstance(value, str) else json.dumps(value)
    return flat, secret_keys


def _secure(value: object) -> bool:
    return isinstance(value, dict) and set(value) == {"secure"}


def stack_name(path: Path) -> str:
    return path.name[len("Pulumi."):-len(".yaml")]


def stack_file(stacks_dir: Path, stack: str) -> Path:
    """The stack file of `stack` in `stacks_dir`; a fully qualified reference (org/project/name) counts by its name."""
    return stacks_dir / f"Pulumi.{stack.rsplit('/', 1)[-1]}.yaml"


def parse_stack_file(path: Path, platform_lookup: Callable[[str], PlatformConfig | None] | None = None
                     ) -> StackConfig:
    """Parse a stack file as `pulumi up` would see it (secrets as placeholders)."""
    flat, secret_keys = read_stack_file(path)
    raw, region = raw_from_pulumi_config(flat)
    return parse(raw, stack_name(path), region, platform_lookup, stack_dir=path.resolve().parent,
                 secret_keys=secret_keys)


def platform_lookup_from_dir(stacks_dir: Path) -> Callable[[str], PlatformConfig | None]:
    """Resolve a platform stack by short name from the repo's stack files (None if absent or broken)."""

    def lookup(name: str) -> PlatformConfig | None:
        path = stack_file(stacks_dir, name)
        if not path.exists():
            return None
        try:
            cfg = parse_stack_file(path)
        except ConfigError:
            return None
        return cfg if isinstance(cfg, PlatformConfig) else None

    return lookup
