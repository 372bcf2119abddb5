"""Offline plan diff: what a change does to every stack, with no Pulumi CLI, cloud or cluster.

Renders every stack (Pulumi mocks, `tools.render --all`) twice: at BASE in a
temporary detached `git worktree` and in the working tree, then compares each
stack's resources by URN. The Markdown it prints is meant for a PR comment.

    python -m tools.plan_diff --base origin/main [--head DIR] [--render-cmd CMD] [--out FILE]

The render command is a shell command template run from the root of the tree
being rendered: `{out}` is the folder it must fill with
`<stack>/resources.json`, `{python}` this interpreter. It defaults to
$RAY_PLATFORM_RENDER_CMD, else `{python} -m tools.render --all --out {out}`.

Exit codes: 0 nothing changed, 2 something changed, 1 error.
"""
from __future__ import annotations

import argparse
import contextlib
import difflib
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from components.config.model import SECRET_PLACEHOLDER as SECRET

RENDER_CMD_ENV: Final = "RAY_PLATFORM_RENDER_CMD"
DEFAULT_RENDER_CMD: Final = "{python} -m tools.render --all --out {out}"
STACK_FILE = re.compile(r"^Pulumi\.(?P<stack>.+)\.yaml$")
# GitHub rejects comments over 65,536 characters; keep room for the workflow's own header.
COMMENT_LIMIT: Final = 60_000
# A stack section longer than this many lines is folded into <details>.
FOLD_LINES: Final = 20
_PLAIN_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*$")

ADD: Final = "add"
REMOVE: Final = "remove"
CHANGE: Final = "change"
_MARKERS: Final = {ADD: "+", REMOVE: "-", CHANGE: "~"}

CHANGED: Final = "changed"
UNCHANGED: Final = "unchanged"
NEW: Final = "new"
REMOVED: Final = "removed"
_STATUS_LABELS: Final = {
    CHANGED: "affected",
    UNCHANGED: "unaffected",
    NEW: "new stack",
    REMOVED: "removed stack",
}


class PlanDiffError(Exception):
    """A failure that makes the diff meaningless: git, the renderer, or its output."""


class _Absent:
    """Marks a property that exists on one side only (None is a real JSON value)."""

    def __repr__(self) -> str:
        return "(absent)"


ABSENT: Final = _Absent()


@dataclass(frozen=True)
class PropertyChange:
    path: str
    old: Any
    new: Any


@dataclass(frozen=True)
class ResourceChange:
    action: str  # ADD, REMOVE or CHANGE
    urn: str
    type: str
    name: str
    properties: tuple[PropertyChange, ...] = ()


@dataclass(frozen=True)
class StackDiff:
    stack: str
    status: str  # CHANGED, UNCHANGED, NEW or REMOVED
    resources: tuple[ResourceChange, ...]
    resource_count: int  # on the head side, or the base side for a removed stack

    def count(self, action: str) -> int:
        return sum(1 for change in self.resources if change.action == action)


@dataclass(frozen=True)
class PlanDiff:
    base: str
    head: str
    stacks: tuple[StackDiff, ...]

    @property
    def changed(self) -> bool:
        return any(stack.status != UNCHANGED for stack in self.stacks)


# ---------------------------------------------------------------- pure diffing


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    if not _PLAIN_KEY.match(key):
        # Label keys such as app.kubernetes.io/name would read as nested paths.
        return f"{path}[{json.dumps(key)}]"
    return f"{path}.{key}" if path else key


def _same(old: Any, new: Any) -> bool:
    # json.dumps tells 1 from 1.0 and True from 1, which == does not.
    return json.dumps(old, sort_keys=True) == json.dumps(new, sort_keys=True)


def diff_values(old: Any, new: Any, path: str = "") -> list[PropertyChange]:
    """Property-level differences between two JSON values, with nested paths.

    Either side may be ABSENT. Where either side is a secret, both sides are
    reported as SECRET: showing the plain side would leak what the other hides.
    """
    if old == SECRET or new == SECRET:
        if old == new:
            return []
        masked_old = ABSENT if old is ABSENT else SECRET
        masked_new = ABSENT if new is ABSENT else SECRET
        return [PropertyChange(path, masked_old, masked_new)]
    if isinstance(old, dict) and isinstance(new, dict):
        changes: list[PropertyChange] = []
        for key in sorted(old.keys() | new.keys()):
            changes += diff_values(old.get(key, ABSENT), new.get(key, ABSENT), _join(path, key))
        return changes
    if isinstance(old, list) and isinstance(new, list):
        changes = []
        for index in range(max(len(old), len(new))):
            before = old[index] if index < len(old) else ABSENT
            after = new[index] if index < len(new) else ABSENT
            changes += diff_values(before, after, _join(path, index))
        return changes
    if old is not ABSENT and new is not ABSENT and _same(old, new):
        return []
    return [PropertyChange(path, old, new)]


def _index(resources: Sequence[Mapping[str, Any]], side: str) -> dict[str, Mapping[str, Any]]:
    by_urn: dict[str, Mapping[str, Any]] = {}
    for resource in resources:
        missing = [key for key in ("urn", "type", "name") if key not in resource]
        if missing:
            raise PlanDiffError(f"{side}: a resource lacks {', '.join(missing)}: {json.dumps(resource)[:200]}")
        if resource["urn"] in by_urn:
            raise PlanDiffError(f"{side}: duplicate URN {resource['urn']}")
        by_urn[resource["urn"]] = resource
    return by_urn


def diff_resources(
    base: Sequence[Mapping[str, Any]], head: Sequence[Mapping[str, Any]]
) -> list[ResourceChange]:
    """Added, removed and changed resources between two rendered stacks, matched by URN."""
    old, new = _index(base, "base"), _index(head, "head")
    changes: list[ResourceChange] = []
    for urn in sorted(old.keys() | new.keys()):
        if urn not in old:
            changes.append(ResourceChange(ADD, urn, new[urn]["type"], new[urn]["name"]))
        elif urn not in new:
            changes.append(ResourceChange(REMOVE, urn, old[urn]["type"], old[urn]["name"]))
        else:
            properties = diff_values(old[urn].get("inputs", {}), new[urn].get("inputs", {}))
            # A URN names the parent's type, not the parent itself.
            if old[urn].get("parent") != new[urn].get("parent"):
                properties.insert(0, PropertyChange("(parent)", old[urn].get("parent"), new[urn].get("parent")))
            if properties:
                changes.append(ResourceChange(CHANGE, urn, new[urn]["type"], new[urn]["name"], tuple(properties)))
    return changes


def diff_stacks(
    base: Mapping[str, Sequence[Mapping[str, Any]]], head: Mapping[str, Sequence[Mapping[str, Any]]]
) -> list[StackDiff]:
    """One StackDiff per stack on either side, sorted by name."""
    stacks: list[StackDiff] = []
    for stack in sorted(base.keys() | head.keys()):
        if stack not in base:
            changes = diff_resources([], head[stack])
            stacks.append(StackDiff(stack, NEW, tuple(changes), len(head[stack])))
        elif stack not in head:
            changes = diff_resources(base[stack], [])
            stacks.append(StackDiff(stack, REMOVED, tuple(changes), len(base[stack])))
        else:
            changes = diff_resources(base[stack], head[stack])
            stacks.append(StackDiff(stack, CHANGED if changes else UNCHANGED, tuple(changes), len(head[stack])))
    return stacks


# ---------------------------------------------------------------- Markdown


def _show(value: Any) -> str:
    if value is ABSENT:
        return "(absent)"
    if value == SECRET:
        return SECRET
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def _property_lines(change: PropertyChange) -> list[str]:
    path = change.path or "(inputs)"
    if isinstance(change.old, str) and isinstance(change.new, str) and "\n" in change.old + change.new:
        # Embedded documents (serve configs, policies) read better as a line diff.
        diff = difflib.unified_diff(change.old.splitlines(), change.new.splitlines(), lineterm="", n=2)
        return [f"    {path}:"] + [f"      {line}" for line in list(diff)[2:]]
    return [f"    {path}: {_show(change.old)} -> {_show(change.new)}"]


def _fence(lines: list[str], language: str = "diff") -> list[str]:
    # The fence must be longer than any backtick run inside, or a value could close it.
    longest = max((len(run) for line in lines for run in re.findall(r"`+", line)), default=0)
    fence = "`" * max(3, longest + 1)
    return [f"{fence}{language}", *lines, fence]


def _stack_section(stack: StackDiff) -> list[str]:
    body: list[str] = []
    for change in stack.resources:
        body.append(f"{_MARKERS[change.action]} {change.type} {change.name}")
        for prop in change.properties:
            body += _property_lines(prop)
    counts = f"{stack.count(ADD)} to add, {stack.count(CHANGE)} to change, {stack.count(REMOVE)} to remove"
    lines = [f"#### `{stack.stack}` ({_STATUS_LABELS[stack.status]}): {counts}", ""]
    block = _fence(body)
    if len(block) > FOLD_LINES:
        return [*lines, f"<details><summary>{len(stack.resources)} resource(s)</summary>", "", *block, "", "</details>", ""]
    return [*lines, *block, ""]


def render_markdown(plan: PlanDiff, limit: int = COMMENT_LIMIT) -> str:
    """A PR comment: summary table of every stack, then details of each affected one.

    Stack sections that would push the text past `limit` characters are left
    out with a note, so the comment is never rejected for its size.
    """
    head = [
        "### Offline plan diff",
        "",
        f"Base `{plan.base}` -> head `{plan.head}`. Rendered under Pulumi mocks, "
        f"so only inputs are compared; secrets show as `{SECRET}`.",
        "",
    ]
    affected = [stack for stack in plan.stacks if stack.status != UNCHANGED]
    if affected:
        head += [f"**{len(affected)} of {len(plan.stacks)} stack(s) affected.**", ""]
    else:
        head += [f"**No changes:** all {len(plan.stacks)} stack(s) render the same resources as the base.", ""]
    head += ["| Stack | Status | Add | Change | Remove | Resources |", "| --- | --- | ---: | ---: | ---: | ---: |"]
    for stack in plan.stacks:
        head.append(
            f"| `{stack.stack}` | {_STATUS_LABELS[stack.status]} | {stack.count(ADD)} | "
            f"{stack.count(CHANGE)} | {stack.count(REMOVE)} | {stack.resource_count} |"
        )
    text = "\n".join(head) + "\n\n"
    for index, stack in enumerate(affected):
        section = "\n".join(_stack_section(stack)) + "\n"
        if len(text) + len(section) > limit:
            left = ", ".join(f"`{s.stack}`" for s in affected[index:])
            text += (
                f"_Details of {left} left out to fit a PR comment; "
                f"run `make plan-diff BASE=<rev>` locally for the full diff._\n"
            )
            break
        text += section
    return text


# ---------------------------------------------------------------- rendering trees


def list_stacks(tree: Path) -> list[str]:
    """Stack names, from the stack files stacks/Pulumi.<stack>.yaml."""
    stacks_dir = tree / "stacks"
    if not stacks_dir.is_dir():
        return []
    return sorted(m["stack"] for f in stacks_dir.iterdir() if (m := STACK_FILE.match(f.name)))


def _render_command(template: str, out: Path) -> str:
    # str.replace, not str.format: a shell command may hold literal braces.
    return template.replace("{out}", shlex.quote(str(out))).replace("{python}", shlex.quote(sys.executable))


def render_trees(trees: Mapping[str, Path], template: str, work: Path) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """Render each named tree (concurrently: each is a full evaluation of every stack).

    Returns side -> stack -> resources, for exactly the stacks whose files the
    tree holds.
    """
    running: dict[str, tuple[subprocess.Popen[bytes], Path, Path]] = {}
    try:
        for side, tree in trees.items():
            out, log = work / f"render-{side}", work / f"render-{side}.log"
            out.mkdir()
            with log.open("wb") as handle:
                process = subprocess.Popen(
                    _render_command(template, out), shell=True, cwd=tree,
                    stdin=subprocess.DEVNULL, stdout=handle, stderr=subprocess.STDOUT,
                )
            running[side] = (process, out, log)
        for side, (process, _, log) in running.items():
            if process.wait() != 0:
                tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:])
                raise PlanDiffError(f"rendering the {side} tree failed (exit {process.returncode}):\n{tail}")
    finally:
        for process, _, _ in running.values():
            if process.poll() is None:
                process.kill()
                process.wait()
    return {side: _load_rendered(out, list_stacks(trees[side]), side) for side, (_, out, _) in running.items()}


def _load_rendered(out: Path, stacks: Sequence[str], side: str) -> dict[str, list[dict[str, Any]]]:
    loaded: dict[str, list[dict[str, Any]]] = {}
    for stack in stacks:
        path = out / stack / "resources.json"
        try:
            resources = json.loads(path.read_text())
        except FileNotFoundError:
            raise PlanDiffError(f"{side}: the renderer wrote no {stack}/resources.json") from None
        except json.JSONDecodeError as error:
            raise PlanDiffError(f"{side}: {stack}/resources.json is not JSON: {error}") from None
        if not isinstance(resources, list):
            raise PlanDiffError(f"{side}: {stack}/resources.json is not a list")
        loaded[stack] = resources
    return loaded


def _git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise PlanDiffError(f"git {' '.join(args)} failed: {result.stderr.strip()}")
    return result.stdout.strip()


@contextlib.contextmanager
def base_worktree(repo: Path, commit: str, parent: Path) -> Iterator[Path]:
    """A detached worktree of `commit` under `parent`, removed on exit whatever happens."""
    path = parent / "base"
    # Code finds shared/ (e.g. the KubeRay CRDs) beside the project root; give the
    # worktree the same neighbour.
    shared = repo.parent / "shared"
    if shared.is_dir():
        (parent / "shared").symlink_to(shared.resolve())
    try:
        _git(repo, "worktree", "add", "--detach", "--quiet", str(path), commit)
        yield path
    finally:
        subprocess.run(["git", "-C", str(repo), "worktree", "remove", "--force", str(path)],
                       capture_output=True, stdin=subprocess.DEVNULL)
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(["git", "-C", str(repo), "worktree", "prune"], capture_output=True, stdin=subprocess.DEVNULL)


def plan_diff(base: str, head: Path, template: str) -> PlanDiff:
    """Render `base` (a git revision of the repo holding `head`) and the working tree `head`, and diff them."""
    repo = Path(_git(head, "rev-parse", "--show-toplevel"))
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{base}^{{commit}}")
    except PlanDiffError:
        raise PlanDiffError(f"unknown base revision {base!r} (in CI, check out with fetch-depth: 0)") from None
    head_label = f"{_git(repo, 'rev-parse', '--short', 'HEAD')} + working tree"
    with tempfile.TemporaryDirectory(prefix="plan-diff-") as scratch:
        work = Path(scratch)
        with base_worktree(repo, commit, work) as base_tree:
            rendered = render_trees({"base": base_tree, "head": head}, template, work)
    stacks = diff_stacks(rendered["base"], rendered["head"])
    return PlanDiff(base=f"{base} ({commit[:12]})", head=head_label, stacks=tuple(stacks))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="git revision to compare against, e.g. origin/main")
    parser.add_argument("--head", type=Path, default=Path.cwd(), help="working tree to compare (default: here)")
    parser.add_argument(
        "--render-cmd",
        default=os.environ.get(RENDER_CMD_ENV, DEFAULT_RENDER_CMD),
        help="shell command template with {out} (and {python}); default: $%s or %r" % (RENDER_CMD_ENV, DEFAULT_RENDER_CMD),
    )
    parser.add_argument("--out", type=Path, help="also write the Markdown to this file")
    parser.add_argument("--max-chars", type=int, default=COMMENT_LIMIT, help="cap on the Markdown's length")
    args = parser.parse_args(argv)
    try:
        plan = plan_diff(args.base, args.head.resolve(), args.render_cmd)
    except PlanDiffError as error:
        print(f"plan-diff: error: {error}", file=sys.stderr)
        if args.out:
            # The PR comment then says the diff failed instead of showing a stale one.
            args.out.parent.mkdir(parents=True, exist_ok=True)
            failure = ["### Offline plan diff", "", "**Failed:**", "", *_fence(str(error).splitlines(), "text")]
            args.out.write_text("\n".join(failure) + "\n")
        return 1
    markdown = render_markdown(plan, args.max_chars)
    print(markdown, end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown)
    return 2 if plan.changed else 0


if __name__ == "__main__":
    sys.exit(main())
