"""Stack files read offline (components/config/stack_files.py): plain YAML as the engine would pass
it, secrets as the placeholder, and platform stacks looked up by their short name."""
from __future__ import annotations

from pathlib import Path

import pytest

from components.config.model import SECRET_PLACEHOLDER, PlatformConfig
from components.config.stack_files import platform_lookup_from_dir, read_stack_file, stack_file, stack_name
from tools.render import STACKS_DIR

STACK_FILE = """\
config:
  aws:region: us-west-2
  ray-platform:layer: platform
  ray-platform:cluster:
    provider: eks
    name: ray-dev
  ray-platform:addons: {clusterAutoscaler: false}
  ray-platform:grafanaAdminPassword:
    secure: AAABAKnx0ldTQ==
"""


def test_a_stack_file_reads_as_the_engines_flat_map_with_secrets_as_the_placeholder(tmp_path: Path) -> None:
    path = tmp_path / "Pulumi.dev.yaml"
    path.write_text(STACK_FILE)
    flat, secret_keys = read_stack_file(path)
    assert flat == {
        "aws:region": "us-west-2",
        "ray-platform:layer": "platform",
        "ray-platform:cluster": '{"provider": "eks", "name": "ray-dev"}',
        "ray-platform:addons": '{"clusterAutoscaler": false}',
        "ray-platform:grafanaAdminPassword": SECRET_PLACEHOLDER,
    }
    assert secret_keys == ["ray-platform:grafanaAdminPassword"]
    assert stack_name(path) == "dev"


REFERENCES = [("dev", "Pulumi.dev.yaml"), ("my-org/ray-platform/prod", "Pulumi.prod.yaml"),
              ("organization/ray-platform/staging", "Pulumi.staging.yaml")]


@pytest.mark.parametrize(("reference", "name"), REFERENCES, ids=[r for r, _ in REFERENCES])
def test_a_stack_reference_names_its_file_by_the_last_segment(reference: str, name: str) -> None:
    assert stack_file(STACKS_DIR, reference) == STACKS_DIR / name


LOOKUPS = [("dev", True), ("prod", True), ("vision-dev", False), ("absent", False)]


@pytest.mark.parametrize(("name", "found"), LOOKUPS, ids=[n for n, _ in LOOKUPS])
def test_only_platform_stacks_are_found_by_name(name: str, found: bool) -> None:
    cfg = platform_lookup_from_dir(STACKS_DIR)(name)
    assert isinstance(cfg, PlatformConfig) if found else cfg is None


def test_a_broken_platform_stack_file_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "Pulumi.broken.yaml").write_text("config:\n  ray-platform:layer: platform\n")
    assert platform_lookup_from_dir(tmp_path)("broken") is None
