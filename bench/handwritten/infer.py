"""jobs.infer by hand: Ray Data over the same blocks, an actor pool of the jobs' predictor, Parquet out."""
import json
import sys

import ray
import ray.data

from jobs.infer import DigitsPredictor, input_blocks
from jobs.model import read_pointer

settings = json.loads(sys.argv[1])
checkpoint = read_pointer(settings["storage_path"], settings["model_name"])["checkpoint"]
predictions = ray.data.from_arrow(input_blocks(settings.get("split", "test"), settings.get("num_blocks", 4),
                                               settings.get("repeat", 1))).map_batches(
    DigitsPredictor, fn_constructor_kwargs={"checkpoint_uri": checkpoint, "use_gpu": False},
    batch_size=settings.get("batch_size", 4096), batch_format="numpy",
    compute=ray.data.ActorPoolStrategy(size=settings["num_actors"]), num_cpus=settings["cpus_per_actor"],
).materialize()
predictions.write_parquet(f"{settings['output_path']}-handwritten", mode="overwrite")
print(predictions.count())
