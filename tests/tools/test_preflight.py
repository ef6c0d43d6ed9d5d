"""Preflight of an EKS stack: moto's AWS where moto has the call (STS, IAM, EC2), botocore's Stubber where
it has not (EKS DescribeClusterVersions, Service Quotas for EC2). Stubbed clients still validate every
request and response against the real API models. No real account, no network."""

from __future__ import annotations

import datetime
import json
from collections.abc import Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber

from components.config import parse
from components.targets.eks import EksSettings
from tests.helpers import eks
from tools import bootstrap, eks_checks

MOTO_USER = "arn:aws:iam::123456789012:user/moto"  # who moto says the test credentials are
TODAY = datetime.date(2026, 11, 22)
UTC = datetime.UTC


def settings(region: str = "eu-west-1", **changes: Any) -> EksSettings:
    base = {"region": region, "adminPrincipals": [MOTO_USER], "publicAccessCidrs": ["203.0.113.0/24"]}
    target: EksSettings = parse({"target": eks(**{**base, **changes})}).target.settings
    return target


def version(v: str, status: str, standard_end: datetime.datetime, extended_end: datetime.datetime) -> dict[str, Any]:
    return {
        "clusterVersion": v,
        "clusterType": "eks",
        "versionStatus": status,
        "endOfStandardSupportDate": standard_end,
        "endOfExtendedSupportDate": extended_end,
    }


CALENDAR = [  # as EKS answers on 2026-12-10 (release calendar dates)
    version(
        "1.33",
        "EXTENDED_SUPPORT",
        datetime.datetime(2026, 7, 29, tzinfo=UTC),
        datetime.datetime(2027, 7, 29, tzinfo=UTC),
    ),
    version(
        "1.34",
        "EXTENDED_SUPPORT",
        datetime.datetime(2026, 12, 2, tzinfo=UTC),
        datetime.datetime(2027, 12, 2, tzinfo=UTC),
    ),
    version(
        "1.35",
        "STANDARD_SUPPORT",
        datetime.datetime(2027, 3, 27, tzinfo=UTC),
        datetime.datetime(2028, 3, 27, tzinfo=UTC),
    ),
]


class FakeAws:
    """moto's clients, except EKS and Service Quotas: real botocore clients answered by a Stubber."""

    def __init__(self, region: str, calendar: list[dict[str, Any]], quotas: dict[str, float]) -> None:
        self.region = region
        self.eks = boto3.client("eks", region_name=region)
        self.quotas = boto3.client("service-quotas", region_name=region)
        self.eks_stub, self.quota_stub = Stubber(self.eks), Stubber(self.quotas)
        self.eks_stub.add_response("describe_cluster_versions", {"clusterVersions": calendar}, {"includeAll": True})
        self.quota_values = quotas

    def expect_quotas(self, codes: list[str]) -> None:
        for code in codes:
            quota = {"ServiceCode": "ec2", "QuotaCode": code, "QuotaName": code, "Value": self.quota_values[code]}
            self.quota_stub.add_response(
                "get_service_quota", {"Quota": quota}, {"ServiceCode": "ec2", "QuotaCode": code}
            )

    def clients(self, session: boto3.session.Session, region: str) -> eks_checks.Clients:
        moto = bootstrap.session_clients(session, region)
        return lambda service: {"eks": self.eks, "service-quotas": self.quotas}.get(service) or moto(service)

    def __enter__(self) -> FakeAws:
        self.eks_stub.activate()
        self.quota_stub.activate()
        return self

    def __exit__(self, *exc: object) -> None:
        self.eks_stub.assert_no_pending_responses()  # every stubbed call was made
        self.quota_stub.assert_no_pending_responses()
        self.eks_stub.deactivate()
        self.quota_stub.deactivate()


def env(
    ip: str = "203.0.113.10", cli: str | None = "aws-cli/2.31.4 Python/3.13.7 Linux/6.8 exe/x86_64"
) -> eks_checks.Environment:
    return eks_checks.Environment(aws_cli_version=lambda: cli, public_ip=lambda: ip, today=lambda: TODAY)


@pytest.fixture
def fake(aws: None) -> Iterator[Callable[..., FakeAws]]:
    made: list[FakeAws] = []

    def make(region: str = "eu-west-1", calendar: list[dict[str, Any]] = CALENDAR, **quotas: float) -> FakeAws:
        made.append(FakeAws(region, calendar, quotas).__enter__())
        return made[-1]

    yield make
    for f in made:
        f.__exit__()


def check(
    fake_aws: FakeAws, s: EksSettings, e: eks_checks.Environment | None = None, caller: str = MOTO_USER
) -> eks_checks.Findings:
    session = boto3.session.Session()
    return eks_checks.run(caller, fake_aws.clients(session, fake_aws.region), fake_aws.region, s, e or env())


# Kubernetes version support (DescribeClusterVersions).

ALL_QUOTAS = {"L-1216C47A": 1000, "L-DB2E81BA": 1000, "L-417A185B": 1000}


def test_a_version_past_standard_support_is_refused_with_standard_upgrade_policy(fake: Callable[..., FakeAws]) -> None:
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(kubernetesVersion="1.34"))
    assert found.problems == [
        "kubernetesVersion 1.34 left EKS standard support on 2026-12-02: with supportType STANDARD EKS refuses a "
        "new cluster and upgrades an existing one itself; set kubernetesVersion to 1.35 "
        "(or supportType: EXTENDED, $0.60 instead of $0.10 per cluster-hour)"
    ]


def test_extended_support_is_accepted_when_asked_for_and_its_cost_said(fake: Callable[..., FakeAws]) -> None:
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(kubernetesVersion="1.34", supportType="EXTENDED"))
    assert found.problems == []
    assert (
        "kubernetes 1.34: extended support ($0.60 instead of $0.10 per cluster-hour) until 2027-12-02" in found.passed
    )


def test_the_default_version_is_in_standard_support_and_the_end_is_announced(fake: Callable[..., FakeAws]) -> None:
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings())
    assert "kubernetes 1.35: standard support until 2027-03-27" in found.passed
    assert found.problems == []
    later = fake(**ALL_QUOTAS)
    later.expect_quotas(["L-1216C47A"])
    february = eks_checks.Environment(
        lambda: "aws-cli/2.31.4", lambda: "203.0.113.10", lambda: datetime.date(2027, 2, 1)
    )
    soon = check(later, settings(), february)
    assert "kubernetes 1.35: standard support until 2027-03-27 (54 days left: plan the bump to 1.35)" in soon.passed


def test_a_version_eks_does_not_offer(fake: Callable[..., FakeAws]) -> None:
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(kubernetesVersion="1.29"))
    assert found.problems == ["kubernetesVersion 1.29 is not offered by EKS: set kubernetesVersion to 1.35"]


# Who runs Pulumi must be an admin principal (assumed roles resolved through IAM, path included).


def assumed_role_session(path: str, name: str) -> str:
    iam = boto3.client("iam")
    trust = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"AWS": "123456789012"}, "Action": "sts:AssumeRole"}],
    }
    iam.create_role(RoleName=name, Path=path, AssumeRolePolicyDocument=json.dumps(trust))
    sts = boto3.client("sts", region_name="eu-west-1")
    creds = sts.assume_role(RoleArn=f"arn:aws:iam::123456789012:role{path}{name}", RoleSessionName="alice")[
        "Credentials"
    ]
    as_role = boto3.session.Session(
        aws_access_key_id=creds["AccessKeyId"],
        aws_secret_access_key=creds["SecretAccessKey"],
        aws_session_token=creds["SessionToken"],
    )
    caller: str = as_role.client("sts", region_name="eu-west-1").get_caller_identity()["Arn"]
    return caller


def test_an_assumed_role_caller_is_resolved_to_its_role_with_path(fake: Callable[..., FakeAws]) -> None:
    caller = assumed_role_session("/team/", "flstack-admin")
    assert caller == "arn:aws:sts::123456789012:assumed-role/flstack-admin/alice"
    role = "arn:aws:iam::123456789012:role/team/flstack-admin"
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(adminPrincipals=[role]), caller=caller)
    assert f"caller {role} is in adminPrincipals" in found.passed and found.problems == []


def test_an_admin_listed_without_the_roles_path_is_not_the_caller(fake: Callable[..., FakeAws]) -> None:
    caller = assumed_role_session("/team/", "flstack-admin")
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(adminPrincipals=["arn:aws:iam::123456789012:role/flstack-admin"]), caller=caller)
    assert found.problems[0].startswith(
        "the caller arn:aws:iam::123456789012:role/team/flstack-admin is not in adminPrincipals"
    )


def test_a_caller_outside_admin_principals_is_one_line_naming_the_fix(fake: Callable[..., FakeAws]) -> None:
    caller = assumed_role_session("/", "ci-deployer")
    f = fake(**ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings(adminPrincipals=["arn:aws:iam::123456789012:role/flstack-admin"]), caller=caller)
    assert found.problems == [
        "the caller arn:aws:iam::123456789012:role/ci-deployer is not in adminPrincipals: add it (the Kubernetes "
        "provider authenticates as whoever runs Pulumi) or run as one of "
        "['arn:aws:iam::123456789012:role/flstack-admin']"
    ]


# The machine: aws CLI for exec auth, public IP inside publicAccessCidrs (lookup injected: no network).


@pytest.mark.parametrize(
    ("cli", "expected"),
    [
        (None, "the aws CLI is not on PATH: the Kubernetes provider runs `aws eks get-token` (install AWS CLI v2)"),
        (
            "aws-cli/2.6.3 Python/3.9.11 Linux/5.15 exe/x86_64",
            "aws CLI 2.6.3 is too old for `aws eks get-token` with client.authentication.k8s.io/v1beta1 "
            "(needs 1.24.0 or 2.7.0 or later): upgrade it",
        ),
        ("aws-cli/1.22.97 Python/3.9.7 Linux/5.15 botocore/1.24.42", "aws CLI 1.22.97 is too old"),
    ],
)
def test_the_aws_cli_must_be_there_and_new_enough(cli: str | None, expected: str) -> None:
    found = eks_checks.Findings()
    eks_checks.check_aws_cli(env(cli=cli), found)
    assert len(found.problems) == 1 and found.problems[0].startswith(expected)


def test_a_new_enough_aws_cli_passes() -> None:
    for cli in ("aws-cli/1.24.0 Python/3.10 Linux/5.15 botocore/1.26.0", "aws-cli/2.31.4 Python/3.13.7 Linux/6.8"):
        found = eks_checks.Findings()
        eks_checks.check_aws_cli(env(cli=cli), found)
        assert found.problems == [] and found.passed[0].startswith("aws CLI ")


def test_the_runners_public_ip_must_be_inside_public_access_cidrs() -> None:
    found = eks_checks.Findings()
    eks_checks.check_public_ip(env(ip="198.51.100.7"), settings(), found)
    assert found.problems == [
        "this machine's public IP 198.51.100.7 is outside publicAccessCidrs ['203.0.113.0/24']: add 198.51.100.7/32 "
        "(Pulumi reaches the API server from here)"
    ]
    inside = eks_checks.Findings()
    eks_checks.check_public_ip(env(ip="203.0.113.99"), settings(), inside)
    assert inside.passed == ["public IP 203.0.113.99 is inside publicAccessCidrs"] and inside.problems == []


def test_an_unreachable_ip_service_is_a_note_not_a_guess() -> None:
    def offline() -> str:
        raise OSError("Network is unreachable")

    found = eks_checks.Findings()
    eks_checks.check_public_ip(eks_checks.Environment(public_ip=offline), settings(), found)
    assert found.problems == [] and found.notes == [
        "this machine's public IP could not be learnt (Network is unreachable): check publicAccessCidrs by hand"
    ]


# Quotas: vCPUs at maxSize per EC2 quota (instance sizes from moto's EC2, quota values stubbed).

GPU_GROUPS = [
    {"name": "general", "instanceTypes": ["m6i.large"], "maxSize": 4},
    {"name": "gpu", "gpu": True, "instanceTypes": ["g5.xlarge"], "minSize": 0, "desiredSize": 0, "maxSize": 2},
    {
        "name": "spot",
        "instanceTypes": ["c6i.2xlarge"],
        "capacityType": "SPOT",
        "minSize": 0,
        "desiredSize": 0,
        "maxSize": 10,
    },
]


def test_quotas_below_what_max_size_needs_name_the_increase_to_request(fake: Callable[..., FakeAws]) -> None:
    f = fake(**{"L-1216C47A": 32, "L-DB2E81BA": 0, "L-34B43A08": 64})
    f.expect_quotas(["L-DB2E81BA", "L-1216C47A", "L-34B43A08"])  # in (capacity type, class) order
    found = check(f, settings(nodeGroups=GPU_GROUPS))
    quota_lines = [p for p in found.problems if p.startswith("quota")]
    assert quota_lines == [
        "quota L-DB2E81BA (Running On-Demand G and VT instances) is 0 vCPUs in eu-west-1; node groups gpu need up to 8 "
        "at maxSize: `aws service-quotas request-service-quota-increase --service-code ec2 --quota-code L-DB2E81BA "
        "--desired-value 8 --region eu-west-1`",
        "quota L-34B43A08 (All Standard (A, C, D, H, I, M, R, T, Z) Spot Instance Requests) is 64 vCPUs in eu-west-1; "
        "node groups spot need up to 80 at maxSize: `aws service-quotas request-service-quota-increase --service-code "
        "ec2 --quota-code L-34B43A08 --desired-value 80 --region eu-west-1`",
    ]
    assert any(
        p.startswith("quota L-1216C47A (Running On-Demand Standard") and ">= 8 for general" in p for p in found.passed
    )


# Zones by ID: offered instance types per zone (moto's offerings), pinned zones checked, unpinned suggested.

P4D = [
    {"name": "general"},
    {"name": "train", "instanceTypes": ["p4d.24xlarge"], "minSize": 0, "desiredSize": 0, "maxSize": 1},
]


def test_a_pinned_zone_without_an_instance_type_is_named_with_zones_that_have_it(fake: Callable[..., FakeAws]) -> None:
    f = fake("us-east-1", **ALL_QUOTAS)
    f.expect_quotas(["L-417A185B", "L-1216C47A"])
    found = check(f, settings("us-east-1", nodeGroups=P4D, zoneIds=["use1-az4", "use1-az5", "use1-az6"]))
    assert found.problems == [
        "p4d.24xlarge (node group train) is not offered in use1-az5: pick other zoneIds or instance types; "
        "every type is offered in `zoneIds: [use1-az1, use1-az2, use1-az4]`"
    ]


def test_unpinned_zones_get_a_suggestion_that_skips_the_rejected_ids(fake: Callable[..., FakeAws]) -> None:
    f = fake("us-east-1", **ALL_QUOTAS)
    f.expect_quotas(["L-1216C47A"])
    found = check(f, settings("us-east-1"))
    assert found.notes == [
        "zones are not pinned: add `zoneIds: [use1-az1, use1-az2, use1-az4]` to the stack's eks settings"
    ]
    pinned = fake("us-east-1", **ALL_QUOTAS)
    pinned.expect_quotas(["L-1216C47A"])
    ok = check(pinned, settings("us-east-1", zoneIds=["use1-az1", "use1-az2", "use1-az4"]))
    assert "zones use1-az1, use1-az2, use1-az4 offer every node group's instance types" in ok.passed
    assert ok.problems == [] and ok.notes == []


# The command line, on the shipped stack.


def test_preflight_of_the_shipped_stack_runs_every_check_and_names_the_example_admin(
    fake: Callable[..., FakeAws], capsys: pytest.CaptureFixture[str]
) -> None:
    f = fake(**{"L-1216C47A": 1000, "L-DB2E81BA": 8})
    f.expect_quotas(["L-DB2E81BA", "L-1216C47A"])
    code = bootstrap.main(["preflight", "--stack", "eks-flower"], env=env(), clients=f.clients)
    out, err = capsys.readouterr()
    assert code == 1
    # The stack's admin is a placeholder account: the one line says what to change. (moto names its user
    # arn:aws:sts::...:user/moto where AWS would say arn:aws:iam::...; an IAM user is its own principal.)
    assert err == (
        "error: the caller arn:aws:sts::123456789012:user/moto is not in adminPrincipals: add it (the Kubernetes "
        "provider authenticates as whoever runs Pulumi) or run as one of "
        "['arn:aws:iam::111122223333:role/flstack-admin']\n"
    )
    assert out.splitlines() == [
        "ok: credentials: arn:aws:sts::123456789012:user/moto",
        "ok: region: eu-west-1",
        "ok: availability zones: at least 3 in eu-west-1",
        "ok: instance types offered in eu-west-1: m6i.large, c6i.2xlarge, g5.xlarge",
        "ok: kubernetes 1.35: standard support until 2027-03-27",
        "ok: quota L-DB2E81BA (Running On-Demand G and VT instances): 8 vCPUs >= 8 for gpu "
        "(running instances not counted)",
        "ok: quota L-1216C47A (Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances): 1000 vCPUs >= 88 "
        "for general, fl (running instances not counted)",
        "ok: zones euw1-az1, euw1-az2, euw1-az3 offer every node group's instance types",
        "ok: aws CLI 2.31.4",
        "ok: public IP 203.0.113.10 is inside publicAccessCidrs",
    ]


def test_without_iam_get_role_the_role_is_compared_without_its_path_and_that_is_said() -> None:
    iam = boto3.client("iam", region_name="us-east-1")
    with Stubber(iam) as stub:
        stub.add_client_error("get_role", "AccessDenied", "not allowed", 403, expected_params={"RoleName": "admin"})
        found = eks_checks.Findings()
        admins = ["arn:aws:iam::123456789012:role/team/admin"]
        eks_checks.check_admin(
            "arn:aws:sts::123456789012:assumed-role/admin/alice", iam, settings(adminPrincipals=admins), found
        )
    assert found.passed == ["caller arn:aws:iam::123456789012:role/admin is in adminPrincipals"]
    assert found.notes == ["role path not checked (iam:GetRole was refused)"]
