"""How a team stack reaches its Kubernetes cluster: built once by the team layer, handed to
everything that creates objects in the team's namespace or waits on them."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pulumi


@dataclass(frozen=True)
class ClusterAccess:
    """How a team stack reaches its Kubernetes cluster, for custom resources and their waiters."""

    # The platform stack's kubeconfig output (a secret: document or path) and its context.
    kubeconfig: pulumi.Input[str]
    context: pulumi.Input[str] | None
    # Options with the team's Kubernetes provider.
    k8s_opts: pulumi.ResourceOptions
    # What every object in the namespace is created after: namespace, quota, limits.
    prerequisites: Sequence[pulumi.Resource] = ()
