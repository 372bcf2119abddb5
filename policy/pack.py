"""The CrossGuard wrappers around policy.rules (kept apart from __main__, which starts the server)."""
from __future__ import annotations

from collections.abc import Callable

from pulumi_policy import (
    EnforcementLevel, ReportViolation, ResourceValidationArgs, ResourceValidationPolicy, StackValidationArgs,
    StackValidationPolicy,
)

from policy import rules


def _resource_policy(name: str, rule: Callable[[str, rules.Props], list[str]]) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report: ReportViolation) -> None:
        for message in rule(args.resource_type, args.props):
            report(message, args.urn)

    return ResourceValidationPolicy(name=name, description=(rule.__doc__ or name).strip().splitlines()[0],
                                    validate=validate, enforcement_level=EnforcementLevel.MANDATORY)


def _stack_policy(name: str, rule: Callable[[list[rules.Resource]], list[str]],
                  level: EnforcementLevel) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report: ReportViolation) -> None:
        for message in rule([(r.resource_type, r.props) for r in args.resources]):
            report(message, None)

    return StackValidationPolicy(name=name, description=(rule.__doc__ or name).strip().splitlines()[0],
                                 validate=validate, enforcement_level=level)


POLICIES = [
    *(_resource_policy(name, rule) for name, rule in rules.RESOURCE_RULES.items()),
    *(_stack_policy(name, rule, EnforcementLevel.MANDATORY) for name, rule in rules.STACK_RULES.items()),
    *(_stack_policy(name, rule, EnforcementLevel.ADVISORY) for name, rule in rules.ADVISORY_STACK_RULES.items()),
]
