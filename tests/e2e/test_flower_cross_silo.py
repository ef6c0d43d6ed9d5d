"""A real cross-silo Flower federation: the hub stack's processes in one "cluster", a participant's in another.

The stacks are rendered in the order of their `pulumi up`s, with real keys and certificates (the hub's kept
between its two ups, as pulumi-tls state keeps them): the hub before the site joined, the participant from
the hub's outputs, the hub again from the participant's outputs (it registers the participant's public keys).

Two sets of network namespaces, one per cluster, meet over one link: the hub's load balancer (192.0.2.10, the
address the participant's `superlinkCidrs` lists) and the participant's NAT gateway (198.51.100.20, the CIDR the
hub lists for it). Nothing else is routed between them: the only thing the participant's side can reach is the
load balancer's 192.0.2.10:8000, which admits a client only if the hub's rendered policies do (an unlisted
address of the participant's network is refused). Every hop asks the rendered NetworkPolicies of its
own cluster (tests/e2e/policy.py): a participant SuperNode's egress to the hub's address, and at the hub's load
balancer the SuperLink's ingress from the client's own address. The participant's SuperNodes dial the hub's
public name (resolved through the pod's /etc/hosts), so the SuperLink's certificate must hold it.

`flwr run` then completes with the partitions of both sides (0 and 1 at the hub, 2 and 3 at the site), node
auth on: every SuperNode, the participant's included, was registered by the hub's rendered Job.
"""

from __future__ import annotations

import subprocess
from contextlib import ExitStack
from functools import partial
from pathlib import Path

import pytest

from tests.e2e import netns
from tests.e2e.cross_silo import rendered_in_order_of_ups
from tests.e2e.pods import materialize
from tests.e2e.policy import Enforcement
from tests.e2e.processes import Processes, base_env, framework_bin
from tests.e2e.test_flower_federation import (
    Federation,
    entrypoint,
    grpc_serving,
    https_ok,
    register_supernodes,
    run_app,
)
from tools import render

pytestmark = pytest.mark.e2e

NS = "xsilo"
HUB_ADDRESS, SITE_ADDRESS = "192.0.2.10", "198.51.100.20"  # the stack files' superlinkCidrs and participant cidrs
UNLISTED = "198.51.100.21"  # another address of the participant's network: the hub lists only .20


def start_supernode(
    rendering: render.Rendering, name: str, pod: netns.Pod, pods_dir: Path, procs: Processes, host_map: dict[str, str]
) -> None:
    workload = rendering.find("StatefulSet", name, NS)
    bin_dir = framework_bin("flower")
    for container in workload["spec"]["template"]["spec"]["containers"]:
        local = materialize(rendering, workload, container["name"], pods_dir, host_map=host_map)
        command = pod.command([entrypoint(bin_dir, container), *local.args])
        procs.start(f"{name}-{container['name']}", command, {**base_env(bin_dir), **local.env})


def connects(pod: netns.Pod, host: str, port: int, source: str | None = None) -> bool:
    """Whether a TCP connection from `pod` (from its address `source`) gets through and stays open a moment."""
    check = (
        "import socket, sys\n"
        f"s = socket.create_connection(({host!r}, {port}), timeout=3, source_address=({source!r}, 0) if {source!r} "
        "else None)\n"
        "s.settimeout(1)\n"
        "try:\n"
        "    sys.exit(1 if s.recv(1) == b'' else 0)  # closed at once: refused by a guard\n"
        "except socket.timeout:\n"
        "    sys.exit(0)\n"
    )
    out = subprocess.run(pod.command(["python3", "-c", check]), capture_output=True, timeout=20, check=False)
    return out.returncode == 0


def test_cross_silo_run_completes_with_partitions_from_hub_and_participant(tmp_path: Path) -> None:
    why_not = netns.available()
    if why_not:
        pytest.fail(f"cannot run the cross-silo federation here: {why_not}")
    renders = rendered_in_order_of_ups()  # the hub's second up, and the site
    hub, site = renders.hub, renders.site
    bin_dir = framework_bin("flower")
    env = base_env(bin_dir)
    outputs = hub.outputs(reveal=True)["federations"][NS]
    service_host, _, port_text = outputs["superlinkAddress"].rpartition(":")
    port = int(port_text)
    public_host = outputs["publicAddress"].rpartition(":")[0]
    to_loopback = {service_host: "127.0.0.1"}
    hub_policies = Enforcement(hub.manifests(), tmp_path / "hub-netpol")
    site_policies = Enforcement(site.manifests(), tmp_path / "site-netpol")
    hub_clients = {
        "node0": "supernodes-default-0-0",
        "node1": "supernodes-default-1-1",
        "register": "register-supernodes-0",
    }
    superlink_ip = hub_policies.cluster.pods_of(NS, "superlink")[0].ip
    procs = Processes(tmp_path)
    pods_dir = tmp_path / "pods"

    with (
        netns.pods(["superlink", *hub_clients, "lb"]) as hub_pods,
        netns.pods(["site-gw", "site-node0", "site-node1"]) as site_pods,
    ):
        wire = f"x{hub_pods['lb'].name[2:8]}"
        netns.wire(hub_pods["lb"], site_pods["site-gw"], HUB_ADDRESS, [SITE_ADDRESS, UNLISTED], wire)
        try:
            # --- the hub's cluster
            superlink = materialize(
                hub, hub.find("Deployment", "superlink", NS), "superlink", pods_dir, host_map=to_loopback
            )
            command = hub_pods["superlink"].command([str(bin_dir / "flower-superlink"), *superlink.args])
            procs.start("superlink", command, {**env, **superlink.env})
            ca_file = superlink.local("/etc/flwr/tls/ca.crt")
            procs.wait_for("SuperLink /health", partial(https_ok, hub_pods["superlink"], bin_dir, port, ca_file), 60)
            for index, (name, model_pod) in enumerate(hub_clients.items(), start=1):  # kube-proxy, guarded
                guard = hub_policies.guard((NS, model_pod), service_host, port)
                procs.start(f"forward-{name}", hub_pods[name].forward(port, netns.hub_address(index), port, guard), env)
            # The load balancer: the public address, delivering to the SuperLink pod with the client's address kept.
            lb_guard = hub_policies.guard(None, superlink_ip, port)
            lb = [*hub_pods["lb"].forward(port, netns.hub_address(len(hub_clients) + 1), port, lb_guard)]
            procs.start("load-balancer", [*lb, "--listen-host", HUB_ADDRESS], env)

            # --- the participant's cluster: each SuperNode's egress guarded, then the NAT gateway
            procs.start(
                "nat", [*site_pods["site-gw"].forward(port, HUB_ADDRESS, port), "--listen-host", "0.0.0.0"], env
            )
            site_nodes = {"site-node0": "supernodes-default-2", "site-node1": "supernodes-default-3"}
            for index, (name, workload) in enumerate(site_nodes.items(), start=1):
                pod_name = f"{workload}-{workload.rsplit('-', 1)[1]}"
                guard = site_policies.guard((NS, pod_name), HUB_ADDRESS, port)  # the public name resolves here
                procs.start(f"egress-{name}", site_pods[name].forward(port, netns.hub_address(index), port, guard), env)

            with ExitStack() as hosts:
                for name in site_nodes:  # the hub's public name, as the participant's DNS answers it
                    hosts.enter_context(netns.etc_hosts(site_pods[name], {public_host: "127.0.0.1"}))
                federation = Federation(
                    hub, {}, hub_pods, procs, hub_policies, bin_dir, pods_dir, outputs, port, to_loopback
                )
                register_supernodes(federation, NS, keys=4)  # the hub's Job: its own two keys and the site's two
                for i, name in enumerate(("node0", "node1")):
                    start_supernode(hub, f"supernodes-default-{i}", hub_pods[name], pods_dir, procs, to_loopback)
                for name, workload in site_nodes.items():
                    start_supernode(site, workload, site_pods[name], pods_dir, procs, {})
                health = hub.find("StatefulSet", "supernodes-default-0", NS)["spec"]["template"]["spec"]["containers"][
                    0
                ]
                health_port = health["readinessProbe"]["grpc"]["port"]
                for pod in [hub_pods["node0"], hub_pods["node1"], *(site_pods[n] for n in site_nodes)]:
                    procs.wait_for(f"{pod.name} gRPC health", partial(grpc_serving, bin_dir, pod, health_port), 90)

                # The load balancer delivers only the listed participant CIDR.
                assert not connects(site_pods["site-gw"], HUB_ADDRESS, port, source=UNLISTED)

                result = run_app(
                    hub_pods["superlink"], bin_dir, tmp_path, outputs, procs, federation=NS, run_config="min-nodes=4"
                )
        finally:
            procs.stop_all()

    refusals = [*hub_policies.refusals(), *site_policies.refusals()]
    assert len(refusals) == 1 and refusals[0].startswith(f"REFUSED {UNLISTED} -> {superlink_ip}:{port}"), refusals
    admitted_outside = [a for a in hub_policies.admitted() if a.startswith(f"admitted {SITE_ADDRESS} -> ")]
    assert admitted_outside, hub_policies.admitted()  # the participant's SuperNodes came in through the LB
    assert len(site_policies.admitted()) >= 2  # both participant SuperNodes went out through their guards
    for round_ in result["rounds"]:
        assert round_["partition_ids"] == [0, 1, 2, 3], (round_, procs.logs())
        assert round_["errors"] == []
    assert len(result["rounds"]) == 2
