"""IAM for EKS: roles AWS services assume, and IRSA roles trusted by the cluster OIDC provider for ONE account."""

from __future__ import annotations

import json
from typing import Any

import pulumi
import pulumi_aws as aws


def issuer_host(url: str) -> str:
    """IAM condition keys use the issuer without its scheme (`oidc.eks.REGION.amazonaws.com/id/ID`)."""
    return url.removeprefix("https://")


def trust_policy(provider_arn: str, provider_url: str, namespace: str, service_accounts: list[str]) -> str:
    """Only the named service accounts' projected tokens (audience STS) may assume the role."""
    host = issuer_host(provider_url)
    subjects = [f"system:serviceaccount:{namespace}:{sa}" for sa in service_accounts]
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Allow",
                    "Principal": {"Federated": provider_arn},
                    "Action": "sts:AssumeRoleWithWebIdentity",
                    "Condition": {
                        "StringEquals": {
                            f"{host}:aud": "sts.amazonaws.com",
                            f"{host}:sub": subjects[0] if len(subjects) == 1 else subjects,
                        }
                    },
                }
            ],
        },
        sort_keys=True,
    )


def service_account_trust(
    oidc: aws.iam.OpenIdConnectProvider, namespace: str, service_accounts: list[str]
) -> pulumi.Output[str]:
    return pulumi.Output.all(oidc.arn, oidc.url).apply(
        lambda args: trust_policy(args[0], args[1], namespace, service_accounts)
    )


def service_account_role(
    name: str,
    oidc: aws.iam.OpenIdConnectProvider,
    namespace: str,
    service_accounts: list[str],
    managed_policy: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
) -> tuple[aws.iam.Role, aws.iam.RolePolicyAttachment]:
    """A role for `namespace/<each service account>` with one AWS managed policy; wait on both before use."""
    role = aws.iam.Role(
        name,
        assume_role_policy=service_account_trust(oidc, namespace, service_accounts),
        description=f"IRSA role for {namespace}/{','.join(service_accounts)}",
        opts=opts,
    )
    attachment = aws.iam.RolePolicyAttachment(name, role=role.name, policy_arn=managed_policy, opts=opts)
    return role, attachment


def managed_policy_arn(partition: pulumi.Input[str], path: str) -> pulumi.Output[str]:
    """`service-role/AmazonEBSCSIDriverPolicy` -> `arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy`."""
    return pulumi.Output.concat("arn:", partition, ":iam::aws:policy/", path)


def service_trust_policy(service: str) -> str:
    """A role that an AWS service (eks.amazonaws.com, ec2.amazonaws.com) assumes."""
    statement: dict[str, Any] = {
        "Effect": "Allow",
        "Principal": {"Service": service},
        "Action": "sts:AssumeRole",
    }
    return json.dumps({"Version": "2012-10-17", "Statement": [statement]}, sort_keys=True)
