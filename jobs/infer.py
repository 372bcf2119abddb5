"""Batch inference over the digits with Ray Data and the trained model.

The model comes from `<storage_path>/<model_name>/latest.json` (written by
`jobs.train`). Rows are built as `num_blocks` pre-split Arrow blocks (pixels as one
(n, 64) tensor column, handed to the model as a NumPy array without a copy) and scored
by `map_batches` on an actor pool of `num_actors` actors at `cpus_per_actor` CPUs
each: with fractional CPUs and no repartition ahead of the pool, a 2-CPU cluster
cannot end up with every CPU held by pool actors waiting for upstream work that
never runs.

Output: Parquet files under `output_path` (default
`<storage_path>/<model_name>/predictions/<submission id>`), columns `id`, `label`,
`prediction`, `confidence`, `correct`.

Result line: {"rows", "accuracy", "output_path", "checkpoint", "split", "seconds"}.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray
import ray.data
import torch
from ray.data import SaveMode
from ray.data.extensions import ArrowTensorArray

from jobs.common import (DEFAULT_MODEL_NAME, DEFAULT_STORAGE_PATH, emit_result, join_uri, load_config,
                         normalize_storage_path, require, run_cli, run_id)
from jobs.data import load_all, load_split
from jobs.model import load_model, predict_proba, read_pointer

SPLITS = ("test", "all")


@dataclass(frozen=True)
class InferConfig:
    storage_path: str = DEFAULT_STORAGE_PATH
    model_name: str = DEFAULT_MODEL_NAME
    output_path: str | None = None
    # "test": the 360 held-out digits; "all": all 1797.
    split: str = "test"
    # Every input row scored `repeat` times (ids stay unique): a load test of the
    # pipeline and the pool at sizes the 1797 digits cannot reach.
    repeat: int = 1
    num_blocks: int = 4
    num_actors: int = 2
    cpus_per_actor: float = 0.5
    # A row is 64 floats, so 4096 rows are 1 MiB: every batch costs Ray Data a fixed
    # hand-over to the actor, which small batches pay over and over.
    batch_size: int = 4096
    use_gpu: bool = False

    def __post_init__(self) -> None:
        require(self.split in SPLITS, f"InferConfig.split must be one of {list(SPLITS)}, got {self.split!r}")
        require(self.repeat >= 1, "InferConfig.repeat must be >= 1")
        require(self.num_blocks >= 1, "InferConfig.num_blocks must be >= 1")
        require(self.num_actors >= 1, "InferConfig.num_actors must be >= 1")
        require(self.cpus_per_actor > 0, "InferConfig.cpus_per_actor must be > 0")
        require(self.batch_size >= 1, "InferConfig.batch_size must be >= 1")


class DigitsPredictor:
    """One per pool actor: loads the model once, then scores batches."""

    def __init__(self, checkpoint_uri: str, use_gpu: bool) -> None:
        torch.set_num_threads(1)
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = load_model(checkpoint_uri, self.device)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        proba = predict_proba(self.model, batch["pixels"], self.device)
        prediction = proba.argmax(axis=1)
        return {
            "id": batch["id"],
            "label": batch["label"],
            "prediction": prediction,
            "confidence": proba.max(axis=1),
            "correct": (prediction == batch["label"]).astype(np.int64),
        }


def input_blocks(split: str, num_blocks: int, repeat: int = 1) -> list[pa.Table]:
    if split == "test":
        held_out = load_split()
        x, y = held_out.x_test, held_out.y_test
    else:
        x, y = load_all()
    x, y = np.tile(x, (repeat, 1)), np.tile(y, repeat)
    return [pa.table({"id": pa.array(rows), "pixels": ArrowTensorArray.from_numpy(x[rows]), "label": pa.array(y[rows])})
            for rows in np.array_split(np.arange(len(x)), num_blocks)]


@ray.remote(num_cpus=0)
def _count_correct(block: pa.Table) -> int:
    return int(pc.sum(block["correct"]).as_py() or 0)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(InferConfig, argv, prog="jobs.infer")
    started = time.monotonic()
    storage_path = normalize_storage_path(cfg.storage_path)
    checkpoint_uri = read_pointer(storage_path, cfg.model_name)["checkpoint"]
    output_path = normalize_storage_path(
        cfg.output_path or join_uri(storage_path, cfg.model_name, "predictions", run_id()))

    # Blocks are already split, so the actor pool is the only operator that needs CPUs.
    dataset = ray.data.from_arrow(input_blocks(cfg.split, cfg.num_blocks, cfg.repeat))
    predictions = dataset.map_batches(
        DigitsPredictor,
        fn_constructor_kwargs={"checkpoint_uri": checkpoint_uri, "use_gpu": cfg.use_gpu},
        batch_size=cfg.batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=cfg.num_actors),
        num_cpus=cfg.cpus_per_actor,
        num_gpus=1 if cfg.use_gpu else 0,
    ).materialize()  # scored once, then both written and aggregated
    # One run's predictions per output path: a re-run replaces, never appends.
    predictions.write_parquet(output_path, mode=SaveMode.OVERWRITE)
    rows = predictions.count()
    # Summed where the blocks are: `Dataset.sum` would be a second Ray Data execution,
    # seconds of planning and scheduling for one integer.
    correct = sum(ray.get([_count_correct.remote(block) for block in predictions.to_arrow_refs()]))
    return emit_result({
        "rows": rows,
        "accuracy": correct / rows,
        "output_path": output_path,
        "checkpoint": checkpoint_uri,
        "split": cfg.split,
        "seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    run_cli("jobs.infer")
