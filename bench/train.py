"""Training: samples/s of the train job (Ray Train, 2 workers, CPU) vs a plain single-process PyTorch loop.

Ours: the demo stack's `train` job through the hook, with its own settings (2 workers),
`epochs` from the bench, and every checkpoint kept. End to end is rows x epochs over
the job's own `seconds` (trainer start, every epoch, the model pointer); per epoch is
the steady-state rate between the second and the last checkpoint, whose directory
names Ray stamps with the time of each report.

Baseline: the same `jobs.model` functions, hyperparameters and data in this process,
one optimizer step per global batch (batch_size x num_workers, so both sides take the
same number of steps), held-out evaluation and a checkpoint every epoch, as the job does,
on one torch thread as each worker has.

Both run twice: with the stack's settings as they are (its runtimeEnv sets the Train
controller's poll interval, RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, to 0.1 s) and with Ray's
default poll of 2 s: a worker's second report waits for the controller to collect the
first, so with epochs this short the interval, not the training, sets the pace.
"""
from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import torch

from bench.cluster import BenchCluster
from bench.config import BenchConfig
from bench.stats import Figure, Target
from jobs.common import config_from_dict
from jobs.data import load_split
from jobs.model import DigitsMLP, evaluate, save_checkpoint, train_epoch, write_pointer
from jobs.train import TrainConfig

# Against a plain single-process baseline the figure says what Ray itself costs at this size:
# information, not a target. What the package adds is measured against the same work written
# directly with Ray (bench/by_hand.py, target 1.05).
TARGET: Target | None = None
TRAIN_MODEL = "bench-train"
DEFAULT_POLL_ENV = {"env_vars": {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "2"}}
CHECKPOINT_RE = re.compile(r"^checkpoint_(\d{4}-\d\d-\d\d_\d\d-\d\d-\d\d\.\d+)$")


@dataclass(frozen=True)
class PlainRun:
    seconds: float
    epoch_seconds: list[float]
    model: DigitsMLP


def plain_fit(cfg: TrainConfig, epochs: int) -> PlainRun:
    """The job's training loop without Ray: same data, model, optimizer and per-epoch work."""
    # One thread, as each train worker has: torch's default (one per core) spins against
    # everything else on a shared machine and makes the baseline erratic.
    torch.set_num_threads(1)
    started = time.monotonic()
    torch.manual_seed(cfg.seed)
    split = load_split()
    model = DigitsMLP(cfg.hidden_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    device = torch.device("cpu")
    epoch_seconds = []
    with tempfile.TemporaryDirectory() as directory:
        for epoch in range(1, epochs + 1):
            epoch_started = time.monotonic()
            train_epoch(model, optimizer, split.x_train, split.y_train, cfg.batch_size * cfg.num_workers,
                        cfg.seed + epoch, device)
            accuracy = evaluate(model, split.x_test, split.y_test, device)
            save_checkpoint(Path(directory), model, optimizer, {"epoch": epoch, "accuracy": accuracy})
            epoch_seconds.append(time.monotonic() - epoch_started)
    return PlainRun(time.monotonic() - started, epoch_seconds, model)


def publish_model(storage_path: str, model_name: str) -> str:
    """A model for infer and serve, trained by the plain loop and published as `jobs.train` would."""
    trained = plain_fit(TrainConfig(), TrainConfig().epochs)
    checkpoint = Path(storage_path) / model_name / "plain"
    checkpoint.mkdir(parents=True, exist_ok=True)
    save_checkpoint(checkpoint, trained.model, None, {"epoch": TrainConfig().epochs})
    return write_pointer(storage_path, model_name, {"checkpoint": str(checkpoint), "metrics": {}, "run_name": "plain"})


def report_times(checkpoint: str) -> list[float]:
    """Epoch report times (s since epoch) from the checkpoint directory names of one run."""
    stamps = [CHECKPOINT_RE.match(p.name) for p in Path(checkpoint).parent.iterdir()]
    return sorted(datetime.strptime(m.group(1), "%Y-%m-%d_%H-%M-%S.%f").timestamp() for m in stamps if m)


def job_rates(result: dict[str, Any]) -> tuple[float, float]:
    """(end-to-end samples/s, steady-state samples/s) of one train job from its result line.

    Steady state starts at the second report: the first never waits, as the controller
    has nothing to collect yet; each later one waits until it has taken the one before.
    """
    rows, epochs = int(result["rows_train"]), int(result["epochs"])
    times = report_times(result["checkpoint"])[1:]
    if len(times) < 2:
        raise RuntimeError(f"train job kept {len(times) + 1} checkpoint(s); the steady-state rate needs three")
    return rows * epochs / float(result["seconds"]), rows * (len(times) - 1) / (times[-1] - times[0])


def run(cfg: BenchConfig, cluster: BenchCluster) -> list[Figure]:
    settings = {"storage_path": cluster.storage_path, "model_name": TRAIN_MODEL, "epochs": cfg.train_epochs,
                "keep_checkpoints": cfg.train_epochs}
    train_cfg = config_from_dict(TrainConfig, {**cluster.demo_jobs["train"].settings, **settings})
    rows = len(load_split().x_train)
    ours: dict[str, tuple[list[float], list[float]]] = {"stack": ([], []), "poll": ([], [])}
    plain_total: list[float] = []
    plain_epoch: list[float] = []
    for _ in range(cfg.repeats["train"]):
        plain = plain_fit(train_cfg, cfg.train_epochs)
        plain_total.append(rows * cfg.train_epochs / plain.seconds)
        plain_epoch.extend(rows / s for s in plain.epoch_seconds)
        for variant, runtime_env in (("stack", None), ("poll", DEFAULT_POLL_ENV)):
            outs = cluster.run(cluster.job_args("train", settings, runtime_env))
            end_to_end, steady = job_rates(outs["result"])
            ours[variant][0].append(end_to_end)
            ours[variant][1].append(steady)
    shape = (f"{train_cfg.num_workers} workers x {train_cfg.cpus_per_worker:g} CPU, {cfg.train_epochs} epochs of "
             f"{rows} rows, batch {train_cfg.batch_size}/worker; baseline: 1 process, batch "
             f"{train_cfg.batch_size * train_cfg.num_workers}, 1 torch thread")
    return [
        Figure("train", "samples/s end to end (stack settings)", "samples/s", ours["stack"][0], plain_total, TARGET,
               shape),
        Figure("train", "samples/s per epoch (stack settings)", "samples/s", ours["stack"][1], plain_epoch, TARGET),
        Figure("train", "samples/s end to end (Ray's default controller poll, 2 s)", "samples/s", ours["poll"][0],
               plain_total, TARGET, "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S=2 in the job's runtimeEnv.env_vars"),
        Figure("train", "samples/s per epoch (Ray's default controller poll, 2 s)", "samples/s", ours["poll"][1],
               plain_epoch, TARGET),
    ]
