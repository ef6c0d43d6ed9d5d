"""The shared Kubernetes building blocks: schema-valid objects with the hardened defaults."""

from __future__ import annotations

from components import kube
from tests.helpers import schema_errors

LABELS = {"app.kubernetes.io/name": "x"}


def test_a_claim_uses_the_default_class_unless_one_is_named() -> None:
    default = kube.claim("data", "ns", "2Gi", None, LABELS)
    assert default["spec"] == {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}
    assert kube.claim("data", "ns", "2Gi", "fast", LABELS)["spec"]["storageClassName"] == "fast"
    assert default["metadata"] == {"name": "data", "namespace": "ns", "labels": LABELS}
    assert schema_errors(default, "1.34.0") == []


def test_a_service_account_mounts_no_token_unless_asked() -> None:
    account = kube.service_account("app", "ns", LABELS)
    assert account["automountServiceAccountToken"] is False
    assert kube.service_account("app", "ns", LABELS, automount=True)["automountServiceAccountToken"] is True
    assert schema_errors(account, "1.34.0") == []


def test_scratch_volumes_pair_each_mount_with_an_empty_dir() -> None:
    mounts, volumes = kube.scratch_volumes("/home/app")
    assert mounts == [{"name": "home", "mountPath": "/home/app"}, {"name": "tmp", "mountPath": "/tmp"}]
    assert volumes == [{"name": "home", "emptyDir": {}}, {"name": "tmp", "emptyDir": {}}]
    assert kube.env(("HOME", "/home/app"), ("A", "1")) == [
        {"name": "HOME", "value": "/home/app"},
        {"name": "A", "value": "1"},
    ]


def test_pod_references_cover_every_way_a_pod_reads_an_object() -> None:
    pod = {
        "serviceAccountName": "sa",
        "imagePullSecrets": [{"name": "pull"}],
        "volumes": [
            {"name": "a", "secret": {"secretName": "tls"}},
            {"name": "b", "configMap": {"name": "conf"}},
            {"name": "c", "persistentVolumeClaim": {"claimName": "state"}},
            {"name": "d", "projected": {"sources": [{"secret": {"name": "p-s"}}, {"configMap": {"name": "p-c"}}]}},
            {"name": "e", "emptyDir": {}},
        ],
        "initContainers": [{"name": "i", "envFrom": [{"secretRef": {"name": "init-env"}}]}],
        "containers": [
            {
                "name": "m",
                "env": [
                    {"name": "X", "valueFrom": {"secretKeyRef": {"name": "key-s", "key": "k"}}},
                    {"name": "Y", "valueFrom": {"configMapKeyRef": {"name": "key-c", "key": "k"}}},
                    {"name": "Z", "value": "plain"},
                ],
                "envFrom": [{"configMapRef": {"name": "env-c"}}],
            }
        ],
    }
    assert sorted(kube.pod_references(pod)) == [
        ("ConfigMap", "conf"),
        ("ConfigMap", "env-c"),
        ("ConfigMap", "key-c"),
        ("ConfigMap", "p-c"),
        ("PersistentVolumeClaim", "state"),
        ("Secret", "init-env"),
        ("Secret", "key-s"),
        ("Secret", "p-s"),
        ("Secret", "pull"),
        ("Secret", "tls"),
        ("ServiceAccount", "sa"),
    ]
