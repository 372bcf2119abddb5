"""Deploy cost: the platform and a team stack through the real `pulumi` CLI against the floor, on
the e2e control plane.

The floor is the same work done by hand with the fewest moving parts: the same objects applied
server-side by `kubectl`, then the same readiness wait.
- platform: `pulumi up` of the `local` platform stack from nothing (CRDs kept, as its destroy
  keeps them) until Helm's wait is met, against applying what that `pulumi up` put on the
  cluster (the CRDs, the program's own objects from its offline render, each Helm release's
  hooks and manifest as Helm recorded them) and the same wait;
- deploy: `pulumi up` of a new team stack, namespace to RayCluster ready, against
  `kubectl apply --server-side` of the rendered objects into a new namespace, to ready;
- preview: `pulumi preview` of the unchanged stack against `kubectl diff --server-side`;
- no-change up: `pulumi up` with nothing to do against re-applying the unchanged objects.
For the team, ours and the floor alternate in every repeat, each on a namespace of its own.
"""
from __future__ import annotations

import time
from typing import Any

import yaml

from bench import kube
from bench.config import BenchConfig
from bench.stats import Figure, Target, number

SECTION = "deploy"
OURS, FLOOR = "deploy", "floor"
PLATFORM = kube.stacks.PLATFORM_STACK
# The floor is sub-second, so a ratio magnifies the engine's fixed start-up (CLI, language host,
# program, provider plugin: a few seconds, paid once per command): the bound is five floors.
TARGET = Target("<=", 5.0)


def ours_once(state: dict[str, Any], team: str) -> dict[str, float]:
    path = str(kube.team_file(team))
    kube.init_stack(state, team)
    watch = kube.ReadyWatch(kube.namespace(team))
    kube.pulumi_timed(state, "up", "--yes", "--skip-preview", "--stack", team, "--config-file", path)
    deploy_s, _ = watch.wait(until=time.monotonic())
    preview_s, _, _ = kube.pulumi_timed(state, "preview", "--expect-no-changes", "--stack", team,
                                        "--config-file", path)
    unchanged_s, _, _ = kube.pulumi_timed(state, "up", "--yes", "--skip-preview", "--expect-no-changes",
                                          "--stack", team, "--config-file", path)
    kube.stacks.pulumi(state, "destroy", "--yes", "--stack", team, "--config-file", path)
    kube.stacks.pulumi(state, "stack", "rm", team, "--yes")
    return {"deploy": deploy_s, "preview": preview_s, "unchanged": unchanged_s}


def floor_once(team: str) -> dict[str, float]:
    objects = kube.rendered_yaml(team)
    watch = kube.ReadyWatch(kube.namespace(team))
    kube.floor_apply(objects)
    deploy_s, _ = watch.wait(until=time.monotonic())
    preview_s = kube.floor_diff(objects)
    unchanged_s = kube.floor_apply(objects)
    kube.delete_namespace(kube.namespace(team))
    return {"deploy": deploy_s, "preview": preview_s, "unchanged": unchanged_s}


def platform_once(state: dict[str, Any]) -> tuple[float, float]:
    """(ours, floor) for the platform from nothing: `pulumi up` of the `local` platform stack against
    applying the objects it deployed (read back from the cluster and the Helm releases) to the same
    API server, each followed by Helm's readiness wait. The CRDs stay between runs, as a platform's
    destroy leaves them; the platform is deployed again at the end."""
    path = str(kube.stacks.layered(state, PLATFORM))
    verbs = ("--stack", PLATFORM, "--config-file", path)
    objects, namespaces = kube.platform_floor(state)
    kube.stacks.pulumi(state, "destroy", "--yes", *verbs)
    started = time.monotonic()
    kube.pulumi_timed(state, "up", "--yes", "--skip-preview", *verbs)
    kube.wait_workloads(namespaces)
    ours = time.monotonic() - started
    kube.stacks.pulumi(state, "destroy", "--yes", *verbs)
    started = time.monotonic()
    kube.floor_apply(yaml.safe_dump_all(objects, sort_keys=False))
    kube.wait_workloads(namespaces)
    floor = time.monotonic() - started
    kube.delete_objects(objects)
    kube.stacks.pulumi(state, "up", "--yes", "--skip-preview", *verbs)
    return ours, floor


def run(cfg: BenchConfig) -> list[Figure]:
    ours: list[dict[str, float]] = []
    floor: list[dict[str, float]] = []
    platform: list[tuple[float, float]] = []
    with kube.control_plane() as state:
        for repeat in range(cfg.repeats[SECTION]):
            ours.append(ours_once(state, f"{OURS}{repeat}"))
            floor.append(floor_once(f"{FLOOR}{repeat}"))
            print(f"  team, repeat {repeat + 1}: ours {ours[-1]}, floor {floor[-1]}", flush=True)
        for repeat in range(cfg.repeats[SECTION]):
            platform.append(platform_once(state))
            print(f"  platform, repeat {repeat + 1}: ours {platform[-1][0]:.1f} s, floor {platform[-1][1]:.1f} s",
                  flush=True)
    names = {"deploy": "team `pulumi up` -> RayCluster ready (floor: kubectl apply --server-side -> ready)",
             "preview": "`pulumi preview`, unchanged team stack (floor: kubectl diff --server-side)",
             "unchanged": "`pulumi up` with no change (floor: kubectl apply --server-side, unchanged)"}
    figures = [Figure(SECTION, "platform `pulumi up` from nothing (floor: its objects applied server-side)", "s",
                      [o for o, _ in platform], [f for _, f in platform], TARGET)]
    for key, name in names.items():
        figure = Figure(SECTION, name, "s", [o[key] for o in ours], [f[key] for f in floor], TARGET)
        figure.note = f"ours - floor = {number(figure.ours_median - figure.baseline_median)} s"
        figures.append(figure)
    return figures
