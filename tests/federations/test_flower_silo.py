"""Cross-silo Flower: a hub stack and participant stacks joined only through their stack outputs."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from components.config import ConfigError
from tests.e2e.cross_silo import rendered_in_order_of_ups
from tests.helpers import EXISTING, render, render_stack, schema_errors
from tests.tools.test_render import run_cli
from tools import linked, netpol, stack_files
from tools import render as render_tool
from tools.mock_runtime import StackOutputs, plain

HUB, SITE = "eks-flower-hub", "onprem-flower-site"
HUB_REF, SITE_REF = "hub-org/flstack/eks-flower-hub", "lab-org/flstack/onprem-flower-site"
JOIN = {"stack": HUB_REF, "federation": "xsilo", "superlinkCidrs": ["192.0.2.10/32"]}
EXPOSED = {"type": "LoadBalancer", "sourceRanges": ["203.0.113.0/24"], "hostnames": ["flower.hub.example.org"]}
PARTICIPANT = {"stack": SITE_REF, "cidrs": ["198.51.100.20/32"]}


def flower(target: dict[str, Any] = EXISTING, **settings: Any) -> dict[str, Any]:
    return {"target": target, "federations": [{"name": "xsilo", "framework": "flower", "flower": settings}]}


def hub_outputs(**changes: Any) -> StackOutputs:
    """What the hub stack exports, as a participant reads it (the shipped hub before the site joined)."""
    outputs = linked.feed(HUB, (SITE,)).outputs(reveal=True)
    outputs["federations"]["xsilo"].update(changes)
    return StackOutputs(outputs)


def site_outputs(keys: list[str]) -> StackOutputs:
    return StackOutputs({"federations": {"xsilo": {"supernodePublicKeys": keys}}})


KEY = "flstack:federations[0].flower"
BAD = [
    (
        {"join": {**JOIN, "stack": "eks-flower-hub"}},
        f"{KEY}.join.stack: expected a fully qualified stack name ORG/PROJECT/STACK",
    ),
    ({"join": {**JOIN, "superlinkCidrs": []}}, f"{KEY}.join.superlinkCidrs: required: list the addresses"),
    (
        {"join": {**JOIN, "superlinkCidrs": ["0.0.0.0/0"]}},
        f"{KEY}.join.superlinkCidrs[0]: '0.0.0.0/0' means every address on the internet",
    ),
    ({"join": JOIN, "insecure": True}, f"{KEY}.insecure: SuperNodes in another cluster reach the hub"),
    (
        {"join": JOIN, "participants": [PARTICIPANT]},
        f"{KEY}.participants: a participant stack (join) runs no SuperLink",
    ),
    ({"join": JOIN, "exposure": EXPOSED}, f"{KEY}.exposure: a participant stack (join) runs no SuperLink to expose"),
    (
        {"join": {**JOIN, "firstPartition": 2}, "numPartitions": 3, "supernodes": 2},
        f"{KEY}.numPartitions: 3 is too few: this stack's 2 SuperNodes take partitions 2..3",
    ),
    ({"participants": [PARTICIPANT]}, f"{KEY}.exposure.type: participants need the SuperLink exposed"),
    (
        {"participants": [PARTICIPANT], "exposure": {**EXPOSED, "hostnames": []}},
        f"{KEY}.exposure.hostnames: required with participants",
    ),
    (
        {"participants": [{**PARTICIPANT, "cidrs": []}], "exposure": EXPOSED},
        f"{KEY}.participants[0].cidrs: required: the addresses this participant's SuperNodes connect from",
    ),
    (
        {"participants": [{**PARTICIPANT, "cidrs": ["::/0"]}], "exposure": EXPOSED},
        f"{KEY}.participants[0].cidrs[0]: '::/0' means every address on the internet; list the networks",
    ),
    (
        {"participants": [PARTICIPANT, PARTICIPANT], "exposure": EXPOSED},
        f"{KEY}.participants[1].stack: 'lab-org/flstack/onprem-flower-site' is listed twice",
    ),
    ({"participants": [PARTICIPANT], "exposure": EXPOSED, "insecure": True}, f"{KEY}.insecure: participants reach"),
    (
        {"participants": [PARTICIPANT], "exposure": {"type": "NodePort", "hostnames": ["h.example.org"]}},
        f"{KEY}.exposure.nodePort: required with participants",
    ),
]


@pytest.mark.parametrize(("settings", "expected"), BAD, ids=[e.split(": ")[0] + str(i) for i, (_, e) in enumerate(BAD)])
def test_bad_cross_silo_settings_are_one_keyed_error_each(settings: dict[str, Any], expected: str) -> None:
    with pytest.raises(ConfigError) as err:
        render(flower(**settings))
    assert expected in str(err.value), str(err.value)


def test_a_participant_deploys_supernodes_only_dialling_the_hubs_public_address() -> None:
    rendering = render_stack(SITE)
    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendering.manifests()}
    assert not {k for k in kinds if k[0] in ("Deployment", "Job", "PersistentVolumeClaim")}, kinds
    assert ("Service", "superlink") not in kinds and ("Secret", "superlink-tls") not in kinds
    hub = render_stack(HUB).outputs(reveal=True)["federations"]["xsilo"]
    # The CA the SuperNodes trust is the hub's exported certificate, verbatim.
    assert rendering.find("ConfigMap", "flower-ca", "xsilo")["data"]["ca.crt"] == hub["caCertificate"]
    for partition in (2, 3):
        sts = rendering.find("StatefulSet", f"supernodes-default-{partition}", "xsilo")
        assert sts["spec"]["ordinals"]["start"] == partition
        (container,) = sts["spec"]["template"]["spec"]["containers"]
        args = container["args"]
        assert args[args.index("--superlink") + 1] == hub["publicAddress"] == "flower.hub.example.org:8000"
        assert args[args.index("--root-certificates") + 1] == "/etc/flwr/ca/ca.crt"
        assert "num-partitions=4" in args[args.index("--node-config") + 1]
        secret = sts["spec"]["template"]["spec"]["volumes"][-1]["secret"]["secretName"]
        assert secret == f"supernode-{partition}-auth"
        assert "node.key" in rendering.find("Secret", secret, "xsilo")["stringData"]


def test_a_participants_supernodes_reach_only_the_hubs_listed_address_and_port() -> None:
    cluster = netpol.Cluster.from_manifests(render_stack(SITE).manifests())
    node = cluster.pod("xsilo", "supernodes-default-2-2")
    assert cluster.connect(node, "192.0.2.10", 8000).allowed
    assert not cluster.connect(node, "192.0.2.11", 8000).allowed
    assert not cluster.connect(node, "192.0.2.10", 8001).allowed


def test_a_participant_exports_public_keys_only() -> None:
    outputs = render_stack(SITE).outputs(reveal=True)["federations"]["xsilo"]
    assert outputs["supernodePublicKeys"] == [
        "ecdsa-sha2-nistp384 mock-xsilo-supernode-0-auth\n",
        "ecdsa-sha2-nistp384 mock-xsilo-supernode-1-auth\n",
    ]
    assert "PRIVATE KEY" not in json.dumps(outputs)


def test_the_hub_admits_only_the_listed_participants_and_registers_their_keys() -> None:
    rendering = render_stack(HUB)
    service = rendering.find("Service", "superlink", "xsilo")
    assert service["spec"]["loadBalancerSourceRanges"] == ["198.51.100.20/32", "203.0.113.0/24"]
    cluster = netpol.Cluster.from_manifests(rendering.manifests())
    superlink = cluster.pods_of("xsilo", "superlink")[0]
    assert cluster.allowed("198.51.100.20", superlink, 8000)
    assert not cluster.allowed("198.51.100.21", superlink, 8000)
    site = render_stack(SITE).outputs(reveal=True)["federations"]["xsilo"]["supernodePublicKeys"]
    keys = rendering.find("ConfigMap", "supernode-public-keys", "xsilo")["data"]
    assert keys["participant-0-node-0.pub"] == site[0] and keys["participant-0-node-1.pub"] == site[1]
    assert {"node-0.pub", "node-1.pub"} <= set(keys)
    hub_node = rendering.find("StatefulSet", "supernodes-default-1", "xsilo")["spec"]["template"]["spec"]
    assert "num-partitions=4" in " ".join(hub_node["containers"][0]["args"])  # the whole federation's count
    outputs = rendering.outputs(reveal=True)["federations"]["xsilo"]
    assert outputs["publicAddress"] == "flower.hub.example.org:8000" and outputs["nodeAuth"] is True
    assert outputs["participants"] == [SITE_REF]


def test_a_new_participant_key_replaces_the_registration_job_so_it_runs_again() -> None:
    hub = stack_files.load(HUB)

    def job(keys: list[str]) -> dict[str, Any]:
        rendering = render_tool.render_config(hub, stack_outputs={SITE_REF: site_outputs(keys)})
        return rendering.find("Job", "register-supernodes", "xsilo")

    before, after = (
        job(["ecdsa-sha2-nistp384 AAAA\n"]),
        job(["ecdsa-sha2-nistp384 AAAA\n", "ecdsa-sha2-nistp384 BBBB\n"]),
    )
    annotation = "flstack.dev/files-sha256"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][annotation]
        != (after["spec"]["template"]["metadata"]["annotations"][annotation])
    )


def test_a_participant_whose_hub_disagrees_on_node_auth_fails_naming_the_key() -> None:
    site = stack_files.load(SITE)
    with pytest.raises(
        Exception,
        match=r"flstack:federations\[0\]\.flower\.join: federation xsilo of stack "
        r"hub-org/flstack/eks-flower-hub has nodeAuth False, this stack True",
    ):
        render_tool.render_config(site, stack_outputs={HUB_REF: hub_outputs(nodeAuth=False)})


def test_a_participant_of_a_hub_without_a_public_address_fails_naming_key_stack_and_output() -> None:
    outputs = hub_outputs()
    del outputs.outputs["federations"]["xsilo"]["publicAddress"]  # a hub without exposure.hostnames exports none
    with pytest.raises(Exception) as err:
        render_tool.render_config(stack_files.load(SITE), stack_outputs={HUB_REF: outputs})
    for part in ("flstack:federations[0].flower.join", HUB_REF, "federations.xsilo.publicAddress"):
        assert part in str(err.value), str(err.value)


def test_a_participant_without_the_hubs_outputs_fails_naming_the_stack_and_the_flag() -> None:
    result = run_cli(SITE, "--out", "/dev/null/never")
    assert result.returncode == 2, result.stderr
    assert f"--stack-outputs {HUB_REF}=PATH" in result.stderr and "Traceback" not in result.stderr


def test_the_cli_renders_a_participant_from_the_hubs_render_directory(tmp_path: Path) -> None:
    hub, site = tmp_path / "hub", tmp_path / "site"
    assert run_cli(HUB, "--linked", "--out", str(hub)).returncode == 0
    result = run_cli(SITE, "--stack-outputs", f"{HUB_REF}={hub}", "--out", str(site))
    assert result.returncode == 0, result.stderr
    ca = json.loads((hub / "stack-outputs.json").read_text())["outputs"]["federations"]["xsilo"]["caCertificate"]
    assert yaml.safe_load((site / "manifests/xsilo/ConfigMap.flower-ca.yaml").read_text())["data"]["ca.crt"] == ca


def secrets_of(rendering: render_tool.Rendering) -> list[str]:
    """Every private key PEM in a render: every resource's inputs and the stack outputs, secrets revealed."""
    inputs = [plain(r.inputs, reveal=True) for r in rendering.recording.resources.values()]
    text = json.dumps([inputs, rendering.outputs(reveal=True)])
    return re.findall(r"-----BEGIN [A-Z ]*PRIVATE KEY-----[^-]+-----END [A-Z ]*PRIVATE KEY-----", text)


def test_no_private_key_crosses_between_hub_and_participant_renders() -> None:
    """Real keys (so equal text means the same key): the hub's first up, the site, the hub's second up."""
    ups = rendered_in_order_of_ups()
    hub, site = ups.hub, ups.site
    hub_keys, site_keys = secrets_of(hub), secrets_of(site)
    assert len(hub_keys) >= 4 and len(site_keys) == 2  # the scan sees keys: CA/server/node keys; the site's two
    assert set(hub_keys).isdisjoint(site_keys)
    # The hub's CA survived its second up, so the site trusts the certificate the SuperLink serves.
    ca = hub.find("Secret", "superlink-tls", "xsilo")["stringData"]["ca.crt"]
    assert site.find("ConfigMap", "flower-ca", "xsilo")["data"]["ca.crt"] == ca


def test_adding_a_participant_changes_nothing_in_the_other_participants_render() -> None:
    second_ref = "third-org/flstack/site-2"
    hub = stack_files.load(HUB)
    federations = json.loads(hub.config["flstack:federations"])
    federations[0]["flower"]["participants"].append({"stack": second_ref, "cidrs": ["198.51.100.30/32"]})
    grown_hub = replace(hub, config={**hub.config, "flstack:federations": json.dumps(federations)})
    site = stack_files.load(SITE)
    site_federations = json.loads(site.config["flstack:federations"])
    site_federations[0]["flower"]["join"].update(firstPartition=4)
    site_federations[0]["flower"].update(numPartitions=6)
    second_site = replace(
        site, stack="site-2", config={**site.config, "flstack:federations": json.dumps(site_federations)}
    )

    files = {HUB: hub, SITE: site}
    grown = {HUB: grown_hub, SITE: site, "site-2": second_site}
    before = linked.render(SITE, shipped=linked.Shipped(load=files.__getitem__))
    after = linked.render(
        SITE,
        shipped=linked.Shipped(
            load=grown.__getitem__, referenced={**stack_files.REFERENCED_STACKS, second_ref: "site-2"}
        ),
    )
    assert json.dumps(after.resources()) == json.dumps(before.resources())
    assert after.outputs(reveal=True) == before.outputs(reveal=True)
    # ... while the hub did change: it admits and registers the new site too.
    hub_after = linked.render(
        HUB,
        shipped=linked.Shipped(
            load=grown.__getitem__, referenced={**stack_files.REFERENCED_STACKS, second_ref: "site-2"}
        ),
    )
    assert "198.51.100.30/32" in hub_after.find("Service", "superlink", "xsilo")["spec"]["loadBalancerSourceRanges"]
    assert "participant-1-node-0.pub" in hub_after.find("ConfigMap", "supernode-public-keys", "xsilo")["data"]


@pytest.mark.parametrize("stack", [HUB, SITE])
def test_the_worked_stacks_are_schema_valid(stack: str) -> None:
    version = "1.35.0" if stack == HUB else "1.33.0"
    assert [e for o in render_stack(stack).manifests() for e in schema_errors(o, version)] == []
