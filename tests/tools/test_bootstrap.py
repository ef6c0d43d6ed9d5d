"""State bucket, secrets key and preflight against moto's AWS (no real account: moto-verified only)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import boto3
import pytest

from tools import bootstrap, stack_files

REGION = "eu-west-1"
BUCKET = "flstack-state-test"
ALIAS = "alias/flstack-secrets"


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = bootstrap.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def snapshot() -> dict[str, Any]:
    """Every setting bootstrap manages, read back from AWS."""
    s3 = boto3.client("s3", region_name=REGION)
    kms = boto3.client("kms", region_name=REGION)
    key = kms.describe_key(KeyId=ALIAS)["KeyMetadata"]
    return {
        "buckets": [b["Name"] for b in s3.list_buckets()["Buckets"]],
        "versioning": s3.get_bucket_versioning(Bucket=BUCKET).get("Status"),
        "encryption": s3.get_bucket_encryption(Bucket=BUCKET)["ServerSideEncryptionConfiguration"]["Rules"],
        "publicAccessBlock": s3.get_public_access_block(Bucket=BUCKET)["PublicAccessBlockConfiguration"],
        "policy": json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]),
        "keys": sorted(k["KeyId"] for k in kms.list_keys()["Keys"]),
        "aliases": sorted((a["AliasName"], a.get("TargetKeyId")) for a in kms.list_aliases()["Aliases"]),
        "key": {k: key.get(k) for k in ("Arn", "KeyState", "KeyUsage")},
        "rotation": kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"],
    }


def test_bootstrap_creates_bucket_and_key_and_prints_the_commands(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "--region", REGION, "--bucket", BUCKET, "--instance-types", "m6i.large")
    assert (code, err) == (0, "")
    state = snapshot()
    key_arn = state["key"]["Arn"]
    assert state["buckets"] == [BUCKET]
    assert state["versioning"] == "Enabled"
    assert state["encryption"] == [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True,
        }
    ]
    assert state["publicAccessBlock"] == dict.fromkeys(
        ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
    )
    (statement,) = state["policy"]["Statement"]
    assert statement["Effect"] == "Deny" and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert statement["Resource"] == [f"arn:aws:s3:::{BUCKET}", f"arn:aws:s3:::{BUCKET}/*"]
    assert state["key"]["KeyState"] == "Enabled" and state["rotation"] is True
    assert len(state["keys"]) == 1 and (ALIAS, state["keys"][0]) in state["aliases"]
    assert f"kms key {ALIAS}: created" in out
    assert f"bucket {BUCKET}: created (versioning on, SSE-KMS" in out
    assert f"  pulumi login 's3://{BUCKET}?region={REGION}'\n" in out
    assert f"  pulumi stack init eks-flower --secrets-provider 'awskms://{ALIAS}?region={REGION}'\n" in out


def test_running_bootstrap_again_changes_nothing(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--region", REGION, "--bucket", BUCKET)[0] == 0
    before = snapshot()
    code, out, err = run(capsys, "--region", REGION, "--bucket", BUCKET)
    assert (code, err) == (0, "")
    assert snapshot() == before
    assert f"kms key {ALIAS}: unchanged\n" in out and f"bucket {BUCKET}: unchanged\n" in out


def test_an_existing_bare_bucket_and_unrotated_key_are_brought_into_line(
    aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    boto3.client("s3", region_name=REGION).create_bucket(
        Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
    )
    kms = boto3.client("kms", region_name=REGION)
    key_id = kms.create_key()["KeyMetadata"]["KeyId"]
    kms.create_alias(AliasName=ALIAS, TargetKeyId=key_id)
    code, out, _ = run(capsys, "--region", REGION, "--bucket", BUCKET)
    assert code == 0
    assert f"kms key {ALIAS}: rotation turned on" in out
    assert f"bucket {BUCKET}: updated (versioning on, SSE-KMS encryption" in out
    assert snapshot()["keys"] == [key_id]  # the existing key is used, no second one


def test_a_foreign_bucket_policy_is_not_overwritten(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION})
    statement = {"Effect": "Deny", "Principal": "*", "Action": "s3:DeleteBucket", "Resource": f"arn:aws:s3:::{BUCKET}"}
    theirs = {"Version": "2012-10-17", "Statement": [statement]}
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(theirs))
    code, _, err = run(capsys, "--region", REGION, "--bucket", BUCKET)
    assert code == 1
    assert err.startswith(f"error: bucket {BUCKET} already has a different bucket policy: merge this statement")
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]) == theirs


def test_bucket_in_another_region_is_a_clear_error(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "--region", REGION, "--bucket", BUCKET)[0] == 0
    code, _, err = run(capsys, "--region", "us-east-1", "--bucket", BUCKET)
    assert code == 1
    assert err == f"error: bucket {BUCKET} is in {REGION}, not us-east-1: pass --region {REGION} or another --bucket\n"


def test_bad_bucket_name_is_refused_before_anything_is_created(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        bootstrap.main(["--region", REGION, "--bucket", "Bad_Name"])
    assert exit_info.value.code == 2
    assert "is not a valid S3 bucket name" in capsys.readouterr().err
    assert boto3.client("kms", region_name=REGION).list_keys()["Keys"] == []


def test_preflight_passes_with_offered_instance_types(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "preflight", "--region", REGION, "--instance-types", "m6i.large,g5.xlarge")
    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "ok: credentials: arn:aws:sts::123456789012:user/moto",
        f"ok: region: {REGION}",
        f"ok: availability zones: at least 3 in {REGION}",
        f"ok: instance types offered in {REGION}: m6i.large, g5.xlarge",
    ]


def test_preflight_names_a_bogus_instance_type(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "preflight", "--region", REGION, "--instance-types", "m6i.large,m6i.gigantic")
    assert code == 1
    assert err == f"error: instance type m6i.gigantic is not offered in {REGION} (check the name)\n"


@pytest.mark.parametrize(
    ("region", "expected"),
    [
        ("moon-1", "error: region 'moon-1' does not exist (e.g. eu-west-1, us-east-2)\n"),
        ("eu-middle-9", "error: region 'eu-middle-9' does not exist (e.g. eu-west-1, us-east-2)\n"),
        ("ap-east-1", "error: region ap-east-1 is not enabled for this account (enable it under Account settings"),
    ],
)
def test_preflight_rejects_bad_regions(
    aws: None, capsys: pytest.CaptureFixture[str], region: str, expected: str
) -> None:
    code, _, err = run(capsys, "preflight", "--region", region, "--instance-types", "m6i.large")
    assert code == 1
    assert err.startswith(expected)


def test_preflight_of_a_stack_not_on_eks_is_refused(aws: None, capsys: pytest.CaptureFixture[str]) -> None:
    # The eks stack's own checks (version, admins, CLI, IP, quotas, zones): tests/tools/test_preflight.py.
    code, _, err = run(capsys, "preflight", "--stack", "local")
    assert (code, err) == (1, "error: stack local targets 'minikube', not eks: nothing to check in AWS\n")


def test_missing_credentials_is_one_clear_line(no_aws_config: None, capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["preflight", "--region", REGION], ["--region", REGION, "--bucket", BUCKET]):
        code, out, err = run(capsys, *argv)
        assert code == 1
        assert err == (
            "error: no usable AWS credentials: set AWS_PROFILE (then `aws sso login` if it is an SSO profile), "
            "or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run `aws configure`\n"
        )
        assert "ok: credentials" not in out


def test_cli_without_credentials_prints_no_traceback(no_aws_config: None) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "tools.bootstrap", "preflight", "--region", REGION],
        cwd=stack_files.ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=False,
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: no usable AWS credentials")
    assert "Traceback" not in result.stderr


def test_unknown_profile_is_one_clear_line(no_aws_config: None, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "preflight", "--region", REGION, "--profile", "nosuch")
    assert code == 1
    assert err.startswith("error: The config profile (nosuch) could not be found")
