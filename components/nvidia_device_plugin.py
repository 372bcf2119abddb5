"""NVIDIA device plugin (Helm): advertises nvidia.com/gpu on GPU nodes, and runs only there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.constants import GPU_NODE_LABEL, GPU_TAINT_EFFECT, GPU_TAINT_KEY
from components.helm import pinned_release
from components.versions import (
    NVIDIA_DEVICE_PLUGIN_CHART, NVIDIA_DEVICE_PLUGIN_CHART_REPO, NVIDIA_DEVICE_PLUGIN_VERSION,
)


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    namespace: str = "nvidia-device-plugin"


def device_plugin_values() -> dict[str, Any]:
    """Tolerate the platform's GPU taint and select GPU nodes by the platform's label.

    The chart's default affinity expects Node Feature Discovery labels, which EKS nodes
    do not have; without an explicit selector the DaemonSet would schedule nowhere.
    """
    return {
        "nodeSelector": {GPU_NODE_LABEL: "true"},
        "affinity": None,
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}],
        "priorityClassName": "system-node-critical",
        "gfd": {"enabled": False},
    }


class NvidiaDevicePlugin(pulumi.ComponentResource):
    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:NvidiaDevicePlugin", name, None, opts)
        self.release = pinned_release(
            f"{name}-release", chart=NVIDIA_DEVICE_PLUGIN_CHART, version=NVIDIA_DEVICE_PLUGIN_VERSION,
            repo=NVIDIA_DEVICE_PLUGIN_CHART_REPO, namespace=args.namespace, create_namespace=True,
            values=device_plugin_values(), parent=self)
        self.register_outputs({"version": NVIDIA_DEVICE_PLUGIN_VERSION})
