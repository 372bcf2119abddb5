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

    An `oci://` upstream is a registry path, not a repository index: the chart is addressed there
    by its full reference. `atomic` rolls a failed upgrade back instead of leaving a half-upgraded add-on, and
    `cleanup_on_fail` removes what a failed install created.
    """
    oci = mirror is None and repo.startswith("oci://")
    return k8s.helm.v3.Release(
        name,
        name=chart,
        chart=f"{repo.rstrip('/')}/{chart}" if oci else chart,
        version=version,
        repository_opts=None if oci else k8s.helm.v3.RepositoryOptsArgs(repo=mirror or repo),
        namespace=namespace,
        create_namespace=create_namespace,
        skip_crds=skip_crds,
        atomic=True,
        cleanup_on_fail=True,
        timeout=600,
        values=values,
        opts=pulumi.ResourceOptions(parent=parent, depends_on=depends_on or []),
    )
