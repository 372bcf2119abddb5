"""Organisation scale: N team stacks deployed one after another by the real `pulumi up` on one
platform, on the e2e control plane with KWOK nodes and the real KubeRay operator.

Stack i is deployed while i-1 teams already run, so the figures for the stacks up to N = 1, 10
and 50 say how a team's deploy grows with the organisation: per stack, the seconds from `pulumi
up` starting to its RayCluster ready and `pulumi up` done, the operator's part of that (RayCluster created -> ready),
the API objects in the team's namespace, and the peak memory of the engine, the Kubernetes
provider and the language host. A straight line fitted through every stack's deploy time gives
the slope (seconds per team already there), and the line's value at the largest N against that
at the smallest says whether a team's deploy stays flat as the organisation grows (a linear
total cost).

The bench's stacks and namespaces are removed at the end (`pulumi stack rm --force`, then the
namespaces), which is cleanup, not a measured destroy.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from bench import kube
from bench.config import BenchConfig
from bench.stats import Figure, Target, fit_line, number
from tools.e2e import controlplane as cp

SECTION = "scale"
TEAM_PREFIX = "scale"
# "Linear or better": a team's deploy at the largest N at most a quarter slower than at the smallest.
FLAT_TARGET = Target("<=", 1.25, on_ratio=False)
# KWOK nodes added for the bench's RayClusters (each head asks 2 CPU, 4Gi and a small sidecar).
EXTRA_NODE_CPU, EXTRA_NODE_MEMORY, TEAMS_PER_EXTRA_NODE = "48", "192Gi", 16


@dataclass(frozen=True)
class StackSample:
    index: int
    deploy_s: float
    up_s: float
    reconcile_s: float
    objects: int
    memory_mib: dict[str, float]


def deploy(state: dict[str, Any], index: int, kinds: str) -> StackSample:
    team = f"{TEAM_PREFIX}{index:02d}"
    path = kube.team_file(team)
    kube.init_stack(state, team)
    watch = kube.ReadyWatch(kube.namespace(team))
    up_s, peaks, _ = kube.pulumi_timed(state, "up", "--yes", "--skip-preview", "--stack", team,
                                       "--config-file", str(path))
    deploy_s, reconcile_s = watch.wait(until=time.monotonic())
    return StackSample(index, deploy_s, up_s, reconcile_s, kube.api_objects(kube.namespace(team), kinds), peaks.mib)


def add_nodes(teams: int) -> list[str]:
    nodes = kube.cpu_capacity_nodes(-(-teams // TEAMS_PER_EXTRA_NODE), EXTRA_NODE_CPU, EXTRA_NODE_MEMORY)
    for node in nodes:
        cp.api("POST", "/api/v1/nodes", node)
    return [n["metadata"]["name"] for n in nodes]


def cleanup(state: dict[str, Any], count: int, nodes: list[str]) -> None:
    for index in range(1, count + 1):
        team = f"{TEAM_PREFIX}{index:02d}"
        kube.stacks.pulumi(state, "stack", "rm", team, "--force", "--yes", check=False)
        cp.kubectl("delete", "namespace", kube.namespace(team), "--ignore-not-found", "--wait=false", check=False)
    for index in range(1, count + 1):
        kube.delete_namespace(kube.namespace(f"{TEAM_PREFIX}{index:02d}"))
    for name in nodes:
        cp.kubectl("delete", "node", name, "--ignore-not-found", check=False)


def bracket_figures(samples: list[StackSample], sizes: tuple[int, ...]) -> list[Figure]:
    figures, previous = [], 0
    for size in sizes:
        group = [s for s in samples if previous < s.index <= size]
        label = f"N={size} (stacks {previous + 1}-{size})"
        previous = size
        roles = sorted({role for s in group for role in s.memory_mib})
        figures += [
            Figure(SECTION, f"team `pulumi up` -> RayCluster ready, {label}", "s", [s.deploy_s for s in group]),
            Figure(SECTION, f"of which `pulumi up` itself, {label}", "s", [s.up_s for s in group]),
            Figure(SECTION, f"operator: RayCluster created -> ready, {label}", "s", [s.reconcile_s for s in group]),
            Figure(SECTION, f"API objects per team namespace, {label}", "objects", [float(s.objects) for s in group]),
            *(Figure(SECTION, f"peak memory of the {role}, {label}", "MiB",
                     [s.memory_mib.get(role, 0.0) for s in group]) for role in roles),
        ]
    return figures


def growth_figures(samples: list[StackSample], sizes: tuple[int, ...]) -> list[Figure]:
    """The line through every stack's deploy time: its slope, and its value at the largest N over
    that at the smallest (one stack's time is too noisy a base on a shared machine; the line is not)."""
    fit = fit_line([float(s.index) for s in samples], [s.deploy_s for s in samples])
    first, last = (fit.intercept + fit.slope * n for n in (sizes[0], sizes[-1]))
    return [
        Figure(SECTION, "slope: deploy seconds per team already on the platform", "s/team", [fit.slope],
               note=f"line fit over {len(samples)} stacks: intercept {number(fit.intercept)} s, R^2 {fit.r2:.3f}"),
        Figure(SECTION, f"a team's deploy at N={sizes[-1]} / at N={sizes[0]} (line fit)", "", [last / first],
               target=FLAT_TARGET),
    ]


def run(cfg: BenchConfig) -> list[Figure]:
    sizes = cfg.scale_sizes
    samples: list[StackSample] = []
    with kube.control_plane() as state:
        nodes = add_nodes(sizes[-1])
        kinds = kube.namespaced_kinds()
        try:
            for index in range(1, sizes[-1] + 1):
                sample = deploy(state, index, kinds)
                print(f"  stack {index}/{sizes[-1]}: ready in {sample.deploy_s:.1f} s (up {sample.up_s:.1f} s, "
                      f"operator {sample.reconcile_s:.1f} s), {sample.objects} objects", flush=True)
                samples.append(sample)
        finally:
            cleanup(state, len(samples) + 1, nodes)
    return bracket_figures(samples, sizes) + growth_figures(samples, sizes)
