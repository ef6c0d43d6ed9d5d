"""Bad stack config: one clear error per problem, all reported at once, before any resource exists."""

from __future__ import annotations

import pytest

from components.config import ConfigError, Secret, parse
from tests.helpers import MINIKUBE, render

BAD = [
    # (flstack: values, expected line)
    ({}, "flstack:target: required"),
    (
        {"target": {"kind": "aks"}},
        "flstack:target.kind: expected one of 'minikube', 'existing', 'eks', 'gke', got 'aks'",
    ),
    ({"target": {"kind": "minikube", "minikub": {}}}, "flstack:target.minikub: unknown key; did you mean 'minikube'?"),
    (
        {"target": {"kind": "minikube", "minikube": {"cpus": "four"}}},
        "flstack:target.minikube.cpus: expected an integer >= 2 and <= 64, got 'four'",
    ),
    (
        {"target": {"kind": "minikube", "minikube": {"cpus": 1}}},
        "flstack:target.minikube.cpus: expected an integer >= 2 and <= 64, got 1",
    ),
    (
        {"target": {"kind": "minikube", "minikube": {"cpus": True}}},
        "flstack:target.minikube.cpus: expected an integer >= 2 and <= 64, got True",
    ),
    (
        {"target": {"kind": "minikube", "minikube": {"driver": "hyperv2"}}},
        "flstack:target.minikube.driver: expected one of 'docker', 'podman'",
    ),
    (
        {"target": {"kind": "minikube", "minikube": {"profile": "My_Profile"}}},
        "flstack:target.minikube.profile: expected a DNS-1123 label (lowercase letters, digits and '-', "
        "at most 63 characters), got 'My_Profile'",
    ),
    (
        {"target": {"kind": "minikube", "minikube": {"kubernetesVersion": "v1.34"}}},
        "flstack:target.minikube.kubernetesVersion: expected a Kubernetes version such as 1.34.0, got 'v1.34'",
    ),
    (
        {"target": {"kind": "minikube", "existing": {}}},
        "flstack:target.existing: settings for 'existing' given but kind is 'minikube'",
    ),
    (
        {"target": MINIKUBE, "federation": []},
        "flstack:federation: unknown key; allowed: federations, imageDigests, operators, storage, target",
    ),
    ({"target": MINIKUBE, "federations": {"a": 1}}, "flstack:federations: expected a list, got {'a': 1}"),
    (
        {"target": MINIKUBE, "federations": [{"name": "a"}]},
        "flstack:federations[0].framework: required",
    ),
    (
        {"target": MINIKUBE, "storage": {"shared": {"kind": "existing"}}},
        "flstack:storage.shared.storageClass: required when kind is 'existing'",
    ),
    (
        {"target": {"kind": "existing", "existing": {"kubeconfig": "apiVersion: v1"}}},
        "flstack:target.existing.kubeconfig: must be a Pulumi secret, not plain text: set it with "
        "`pulumi config set --secret --path 'flstack:target.existing.kubeconfig' VALUE`",
    ),
]


@pytest.mark.parametrize(("values", "expected"), BAD, ids=[line.split(":")[1][:40] for _, line in BAD])
def test_bad_config_names_key_value_and_allowed(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(values)
    assert expected in str(err.value)


def test_every_problem_is_reported_at_once() -> None:
    values = {
        "target": {"kind": "minikube", "minikube": {"cpus": 0, "memory": "lots", "profle": "x"}},
        "storage": {"dataClass": "Not A Label"},
    }
    with pytest.raises(ConfigError) as err:
        parse(values)
    message = str(err.value)
    assert message.startswith("invalid stack config (4 problems):")
    for key in ("minikube.cpus", "minikube.memory", "minikube.profle", "storage.dataClass"):
        assert f"flstack:target.{key}" in message or f"flstack:{key}" in message


def test_secret_accepted_when_the_engine_marked_the_key_secret() -> None:
    values = {"target": {"kind": "existing", "existing": {"kubeconfig": "apiVersion: v1"}}}
    stack = parse(values, secret_keys={"flstack:target"})
    assert isinstance(stack.target.settings.kubeconfig, Secret)
    assert "apiVersion" not in repr(stack.target.settings.kubeconfig)


def test_defaults_fill_an_empty_block() -> None:
    stack = parse({"target": {"kind": "minikube"}})
    assert stack.target.settings.profile == "flstack"
    assert stack.federations == []


def test_program_stops_before_registering_anything() -> None:
    """The real program, under mocks: a bad value raises ConfigError and no resource is registered."""
    from pulumi.runtime import mocks

    seen: list[str] = []

    class Counting(mocks.Mocks):
        def new_resource(self, args):
            seen.append(args.typ)
            return args.name, args.inputs

        def call(self, args):
            return {}, None

    with pytest.raises(ConfigError, match="cpus"):
        render({"target": {"kind": "minikube", "minikube": {"cpus": "two"}}}, mock=Counting())
    assert seen == []


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (
            {"target": MINIKUBE, "federations": [{"name": "fl", "framework": "flower", "flower": []}]},
            "flstack:federations[0].flower: expected a mapping with keys version,",
        ),
        ({"target": "minikube"}, "flstack:target: expected a mapping with keys kind, got 'minikube'"),
        (
            {"target": MINIKUBE, "federations": [{"name": "fl", "framework": "flower", "namespace": "kube-system"}]},
            "flstack:federations[0].namespace: 'kube-system' belongs to Kubernetes itself",
        ),
        (
            {"target": MINIKUBE, "federations": [{"name": "default", "framework": "flower"}]},
            "flstack:federations[0].namespace: 'default' belongs to Kubernetes itself",
        ),
        (
            {
                "target": MINIKUBE,
                "storage": {"shared": {"kind": "nfs"}},
                "federations": [{"name": "flstack-nfs", "framework": "flower"}],
            },
            "flstack:federations[0].namespace: 'flstack-nfs' is where flstack runs the NFS server",
        ),
    ],
)
def test_blocks_and_namespaces_that_cannot_work(values: dict[str, object], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse(values)
    assert expected in str(err.value)
