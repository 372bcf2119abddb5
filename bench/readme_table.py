"""The README's benchmark tables, from one run's results.json (so the tables are that run, not a
transcription): every figure with a baseline or a target, and the `scale` figures by N.

    venv/bin/python -m bench.readme_table [build/bench/results.json]
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

from bench.stats import number

DEFAULT = Path("build/bench/results.json")
# bench/scale.py names its per-N figures "<what>, N=<n> (stacks <first>-<last>)".
PER_N = re.compile(r"^(?P<what>.+), N=(?P<n>\d+) \(stacks [0-9-]+\)$")


def with_unit(value: float | None, unit: str) -> str:
    return "" if value is None else f"{number(value)} {unit}".strip()


def row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def figures_table(figures: list[dict[str, Any]]) -> list[str]:
    lines = [row(["figure", "n", "ours", "baseline", "ours/base", "target", "result"]), row(["---"] * 7)]
    for f in figures:
        per_n = f["section"] == "scale" and PER_N.match(f["name"])
        if per_n or (f["target"] is None and f["baseline_median"] is None and f["section"] != "scale"):
            continue
        lines.append(row([f"{f['section']}: {f['name']}", str(len(f["ours_samples"])),
                          with_unit(f["ours_median"], f["unit"]), with_unit(f["baseline_median"], f["unit"]),
                          "" if f["ratio"] is None else number(f["ratio"]),
                          f["target"]["text"].strip() if f["target"] else "", f["status"]]))
    return lines


def scale_table(figures: list[dict[str, Any]]) -> list[str]:
    """Median per team stack of the stacks up to each N (N=10: stacks 2-10), one column per N."""
    by_what: dict[str, dict[int, str]] = {}
    for f in figures:
        match = PER_N.match(f["name"]) if f["section"] == "scale" else None
        if match:
            by_what.setdefault(match["what"], {})[int(match["n"])] = with_unit(f["ours_median"], f["unit"])
    ns = sorted({n for cells in by_what.values() for n in cells})
    if not ns:
        return []
    lines = [row(["scale, per team stack", *(f"N={n}" for n in ns)]), row(["---"] * (len(ns) + 1))]
    lines += [row([what, *(cells.get(n, "") for n in ns)]) for what, cells in by_what.items()]
    return lines


def markdown(results: dict[str, Any]) -> str:
    machine = results["machine"]
    head = (f"One run ({machine['logical_cores']} cores, load average {machine['load_average'][0]:.1f} at the start "
            f"and {results['load_average_after'][0]:.1f} at the end, {results['seconds']:.0f} s"
            f"{'' if results['complete'] else ', cut short'}; repeats: "
            f"{', '.join(f'{s} {n}' for s, n in results['repeats'].items())}):")
    scale = scale_table(results["figures"])
    return "\n".join([head, "", *figures_table(results["figures"]), *(["", *scale] if scale else [])]) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    sys.stdout.write(markdown(json.loads((Path(args[0]) if args else DEFAULT).read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
