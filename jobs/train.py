"""Data-parallel training of the digits MLP with Ray Train's TorchTrainer.

`num_workers` workers (default 2) each train on their shard of the 1437 training
digits with DDP; every epoch each worker reports held-out accuracy and rank 0
reports a checkpoint. Accuracy bar: >= 0.90 held-out (`jobs.model.ACCURACY_BAR`),
reached in a few epochs on CPU.

Fault tolerance: `FailureConfig(max_failures=...)` restarts the worker group when a
worker dies, and the training function resumes from `ray.train.get_checkpoint()`;
the result reports `resumed_from_epoch` and `restarts` (restarts that resumed from
a checkpoint) so a resume is visible. The run name is `<model_name>-<submission
id>-<UTC time>-<random>`: every driver starts a fresh run (Ray resumes the snapshot
of any run whose name is reused, and the post-deploy hook's submission ids are
deterministic), while worker failures, retried inside the driver, resume it.
Progress: the Train controller prints one `ray-platform-progress: {...}` line per
epoch, after Ray has registered that epoch's checkpoint.

After training, the best checkpoint (by held-out accuracy) is published through
`<storage_path>/<model_name>/latest.json` for infer and serve.

Result line: {"accuracy", "accuracy_bar", "best_epoch", "epochs", "checkpoint",
"pointer", "run_name", "resumed_from_epoch", "restarts", "num_workers",
"rows_train", "rows_test", "seconds"}.
"""
from __future__ import annotations

import dataclasses
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray.train
import ray.train.torch
import torch

from jobs.common import (DEFAULT_MODEL_NAME, DEFAULT_STORAGE_PATH, config_from_dict, emit_progress, emit_result,
                         join_uri, load_config, normalize_storage_path, require, run_cli, run_id)
from jobs.data import load_split
from jobs.model import (ACCURACY_BAR, DigitsMLP, evaluate, filesystem_uri, restore_training_state, save_checkpoint,
                        train_epoch, write_pointer)


@dataclass(frozen=True)
class TrainConfig:
    storage_path: str = DEFAULT_STORAGE_PATH
    model_name: str = DEFAULT_MODEL_NAME
    num_workers: int = 2
    # Fractional values let training share a small cluster with Serve replicas.
    cpus_per_worker: float = 1.0
    use_gpu: bool = False
    epochs: int = 5
    # Per worker; with DDP the effective batch is batch_size * num_workers.
    batch_size: int = 32
    lr: float = 0.01
    hidden_size: int = 128
    seed: int = 0
    max_failures: int = 2
    keep_checkpoints: int = 2
    # Set only to resume a specific earlier run on purpose; default is fresh per submission.
    run_name: str | None = None

    def __post_init__(self) -> None:
        require(self.num_workers >= 1, "TrainConfig.num_workers must be >= 1")
        require(self.cpus_per_worker > 0, "TrainConfig.cpus_per_worker must be > 0")
        require(self.epochs >= 1, "TrainConfig.epochs must be >= 1")
        require(self.batch_size >= 1, "TrainConfig.batch_size must be >= 1")
        require(self.lr > 0, "TrainConfig.lr must be > 0")
        require(self.hidden_size >= 1, "TrainConfig.hidden_size must be >= 1")
        require(self.max_failures >= -1, "TrainConfig.max_failures must be >= -1 (-1 retries forever)")
        require(self.keep_checkpoints >= 1, "TrainConfig.keep_checkpoints must be >= 1")
        require(bool(self.model_name) and "/" not in self.model_name,
                "TrainConfig.model_name must be a non-empty name without '/'")


def train_loop(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker; restores from the run's latest checkpoint if any."""
    cfg = config_from_dict(TrainConfig, loop_config)
    # Ray gives each worker a CPU share; more torch threads than that only contend.
    torch.set_num_threads(max(1, int(cfg.cpus_per_worker)))
    torch.manual_seed(cfg.seed)
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()

    split = load_split()
    # Equal shard sizes give every rank the same number of DDP steps; a rank with
    # one batch more would wait forever in all-reduce.
    per_rank = len(split.x_train) // world
    x_shard = split.x_train[rank::world][:per_rank]
    y_shard = split.y_train[rank::world][:per_rank]

    model = DigitsMLP(cfg.hidden_size)
    # prepare_model moves the parameters to the device; the optimizer and its restored
    # state must be created after that so they live on the same device.
    ddp_model = ray.train.torch.prepare_model(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    start_epoch, restarts = 0, 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            meta = restore_training_state(Path(directory), model, optimizer)
        start_epoch, restarts = int(meta["epoch"]), int(meta["restarts"]) + 1
        print(f"rank {rank}: resumed from checkpoint at epoch {start_epoch} (restart {restarts})")

    for epoch in range(start_epoch + 1, cfg.epochs + 1):
        loss = train_epoch(ddp_model, optimizer, x_shard, y_shard, cfg.batch_size, cfg.seed + epoch, device)
        accuracy = evaluate(model, split.x_test, split.y_test, device)
        metrics = {"epoch": epoch, "loss": loss, "accuracy": accuracy,
                   "resumed_from_epoch": start_epoch, "restarts": restarts}
        if rank == 0:
            with tempfile.TemporaryDirectory() as directory:
                save_checkpoint(Path(directory), model, optimizer, metrics)
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            ray.train.report(metrics)


class ProgressLogger(ray.train.UserCallback):
    """One progress line per epoch in the job logs, printed by the Train controller.

    Ray calls this after it has registered the epoch's checkpoint, so a line with a
    checkpoint means a worker failure from then on resumes from at least that epoch.
    """

    def after_report(self, run_context: Any, metrics: list[dict[str, Any]],
                     checkpoint: ray.train.Checkpoint | None) -> None:
        emit_progress({**metrics[0], "checkpoint": checkpoint.path if checkpoint else None})


def run_name_for(cfg: TrainConfig) -> str:
    return cfg.run_name or f"{cfg.model_name}-{run_id()}"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(TrainConfig, argv, prog="jobs.train")
    started = time.monotonic()
    storage_path = normalize_storage_path(cfg.storage_path)
    run_name = run_name_for(cfg)
    resources = {"CPU": cfg.cpus_per_worker, **({"GPU": 1} if cfg.use_gpu else {})}
    trainer = ray.train.torch.TorchTrainer(
        train_loop,
        train_loop_config=dataclasses.asdict(cfg),
        scaling_config=ray.train.ScalingConfig(
            num_workers=cfg.num_workers, use_gpu=cfg.use_gpu, resources_per_worker=resources),
        run_config=ray.train.RunConfig(
            name=run_name,
            storage_path=join_uri(storage_path, cfg.model_name, "runs"),
            failure_config=ray.train.FailureConfig(max_failures=cfg.max_failures),
            callbacks=[ProgressLogger()],
            checkpoint_config=ray.train.CheckpointConfig(
                num_to_keep=cfg.keep_checkpoints,
                checkpoint_score_attribute="accuracy",
                checkpoint_score_order="max"),
        ),
    )
    result = trainer.fit()
    best_checkpoint, best_metrics = max(result.best_checkpoints or [], key=lambda cm: cm[1]["accuracy"])
    checkpoint_uri = filesystem_uri(best_checkpoint.filesystem, best_checkpoint.path)
    pointer = write_pointer(storage_path, cfg.model_name, {
        "checkpoint": checkpoint_uri,
        "metrics": {k: best_metrics[k] for k in ("accuracy", "epoch", "loss")},
        "run_name": run_name,
    })
    split = load_split()
    return emit_result({
        "accuracy": best_metrics["accuracy"],
        "accuracy_bar": ACCURACY_BAR,
        "best_epoch": best_metrics["epoch"],
        "epochs": cfg.epochs,
        "checkpoint": checkpoint_uri,
        "pointer": pointer,
        "run_name": run_name,
        # The final report comes from the last attempt, so it tells whether that
        # attempt resumed from a checkpoint.
        "resumed_from_epoch": result.metrics["resumed_from_epoch"],
        "restarts": result.metrics["restarts"],
        "num_workers": cfg.num_workers,
        "rows_train": len(split.x_train),
        "rows_test": len(split.x_test),
        "seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    run_cli("jobs.train")
