"""Program evaluation: seconds to evaluate stacks under the mock engine, and how that grows.

Every measurement is a fresh `python -m bench.program_eval FILE...` child that imports
tools.render and then times `render_stack` over its files, so each starts from cold
imports, as `pulumi preview` does (a team stack's time includes rendering the platform
stack it references, which is how tools.render resolves StackReferences).

Growth: synthetic organisations of N teams in a temporary stacks directory: a platform
stack with N GPU pools (prod's pools, cycled, renamed) and N team stacks (vision-prod,
renamed) referencing it. Measured per N: the platform stack alone, and the whole
organisation in one process (what `make render-all` and `make policy` do). A straight
line fitted through the medians gives the cost per pool and per team; the total per
pool (team) at the two largest sizes says whether the growth is linear. Growth is measured in CPU seconds of the child, which
other work on the machine barely moves (the evaluation is single-threaded, so on an
idle machine wall time is the same); single stacks are timed by the wall clock.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from bench.config import BenchConfig
from bench.stats import Figure, Target, fit_line, number
from components.config.stack_files import stack_file
from tools.render import STACKS_DIR, render_stack

ROOT = Path(__file__).resolve().parents[1]
PROD_TARGET = Target("<", 3.0, on_ratio=False)
# "Roughly linear": the total per team (or pool) at 50 at most a quarter above that at 10.
LINEAR_TARGET = Target("<=", 1.25, on_ratio=False)
SYNTH_PLATFORM = "synth"
PROJECT_KEY = "ray-platform"


def child_seconds(files: list[Path], stacks_dir: Path = STACKS_DIR, clock: str = "wall") -> float:
    """Seconds (`clock`: "wall" or "cpu") a fresh interpreter spends in render_stack over `files`."""
    out = subprocess.run([sys.executable, "-m", "bench.program_eval", "--stacks-dir", str(stacks_dir),
                          *map(str, files)], cwd=ROOT, capture_output=True, text=True, check=False)
    if out.returncode != 0:
        raise RuntimeError(f"rendering {[f.name for f in files]} failed:\n{out.stderr[-2000:]}")
    return float(json.loads(out.stdout.strip().splitlines()[-1])[clock])


def write_stack(path: Path, config: dict[str, Any], header: str) -> Path:
    path.write_text(f"# {header}\n" + yaml.safe_dump({"config": config}, sort_keys=False))
    return path


def pool_count(teams: int) -> int:
    return max(teams, len(yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text())["config"][
        f"{PROJECT_KEY}:gpuPools"]))


def synthetic_org(directory: Path, teams: int) -> tuple[Path, list[Path]]:
    """A platform stack with `teams` GPU pools (at least prod's) and `teams` team stacks on it, in `directory`."""
    platform = yaml.safe_load((STACKS_DIR / "Pulumi.prod.yaml").read_text())["config"]
    pools = platform[f"{PROJECT_KEY}:gpuPools"]
    # prod's own pools stay (the team stacks' worker groups and queue name them), then copies up to N.
    platform[f"{PROJECT_KEY}:gpuPools"] = pools + [{**pools[i % len(pools)], "name": f"{pools[i % len(pools)]['name']}-{i}"}
                                                   for i in range(len(pools), teams)]
    platform_file = write_stack(directory / f"Pulumi.{SYNTH_PLATFORM}.yaml", platform,
                                f"bench: prod with {pool_count(teams)} GPU pools")
    team = yaml.safe_load((STACKS_DIR / "Pulumi.vision-prod.yaml").read_text())["config"]
    team_files = []
    for i in range(teams):
        config = {**team, f"{PROJECT_KEY}:platformStack": f"my-org/{PROJECT_KEY}/{SYNTH_PLATFORM}",
                  f"{PROJECT_KEY}:team": {**team[f"{PROJECT_KEY}:team"], "name": f"team{i:03d}"}}
        team_files.append(write_stack(directory / f"Pulumi.team{i:03d}-prod.yaml", config,
                                      f"bench: vision-prod as team{i:03d}"))
    return platform_file, team_files


def growth_figures(unit: str, sizes: list[int], medians: list[float]) -> list[Figure]:
    """Slope of a line fit, and whether the cost per unit (total / size) still falls or holds at the largest size.

    R^2 cannot tell a line from a parabola over sizes as far apart as 1, 10, 50, and the
    cost of the first few units is within noise; the total per unit at the two largest
    sizes can: with a fixed cost plus a cost per unit it falls, growing faster it rises.
    """
    fit = fit_line([float(n) for n in sizes], medians)
    steps = ", ".join(f"{a}->{b}: {number((y2 - y1) / (b - a))}"
                      for (a, y1), (b, y2) in zip(zip(sizes, medians), list(zip(sizes, medians))[1:]))
    per_unit = [y / n for n, y in zip(sizes, medians)]
    return [
        Figure("program-eval", f"cost per {unit} (slope of the line fit)", f"CPU s/{unit}", [fit.slope],
               note=f"intercept {number(fit.intercept)} s, R^2 {fit.r2:.3f}; CPU s per extra {unit} {steps}"),
        Figure("program-eval", f"CPU s per {unit} at {sizes[-1]} / at {sizes[-2]} {unit}s", "",
               [per_unit[-1] / per_unit[-2]], target=LINEAR_TARGET),
    ]


def run(cfg: BenchConfig) -> list[Figure]:
    repeats = cfg.repeats["program-eval"]
    names = cfg.eval_stacks or tuple(p.name[len("Pulumi."):-len(".yaml")]
                                     for p in sorted(STACKS_DIR.glob("Pulumi.*.yaml")))
    figures = []
    for name in names:
        samples = [child_seconds([stack_file(STACKS_DIR, name)]) for _ in range(repeats)]
        figures.append(Figure("program-eval", f"stack {name}", "s", samples,
                              target=PROD_TARGET if name == "prod" else None))
    platform_medians, org_medians = [], []
    for teams in cfg.eval_sizes:
        with tempfile.TemporaryDirectory(prefix="rpb-stacks-") as directory:
            platform_file, team_files = synthetic_org(Path(directory), teams)
            platform = [child_seconds([platform_file], Path(directory), "cpu") for _ in range(repeats)]
            org = [child_seconds([platform_file, *team_files], Path(directory), "cpu")
                   for _ in range(cfg.eval_org_repeats)]
        figures += [Figure("program-eval", f"platform with {pool_count(teams)} GPU pools", "CPU s", platform),
                    Figure("program-eval", f"org of {teams} teams (all stacks, one process)", "CPU s", org)]
        platform_medians.append(statistics.median(platform))
        org_medians.append(statistics.median(org))
    sizes = list(cfg.eval_sizes)
    pools = [pool_count(n) for n in sizes]
    return figures + growth_figures("pool", pools, platform_medians) + growth_figures("team", sizes, org_medians)


def main() -> None:
    """Child: render the given stack files in order, print the seconds spent in render_stack."""
    parser = argparse.ArgumentParser(prog="python -m bench.program_eval")
    parser.add_argument("--stacks-dir", type=Path, required=True)
    parser.add_argument("files", type=Path, nargs="+")
    args = parser.parse_args()
    started, cpu_started = time.perf_counter(), time.process_time()
    resources = [len(render_stack(path, stacks_dir=args.stacks_dir).resources) for path in args.files]
    print(json.dumps({"wall": time.perf_counter() - started, "cpu": time.process_time() - cpu_started,
                      "resources": resources}))


if __name__ == "__main__":
    main()
