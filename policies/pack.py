"""The rules as pulumi_policy policies (constructing the PolicyPack itself starts a server: `__main__.py`)."""

from __future__ import annotations

from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    PolicyConfigSchema,
    PolicyResource,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
    Severity,
    StackValidationArgs,
    StackValidationPolicy,
)

from policies.base import Rule, StackRule
from policies.rules import RULES, STACK_RULES

LEVELS = {"mandatory": EnforcementLevel.MANDATORY, "advisory": EnforcementLevel.ADVISORY}
SEVERITIES = {"low": Severity.LOW, "medium": Severity.MEDIUM, "high": Severity.HIGH, "critical": Severity.CRITICAL}


def _settings(rule: Rule | StackRule) -> dict[str, Any]:
    """What every policy carries besides its validator."""
    return {
        "name": rule.name,
        "description": rule.description,
        "enforcement_level": LEVELS[rule.level],
        "config_schema": PolicyConfigSchema(properties=dict(rule.config)) if rule.config else None,
        "severity": SEVERITIES[rule.severity],
    }


def resource_policy(rule: Rule) -> ResourceValidationPolicy:
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule.run(args.resource_type, dict(args.props), args.get_config()):
            report_violation(message, args.urn)

    return ResourceValidationPolicy(validate=validate, **_settings(rule))


def stack_policy(rule: StackRule) -> StackValidationPolicy:
    def validate(args: StackValidationArgs, report_violation: ReportViolation) -> None:
        resources: list[PolicyResource] = list(args.resources)
        for message in rule.run([(r.resource_type, dict(r.props)) for r in resources], args.get_config()):
            report_violation(message, None)

    return StackValidationPolicy(validate=validate, **_settings(rule))


def policies() -> list[Any]:
    return [*(resource_policy(r) for r in RULES.values()), *(stack_policy(r) for r in STACK_RULES.values())]
