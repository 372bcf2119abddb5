"""Providers pickled into stack state before components/ had layers still load.

Pulumi pickles a dynamic provider (dill, by module path and class name) into every resource's
`__provider` property, and `refresh`/`destroy` load it from there. The fixtures are
`pulumi.dynamic.dynamic.serialize_provider` of RayJobProvider() and KubeRayWaitProvider() made by
the code of commit 90081ff (components/ray_job.py, components/kuberay_wait.py), the last one before
the move; they are loaded the way the dynamic-provider host loads them, in a fresh interpreter.
"""
from __future__ import annotations

import base64
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = Path(__file__).resolve().parent / "fixtures"

CASES = [
    ("ray_job_provider_90081ff.b64", "components.ray_job", "components.hooks.ray_job.RayJobProvider"),
    ("kuberay_wait_provider_90081ff.b64", "components.kuberay_wait",
     "components.hooks.kuberay_wait.KubeRayWaitProvider"),
]

# As pulumi/dynamic/__main__.py's get_provider does it, then where the loaded class and its methods live.
LOAD = """
import base64, sys
import dill
provider = dill.loads(base64.b64decode(sys.stdin.read().strip()))
cls = type(provider)
print(f"{cls.__module__}.{cls.__qualname__}")
print(" ".join(sorted({getattr(cls, m).__module__ for m in ("create", "diff", "read", "update", "delete")})))
"""


@pytest.mark.parametrize(("fixture", "old_module", "new_class"), CASES, ids=[c[0].split("_90")[0] for c in CASES])
def test_a_provider_pickled_from_the_old_path_loads_as_the_new_provider(fixture: str, old_module: str,
                                                                        new_class: str) -> None:
    blob = (FIXTURES / fixture).read_text()
    assert old_module.encode() in base64.b64decode(blob)  # the fixture names the old path
    out = subprocess.run([sys.executable, "-c", LOAD], input=blob, text=True, capture_output=True, cwd=ROOT,
                         check=True)
    loaded_class, method_modules = out.stdout.split("\n")[:2]
    assert loaded_class == new_class
    assert method_modules == new_class.rsplit(".", 1)[0]
