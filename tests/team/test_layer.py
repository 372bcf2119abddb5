"""The team layer's wiring (components/team/layer.py): the contract check against the deployed
platform, and how the platform stack's outputs are read."""
from __future__ import annotations

import asyncio
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pulumi
import pytest
from pulumi.runtime import settings as runtime_settings
from pulumi.runtime.sync_await import _sync_await

import tools.render as render
from components.config.model import ConfigError, RayObservability
from components.config.queue_model import QueueQuota, TeamQueueConfig
from components.constants import GPU_TAINT_EFFECT, GPU_TAINT_KEY, GPU_TAINT_VALUE
from components.specs.team_runtime import JOB_SECRETS
from components.team.layer import PlatformMismatch, check_platform, platform_output
from components.versions import KUBERAY_VERSION
from tests.stacks import rendered


def test_the_deployed_platform_must_match_the_contract_the_clusters_are_written_for() -> None:
    taint = {"key": GPU_TAINT_KEY, "value": GPU_TAINT_VALUE, "effect": GPU_TAINT_EFFECT}
    good = {"kuberayVersion": KUBERAY_VERSION, "gpuTaint": taint, "clusterName": "ray-prod"}
    assert check_platform("org/ray-platform/prod", good)["clusterName"] == "ray-prod"
    with pytest.raises(PlatformMismatch, match="KubeRay 1.0.0 is deployed"):
        check_platform("org/ray-platform/prod", {**good, "kuberayVersion": "1.0.0"})
    with pytest.raises(PlatformMismatch, match="GPU nodes carry the taint"):
        check_platform("org/ray-platform/prod", {**good, "gpuTaint": {**taint, "key": "gpu"}})


def test_the_deployed_platform_must_offer_what_the_team_opted_into() -> None:
    good = {"kuberayVersion": KUBERAY_VERSION,
            "gpuTaint": {"key": GPU_TAINT_KEY, "value": "true", "effect": GPU_TAINT_EFFECT}, "clusterName": "c"}
    wanted = RayObservability(metrics=True, log_shipping=True)
    check_platform("org/p/prod", good)  # a team that opts into nothing needs nothing
    with pytest.raises(PlatformMismatch, match="runs no Prometheus.*ships no logs"):
        check_platform("org/p/prod", {**good, "observability": {"prometheus": None, "logShipping": None}}, wanted)
    offered = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["observability"]
    assert check_platform("org/p/prod", {**good, "observability": offered}, wanted)["clusterName"] == "c"


def test_a_queued_team_needs_the_platform_s_kueue_flavors_and_priority_class() -> None:
    good = {"kuberayVersion": KUBERAY_VERSION,
            "gpuTaint": {"key": GPU_TAINT_KEY, "value": "true", "effect": GPU_TAINT_EFFECT}, "clusterName": "c"}
    queue = TeamQueueConfig(cpu=QueueQuota("8"), memory=QueueQuota("8Gi"), gpus={"a10g": QueueQuota("1")})
    with pytest.raises(PlatformMismatch, match="declares a queue .* runs no Kueue"):
        check_platform("org/p/prod", {**good, "queues": None}, RayObservability(), queue)
    offered = {"flavors": ["cpu", "h100"], "priorityClasses": {"production": 1000}}
    with pytest.raises(PlatformMismatch, match="flavors the platform does not define: a10g.*'batch' is not one"):
        check_platform("org/p/prod", {**good, "queues": offered}, RayObservability(), queue)
    with pytest.raises(PlatformMismatch, match="'urgent' is not one"):
        check_platform("org/p/prod", {**good, "queues": {**offered, "flavors": ["a10g"]}}, RayObservability(),
                       replace(queue, priority_class="production"), ["urgent", "production"])
    queues = rendered(render.STACKS_DIR / "Pulumi.prod.yaml").outputs["queues"]
    assert check_platform("org/p/prod", {**good, "queues": queues}, RayObservability(),
                          TeamQueueConfig(cpu=QueueQuota("8"), memory=QueueQuota("8Gi"),
                                          gpus={"g6e-spot": QueueQuota("1")}))["clusterName"] == "c"


class _PlatformReference(pulumi.runtime.Mocks):
    """A deployed platform stack with one plain and one secret output."""

    def new_resource(self, args: pulumi.runtime.MockResourceArgs) -> tuple[str, dict[str, Any]]:
        if args.typ == "pulumi:pulumi:StackReference":
            return args.name, {"name": args.name, "outputs": {"gpuTaint": {"key": "k"}, "kubeconfig": "apiVersion: v1"},
                               "secretOutputNames": ["kubeconfig"]}
        return f"{args.name}-id", dict(args.inputs)

    def call(self, args: pulumi.runtime.MockCallArgs) -> dict[str, Any]:
        return {}


def test_platform_outputs_are_read_one_at_a_time_and_keep_their_secretness(monkeypatch: pytest.MonkeyPatch) -> None:
    runtime_settings.ROOT.set(None)
    asyncio.set_event_loop(asyncio.new_event_loop())
    pulumi.runtime.set_mocks(_PlatformReference(), project="ray-platform", stack="t", preview=False)
    # One output per read, by name; never get_output, which lifts every output of the platform.
    read: list[str] = []
    details = pulumi.StackReference.get_output_details

    def get_output_details(self: pulumi.StackReference, name: str) -> Any:
        read.append(name)
        return details(self, name)

    monkeypatch.setattr(pulumi.StackReference, "get_output_details", get_output_details)
    monkeypatch.setattr(pulumi.StackReference, "get_output", lambda self, name: pytest.fail(f"get_output({name!r})"))
    stack = "org/ray-platform/prod"
    ref = pulumi.StackReference(stack)
    taint, kubeconfig = platform_output(ref, stack, "gpuTaint"), platform_output(ref, stack, "kubeconfig", True)
    assert read == ["gpuTaint", "kubeconfig"]
    assert (_sync_await(taint.future()), _sync_await(taint.is_secret())) == ({"key": "k"}, False)
    assert (_sync_await(kubeconfig.future()), _sync_await(kubeconfig.is_secret())) == ("apiVersion: v1", True)
    assert ref in _sync_await(taint.resources()), "readers must depend on the StackReference"
    assert _sync_await(platform_output(ref, stack, "absent").future()) is None
    with pytest.raises(PlatformMismatch, match="org/ray-platform/prod: it has no output 'kuberayNamespace'"):
        _sync_await(platform_output(ref, stack, "kuberayNamespace", required=True).future())


SECRET_ENV_STACK = """\
config:
  ray-platform:layer: team
  ray-platform:environment: local
  ray-platform:platformStack: local
  ray-platform:team: {name: vision, groups: [devs], quota: {cpu: "8", memory: 24Gi, gpus: 0, pods: 20}}
  ray-platform:rayClusters: [{name: ray, head: {cpu: "2", memory: 4Gi, shmSize: 1Gi}}]
  ray-platform:secrets:
    wandb: %s
  ray-platform:jobs:
    - name: finetune
      cluster: ray
      entrypoint: python -m vision.finetune
      env: {WANDB_API_KEY: {secret: wandb}, HF_TOKEN: {secretKeyRef: {name: hf, key: token}}}
"""


def test_a_team_s_secrets_reach_its_ray_pods_by_reference_only(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.vision-local.yaml"
    stack.write_text(SECRET_ENV_STACK % "{secure: v1:bm90IGEgcmVhbCBzZWNyZXQ=}")
    result = render.render_stack(stack)
    (secret,) = [m for m in result.manifests() if m["kind"] == "Secret" and m["metadata"]["name"] == JOB_SECRETS]
    assert secret["stringData"] == {"wandb": "[secret]"} and secret["metadata"]["namespace"] == "team-vision"
    (cluster,) = [m for m in result.manifests() if m["kind"] == "RayCluster"]
    env = {e["name"]: e for e in cluster["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["WANDB_API_KEY"]["valueFrom"] == {"secretKeyRef": {"name": JOB_SECRETS, "key": "wandb"}}
    assert env["HF_TOKEN"]["valueFrom"] == {"secretKeyRef": {"name": "hf", "key": "token"}}
    (hook,) = [r for r in result.resources if r["type"] == "pulumi-python:dynamic:RayJob"]
    assert "WANDB_API_KEY" not in json.dumps(hook) and hook["inputs"]["runtime_env"] == {}
    # Pods that read the Secret start after it.
    assert any(dep.endswith("vision-job-secrets") for dep in result.dependencies[
        next(r["urn"] for r in result.resources if r["type"] == "kubernetes:ray.io/v1:RayCluster")])


def test_a_secret_in_plain_text_fails_before_anything_is_declared(tmp_path: Path) -> None:
    stack = tmp_path / "Pulumi.vision-local.yaml"
    stack.write_text(SECRET_ENV_STACK % "my-wandb-key")
    with pytest.raises(ConfigError) as err:
        render.render_stack(stack)
    assert "ray-platform:secrets.wandb: got '<a plain value, not shown>'; a secret given in plain text" in str(err.value)
    assert "my-wandb-key" not in str(err.value)
