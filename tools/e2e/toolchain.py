"""The e2e toolchain: the real Pulumi CLI and a real Kubernetes control plane, built from Go modules.

    python -m tools.e2e.toolchain build [--only NAME,...] [--keep-going]
    python -m tools.e2e.toolchain path        # the bin directory (what env.sh puts on PATH)
    python -m tools.e2e.toolchain env         # shell exports: PATH, PULUMI_HOME, ...
    python -m tools.e2e.toolchain pins        # the pins and the cache key
    python -m tools.e2e.toolchain status      # what is built, what is missing
    python -m tools.e2e.toolchain lock        # record the wrappers' go.mod/go.sum in tools/e2e/gomod/
    python -m tools.e2e.toolchain prune       # delete the binaries of other (older) pins

Every version comes from one place: the Python pins (`pulumi`, `pulumi-kubernetes`) from
requirements.txt, everything else from components/versions.py (KUBERAY_VERSION and the section
"e2e toolchain (tools/e2e)": the KubeRay operator actually built, the provider's release commit).
Nothing is restated here.

`pulumi-language-python` is not built: the proxy serves no version of its module. The bin
directory gets two launchers instead, run by the CLI in the project root: the stand-in language
host tools/e2e/language_host.py and the SDK's dynamic-provider plugin, both in the project's
./venv (the pinned `pulumi` SDK).

The cache lives outside the checkout, so fresh clones and CI reuse it:

    $RAY_PLATFORM_E2E_CACHE (default ${XDG_CACHE_HOME:-$HOME/.cache}/ray-platform/e2e)
      gomod/          GOMODCACHE, shared by every key
      gocache/        GOCACHE, shared by every key
      <key>/bin/      the binaries; <key> is a hash of all pins
      <key>/pulumi-home/   PULUMI_HOME with the kubernetes plugin installed at its pinned version
      <key>/src/      generated wrapper modules (go.mod/go.sum), build logs
      <key>/manifest.json  per tool: version, module, origin commit, build seconds

Go programs whose go.mod has `replace` directives cannot be `go install`ed; each is built from a
small wrapper module generated here that requires it and restates its replaces, pointing local
paths (../sdk, ./staging/...) at the published modules of the same release.

Module downloads go through GOPROXY (default https://proxy.golang.org) and are verified against
the checksum database sum.golang.org, which the Go command reaches *through the proxy*
(`<proxy>/sumdb/sum.golang.org/...`) when sum.golang.org itself is unreachable: nothing is
downloaded unverified. A binary already on PATH at the pinned version is linked in and used as
it is.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[2]
# Committed go.sum (and go.mod, for review) of each wrapper module: a build starts from them, so every
# module a build has used before is checked against the recorded hash. `lock` refreshes them.
LOCK_DIR = Path(__file__).resolve().parent / "gomod"
RECIPE = 3  # bump when the build recipe changes in a way that changes the binaries


# --------------------------------------------------------------------------- pins

def _requirement_pin(name: str, path: Path = REPO / "requirements.txt") -> str:
    for line in path.read_text().splitlines():
        m = re.match(rf"^\s*{re.escape(name)}\s*==\s*([^\s;#]+)", line)
        if m:
            return m.group(1)
    raise SystemExit(f"toolchain: no `{name}==X` pin in {path}")


def _versions() -> dict:
    # runpy, not import: components/__init__ may pull in pulumi, this must run on bare Python.
    return runpy.run_path(str(REPO / "components" / "versions.py"))


def pins() -> dict[str, str]:
    v = _versions()
    return {
        "pulumi": _requirement_pin("pulumi"),
        "pulumi-kubernetes": _requirement_pin("pulumi-kubernetes"),
        "kubernetes": v["KUBERNETES_E2E_VERSION"],
        "etcd": v["ETCD_VERSION"],
        "kwok": v["KWOK_VERSION"],
        "kuberay": v["KUBERAY_VERSION"],
        "kuberay-operator": v["KUBERAY_E2E_OPERATOR_VERSION"],
        "scheduler-plugins": v["KUBERAY_SCHEDULER_PLUGINS_VERSION"],
        "kueue": v["KUEUE_VERSION"],
        # "" when the table has no entry for the pin: the provider build refuses it.
        "pulumi-kubernetes-provider": v["PULUMI_KUBERNETES_PROVIDER_COMMIT"].get(
            _requirement_pin("pulumi-kubernetes"), ""),
        "go": _go_version(),
        "recipe": str(RECIPE),
    }


def _go_version() -> str:
    try:
        out = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "none"


def cache_key(p: dict[str, str] | None = None) -> str:
    p = pins() if p is None else p
    return hashlib.sha256(json.dumps(p, sort_keys=True).encode()).hexdigest()[:16]


def cache_root() -> Path:
    if os.environ.get("RAY_PLATFORM_E2E_CACHE"):
        return Path(os.environ["RAY_PLATFORM_E2E_CACHE"]).expanduser().resolve()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "ray-platform" / "e2e"


def key_dir() -> Path:
    return cache_root() / cache_key()


def bin_dir() -> Path:
    return key_dir() / "bin"


def pulumi_home() -> Path:
    return key_dir() / "pulumi-home"


# --------------------------------------------------------------------------- logging

_LOG: Path | None = None


def log(msg: str) -> None:
    line = f"[toolchain {time.strftime('%H:%M:%S')}] {msg}"
    print(line, flush=True)
    if _LOG is not None:
        with _LOG.open("a") as f:
            f.write(line + "\n")


class BuildError(RuntimeError):
    pass


def go_env() -> dict[str, str]:
    root = cache_root()
    env = dict(os.environ)
    env.update(
        GOMODCACHE=str(root / "gomod"),
        GOCACHE=str(root / "gocache"),
        GOTOOLCHAIN="local",  # never download a Go toolchain; build with the installed one
        GOFLAGS="-modcacherw -buildvcs=false",
        GOWORK="off",
        CGO_ENABLED=env.get("CGO_ENABLED", "0"),
    )
    env.setdefault("GOPROXY", "https://proxy.golang.org,direct")
    return env


def run(cmd: list[str], cwd: Path | None = None, env: dict | None = None, logfile: Path | None = None) -> str:
    shown = " ".join(cmd if len(" ".join(cmd)) < 400 else cmd[:6] + ["..."])
    log(f"  $ {shown}" + (f"   (in {cwd})" if cwd else ""))
    try:
        proc = subprocess.run(cmd, cwd=cwd, env=env or go_env(), capture_output=True, text=True)
    except OSError as e:
        raise BuildError(f"`{shown}`: {e}") from None
    if logfile is not None:
        with logfile.open("a") as f:
            f.write(f"$ {' '.join(cmd)}\n{proc.stdout}{proc.stderr}\n")
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-25:])
        raise BuildError(f"`{shown}` failed ({proc.returncode}):\n{tail}")
    return proc.stdout


def module_info(mod: str, version: str) -> dict:
    """`go mod download -json` of one module version (info, go.mod path, zip dir, origin)."""
    proc = subprocess.run(["go", "mod", "download", "-json", f"{mod}@{version}"],
                          cwd=tempfile.gettempdir(), env=go_env(), capture_output=True, text=True)
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        raise BuildError(f"go mod download {mod}@{version}: {proc.stderr.strip()}") from None
    if info.get("Error"):
        raise BuildError(f"the Go module proxy refuses {mod}@{version}: {info['Error'].strip()}")
    return info


def mod_info_only(mod: str, version: str) -> dict:
    """`go list -m -json`: resolves a version (or commit) without downloading the zip."""
    proc = subprocess.run(["go", "list", "-m", "-json", f"{mod}@{version}"],
                          cwd=tempfile.gettempdir(), env=go_env(), capture_output=True, text=True)
    if proc.returncode != 0:
        raise BuildError(f"cannot resolve {mod}@{version} through the Go module proxy: "
                         f"{proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    return json.loads(proc.stdout)


# --------------------------------------------------------------------------- go.mod parsing

@dataclasses.dataclass
class GoMod:
    go: str
    godebug: list[str]
    replaces: list[tuple[str, str, str]]  # (old path, old version or "", target as written)


def parse_gomod(text: str) -> GoMod:
    go = ""
    godebug: list[str] = []
    replaces: list[tuple[str, str, str]] = []
    block = None
    for raw in text.splitlines():
        line = raw.split("//", 1)[0].strip()
        if not line:
            continue
        if block:
            if line == ")":
                block = None
                continue
            if block == "replace":
                replaces.append(_replace(line))
            elif block == "godebug":
                godebug.append(line)
            continue
        if line.endswith("("):
            block = line[:-1].strip()
            continue
        word, _, rest = line.partition(" ")
        if word == "go":
            go = rest.strip()
        elif word == "godebug":
            godebug.append(rest.strip())
        elif word == "replace":
            replaces.append(_replace(rest))
    return GoMod(go, godebug, replaces)


def _replace(spec: str) -> tuple[str, str, str]:
    left, _, right = spec.partition("=>")
    lparts = left.split()
    return lparts[0], (lparts[1] if len(lparts) > 1 else ""), right.strip()


def _is_local(target: str) -> bool:
    return target.startswith((".", "/"))


# --------------------------------------------------------------------------- wrapper builds

@dataclasses.dataclass
class Wrapper:
    """A wrapper module that requires `module@version` and builds `packages` from it."""
    name: str
    module: str
    version: str
    packages: list[str]
    ldflags: list[str] = dataclasses.field(default_factory=list)
    # (replaced module path, local target) -> published version to use, or None to drop it
    map_local: Callable[[str, str], str | None] = lambda path, target: None
    extra_require: dict[str, str] = dataclasses.field(default_factory=dict)
    extra_replace: dict[str, str] = dataclasses.field(default_factory=dict)
    tags: str = ""
    # also restate the non-local replaces of the replaced siblings (pulumi's sdk has its own)
    sibling_replaces: bool = False
    binary: str = ""  # output name when building one package (else each package's own name)

    def build(self, out: Path, src: Path) -> dict:
        info = module_info(self.module, self.version)
        gm = parse_gomod(Path(info["GoMod"]).read_text())
        require = {self.module: self.version, **self.extra_require}
        replace: dict[str, str] = {}
        copied_from = [gm]
        for old, _oldver, target in gm.replaces:
            if _is_local(target):
                if "FORBIDDEN" in target:
                    continue
                ver = self.map_local(old, target)
                if ver is None:
                    raise BuildError(f"{self.module}: no published module for `replace {old} => {target}`")
                replace[old] = f"{old} {ver}"
                if self.sibling_replaces:
                    # A replaced sibling's own non-local replaces are ignored as a dependency.
                    sib = module_info(old, ver)
                    copied_from.append(parse_gomod(Path(sib["GoMod"]).read_text()))
        for g in copied_from:
            for old, oldver, target in g.replaces:
                if not _is_local(target) and old not in replace:
                    replace[old if not oldver else f"{old} {oldver}"] = target
        replace.update(self.extra_replace)
        wdir = src / self.name
        if wdir.exists():
            shutil.rmtree(wdir)
        wdir.mkdir(parents=True)
        lines = [f"// Generated by tools/e2e/toolchain.py: builds {self.module}@{self.version}.",
                 f"module ray-platform.local/e2e/{self.name}", "", f"go {gm.go or '1.24'}", ""]
        lines += [f"godebug {d}" for d in gm.godebug]
        lines += ["", "require ("] + [f"\t{m} {v}" for m, v in sorted(require.items())] + [")", ""]
        if replace:
            lines += ["replace ("] + [f"\t{k} => {v}" for k, v in sorted(replace.items())] + [")", ""]
        (wdir / "go.mod").write_text("\n".join(lines))
        imports = "\n".join(f'\t_ "{p}"' for p in self.packages)
        if (LOCK_DIR / self.name / "go.sum").exists():
            shutil.copyfile(LOCK_DIR / self.name / "go.sum", wdir / "go.sum")
        (wdir / "tools.go").write_text(f"//go:build tools\n\npackage tools\n\nimport (\n{imports}\n)\n")
        logfile = wdir / "build.log"
        out.mkdir(parents=True, exist_ok=True)
        cmd = ["go", "build", "-mod=mod", "-p", "2", "-pgo=off", "-trimpath",
               "-ldflags", " ".join(["-s", "-w", *self.ldflags]),
               "-o", str(out / self.binary) if self.binary else str(out) + "/"]
        if self.tags:
            cmd += ["-tags", self.tags]
        run(cmd + self.packages, cwd=wdir, logfile=logfile)
        return {"module": self.module, "version": self.version,
                "origin": info.get("Origin", {}).get("Hash", ""), "wrapper": str(wdir / "go.mod")}


# --------------------------------------------------------------------------- the tools

@dataclasses.dataclass
class Tool:
    name: str
    binaries: list[str]
    version: str
    # command printing the version, and the text that must appear in its output for a PATH binary
    probe: list[str] | None
    expect: str
    build: Callable[["Ctx"], dict]
    # where `binaries` are, relative to the key directory
    where: str = "bin"

    def outputs(self, key: Path) -> list[Path]:
        return [key / self.where / b for b in self.binaries]


@dataclasses.dataclass
class Ctx:
    pins: dict[str, str]
    bin: Path
    src: Path
    home: Path

    @property
    def plugin(self) -> Path:
        """The provider plugin's build output: not in bin/, which is on PATH, because the CLI prefers a
        plugin binary on PATH to the installed plugin (and warns about it)."""
        return self.bin.parent / "plugin"


def _k8s(ctx: Ctx) -> dict:
    v = ctx.pins["kubernetes"]  # vMAJOR.MINOR.PATCH
    major, minor = v.lstrip("v").split(".")[:2]
    staging = f"v0.{minor}.{v.split('.')[2]}"
    flags = []
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        flags += [f"-X {pkg}.gitVersion={v}", f"-X {pkg}.gitMajor={major}", f"-X {pkg}.gitMinor={minor}",
                  f"-X {pkg}.gitTreeState=clean", f"-X {pkg}.buildDate=1970-01-01T00:00:00Z"]
    w = Wrapper("kubernetes", "k8s.io/kubernetes", v,
                [f"k8s.io/kubernetes/cmd/{c}" for c in
                 ("kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl")],
                ldflags=flags,
                map_local=lambda path, target: staging if "staging/src/k8s.io" in target else None)
    return w.build(ctx.bin, ctx.src)


def _etcd(ctx: Ctx) -> dict:
    v = ctx.pins["etcd"]
    w = Wrapper("etcd", "go.etcd.io/etcd/server/v3", v, ["go.etcd.io/etcd/server/v3"],
                map_local=lambda path, target: v,  # sibling modules of the same release
                binary="etcd")
    return w.build(ctx.bin, ctx.src)


def _kwok(ctx: Ctx) -> dict:
    v = ctx.pins["kwok"]
    # kwok spells its versions without the "v" (consts.go)
    flags = [f"-X sigs.k8s.io/kwok/pkg/consts.Version={v.lstrip('v')}",
             f"-X sigs.k8s.io/kwok/pkg/consts.KubeVersion={ctx.pins['kubernetes'].lstrip('v')}"]
    w = Wrapper("kwok", "sigs.k8s.io/kwok", v, ["sigs.k8s.io/kwok/cmd/kwok", "sigs.k8s.io/kwok/cmd/kwokctl"],
                ldflags=flags)
    res = w.build(ctx.bin, ctx.src)
    kwok_stages()
    kwok_crds()
    return res


# KWOK's own default stages (what `kwokctl` gives a cluster): nodes turn Ready and keep a lease,
# pods turn Ready/Running, complete and delete. Taken from the pinned kwok module, as kwokctl embeds them.
KWOK_STAGES = ["kustomize/stage/node/fast/node-initialize.yaml",
               "kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml",
               "kustomize/stage/pod/fast/pod-ready.yaml", "kustomize/stage/pod/fast/pod-complete.yaml",
               "kustomize/stage/pod/fast/pod-delete.yaml"]


# KWOK's own CRDs for what the e2e control plane enables (`kwok --enable-crds`): PortForward
# objects point a pod's port at an address of our choosing (a real local Ray head's dashboard).
KWOK_CRDS = ["kustomize/crd/bases/kwok.x-k8s.io_portforwards.yaml"]


def _kwok_share(name: str, files: list[str]) -> Path:
    """`files` of the pinned kwok module, joined into one YAML stream under the key's share/."""
    out = key_dir() / "share" / name
    if not out.exists():
        src = Path(module_info("sigs.k8s.io/kwok", pins()["kwok"])["Dir"])
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("".join("---\n" + (src / f).read_text() for f in files))
    return out


def kwok_stages() -> Path:
    return _kwok_share("kwok-stages.yaml", KWOK_STAGES)


def kwok_crds() -> Path:
    return _kwok_share("kwok-crds.yaml", KWOK_CRDS)


def kuberay_stand_in(p: dict[str, str] | None = None) -> str:
    """The line naming the operator built when it is not the one the platform deploys ("" if it is)."""
    p = pins() if p is None else p
    if p["kuberay-operator"] == p["kuberay"]:
        return ""
    return (f"KubeRay operator v{p['kuberay-operator']} standing in for v{p['kuberay']} "
            f"(proxy refuses {p['kuberay']})")


def _kuberay(ctx: Ctx) -> dict:
    v = "v" + ctx.pins["kuberay-operator"]
    w = Wrapper("kuberay", "github.com/ray-project/kuberay/ray-operator", v,
                ["github.com/ray-project/kuberay/ray-operator"],
                extra_require={"sigs.k8s.io/scheduler-plugins": ctx.pins["scheduler-plugins"]},
                binary="kuberay-operator")
    return w.build(ctx.bin, ctx.src)


def _kueue(ctx: Ctx) -> dict:
    v = ctx.pins["kueue"]
    w = Wrapper("kueue", "sigs.k8s.io/kueue", v, ["sigs.k8s.io/kueue/cmd/kueue"],
                ldflags=[f"-X sigs.k8s.io/kueue/pkg/version.GitVersion={v}"], binary="kueue")
    return w.build(ctx.bin, ctx.src)


PULUMI = "github.com/pulumi/pulumi"


def _pulumi(ctx: Ctx) -> dict:
    v = "v" + ctx.pins["pulumi"]
    w = Wrapper("pulumi", f"{PULUMI}/pkg/v3", v, [f"{PULUMI}/pkg/v3/cmd/pulumi"],
                ldflags=[f"-X {PULUMI}/sdk/v3/go/common/version.Version={v}"],
                map_local=lambda path, target: v if path == f"{PULUMI}/sdk/v3" else None,
                sibling_replaces=True)
    return w.build(ctx.bin, ctx.src)


# The CLI starts language and provider plugins with the project root as working directory, and the
# project root holds ./venv (from `make`), so the launchers run the pinned SDK of the project's venv.
LAUNCHERS = {
    "pulumi-language-python": '"$PWD/venv/bin/python" -u "$PWD/tools/e2e/language_host.py" "$@"',
    # The SDK's dynamic resources (pulumi.dynamic) run in this provider plugin.
    "pulumi-resource-pulumi-python": '"$PWD/venv/bin/python" -u -m pulumi.dynamic "$@"',
}


def _language_python(ctx: Ctx) -> dict:
    for name, command in LAUNCHERS.items():
        exe = ctx.bin / name
        exe.unlink(missing_ok=True)
        exe.write_text("#!/bin/sh\n"
                       "# Written by tools/e2e/toolchain.py: the e2e stand-in for Pulumi's Python plugins\n"
                       "# (docs/e2e.md, \"The Python language host\"). Runs in the project root, next to ./venv.\n"
                       'if [ ! -x "$PWD/venv/bin/python" ]; then\n'
                       f'  echo "{name}: no $PWD/venv/bin/python (run make in the ray-platform checkout' +
                       ' and pulumi from its root)" >&2\n'
                       "  exit 1\n"
                       "fi\n"
                       f"exec {command}\n")
        exe.chmod(0o755)
    return {"stand-in": "tools/e2e/language_host.py (the pinned SDK's LanguageRuntime server) and "
                        "python -m pulumi.dynamic, in the project's ./venv",
            "sdk": f"pulumi=={ctx.pins['pulumi']} (requirements.txt)"}


def _kubernetes_provider(ctx: Ctx) -> dict:
    ver = ctx.pins["pulumi-kubernetes"]
    pseudo = ctx.pins["pulumi-kubernetes-provider"]
    if not pseudo:
        raise BuildError(f"no release commit for pulumi-kubernetes=={ver}: add it to "
                         "PULUMI_KUBERNETES_PROVIDER_COMMIT in components/versions.py (see the comment there)")
    root = "github.com/pulumi/pulumi-kubernetes"
    mod = f"{root}/provider/v4"
    info = module_info(mod, pseudo)
    # go generate writes schema-embed.json beside the committed schema.json: work on a copy.
    src = ctx.src / "pulumi-kubernetes-provider"
    if src.exists():
        shutil.rmtree(src)
    shutil.copytree(info["Dir"], src)
    for p in src.rglob("*"):
        p.chmod(p.stat().st_mode | 0o200)
    # `replace .../sdk/v4 => ../sdk`: the release's published Go SDK, sdk/v4 at the same version.
    sdk = mod_info_only(f"{root}/sdk/v4", f"v{ver}")["Version"]
    gomod = (src / "go.mod").read_text()
    gomod, n = re.subn(r"(?m)^(\s*(?:replace\s+)?github\.com/pulumi/pulumi-kubernetes/sdk/v4\s*=>\s*)\S+.*$",
                       rf"\g<1>{root}/sdk/v4 {sdk}", gomod)
    if n != 1:
        raise BuildError(f"{mod}@{pseudo}: expected one `replace .../sdk/v4 => ../sdk` in its go.mod, found {n}")
    (src / "go.mod").write_text(gomod)
    # Like the wrappers: start from the recorded go.sum (`lock`), so known modules must match it.
    if (LOCK_DIR / src.name / "go.sum").exists():
        shutil.copyfile(LOCK_DIR / src.name / "go.sum", src / "go.sum")
    log_ = src / "build.log"
    env = go_env() | {"VERSION": ver}
    run(["go", "mod", "tidy"], cwd=src, env=env, logfile=log_)
    run(["go", "generate", "./cmd/pulumi-resource-kubernetes"], cwd=src, env=env, logfile=log_)
    run(["go", "build", "-p", "2", "-pgo=off", "-trimpath", "-ldflags",
         f"-s -w -X {mod}/pkg/version.Version={ver}", "-o", str(ctx.plugin / "pulumi-resource-kubernetes"),
         "./cmd/pulumi-resource-kubernetes"], cwd=src, env=env, logfile=log_)
    return {"module": mod, "version": pseudo, "origin": info.get("Origin", {}).get("Hash", ""),
            "sdk": f"{root}/sdk/v4 {sdk}", "plugin-version": ver, "wrapper": str(src / "go.mod")}


def _install_plugin(ctx: Ctx) -> dict:
    ver = ctx.pins["pulumi-kubernetes"]
    missing = [str(f) for f in (ctx.bin / "pulumi", ctx.plugin / "pulumi-resource-kubernetes") if not f.exists()]
    if missing:
        raise BuildError(f"needs {' and '.join(missing)} (see above)")
    env = dict(os.environ, PULUMI_HOME=str(ctx.home), PULUMI_SKIP_UPDATE_CHECK="true",
               PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION="true")
    run([str(ctx.bin / "pulumi"), "plugin", "install", "resource", "kubernetes", ver,
         "--file", str(ctx.plugin / "pulumi-resource-kubernetes"), "--reinstall"], env=env)
    return {"plugin": f"resource kubernetes {ver}", "PULUMI_HOME": str(ctx.home)}


def tools(p: dict[str, str]) -> list[Tool]:
    k = p["kubernetes"]
    return [
        Tool("kubernetes", ["kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl"], k,
             ["kube-apiserver", "--version"], f"Kubernetes {k}", _k8s),
        Tool("etcd", ["etcd"], p["etcd"], ["etcd", "--version"], f"etcd Version: {p['etcd'].lstrip('v')}", _etcd),
        Tool("kwok", ["kwok", "kwokctl"], p["kwok"], None, "", _kwok),
        Tool("kuberay", ["kuberay-operator"], p["kuberay-operator"], None, "", _kuberay),
        Tool("pulumi", ["pulumi"], p["pulumi"], ["pulumi", "version"], f"v{p['pulumi']}", _pulumi),
        Tool("pulumi-language-python", ["pulumi-language-python", "pulumi-resource-pulumi-python"], p["pulumi"],
             None, "", _language_python),
        Tool("pulumi-resource-kubernetes", ["pulumi-resource-kubernetes"], p["pulumi-kubernetes"],
             None, "", _kubernetes_provider, where="plugin"),
        Tool("kubernetes-plugin", [f"plugins/resource-kubernetes-v{p['pulumi-kubernetes']}/pulumi-resource-kubernetes"],
             p["pulumi-kubernetes"], None, "", _install_plugin, where="pulumi-home"),
        Tool("kueue", ["kueue"], p["kueue"], None, "", _kueue),
    ]


# --------------------------------------------------------------------------- build driver

def _from_path(tool: Tool, bindir: Path) -> bool:
    """Link a binary already on PATH at the pinned version instead of building it."""
    if tool.name == "pulumi-language-python" and (bindir / "pulumi").is_symlink():
        # A Pulumi CLI taken from PATH brings its own language host beside it (same installation).
        home = Path(os.readlink(bindir / "pulumi")).parent
        if all((home / b).exists() for b in tool.binaries):
            for b in tool.binaries:
                (bindir / b).unlink(missing_ok=True)
                (bindir / b).symlink_to(home / b)
            log(f"{tool.name}: using the one beside {home / 'pulumi'}")
            return True
    if not tool.probe:
        return False
    path = os.pathsep.join(d for d in os.environ.get("PATH", "").split(os.pathsep)
                           if d and Path(d).resolve() != bindir.resolve())
    exe = shutil.which(tool.probe[0], path=path)
    if not exe:
        return False
    try:
        out = subprocess.run([exe, *tool.probe[1:]], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    if tool.expect not in out.stdout + out.stderr:
        return False
    others = [b for b in tool.binaries if b != tool.probe[0]]
    if any(not shutil.which(b, path=path) for b in others):
        return False
    for b in tool.binaries:
        link = bindir / b
        link.unlink(missing_ok=True)
        link.symlink_to(shutil.which(b, path=path))
    log(f"{tool.name}: using {exe} from PATH ({tool.expect})")
    return True


def manifest_path() -> Path:
    return key_dir() / "manifest.json"


def load_manifest() -> dict:
    try:
        return json.loads(manifest_path().read_text())
    except (OSError, ValueError):
        return {}


def build(only: list[str] | None, keep_going: bool) -> int:
    global _LOG
    p = pins()
    kd = key_dir()
    ctx = Ctx(p, kd / "bin", kd / "src", kd / "pulumi-home")
    for d in (ctx.bin, ctx.src, ctx.home):
        d.mkdir(parents=True, exist_ok=True)
    _LOG = kd / "build.log"
    manifest = load_manifest()
    manifest.setdefault("pins", p)
    manifest.setdefault("tools", {})
    log(f"cache {kd} (key {kd.name}); pins {json.dumps(p)}")
    started = time.monotonic()
    failed: list[str] = []
    for tool in tools(p):
        if only and tool.name not in only:
            continue
        done = manifest["tools"].get(tool.name, {})
        if done.get("ok") and all(f.exists() for f in tool.outputs(kd)):
            log(f"{tool.name}: cached ({tool.version})")
            continue
        if _from_path(tool, ctx.bin):
            manifest["tools"][tool.name] = {"ok": True, "from": "PATH", "version": tool.version}
            _save(manifest)
            continue
        log(f"{tool.name}: building {tool.version} ...")
        t0 = time.monotonic()
        try:
            res = tool.build(ctx)
        except BuildError as e:
            secs = round(time.monotonic() - t0, 1)
            log(f"{tool.name}: FAILED after {secs}s: {e}")
            manifest["tools"][tool.name] = {"ok": False, "error": str(e), "seconds": secs, "version": tool.version}
            _save(manifest)
            failed.append(tool.name)
            if not keep_going:
                break
            continue
        secs = round(time.monotonic() - t0, 1)
        log(f"{tool.name}: built in {secs}s")
        manifest["tools"][tool.name] = {"ok": True, "seconds": secs, **res}
        _save(manifest)
    total = round(time.monotonic() - started, 1)
    log(f"done in {total}s; cache size {_du(cache_root())}" + (f"; FAILED: {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


def _save(manifest: dict) -> None:
    # Merge with what is on disk: two builds (`--only`) may run side by side.
    on_disk = load_manifest()
    merged = {**on_disk, **manifest, "tools": {**on_disk.get("tools", {}), **manifest.get("tools", {})}}
    tmp = manifest_path().with_suffix(".tmp")
    tmp.write_text(json.dumps(merged, indent=2, sort_keys=True) + "\n")
    tmp.replace(manifest_path())


def _du(path: Path) -> str:
    try:
        return subprocess.run(["du", "-sh", str(path)], capture_output=True, text=True).stdout.split()[0]
    except (OSError, IndexError):
        return "?"


def env_exports() -> dict[str, str]:
    return {
        "PATH": f"{bin_dir()}{os.pathsep}{os.environ.get('PATH', '')}",
        "PULUMI_HOME": str(pulumi_home()),
        "PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION": "true",
        "PULUMI_SKIP_UPDATE_CHECK": "true",
    }


def status() -> int:
    p = pins()
    m = load_manifest().get("tools", {})
    print(f"cache {key_dir()}")
    rc = 0
    for t in tools(p):
        entry = m.get(t.name, {})
        have = entry.get("ok") and all(f.exists() for f in t.outputs(key_dir()))
        rc |= 0 if have else 1
        state = "ok" if have else ("FAILED: " + entry["error"].splitlines()[0] if entry.get("error") else "missing")
        print(f"  {t.name:28} {t.version:10} {state}")
    if kuberay_stand_in(p):
        print(f"  {kuberay_stand_in(p)}")
    return rc


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.e2e.toolchain", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build what is missing (once; cached by the pins)")
    b.add_argument("--only", default="", help="comma-separated tool names (see `status`)")
    b.add_argument("--keep-going", action="store_true", help="build the other tools when one fails")
    sub.add_parser("lock", help=f"copy the built wrappers' go.mod/go.sum to {LOCK_DIR.relative_to(REPO)}/")
    sub.add_parser("prune", help="delete the cache's other keys (binaries of older pins); keeps gomod/gocache")
    sub.add_parser("path", help="print the bin directory")
    sub.add_parser("env", help="print shell exports for the toolchain")
    sub.add_parser("pins", help="print the pins and the cache key")
    sub.add_parser("status", help="what is built (exit 1 if anything is missing)")
    a = ap.parse_args(argv)
    if a.cmd == "build":
        return build([s for s in a.only.split(",") if s] or None, a.keep_going)
    if a.cmd == "lock":
        return lock()
    if a.cmd == "prune":
        for d in cache_root().iterdir():
            if d.is_dir() and d.name not in ("gomod", "gocache", key_dir().name) and (d / "manifest.json").exists():
                shutil.rmtree(d)
                print(f"removed {d}")
        return 0
    if a.cmd == "path":
        print(bin_dir())
    elif a.cmd == "env":
        for k, v in env_exports().items():
            print(f"export {k}={_shq(v)}")
    elif a.cmd == "pins":
        print(json.dumps({"key": cache_key(), "cache": str(key_dir()), "pins": pins()}, indent=2))
    elif a.cmd == "status":
        return status()
    return 0


def lock() -> int:
    ok = {n for n, e in load_manifest().get("tools", {}).items() if e.get("ok") and e.get("wrapper")}
    for name in sorted(ok):
        wdir = Path(load_manifest()["tools"][name]["wrapper"]).parent
        dest = LOCK_DIR / wdir.name
        dest.mkdir(parents=True, exist_ok=True)
        for f in ("go.mod", "go.sum"):
            if (wdir / f).exists():
                shutil.copyfile(wdir / f, dest / f)
        print(f"{dest.relative_to(REPO)}: go.mod, go.sum from {wdir}")
    return 0


def _shq(s: str) -> str:
    return "'" + s.replace("'", "'\\''") + "'"


if __name__ == "__main__":
    sys.exit(main())
