"""Everything an AWS stack needs before its first `pulumi up`: a state bucket and a secrets key.

    python -m tools.bootstrap --region R --bucket B [--kms-alias alias/flstack-secrets] [--instance-types T,...]
    python -m tools.bootstrap preflight (--region R [--instance-types T,...] | --stack eks-flower)

Bootstrap runs the preflight checks, then creates (or leaves as they are, when already right) an S3
bucket for Pulumi state (versioned, KMS-encrypted, public access blocked, TLS only) and a KMS key with
an alias for Pulumi secrets (rotation on), and prints the `pulumi login` and `pulumi stack init` lines.
Running it again changes nothing. Failures are one line each and exit with status 1.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from collections.abc import Callable
from typing import Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

# Imported for their registration tables, which fill the config registry parse() checks against.
import components.federations
import components.targets  # noqa: F401
from components.config import ConfigError, parse
from components.targets.eks import EksSettings
from tools import eks_checks, preflight, stack_files
from tools.stack_files import StackNotFoundError

DEFAULT_ALIAS = "alias/flstack-secrets"
DEFAULT_STACK = "eks-flower"
BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
Log = Callable[[str], None]


class BootstrapError(Exception):
    """A failure explained in one line."""


def _code(err: ClientError) -> str:
    return str(err.response.get("Error", {}).get("Code", ""))


def partition_of(arn: str) -> str:
    return arn.split(":")[1]


# The secrets key.


def ensure_key(kms: Any, alias: str, log: Log) -> str:
    """The ARN of the key behind `alias`, created with rotation on if the alias does not exist."""
    try:
        key = kms.describe_key(KeyId=alias)["KeyMetadata"]
    except ClientError as err:
        if _code(err) != "NotFoundException":
            raise
        key = kms.create_key(
            Description="Pulumi secrets provider for flstack stacks",
            KeyUsage="ENCRYPT_DECRYPT",
            KeySpec="SYMMETRIC_DEFAULT",
            Tags=[{"TagKey": "managed-by", "TagValue": "flstack-bootstrap"}],
        )["KeyMetadata"]
        kms.create_alias(AliasName=alias, TargetKeyId=key["KeyId"])
        kms.enable_key_rotation(KeyId=key["KeyId"])
        log(f"kms key {alias}: created ({key['Arn']}), rotation on")
        return str(key["Arn"])
    if key.get("KeyState") != "Enabled":
        raise BootstrapError(f"kms key {alias} is {key.get('KeyState')}: re-enable it or pick another --kms-alias")
    if not kms.get_key_rotation_status(KeyId=key["KeyId"])["KeyRotationEnabled"]:
        kms.enable_key_rotation(KeyId=key["KeyId"])
        log(f"kms key {alias}: rotation turned on")
    else:
        log(f"kms key {alias}: unchanged")
    return str(key["Arn"])


# The state bucket.


def encryption_rules(key_arn: str) -> list[dict[str, Any]]:
    return [
        {
            "ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "aws:kms", "KMSMasterKeyID": key_arn},
            "BucketKeyEnabled": True,  # one KMS call per bucket key instead of per object
        }
    ]


def tls_only_policy(bucket: str, partition: str) -> dict[str, Any]:
    arn = f"arn:{partition}:s3:::{bucket}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "DenyInsecureTransport",
                "Effect": "Deny",
                "Principal": "*",
                "Action": "s3:*",
                "Resource": [arn, f"{arn}/*"],
                "Condition": {"Bool": {"aws:SecureTransport": "false"}},
            }
        ],
    }


PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "IgnorePublicAcls": True,
    "BlockPublicPolicy": True,
    "RestrictPublicBuckets": True,
}


def _bucket_region(s3: Any, bucket: str) -> str:
    location = s3.get_bucket_location(Bucket=bucket).get("LocationConstraint")
    return str(location or "us-east-1")  # us-east-1 answers with no constraint


def ensure_bucket(s3: Any, bucket: str, region: str, account: str) -> bool:
    """True if the bucket was created; an error if the name is taken elsewhere or in another region."""
    try:
        s3.head_bucket(Bucket=bucket, ExpectedBucketOwner=account)
    except ClientError as err:
        code = _code(err)
        if code in ("403", "AccessDenied"):
            raise BootstrapError(
                f"bucket {bucket} exists but not in account {account}: bucket names are global, pick another --bucket"
            ) from None
        if code == "301":
            raise BootstrapError(f"bucket {bucket} is in another region than {region}") from None
        if code not in ("404", "NoSuchBucket"):
            raise
        args: dict[str, Any] = {"Bucket": bucket}
        if region != "us-east-1":
            args["CreateBucketConfiguration"] = {"LocationConstraint": region}
        s3.create_bucket(**args)
        return True
    actual = _bucket_region(s3, bucket)
    if actual != region:
        raise BootstrapError(
            f"bucket {bucket} is in {actual}, not {region}: pass --region {actual} or another --bucket"
        )
    return False


def _current(call: Callable[[], Any], missing_codes: set[str]) -> Any:
    """The current setting, or None when S3 says it was never set."""
    try:
        return call()
    except ClientError as err:
        if _code(err) in missing_codes:
            return None
        raise


def configure_bucket(s3: Any, bucket: str, key_arn: str, partition: str) -> list[str]:
    """Puts each setting that differs from what it should be; returns what changed."""
    changed = []
    if s3.get_bucket_versioning(Bucket=bucket).get("Status") != "Enabled":
        s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
        changed.append("versioning on")

    rules = _current(
        lambda: s3.get_bucket_encryption(Bucket=bucket)["ServerSideEncryptionConfiguration"]["Rules"],
        {"ServerSideEncryptionConfigurationNotFoundError"},
    )
    if rules != encryption_rules(key_arn):
        s3.put_bucket_encryption(Bucket=bucket, ServerSideEncryptionConfiguration={"Rules": encryption_rules(key_arn)})
        changed.append("SSE-KMS encryption with the secrets key")

    block = _current(
        lambda: s3.get_public_access_block(Bucket=bucket)["PublicAccessBlockConfiguration"],
        {"NoSuchPublicAccessBlockConfiguration"},
    )
    if block != PUBLIC_ACCESS_BLOCK:
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)
        changed.append("public access blocked")

    policy = _current(lambda: json.loads(s3.get_bucket_policy(Bucket=bucket)["Policy"]), {"NoSuchBucketPolicy"})
    wanted = tls_only_policy(bucket, partition)
    if policy != wanted:
        if policy is not None:
            raise BootstrapError(
                f"bucket {bucket} already has a different bucket policy: merge this statement into it by hand: "
                + json.dumps(wanted["Statement"][0])
            )
        s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(wanted))
        changed.append("TLS-only bucket policy")
    return changed


def next_steps(bucket: str, region: str, alias: str, stack: str) -> list[str]:
    """Quoted for the shell: the URLs contain `?` and `&`."""
    return [
        f"pulumi login 's3://{bucket}?region={region}'",
        f"pulumi stack init {stack} --secrets-provider 'awskms://{alias}?region={region}'",
    ]


def bootstrap(session: boto3.session.Session, region: str, bucket: str, alias: str, log: Log) -> None:
    arn = preflight.caller_arn(session, region)
    account = arn.split(":")[4]
    s3 = session.client("s3", region_name=region)
    created = ensure_bucket(s3, bucket, region, account)  # first: a taken name stops us before anything exists
    key_arn = ensure_key(session.client("kms", region_name=region), alias, log)
    changes = configure_bucket(s3, bucket, key_arn, partition_of(arn))
    if created:
        log(f"bucket {bucket}: created ({', '.join(changes)})")
    elif changes:
        log(f"bucket {bucket}: updated ({', '.join(changes)})")
    else:
        log(f"bucket {bucket}: unchanged")


# Command line.


def _instance_types(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def stack_settings(stack: str) -> EksSettings:
    """The eks target settings of a stack's file."""
    files = stack_files.load(stack)
    raw = {k.partition(":")[2]: json.loads(v) for k, v in files.config.items() if k.startswith("flstack:")}
    target = parse(raw, files.secret_keys).target
    if target.kind != "eks":
        raise BootstrapError(f"stack {stack} targets {target.kind!r}, not eks: nothing to check in AWS")
    settings: EksSettings = target.settings
    return settings


def _report(report: preflight.Report) -> int:
    for line in report.passed:
        print(f"ok: {line}")
    for line in report.notes:
        print(f"note: {line}")
    for line in report.problems:
        print(f"error: {line}", file=sys.stderr)
    return 0 if report.ok else 1


def session_clients(session: boto3.session.Session, region: str) -> eks_checks.Clients:
    return lambda service: session.client(service, region_name=region)


def main_preflight(
    argv: list[str],
    env: eks_checks.Environment | None = None,
    clients: Callable[[boto3.session.Session, str], eks_checks.Clients] = session_clients,
) -> int:
    """Account checks; with --stack also the stack's own (version, admins, CLI, IP, quotas, zones)."""
    parser = argparse.ArgumentParser(prog="python -m tools.bootstrap preflight", description="Checks only.")
    parser.add_argument("--region", help="AWS region (default: the stack's)")
    parser.add_argument("--instance-types", help="comma-separated, e.g. m6i.large,g5.xlarge")
    parser.add_argument("--stack", help="take region and node-group instance types from stacks/Pulumi.STACK.yaml")
    parser.add_argument("--profile", help="AWS profile (default: the usual AWS_PROFILE / default chain)")
    args = parser.parse_args(argv)
    region, types = args.region, _instance_types(args.instance_types)
    settings = stack_settings(args.stack) if args.stack else None
    if settings is not None:
        region = region or settings.region
        types = types or [t for group in settings.node_groups for t in group.instance_types]
    if not region:
        parser.error("give --region or --stack")
    session = boto3.session.Session(profile_name=args.profile)
    report = preflight.run(session, region, types)
    if settings is not None and report.ok and report.caller:
        found = eks_checks.run(
            report.caller, clients(session, region), region, settings, env or eks_checks.Environment()
        )
        report.passed += found.passed
        report.problems += found.problems
        report.notes += found.notes
    return _report(report)


def main_bootstrap(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.bootstrap", description=__doc__.split("\n\n")[0])
    parser.add_argument("--region", required=True)
    parser.add_argument("--bucket", required=True, help="S3 bucket for Pulumi state (a globally unique name)")
    parser.add_argument(
        "--kms-alias", default=DEFAULT_ALIAS, help=f"alias of the secrets key (default {DEFAULT_ALIAS})"
    )
    parser.add_argument("--instance-types", help="also check these are offered in the region (comma-separated)")
    parser.add_argument(
        "--stack", default=DEFAULT_STACK, help=f"stack name for the printed init line ({DEFAULT_STACK})"
    )
    parser.add_argument("--profile", help="AWS profile (default: the usual AWS_PROFILE / default chain)")
    args = parser.parse_args(argv)
    if not BUCKET_NAME.fullmatch(args.bucket) or ".." in args.bucket:
        parser.error(f"--bucket {args.bucket!r} is not a valid S3 bucket name (3-63 of a-z, 0-9, '.', '-')")
    if not args.kms_alias.startswith("alias/"):
        parser.error("--kms-alias must start with alias/")
    session = boto3.session.Session(profile_name=args.profile)
    checked = preflight.run(session, args.region, _instance_types(args.instance_types))
    if _report(checked):
        return 1
    bootstrap(session, args.region, args.bucket, args.kms_alias, print)
    print("\nnext:")
    for line in next_steps(args.bucket, args.region, args.kms_alias, args.stack):
        print(f"  {line}")
    return 0


def main(argv: list[str] | None = None, **preflight_options: Any) -> int:
    """`preflight_options` (env, clients) replace the machine and AWS clients in tests."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        if argv[:1] == ["preflight"]:
            return main_preflight(argv[1:], **preflight_options)
        return main_bootstrap(argv)
    except (BootstrapError, preflight.PreflightError, ConfigError, StackNotFoundError) as err:
        print(f"error: {err}", file=sys.stderr)
    except (ClientError, BotoCoreError) as err:
        print(f"error: {preflight.explain(err)}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
