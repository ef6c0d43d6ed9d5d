"""The flstack policy pack: `pulumi preview --policy-pack policies` (the rules live in rules.py)."""

from pulumi_policy import (
    EnforcementLevel,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from rules import RULES


def _validator(rule):  # type: ignore[no-untyped-def]
    def validate(args: ResourceValidationArgs, report_violation: ReportViolation) -> None:
        for message in rule(args.resource_type, dict(args.props)):
            report_violation(message, None)

    return validate


PolicyPack(
    name="flstack",
    enforcement_level=EnforcementLevel.MANDATORY,
    policies=[
        ResourceValidationPolicy(name=name, description=(rule.__doc__ or name).strip(), validate=_validator(rule))
        for name, rule in RULES.items()
    ],
)
