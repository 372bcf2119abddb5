"""Import path of the KubeRay waiter before components/ had layers.

Pulumi pickles a dynamic provider by module path and class name into each stack's state, so
stacks deployed before the move name `components.kuberay_wait.KubeRayWaitProvider`: without
this module their `refresh` and `destroy` could not load the provider.
"""
from components.hooks.kuberay_wait import KubeRayWaitProvider

__all__ = ["KubeRayWaitProvider"]
