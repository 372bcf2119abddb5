"""Import path of the post-deploy job hook before components/ had layers.

Pulumi pickles a dynamic provider by module path and class name into each stack's state, so
stacks deployed before the move name `components.ray_job.RayJobProvider`: without this module
their `refresh` and `destroy` could not load the provider.
"""
from components.hooks.ray_job import RayJobProvider

__all__ = ["RayJobProvider"]
