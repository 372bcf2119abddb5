"""ray-platform: load the stack's config, build the layer it names, export its outputs."""
from pathlib import Path

import pulumi

from components.config.model import ConfigError, PlatformConfig
from components.config.stack import parse, raw_from_pulumi_config
from components.config.stack_files import platform_lookup_from_dir
from components.platform.layer import build_platform
from components.team.layer import build_team

STACKS = Path(__file__).resolve().parent / "stacks"  # Pulumi.yaml's stackConfigDir

try:
    # The engine hands the program its whole config as the PULUMI_CONFIG bag (tools/render does the
    # same); the whole map, not key by key, so a misspelled top-level key is reported too. Jobs' code
    # paths are relative to the stack files' directory.
    raw, aws_region = raw_from_pulumi_config(pulumi.runtime.get_config_env())
    config = parse(raw, pulumi.get_stack(), aws_region, platform_lookup_from_dir(STACKS), stack_dir=STACKS,
                   secret_keys=pulumi.runtime.get_config_secret_keys_env())
except ConfigError as err:
    # One readable message, no traceback: the engine prints the error text as is.
    raise pulumi.RunError(str(err)) from None

outputs = build_platform(config) if isinstance(config, PlatformConfig) else build_team(config)
for key, value in outputs.items():
    pulumi.export(key, value)
