"""The e2e toolchain's pins and cache layout (tools/e2e/toolchain.py): no Go, no network; runs in `make test`."""
from __future__ import annotations

import re
from pathlib import Path

from components import versions as V
from tools.e2e import toolchain as tc

ROOT = Path(__file__).resolve().parents[2]


def _req(name: str) -> str:
    return re.search(rf"(?m)^{re.escape(name)}==(\S+)", (ROOT / "requirements.txt").read_text()).group(1)


def test_pins_come_from_requirements_and_versions_py():
    p = tc.pins()
    assert p["pulumi"] == _req("pulumi") and p["pulumi-kubernetes"] == _req("pulumi-kubernetes")
    assert p["kuberay"] == V.KUBERAY_VERSION
    assert (p["kubernetes"], p["etcd"], p["kwok"], p["kueue"]) == (
        V.KUBERNETES_E2E_VERSION, V.ETCD_VERSION, V.KWOK_VERSION, V.KUEUE_VERSION)
    minor = ".".join(V.KUBERNETES_E2E_VERSION.lstrip("v").split(".")[:2])
    assert minor in V.EKS_VERSIONS  # a Kubernetes minor the platform supports


def test_no_version_is_restated_in_tools_e2e():
    pinned = [_req("pulumi"), _req("pulumi-kubernetes"), V.KUBERAY_VERSION, V.KUBERNETES_E2E_VERSION,
              V.ETCD_VERSION, V.KWOK_VERSION, V.KUEUE_VERSION]
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
