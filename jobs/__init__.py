"""Ray programs the platform runs on its clusters.

Every job is a module `jobs.<name>` with `main(argv) -> dict`, shipped with the Job
SDK as ``runtime_env={"py_modules": [<abs path of this directory>]}`` and launched as
``python -m jobs.<name> --config-json '<json>'`` (or with the same JSON in the
``RAY_PLATFORM_JOB_CONFIG`` environment variable; the CLI flag wins). Each job's
config is a frozen dataclass; unknown keys are rejected. Each job ends by printing
one line ``ray-platform-result: {json}`` that `jobs.common.parse_result` reads back
(training also prints ``ray-platform-progress: {json}`` lines, one per epoch).
Shared modules: `common` (stdlib only: config, result line, contract), `data`
(digits, fixed held-out split) and `model` (MLP, checkpoints, model pointer).

Jobs:
  core   Ray Core tasks and an aggregating actor over the digits pixels.
  train  Ray Train TorchTrainer, data-parallel MLP on scikit-learn digits; writes
         the best checkpoint and `<storage_path>/<model_name>/latest.json`.
         Held-out accuracy bar: >= 0.90 (`jobs.model.ACCURACY_BAR`).
  infer  Ray Data batch inference with an actor pool; Parquet predictions.
  serve  Ray Serve FastAPI app (`jobs.serve:app` / `jobs.serve:build_app`).
  tune   Ray Tune ASHA sweep over learning rate and hidden size.

These modules run inside the cluster's Ray image, so nothing here imports
`pulumi`, `components` or `tools`, and importing any of them does no work.
"""
