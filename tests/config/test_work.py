"""A job's work (components/config/work.py, parsed in jobs.py and images.py): team entrypoints, code
from a path or a URI, Serve apps by import path, secrets by reference, team images; the bad-input
table, one clear message each."""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

import components.config.jobs
from components.config.model import ConfigError, TeamStackConfig
from components.config.stack import parse
from components.config.work import CodeConfig, SecretEnv, ServeAppConfig
from components.versions import RAY_VERSION

BASE: dict[str, Any] = {
    "layer": "team", "environment": "dev", "platformStack": "org/ray-platform/elsewhere",
    "team": {"name": "vision", "groups": ["devs"], "quota": {"cpu": "24", "memory": "96Gi", "gpus": 0, "pods": 10}},
    "rayClusters": [{"name": "gpu", "workerGroups": [{"name": "cpu", "cpu": "2", "memory": "8Gi", "maxReplicas": 2}]}],
    "secrets": {"wandb": "k3y"},
    "jobs": [{"name": "finetune", "cluster": "gpu", "entrypoint": "python -m vision.finetune --epochs 3",
              "code": {"path": "../vision-ml"}, "runtimeEnv": {"pip": ["einops"], "env_vars": {"EPOCHS": "3"}},
              "env": {"WANDB_API_KEY": {"secret": "wandb"},
                      "HF_TOKEN": {"secretKeyRef": {"name": "hf", "key": "token"}}},
              "resources": {"cpus": 1}, "timeoutSeconds": 3600},
             {"name": "vision-api", "cluster": "gpu", "code": {"path": "../vision-ml"}, "dependsOn": ["finetune"],
              "serve": {"importPath": "vision.serve:build", "args": {"model": "s3://b/m"}, "routePrefix": "/vision"}}],
}


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    """A team's checkout: stacks/ beside its code, vision-ml/."""
    (tmp_path / ".git").mkdir()
    (tmp_path / "stacks").mkdir()
    code = tmp_path / "vision-ml" / "vision"
    code.mkdir(parents=True)
    (code / "__init__.py").write_text("")
    (code / "finetune.py").write_text("print('training')\n")
    return tmp_path


def parsed(raw: dict[str, Any], repo: Path, secret_keys: tuple[str, ...] | None = None) -> TeamStackConfig:
    cfg = parse(raw, "vision-dev", stack_dir=repo / "stacks", secret_keys=secret_keys)
    assert isinstance(cfg, TeamStackConfig)
    return cfg


def test_a_team_job_and_a_serve_app(repo: Path) -> None:
    cfg = parsed(BASE, repo)
    job, app = cfg.jobs
    assert (job.kind, app.kind) == ("job", "serve")
    assert job.work.entrypoint == "python -m vision.finetune --epochs 3"
    assert job.work.code == CodeConfig(path=str(repo / "vision-ml"), digest=job.work.code.digest)
    assert len(job.work.code.digest) == 64 and app.work.code == job.work.code
    assert job.work.env == (SecretEnv("WANDB_API_KEY", secret="wandb"), SecretEnv("HF_TOKEN", k8s_secret="hf",
                                                                                   k8s_key="token"))
    assert app.work.serve == ServeAppConfig("vision.serve:build", "vision-api", "/vision", {"model": "s3://b/m"})
    # The cluster's pods carry the secret environment of the jobs on it.
    assert cfg.ray_clusters[0].runtime.env == tuple(sorted(job.work.env, key=lambda e: e.var))
    assert cfg.secrets == {"wandb": "k3y"}


def test_presets_are_the_same_thing_with_the_jobs_package_as_code(repo: Path) -> None:
    raw = {**BASE, "jobs": [{"name": "core-stats", "kind": "core", "cluster": "gpu"}]}
    (job,) = parsed(raw, repo).jobs
    assert job.kind == "core" and not job.work.custom
    assert job.work.code is not None and job.work.code.as_module
    assert Path(job.work.code.path or "", "common.py").is_file()


@pytest.mark.parametrize("uri", ["s3://bucket/vision-ml-1.4.0.zip", "gs://b/v.zip", "https://example.com/v.zip"])
def test_code_from_a_uri(repo: Path, uri: str) -> None:
    raw = copy.deepcopy(BASE)
    raw["jobs"][0]["code"] = {"uri": uri}
    job = parsed(raw, repo).jobs[0]
    assert job.work.code is not None and job.work.code.uri == uri and job.work.code.path is None


def test_code_from_the_image(repo: Path) -> None:
    raw = copy.deepcopy(BASE)
    del raw["jobs"][0]["code"]
    assert parsed(raw, repo).jobs[0].work.code is None


def test_a_team_image_with_its_ray_version_from_the_tag_or_stated(repo: Path) -> None:
    raw = copy.deepcopy(BASE)
    raw["rayClusters"][0]["image"] = {"name": f"registry.example.com/vision/ray:{RAY_VERSION}-py311-cu121",
                                      "pullSecrets": ["regcred"]}
    raw["rayClusters"][0]["workerGroups"][0]["image"] = {"name": "registry.example.com/vision/ray@sha256:abc",
                                                         "rayVersion": RAY_VERSION}
    runtime = parsed(raw, repo).ray_clusters[0].runtime
    assert runtime.image_of(None) is not None and runtime.image_of(None).pull_secrets == ("regcred",)
    assert runtime.image_of("cpu").name == "registry.example.com/vision/ray@sha256:abc"
    assert runtime.image_of("other") == runtime.image_of(None)


def edit(path: str, value: Any) -> dict[str, Any]:
    """BASE with `value` at a dotted path (jobs.0.code) under the config root."""
    raw = copy.deepcopy(BASE)
    *parents, last = path.split(".")
    node: Any = raw
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node[part]
    node[last] = value
    return raw


BAD_INPUT = [
    ("missing code path", edit("jobs.0.code", {"path": "../vision-m1"}), "jobs[0].code.path",
     "no such directory"),
    ("a path escaping the repository", edit("jobs.0.code", {"path": "../.."}), "jobs[0].code.path",
     "outside the repository"),
    ("a runtimeEnv key Ray does not know", edit("jobs.0.runtimeEnv", {"pipp": ["einops"]}),
     "jobs[0].runtimeEnv.pipp", "not a runtime_env key Ray knows; known: conda, config, container, env_vars"),
    ("an empty entrypoint", edit("jobs.0.entrypoint", "  "), "jobs[0].entrypoint", "must not be empty"),
    ("an unsupported URI scheme", edit("jobs.0.code", {"uri": "ftp://files/vision-ml.zip"}), "jobs[0].code.uri",
     "unsupported URI"),
    ("a secret given in plain text", edit("jobs.0.env", {"WANDB_API_KEY": "k3y"}), "jobs[0].env.WANDB_API_KEY",
     "a secret given in plain text is refused"),
    ("an image whose Ray version disagrees", edit("rayClusters.0.image", {"name": "r.example.com/v/ray:2.9.3-py311"}),
     "rayClusters[0].image.name", f"the image runs Ray 2.9.3, the platform Ray {RAY_VERSION}"),
    ("a job with both serve and entrypoint", edit("jobs.1.entrypoint", "python -m vision.serve"),
     "jobs[1].serve", "a job runs one thing: entrypoint and serve are given"),
    # And the rest of what a team can get wrong, each as plainly.
    ("a job with kind and entrypoint", edit("jobs.0.kind", "train"), "jobs[0].entrypoint",
     "a job runs one thing: kind and entrypoint are given"),
    ("a job that runs nothing", edit("jobs.0.entrypoint", None), "jobs[0].entrypoint", "required but not set"),
    ("path and uri", edit("jobs.0.code", {"path": "../vision-ml", "uri": "s3://b/v.zip"}), "jobs[0].code",
     "give exactly one of path"),
    ("working_dir by hand", edit("jobs.0.runtimeEnv", {"working_dir": "."}), "jobs[0].runtimeEnv.working_dir",
     "set by the platform from the job's code"),
    ("an unknown secret", edit("jobs.0.env", {"WANDB_API_KEY": {"secret": "wandb2"}}),
     "jobs[0].env.WANDB_API_KEY.secret", "no such entry in ray-platform:secrets; known: wandb"),
    ("a variable from a secret and in plain env_vars", edit("jobs.0.runtimeEnv", {"env_vars": {"HF_TOKEN": "x"}}),
     "jobs[0].env.HF_TOKEN", "also set in runtimeEnv.env_vars"),
    ("a bad import path", edit("jobs.1.serve", {"importPath": "vision/serve.py"}), "jobs[1].serve.importPath",
     "expected module:attribute"),
    ("a route without a slash", edit("jobs.1.serve", {"importPath": "v:app", "routePrefix": "vision"}),
     "jobs[1].serve.routePrefix", "must start with '/'"),
    ("settings on an entrypoint job", edit("jobs.0.settings", {"epochs": 3}), "jobs[0].settings",
     "an entrypoint takes its arguments on its command line"),
    ("an unknown Serve app setting", edit("jobs.1.settings", {"model": "x"}), "jobs[1].settings.model",
     "not a setting of a Serve app"),
    ("fixed and autoscaled replicas", edit("jobs.1.settings", {"num_replicas": 2, "max_replicas": 4}),
     "jobs[1].settings.num_replicas", "either num_replicas (fixed) or min/max_replicas (autoscaling), not both"),
    ("a minimum without a maximum", edit("jobs.1.settings", {"min_replicas": 1}), "jobs[1].settings.min_replicas",
     "needs max_replicas"),
    ("an image tag without a Ray version", edit("rayClusters.0.image", {"name": "r.example.com/v/ray:latest"}),
     "rayClusters[0].image.rayVersion", "does not say its Ray version"),
    ("a tag and a stated version that disagree",
     edit("rayClusters.0.image", {"name": f"r/v:{RAY_VERSION}-py311", "rayVersion": "2.9.3"}),
     "rayClusters[0].image.rayVersion", f"the tag of 'r/v:{RAY_VERSION}-py311' says Ray {RAY_VERSION}"),
    ("local code for a RayJob", edit("jobs.0.submission", "kuberay"), "jobs[0].code.path",
     "the kuberay path never ships a local path"),
]


@pytest.mark.parametrize(("raw", "path", "message"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT])
def test_bad_input_is_refused_with_one_clear_message(raw: dict[str, Any], path: str, message: str,
                                                     repo: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse(raw, "vision-dev", stack_dir=repo / "stacks")
    (problem,) = err.value.problems
    assert problem.startswith(f"ray-platform:{path}: ") and message in problem, problem
    assert "k3y" not in str(err.value), "a secret's value is never echoed"


def test_a_plain_entry_of_secrets_is_refused_without_its_value(repo: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse(BASE, "vision-dev", stack_dir=repo / "stacks", secret_keys=())
    (problem,) = err.value.problems
    assert problem.startswith("ray-platform:secrets.wandb: ") and "plain text is refused" in problem
    assert "k3y" not in problem
    assert parsed(BASE, repo, secret_keys=("ray-platform:secrets",)).secrets == {"wandb": "k3y"}


def test_code_over_the_size_limit_names_its_largest_files(repo: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (repo / "vision-ml" / "weights.bin").write_bytes(b"\0" * 4096)
    monkeypatch.setattr(components.config.jobs, "CODE_MAX_BYTES", 1024)
    with pytest.raises(ConfigError) as err:
        parse(BASE, "vision-dev", stack_dir=repo / "stacks")
    assert len(err.value.problems) == 2  # both jobs ship the directory
    assert "over the 0.0 MiB a job's code may have (largest: weights.bin" in err.value.problems[0]
    # What the ignore file names is not shipped, so it does not count.
    (repo / "vision-ml" / ".rayignore").write_text("*.bin\n")
    assert parsed(BASE, repo).jobs[0].work.code is not None
