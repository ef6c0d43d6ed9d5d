"""EFS on EKS (mock-verified): encrypted, retained file system, a mount target per private subnet, the CSI add-on."""

from __future__ import annotations

import json
from typing import Any

import pytest
from pulumi.runtime import mocks

from components.config import ConfigError
from tests.helpers import MINIKUBE, by_name, render, render_stack, schema_errors
from tools.mock_runtime import MOCK_ACCOUNT

STACK = "eks-flower"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack(STACK).resources()


def test_file_system_is_encrypted_protected_and_retained(rows: list[dict[str, Any]]) -> None:
    (fs,) = by_name(rows, "aws:efs/fileSystem:FileSystem").values()
    assert fs["inputs"]["encrypted"] is True
    assert fs["options"]["protect"] is True and fs["options"]["retainOnDelete"] is True


def test_one_mount_target_per_private_subnet_behind_the_nfs_security_group(rows: list[dict[str, Any]]) -> None:
    mounts = by_name(rows, "aws:efs/mountTarget:MountTarget").values()
    private = {f"{name}-id" for name in by_name(rows, "aws:ec2/subnet:Subnet") if "-private-" in name}
    assert len(private) == 3
    assert sorted(m["inputs"]["subnetId"] for m in mounts) == sorted(private)
    assert all(m["inputs"]["fileSystemId"] == "storage-efs-fs-id" for m in mounts)
    assert all(m["inputs"]["securityGroups"] == ["storage-efs-mounts-id"] for m in mounts)
    (rule,) = by_name(rows, "aws:vpc/securityGroupIngressRule:SecurityGroupIngressRule").values()
    assert {k: rule["inputs"][k] for k in ("securityGroupId", "ipProtocol", "fromPort", "toPort", "cidrIpv4")} == {
        "securityGroupId": "storage-efs-mounts-id",
        "ipProtocol": "tcp",
        "fromPort": 2049,
        "toPort": 2049,
        "cidrIpv4": "10.0.0.0/16",
    }


def test_driver_role_trusts_only_the_efs_controller_and_node_plugin(rows: list[dict[str, Any]]) -> None:
    role = by_name(rows, "aws:iam/role:Role")["storage-efs-controller"]
    (statement,) = json.loads(role["inputs"]["assumeRolePolicy"])["Statement"]
    host = "oidc.eks.mock/id/flstack"
    assert statement["Principal"] == {"Federated": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{host}"}
    assert statement["Condition"] == {
        "StringEquals": {
            f"{host}:aud": "sts.amazonaws.com",
            # The node plugin mounts with the same role when mounts are IAM-authorised.
            f"{host}:sub": [
                "system:serviceaccount:kube-system:efs-csi-controller-sa",
                "system:serviceaccount:kube-system:efs-csi-node-sa",
            ],
        }
    }
    attachment = by_name(rows, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")["storage-efs-controller"]
    assert attachment["inputs"]["policyArn"] == "arn:aws:iam::aws:policy/service-role/AmazonEFSCSIDriverPolicy"
    addon = by_name(rows, "aws:eks/addon:Addon")["storage-efs-driver"]
    assert addon["inputs"]["addonName"] == "aws-efs-csi-driver"
    assert addon["inputs"]["serviceAccountRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT}:role/storage-efs-controller"


def test_shared_class_provisions_access_points_in_the_file_system() -> None:
    sc = render_stack(STACK).find("StorageClass", "shared-efs")
    assert sc["provisioner"] == "efs.csi.aws.com"
    assert sc["parameters"] == {
        "provisioningMode": "efs-ap",
        "fileSystemId": "storage-efs-fs-id",
        "directoryPerms": "700",
        "basePath": "/flstack",
    }
    assert sc["reclaimPolicy"] == "Retain"
    assert "allowVolumeExpansion" not in sc  # EFS is elastic: the driver ignores expansion requests
    assert schema_errors(sc, "1.35") == []


@pytest.mark.parametrize(
    "target",
    [MINIKUBE, {"kind": "existing", "existing": {"context": "lab"}}],
    ids=["minikube", "existing"],
)
def test_efs_off_eks_is_a_config_error_before_any_resource(target: dict[str, Any]) -> None:
    seen: list[str] = []

    class Counting(mocks.Mocks):
        def new_resource(self, args: mocks.MockResourceArgs) -> tuple[str, dict[str, Any]]:
            seen.append(args.typ)
            return args.name, args.inputs

        def call(self, args: mocks.MockCallArgs) -> tuple[dict[str, Any], list[tuple[str, str]]]:
            return {}, []

    with pytest.raises(ConfigError) as err:
        render({"target": target, "storage": {"shared": {"kind": "efs"}}}, mock=Counting())
    assert f"flstack:storage.shared.kind: 'efs' needs the eks target (target is '{target['kind']}')" in str(err.value)
    assert seen == []
