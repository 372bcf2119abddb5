"""What a team brings to its Ray objects (components/specs/team_runtime.py and the team's work in the
RayJob and RayService builders): images, pull secrets, secret environment, code, entrypoint, Serve app."""
from __future__ import annotations

from typing import Any

import yaml

from components.config.model import JobConfig, KubeRayJobConfig, KubeRayServiceConfig, RayClusterConfig, \
    WorkerGroupConfig
from components.config.work import ClusterRuntime, CodeConfig, ImageConfig, SecretEnv, ServeAppConfig, WorkConfig
from components.specs.raycluster import ray_cluster
from components.specs.rayjob import ray_job
from components.specs.rayservice import ray_service
from components.specs.team_runtime import JOB_SECRETS
from components.versions import DEFAULT_EKS_VERSION, RAY_IMAGE_CPU, RAY_VERSION
from tools.k8s_schema import validate_object

IMAGE = ImageConfig(f"registry.example.com/vision/ray:{RAY_VERSION}-py311-cpu", RAY_VERSION, ("regcred",))
GPU_IMAGE = ImageConfig(f"registry.example.com/vision/ray:{RAY_VERSION}-py311-cu121", RAY_VERSION, ("gpu-regcred",))
ENV = (SecretEnv("HF_TOKEN", k8s_secret="hf", k8s_key="token"), SecretEnv("WANDB_API_KEY", secret="wandb"))
CLUSTER = RayClusterConfig(
    name="vision", worker_groups=(WorkerGroupConfig(name="cpu", cpu="2", memory="8Gi"),
                                  WorkerGroupConfig(name="gpu", cpu="4", memory="16Gi", gpus=1)),
    runtime=ClusterRuntime(head_image=IMAGE, group_images={"gpu": GPU_IMAGE}, env=ENV))


def pods(obj: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = obj["spec"]
    return {"head": spec["headGroupSpec"]["template"]["spec"],
            **{g["groupName"]: g["template"]["spec"] for g in spec["workerGroupSpecs"]}}


def test_team_images_pull_secrets_and_secret_env_on_every_ray_container() -> None:
    obj = ray_cluster(CLUSTER, "team-vision", "vision")
    assert validate_object(obj, DEFAULT_EKS_VERSION) == []
    specs = pods(obj)
    assert {name: spec["containers"][0]["image"] for name, spec in specs.items()} == {
        "head": IMAGE.name, "cpu": IMAGE.name, "gpu": GPU_IMAGE.name}
    assert {name: spec["imagePullSecrets"] for name, spec in specs.items()} == {
        "head": [{"name": "regcred"}], "cpu": [{"name": "regcred"}], "gpu": [{"name": "gpu-regcred"}]}
    for spec in specs.values():
        env = {e["name"]: e for e in spec["containers"][0]["env"]}
        assert env["HF_TOKEN"] == {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}
        assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": JOB_SECRETS, "key": "wandb"}}
    assert obj["spec"]["rayVersion"] == RAY_VERSION


def test_without_team_images_the_stock_image_and_no_pull_secrets() -> None:
    plain = ray_cluster(RayClusterConfig(name="vision"), "team-vision", "vision")
    head = pods(plain)["head"]
    assert head["containers"][0]["image"] == RAY_IMAGE_CPU and "imagePullSecrets" not in head


def test_a_team_rayjob_runs_its_entrypoint_with_its_code_uri() -> None:
    job = JobConfig(name="finetune", kind="job", cluster="vision", submission="kuberay",
                    kuberay=KubeRayJobConfig(code_uri=""),
                    work=WorkConfig(entrypoint="python -m vision.finetune",
                                    code=CodeConfig(uri="s3://b/vision-1.4.0.zip", digest="d")))
    obj = ray_job(job, CLUSTER, "team-vision", "vision", "python -m vision.finetune")
    assert obj["spec"]["entrypoint"] == "python -m vision.finetune"
    assert yaml.safe_load(obj["spec"]["runtimeEnvYAML"]) == {"working_dir": "s3://b/vision-1.4.0.zip"}
    from_image = JobConfig(name="finetune", kind="job", cluster="vision", submission="kuberay",
                           kuberay=KubeRayJobConfig(code_uri="", ephemeral=True),
                           work=WorkConfig(entrypoint="python -m baked.in"))
    ephemeral = ray_job(from_image, CLUSTER, "team-vision", "vision", "python -m baked.in")
    assert yaml.safe_load(ephemeral["spec"]["runtimeEnvYAML"]) == {}
    assert ephemeral["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] == \
        IMAGE.name, "the job's own cluster runs the team's image too"
    assert validate_object(ephemeral, DEFAULT_EKS_VERSION) == []


def test_a_team_rayservice_deploys_its_app_by_import_path() -> None:
    job = JobConfig(name="vision-api", kind="serve", cluster="vision", submission="kuberay",
                    kuberay=KubeRayServiceConfig(code_uri=""),
                    work=WorkConfig(code=CodeConfig(uri="s3://b/vision-1.4.0.zip", digest="d"),
                                    serve=ServeAppConfig("vision.serve:build", "vision-api", "/vision", {"model": "m"})))
    obj = ray_service(job, CLUSTER, "team-vision", "vision", {"app_name": "vision-api", "route_prefix": "/vision"})
    (app,) = yaml.safe_load(obj["spec"]["serveConfigV2"])["applications"]
    assert app == {"name": "vision-api", "route_prefix": "/vision", "import_path": "vision.serve:build",
                   "runtime_env": {"working_dir": "s3://b/vision-1.4.0.zip"}, "args": {"model": "m"}}
    assert validate_object(obj, DEFAULT_EKS_VERSION) == []
