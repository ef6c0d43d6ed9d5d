"""EBS on EKS (mock-verified): the driver add-on with an IRSA role for ONE service account, gp3 classes."""

from __future__ import annotations

import json
from typing import Any

import pytest

from components.storage import ebs_csi
from tests.helpers import by_name, render_stack, schema_errors
from tools.mock_runtime import MOCK_ACCOUNT

STACK = "eks-flower"


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    return render_stack(STACK).resources()


def issuer_host(rows: list[dict[str, Any]]) -> str:
    (oidc,) = by_name(rows, "aws:iam/openIdConnectProvider:OpenIdConnectProvider").values()
    url: str = oidc["inputs"]["url"]
    return url.removeprefix("https://")


def test_controller_role_trusts_only_the_controller_service_account(rows: list[dict[str, Any]]) -> None:
    role = by_name(rows, "aws:iam/role:Role")["storage-ebs-controller"]
    host = issuer_host(rows)
    assert host == "oidc.eks.mock/id/flstack"
    policy = json.loads(role["inputs"]["assumeRolePolicy"])
    assert policy == {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"Federated": f"arn:aws:iam::{MOCK_ACCOUNT}:oidc-provider/{host}"},
                "Action": "sts:AssumeRoleWithWebIdentity",
                "Condition": {
                    "StringEquals": {
                        f"{host}:aud": "sts.amazonaws.com",
                        f"{host}:sub": "system:serviceaccount:kube-system:ebs-csi-controller-sa",
                    }
                },
            }
        ],
    }


def test_role_has_the_managed_driver_policy(rows: list[dict[str, Any]]) -> None:
    attachment = by_name(rows, "aws:iam/rolePolicyAttachment:RolePolicyAttachment")["storage-ebs-controller"]
    assert attachment["inputs"] == {
        "role": "storage-ebs-controller",
        "policyArn": "arn:aws:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy",
    }


def test_addon_runs_as_the_role_once_nodes_and_policy_exist(rows: list[dict[str, Any]]) -> None:
    addon = by_name(rows, "aws:eks/addon:Addon")["storage-ebs-driver"]
    assert addon["inputs"]["addonName"] == "aws-ebs-csi-driver"
    assert addon["inputs"]["clusterName"] == "flstack"
    assert addon["inputs"]["serviceAccountRoleArn"] == f"arn:aws:iam::{MOCK_ACCOUNT}:role/storage-ebs-controller"
    depends = set(addon["options"]["dependsOn"])
    assert "aws:iam/rolePolicyAttachment:RolePolicyAttachment::storage-ebs-controller" in depends
    assert "aws:eks/nodeGroup:NodeGroup::cluster-general" in depends


def test_gp3_is_the_encrypted_default_and_gp3_retain_keeps_volumes() -> None:
    rendering = render_stack(STACK)
    default = rendering.find("StorageClass", ebs_csi.DEFAULT_CLASS)
    retain = rendering.find("StorageClass", ebs_csi.RETAIN_CLASS)
    for sc in (default, retain):
        assert sc["provisioner"] == "ebs.csi.aws.com"
        assert sc["parameters"] == {"type": "gp3", "encrypted": "true", "csi.storage.k8s.io/fstype": "ext4"}
        assert sc["volumeBindingMode"] == "WaitForFirstConsumer"
        assert sc["allowVolumeExpansion"] is True
        assert schema_errors(sc, "1.34") == []
    assert default["metadata"]["annotations"] == {"storageclass.kubernetes.io/is-default-class": "true"}
    assert default["reclaimPolicy"] == "Delete"
    assert retain["reclaimPolicy"] == "Retain"
    assert "annotations" not in retain["metadata"]
    defaults = [
        obj
        for obj in rendering.manifests()
        if obj["kind"] == "StorageClass"
        and obj["metadata"].get("annotations", {}).get("storageclass.kubernetes.io/is-default-class") == "true"
    ]
    assert len(defaults) == 1


def test_federation_state_goes_on_the_retaining_class() -> None:
    rendering = render_stack(STACK)
    claim = rendering.find("PersistentVolumeClaim", "superlink-state", "demo")
    assert claim["spec"]["storageClassName"] == "gp3-retain"
    assert rendering.outputs()["storage"] == {"dataClass": "gp3-retain", "sharedClass": "shared-efs"}
