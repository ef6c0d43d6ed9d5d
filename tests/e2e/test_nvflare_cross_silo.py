"""A real cross-silo NVFlare federation: the hub stack's processes in one "cluster", a site stack's in another.

The worked stacks are rendered in the order of their `pulumi up`s with nvflare's real provisioning: the hub
(eks-nvflare-hub: server, CA, admin, its own site, and the kit of the on-premises site), then the site stack
(onprem-nvflare-site) from the hub's outputs, as a StackReference reads them. The site's kit comes only from
there: the site stack provisions nothing.

Two sets of network namespaces, one per cluster: the hub's server, admin, site and load balancer pods, and the
site's pod. They meet over one link only: the hub's load balancer address (192.0.2.20, what the site stack's
egress lists) and the site's NAT address (198.51.100.20, inside the hub's listed sourceRanges). The site dials
the hub's public name (fl.hub.example.org, resolved to the load balancer), so the server's certificate must
hold it. Registered means the hub's own admin console, run as the hub stack's output says, lists the remote
site beside the hub's site.

Every connection is judged by the rendered NetworkPolicies of the cluster it belongs to (tests/e2e/policy.py):
the hub's admin and site reach the server's Service through a guarded forwarder in their own pods (the hub
render's policies); the remote site's egress to the load balancer address is guarded in its pod (the site
render's policies); the load balancer admits a client only if the hub's policies let its address (an ipBlock
source) into the server pod. After the site registered, a connection from an address of the site's network
the hub does not list is refused, and the test names the dropped flow.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from components.federations import nvflare_kits
from tests.e2e import netns
from tests.e2e.local_pods import Processes, materialize
from tests.e2e.policy import Enforcement
from tests.e2e.processes import Processes as ForwarderProcesses
from tests.e2e.processes import framework_bin
from tests.e2e.test_flower_cross_silo import connects
from tests.e2e.test_nvflare_federation import LOOPBACK_SHIM, _wait_for_sites
from tools import render as render_tool
from tools import stack_files
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
    python = framework_bin("nvflare") / "python"
    hub, site = rendered_in_order_of_ups()
    outputs = hub.outputs(reveal=True)["federations"][NS]
    server_host, _, server_port = outputs["serverAddress"].rpartition(":")
    public_host, _, public_text = outputs["publicAddress"].rpartition(":")
    port, public_port = int(server_port), int(public_text)
    hub_site = next(iter(outputs["sites"]))
    (remote_site,) = outputs["siteKits"]

    hub_policies = Enforcement(hub.manifests(), tmp_path / "hub-netpol")
    site_policies = Enforcement(site.manifests(), tmp_path / "site-netpol")
    # The hub's rendered policies admit the site's NAT address on the server's port, and no unlisted address.
    model = hub_policies.cluster
    (server_pod,) = model.pods_of(NS, "nvflare-server")
    assert model.connect(SITE_ADDRESS, server_pod.ip, port).allowed
    assert not model.connect(UNLISTED, server_pod.ip, port).allowed
    # The site's rendered policies let it out to the load balancer's address on that port only.
    site_model = site_policies.cluster
    (site_pod,) = site_model.pods_of(f"{NS}-{remote_site}", remote_site)
    assert site_model.connect(site_pod, LB_ADDRESS, public_port).allowed
    assert not site_model.connect(site_pod, server_pod.ip, port).allowed

    shim = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(LOOPBACK_SHIM)}
    hub_deployments = {
        d["metadata"]["name"]: d for d in hub.manifests() if d["kind"] == "Deployment"
    }  # nvflare-server, nvflare-admin, the hub's own site
    (site_deployment,) = [d for d in site.manifests() if d["kind"] == "Deployment"]
    site_namespace = site_deployment["metadata"]["namespace"]
    processes = Processes(tmp_path / "logs")
    (tmp_path / "logs").mkdir()
    forwarders = ForwarderProcesses(tmp_path / "logs")
    with (
        netns.pods(["server", "admin", hub_site, "lb"]) as hub_pods,
        netns.pods([remote_site]) as site_pods,
    ):
        # The one link between the clusters: the load balancer's address on the hub side, the NAT's (and an
        # address the hub does not list) on the site's.
        wire = f"x{hub_pods['lb'].name[2:8]}"
        netns.wire(hub_pods["lb"], site_pods[remote_site], LB_ADDRESS, [SITE_ADDRESS, UNLISTED], wire)
        try:
            pods = {}
            for name, deployment in hub_deployments.items():
                # The server binds every interface of its pod; each other hub pod reaches the server's Service
                # through kube-proxy's stand-in in its own pod, which admits only what the hub's policies allow.
                short = "server" if name == "nvflare-server" else "admin" if name == "nvflare-admin" else name
                env = {**shim, "FLSTACK_E2E_HOSTS": f"{server_host}=127.0.0.1"}
                pods[name] = materialize(deployment, hub.manifests(), tmp_path / name, python, env)
                pods[name].argv = hub_pods[short].command(pods[name].argv)
                if short != "server":
                    guard = hub_policies.guard((deployment["metadata"]["namespace"], f"{name}-0"), server_host, port)
                    target = netns.hub_address(list(hub_pods).index(short))
                    forwarders.start(f"forward-{short}", hub_pods[short].forward(port, target, port, guard), shim)
            # The load balancer: the public address, delivering to the server pod with the client's address kept.
            lb_guard = hub_policies.guard(None, server_pod.ip, port)
            lb = hub_pods["lb"].forward(public_port, netns.hub_address(list(hub_pods).index("lb")), port, lb_guard)
            forwarders.start("load-balancer", [*lb, "--listen-host", LB_ADDRESS], shim)
            # The site's egress: its DNS answers the hub's public name with the load balancer's address, which
            # the site's own policies must let it reach.
            site_guard = site_policies.guard((site_namespace, f"{remote_site}-0"), LB_ADDRESS, public_port)
            site_egress = site_pods[remote_site].forward(public_port, LB_ADDRESS, public_port, site_guard)
            forwarders.start("site-egress", site_egress, shim)
            remote = materialize(
                site_deployment,
                site.manifests(),
                tmp_path / remote_site,
                python,
                {**shim, "FLSTACK_E2E_HOSTS": f"{public_host}=127.0.0.1"},
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
            forwarders.check_alive()
            # The load balancer delivers only the listed sourceRanges: another address of the site is refused.
            assert not connects(site_pods[remote_site], LB_ADDRESS, public_port, source=UNLISTED)
        finally:
            processes.stop_all()
            forwarders.stop_all()
    assert remote_site in console and hub_site in console
    refusals = [*hub_policies.refusals(), *site_policies.refusals()]
    assert len(refusals) == 1, refusals
    dropped = f"REFUSED {UNLISTED} -> {server_pod.ip}:{port}\n"
    assert refusals[0].startswith(dropped) and f"{UNLISTED} -> {NS}/{server_pod.name} TCP/{port} DROPPED" in refusals[0]
    # Every connection the federation made went through a guard of its own side, and each was admitted.
    admitted = {a.split("\n")[0] for a in [*hub_policies.admitted(), *site_policies.admitted()]}
    assert admitted == {
        f"admitted {hub_deployments['nvflare-admin']['metadata']['namespace']}/nvflare-admin-0 -> {server_host}:{port}",
        f"admitted {hub_deployments[hub_site]['metadata']['namespace']}/{hub_site}-0 -> {server_host}:{port}",
        f"admitted {SITE_ADDRESS} -> {server_pod.ip}:{port}",  # the remote site, through the load balancer
        f"admitted {site_namespace}/{remote_site}-0 -> {LB_ADDRESS}:{public_port}",  # its egress, at its side
    }, admitted
