"""The project's own stack files on the e2e control plane, through the real `pulumi` CLI.

Nothing here is a second copy of the program or of a stack: each e2e stack file is a shipped
`stacks/Pulumi.<stack>.yaml` with the e2e control plane's settings layered on top (its
kubeconfig and context, the chart and CRD mirror, the GPU pools its KWOK nodes have), written to
`build/e2e/stacks/` and passed with `--config-file`. The shipped file's secrets provider
(`encryptionsalt`) and every other key stay as they are.

    python -m tools.e2e.stacks up local          # layer, select (or create) and `pulumi up`
    python -m tools.e2e.stacks layer demo-local  # just write the layered file; prints its path
"""
from __future__ import annotations

import argparse
import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from components.config.fit import quantity_value
from tools.e2e import controlplane as cp

STACKS_DIR = cp.REPO / "stacks"
LAYERED_DIR = cp.STATE_DIR / "stacks"
PROJECT = "ray-platform"
# What the e2e layers onto each shipped stack it runs. The team stack adds a GPU worker group so
# that placement on the KWOK GPU pools is exercised; its jobs need a reachable Ray dashboard (the
# hooks' own e2e), so they are left out here.
PLATFORM_STACK = "local"
TEAM_STACK = "demo-local"
# Two teams sharing GPUs through Kueue (tests/e2e/test_kueue.py).
E2E_COHORT = {"name": "e2e", "teams": ["alpha", "beta"]}
E2E_GPU_GROUP = {"name": "gpu", "cpu": "4", "memory": "16Gi", "gpus": 1, "gpuPool": "g5-ondemand",
                 "replicas": 1, "minReplicas": 1, "maxReplicas": 2}


def key(name: str) -> str:
    return f"{PROJECT}:{name}"


def shipped(stack: str) -> dict[str, Any]:
    return yaml.safe_load((STACKS_DIR / f"Pulumi.{stack}.yaml").read_text())


def gpu_pools() -> list[dict[str, Any]]:
    """The platform's `gpuPools` for the GPU nodes the control plane made (an existing cluster
    describes the pools it has: docs/config.md)."""
    return [{"name": pool, "gpusPerNode": gpus, "maxSize": count}
            for pool, count, _cpu, _mem, gpus, _role in cp.POOLS if gpus]


def platform_overrides(state: dict[str, Any]) -> dict[str, Any]:
    cluster = dict(shipped(PLATFORM_STACK)["config"][key("cluster")])
    cluster.update(kubeconfigPath=str(cp.KUBECONFIG), context=cp.CONTEXT)
    return {
        key("cluster"): cluster,
        key("sources"): {"helmRepository": cp.mirror_url(state), "kuberayCrds": str(cp.KUBERAY_CRDS)},
        key("gpuPools"): gpu_pools(),
        key("queues"): {**shipped(PLATFORM_STACK)["config"].get(key("queues"), {}), "cohorts": [E2E_COHORT]},
    }


def team_overrides() -> dict[str, Any]:
    config = shipped(TEAM_STACK)["config"]
    clusters = copy.deepcopy(config[key("rayClusters")])
    clusters[0]["workerGroups"].append(E2E_GPU_GROUP)
    team = copy.deepcopy(config[key("team")])
    # The quota grows by what the GPU group can request at max scale, so the shipped fit still holds.
    quota, most = team["quota"], E2E_GPU_GROUP["maxReplicas"]
    quota["cpu"] = f"{quantity_value(quota['cpu']) + quantity_value(E2E_GPU_GROUP['cpu']) * most:g}"
    gib = quantity_value(quota["memory"]) + quantity_value(E2E_GPU_GROUP["memory"]) * most
    quota["memory"] = f"{gib / 2**30:g}Gi"
    quota["gpus"] = E2E_GPU_GROUP["gpus"] * most
    return {key("rayClusters"): clusters, key("team"): team, key("jobs"): []}


def team_of_one(team: str, jobs: list[dict[str, Any]], dashboard: dict[str, Any],
                extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """Overrides for a team stack of the e2e's own, derived from demo-local: team `team`, one
    RayCluster named after it (the shipped demo cluster, its workers at zero: a head pod is what the
    jobs need, and `tools/e2e/ray_heads.py` puts a real Ray head behind it), `jobs` on that cluster
    and `dashboard` access. Layer them with `layer(stack, ..., base=TEAM_STACK)`."""
    config = shipped(TEAM_STACK)["config"]
    cluster = copy.deepcopy(config[key("rayClusters")][0])
    cluster["name"] = team
    for group in cluster["workerGroups"]:
        group.update(replicas=0, minReplicas=0)
    members = copy.deepcopy(config[key("team")])
    members["name"] = team
    return {key("team"): members, key("rayClusters"): [cluster], key("dashboard"): dashboard,
            key("jobs"): [{"cluster": team, **job} for job in jobs], **(extra or {})}


def layer(stack: str, overrides: dict[str, Any], base: str | None = None) -> Path:
    """`stacks/Pulumi.<base or stack>.yaml` with `overrides`, as build/e2e/stacks/Pulumi.<stack>.yaml.

    A `base` other than `stack` makes a stack of the e2e's own from a shipped one (its secrets
    provider included): create it with `init_derived`."""
    base = base or stack
    doc = shipped(base)
    doc["config"] = {**doc["config"], **overrides}
    LAYERED_DIR.mkdir(parents=True, exist_ok=True)
    path = LAYERED_DIR / f"Pulumi.{stack}.yaml"
    path.write_text(f"# {stack}: stacks/Pulumi.{base}.yaml with the e2e control plane's settings "
                    "(tools/e2e/stacks.py)\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def env(state: dict[str, Any]) -> dict[str, str]:
    exports = cp.env_exports(state)
    exports["PATH"] = exports["PATH"].replace("$PATH", os.environ.get("PATH", ""))
    return {**os.environ, **exports}


def pulumi(state: dict[str, Any], *args: str, check: bool = True, timeout: float = 1800,
           cwd: Path = cp.REPO) -> subprocess.CompletedProcess:
    """One `pulumi` command in the project root (or `cwd`), with the e2e environment, in plain text."""
    proc = subprocess.run(["pulumi", *args, "--non-interactive", "--color", "never"], cwd=cwd,
                          env=env(state), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def select(state: dict[str, Any], stack: str) -> None:
    """The stack in the local file backend, created with the passphrase provider on first use."""
    if pulumi(state, "stack", "select", stack, check=False).returncode != 0:
        pulumi(state, "stack", "init", stack, "--secrets-provider", "passphrase")


def init_derived(state: dict[str, Any], stack: str, base: str = TEAM_STACK) -> None:
    """Create stack `stack` in the backend with `base`'s secrets provider (its passphrase salt).

    `pulumi stack init` writes the new stack's file into the project's stack directory, so it runs
    in a scratch project of the same name under build/e2e: nothing is written into stacks/."""
    if pulumi(state, "stack", "select", stack, check=False).returncode == 0:
        return
    scratch = cp.STATE_DIR / "init" / stack
    scratch.mkdir(parents=True, exist_ok=True)
    (scratch / "Pulumi.yaml").write_text(yaml.safe_dump({"name": PROJECT, "runtime": "python"}))
    salt = {"encryptionsalt": shipped(base)["encryptionsalt"]}
    (scratch / f"Pulumi.{stack}.yaml").write_text(yaml.safe_dump(salt))
    pulumi(state, "stack", "init", stack, "--secrets-provider", "passphrase", cwd=scratch)


def secret(state: dict[str, Any], stack: str, value: str, base: str = TEAM_STACK) -> dict[str, str]:
    """`value` encrypted for `stack` (by its passphrase and salt), as a stack file holds a secret."""
    scratch = cp.STATE_DIR / "init" / stack
    scratch.mkdir(parents=True, exist_ok=True)
    config_file = scratch / "secret.yaml"
    config_file.write_text(yaml.safe_dump({"encryptionsalt": shipped(base)["encryptionsalt"]}))
    pulumi(state, "config", "set", "--secret", "--stack", stack, "--config-file", str(config_file),
           key("scratch"), value)
    return dict(yaml.safe_load(config_file.read_text())["config"][key("scratch")])


def layered(state: dict[str, Any], stack: str) -> Path:
    return layer(stack, platform_overrides(state) if stack == PLATFORM_STACK else team_overrides())


def up(state: dict[str, Any], stack: str) -> subprocess.CompletedProcess:
    config_file = layered(state, stack)
    select(state, stack)
    return pulumi(state, "up", "--yes", "--skip-preview", "--stack", stack, "--config-file", str(config_file))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m tools.e2e.stacks", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=("up", "layer"))
    ap.add_argument("stack", choices=(PLATFORM_STACK, TEAM_STACK))
    a = ap.parse_args(argv)
    state = cp.load_state()
    if a.command == "layer":
        print(layered(state, a.stack))
        return 0
    print(up(state, a.stack).stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
