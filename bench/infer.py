"""Batch inference: rows/s of the infer job (Ray Data) vs a plain batched torch loop over the same rows.

Ours: the demo stack's `infer` job through the hook, over all 1797 digits repeated
`infer_repeat` times (the job's `repeat` setting), rows over the job's own `seconds`
(model load, dataset, actor pool scoring, Parquet output, counts).
Baseline: in this process, the same model and rows scored with `jobs.model.predict_proba`
batch by batch on one torch thread, the same output columns written as one Parquet file.

Two configurations: the stack's settings as they are, and SMALL_BATCH rows per batch
(the job's default before this bench), since every batch costs Ray Data a hand-over.
The stack's settings run again on LARGER times the rows: extra rows over extra seconds
is the rate beyond the job's fixed start-up, on both sides.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from bench.cluster import BenchCluster
from bench.config import BenchConfig
from bench.stats import Figure, Target
from jobs.common import config_from_dict
from jobs.data import load_all
from jobs.infer import InferConfig
from jobs.model import load_model, predict_proba, read_pointer

# Against a plain single-process baseline the figure says what Ray itself costs at this size:
# information, not a target. What the package adds is measured against the same work written
# directly with Ray (bench/by_hand.py, target 1.05).
TARGET: Target | None = None
SMALL_BATCH = {"batch_size": 128}
# The second, larger run is this many times the first.
LARGER = 3


def plain_infer(checkpoint: str, repeat: int, batch_size: int, out_dir: Path) -> tuple[int, float]:
    """(rows, seconds): repeat the digits, score them in batches, write the job's columns to Parquet."""
    # One thread, as each of the job's actors has (see bench.train.plain_fit).
    torch.set_num_threads(1)
    started = time.monotonic()
    x, y = load_all()
    x, y = np.tile(x, (repeat, 1)), np.tile(y, repeat)
    model = load_model(checkpoint)
    proba = np.concatenate([predict_proba(model, x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    prediction = proba.argmax(axis=1)
    pd.DataFrame({"id": np.arange(len(x)), "label": y, "prediction": prediction, "confidence": proba.max(axis=1),
                  "correct": (prediction == y).astype(np.int64)}).to_parquet(out_dir / "predictions.parquet")
    return len(x), time.monotonic() - started


def job_run(cluster: BenchCluster, model_name: str, repeat: int, settings: dict[str, Any]) -> tuple[int, float]:
    """(rows, seconds) of one infer job, as its result line reports them."""
    out = Path(cluster.storage_path) / "predictions"
    result = cluster.run(cluster.job_args(
        "infer", {**settings, "storage_path": cluster.storage_path, "model_name": model_name, "split": "all",
                  "repeat": repeat, "output_path": str(out / model_name)}))["result"]
    return int(result["rows"]), float(result["seconds"])


def run(cfg: BenchConfig, cluster: BenchCluster, model_name: str) -> list[Figure]:
    checkpoint = read_pointer(cluster.storage_path, model_name)["checkpoint"]
    # The job's effective settings: the stack's over InferConfig's defaults.
    stack = dataclasses.asdict(config_from_dict(InferConfig, cluster.demo_jobs["infer"].settings))
    big = cfg.infer_repeat * LARGER
    # (settings, repeat) per run; the larger run gives the rate beyond the fixed start-up.
    runs = {"stack settings": (stack, cfg.infer_repeat), f"batch {SMALL_BATCH['batch_size']}":
            ({**stack, **SMALL_BATCH}, cfg.infer_repeat), "larger": (stack, big)}
    ours: dict[str, list[tuple[int, float]]] = {name: [] for name in runs}
    plain: dict[str, list[tuple[int, float]]] = {name: [] for name in runs}
    for _ in range(cfg.repeats["infer"]):
        for name, (settings, repeat) in runs.items():
            with tempfile.TemporaryDirectory() as out_dir:
                plain[name].append(plain_infer(checkpoint, repeat, settings["batch_size"], Path(out_dir)))
            ours[name].append(job_run(cluster, model_name, repeat, settings))

    def rates(samples: list[tuple[int, float]]) -> list[float]:
        return [rows / seconds for rows, seconds in samples]

    def marginal(samples: dict[str, list[tuple[int, float]]]) -> list[float]:
        return [(r2 - r1) / (t2 - t1) for (r1, t1), (r2, t2) in zip(samples["stack settings"], samples["larger"])]

    rows = cfg.infer_repeat * len(load_all()[0])
    return [
        *(Figure("infer", f"rows/s ({name})", "rows/s", rates(ours[name]), rates(plain[name]), TARGET,
                 f"{rows:,} rows (digits x {cfg.infer_repeat}), batch {s['batch_size']}, {s['num_blocks']} blocks, "
                 f"{s['num_actors']} actors x {s['cpus_per_actor']:g} CPU; baseline: 1 process, 1 thread, same batch")
          for name, (s, _) in runs.items() if name != "larger"),
        Figure("infer", f"rows/s beyond start-up (x{cfg.infer_repeat} -> x{big} rows, stack settings)", "rows/s",
               marginal(ours), marginal(plain), TARGET,
               "extra rows over extra seconds: the rate once the fixed start-up (actor processes, model load, "
               "planning) is paid"),
    ]
