"""Hyperparameter sweep for the digits MLP with Ray Tune and ASHA.

Each trial is a small single-process train loop (the same `jobs.model` epoch and
evaluation functions that `jobs.train` uses) reporting held-out accuracy every
epoch; ASHA stops weak trials early. Trials ask for `cpus_per_trial` (default
0.5), so 4 trials run at once on 2 CPUs. The search is seeded, so a sweep is
repeatable.

Search space: lr log-uniform in [lr_min, lr_max], hidden_size from hidden_sizes.
Trial results go to `<storage_path>/tune/<experiment_name>`; the experiment name is
fresh per driver unless given, since Tune too resumes a reused experiment.

Result line: {"best_config": {"lr", "hidden_size"}, "accuracy", "trials",
"completed_trials", "errored_trials", "early_stopped", "experiment", "seconds"}.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator

from jobs.common import (DEFAULT_STORAGE_PATH, emit_result, join_uri, load_config, normalize_storage_path, require,
                         run_cli, run_id)
from jobs.data import load_split
from jobs.model import DigitsMLP, evaluate, train_epoch


@dataclass(frozen=True)
class TuneJobConfig:
    storage_path: str = DEFAULT_STORAGE_PATH
    # Default: "digits-tune-<submission id>", fresh per submission.
    experiment_name: str | None = None
    num_samples: int = 4
    epochs: int = 4
    batch_size: int = 64
    lr_min: float = 1e-3
    lr_max: float = 3e-2
    hidden_sizes: tuple[int, ...] = (16, 32, 64, 128)
    cpus_per_trial: float = 0.5
    use_gpu: bool = False
    seed: int = 0

    def __post_init__(self) -> None:
        require(self.num_samples >= 1, "TuneJobConfig.num_samples must be >= 1")
        require(self.epochs >= 1, "TuneJobConfig.epochs must be >= 1")
        require(self.batch_size >= 1, "TuneJobConfig.batch_size must be >= 1")
        require(0 < self.lr_min <= self.lr_max, "TuneJobConfig needs 0 < lr_min <= lr_max")
        require(len(self.hidden_sizes) >= 1 and all(h >= 1 for h in self.hidden_sizes),
                "TuneJobConfig.hidden_sizes must be a non-empty list of positive integers")
        require(self.cpus_per_trial > 0, "TuneJobConfig.cpus_per_trial must be > 0")


def trial(params: dict[str, Any]) -> None:
    """One Tune trial: trains for params["epochs"], reporting held-out accuracy each epoch."""
    torch.set_num_threads(1)
    torch.manual_seed(params["seed"])
    device = torch.device("cuda" if params["use_gpu"] else "cpu")
    split = load_split()
    model = DigitsMLP(params["hidden_size"]).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=params["lr"])
    for epoch in range(1, params["epochs"] + 1):
        loss = train_epoch(model, optimizer, split.x_train, split.y_train, params["batch_size"],
                           params["seed"] + epoch, device)
        tune.report({"epoch": epoch, "loss": loss, "accuracy": evaluate(model, split.x_test, split.y_test, device)})


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(TuneJobConfig, argv, prog="jobs.tune")
    started = time.monotonic()
    experiment = cfg.experiment_name or f"digits-tune-{run_id()}"
    resources = {"cpu": cfg.cpus_per_trial, "gpu": 1 if cfg.use_gpu else 0}
    tuner = tune.Tuner(
        tune.with_resources(trial, resources),
        param_space={
            "lr": tune.loguniform(cfg.lr_min, cfg.lr_max),
            "hidden_size": tune.choice(list(cfg.hidden_sizes)),
            "epochs": cfg.epochs,
            "batch_size": cfg.batch_size,
            "seed": cfg.seed,
            "use_gpu": cfg.use_gpu,
        },
        tune_config=tune.TuneConfig(
            metric="accuracy",
            mode="max",
            num_samples=cfg.num_samples,
            scheduler=ASHAScheduler(max_t=cfg.epochs, grace_period=1, reduction_factor=2),
            search_alg=BasicVariantGenerator(random_state=cfg.seed),
        ),
        run_config=tune.RunConfig(
            name=experiment, storage_path=join_uri(normalize_storage_path(cfg.storage_path), "tune"), verbose=1),
    )
    results = tuner.fit()
    best = results.get_best_result()
    epochs_run = [r.metrics.get("epoch", 0) for r in results if r.error is None]
    return emit_result({
        "best_config": {"lr": best.config["lr"], "hidden_size": best.config["hidden_size"]},
        "accuracy": best.metrics["accuracy"],
        "trials": len(results),
        "completed_trials": len(epochs_run),
        "errored_trials": results.num_errors,
        "early_stopped": sum(1 for e in epochs_run if e < cfg.epochs),
        "experiment": experiment,
        "seconds": round(time.monotonic() - started, 1),
    })


if __name__ == "__main__":
    run_cli("jobs.tune")
