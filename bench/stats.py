"""Figures, targets, medians, ratios, line fits and the results table: no measuring here."""
from __future__ import annotations

import os
import platform
import statistics
from dataclasses import dataclass, field
from importlib import metadata
from typing import Any

from tools.monitor import format_table

OPS = ("<", "<=", ">=")


@dataclass(frozen=True)
class Target:
    """A bound on ours/baseline (`on_ratio`) or on our own median (absolute targets)."""

    op: str
    value: float
    on_ratio: bool = True

    def __post_init__(self) -> None:
        if self.op not in OPS:
            raise ValueError(f"target operator {self.op!r} is not one of {OPS}")

    def met(self, value: float) -> bool:
        if self.op == "<":
            return value < self.value
        return value <= self.value if self.op == "<=" else value >= self.value

    def text(self, unit: str) -> str:
        return f"x {self.op} {self.value:g}" if self.on_ratio else f"{self.op} {number(self.value)} {unit}"


@dataclass
class Figure:
    """One row: samples of ours and of the baseline from the same run; medians make the row."""

    section: str
    name: str
    unit: str
    ours: list[float]
    baseline: list[float] = field(default_factory=list)
    target: Target | None = None
    note: str = ""

    @property
    def ours_median(self) -> float | None:
        return median(self.ours)

    @property
    def baseline_median(self) -> float | None:
        return median(self.baseline)

    @property
    def ratio(self) -> float | None:
        """ours / baseline, always that way round: the target says which direction is better."""
        ours, base = self.ours_median, self.baseline_median
        if ours is None or not base:
            return None
        return ours / base

    @property
    def status(self) -> str:
        if self.target is None:
            return "info"
        value = self.ratio if self.target.on_ratio else self.ours_median
        if value is None:
            return "n/a"
        return "pass" if self.target.met(value) else "miss"

    def as_json(self) -> dict[str, Any]:
        return {
            "section": self.section, "name": self.name, "unit": self.unit,
            "ours_median": self.ours_median, "baseline_median": self.baseline_median, "ratio": self.ratio,
            "target": None if self.target is None else {
                "op": self.target.op, "value": self.target.value, "on": "ratio" if self.target.on_ratio else "ours",
                "text": self.target.text(self.unit)},
            "status": self.status, "ours_samples": self.ours, "baseline_samples": self.baseline, "note": self.note,
        }


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


@dataclass(frozen=True)
class LineFit:
    slope: float
    intercept: float
    r2: float


def fit_line(xs: list[float], ys: list[float]) -> LineFit:
    """Least-squares y = slope * x + intercept, and how much of y's variance the line explains."""
    slope, intercept = statistics.linear_regression(xs, ys)
    r2 = statistics.correlation(xs, ys) ** 2 if len(set(ys)) > 1 else 1.0
    return LineFit(slope, intercept, r2)


def number(value: float | None) -> str:
    if value is None:
        return "-"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}" if magnitude < 0.1 else f"{value:.2f}"


def table(figures: list[Figure]) -> str:
    headers = ("figure", "n", "ours", "baseline", "ours/base", "target", "result")
    rows = [(f"{f.section}: {f.name}", str(len(f.ours)),
             f"{number(f.ours_median)} {f.unit}", f"{number(f.baseline_median)} {f.unit}" if f.baseline else "-",
             number(f.ratio), f.target.text(f.unit) if f.target else "-", f.status) for f in figures]
    return format_table(headers, rows, rule=True)


def notes(figures: list[Figure]) -> str:
    return "\n".join(f"- {f.section}: {f.name}: {f.note}" for f in figures if f.note)


def machine() -> dict[str, Any]:
    """What the numbers were measured on; load average because other work shares the CPUs."""
    import psutil

    versions = {}
    for package in ("ray", "torch", "pulumi", "fastapi", "uvicorn"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "logical_cores": os.cpu_count(),
        "physical_cores": psutil.cpu_count(logical=False),
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": versions,
    }
