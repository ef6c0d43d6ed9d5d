"""Preflight for an EKS stack: what otherwise fails 20 minutes into the first `pulumi up`.

Each check returns one-line problems that name the fix (and notes where it could not decide). AWS is
reached through `Clients`; what lies outside AWS (the `aws` CLI, this machine's public IP, today's date)
comes through `Environment`, so tests can supply both.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import shutil
import subprocess
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from components.targets.eks import EksSettings
from components.targets.eks_network import REJECTED_ZONE_IDS, ZONES
from tools.preflight import explain

Clients = Callable[[str], Any]  # service name -> boto3 client in the stack's region
EXTENDED_COST = "$0.60 instead of $0.10 per cluster-hour"
# `aws eks get-token` answers client.authentication.k8s.io/v1beta1 (what flstack's kubeconfig asks
# for; kubectl >= 1.24 has no v1alpha1) from AWS CLI 1.24.0 and 2.7.0 on.
MIN_AWS_CLI = {1: (1, 24, 0), 2: (2, 7, 0)}
PUBLIC_IP_URL = "https://checkip.amazonaws.com"
SOON_DAYS = 60


def aws_cli_version() -> str | None:
    """`aws --version` output, or None when there is no `aws` on PATH."""
    aws = shutil.which("aws")
    if aws is None:
        return None
    done = subprocess.run([aws, "--version"], capture_output=True, text=True, timeout=60, check=False)
    return (done.stdout or done.stderr).strip()


def public_ip() -> str:
    with urllib.request.urlopen(PUBLIC_IP_URL, timeout=10) as answer:
        return str(answer.read().decode().strip())


@dataclass
class Environment:
    aws_cli_version: Callable[[], str | None] = aws_cli_version
    public_ip: Callable[[], str] = public_ip
    today: Callable[[], datetime.date] = field(default=lambda: datetime.datetime.now(datetime.UTC).date())


@dataclass
class Findings:
    passed: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


# Kubernetes version.


def _day(value: Any) -> str:
    return value.date().isoformat() if isinstance(value, datetime.datetime) else str(value)


def check_version(eks: Any, settings: EksSettings, today: datetime.date, found: Findings) -> None:
    version, support = settings.kubernetes_version, settings.support_type
    answer = eks.describe_cluster_versions(includeAll=True)
    versions = {v["clusterVersion"]: v for v in answer.get("clusterVersions", [])}
    standard = sorted(
        (v for v, info in versions.items() if info.get("versionStatus") == "STANDARD_SUPPORT"),
        key=lambda v: tuple(int(p) for p in v.split(".")),
    )
    newest = standard[-1] if standard else None
    info = versions.get(version)
    if info is None or info.get("versionStatus") == "UNSUPPORTED":
        found.problems.append(
            f"kubernetesVersion {version} is not offered by EKS: set kubernetesVersion to {newest or 'a newer version'}"
        )
        return
    status = info.get("versionStatus")
    standard_end = _day(info.get("endOfStandardSupportDate", "?"))
    if status == "EXTENDED_SUPPORT" and support == "STANDARD":
        found.problems.append(
            f"kubernetesVersion {version} left EKS standard support on {standard_end}: with supportType STANDARD "
            f"EKS refuses a new cluster and upgrades an existing one itself; set kubernetesVersion to {newest} "
            f"(or supportType: EXTENDED, {EXTENDED_COST})"
        )
        return
    if status == "EXTENDED_SUPPORT":
        extended_end = _day(info.get("endOfExtendedSupportDate", "?"))
        found.passed.append(f"kubernetes {version}: extended support ({EXTENDED_COST}) until {extended_end}")
        return
    line = f"kubernetes {version}: standard support until {standard_end}"
    end = info.get("endOfStandardSupportDate")
    if isinstance(end, datetime.datetime) and (end.date() - today).days <= SOON_DAYS:
        line += f" ({(end.date() - today).days} days left: plan the bump to {newest})"
    found.passed.append(line)


# Who runs Pulumi.


def principal_arn(caller: str, iam: Any) -> tuple[str, str | None]:
    """(the IAM ARN an access entry must name for `caller`, a note when it could not be fully resolved)."""
    match = re.fullmatch(r"arn:(aws[-a-z]*):sts::(\d{12}):assumed-role/([^/]+)/.+", caller)
    if not match:
        return caller, None  # an IAM user (or root) is its own principal
    partition, account, role = match.groups()
    try:
        return str(iam.get_role(RoleName=role)["Role"]["Arn"]), None
    except (ClientError, BotoCoreError):
        # Without iam:GetRole the role's path is unknown; compare without it.
        return f"arn:{partition}:iam::{account}:role/{role}", "role path not checked (iam:GetRole was refused)"


def _without_path(arn: str) -> str:
    head, _, rest = arn.partition(":role/")
    return f"{head}:role/{rest.rpartition('/')[2]}" if rest else arn


def check_admin(caller: str, iam: Any, settings: EksSettings, found: Findings) -> None:
    principal, note = principal_arn(caller, iam)
    if principal.endswith(":root"):
        found.problems.append(
            "the caller is the account root user: run Pulumi as an IAM role or user in adminPrincipals"
        )
        return
    admins = settings.admin_principals
    # An access entry names the role's exact ARN, path included; only when IAM would not say the path,
    # compare without it.
    unresolved = note is not None and principal in {_without_path(a) for a in admins}
    if principal in admins or unresolved:
        found.passed.append(f"caller {principal} is in adminPrincipals")
    else:
        found.problems.append(
            f"the caller {principal} is not in adminPrincipals: add it (the Kubernetes provider authenticates "
            f"as whoever runs Pulumi) or run as one of {admins}"
        )
    if note:
        found.notes.append(note)


# This machine.


def check_aws_cli(env: Environment, found: Findings) -> None:
    text = env.aws_cli_version()
    if text is None:
        found.problems.append(
            "the aws CLI is not on PATH: the Kubernetes provider runs `aws eks get-token` (install AWS CLI v2)"
        )
        return
    match = re.match(r"aws-cli/(\d+)\.(\d+)\.(\d+)", text)
    if not match:
        found.problems.append(f"could not read the aws CLI version from {text!r}: install AWS CLI v2")
        return
    version = tuple(int(p) for p in match.groups())
    needed = MIN_AWS_CLI.get(version[0])
    shown = ".".join(map(str, version))
    if needed is None or version < needed:
        least = " or ".join(".".join(map(str, v)) for v in MIN_AWS_CLI.values())
        found.problems.append(
            f"aws CLI {shown} is too old for `aws eks get-token` with client.authentication.k8s.io/v1beta1 "
            f"(needs {least} or later): upgrade it"
        )
    else:
        found.passed.append(f"aws CLI {shown}")


def check_public_ip(env: Environment, settings: EksSettings, found: Findings) -> None:
    if settings.endpoint_private_only:
        return
    try:
        address = ipaddress.ip_address(env.public_ip())
    except (OSError, ValueError) as err:
        found.notes.append(f"this machine's public IP could not be learnt ({err}): check publicAccessCidrs by hand")
        return
    nets = [ipaddress.ip_network(c) for c in settings.public_access_cidrs]
    if any(address in net for net in nets):
        found.passed.append(f"public IP {address} is inside publicAccessCidrs")
    else:
        found.problems.append(
            f"this machine's public IP {address} is outside publicAccessCidrs {settings.public_access_cidrs}: "
            f"add {address}/32 (Pulumi reaches the API server from here)"
        )


# Quotas: vCPUs at every group's maxSize, per EC2 quota.

QUOTAS = {  # (capacity type, quota class) -> (quota code, name)
    ("ON_DEMAND", "standard"): ("L-1216C47A", "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances"),
    ("ON_DEMAND", "g"): ("L-DB2E81BA", "Running On-Demand G and VT instances"),
    ("ON_DEMAND", "p"): ("L-417A185B", "Running On-Demand P instances"),
    ("SPOT", "standard"): ("L-34B43A08", "All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests"),
    ("SPOT", "g"): ("L-3819A6DF", "All G and VT Spot Instance Requests"),
    ("SPOT", "p"): ("L-7212CCBC", "All P Spot Instance Requests"),
}


def quota_class(instance_type: str) -> str | None:
    family = instance_type.split(".")[0]
    if family.startswith(("g", "vt")):
        return "g"
    if family.startswith("p"):
        return "p"
    if family[0] in "acdhimrtz" and not family.startswith(("inf", "dl", "trn", "hpc")):
        return "standard"
    return None  # inf, trn, x, f, dl, u, ...: quotas of their own, not checked here


def vcpus(ec2: Any, types: Iterable[str]) -> dict[str, int]:
    answer = ec2.describe_instance_types(InstanceTypes=sorted(set(types)))
    return {t["InstanceType"]: int(t["VCpuInfo"]["DefaultVCpus"]) for t in answer["InstanceTypes"]}


def check_quotas(ec2: Any, quotas: Any, region: str, settings: EksSettings, found: Findings) -> None:
    sizes = vcpus(ec2, (t for g in settings.node_groups for t in g.instance_types))
    needed: dict[tuple[str, str], int] = defaultdict(int)
    users: dict[tuple[str, str], list[str]] = defaultdict(list)
    for group in settings.node_groups:
        classes = {quota_class(t) for t in group.instance_types} - {None}
        for cls in sorted(c for c in classes if c):
            key: tuple[str, str] = (group.capacity_type, cls)
            largest = max(sizes.get(t, 0) for t in group.instance_types if quota_class(t) == cls)
            needed[key] += group.max_size * largest
            users[key].append(group.name)
    for key, vcpu in sorted(needed.items()):
        code, label = QUOTAS[key]
        try:
            value = int(quotas.get_service_quota(ServiceCode="ec2", QuotaCode=code)["Quota"]["Value"])
        except (ClientError, BotoCoreError) as err:
            found.notes.append(
                f"quota {code} ({label}) could not be read ({explain(err)}): make sure it allows {vcpu} vCPUs"
            )
            continue
        groups = ", ".join(users[key])
        if value < vcpu:
            found.problems.append(
                f"quota {code} ({label}) is {value} vCPUs in {region}; node groups {groups} need up to {vcpu} at "
                f"maxSize: `aws service-quotas request-service-quota-increase --service-code ec2 --quota-code {code} "
                f"--desired-value {vcpu} --region {region}`"
            )
        else:
            found.passed.append(
                f"quota {code} ({label}): {value} vCPUs >= {vcpu} for {groups} (running instances not counted)"
            )


# Zones: by ID, offering every node group's instance types.


def check_zones(ec2: Any, settings: EksSettings, found: Findings) -> None:
    zones = ec2.describe_availability_zones(
        Filters=[{"Name": "state", "Values": ["available"]}, {"Name": "zone-type", "Values": ["availability-zone"]}]
    )["AvailabilityZones"]
    available = sorted(z["ZoneId"] for z in zones)
    types = sorted({t for g in settings.node_groups for t in g.instance_types})
    offered: dict[str, set[str]] = defaultdict(set)  # instance type -> zone IDs
    for page in ec2.get_paginator("describe_instance_type_offerings").paginate(
        LocationType="availability-zone-id", Filters=[{"Name": "instance-type", "Values": types}]
    ):
        for offer in page["InstanceTypeOfferings"]:
            offered[offer["InstanceType"]].add(offer["Location"])
    usable = [z for z in available if z not in REJECTED_ZONE_IDS and all(z in offered[t] for t in types)]
    suggestion = f"zoneIds: [{', '.join(usable[:ZONES])}]" if len(usable) >= ZONES else None
    chosen = settings.zone_ids
    if not chosen:
        if suggestion:
            found.notes.append(f"zones are not pinned: add `{suggestion}` to the stack's eks settings")
        else:
            found.problems.append(
                f"fewer than {ZONES} zones offer every node group's instance types {types} (usable: {usable}): "
                "change the instance types"
            )
        return
    unknown = [z for z in chosen if z not in available]
    if unknown:
        found.problems.append(f"zoneIds {unknown} are not available zones of this region (available: {available})")
    fine = not unknown
    for group in settings.node_groups:
        for itype in group.instance_types:
            missing = [z for z in chosen if z in available and z not in offered[itype]]
            if missing:
                fine = False
                hint = f"; every type is offered in `{suggestion}`" if suggestion else ""
                found.problems.append(
                    f"{itype} (node group {group.name}) is not offered in {', '.join(missing)}: "
                    f"pick other zoneIds or instance types{hint}"
                )
    if fine:
        found.passed.append(f"zones {', '.join(chosen)} offer every node group's instance types")


def run(caller: str, clients: Clients, region: str, settings: EksSettings, env: Environment) -> Findings:
    """Every check; an AWS call that fails becomes that check's one-line problem, the others still run."""
    found = Findings()
    checks: list[Callable[[], None]] = [
        lambda: check_version(clients("eks"), settings, env.today(), found),
        lambda: check_admin(caller, clients("iam"), settings, found),
        lambda: check_quotas(clients("ec2"), clients("service-quotas"), region, settings, found),
        lambda: check_zones(clients("ec2"), settings, found),
    ]
    for check in checks:
        try:
            check()
        except (ClientError, BotoCoreError) as err:
            found.problems.append(explain(err))
    check_aws_cli(env, found)
    check_public_ip(env, settings, found)
    return found
