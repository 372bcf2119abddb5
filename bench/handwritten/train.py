"""jobs.train by hand: a TorchTrainer over the jobs' own training loop, keeping the best checkpoints."""
import dataclasses
import json
import sys

import ray.train
import ray.train.torch

from jobs.train import TrainConfig, train_loop

settings = json.loads(sys.argv[1])
loop_config = dataclasses.asdict(TrainConfig(**settings))
trainer = ray.train.torch.TorchTrainer(
    train_loop, train_loop_config=loop_config,
    scaling_config=ray.train.ScalingConfig(num_workers=loop_config["num_workers"],
                                           resources_per_worker={"CPU": loop_config["cpus_per_worker"]}),
    run_config=ray.train.RunConfig(
        storage_path=f"{settings['storage_path']}/handwritten-runs",
        checkpoint_config=ray.train.CheckpointConfig(num_to_keep=loop_config["keep_checkpoints"],
                                                     checkpoint_score_attribute="accuracy",
                                                     checkpoint_score_order="max")))
print(trainer.fit().metrics["accuracy"])
