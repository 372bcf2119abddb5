"""A pinned Helm release: one place that decides how every chart is installed."""
from __future__ import annotations

from typing import Any

import pulumi
import pulumi_kubernetes as k8s


def pinned_release(name: str, *, chart: str, version: str, repo: str, mirror: str | None, namespace: str,
                   values: pulumi.Input[dict[str, Any]], parent: pulumi.Resource,
                   create_namespace: bool = False, skip_crds: bool = False,
                   depends_on: list[pulumi.Resource] | None = None) -> k8s.helm.v3.Release:
    """Install `chart` at exactly `version` from `mirror` (the platform's `sources.helmRepository`)
    when one is set, else from its upstream `repo`.

    `atomic` rolls a failed upgrade back instead of leaving a half-upgraded add-on, and
    `cleanup_on_fail` removes what a failed install created.
    """
    return k8s.helm.v3.Release(
        name,
        name=chart,
        chart=chart,
        version=version,
        repository_opts=k8s.helm.v3.RepositoryOptsArgs(repo=mirror or repo),
        namespace=namespace,
        create_namespace=create_namespace,
        skip_crds=skip_crds,
        atomic=True,
        cleanup_on_fail=True,
        timeout=600,
        values=values,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )
