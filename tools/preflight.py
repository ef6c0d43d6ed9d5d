"""Checks before touching AWS: who am I, is the region usable, are the node instance types offered there.

Every failure is one line a person can act on; nothing here creates or changes anything.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    NoCredentialsError,
    NoRegionError,
    PartialCredentialsError,
    ProfileNotFound,
    SSOTokenLoadError,
    TokenRetrievalError,
)

ZONES_NEEDED = 3  # the EKS target spreads subnets and nodes over three availability zones
REGION = re.compile(r"[a-z]{2}(-[a-z]+)+-[0-9]+")
CREDENTIAL_ERRORS = (NoCredentialsError, PartialCredentialsError, SSOTokenLoadError, TokenRetrievalError)
REJECTED_CODES = {"InvalidClientTokenId", "SignatureDoesNotMatch", "ExpiredToken", "ExpiredTokenException"}


class PreflightError(Exception):
    """A failure explained in one line (no traceback)."""


def explain(err: Exception) -> str:
    """One line for any AWS SDK failure."""
    if isinstance(err, CREDENTIAL_ERRORS):
        return (
            "no usable AWS credentials: set AWS_PROFILE (then `aws sso login` if it is an SSO profile), "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`"
        )
    if isinstance(err, ProfileNotFound):
        return f"{err} (see `aws configure list-profiles`)"
    if isinstance(err, ClientError):
        code = err.response.get("Error", {}).get("Code", "")
        message = err.response.get("Error", {}).get("Message", "")
        if code in REJECTED_CODES:
            return f"AWS rejected the credentials ({code}): {message}"
        operation = err.operation_name
        return f"{operation} failed ({code}): {message}"
    if isinstance(err, (BotoCoreError, NoRegionError)):
        return str(err)
    return f"{type(err).__name__}: {err}"


@dataclass
class Report:
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what could not be decided: the reader checks by hand
    caller: str | None = None  # the STS identity, once the credentials worked

    @property
    def ok(self) -> bool:
        return not self.problems


def caller_arn(session: boto3.session.Session, region: str) -> str:
    """The identity the program would run as (raises PreflightError without credentials)."""
    try:
        identity: dict[str, Any] = session.client("sts", region_name=region).get_caller_identity()
    except (ClientError, BotoCoreError) as err:
        raise PreflightError(explain(err)) from None
    return str(identity["Arn"])


def known_region(session: boto3.session.Session, region: str) -> bool:
    """Whether the SDK's partition data (offline) lists `region`."""
    known = set(session.get_available_regions("ec2"))
    for partition in ("aws-cn", "aws-us-gov"):
        known |= set(session.get_available_regions("ec2", partition_name=partition))
    return bool(REGION.fullmatch(region)) and region in known


def opt_in_problem(session: boto3.session.Session, region: str) -> str | None:
    regions = session.client("ec2", region_name=region).describe_regions(AllRegions=True)["Regions"]
    status = {r["RegionName"]: r.get("OptInStatus") for r in regions}
    if status.get(region) == "not-opted-in":
        return f"region {region} is not enabled for this account (enable it under Account settings first)"
    return None


def zones_problem(session: boto3.session.Session, region: str) -> str | None:
    zones = session.client("ec2", region_name=region).describe_availability_zones(
        Filters=[
            {"Name": "state", "Values": ["available"]},
            {"Name": "zone-type", "Values": ["availability-zone"]},
        ]
    )["AvailabilityZones"]
    if len(zones) < ZONES_NEEDED:
        names = ", ".join(sorted(z["ZoneName"] for z in zones)) or "none"
        return f"region {region} has {len(zones)} available zones ({names}); the EKS target needs {ZONES_NEEDED}"
    return None


def missing_instance_types(session: boto3.session.Session, region: str, types: list[str]) -> list[str]:
    """The instance types EC2 does not offer in `region` (misspelt ones included)."""
    ec2 = session.client("ec2", region_name=region)
    offered: set[str] = set()
    paginator = ec2.get_paginator("describe_instance_type_offerings")
    for page in paginator.paginate(
        LocationType="region", Filters=[{"Name": "instance-type", "Values": sorted(set(types))}]
    ):
        offered |= {o["InstanceType"] for o in page["InstanceTypeOfferings"]}
    return [t for t in dict.fromkeys(types) if t not in offered]


def run(session: boto3.session.Session, region: str, instance_types: list[str]) -> Report:
    """Every check; stops early only when later checks could not mean anything."""
    report = Report()
    region_ok = known_region(session, region)
    if not region_ok:
        report.problems.append(f"region {region!r} does not exist (e.g. eu-west-1, us-east-2)")
    try:
        # With an unknown region, still say whether the credentials work (through a region that exists).
        report.caller = caller_arn(session, region if region_ok else "us-east-1")
        report.passed.append(f"credentials: {report.caller}")
    except PreflightError as err:
        report.problems.append(str(err))
        return report
    if not region_ok:
        return report
    try:
        problem = opt_in_problem(session, region)
        if problem:
            report.problems.append(problem)
            return report
        report.passed.append(f"region: {region}")
        problem = zones_problem(session, region)
        if problem:
            report.problems.append(problem)
        else:
            report.passed.append(f"availability zones: at least {ZONES_NEEDED} in {region}")
        if instance_types:
            missing = missing_instance_types(session, region, instance_types)
            report.problems += [f"instance type {t} is not offered in {region} (check the name)" for t in missing]
            offered = [t for t in dict.fromkeys(instance_types) if t not in missing]
            if offered:
                report.passed.append(f"instance types offered in {region}: {', '.join(offered)}")
    except (ClientError, BotoCoreError) as err:
        report.problems.append(explain(err))
    return report
