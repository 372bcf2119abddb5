"""NVIDIA device plugin (Helm): advertises nvidia.com/gpu on GPU nodes, and runs only there."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi

from components.constants import GPU_NODE_LABEL, GPU_TAINT_EFFECT, GPU_TAINT_KEY
from components.platform.helm import pinned_release
from components.versions import (
    NVIDIA_DEVICE_PLUGIN_CHART, NVIDIA_DEVICE_PLUGIN_CHART_REPO, NVIDIA_DEVICE_PLUGIN_VERSION,
)


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    namespace: str = "nvidia-device-plugin"


def gpu_daemonset_placement() -> dict[str, Any]:
    """Chart values that put a DaemonSet on the platform's GPU nodes only: their label, their taint.

    No affinity: a chart's default one (NVIDIA's expects Node Feature Discovery labels, which
    EKS nodes do not have) would otherwise schedule the DaemonSet nowhere.
    """
    return {
        "nodeSelector": {GPU_NODE_LABEL: "true"},
        "affinity": None,
        "tolerations": [{"key": GPU_TAINT_KEY, "operator": "Exists", "effect": GPU_TAINT_EFFECT}],
    }


def device_plugin_values() -> dict[str, Any]:
    return {
        **gpu_daemonset_placement(),
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
