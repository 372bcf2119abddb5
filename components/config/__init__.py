"""Typed stack configuration: every key, default and check of a stack file, and no pulumi.

model: allowed values, limits and the frozen dataclasses; reader: the key-path-aware reader and
its error report; platform, team, jobs: the parsers of each part; fit: quotas and sizing;
stack: `parse` of one stack's raw config; stack_files: stack files read offline.
"""
