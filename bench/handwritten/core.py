"""jobs.core by hand: the digits into the object store, chunk tasks pushing into the aggregator."""
import json
import sys

import numpy as np
import ray

from jobs.core import StatsAggregator, chunk_stats
from jobs.data import load_all

settings = json.loads(sys.argv[1])
ray.init()
x, y = load_all()
pixels, labels = ray.put(x), ray.put(y)
aggregator = StatsAggregator.remote()
bounds = np.linspace(0, len(x), settings["num_chunks"] + 1, dtype=int)
ray.get([chunk_stats.options(num_cpus=settings["cpus_per_task"]).remote(pixels, labels, int(a), int(b), aggregator)
         for a, b in zip(bounds[:-1], bounds[1:])])
print(ray.get(aggregator.summary.remote())["rows"])
