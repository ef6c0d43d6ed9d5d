"""EKS managed add-ons: pinned versions, kept on the cluster when their resource is replaced or deleted."""

from __future__ import annotations

import pulumi
import pulumi_aws as aws

# Add-ons flstack manages, and which may be pinned under `addonVersions`.
NETWORKING = ("vpc-cni", "kube-proxy", "coredns")
STORAGE = ("aws-ebs-csi-driver", "aws-efs-csi-driver")
KNOWN = NETWORKING + STORAGE


def version(
    addon_name: str,
    kubernetes_version: str,
    pinned: dict[str, str],
    provider: aws.Provider,
    parent: pulumi.Resource,
) -> pulumi.Input[str]:
    """The pinned version, or EKS's default one for this Kubernetes version.

    Either way the add-on's version is an explicit input that changes only with the config or the
    Kubernetes version, so a cluster upgrade moves its add-ons with it (EKS would leave them behind).
    """
    if addon_name in pinned:
        return pinned[addon_name]
    return aws.eks.get_addon_version_output(
        addon_name=addon_name,
        kubernetes_version=kubernetes_version,
        most_recent=False,  # the default EKS tested for this Kubernetes version, not the newest build
        opts=pulumi.InvokeOutputOptions(parent=parent, provider=provider),
    ).version


def managed_addon(
    name: str,
    cluster_name: pulumi.Input[str],
    addon_name: str,
    addon_version: pulumi.Input[str],
    opts: pulumi.ResourceOptions,
    configuration_values: str | None = None,
    service_account_role_arn: pulumi.Input[str] | None = None,
) -> aws.eks.Addon:
    return aws.eks.Addon(
        name,
        cluster_name=cluster_name,
        addon_name=addon_name,
        addon_version=addon_version,
        configuration_values=configuration_values,
        service_account_role_arn=service_account_role_arn,
        resolve_conflicts_on_create="OVERWRITE",  # adopt what EKS installed with the cluster
        resolve_conflicts_on_update="OVERWRITE",
        # Deleting (or replacing) the resource must not delete the add-on's objects from a live cluster:
        # without the CNI, kube-proxy or CoreDNS every pod loses its network; without a CSI driver, its volumes.
        preserve=True,
        opts=opts,
    )
