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


def layer(stack: str, overrides: dict[str, Any]) -> Path:
    doc = shipped(stack)
    doc["config"] = {**doc["config"], **overrides}
    LAYERED_DIR.mkdir(parents=True, exist_ok=True)
    path = LAYERED_DIR / f"Pulumi.{stack}.yaml"
    path.write_text(f"# {stack}: stacks/Pulumi.{stack}.yaml with the e2e control plane's settings "
                    "(tools/e2e/stacks.py)\n" + yaml.safe_dump(doc, sort_keys=False))
    return path


def env(state: dict[str, Any]) -> dict[str, str]:
    exports = cp.env_exports(state)
    exports["PATH"] = exports["PATH"].replace("$PATH", os.environ.get("PATH", ""))
    return {**os.environ, **exports}


def pulumi(state: dict[str, Any], *args: str, check: bool = True, timeout: float = 1800) -> subprocess.CompletedProcess:
    """One `pulumi` command in the project root, with the e2e environment, in plain text."""
    proc = subprocess.run(["pulumi", *args, "--non-interactive", "--color", "never"], cwd=cp.REPO,
                          env=env(state), capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise RuntimeError(f"pulumi {' '.join(args)} exited {proc.returncode}:\n{proc.stdout[-6000:]}\n"
                           f"{proc.stderr[-3000:]}")
    return proc


def select(state: dict[str, Any], stack: str) -> None:
    """The stack in the local file backend, created with the passphrase provider on first use."""
    if pulumi(state, "stack", "select", stack, check=False).returncode != 0:
        pulumi(state, "stack", "init", stack, "--secrets-provider", "passphrase")


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
