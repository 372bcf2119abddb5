"""Batch inference: rows/s of the infer job (Ray Data) vs a plain batched torch loop over the same rows.

Ours: the demo stack's `infer` job through the hook, over all 1797 digits repeated
`infer_repeat` times (the job's `repeat` setting), rows over the job's own `seconds`
(model load, dataset, actor pool scoring, Parquet output, counts).
Baseline: in this process, the same model and rows scored with `jobs.model.predict_proba`
batch by batch on one torch thread, the same output columns written as one Parquet file.

Two configurations: the stack's settings as they are, and SMALL_BATCH rows per batch
(the job's default before this bench), since every batch costs Ray Data a hand-over.
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

TARGET = Target(">=", 0.8)
SMALL_BATCH = {"batch_size": 128}


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


def job_rate(cluster: BenchCluster, model_name: str, repeat: int, settings: dict[str, Any]) -> float:
    out = Path(cluster.storage_path) / "predictions"
    result = cluster.run(cluster.job_args(
        "infer", {**settings, "storage_path": cluster.storage_path, "model_name": model_name, "split": "all",
                  "repeat": repeat, "output_path": str(out / model_name)}))["result"]
    return float(result["rows"]) / float(result["seconds"])


def run(cfg: BenchConfig, cluster: BenchCluster, model_name: str) -> list[Figure]:
    checkpoint = read_pointer(cluster.storage_path, model_name)["checkpoint"]
    # The job's effective settings: the stack's over InferConfig's defaults.
    stack = dataclasses.asdict(config_from_dict(InferConfig, cluster.demo_jobs["infer"].settings))
    variants = {"stack settings": stack, f"batch {SMALL_BATCH['batch_size']}": {**stack, **SMALL_BATCH}}
    ours: dict[str, list[float]] = {name: [] for name in variants}
    plain: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(cfg.repeats["infer"]):
        for name, settings in variants.items():
            with tempfile.TemporaryDirectory() as out_dir:
                rows, seconds = plain_infer(checkpoint, cfg.infer_repeat, settings["batch_size"], Path(out_dir))
            plain[name].append(rows / seconds)
            ours[name].append(job_rate(cluster, model_name, cfg.infer_repeat, settings))
    rows = cfg.infer_repeat * len(load_all()[0])
    return [
        Figure("infer", f"rows/s ({name})", "rows/s", ours[name], plain[name], TARGET,
               f"{rows:,} rows (digits x {cfg.infer_repeat}), batch {s['batch_size']}, {s['num_blocks']} blocks, "
               f"{s['num_actors']} actors x {s['cpus_per_actor']:g} CPU; baseline: 1 process, 1 thread, same batch")
        for name, s in variants.items()
    ]

