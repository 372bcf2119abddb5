"""Job entrypoint: `jobs.infer` as it is, over its input blocks tiled `--tile` times.

    python -m bench.infer_tiled --tile 200 --config-json '{...InferConfig...}'

The infer job scores at most the 1797 digits, too few rows for a rate: its fixed
start-up would dominate. Only the job's input (`jobs.infer.input_blocks`) is swapped;
the pipeline, actor pool, Parquet output and result line are the job's own. Runs on
the cluster, so it imports nothing but `jobs` and what the job itself needs.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable

import pandas as pd

import jobs.infer
from jobs.common import run_cli


def tiled(blocks: Callable[[str, int], list[pd.DataFrame]], tile: int) -> Callable[[str, int], list[pd.DataFrame]]:
    """Each of the job's blocks repeated `tile` times: same block count, `tile` x the rows."""

    def input_blocks(split: str, num_blocks: int) -> list[pd.DataFrame]:
        return [pd.concat([block] * tile, ignore_index=True) for block in blocks(split, num_blocks)]

    return input_blocks


def main() -> None:
    parser = argparse.ArgumentParser(prog="bench.infer_tiled", add_help=False)
    parser.add_argument("--tile", type=int, required=True)
    args, rest = parser.parse_known_args()
    jobs.infer.input_blocks = tiled(jobs.infer.input_blocks, args.tile)
    # The job parses its own flags from argv.
    sys.argv = [sys.argv[0], *rest]
    run_cli("jobs.infer")


if __name__ == "__main__":
    main()
