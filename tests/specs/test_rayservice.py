"""The RayService builder (components/specs/rayservice.py): the Serve deployment options equal what
the app binds, and the Serve config deploys jobs.serve:app for real on the local Ray head."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import torch
import yaml

from components.config.model import JobConfig, KubeRayServiceConfig, RayClusterConfig
from components.clients.ray_jobs import effective_settings
from components.specs.rayservice import SERVE_DEPLOYMENT, deployment_options, ray_service
from jobs.data import load_split
from jobs.model import DigitsMLP, save_checkpoint, write_pointer
from tests.specs.test_rayjob import jobs_archive
from tools.local_ray import LocalRay

Obj = dict[str, Any]


def serve_config(service: Obj) -> Obj:
    return dict(yaml.safe_load(service["spec"]["serveConfigV2"]))


def bound_options(settings: dict[str, Any]) -> dict[str, Any]:
    """The deployment options jobs.serve.build_app binds for `settings` (what the app would do alone)."""
    from jobs.serve import build_app

    deployment = build_app(settings)._bound_deployment
    config = deployment._deployment_config
    options: dict[str, Any] = {"name": deployment.name, "ray_actor_options": deployment.ray_actor_options,
                               "max_ongoing_requests": config.max_ongoing_requests}
    if config.autoscaling_config is not None:
        options["autoscaling_config"] = {"min_replicas": config.autoscaling_config.min_replicas,
                                         "max_replicas": config.autoscaling_config.max_replicas}
        if "target_ongoing_requests" in settings:
            options["autoscaling_config"]["target_ongoing_requests"] = \
                config.autoscaling_config.target_ongoing_requests
    else:
        options["num_replicas"] = config.num_replicas
    return options


SETTINGS_GRID = [
    {},
    {"num_replicas": 3, "num_cpus": 1},
    {"max_replicas": 4},
    {"min_replicas": 0, "max_replicas": 2, "use_gpu": True, "num_cpus": 2.5},
    {"min_replicas": 2, "max_replicas": 6, "num_cpus": 4, "use_gpu": True},
    {"num_replicas": 2, "max_ongoing_requests": 32},
    {"max_replicas": 3, "max_ongoing_requests": 16, "target_ongoing_requests": 8},
]


@pytest.mark.parametrize("settings", SETTINGS_GRID, ids=[json.dumps(s) for s in SETTINGS_GRID])
def test_deployment_options_equal_what_the_app_binds(settings: dict[str, Any]) -> None:
    ours = deployment_options(settings, KubeRayServiceConfig(code_uri="s3://b/j.zip"))
    assert ours == bound_options(settings)
    assert ours["name"] == SERVE_DEPLOYMENT
    with_health = deployment_options(settings, KubeRayServiceConfig(
        code_uri="s3://b/j.zip", health_check_period_seconds=10, health_check_timeout_seconds=30))
    assert (with_health["health_check_period_s"], with_health["health_check_timeout_s"]) == (10, 30)


# --- the Serve config, deployed for real on the local Ray head -------------------------------


def serve_details(head: LocalRay) -> Obj:
    resp = requests.get(f"{head.dashboard_url}/api/serve/applications/", timeout=30)
    resp.raise_for_status()
    return dict(resp.json())


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_serve_config_deploys_jobs_serve_app_from_the_archive(ray_head: LocalRay, tmp_path: Path) -> None:
    model, checkpoint = DigitsMLP(16), tmp_path / "ckpt"
    checkpoint.mkdir()
    save_checkpoint(checkpoint, model, None, {"epoch": 1})
    storage = str(tmp_path / "store")
    write_pointer(storage, "digits", {"checkpoint": str(checkpoint), "metrics": {}})
    job = JobConfig(name="serve-kuberay", kind="serve", cluster="serve", submission="kuberay",
                    settings={"storage_path": storage, "model_name": "digits", "route_prefix": "/kuberay",
                              "num_replicas": 1, "num_cpus": 0.25},
                    kuberay=KubeRayServiceConfig(code_uri="s3://b/jobs-1.zip", health_check_period_seconds=5,
                                                 health_check_timeout_seconds=20))
    manifest = ray_service(job, RayClusterConfig(name="serve"), "team-x", "x", effective_settings(job))
    config = serve_config(manifest)
    (app,) = config["applications"]
    # Two substitutions for a shared laptop: the archive as file://, Serve's HTTP on a free loopback port.
    app["runtime_env"]["working_dir"] = jobs_archive(tmp_path)
    running = serve_details(ray_head)
    port = (running.get("http_options") or {}).get("port") if running.get("proxies") else None
    config["http_options"] = {"host": "127.0.0.1", "port": port or ray_head.serve_port}
    try:
        requests.put(f"{ray_head.dashboard_url}/api/serve/applications/", json=config,
                     timeout=60).raise_for_status()
        deadline = time.monotonic() + 180
        while (state := serve_details(ray_head)["applications"].get("serve-kuberay", {})).get("status") != "RUNNING":
            assert state.get("status") != "DEPLOY_FAILED", state.get("message")
            assert time.monotonic() < deadline, state
            time.sleep(1)
        deployed = state["deployments"][SERVE_DEPLOYMENT]["deployment_config"]
        assert deployed["num_replicas"] == 1 and deployed["ray_actor_options"]["num_cpus"] == 0.25
        assert (deployed["health_check_period_s"], deployed["health_check_timeout_s"]) == (5, 20)
        base = f"http://127.0.0.1:{config['http_options']['port']}/kuberay"
        health = requests.get(f"{base}/healthz", timeout=30)
        assert health.status_code == 200 and health.json()["checkpoint"] == str(checkpoint)
        rows = load_split().x_test[:5]
        predicted = requests.post(f"{base}/predict", json={"instances": rows.tolist()}, timeout=30)
        assert predicted.status_code == 200, predicted.text
        with torch.no_grad():
            expected = model.eval()(torch.tensor(rows)).argmax(dim=1).numpy()
        assert (np.array(predicted.json()["predictions"]) == expected).all()
    finally:
        # Serve shut down entirely (and waited for), so later tests get the CPUs back.
        requests.delete(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=120)
        deadline = time.monotonic() + 60
        while serve_details(ray_head).get("applications") and time.monotonic() < deadline:
            time.sleep(1)
