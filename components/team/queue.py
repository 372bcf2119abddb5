"""A team's queue: its ClusterQueue (quota per flavor, borrowing, lending, preemption) and the
LocalQueue in its namespace that its RayJobs and RayClusters name (components/specs/kueue.py).

The cohort is the platform's to say (its `queues.cohorts`), so it is read from the platform stack's
`queues` output: a team's PR cannot put itself into another team's cohort.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import TeamConfig
from components.config.queue_model import TeamQueueConfig
from components.specs.kueue import cluster_queue, local_queue


@dataclass(frozen=True)
class TeamQueueArgs:
    team: TeamConfig
    queue: TeamQueueConfig
    local_queue: str
    # The platform stack's `queues` output (components/specs/kueue.py platform_outputs).
    platform_queues: pulumi.Input[dict[str, Any]]
    # Created first: the namespace.
    prerequisites: tuple[pulumi.Resource, ...] = ()


class TeamQueue(pulumi.ComponentResource):
    local_queue: k8s.apiextensions.CustomResource

    def __init__(self, name: str, args: TeamQueueArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:TeamQueue", name, None, opts)
        team, queue = args.team, args.queue
        # The ClusterQueue's shape is the team's; only its cohort comes from the platform.
        shape = cluster_queue(team, queue, None)
        spec = pulumi.Output.from_input(args.platform_queues).apply(
            lambda outputs: cluster_queue(team, queue, (outputs or {}).get("cohorts", {}).get(team.name))["spec"])
        cq = k8s.apiextensions.CustomResource(
            f"{name}-clusterqueue", api_version=shape["apiVersion"], kind=shape["kind"], metadata=shape["metadata"],
            spec=spec, opts=pulumi.ResourceOptions(parent=self, depends_on=list(args.prerequisites)))
        lq = local_queue(team, args.local_queue)
        self.local_queue = k8s.apiextensions.CustomResource(
            f"{name}-localqueue", api_version=lq["apiVersion"], kind=lq["kind"], metadata=lq["metadata"],
            spec=lq["spec"], opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.prerequisites, cq]))
        self.register_outputs({"clusterQueue": shape["metadata"]["name"], "localQueue": args.local_queue})
