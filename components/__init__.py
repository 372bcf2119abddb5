"""Pulumi components of ray-platform: one ComponentResource per module."""
