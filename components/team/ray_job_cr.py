"""A `submission: kuberay` batch job: its RayJob custom resource and, when the job waits, its waiter.

The object, and why it looks as it does, is components/specs/rayjob.py.
"""
from __future__ import annotations

from dataclasses import dataclass

import pulumi
import pulumi_kubernetes as k8s

from components.config.model import JobConfig, RayClusterConfig
from components.hooks.kuberay_wait import wait_on
from components.specs.rayjob import ray_job
from components.team.access import ClusterAccess


@dataclass(frozen=True)
class RayJobCrArgs:
    job: JobConfig
    cluster: RayClusterConfig
    namespace: str
    team: str
    entrypoint: str
    access: ClusterAccess
    # Created before the RayJob: the long-lived RayCluster it selects, the jobs it depends on.
    depends_on: tuple[pulumi.Resource, ...] = ()


class RayJobCr(pulumi.ComponentResource):
    """One kuberay batch job: the RayJob CR and, when the job's `wait` asks for it, its waiter."""

    custom_resource: k8s.apiextensions.CustomResource
    # What later jobs wait for: the waiter when there is one, else the CR.
    done: pulumi.Resource
    cr_name: str
    status: pulumi.Output[str] | None

    def __init__(self, name: str, args: RayJobCrArgs, opts: pulumi.ResourceOptions | None = None) -> None:
        super().__init__("ray-platform:index:RayJobCr", name, None, opts)
        manifest = ray_job(args.job, args.cluster, args.namespace, args.team, args.entrypoint)
        self.cr_name = manifest["metadata"]["name"]
        self.custom_resource = k8s.apiextensions.CustomResource(
            name, api_version=manifest["apiVersion"], kind=manifest["kind"], metadata=manifest["metadata"],
            spec=manifest["spec"],
            opts=pulumi.ResourceOptions(parent=self, depends_on=[*args.access.prerequisites, *args.depends_on]))
        self.done, self.status = wait_on(name, self.custom_resource, manifest, args.job.wait,
                                         args.job.timeout_seconds, args.access.kubeconfig, args.access.context,
                                         parent=self)
        self.register_outputs({"name": self.cr_name})
