"""A real cross-silo NVFlare federation: the hub stack's processes in one "cluster", a site stack's in another.

The worked stacks are rendered in the order of their `pulumi up`s with nvflare's real provisioning: the hub
(eks-nvflare-hub: server, CA, admin, its own site, and the kit of the on-premises site), then the site stack
(onprem-nvflare-site) from the hub's outputs, as a StackReference reads them. The site's kit comes only from
there: the site stack provisions nothing.

Two sets of network namespaces, one per cluster: the hub's server and admin pods, and the site's pod. They meet
over one link only: the hub's load balancer address (192.0.2.20, what the site stack's egress lists) and the
site's NAT address (198.51.100.20, inside the hub's listed sourceRanges). The site dials the hub's public name
(fl.hub.example.org, resolved to the load balancer), so the server's certificate must hold it. Registered means
the hub's own admin console, run as the hub stack's output says, lists the remote site beside the hub's site.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.federations import nvflare_kits
from tests.e2e import netns
from tests.e2e.local_pods import Processes, materialize
from tests.e2e.test_nvflare_federation import LOOPBACK_SHIM, VENV, _wait_for_sites
from tools import netpol, stack_files
from tools import render as render_tool
from tools.dynamic_up import DynamicUp
from tools.mock_runtime import OfflineMocks

pytestmark = [pytest.mark.e2e, pytest.mark.skipif(netns.available() is not None, reason=str(netns.available()))]

HUB, SITE = "eks-nvflare-hub", "onprem-nvflare-site"
NS = "xsilo"
LB_ADDRESS, SITE_ADDRESS = "192.0.2.20", "198.51.100.20"
UNLISTED = "203.0.113.9"  # an address outside the hub's sourceRanges


def rendered_in_order_of_ups() -> tuple[render_tool.Rendering, render_tool.Rendering]:
    real = DynamicUp()
    mocks = OfflineMocks(synthesizers=real.synthesizers(nvflare_kits.CA_TYPE, nvflare_kits.KIT_TYPE))
    hub = render_tool.render_config(stack_files.load(HUB), mocks)
    site_files = stack_files.load(SITE)
    (federation,) = json.loads(site_files.config["flstack:federations"])
    reference = federation["nvflare"]["join"]["stack"]  # the hub's ORG/PROJECT/STACK
    site = render_tool.render_config(site_files, stack_outputs={reference: hub.stack_outputs()})
    return hub, site


def test_the_site_from_the_participant_stack_registers_with_the_hubs_server(tmp_path: Path) -> None:
    python = VENV / "bin" / "python"
    if not python.exists():
        pytest.fail(
            f"{VENV} is missing: run `./dev test` (it builds .venv-<name> for each requirements-e2e-<name>.txt)"
        )
    hub, site = rendered_in_order_of_ups()
    outputs = hub.outputs(reveal=True)["federations"][NS]
    server_host = outputs["serverAddress"].rpartition(":")[0]
    public_host, _, public_port = outputs["publicAddress"].rpartition(":")
    hub_site = next(iter(outputs["sites"]))
    (remote_site,) = outputs["siteKits"]

    # The hub's rendered policies admit the site's NAT address on the server's port, and no unlisted address.
    model = netpol.Cluster.from_manifests(hub.manifests())
    (server_pod,) = model.pods_of(NS, "nvflare-server")
    assert model.connect(SITE_ADDRESS, server_pod.ip, 8002).allowed
    assert not model.connect(UNLISTED, server_pod.ip, 8002).allowed
    # The site's rendered policies let it out to the load balancer's address on that port only.
    site_model = netpol.Cluster.from_manifests(site.manifests())
    (site_pod,) = site_model.pods_of(f"{NS}-{remote_site}", remote_site)
    assert site_model.connect(site_pod, LB_ADDRESS, int(public_port)).allowed
    assert not site_model.connect(site_pod, server_pod.ip, 8002).allowed

    shim = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(LOOPBACK_SHIM)}
    hub_deployments = {
        d["metadata"]["name"]: d for d in hub.manifests() if d["kind"] == "Deployment"
    }  # nvflare-server, nvflare-admin, the hub's own site
    (site_deployment,) = [d for d in site.manifests() if d["kind"] == "Deployment"]
    processes = Processes(tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    with (
        netns.pods(["server", "admin", hub_site]) as hub_pods,
        netns.pods([remote_site]) as site_pods,
    ):
        # The one link between the clusters: the load balancer's address on the hub side, the NAT's on the site's.
        netns.wire(
            hub_pods["server"], site_pods[remote_site], LB_ADDRESS, [SITE_ADDRESS], f"x{hub_pods['server'].name[2:8]}"
        )
        try:
            pods = {}
            for name, deployment in hub_deployments.items():
                # Hub pods reach the server's Service over their link to it (10.213.i.1); the server itself binds
                # every interface of its namespace, the load balancer's address included.
                short = "server" if name == "nvflare-server" else "admin" if name == "nvflare-admin" else name
                index = list(hub_pods).index(short)
                target = "127.0.0.1" if index == 0 else netns.hub_address(index)
                env = {**shim, "FLSTACK_E2E_HOSTS": f"{server_host}={target}"}
                pods[name] = materialize(deployment, hub.manifests(), tmp_path / name, python, env)
                pods[name].argv = hub_pods[short].command(pods[name].argv)
            remote = materialize(
                site_deployment,
                site.manifests(),
                tmp_path / remote_site,
                python,
                {**shim, "FLSTACK_E2E_HOSTS": f"{public_host}={LB_ADDRESS}"},  # the site's DNS answers the LB
            )
            remote.argv = site_pods[remote_site].command(remote.argv)
            processes.start(pods["nvflare-server"])
            processes.start(pods[hub_site])
            processes.start(remote)
            console = _wait_for_sites(
                outputs,
                pods["nvflare-admin"],
                python,
                [hub_site, remote_site],
                processes,
                wrap=hub_pods["admin"].command,
            )
        finally:
            processes.stop_all()
    assert remote_site in console and hub_site in console
