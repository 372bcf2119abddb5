"""Online digit classification with Ray Serve behind a FastAPI ingress.

HTTP API (under the app's route prefix, default `/digits`):
  POST /predict  {"instances": [[64 numbers], ...]} -> {"predictions": [class, ...]}
                 Pixels are raw scikit-learn digits values (0..16). Malformed input
                 gets 422 (bad JSON, wrong shape, non-numbers, empty list) or 413
                 (more than `max_rows` instances), never 500.
  GET  /healthz  {"status": "ok", "checkpoint": ...}

Replicas load the model named by `<storage_path>/<model_name>/latest.json` when
they start, so a new replica always serves the latest trained model.

Two ways in:
  * Serve config / RayService: `import_path: jobs.serve:app` (config from
    $RAY_PLATFORM_JOB_CONFIG, else defaults) or `jobs.serve:build_app` with `args`.
  * As a job: `python -m jobs.serve --config-json ...` starts Serve with the
    configured HTTP host/port, deploys the app, waits until it is RUNNING (at most
    `ready_timeout_s`), prints the result line and exits 0 leaving the app up.

Result line: {"app_name", "status", "endpoint", "replicas", "checkpoint", "seconds"}.
"""
# No `from __future__ import annotations` here: FastAPI must see real annotation
# objects on the Serve-wrapped methods; as strings, the request body turns into a
# required query parameter and every request fails with 422.

import os
import threading
import time
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
import torch
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from ray import serve
from ray.serve.deployment import Application

from jobs.common import (CONFIG_ENV_VAR, DEFAULT_MODEL_NAME, DEFAULT_STORAGE_PATH, config_from_dict,
                         config_from_json, emit_result, load_config, normalize_storage_path, require, run_cli)
from jobs.data import NUM_FEATURES
from jobs.model import load_model, predict_proba, read_pointer


@dataclass(frozen=True)
class ServeConfig:
    storage_path: str = DEFAULT_STORAGE_PATH
    model_name: str = DEFAULT_MODEL_NAME
    app_name: str = "digits"
    route_prefix: str = "/digits"
    # Used only when this job is the one that starts Serve on the cluster.
    http_host: str = "0.0.0.0"
    http_port: int = 8000
    # Fixed replica count (1 when unset); mutually exclusive with autoscaling.
    num_replicas: int | None = None
    # Setting max_replicas turns on autoscaling between min_replicas (default 1) and it.
    min_replicas: int | None = None
    max_replicas: int | None = None
    # Requests one replica takes at once (Serve's default, 5, written out). The proxy's
    # router holds the rest and retries them with a backoff growing to 0.5 s, so a light
    # model under more concurrent clients than replicas x 5 answers faster with more.
    max_ongoing_requests: int = 5
    # Autoscaling only: ongoing requests per replica that Serve scales to keep (its default: 2).
    target_ongoing_requests: float | None = None
    # Fractional, because replicas hold their CPU for as long as the app is up.
    num_cpus: float = 0.25
    use_gpu: bool = False
    max_rows: int = 256
    ready_timeout_s: float = 120.0

    def __post_init__(self) -> None:
        require(bool(self.app_name), "ServeConfig.app_name must not be empty")
        require(self.route_prefix.startswith("/"), "ServeConfig.route_prefix must start with '/'")
        require(1 <= self.http_port <= 65535, "ServeConfig.http_port must be a TCP port")
        require(self.num_replicas is None or self.num_replicas >= 1, "ServeConfig.num_replicas must be >= 1")
        require(self.num_replicas is None or self.max_replicas is None,
                "ServeConfig: set either num_replicas (fixed) or min/max_replicas (autoscaling), not both")
        require(self.min_replicas is None or self.max_replicas is not None,
                "ServeConfig.min_replicas needs max_replicas (autoscaling)")
        require(self.max_replicas is None or self.max_replicas >= max(1, self.min_replicas or 0),
                "ServeConfig.max_replicas must be >= 1 and >= min_replicas")
        require(self.min_replicas is None or self.min_replicas >= 0, "ServeConfig.min_replicas must be >= 0")
        require(self.max_ongoing_requests >= 1, "ServeConfig.max_ongoing_requests must be >= 1")
        require(self.target_ongoing_requests is None or self.max_replicas is not None,
                "ServeConfig.target_ongoing_requests needs max_replicas (autoscaling)")
        require(self.target_ongoing_requests is None
                or 0 < self.target_ongoing_requests <= self.max_ongoing_requests,
                "ServeConfig.target_ongoing_requests must be > 0 and <= max_ongoing_requests")
        require(self.num_cpus > 0, "ServeConfig.num_cpus must be > 0")
        require(self.max_rows >= 1, "ServeConfig.max_rows must be >= 1")
        require(self.ready_timeout_s > 0, "ServeConfig.ready_timeout_s must be > 0")


# strict: "1" and true are not pixels; finite: NaN/Infinity (which Python's JSON
# parser accepts) would give garbage predictions.
Pixel = Annotated[float, Field(strict=True, allow_inf_nan=False)]
Row = Annotated[list[Pixel], Field(min_length=NUM_FEATURES, max_length=NUM_FEATURES)]


class PredictRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    instances: Annotated[list[Row], Field(min_length=1)]


class PredictResponse(BaseModel):
    predictions: list[int]


api = FastAPI(title="ray-platform digits classifier")
MAX_REPORTED_ERRORS = 10


@api.exception_handler(RequestValidationError)
async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
    """422 without echoing the input back: FastAPI's default handler echoes it, which
    fails with a 500 for NaN/Infinity (not valid JSON) and mirrors huge payloads."""
    errors = exc.errors()
    return JSONResponse(status_code=422, content={
        "detail": [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors[:MAX_REPORTED_ERRORS]],
        "error_count": len(errors),
    })


@serve.deployment
@serve.ingress(api)
class DigitsClassifier:
    def __init__(self, storage_path: str, model_name: str, max_rows: int, use_gpu: bool) -> None:
        # A replica owns a fraction of a CPU; torch's default thread pool would oversubscribe it.
        torch.set_num_threads(1)
        self.checkpoint = read_pointer(storage_path, model_name)["checkpoint"]
        self.device = torch.device("cuda" if use_gpu else "cpu")
        self.model = load_model(self.checkpoint, self.device)
        self.max_rows = max_rows

    @api.get("/healthz")
    def healthz(self) -> dict[str, str]:
        return {"status": "ok", "checkpoint": self.checkpoint}

    @api.post("/predict")
    def predict(self, request: PredictRequest) -> PredictResponse:
        rows = len(request.instances)
        if rows > self.max_rows:
            raise HTTPException(status_code=413, detail=f"too many instances: {rows} > max_rows {self.max_rows}")
        proba = predict_proba(self.model, np.asarray(request.instances, dtype=np.float32), self.device)
        return PredictResponse(predictions=proba.argmax(axis=1).tolist())


def build_app(config: ServeConfig | dict[str, Any] | None = None) -> Application:
    """The bound application; also a Serve app builder (`args` arrive as a dict)."""
    cfg = config if isinstance(config, ServeConfig) else config_from_dict(ServeConfig, config or {})
    options: dict[str, Any] = {
        "ray_actor_options": {"num_cpus": cfg.num_cpus, "num_gpus": 1 if cfg.use_gpu else 0},
        "max_ongoing_requests": cfg.max_ongoing_requests,
    }
    if cfg.max_replicas is not None:
        options["autoscaling_config"] = {"min_replicas": 1 if cfg.min_replicas is None else cfg.min_replicas,
                                         "max_replicas": cfg.max_replicas}
        if cfg.target_ongoing_requests is not None:
            options["autoscaling_config"]["target_ongoing_requests"] = cfg.target_ongoing_requests
    else:
        options["num_replicas"] = cfg.num_replicas or 1
    return DigitsClassifier.options(**options).bind(
        normalize_storage_path(cfg.storage_path), cfg.model_name, cfg.max_rows, cfg.use_gpu)


def _deploy(cfg: ServeConfig) -> None:
    """serve.run, bounded by ready_timeout_s: serve.run itself waits forever for
    replicas that cannot be placed, and keeps waiting even after the app is deleted.

    It runs in a daemon thread so that giving up does not wait for it. An app this
    call created and that did not come up is deleted, so its pending replicas stop
    holding CPUs; an app that was already running is left to Serve, which keeps the
    old replicas serving while an update fails.
    """
    existed = cfg.app_name in serve.status().applications
    failure: list[BaseException] = []

    def deploy() -> None:
        try:
            serve.run(build_app(cfg), name=cfg.app_name, route_prefix=cfg.route_prefix, blocking=False)
        except BaseException as exc:  # re-raised in the main thread below
            failure.append(exc)

    deployer = threading.Thread(target=deploy, name=f"deploy-{cfg.app_name}", daemon=True)
    deployer.start()
    deployer.join(cfg.ready_timeout_s)
    if deployer.is_alive():
        status = serve.status().applications.get(cfg.app_name)
        replicas = {name: dict(d.replica_states) for name, d in status.deployments.items()} if status else {}
        failure.append(TimeoutError(
            f"Serve app {cfg.app_name!r} not RUNNING after {cfg.ready_timeout_s:.0f}s; replicas {replicas}: "
            "does the cluster have free CPUs/GPUs for them?"))
    if failure:
        if not existed:
            serve.delete(cfg.app_name)
        raise failure[0]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    cfg = load_config(ServeConfig, argv, prog="jobs.serve")
    started = time.monotonic()
    # Fail before touching Serve when there is no model to serve.
    checkpoint = read_pointer(normalize_storage_path(cfg.storage_path), cfg.model_name)["checkpoint"]
    serve.start(http_options={"host": cfg.http_host, "port": cfg.http_port})
    _deploy(cfg)
    status = serve.status().applications[cfg.app_name]
    replicas = sum(d.replica_states.get("RUNNING", 0) for d in status.deployments.values())
    host = "127.0.0.1" if cfg.http_host in ("0.0.0.0", "::") else cfg.http_host
    return emit_result({
        "app_name": cfg.app_name,
        "status": status.status.value,
        "endpoint": f"http://{host}:{cfg.http_port}{cfg.route_prefix.rstrip('/')}",
        "replicas": replicas,
        "checkpoint": checkpoint,
        "seconds": round(time.monotonic() - started, 1),
    })


# What `import_path: jobs.serve:app` deploys; binding only records options, no Ray calls.
app = build_app(config_from_json(ServeConfig, os.environ.get(CONFIG_ENV_VAR)))

if __name__ == "__main__":
    run_cli("jobs.serve")
