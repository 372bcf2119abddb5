"""Train a topic classifier on the encoder's embeddings with Ray Train, checkpointing every epoch:
`python -m embeddings.train --storage-path DIR [--epochs N] [--workers N]`.

The driver embeds the labelled corpus once (the encoder stays frozen); Ray Train's TorchTrainer
then fits a linear head on the embeddings, data-parallel over `--workers`, and rank 0 reports a
checkpoint (the head's weights and the label names) with every epoch's held-out accuracy. The
run keeps the best two checkpoints under DIR; a worker failure resumes from the latest.
"""
from __future__ import annotations

import argparse
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import ray.train
import ray.train.torch
import torch

from embeddings.encoder import encode, load_encoder, read_corpus, report

HELD_OUT_EVERY = 5  # every 5th row is held out


def _unwrapped(model: torch.nn.Module) -> torch.nn.Module:
    """The head itself, whether or not Ray Train wrapped it in DistributedDataParallel (2+ workers)."""
    return model.module if isinstance(model, torch.nn.parallel.DistributedDataParallel) else model


def train_loop(config: dict[str, Any]) -> None:
    torch.manual_seed(0)
    x_train, y_train = torch.tensor(config["x_train"]), torch.tensor(config["y_train"])
    x_test, y_test = torch.tensor(config["x_test"]), torch.tensor(config["y_test"])
    head = ray.train.torch.prepare_model(torch.nn.Linear(x_train.shape[1], len(config["labels"])))
    optimizer = torch.optim.Adam(head.parameters(), lr=config["lr"])
    start = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as directory:
            state = torch.load(Path(directory) / "head.pt")
            _unwrapped(head).load_state_dict(state["head"])
            start = state["epoch"] + 1
    context = ray.train.get_context()
    shard = slice(context.get_world_rank(), None, context.get_world_size())
    for epoch in range(start, config["epochs"]):
        head.train()
        for _ in range(20):
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(head(x_train[shard]), y_train[shard])
            loss.backward()
            optimizer.step()
        head.eval()
        with torch.no_grad():
            accuracy = float((head(x_test).argmax(dim=1) == y_test).float().mean())
        metrics = {"epoch": epoch, "loss": loss.item(), "accuracy": accuracy}
        if context.get_world_rank() == 0:
            with tempfile.TemporaryDirectory() as directory:
                torch.save({"head": _unwrapped(head).state_dict(), "epoch": epoch, "labels": config["labels"]}, Path(directory) / "head.pt")
                ray.train.report(metrics, checkpoint=ray.train.Checkpoint.from_directory(directory))
        else:
            ray.train.report(metrics)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m embeddings.train", description=__doc__.split("\n\n")[0])
    parser.add_argument("--storage-path", required=True, help="where runs and checkpoints are kept (dir or s3://)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--cpus-per-worker", type=float, default=0.5)
    parser.add_argument("--lr", type=float, default=0.05)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = read_corpus()
    labels = sorted({r["label"] for r in rows})
    vectors = encode(load_encoder(), [r["text"] for r in rows]).astype(np.float32)
    targets = np.array([labels.index(r["label"]) for r in rows])
    test = np.arange(len(rows)) % HELD_OUT_EVERY == 0
    storage = args.storage_path if "://" in args.storage_path else str(Path(args.storage_path).resolve())
    trainer = ray.train.torch.TorchTrainer(
        train_loop,
        train_loop_config={"x_train": vectors[~test].tolist(), "y_train": targets[~test].tolist(),
                           "x_test": vectors[test].tolist(), "y_test": targets[test].tolist(),
                           "labels": labels, "epochs": args.epochs, "lr": args.lr},
        scaling_config=ray.train.ScalingConfig(num_workers=args.workers,
                                               resources_per_worker={"CPU": args.cpus_per_worker}),
        run_config=ray.train.RunConfig(
            # A fresh name per run: Ray resumes the snapshot of a run whose name is reused.
            name=f"topics-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}",
            storage_path=storage,
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2, checkpoint_score_attribute="accuracy"),
            failure_config=ray.train.FailureConfig(max_failures=2)),
    )
    result = trainer.fit()
    best = result.get_best_checkpoint(metric="accuracy", mode="max")
    out = {"accuracy": result.metrics["accuracy"], "epochs": args.epochs, "labels": labels,
           "rows_train": int((~test).sum()), "rows_test": int(test.sum()),
           "checkpoint": best.path if best is not None else None, "seconds": round(time.monotonic() - started, 1)}
    report(out)
    return out


if __name__ == "__main__":
    main()
