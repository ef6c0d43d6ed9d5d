"""Cross-silo NVFlare: a hub stack provisions every kit, a site stack deploys one site from the hub's output."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from components.config import ConfigError
from components.federations import nvflare_kits
from components.stack_refs import MissingStackOutputError
from tests.helpers import EKS, EXISTING, files, render
from tools import diff, stack_files
from tools import render as render_tool
from tools.dynamic_up import DynamicUp
from tools.mock_runtime import MissingStackOutputsError, OfflineMocks
from tools.render import Rendering

HUB = "hub-org/flstack/hub"
PUBLIC = "fl.hub.example.org"
SITE_CIDR = "198.51.100.0/24"


def hub(remote: list[str], **settings: Any) -> dict[str, Any]:
    exposure = {"type": "LoadBalancer", "sourceRanges": [SITE_CIDR], "hostnames": [PUBLIC]}
    nvflare = {"sites": ["hub-site"], "remoteSites": remote, "exposure": exposure, **settings}
    return {"target": EKS, "federations": [{"name": "xsilo", "framework": "nvflare", "nvflare": nvflare}]}


def site(name: str = "site-a", **settings: Any) -> dict[str, Any]:
    nvflare = {
        "join": {"stack": HUB, "federation": "xsilo", "site": name},
        "egress": {"cidrs": ["192.0.2.20/32"], "ports": [8002]},
        **settings,
    }
    return {"target": EXISTING, "federations": [{"name": "xsilo", "framework": "nvflare", "nvflare": nvflare}]}


def real_kits(engine: DynamicUp | None = None) -> OfflineMocks:
    engine = engine or DynamicUp()
    return OfflineMocks(synthesizers=engine.synthesizers(nvflare_kits.CA_TYPE, nvflare_kits.KIT_TYPE))


def site_render(hub_render: Rendering, config: dict[str, Any] | None = None) -> Rendering:
    return render_tool.render_config(files(config or site()), stack_outputs={HUB: hub_render.stack_outputs()})


@pytest.fixture(scope="module")
def hub_render() -> Rendering:
    return render(hub(["site-a", "site-b"]), real_kits())


# --- config --------------------------------------------------------------------------------------

BAD = [
    (
        hub(["site-a"], exposure={"type": "ClusterIP"}),
        "nvflare.exposure.type: remoteSites dial the server from other clusters",
    ),
    (
        hub(["site-a"], exposure={"type": "LoadBalancer", "sourceRanges": [SITE_CIDR]}),
        "nvflare.exposure.hostnames: required with remoteSites",
    ),
    (hub(["site-a"], jobLauncher="kubernetes"), "nvflare.jobLauncher: remoteSites need 'process'"),
    (hub(["hub-site"]), "nvflare.remoteSites[0]: 'hub-site' is already sites[0]"),
    (site(sites=["x"]), "nvflare.sites: not used with join"),
    (site(egress={}), "nvflare.egress.cidrs: required with join: the hub server's public address range"),
    (site(exposure={"type": "NodePort", "nodePort": 30802}), "nvflare.exposure.type: not used with join"),
]


@pytest.mark.parametrize(("config", "message"), BAD)
def test_bad_cross_silo_settings_are_one_clear_error(config: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(f"flstack:federations[0].{message}")):
        render(config)


def test_the_hub_stack_must_be_a_full_stack_name() -> None:
    config = site()
    config["federations"][0]["nvflare"]["join"]["stack"] = "hub"
    with pytest.raises(ConfigError, match=r"nvflare\.join\.stack: expected a fully qualified stack name"):
        render(config)


# --- the hub -------------------------------------------------------------------------------------


def test_the_hub_provisions_remote_sites_but_runs_none_of_them(hub_render: Rendering) -> None:
    deployments = {o["metadata"]["name"] for o in hub_render.manifests() if o["kind"] == "Deployment"}
    assert deployments == {"nvflare-server", "nvflare-admin", "hub-site"}
    kits = {r["name"] for r in hub_render.of_type(nvflare_kits.KIT_TYPE)}
    assert kits == {"xsilo-kit-admin", "xsilo-kit-hub-site", "xsilo-kit-site-a", "xsilo-kit-site-b"}
    outputs = hub_render.outputs()["federations"]
    assert outputs == "[secret]"  # the site kits make the whole export secret
    revealed = hub_render.outputs(reveal=True)["federations"]["xsilo"]
    assert revealed["publicAddress"] == f"{PUBLIC}:8002"
    assert sorted(revealed["siteKits"]) == ["site-a", "site-b"]


def test_remote_kits_dial_the_public_name_that_the_server_certificate_holds(hub_render: Rendering) -> None:
    from cryptography import x509

    kit = hub_render.outputs(reveal=True)["federations"]["xsilo"]["siteKits"]["site-a"]["startup"]
    server = json.loads(kit["fed_client.json"])["servers"][0]
    assert server["service"]["target"] == f"{PUBLIC}:8002"
    assert server["identity"] == "nvflare-server.xsilo.svc.cluster.local"
    (ca,) = hub_render.of_type(nvflare_kits.CA_TYPE)
    assert PUBLIC in ca["inputs"]["hostNames"]
    root = x509.load_pem_x509_certificate(hub_render.outputs(reveal=True)["federations"]["xsilo"]["rootCa"].encode())
    x509.load_pem_x509_certificate(kit["client.crt"].encode()).verify_directly_issued_by(root)


def test_the_hub_admits_only_the_listed_cidrs_from_outside(hub_render: Rendering) -> None:
    service = hub_render.find("Service", "nvflare-server", "xsilo")["spec"]
    assert service["loadBalancerSourceRanges"] == [SITE_CIDR]
    policy = hub_render.find("NetworkPolicy", "nvflare-server-ingress", "xsilo")["spec"]
    blocks = [peer["ipBlock"]["cidr"] for rule in policy["ingress"] for peer in rule["from"] if "ipBlock" in peer]
    assert blocks == [SITE_CIDR]


# --- the site ------------------------------------------------------------------------------------


def test_the_site_stack_deploys_only_its_site_with_the_kit_the_hub_made(hub_render: Rendering) -> None:
    rendering = site_render(hub_render)
    kinds = sorted((o["kind"], o["metadata"]["name"]) for o in rendering.manifests())
    assert [k for k in kinds if k[0] in ("Deployment", "Service", "Secret")] == [
        ("Deployment", "site-a"),
        ("Secret", "site-a-startup"),
    ]
    assert not rendering.of_type(nvflare_kits.CA_TYPE) and not rendering.of_type(nvflare_kits.KIT_TYPE)
    secret = rendering.find("Secret", "site-a-startup", "xsilo-site-a")
    kit = hub_render.outputs(reveal=True)["federations"]["xsilo"]["siteKits"]["site-a"]
    assert secret["stringData"] == kit["startup"]
    (row,) = [r for r in rendering.resources() if r["type"] == "kubernetes:core/v1:Secret"]
    assert row["inputs"]["stringData"] == "[secret]"
    (config_map,) = [r for r in rendering.resources() if r["type"] == "kubernetes:core/v1:ConfigMap"]
    assert config_map["inputs"]["data"] == kit["local"]  # no key in local/: plain, though it came in a secret
    # The only way out besides DNS: the hub's public address on the FL port.
    egress = rendering.find("NetworkPolicy", "allow-listed-egress", "xsilo-site-a")["spec"]["egress"]
    assert egress == [{"to": [{"ipBlock": {"cidr": "192.0.2.20/32"}}], "ports": [{"protocol": "TCP", "port": 8002}]}]


def test_the_site_stack_holds_no_key_but_its_own(hub_render: Rendering) -> None:
    rendering = site_render(hub_render)
    text = json.dumps(rendering.manifests())
    kits = hub_render.outputs(reveal=True)["federations"]["xsilo"]["siteKits"]
    assert kits["site-a"]["startup"]["client.key"].replace("\n", "\\n") in text
    assert kits["site-b"]["startup"]["client.key"].replace("\n", "\\n") not in text
    assert "server.key" not in text and "PRIVATE KEY" not in json.dumps(rendering.outputs(reveal=True))


def test_a_site_the_hub_does_not_list_is_a_clear_error(hub_render: Rendering) -> None:
    with pytest.raises(MissingStackOutputError, match=r"flstack:federations\[0\]\.nvflare\.join\.stack: stack "):
        site_render(hub_render, site("site-z"))


def test_the_site_without_the_hubs_outputs_names_the_stack_and_the_flag() -> None:
    with pytest.raises(MissingStackOutputsError, match=f"{HUB}.*--stack-outputs {HUB}=PATH"):
        render(site())


def test_adding_a_remote_site_changes_nothing_else_at_the_hub_or_at_other_sites() -> None:
    engine = DynamicUp()
    before = render(hub(["site-a"]), real_kits(engine))
    engine.next_up()
    after = render(hub(["site-a", "site-b"]), real_kits(engine))
    assert list(engine.written) == ["xsilo-kit-site-b"]  # only the new site's kit is provisioned and stored
    changes = diff.compare(before.resources(), after.resources())
    assert changes.added == [(nvflare_kits.KIT_TYPE, "xsilo-kit-site-b")]
    assert changes.removed == [] and changes.changed == {}
    site_a = {o["metadata"]["name"]: o for o in site_render(before).manifests()}
    assert {o["metadata"]["name"]: o for o in site_render(after).manifests()} == site_a


def test_the_worked_site_stack_renders_from_the_worked_hub_stack() -> None:
    hub_files, site_files = stack_files.load("eks-nvflare-hub"), stack_files.load("onprem-nvflare-site")
    (fed,) = json.loads(site_files.config["flstack:federations"])
    (hub_fed,) = json.loads(hub_files.config["flstack:federations"])
    assert fed["nvflare"]["join"]["federation"] == hub_fed["name"]
    assert fed["nvflare"]["join"]["site"] in hub_fed["nvflare"]["remoteSites"]
    outputs = {fed["nvflare"]["join"]["stack"]: render_tool.render_config(hub_files).stack_outputs()}
    rendering = render_tool.render_config(site_files, stack_outputs=outputs)
    assert rendering.find("Deployment", fed["nvflare"]["join"]["site"])
