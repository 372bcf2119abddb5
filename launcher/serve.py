"""Deploy a team's Serve application by import path, as a Ray job: `python -m launcher.serve --config-json '{...}'`.

The post-deploy hook runs this as the job of a `serve:` entry, with the team's code as the working
dir: it starts Serve (HTTP on the configured host and port, if Serve is not up yet), builds the
application (an Application, or a builder function called with `args` exactly as Serve's config
and `serve run` call it), deploys it under its name and route prefix beside the cluster's other
apps, waits until it is RUNNING, prints the result line and exits leaving the app up. Deleting
the job removes the app (components/clients/ray_jobs.py).

Config keys: import_path, app_name, route_prefix, args, http_host (0.0.0.0), http_port (8000), and the
scale of the app's ingress deployment, as the built-in serve job takes it: num_replicas, or
min_replicas/max_replicas/target_ongoing_requests (autoscaling); num_cpus, num_gpus (per replica);
max_ongoing_requests. Unset, the app's own (its @serve.deployment options) stand.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from typing import Any

RESULT_PREFIX = "ray-platform-result:"
SCALE = ("num_replicas", "min_replicas", "max_replicas", "target_ongoing_requests", "num_cpus", "num_gpus",
         "max_ongoing_requests")
KEYS = ("import_path", "app_name", "route_prefix", "args", "http_host", "http_port", *SCALE)


def parse(argv: Sequence[str] | None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(prog="python -m launcher.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config-json", required=True, help=f"JSON object with keys {', '.join(KEYS)}")
    config = json.loads(parser.parse_args(argv).config_json)
    unknown = sorted(set(config) - set(KEYS))
    if unknown or not {"import_path", "app_name", "route_prefix"} <= set(config):
        raise SystemExit(f"config error: keys {unknown} unknown, or import_path/app_name/route_prefix missing; "
                         f"allowed: {', '.join(KEYS)}")
    return config


def scale_options(config: dict[str, Any], actor_options: dict[str, Any]) -> dict[str, Any]:
    """Deployment options for the configured scale keys (the config check already refused contradictions)."""
    options: dict[str, Any] = {}
    if config.get("max_replicas") is not None:
        autoscaling = {"min_replicas": config.get("min_replicas", 1), "max_replicas": config["max_replicas"]}
        if config.get("target_ongoing_requests") is not None:
            autoscaling["target_ongoing_requests"] = config["target_ongoing_requests"]
        options["autoscaling_config"] = autoscaling
    elif config.get("num_replicas") is not None:
        options["num_replicas"] = config["num_replicas"]
    resources = {key: config[key] for key in ("num_cpus", "num_gpus") if config.get(key) is not None}
    if resources:
        options["ray_actor_options"] = {**actor_options, **resources}
    if config.get("max_ongoing_requests") is not None:
        options["max_ongoing_requests"] = config["max_ongoing_requests"]
    return options


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    config = parse(argv)
    started = time.monotonic()
    from ray import serve
    from ray._common.utils import import_attr
    from ray.serve._private.api import call_user_app_builder_with_args_if_necessary

    # Importing it from the working dir (the team's code) before Serve starts: a typo fails fast.
    app = call_user_app_builder_with_args_if_necessary(import_attr(config["import_path"]), config.get("args") or {})
    ingress = app._bound_deployment
    options = scale_options(config, dict(ingress.ray_actor_options or {}))
    if options:
        # Serve's Application keeps its ingress deployment here; options() keeps its bound arguments.
        app._bound_deployment = ingress.options(**options)
    serve.start(http_options={"host": config.get("http_host", "0.0.0.0"), "port": config.get("http_port", 8000)})
    serve.run(app, name=config["app_name"], route_prefix=config["route_prefix"], blocking=False)
    status = serve.status().applications[config["app_name"]]
    result = {"app_name": config["app_name"], "route_prefix": config["route_prefix"],
              "status": str(status.status.value if hasattr(status.status, "value") else status.status),
              "seconds": round(time.monotonic() - started, 2)}
    print(f"{RESULT_PREFIX} {json.dumps(result, sort_keys=True)}", flush=True)
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
