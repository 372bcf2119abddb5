"""Batch embeddings of the corpus with Ray Data: `python -m embeddings.batch --output DIR`.

The corpus is split into blocks, an actor pool of encoders embeds each batch, and the rows
(id, text, label, embedding) land as Parquet files in a fresh run directory under DIR (a local
directory or s3://...), so a re-run never mixes its rows with an earlier run's.
"""
from __future__ import annotations

import argparse
import os
import time
import uuid
from typing import Any

import numpy as np
import ray
import ray.data

from embeddings.encoder import encode, load_encoder, read_corpus, report


class Embedder:
    """One encoder per actor, loaded once and reused for every batch it gets."""

    def __init__(self) -> None:
        self.encoder = load_encoder()

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, Any]:
        vectors = encode(self.encoder, [str(t) for t in batch["text"]])
        return {**batch, "embedding": list(vectors.astype(np.float32))}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m embeddings.batch", description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", required=True, help="directory (or s3:// prefix) for the Parquet files")
    parser.add_argument("--actors", type=int, default=1, help="encoder actors")
    parser.add_argument("--cpus-per-actor", type=float, default=0.5)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args(argv)
    started = time.monotonic()
    rows = read_corpus()
    # Pre-split blocks and fractional actors: on a 2-CPU node a repartition beside a full actor
    # pool can starve (the platform's notes on Ray Data).
    ds = ray.data.from_items(rows, override_num_blocks=4).map_batches(
        Embedder, batch_size=args.batch_size, num_cpus=args.cpus_per_actor,
        compute=ray.data.ActorPoolStrategy(size=args.actors))
    base = args.output if "://" in args.output else os.path.abspath(args.output)
    output = f"{base.rstrip('/')}/run-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    ds.write_parquet(output)
    written = ray.data.read_parquet(output)
    dims = {len(r["embedding"]) for r in written.take(5)}
    result = {"rows": written.count(), "dimensions": sorted(dims), "output": output,
              "seconds": round(time.monotonic() - started, 1)}
    report(result)
    return result


if __name__ == "__main__":
    main()
