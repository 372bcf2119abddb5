"""Entry point Pulumi runs for `pulumi preview --policy-pack policy`."""
import sys
from pathlib import Path

# Pulumi starts the pack with policy/ as the working directory; the rules import as `policy.*`.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pulumi_policy import EnforcementLevel, PolicyPack  # noqa: E402

from policy.pack import POLICIES  # noqa: E402

PolicyPack(name="ray-platform", policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
