"""Ray Core in miniature: per-pixel statistics of the digits with tasks and an actor.

The pixel matrix goes into the object store once (`ray.put`); `num_chunks` tasks
each summarise a row range (count, sum, sum of squares, label counts) and push
their partial result into a `StatsAggregator` actor, which plays the parameter
server: it owns the running totals and hands the combined statistics back. It
doubles as a smoke test that the cluster schedules tasks and actors and moves
objects between them.

Result line: {"rows", "chunks", "tasks", "class_counts", "mean_pixel",
"std_pixel", "constant_pixels", "cluster_cpus", "seconds"}.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import ray

from jobs.common import emit_result, load_config, require, run_cli
from jobs.data import NUM_CLASSES, NUM_FEATURES, load_all


@dataclass(frozen=True)
class CoreConfig:
    num_chunks: int = 8
    # Below 1 so several tasks share a CPU on a small cluster.
    cpus_per_task: float = 0.5

    def __post_init__(self) -> None:
        require(self.num_chunks >= 1, "CoreConfig.num_chunks must be >= 1")
        require(self.cpus_per_task > 0, "CoreConfig.cpus_per_task must be > 0")


@dataclass(frozen=True)
class PartialStats:
    count: int
    total: np.ndarray
    total_sq: np.ndarray
    class_counts: np.ndarray


# num_cpus=0: an actor otherwise needs a free CPU to be placed, which a busy small
# cluster (Serve replicas, a training run) may not have.
@ray.remote(num_cpus=0)
class StatsAggregator:
    """Owns the running totals; tasks add to it concurrently through its handle."""

    def __init__(self) -> None:
        self.count = 0
        self.total = np.zeros(NUM_FEATURES)
        self.total_sq = np.zeros(NUM_FEATURES)
        self.class_counts = np.zeros(NUM_CLASSES, dtype=np.int64)
        self.updates = 0

    def add(self, part: PartialStats) -> int:
        self.count += part.count
        self.total += part.total
        self.total_sq += part.total_sq
        self.class_counts += part.class_counts
        self.updates += 1
        return self.updates

    def summary(self) -> dict[str, Any]:
        mean = self.total / self.count
        std = np.sqrt(np.maximum(self.total_sq / self.count - mean**2, 0.0))
        return {"rows": self.count, "updates": self.updates, "mean": mean, "std": std,
                "class_counts": self.class_counts}


@ray.remote
def chunk_stats(pixels: np.ndarray, labels: np.ndarray, start: int, stop: int,
                aggregator: ray.actor.ActorHandle) -> int:
    """Summarise rows [start, stop) and push the result to the aggregator."""
    x = pixels[start:stop].astype(np.float64)
    part = PartialStats(count=len(x), total=x.sum(axis=0), total_sq=(x**2).sum(axis=0),
                        class_counts=np.bincount(labels[start:stop], minlength=NUM_CLASSES))
    return ray.get(aggregator.add.remote(part))


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(CoreConfig, argv, prog="jobs.core")
    started = time.monotonic()
    ray.init(ignore_reinit_error=True)
    x, y = load_all()
    pixels_ref, labels_ref = ray.put(x), ray.put(y)
    aggregator = StatsAggregator.remote()
    bounds = np.linspace(0, len(x), cfg.num_chunks + 1, dtype=int)
    tasks = [chunk_stats.options(num_cpus=cfg.cpus_per_task).remote(pixels_ref, labels_ref, int(a), int(b), aggregator)
             for a, b in zip(bounds[:-1], bounds[1:])]
    ray.get(tasks)
    summary = ray.get(aggregator.summary.remote())
    return emit_result({
        "rows": int(summary["rows"]),
        "chunks": cfg.num_chunks,
        "tasks": int(summary["updates"]),
        "class_counts": {str(c): int(n) for c, n in enumerate(summary["class_counts"])},
        "mean_pixel": round(float(summary["mean"].mean()), 4),
        "std_pixel": round(float(summary["std"].mean()), 4),
        # Border pixels that are blank in every image: a quick sanity check on the data.
        "constant_pixels": int((summary["std"] == 0).sum()),
        "cluster_cpus": ray.cluster_resources().get("CPU", 0.0),
        "seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    run_cli("jobs.core")
