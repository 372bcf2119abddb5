"""From a job's config to the hook's args (components/clients/ray_jobs.py): presets and team jobs are
one mechanism, and each job's identity moves with its own code only."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import components.config.jobs
from components.clients.ray_jobs import LAUNCHER_DIR, ray_job_args
from components.config.model import TeamStackConfig
from components.config.stack_files import parse_stack_file
from components.hooks.ray_job import props_of
from components.specs.digest import submission_id_for
from jobs.common import JOBS_DIR

TEAM_STACK = """\
config:
  ray-platform:layer: team
  ray-platform:environment: dev
  ray-platform:platformStack: dev
  ray-platform:team: {name: vision, groups: [devs], quota: {cpu: "24", memory: 96Gi, gpus: 0}}
  ray-platform:rayClusters: [{name: ray, workerGroups: [{name: cpu, cpu: "2", memory: 8Gi}]}]
  ray-platform:secrets:
    wandb: {secure: v1:AAAA}
  ray-platform:jobs:
    - {name: core-stats, kind: core, cluster: ray}
    - {name: serve-digits, kind: serve, cluster: ray}
    - name: finetune
      cluster: ray
      entrypoint: python -m vision.finetune
      code: {path: ../vision-ml}
      env: {WANDB_API_KEY: {secret: wandb}}
    - name: vision-api
      cluster: ray
      code: {path: ../vision-ml}
      serve: {importPath: "vision.serve:build", routePrefix: /vision}
    - {name: from-image, cluster: ray, entrypoint: python -m baked.in}
"""


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    (tmp_path / ".git").mkdir()
    (tmp_path / "stacks").mkdir()
    (tmp_path / "stacks" / "Pulumi.vision-dev.yaml").write_text(TEAM_STACK)
    code = tmp_path / "vision-ml"
    (code / "vision").mkdir(parents=True)
    (code / "vision" / "finetune.py").write_text("print('v1')\n")
    (code / ".rayignore").write_text("outputs/\n")
    return tmp_path


def identities(repo: Path) -> dict[str, str]:
    cfg = parse_stack_file(repo / "stacks" / "Pulumi.vision-dev.yaml")
    assert isinstance(cfg, TeamStackConfig)
    return {job.name: submission_id_for(props_of(ray_job_args(
        job, dashboard_url="http://ray-head-svc:8265", serve_endpoint_base=None, auth_token=None, team="vision")))
        for job in cfg.jobs}


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    return {name for name in before if before[name] != after[name]}


def test_a_change_to_the_team_code_changes_only_its_jobs(repo: Path) -> None:
    before = identities(repo)
    (repo / "vision-ml" / "vision" / "finetune.py").write_text("print('v2')\n")
    assert changed(before, identities(repo)) == {"finetune", "vision-api"}


def test_a_change_to_an_ignored_file_changes_nothing(repo: Path) -> None:
    before = identities(repo)
    (repo / "vision-ml" / "outputs").mkdir()
    (repo / "vision-ml" / "outputs" / "run.log").write_text("not shipped\n")
    assert identities(repo) == before


def test_a_change_to_jobs_changes_only_the_built_in_jobs(repo: Path, tmp_path_factory: pytest.TempPathFactory,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    before = identities(repo)
    jobs = tmp_path_factory.mktemp("checkout") / "jobs"
    shutil.copytree(JOBS_DIR, jobs, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(components.config.jobs, "JOBS_DIR", jobs)
    assert identities(repo) == before, "the same files: the same identities, wherever the checkout is"
    (jobs / "train.py").write_text((jobs / "train.py").read_text() + "\n# tuned\n")
    assert changed(before, identities(repo)) == {"core-stats", "serve-digits"}


def test_team_jobs_ship_their_code_and_read_secrets_by_reference_only(repo: Path) -> None:
    cfg = parse_stack_file(repo / "stacks" / "Pulumi.vision-dev.yaml")
    assert isinstance(cfg, TeamStackConfig)
    args = {job.name: ray_job_args(job, dashboard_url="http://h:8265", serve_endpoint_base="http://s:8000",
                                   auth_token=None, team="vision") for job in cfg.jobs}
    assert args["finetune"].entrypoint == "python -m vision.finetune"
    assert args["finetune"].runtime_env == {"working_dir": str(repo / "vision-ml")}
    assert args["from-image"].runtime_env == {}
    assert args["vision-api"].kind == "serve" and args["vision-api"].serve_route_prefix == "/vision"
    assert args["vision-api"].runtime_env == {"working_dir": str(repo / "vision-ml"), "py_modules": [str(LAUNCHER_DIR)]}
    assert args["vision-api"].entrypoint.startswith("python -m launcher.serve --config-json ")
    assert args["core-stats"].runtime_env == {"py_modules": [str(JOBS_DIR)]}
    # The secret's reference changes the job's identity; its value is nowhere in what the hook gets.
    assert "WANDB_API_KEY" not in str(props_of(args["finetune"])) and "[secret]" not in str(props_of(args["finetune"]))
