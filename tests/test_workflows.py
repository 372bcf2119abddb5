"""The GitHub Actions workflows.

Linted by two real linters from PyPI (pinned in requirements-dev.txt):
check-jsonschema against its vendored GitHub workflow schema, and zizmor's
security audits. Then their structure is asserted, and the shell steps that
decide *what* gets previewed or deployed are executed against scratch repos.
"""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
WORKFLOWS = ROOT / ".github" / "workflows"
FILES = sorted(WORKFLOWS.glob("*.yml"))
# zizmor is a native binary installed beside this interpreter (not resolved: the venv's bin/).
ZIZMOR = Path(sys.executable).parent / "zizmor"
# `./.github/workflows/x.yml` is the documented way to call a local reusable
# workflow; zizmor's pedantic `self-repository` audit prefers a newer syntax.
ZIZMOR_CONFIG = "rules:\n  self-repository:\n    disable: true\n"
BAD_WORKFLOW = """\
name: bad
on: pull_request
jobs:
  x:
    runs-on: ubuntu-latest
    step:
      - run: echo "${{ github.event.pull_request.title }}"
"""
ALLOWED_PERMISSIONS = {"contents": "read", "id-token": "write", "pull-requests": "write"}


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text())
    # YAML 1.1 reads the bare key `on` as the boolean True.
    doc["on"] = doc.pop(True)
    return doc


def steps(job: dict[str, Any]) -> list[dict[str, Any]]:
    return job.get("steps", [])


def step_using(job: dict[str, Any], action: str) -> dict[str, Any]:
    matches = [s for s in steps(job) if s.get("uses", "").startswith(f"{action}@")]
    assert len(matches) == 1, f"expected one step using {action}"
    return matches[0]


def all_jobs() -> Iterator[tuple[str, str, dict[str, Any]]]:
    for file in FILES:
        for job_id, job in load(file.name)["jobs"].items():
            yield file.name, job_id, job


def run_linter(args: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, capture_output=True, text=True, cwd=ROOT)


def check_jsonschema(*paths: Path) -> subprocess.CompletedProcess[str]:
    return run_linter([sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.github-workflows",
                       *map(str, paths)])


def zizmor(config: Path, *paths: Path) -> subprocess.CompletedProcess[str]:
    # --offline: no GitHub API here; --strict-collection: a workflow zizmor
    # cannot parse is a failure, not a warning.
    return run_linter([str(ZIZMOR), "--offline", "--strict-collection", "--persona", "pedantic",
                       "--config", str(config), "--format", "plain", *map(str, paths)])


# ---------------------------------------------------------------- linters


def test_expected_workflows() -> None:
    assert [f.name for f in FILES] == ["deploy-environment.yml", "deploy.yml", "pr.yml"]


def test_schema_valid() -> None:
    result = check_jsonschema(*FILES)
    assert result.returncode == 0, result.stdout + result.stderr


def test_zizmor_clean(tmp_path: Path) -> None:
    config = tmp_path / "zizmor.yml"
    config.write_text(ZIZMOR_CONFIG)
    result = zizmor(config, WORKFLOWS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_linters_reject_a_bad_workflow(tmp_path: Path) -> None:
    # A negative control: both linters really run and really fail.
    bad = tmp_path / "bad.yml"
    bad.write_text(BAD_WORKFLOW)
    schema = check_jsonschema(bad)
    assert schema.returncode != 0 and "'step' was unexpected" in schema.stdout
    (tmp_path / "zizmor.yml").write_text(ZIZMOR_CONFIG)
    injection = tmp_path / "injection.yml"
    injection.write_text(BAD_WORKFLOW.replace("step:", "steps:"))
    audit = zizmor(tmp_path / "zizmor.yml", injection)
    assert audit.returncode != 0 and "template-injection" in audit.stdout


def test_every_run_step_is_valid_bash() -> None:
    for file, job_id, job in all_jobs():
        for step in steps(job):
            if "run" in step:
                result = subprocess.run(["bash", "-n"], input=step["run"], capture_output=True, text=True)
                assert result.returncode == 0, f"{file} {job_id}: {result.stderr}"


# ---------------------------------------------------------------- structure


# GitHub removed node20 from its runners in September 2026. The first major of each action whose
# action.yml says `runs.using: node24` (read from each action's repository at the pinned tag);
# configure-aws-credentials v5 declares node20 and hangs at OIDC when forced onto node24.
FIRST_NODE24_MAJOR = {
    "actions/checkout": 5,
    "actions/setup-python": 6,
    "aws-actions/configure-aws-credentials": 6,
    "marocchino/sticky-pull-request-comment": 3,
    "pulumi/actions": 7,
}
PINNED_USES = re.compile(r"^\s*(?:- )?uses: (?P<action>[\w.-]+/[\w.-]+)@(?P<ref>\S+)(?P<comment>.*)$")


def third_party_uses() -> Iterator[tuple[str, re.Match[str]]]:
    for file in FILES:
        for line in file.read_text().splitlines():
            match = PINNED_USES.match(line)
            if match:
                yield file.name, match


def test_actions_pinned_by_sha_at_a_node24_release() -> None:
    seen = set()
    for file, use in third_party_uses():
        action, ref, comment = use["action"], use["ref"], use["comment"]
        seen.add(action)
        assert re.fullmatch(r"[0-9a-f]{40}", ref), f"{file}: {action} pinned by {ref!r}, not a commit SHA"
        version = re.fullmatch(r"\s*# v(\d+)\.\d+\.\d+", comment)
        assert version, f"{file}: {action}@{ref} has no '# vX.Y.Z' comment naming its release"
        assert action in FIRST_NODE24_MAJOR, f"{file}: {action} is not a reviewed action"
        assert int(version[1]) >= FIRST_NODE24_MAJOR[action], f"{file}: {action} v{version[1]} runs on node20"
    assert seen == set(FIRST_NODE24_MAJOR)


def test_workflows_install_the_pinned_pulumi_cli() -> None:
    # The same CLI version `make e2e` builds: the one the pulumi SDK pin in requirements.txt names.
    pin = re.search(r"^pulumi==(\S+)$", (ROOT / "requirements.txt").read_text(), re.M)
    assert pin
    for file in ("pr.yml", "deploy-environment.yml"):
        for job in load(file)["jobs"].values():
            if any(s.get("uses", "").startswith("pulumi/actions@") for s in steps(job)):
                pins = next(s for s in steps(job) if s.get("id") == "pins")
                script = pins["run"].replace('"$GITHUB_OUTPUT"', "/dev/stdout")
                out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, check=True)
                assert out.stdout.strip() == f"pulumi={pin[1]}"
                assert step_using(job, "pulumi/actions")["with"]["pulumi-version"] == "${{ steps.pins.outputs.pulumi }}"


def test_permissions_minimal() -> None:
    for file in FILES:
        assert load(file.name)["permissions"] == {}, f"{file.name}: workflow-level permissions must be empty"
    for file, job_id, job in all_jobs():
        permissions = job.get("permissions")
        assert isinstance(permissions, dict), f"{file} {job_id}: explicit job permissions required"
        for scope, level in permissions.items():
            assert ALLOWED_PERMISSIONS.get(scope) == level, f"{file} {job_id}: {scope}: {level}"
    pr = load("pr.yml")["jobs"]
    assert pr["test"]["permissions"] == {"contents": "read"}
    assert pr["preview"]["permissions"] == {"id-token": "write", "contents": "read", "pull-requests": "write"}


def test_pr_test_and_plan_diff_jobs() -> None:
    pr = load("pr.yml")
    assert set(pr["on"]) == {"pull_request"}
    jobs = pr["jobs"]
    runs = [s["run"] for s in steps(jobs["test"]) if "run" in s]
    assert runs[-1] == "make test"
    # CI has no shared/ beside the checkout: the KubeRay CRDs are fetched at the pinned version.
    assert "../shared/kuberay-crds/v$version" in runs[0] and "KUBERAY_VERSION" in runs[0]
    plan = jobs["plan-diff"]
    assert step_using(plan, "actions/checkout")["with"]["fetch-depth"] == 0
    [render] = [s for s in steps(plan) if "make plan-diff" in s.get("run", "")]
    assert render["run"].startswith('make plan-diff BASE="origin/$BASE_REF"')
    assert render["env"]["BASE_REF"] == "${{ github.base_ref }}"
    comment = step_using(plan, "marocchino/sticky-pull-request-comment")
    assert comment["with"] == {"header": "plan-diff", "path": "build/plan-diff.md"}
    assert comment["if"].startswith("always()")


def test_pr_preview_job() -> None:
    jobs = load("pr.yml")["jobs"]
    preview = jobs["preview"]
    assert preview["needs"] == "stacks"
    assert preview["strategy"]["matrix"]["stack"] == "${{ fromJSON(needs.stacks.outputs.stacks) }}"
    assert jobs["stacks"]["outputs"]["stacks"] == "${{ steps.pick.outputs.stacks }}"
    pulumi = step_using(preview, "pulumi/actions")
    assert pulumi["uses"].startswith("pulumi/actions@")
    assert pulumi["with"]["pulumi-version"] == "${{ steps.pins.outputs.pulumi }}"
    assert pulumi["with"]["command"] == "preview"
    assert pulumi["with"]["diff"] is True and pulumi["with"]["comment-on-pr"] is True
    assert pulumi["with"]["stack-name"] == "${{ matrix.stack }}"
    assert pulumi["with"]["policyPacks"] == "policy"
    assert pulumi["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    aws = step_using(preview, "aws-actions/configure-aws-credentials")
    assert aws["with"]["role-to-assume"] == "${{ vars.AWS_PREVIEW_ROLE_ARN }}"
    assert "head.repo.full_name == github.repository" in preview["if"]


def test_deploy_order_and_gates() -> None:
    deploy = load("deploy.yml")
    assert deploy["on"] == {"push": {"branches": ["main"]}}
    assert deploy["concurrency"]["cancel-in-progress"] is False and deploy["concurrency"]["group"]
    jobs = deploy["jobs"]
    assert list(jobs) == ["dev", "staging", "prod"]
    assert "needs" not in jobs["dev"]
    assert jobs["staging"]["needs"] == "dev"
    assert jobs["prod"]["needs"] == "staging"
    for env, job in jobs.items():
        assert job["uses"] == "./.github/workflows/deploy-environment.yml"
        assert job["with"] == {"environment": env}
        assert job["secrets"] == {"PULUMI_ACCESS_TOKEN": "${{ secrets.PULUMI_ACCESS_TOKEN }}"}
    # The called job is the one bound to the environment, so prod's reviewers gate it.
    callee = load("deploy-environment.yml")
    assert set(callee["on"]) == {"workflow_call"}
    assert callee["jobs"]["up"]["environment"] == "${{ inputs.environment }}"


def test_deploy_runs_pulumi_up_with_policy_pack() -> None:
    job = load("deploy-environment.yml")["jobs"]["up"]
    assert step_using(job, "aws-actions/configure-aws-credentials")["with"]["role-to-assume"] == (
        "${{ vars.AWS_DEPLOY_ROLE_ARN }}"
    )
    assert "command" not in step_using(job, "pulumi/actions")["with"]  # installs the CLI only
    assert job["runs-on"] == """${{ fromJSON(vars.DEPLOY_RUNS_ON || '"ubuntu-latest"') }}"""
    [up] = [s for s in steps(job) if "pulumi up" in s.get("run", "")]
    assert "--policy-pack policy" in up["run"] and "--yes" in up["run"]
    assert up["env"]["STACKS"] == "${{ steps.stacks.outputs.stacks }}"
    assert up["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"


SECRET_LITERALS = {
    "AWS access key id": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "Pulumi access token": re.compile(r"\bpul-[0-9a-f]{40}\b"),
    "GitHub token": re.compile(r"\bgh[pousr]_[A-Za-z0-9]{36,}\b"),
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS account-specific ARN": re.compile(r"arn:aws:[a-z0-9-]+:[a-z0-9-]*:\d{12}:"),
}
SENSITIVE_NAME = re.compile(r"TOKEN|SECRET|PASSWORD|PASSPHRASE|KEY|role-to-assume", re.IGNORECASE)


def _mappings(node: Any) -> Iterator[dict[str, Any]]:
    """Every mapping in a workflow, except permission blocks (`id-token: write` is no credential)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key != "permissions":
                yield from _mappings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _mappings(value)


def test_no_secrets_in_files() -> None:
    for file in FILES:
        text = file.read_text()
        for what, pattern in SECRET_LITERALS.items():
            assert not pattern.search(text), f"{file.name}: looks like a literal {what}"
        # Every credential-like input or env var comes from an expression (secrets./vars.).
        for mapping in _mappings(load(file.name)):
            for key, value in mapping.items():
                if isinstance(key, str) and isinstance(value, str) and SENSITIVE_NAME.search(key):
                    assert value.startswith("${{") and value.endswith("}}"), f"{file.name}: {key}: {value!r}"


# ---------------------------------------------------------------- the shell steps, executed


def step_script(workflow: str, job: str, step_id: str) -> str:
    [step] = [s for s in steps(load(workflow)["jobs"][job]) if s.get("id") == step_id]
    return step["run"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@example.com", "-C", str(repo), *args],
                   check=True, capture_output=True)


def run_step(script: str, cwd: Path, tmp_path: Path, **env: str) -> tuple[int, dict[str, str], str]:
    output = tmp_path / "github_output"
    output.write_text("")
    result = subprocess.run(
        ["bash", "-e", "-c", script], cwd=cwd, capture_output=True, text=True,
        env={"PATH": os.environ["PATH"], "GITHUB_OUTPUT": str(output), **env},
    )
    outputs = dict(line.split("=", 1) for line in output.read_text().splitlines())
    return result.returncode, outputs, result.stdout + result.stderr


STACK_NAMES = ["dev", "local", "nlp-prod", "prod", "staging", "vision-dev", "vision-prod"]
ALL_CI_STACKS = sorted(set(STACK_NAMES) - {"local"})


@pytest.fixture
def scratch_repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "components" / "platform").mkdir(parents=True)
    for stack in STACK_NAMES:
        (repo / "stacks" / f"Pulumi.{stack}.yaml").write_text(f"config: {{}}  # {stack}\n")
    for name in ("components/platform/network.py", "README.md", "requirements-dev.txt", "__main__.py"):
        (repo / name).write_text("# v1\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", ".")
    git(repo, "commit", "-q", "-m", "base")
    # What actions/checkout with fetch-depth 0 gives the job: the base branch as origin/main.
    git(repo, "update-ref", "refs/remotes/origin/main", "HEAD")
    git(repo, "checkout", "-q", "-b", "feature")
    return repo


@pytest.mark.parametrize(
    ("edits", "expected"),
    [
        ({"stacks/Pulumi.vision-dev.yaml": "edit"}, ["vision-dev"]),
        ({"stacks/Pulumi.vision-dev.yaml": "edit", "stacks/Pulumi.prod.yaml": "edit"}, ["prod", "vision-dev"]),
        ({"components/platform/network.py": "edit"}, ALL_CI_STACKS),
        ({"__main__.py": "edit", "README.md": "edit"}, ALL_CI_STACKS),
        ({"requirements-dev.txt": "edit"}, ALL_CI_STACKS),
        ({"Pulumi.yaml": "edit"}, ALL_CI_STACKS),
        ({"policy/__main__.py": "edit"}, ALL_CI_STACKS),
        ({"README.md": "edit"}, []),
        ({"stacks/Pulumi.local.yaml": "edit"}, []),
        ({"stacks/Pulumi.nlp-prod.yaml": "delete", "stacks/Pulumi.audio-dev.yaml": "edit"}, ["audio-dev"]),
    ],
)
def test_preview_matrix_from_changed_files(
    scratch_repo: Path, tmp_path: Path, edits: dict[str, str], expected: list[str]
) -> None:
    for name, action in edits.items():
        path = scratch_repo / name
        if action == "delete":
            path.unlink()
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("# changed\n")
    git(scratch_repo, "add", "-A")
    git(scratch_repo, "commit", "-q", "-m", "change")
    code, outputs, log = run_step(step_script("pr.yml", "stacks", "pick"), scratch_repo, tmp_path, BASE_REF="main")
    assert code == 0, log
    assert json.loads(outputs["stacks"]) == expected


def test_preview_matrix_fails_on_unknown_base(scratch_repo: Path, tmp_path: Path) -> None:
    code, _, _ = run_step(step_script("pr.yml", "stacks", "pick"), scratch_repo, tmp_path, BASE_REF="nope")
    assert code != 0


def test_deploy_stack_order(scratch_repo: Path, tmp_path: Path) -> None:
    script = step_script("deploy-environment.yml", "up", "stacks")
    code, outputs, log = run_step(script, scratch_repo, tmp_path, ENVIRONMENT="prod")
    assert code == 0, log
    assert outputs["stacks"].split() == ["prod", "nlp-prod", "vision-prod"]
    code, outputs, _ = run_step(script, scratch_repo, tmp_path, ENVIRONMENT="dev")
    assert outputs["stacks"].split() == ["dev", "vision-dev"]
    code, _, log = run_step(script, scratch_repo, tmp_path, ENVIRONMENT="qa")
    assert code == 1 and "no platform stack file stacks/Pulumi.qa.yaml" in log
