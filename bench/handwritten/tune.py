"""jobs.tune by hand: a Tuner over the jobs' own trial function, ASHA, the same seeded search space."""
import json
import sys

from ray import tune
from ray.tune.schedulers import ASHAScheduler
from ray.tune.search import BasicVariantGenerator

from jobs.tune import TuneJobConfig, trial

cfg = TuneJobConfig(**json.loads(sys.argv[1]))
tuner = tune.Tuner(
    tune.with_resources(trial, {"cpu": cfg.cpus_per_trial}),
    param_space={"lr": tune.loguniform(cfg.lr_min, cfg.lr_max), "hidden_size": tune.choice(list(cfg.hidden_sizes)),
                 "epochs": cfg.epochs, "batch_size": cfg.batch_size, "seed": cfg.seed, "use_gpu": False},
    tune_config=tune.TuneConfig(metric="accuracy", mode="max", num_samples=cfg.num_samples,
                                scheduler=ASHAScheduler(max_t=cfg.epochs, grace_period=1, reduction_factor=2),
                                search_alg=BasicVariantGenerator(random_state=cfg.seed)),
    run_config=tune.RunConfig(storage_path=f"{cfg.storage_path}/handwritten-tune"))
print(tuner.fit().get_best_result().metrics["accuracy"])
