"""NVIDIA device plugin (Helm): advertises nvidia.com/gpu on GPU nodes, and runs only there."""
from __future__ import annotations

from dataclasses import dataclass

import pulumi

from components.platform.helm import pinned_release
from components.specs.gpu_nodes import device_plugin_values
from components.versions import (
    NVIDIA_DEVICE_PLUGIN_CHART, NVIDIA_DEVICE_PLUGIN_CHART_REPO, NVIDIA_DEVICE_PLUGIN_VERSION,
)


@dataclass(frozen=True)
class NvidiaDevicePluginArgs:
    namespace: str = "nvidia-device-plugin"
    helm_repository: str | None = None


class NvidiaDevicePlugin(pulumi.ComponentResource):
    def __init__(self, name: str, args: NvidiaDevicePluginArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:NvidiaDevicePlugin", name, None, opts)
        self.release = pinned_release(
            f"{name}-release", chart=NVIDIA_DEVICE_PLUGIN_CHART, version=NVIDIA_DEVICE_PLUGIN_VERSION,
            repo=NVIDIA_DEVICE_PLUGIN_CHART_REPO, mirror=args.helm_repository, namespace=args.namespace, create_namespace=True,
            values=device_plugin_values(), parent=self)
        self.register_outputs({"version": NVIDIA_DEVICE_PLUGIN_VERSION})
