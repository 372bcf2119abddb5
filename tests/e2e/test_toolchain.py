"""The e2e toolchain's pins and cache layout (tools/e2e/toolchain.py): no Go, no network; runs in `make test`."""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from components import versions as V
from tools.e2e import toolchain as tc

ROOT = Path(__file__).resolve().parents[2]


def _req(name: str) -> str:
    return re.search(rf"(?m)^{re.escape(name)}==(\S+)", (ROOT / "requirements.txt").read_text()).group(1)


def test_pins_come_from_requirements_and_versions_py():
    p = tc.pins()
    assert p["pulumi"] == _req("pulumi") and p["pulumi-kubernetes"] == _req("pulumi-kubernetes")
    assert p["kuberay"] == V.KUBERAY_VERSION and p["kuberay-operator"] == V.KUBERAY_E2E_OPERATOR_VERSION
    assert p["pulumi-kubernetes-provider"] == V.PULUMI_KUBERNETES_PROVIDER_COMMIT[_req("pulumi-kubernetes")]
    assert (p["kubernetes"], p["etcd"], p["kwok"], p["kueue"]) == (
        V.KUBERNETES_E2E_VERSION, V.ETCD_VERSION, V.KWOK_VERSION, V.KUEUE_VERSION)
    minor = ".".join(V.KUBERNETES_E2E_VERSION.lstrip("v").split(".")[:2])
    assert minor in V.EKS_VERSIONS  # a Kubernetes minor the platform supports


def test_no_version_is_restated_in_tools_e2e():
    pinned = [_req("pulumi"), _req("pulumi-kubernetes"), V.KUBERAY_VERSION, V.KUBERAY_E2E_OPERATOR_VERSION,
              V.KUBERNETES_E2E_VERSION, V.ETCD_VERSION, V.KWOK_VERSION, V.KUEUE_VERSION,
              *V.PULUMI_KUBERNETES_PROVIDER_COMMIT.values()]
    for path in (ROOT / "tools" / "e2e").glob("*.py"):
        text = path.read_text()
        for version in pinned:
            assert version.lstrip("v") not in text, f"{path.name} restates {version}"


def test_cache_is_outside_the_checkout_and_keyed_by_every_pin(monkeypatch, tmp_path):
    monkeypatch.delenv("RAY_PLATFORM_E2E_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert tc.cache_root() == tmp_path / "xdg" / "ray-platform" / "e2e"
    monkeypatch.setenv("RAY_PLATFORM_E2E_CACHE", str(tmp_path / "ci-cache"))
    assert tc.cache_root() == tmp_path / "ci-cache"
    assert tc.bin_dir() == tmp_path / "ci-cache" / tc.cache_key() / "bin"
    assert ROOT not in tc.bin_dir().parents
    env = tc.go_env()
    assert env["GOMODCACHE"] == str(tmp_path / "ci-cache" / "gomod") and env["GOTOOLCHAIN"] == "local"
    base = tc.pins()
    keys = {tc.cache_key({**base, name: base[name] + "-other"}) for name in base}
    assert len(keys) == len(base) and tc.cache_key(base) not in keys


def test_gomod_replaces_are_parsed_for_the_wrapper():
    gm = tc.parse_gomod("""module k8s.io/kubernetes

go 1.24.0

godebug default=go1.24

require k8s.io/api v0.0.0
replace (
\tk8s.io/api => ./staging/src/k8s.io/api // staging
\tk8s.io/client-go v0.0.0 => ./staging/src/k8s.io/client-go
)
replace github.com/atotto/clipboard => github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e
""")
    assert gm.go == "1.24.0" and gm.godebug == ["default=go1.24"]
    assert gm.replaces == [
        ("k8s.io/api", "", "./staging/src/k8s.io/api"),
        ("k8s.io/client-go", "v0.0.0", "./staging/src/k8s.io/client-go"),
        ("github.com/atotto/clipboard", "", "github.com/tgummerer/clipboard v0.0.0-20241001131231-d02d263e614e"),
    ]


def test_the_kuberay_operator_stand_in_is_named():
    p = tc.pins()
    line = tc.kuberay_stand_in(p)
    if V.KUBERAY_E2E_OPERATOR_VERSION == V.KUBERAY_VERSION:
        assert line == ""
    else:
        assert line == (f"KubeRay operator v{V.KUBERAY_E2E_OPERATOR_VERSION} standing in for v{V.KUBERAY_VERSION} "
                        f"(proxy refuses {V.KUBERAY_VERSION})")
    assert tc.kuberay_stand_in({**p, "kuberay-operator": p["kuberay"]}) == ""
    assert {t.name: t.version for t in tc.tools(p)}["kuberay"] == V.KUBERAY_E2E_OPERATOR_VERSION


def test_a_provider_pin_without_a_release_commit_is_refused(tmp_path):
    p = {**tc.pins(), "pulumi-kubernetes": "0.0.1", "pulumi-kubernetes-provider": ""}
    ctx = tc.Ctx(p, tmp_path / "bin", tmp_path / "src", tmp_path / "home")
    with pytest.raises(tc.BuildError, match="PULUMI_KUBERNETES_PROVIDER_COMMIT"):
        tc._kubernetes_provider(ctx)


def test_python_plugins_are_launchers_into_the_project_venv(tmp_path):
    """pulumi-language-python is the stand-in tools/e2e/language_host.py, run by the project's venv;
    the dynamic-provider plugin is the SDK's own `python -m pulumi.dynamic`."""
    ctx = tc.Ctx(tc.pins(), tmp_path / "bin", tmp_path / "src", tmp_path / "home")
    ctx.bin.mkdir()
    tc._language_python(ctx)
    host = (ctx.bin / "pulumi-language-python").read_text()
    dyn = (ctx.bin / "pulumi-resource-pulumi-python").read_text()
    assert host.startswith("#!/bin/sh\n") and dyn.startswith("#!/bin/sh\n")
    assert 'exec "$PWD/venv/bin/python" -u "$PWD/tools/e2e/language_host.py" "$@"' in host
    assert 'exec "$PWD/venv/bin/python" -u -m pulumi.dynamic "$@"' in dyn
    assert (ROOT / "tools" / "e2e" / "language_host.py").is_file()
    for exe in ("pulumi-language-python", "pulumi-resource-pulumi-python"):
        assert (ctx.bin / exe).stat().st_mode & 0o111
        # the CLI runs it in the project root: there it reaches the venv's python
        out = subprocess.run([str(ctx.bin / exe), "--help"], cwd=tmp_path, capture_output=True, text=True,
                             check=False)
        assert out.returncode == 1 and "venv/bin/python" in out.stderr


def test_the_provider_plugin_is_installed_not_on_path(tmp_path):
    """The CLI prefers a plugin binary on PATH to the installed plugin: the provider is built outside bin/
    and the toolchain counts it as built only once it is installed in PULUMI_HOME at the pin."""
    by_name = {t.name: t for t in tc.tools(tc.pins())}
    assert by_name["pulumi-resource-kubernetes"].outputs(tmp_path) == [tmp_path / "plugin" / "pulumi-resource-kubernetes"]
    ver = _req("pulumi-kubernetes")
    assert by_name["kubernetes-plugin"].outputs(tmp_path) == [
        tmp_path / "pulumi-home" / "plugins" / f"resource-kubernetes-v{ver}" / "pulumi-resource-kubernetes"]
    assert tc.pulumi_home() == tc.key_dir() / "pulumi-home"
