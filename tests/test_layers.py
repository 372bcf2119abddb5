"""The import rules of components/ and jobs/: which layer may import which, no Pulumi in the pure ones.

Read from the source with `ast`, not by importing: every import statement counts, at module
level, inside a function or under `if TYPE_CHECKING:`, since any of them ties one module to another.
"""
from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMPONENTS = ROOT / "components"
PULUMI_PACKAGES = ("pulumi", "pulumi_aws", "pulumi_kubernetes")
MAX_LINES = 400

# The layer a components module belongs to, by its first name below `components`.
BASE = "constants/versions"
LAYER_OF = {"constants": BASE, "versions": BASE, "config": "config", "specs": "specs", "clients": "clients",
            "hooks": "hooks", "platform": "platform", "team": "team"}
# Which layers each layer may import from, itself included: team -> hooks -> specs/clients -> config
# -> constants/versions, and platform -> specs/config. Nothing in components imports team or platform
# across that line (only __main__.py, tools/, bench/ and tests/ do). Of the two pure layers in the
# middle, clients may use the builders (a job's submission id is a digest of its spec), never the
# other way: a builder talks to nothing.
MAY_IMPORT = {
    BASE: {BASE},
    "config": {"config", BASE},
    "specs": {"specs", "config", BASE},
    "clients": {"clients", "specs", "config", BASE},
    "hooks": {"hooks", "specs", "clients", "config", BASE},
    "platform": {"platform", "specs", "config", BASE},
    "team": {"team", "hooks", "specs", "clients", "config", BASE},
}
# Modules of no layer, and what they may import. components/ray_job.py and components/kuberay_wait.py
# are the dynamic providers' import paths before the move, kept for the providers pickled into
# deployed stacks' state: they re-export hooks only.
OUTSIDE_LAYERS = {"components": set(), "components.ray_job": {"hooks"}, "components.kuberay_wait": {"hooks"}}
PURE_LAYERS = ("config", "specs", "clients")


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def module_file(name: str) -> Path | None:
    """The file of a module of this repository, or None when `name` is not one."""
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imports_in(source: str, module: str, is_package: bool = False) -> set[str]:
    """Every module the source of `module` imports anywhere in its body, by absolute dotted name.

    `from package import name` counts as importing package.name when that is a module.
    """
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            parts = package.split(".")
            anchor = parts[:len(parts) - node.level + 1] if node.level else []
            source_module = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(source_module)
            names.update(f"{source_module}.{alias.name}" for alias in node.names
                         if module_file(f"{source_module}.{alias.name}") is not None)
    return names


@cache
def imported(path: Path) -> frozenset[str]:
    return frozenset(imports_in(path.read_text(), module_name(path), path.name == "__init__.py"))


def top_level(name: str) -> str:
    return name.split(".")[0]


def layer(name: str) -> str | None:
    parts = name.split(".")
    return LAYER_OF.get(parts[1]) if len(parts) > 1 and parts[0] == "components" else None


def component_modules() -> list[Path]:
    return [p for p in modules("components") if p.name != "__init__.py" or p.stat().st_size]


def component_edges() -> dict[str, set[str]]:
    """components module -> the components modules it imports (packages resolve to their __init__)."""
    edges: dict[str, set[str]] = {}
    for path in modules("components"):
        edges[module_name(path)] = {n for n in imported(path)
                                    if top_level(n) == "components" and module_file(n) is not None}
    return edges


def cycles(edges: dict[str, set[str]]) -> Iterator[list[str]]:
    """The strongly connected components of more than one module, or of one importing itself (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()

    def visit(node: str) -> Iterator[list[str]]:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in sorted(edges.get(node, ())):
            if succ not in index:
                yield from visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in edges.get(node, ()):
                yield sorted(component)

    for node in sorted(edges):
        if node not in index:
            yield from visit(node)


def ids(paths: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in paths]


# --------------------------------------------------------------------------- the rules


PURE = [p for p in modules("components") if layer(module_name(p)) in PURE_LAYERS]


@pytest.mark.parametrize("path", PURE, ids=ids(PURE))
def test_pure_layers_import_no_pulumi(path: Path) -> None:
    assert not {n for n in imported(path) if top_level(n) in PULUMI_PACKAGES}


def pulumi_loaded_by(names: list[str]) -> list[str]:
    """The Pulumi packages in sys.modules of a fresh interpreter after importing `names`."""
    code = ("import importlib, sys\n"
            f"for name in {names!r}:\n    importlib.import_module(name)\n"
            f"print(' '.join(sorted({{m.split('.')[0] for m in sys.modules}} & {set(PULUMI_PACKAGES)!r})))")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.split()


# What runs where Pulumi need not be: the pure layers, and `make jobs` (tools/monitor.py).
LOADS_WITHOUT_PULUMI = [module_name(p) for p in PURE] + ["tools.monitor"]


def test_the_pure_layers_and_the_monitor_load_without_pulumi() -> None:
    # The rule above reads each module's own imports; this loads them with all they pull in
    # (jobs/, tools/, third-party packages), as a developer command would.
    assert pulumi_loaded_by(LOADS_WITHOUT_PULUMI) == []


# The built-in jobs, what the platform ships beside a team's code, and the example team's repository.
JOBS = [p for folder in ("jobs", "launcher", "examples") for p in modules(folder)]


@pytest.mark.parametrize("path", JOBS, ids=ids(JOBS))
def test_jobs_import_neither_pulumi_nor_components(path: Path) -> None:
    # They run inside the cluster's Ray image, where neither is installed.
    assert not {n for n in imported(path) if top_level(n) in (*PULUMI_PACKAGES, "components")}


def test_no_import_cycles_among_components() -> None:
    assert list(cycles(component_edges())) == []


COMPONENTS_MODULES = component_modules()


@pytest.mark.parametrize("path", COMPONENTS_MODULES, ids=ids(COMPONENTS_MODULES))
def test_imports_flow_one_way_between_layers(path: Path) -> None:
    name = module_name(path)
    allowed = OUTSIDE_LAYERS[name] if name in OUTSIDE_LAYERS else MAY_IMPORT[layer(name) or ""]
    wrong = {n: layer(n) for n in imported(path) if top_level(n) == "components" and layer(n) not in allowed}
    assert not wrong, f"{name} ({layer(name)}) may import only {sorted(allowed)}"


OUTSIDE = [p for folder in ("jobs", "launcher", "examples", "policy") for p in modules(folder)]


@pytest.mark.parametrize("path", OUTSIDE, ids=ids(OUTSIDE))
def test_only_the_program_and_developer_commands_import_the_layers(path: Path) -> None:
    assert not {n for n in imported(path) if layer(n) in ("team", "platform")}


@pytest.mark.parametrize("path", COMPONENTS_MODULES, ids=ids(COMPONENTS_MODULES))
def test_no_module_in_components_is_over_400_lines(path: Path) -> None:
    assert len(path.read_text().splitlines()) <= MAX_LINES


def test_every_components_module_is_in_a_layer() -> None:
    assert not [module_name(p) for p in COMPONENTS_MODULES
                if module_name(p) not in OUTSIDE_LAYERS and layer(module_name(p)) is None]


# --------------------------------------------------------------------------- the rules can fail


def test_the_reader_sees_function_level_type_checking_and_relative_imports() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import pulumi_aws\n"
              "def f():\n    from components.team import layer\n    from . import raycluster\n")
    found = imports_in(source, "components.specs.probe")
    assert {"pulumi_aws", "components.team", "components.team.layer", "components.specs.raycluster"} <= found


def test_a_module_that_loads_pulumi_is_seen_loading_it() -> None:
    assert "pulumi" in pulumi_loaded_by(["components.hooks.ray_job"])


def test_a_cycle_is_found() -> None:
    assert list(cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}})) == [["a", "b", "c"]]
    assert list(cycles({"a": {"a"}})) == [["a"]]
