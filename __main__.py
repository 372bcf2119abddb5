"""ray-platform: load the stack's config, build the layer it names, export its outputs."""
from pathlib import Path

import pulumi

from components.config import ConfigError, PlatformConfig, load, platform_lookup_from_dir
from components.platform.layer import build_platform
from components.team.layer import build_team

try:
    config = load(platform_lookup_from_dir(Path(__file__).resolve().parent / "stacks"))
except ConfigError as err:
    # One readable message, no traceback: the engine prints the error text as is.
    raise pulumi.RunError(str(err)) from None

outputs = build_platform(config) if isinstance(config, PlatformConfig) else build_team(config)
for key, value in outputs.items():
    pulumi.export(key, value)
