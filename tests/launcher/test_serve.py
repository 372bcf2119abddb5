"""The Serve launcher (launcher/serve.py): a team's app by import path, deployed through the hook on the
real Ray head beside the cluster's other apps, scaled by the job's settings, removed with the job."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import requests

from components.clients.ray_jobs import ray_job_args
from components.config.model import JobConfig
from components.config.work import CodeConfig, ServeAppConfig, WorkConfig
from components.hooks.ray_job import RayJobProvider, props_of
from launcher.serve import scale_options
from tools.local_ray import LocalRay

APP = '''\
from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.1, "memory": 2**27})
class Greeter:
    def __init__(self, greeting: str) -> None:
        self.greeting = greeting

    async def __call__(self, request: Request) -> str:
        return f"{self.greeting}, {request.query_params.get('name', 'team')}"


def build(args: dict) -> serve.Application:
    return Greeter.bind(args.get("greeting", "hello"))
'''


@pytest.mark.parametrize(("settings", "expected"), [
    ({}, {}),
    ({"num_replicas": 2, "num_cpus": 0.5}, {"num_replicas": 2, "ray_actor_options": {"num_cpus": 0.5, "memory": 1}}),
    ({"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 4, "max_ongoing_requests": 8},
     {"autoscaling_config": {"min_replicas": 0, "max_replicas": 3, "target_ongoing_requests": 4},
      "max_ongoing_requests": 8}),
    ({"max_replicas": 2}, {"autoscaling_config": {"min_replicas": 1, "max_replicas": 2}}),
])
def test_scale_settings_become_the_ingress_options(settings: dict, expected: dict) -> None:
    assert scale_options(settings, {"memory": 1}) == expected


@pytest.mark.ray
def test_a_team_app_is_deployed_scaled_and_removed_through_the_hook(ray_head: LocalRay, tmp_path: Path) -> None:
    code = tmp_path / "greeter-repo"
    (code / "greeter").mkdir(parents=True)
    (code / "greeter" / "__init__.py").write_text("")
    (code / "greeter" / "app.py").write_text(APP)
    job = JobConfig(name="greeter", kind="serve", cluster="ray", wait="succeeded", timeout_seconds=300,
                    settings={"http_host": "127.0.0.1", "http_port": ray_head.serve_port, "num_replicas": 2,
                              "num_cpus": 0.05},
                    work=WorkConfig(code=CodeConfig(path=str(code), digest="d"),
                                    serve=ServeAppConfig("greeter.app:build", "greeter", "/greet", {"greeting": "hi"})))
    args = ray_job_args(job, dashboard_url=ray_head.dashboard_url, serve_endpoint_base=f"http://127.0.0.1:"
                        f"{ray_head.serve_port}", auth_token=None, team="t")
    try:
        outs = RayJobProvider().create(props_of(args)).outs
        assert outs["status"] == "SUCCEEDED" and outs["endpoint"] == f"http://127.0.0.1:{ray_head.serve_port}/greet"
        assert outs["result"]["app_name"] == "greeter" and outs["result"]["status"] == "RUNNING", outs["result"]
        assert requests.get(outs["endpoint"], params={"name": "search"}, timeout=30).text == "hi, search"
        app = requests.get(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=30).json()[
            "applications"]["greeter"]
        config = app["deployments"]["Greeter"]["deployment_config"]
        assert config["num_replicas"] == 2 and config["ray_actor_options"]["num_cpus"] == 0.05
        assert config["ray_actor_options"]["memory"] == 2**27, "the app's own options stay"
    finally:
        RayJobProvider().delete("cleanup", props_of(dataclasses.replace(args)))
    apps = requests.get(f"{ray_head.dashboard_url}/api/serve/applications/", timeout=30).json()
    assert "greeter" not in (apps.get("applications") or {})
