"""tools.plan_diff: the pure diff/Markdown functions, then the CLI on a scratch git repo with a fake renderer."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tools.plan_diff import (
    ABSENT,
    ADD,
    CHANGE,
    CHANGED,
    NEW,
    REMOVE,
    REMOVED,
    SECRET,
    UNCHANGED,
    PlanDiff,
    PlanDiffError,
    PropertyChange,
    ResourceChange,
    StackDiff,
    diff_resources,
    diff_stacks,
    diff_values,
    list_stacks,
    main,
    render_markdown,
)

ROOT = Path(__file__).resolve().parents[2]
IMAGE_OLD = "rayproject/ray:2.59.0-py311-cpu"
IMAGE_NEW = "rayproject/ray:2.60.0-py311-cpu"


def resource(name: str, inputs: Any, type_: str = "kubernetes:ray.io/v1:RayCluster", parent: str | None = None) -> dict[str, Any]:
    return {
        "type": type_,
        "name": name,
        "urn": f"urn:pulumi:dev::ray-platform::{type_}::{name}",
        "parent": parent,
        "inputs": inputs,
    }


def ray_cluster_inputs(image: str) -> dict[str, Any]:
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "metadata": {"name": "vision", "labels": {"app.kubernetes.io/name": "ray"}},
        "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": image}]}}}},
    }


# ---------------------------------------------------------------- diff_values


def test_nested_paths() -> None:
    changes = diff_values(ray_cluster_inputs(IMAGE_OLD), ray_cluster_inputs(IMAGE_NEW))
    assert changes == [
        PropertyChange("spec.headGroupSpec.template.spec.containers[0].image", IMAGE_OLD, IMAGE_NEW)
    ]


def test_added_removed_keys_list_items_and_quoted_keys() -> None:
    old = {"a": 1, "items": [1, 2, 3], "labels": {"app.kubernetes.io/name": "x"}}
    new = {"b": None, "items": [1, 2], "labels": {"app.kubernetes.io/name": "y"}}
    assert diff_values(old, new) == [
        PropertyChange("a", 1, ABSENT),
        PropertyChange("b", ABSENT, None),
        PropertyChange("items[2]", 3, ABSENT),
        PropertyChange('labels["app.kubernetes.io/name"]', "x", "y"),
    ]


def test_type_changes_are_changes() -> None:
    assert diff_values({"n": 1}, {"n": 1.0}) == [PropertyChange("n", 1, 1.0)]
    assert diff_values({"n": 1}, {"n": True}) == [PropertyChange("n", 1, True)]
    assert diff_values({"n": {"a": 1}}, {"n": [1]}) == [PropertyChange("n", {"a": 1}, [1])]
    assert diff_values({"n": [1, {"a": 2}]}, {"n": [1, {"a": 2}]}) == []


def test_secrets_are_masked_on_both_sides() -> None:
    assert diff_values({"password": SECRET}, {"password": SECRET}) == []
    # plain -> secret and secret -> plain: the plain value is never shown.
    assert diff_values({"password": "hunter2"}, {"password": SECRET}) == [PropertyChange("password", SECRET, SECRET)]
    assert diff_values(SECRET, {"user": "admin", "password": "hunter2"}) == [PropertyChange("", SECRET, SECRET)]
    assert diff_values({}, {"token": SECRET}) == [PropertyChange("token", ABSENT, SECRET)]


# ---------------------------------------------------------------- diff_resources / diff_stacks


def test_diff_resources_by_urn() -> None:
    base = [resource("keep", {"a": 1}), resource("gone", {}), resource("moved", {}, parent="urn:a")]
    head = [resource("new", {}), resource("keep", {"a": 2}), resource("moved", {}, parent="urn:b")]
    changes = {change.name: change for change in diff_resources(base, head)}
    assert changes["new"].action == ADD and changes["gone"].action == REMOVE
    assert changes["keep"] == ResourceChange(
        CHANGE, base[0]["urn"], base[0]["type"], "keep", (PropertyChange("a", 1, 2),)
    )
    assert changes["moved"].properties == (PropertyChange("(parent)", "urn:a", "urn:b"),)


def test_diff_resources_rejects_bad_input() -> None:
    with pytest.raises(PlanDiffError, match="duplicate URN"):
        diff_resources([resource("a", {}), resource("a", {})], [])
    with pytest.raises(PlanDiffError, match="lacks urn"):
        diff_resources([], [{"type": "t", "name": "n"}])


def test_diff_stacks_statuses() -> None:
    same = [resource("a", {"x": 1})]
    stacks = diff_stacks(
        {"dev": same, "old-dev": same, "vision-dev": same},
        {"dev": same, "nlp-dev": same, "vision-dev": [resource("a", {"x": 2})]},
    )
    assert [(s.stack, s.status, len(s.resources)) for s in stacks] == [
        ("dev", UNCHANGED, 0),
        ("nlp-dev", NEW, 1),
        ("old-dev", REMOVED, 1),
        ("vision-dev", CHANGED, 1),
    ]


# ---------------------------------------------------------------- render_markdown


def _plan(*stacks: StackDiff) -> PlanDiff:
    return PlanDiff(base="origin/main (abc)", head="def + working tree", stacks=stacks)


def test_markdown_summary_and_details() -> None:
    change = ResourceChange(
        CHANGE, "urn:x", "kubernetes:ray.io/v1:RayCluster", "vision",
        (PropertyChange("spec.headGroupSpec.template.spec.containers[0].image", "a", "b"),
         PropertyChange("spec.password", SECRET, SECRET)),
    )
    text = render_markdown(_plan(StackDiff("dev", UNCHANGED, (), 3), StackDiff("vision-dev", CHANGED, (change,), 5)))
    assert "| `dev` | unaffected | 0 | 0 | 0 | 3 |" in text
    assert "| `vision-dev` | affected | 0 | 1 | 0 | 5 |" in text
    assert "**1 of 2 stack(s) affected.**" in text
    assert "~ kubernetes:ray.io/v1:RayCluster vision" in text
    assert '    spec.headGroupSpec.template.spec.containers[0].image: "a" -> "b"' in text
    assert "    spec.password: [secret] -> [secret]" in text
    assert "#### `dev`" not in text and "<details>" not in text


def test_markdown_no_changes() -> None:
    text = render_markdown(_plan(StackDiff("dev", UNCHANGED, (), 3)))
    assert "**No changes:** all 1 stack(s) render the same resources as the base." in text


def test_markdown_folds_long_sections_and_respects_limit() -> None:
    many = tuple(ResourceChange(ADD, f"urn:{i}", "aws:iam/role:Role", f"role-{i}") for i in range(30))
    text = render_markdown(_plan(StackDiff("nlp-dev", NEW, many, 30)))
    assert "<details><summary>30 resource(s)</summary>" in text and "+ aws:iam/role:Role role-29" in text
    short = render_markdown(_plan(StackDiff("a-dev", NEW, many, 30), StackDiff("b-dev", NEW, many, 30)), limit=2000)
    assert len(short) <= 2000
    assert "Details of `b-dev` left out" in short and "`b-dev` | new stack" in short


def test_markdown_multiline_strings_and_backticks() -> None:
    change = ResourceChange(
        CHANGE, "urn:x", "kubernetes:ray.io/v1:RayService", "serve",
        (PropertyChange("spec.serveConfigV2", "a: 1\nb: 2\n", "a: 1\nb: 3\n"), PropertyChange("note", "```", "````")),
    )
    text = render_markdown(_plan(StackDiff("dev", CHANGED, (change,), 1)))
    assert "      -b: 2\n      +b: 3" in text
    assert "`````diff" in text  # longer than the four backticks inside


# ---------------------------------------------------------------- CLI on a scratch repo

FAKE_RENDER = '''\
"""Deterministic stand-in for tools.render: each top-level config key becomes a resource."""
import json, pathlib, sys
import yaml

def mask(value):
    if isinstance(value, dict):
        if set(value) == {"secure"}:
            return "[secret]"
        return {k: mask(v) for k, v in value.items()}
    if isinstance(value, list):
        return [mask(v) for v in value]
    return value

if "fail" in pathlib.Path("shared.json").read_text():
    sys.exit("renderer exploded")
out = pathlib.Path(sys.argv[1])
shared = json.loads(pathlib.Path("shared.json").read_text())
for stack_file in sorted(pathlib.Path("stacks").glob("Pulumi.*.yaml")):
    stack = stack_file.name[len("Pulumi."):-len(".yaml")]
    resources = []
    for key, value in yaml.safe_load(stack_file.read_text())["config"].items():
        t = "test:index:Setting"
        resources.append({"type": t, "name": key, "urn": f"urn:pulumi:{stack}::proj::{t}::{key}",
                          "parent": None, "inputs": mask(value)})
    t = "test:index:Shared"
    resources.append({"type": t, "name": "shared", "urn": f"urn:pulumi:{stack}::proj::{t}::shared",
                      "parent": None, "inputs": shared})
    (out / stack).mkdir(parents=True)
    (out / stack / "resources.json").write_text(json.dumps(resources))
'''
RENDER_CMD = "{python} render.py {out}"


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.name=test", "-c", "user.email=test@example.com", "-C", str(repo), *args],
        check=True, capture_output=True, text=True,
    ).stdout


def _stack(team: str, image: str, password: Any = "unused") -> str:
    return yaml.safe_dump({
        "config": {
            "ray-platform:team": team,
            "ray-platform:rayCluster": {
                "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": image}]}}}}
            },
            "ray-platform:db": {"user": "admin", "password": password},
        }
    })


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "stacks").mkdir(parents=True)
    (repo / "render.py").write_text(FAKE_RENDER)
    (repo / "shared.json").write_text(json.dumps({"rayVersion": "2.60.0"}))
    (repo / "stacks" / "Pulumi.vision-dev.yaml").write_text(_stack("vision", IMAGE_OLD))
    (repo / "stacks" / "Pulumi.nlp-dev.yaml").write_text(_stack("nlp", IMAGE_OLD))
    _git(repo, "init", "-q", "-b", "main")
    _git(repo, "add", ".")
    _git(repo, "commit", "-q", "-m", "initial")
    return repo


def _run(repo: Path, tmp_path: Path, base: str = "HEAD") -> tuple[int, str]:
    out = tmp_path / "out" / "plan-diff.md"
    code = main(["--base", base, "--head", str(repo), "--render-cmd", RENDER_CMD, "--out", str(out)])
    return code, out.read_text()


def _worktrees(repo: Path) -> list[str]:
    return [line for line in _git(repo, "worktree", "list", "--porcelain").splitlines() if line.startswith("worktree ")]


def test_no_change_exits_0_and_says_so(repo: Path, tmp_path: Path) -> None:
    code, text = _run(repo, tmp_path)
    assert code == 0
    assert "**No changes:** all 2 stack(s)" in text
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_team_stack_change_affects_only_that_stack(repo: Path, tmp_path: Path) -> None:
    (repo / "stacks" / "Pulumi.vision-dev.yaml").write_text(_stack("vision", IMAGE_NEW))
    code, text = _run(repo, tmp_path)
    assert code == 2
    assert "| `vision-dev` | affected | 0 | 1 | 0 | 4 |" in text
    assert "| `nlp-dev` | unaffected | 0 | 0 | 0 | 4 |" in text
    assert f'    spec.headGroupSpec.template.spec.containers[0].image: "{IMAGE_OLD}" -> "{IMAGE_NEW}"' in text
    assert "~ test:index:Setting ray-platform:rayCluster" in text
    assert "#### `nlp-dev`" not in text
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_shared_change_affects_every_stack(repo: Path, tmp_path: Path) -> None:
    (repo / "shared.json").write_text(json.dumps({"rayVersion": "2.61.0"}))
    _git(repo, "commit", "-q", "-am", "bump shared")
    code, text = _run(repo, tmp_path, base="HEAD~1")
    assert code == 2
    assert "**2 of 2 stack(s) affected.**" in text
    for stack in ("nlp-dev", "vision-dev"):
        assert f"#### `{stack}` (affected): 0 to add, 1 to change, 0 to remove" in text
    assert text.count('    rayVersion: "2.60.0" -> "2.61.0"') == 2


def test_secrets_never_printed(repo: Path, tmp_path: Path) -> None:
    (repo / "stacks" / "Pulumi.vision-dev.yaml").write_text(_stack("vision", IMAGE_OLD, password="hunter2"))
    _git(repo, "commit", "-q", "-am", "plaintext password")
    (repo / "stacks" / "Pulumi.vision-dev.yaml").write_text(
        _stack("vision", IMAGE_OLD, password={"secure": "v1:c2VjcmV0LWNpcGhlcnRleHQ="})
    )
    code, text = _run(repo, tmp_path)
    assert code == 2
    assert "    password: [secret] -> [secret]" in text
    assert "hunter2" not in text and "c2VjcmV0" not in text


def test_new_and_removed_stack_files(repo: Path, tmp_path: Path) -> None:
    (repo / "stacks" / "Pulumi.nlp-dev.yaml").unlink()
    (repo / "stacks" / "Pulumi.audio-dev.yaml").write_text(_stack("audio", IMAGE_NEW))
    code, text = _run(repo, tmp_path)
    assert code == 2
    assert "| `audio-dev` | new stack | 4 | 0 | 0 | 4 |" in text
    assert "| `nlp-dev` | removed stack | 0 | 0 | 4 | 4 |" in text
    assert "+ test:index:Shared shared" in text and "- test:index:Setting ray-platform:team" in text


def test_render_failure_exits_1_and_removes_worktree(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (repo / "shared.json").write_text(json.dumps({"mode": "fail"}))
    code, text = _run(repo, tmp_path)
    assert code == 1
    assert "rendering the head tree failed" in capsys.readouterr().err
    assert "**Failed:**" in text and "renderer exploded" in text
    assert _worktrees(repo) == [f"worktree {repo}"]


def test_unknown_base_exits_1(repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = _run(repo, tmp_path, base="no-such-branch")
    assert code == 1
    assert "unknown base revision 'no-such-branch'" in capsys.readouterr().err


def test_module_entry_point(repo: Path) -> None:
    (repo / "stacks" / "Pulumi.vision-dev.yaml").write_text(_stack("vision", IMAGE_NEW))
    result = subprocess.run(
        [sys.executable, "-m", "tools.plan_diff", "--base", "HEAD", "--head", str(repo), "--render-cmd", RENDER_CMD],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2, result.stderr
    assert "| `vision-dev` | affected |" in result.stdout


def test_list_stacks(repo: Path) -> None:
    assert list_stacks(repo) == ["nlp-dev", "vision-dev"]
    assert list_stacks(repo / "stacks") == []
