"""`make bench`: run the selected sections, print the table, write build/bench/results.json.

A section that fails is reported (and makes the exit code 1) without stopping the
others; a missed target is a result, not a failure.
"""
from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import by_hand, deploy, hook, infer, local_mode, program_eval, scale, serve, train
from bench.cluster import BenchCluster
from bench.config import SECTIONS, BenchConfig
from bench.stats import Figure, machine, notes, table

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "build" / "bench" / "results.json"
RAY_SECTIONS = ("hook", "jobs", "train", "infer", "serve")
# The model infer and serve score with, trained once by the plain loop.
MODEL_NAME = "bench-digits"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one repeat, small sizes: checks that it all runs")
    parser.add_argument("--only", nargs="+", choices=SECTIONS, metavar="SECTION",
                        help=f"run only these sections: {', '.join(SECTIONS)}")
    parser.add_argument("--repeats", type=int, help="repeats of every section (default: sized for ~10 minutes)")
    parser.add_argument("--out", type=Path, default=OUT, help=f"results JSON (default {OUT.relative_to(ROOT)})")
    args = parser.parse_args(argv)
    if args.repeats is not None and args.repeats < 1:
        parser.error("--repeats must be >= 1")
    return args


class Run:
    """Collects figures and per-section outcomes; a failing section is recorded, not fatal."""

    def __init__(self, save: Callable[[Run], None] = lambda _run: None) -> None:
        self.figures: list[Figure] = []
        self.sections: dict[str, dict[str, Any]] = {}
        # Called after every section, so that a long run that is cut short keeps what it measured.
        self.save = save

    def section(self, name: str, measure: Callable[[], list[Figure]]) -> None:
        print(f"\n==> {name}", flush=True)
        started = time.monotonic()
        try:
            figures = measure()
        except Exception as exc:  # noqa: BLE001 - reported in the results; the other sections still run
            traceback.print_exc()
            self.sections[name] = {"seconds": round(time.monotonic() - started, 1),
                                   "error": f"{type(exc).__name__}: {exc}"}
            self.save(self)
            return
        self.figures += figures
        self.sections[name] = {"seconds": round(time.monotonic() - started, 1), "error": None}
        self.save(self)
        print(table(figures), flush=True)


def ray_sections(run: Run, cfg: BenchConfig, selected: list[str]) -> None:
    """hook, jobs, train, infer and serve share one head; serve goes last because replicas keep their CPUs."""
    try:
        cluster = BenchCluster()
    except Exception as exc:  # noqa: BLE001 - every Ray section is then reported as failed
        for name in selected:
            run.sections[name] = {"seconds": 0.0, "error": f"no Ray head: {type(exc).__name__}: {exc}"}
        return
    print(f"bench Ray head: {cluster.head.dashboard_url} (pid {cluster.head.pid}, {cluster.work_dir})", flush=True)

    @functools.cache
    def model() -> str:
        train.publish_model(cluster.storage_path, MODEL_NAME)
        return MODEL_NAME

    measures: dict[str, Callable[[], list[Figure]]] = {
        "hook": lambda: hook.run(cfg, cluster),
        "jobs": lambda: by_hand.run(cfg, cluster, model()),
        "train": lambda: train.run(cfg, cluster),
        "infer": lambda: infer.run(cfg, cluster, model()),
        "serve": lambda: serve.run(cfg, cluster, model()),
    }
    try:
        for name in selected:
            run.section(name, measures[name])
    finally:
        cluster.close()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = BenchConfig.quick() if args.quick else BenchConfig()
    if args.repeats is not None:
        cfg = cfg.with_repeats(args.repeats)
    selected = [s for s in SECTIONS if s in (args.only or SECTIONS)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    before = machine()
    print(f"bench on {before['logical_cores']} logical / {before['physical_cores']} physical cores, "
          f"{before['memory_gib']} GiB, load average {before['load_average']}; sections: {', '.join(selected)}; "
          f"repeats: {', '.join(f'{s}={cfg.repeats[s]}' for s in selected)}", flush=True)
    started = time.monotonic()

    def save(run: Run, complete: bool = False) -> None:
        args.out.write_text(json.dumps({
            "complete": complete, "machine": before, "load_average_after": machine()["load_average"],
            "quick": args.quick, "repeats": {s: cfg.repeats[s] for s in selected}, "config": {
                k: v for k, v in vars(cfg).items() if k != "repeats"},
            "seconds": round(time.monotonic() - started, 1), "sections": run.sections,
            "figures": [f.as_json() for f in run.figures],
        }, indent=2, default=list) + "\n")

    run = Run(save)
    if "program-eval" in selected:
        run.section("program-eval", lambda: program_eval.run(cfg))
    in_ray = [s for s in RAY_SECTIONS if s in selected]
    if in_ray:
        ray_sections(run, cfg, in_ray)
    if "local-mode" in selected:
        run.section("local-mode", lambda: local_mode.run(cfg, args.out.parent))
    # On the e2e control plane (docs/e2e.md): a running `make e2e-up` is reused, else started and stopped.
    if "deploy" in selected:
        run.section("deploy", lambda: deploy.run(cfg))
    if "scale" in selected:
        run.section("scale", lambda: scale.run(cfg))
    after = machine()
    print(f"\n== results ({before['logical_cores']} cores; load average {before['load_average']} before, "
          f"{after['load_average']} after; {time.monotonic() - started:.0f} s) ==")
    print(table(run.figures))
    if notes(run.figures):
        print(f"\n{notes(run.figures)}")
    failed = {name: s["error"] for name, s in run.sections.items() if s["error"]}
    for name, error in failed.items():
        print(f"section {name} FAILED: {error}", file=sys.stderr)
    save(run, complete=True)
    print(f"\nwritten to {args.out}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
