"""An EKS managed CSI driver add-on whose controller gets AWS rights through IRSA."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import pulumi
import pulumi_aws as aws

from components import iam

if TYPE_CHECKING:  # the eks target builds this: no import back at run time
    from components.targets.eks import EksCluster


def csi_driver(
    name: str,
    cluster: EksCluster,
    addon_name: str,
    service_accounts: list[str],
    managed_policy: str,
    aws_opts: pulumi.ResourceOptions,
    wait_for: Sequence[pulumi.Resource] = (),
) -> tuple[aws.iam.Role, aws.eks.Addon]:
    """The role (trusted only by kube-system/`service_accounts`) and the add-on wired to it."""
    role, attachment = iam.service_account_role(
        f"{name}-controller",
        cluster.oidc_provider,
        "kube-system",
        service_accounts,
        cluster.managed_policy(managed_policy),
        aws_opts,
    )
    addon = cluster.addon(
        f"{name}-driver",
        addon_name,
        service_account_role_arn=role.arn,
        # The add-on turns ACTIVE only once its controller runs: it needs nodes and its policy.
        opts=pulumi.ResourceOptions.merge(
            aws_opts, pulumi.ResourceOptions(depends_on=[attachment, *wait_for, *cluster.node_groups])
        ),
    )
    return role, addon
