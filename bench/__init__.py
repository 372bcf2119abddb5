"""Benchmarks: what the platform costs in time and memory, each figure against a plain baseline.

    python -m bench [--quick] [--only SECTION ...] [--repeats N]   # `make bench`

Every figure is measured in the same run as its baseline, on the same machine, as a
median over repeats, so noise from other work on the machine hits both sides alike;
the table shows ours, the baseline, ours/baseline, the target and pass/miss, and
`build/bench/results.json` keeps every sample. Sections (see each module):

  program-eval  bench.program_eval  Pulumi program under the mock engine, and its growth
  hook          bench.hook          post-deploy hook vs raw Job SDK submit + poll
  train         bench.train         Ray Train job vs a plain PyTorch loop
  infer         bench.infer         Ray Data job vs a plain batched torch loop
  serve         bench.serve         Ray Serve app vs the same model on bare FastAPI + uvicorn
  local-mode    bench.local_mode    `make local` wall time and peak PSS of its cluster

This package is also shipped to the local Ray cluster (the tiled inference entrypoint),
so importing it does no work.
"""
