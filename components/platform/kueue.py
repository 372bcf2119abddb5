"""Kueue from its pinned chart, and the platform's queueing objects: a ResourceFlavor per GPU pool
and one for CPU, the cohorts, the WorkloadPriorityClasses (components/specs/kueue.py builds them).

Kueue's CRDs are templates of its chart (not its crds/), so Helm upgrades them with the release, and
deletes them with it: destroying a platform stack with Kueue removes every team's queues, as
destroying its cluster would (docs/queues.md). The objects are created once the release is ready:
Kueue's admission webhooks check them, and they answer only once the controller runs. The chart's
aggregated ClusterRoles are claimed here too, so that a destroy deletes them before the uninstall.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import GpuPoolConfig
from components.config.queue_model import QueuesConfig
from components.platform.helm import pinned_release
from components.specs.kueue import AGGREGATED_ROLES, aggregated_role, chart_values, platform_queue_objects
from components.versions import KUEUE_CHART, KUEUE_CHART_REPO, KUEUE_CHART_VERSION, KUEUE_VERSION


class _KueueObject(pulumi.CustomResource):
    """One object as built, whole: a WorkloadPriorityClass keeps its fields (`value`, `description`)
    beside `metadata`, where k8s.apiextensions.CustomResource (spec only) cannot."""

    def __init__(self, name: str, obj: dict[str, Any], opts: pulumi.ResourceOptions) -> None:
        super().__init__(f"kubernetes:{obj['apiVersion']}:{obj['kind']}", name, dict(obj), opts)


@dataclass(frozen=True)
class KueueArgs:
    config: QueuesConfig
    gpu_pools: tuple[GpuPoolConfig, ...]
    node_selector: dict[str, str] | None = None
    helm_repository: str | None = None
    # Installed first: the KubeRay CRDs, which Kueue's Ray integrations look up when they start.
    after: tuple[pulumi.Resource, ...] = ()


class Kueue(pulumi.ComponentResource):
    release: k8s.helm.v3.Release

    def __init__(self, name: str, args: KueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:Kueue", name, None, opts)
        self.release = pinned_release(
            f"{name}-release", chart=KUEUE_CHART, version=KUEUE_CHART_VERSION, repo=KUEUE_CHART_REPO,
            mirror=args.helm_repository, namespace=args.config.namespace, create_namespace=True,
            values=chart_values(args.config, args.node_selector), parent=self, depends_on=list(args.after))
        after = pulumi.ResourceOptions(parent=self, depends_on=[self.release])
        for obj in platform_queue_objects(args.config, args.gpu_pools):
            _KueueObject(f"{name}-{obj['kind'].lower()}-{obj['metadata']['name']}", obj, after)
        # Depending on the release, these go before its uninstall (components/specs/kueue.py says why).
        for role in AGGREGATED_ROLES:
            _KueueObject(f"{name}-{role}", aggregated_role(role), after)
        self.register_outputs({"version": KUEUE_VERSION, "namespace": args.config.namespace})
