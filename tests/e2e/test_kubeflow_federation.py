"""A real federated run of the rendered TrainJob: its command as N processes, one network namespace per node.

Render the shipped `local-kubeflow` stack, take the `fedavg` TrainJob's command, args and env, the
runtime's container env and its pod sysctls, and start one process per node, each in its own network
namespace (the set is routed, like a flat pod network), with exactly the PET_* variables Trainer v2
would give that node (`trainer_env`, pinned by `test_trainer_env.py`). The rendered NetworkPolicies are
enforced: gloo's ranks dial each other directly on ports they pick at run time, so no forwarder can stand
in front of them; instead each node's network namespace gets a packet filter derived from tools.netpol, and
names (the master address) resolve through a kube-dns pod, each lookup a UDP/53 flow the filter judges
(tests/e2e/policy.py `pod_network`); `/etc/hosts` maps the pod's own hostname to its own address, as the
kubelet does. Then check that FedAvg finishes every round, all ranks end with the same averaged weights,
the federation's loss falls, every flow was one the policies admit, and gloo listened only on ports the
peer NetworkPolicy admits. The verification TrainJob then runs on the same namespaces as its own pods,
under its own policy. With the peer policy's ingress rule removed, the nodes are refused and the test
names the dropped flow.

Only `python3` is mapped to the venv's interpreter and the image's WORKDIR to examples/kubeflow-fedavg
(the Dockerfile copies fedavg.py there). The Kubeflow controllers themselves do not run here.
"""

from __future__ import annotations

import json
import subprocess
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.policy import Enforcement, without_rule
from tests.e2e.processes import Processes, base_env, framework_bin
from tests.e2e.trainer_env import pet_env
from tools import render
from tools.stack_files import ROOT

pytestmark = pytest.mark.e2e

STACK = "local-kubeflow"
FEDERATION = "fedavg"
APP = ROOT / "examples" / "kubeflow-fedavg"  # the image's WORKDIR
REFUSAL_SECONDS = 60


def runtime_pod(rendering: render.Rendering) -> dict[str, Any]:
    runtime = rendering.find("ClusterTrainingRuntime", "flstack-torch")
    pod: dict[str, Any] = runtime["spec"]["template"]["spec"]["replicatedJobs"][0]["template"]["spec"]["template"][
        "spec"
    ]
    return pod


def listening_ports(pod: netns.Pod) -> set[int]:
    out = subprocess.run(pod.command(["ss", "-Htln"]), capture_output=True, text=True, timeout=10, check=False)
    return {int(line.split()[3].rpartition(":")[2]) for line in out.stdout.splitlines() if line.strip()}


def start_nodes(
    procs: Processes,
    pods: dict[str, netns.Pod],
    job: dict[str, Any],
    runtime_env: list[dict[str, str]],
    root: Path,
    ranks: list[int],
    argv: list[str] | None = None,
) -> list[str]:
    """Starts the TrainJob's command on the nodes `ranks` (all: range(numNodes)), each with the env Trainer gives
    it; `argv`: the command as run (default: the TrainJob's, `python3` mapped to the venv's). Returns the names."""
    bin_dir = framework_bin("kubeflow")
    trainer = job["spec"]["trainer"]
    command = [*trainer["command"], *trainer.get("args", [])]
    assert command[0] == "python3"
    argv = argv or [str(bin_dir / "python"), *command[1:]]
    started = []
    for i in ranks:
        name = f"{job['metadata']['name']}-node-{i}"
        home = root / name / "home"
        home.mkdir(parents=True)
        env = {**base_env(bin_dir), **{e["name"]: e["value"] for e in runtime_env}}
        env.update({e["name"]: e["value"] for e in trainer.get("env", [])})
        env.update(pet_env(job, i))
        env["HOME"] = str(home)  # the runtime's emptyDir at /home/trainer
        procs.start(name, pods[f"node-{i}"].command(argv), env, cwd=APP)
        started.append(name)
    return started


@dataclass
class Network:
    pods: dict[str, netns.Pod]
    procs: Processes
    enforcement: Enforcement
    seen_ports: set[int] = field(default_factory=set)


@contextmanager
def network(
    tmp_path: Path, rendering: render.Rendering, model: list[dict[str, Any]] | None = None
) -> Iterator[Network]:
    """A network namespace per node of the TrainJob (with the runtime's sysctls) and a kube-dns pod, on a routed
    network; the policies (`model`: the manifests they are read from, default the render's) are enforced per run
    (`Network.enforcement.pod_network`). Every process stopped on exit."""
    why_not = netns.available()
    if why_not:
        pytest.skip(why_not)
    nodes = rendering.find("TrainJob", FEDERATION, FEDERATION)["spec"]["trainer"]["numNodes"]
    names = [f"node-{i}" for i in range(nodes)]
    procs = Processes(tmp_path)
    enforcement = Enforcement(rendering.manifests() if model is None else model, tmp_path / "netpol")
    stop = threading.Event()
    with netns.pods([*names, "kube-dns"], routed=True) as pods, ExitStack() as stack:
        net = Network(pods, procs, enforcement)
        stack.callback(procs.stop_all)
        for name in names:
            for sysctl in runtime_pod(rendering)["securityContext"].get("sysctls", []):
                netns.sysctl(pods[name], sysctl["name"], sysctl["value"])

        def sample() -> None:
            while not stop.is_set():
                for name in names:
                    net.seen_ports.update(listening_ports(pods[name]))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stack.callback(sampler.join, 15)
        stack.callback(stop.set)
        yield net


def placement(job: dict[str, Any]) -> dict[str, tuple[str, str]]:
    """Node i's namespace holds the TrainJob's pod of completion index i (its JobSet's `node` Job), as tools.netpol
    names it."""
    name, namespace = job["metadata"]["name"], job["metadata"]["namespace"]
    return {f"node-{i}": (namespace, f"{name}-node-0-{i}") for i in range(job["spec"]["trainer"]["numNodes"])}


def test_rendered_trainjob_runs_fedavg_to_identical_weights_and_a_falling_loss(tmp_path: Path) -> None:
    """Then, on the same pods, the rendered verification TrainJob: all nodes join; with one node missing, it fails
    and names that node."""
    rendering = render.render(STACK)
    job = rendering.find("TrainJob", FEDERATION, FEDERATION)
    trainer = job["spec"]["trainer"]
    pod_spec = runtime_pod(rendering)
    (container,) = pod_spec["containers"]
    command = [*trainer["command"], *trainer.get("args", [])]
    nodes = trainer["numNodes"]
    rounds = int(command[command.index("--rounds") + 1])
    names = [f"node-{i}" for i in range(nodes)]
    check = verification_trainjob(rendering)

    with network(tmp_path, rendering) as net:
        procs, pods, enforcement = net.procs, net.pods, net.enforcement
        runtime_env = container.get("env", [])
        with enforcement.pod_network(pods, placement(job), dns="kube-dns"):
            started = start_nodes(procs, pods, job, runtime_env, tmp_path, list(range(nodes)))
            codes = procs.exit_codes(started, 300)
        assert set(codes.values()) == {0}, f"{codes}\n{procs.logs()}"
        events = {
            f"node-{i}": [json.loads(line) for line in procs.log(name, tail=1000).splitlines() if line.startswith("{")]
            for i, name in enumerate(started)
        }
        with enforcement.pod_network(pods, placement(check), dns="kube-dns"):
            verified, missing_node = verify_on_the_same_pods(rendering, procs, pods, runtime_env, tmp_path)
    seen_ports = net.seen_ports

    refusals, admitted = enforcement.refusals(), enforcement.admitted()
    assert refusals == [], "\n".join(refusals)
    # Every node (of both TrainJobs) looked the master up through kube-dns, and the others reached its rendezvous
    # port, through their packet filters.
    for trainjob in (job, check):
        pods_of = [f"{ns}/{pod}" for ns, pod in placement(trainjob).values()]
        for i, pod in enumerate(pods_of):
            assert any(a.startswith(f"admitted {pod} -> kube-system/coredns-0 UDP/53\n") for a in admitted), admitted
            if i:
                rendezvous = f"admitted {pod} -> {pods_of[0]} TCP/29500\n"
                assert any(a.startswith(rendezvous) for a in admitted), (rendezvous, admitted)

    losses = [e["loss"] for e in events["node-0"] if e["event"] in ("start", "round")]
    assert len(losses) == rounds + 1, procs.logs()
    assert losses[-1] < losses[0] * 0.9, losses  # the federation learns
    finals = [next(e["weights"] for e in events[name] if e["event"] == "done") for name in names]
    assert all(w == finals[0] for w in finals), finals
    assert [e["world"] for e in events["node-0"] if e["event"] == "start"] == [nodes]

    # Everything that listened is admitted by the peer policy: the rendezvous port and the pinned range.
    low, high = (int(p) for p in pod_spec["securityContext"]["sysctls"][0]["value"].split())
    policy = rendering.find("NetworkPolicy", f"{FEDERATION}-peers", FEDERATION)["spec"]["ingress"][0]["ports"]
    assert policy == [{"protocol": "TCP", "port": 29500}, {"protocol": "TCP", "port": low, "endPort": high}]
    gloo = seen_ports - {29500}
    assert 29500 in seen_ports and gloo, seen_ports
    assert all(low <= port <= high for port in gloo), seen_ports
    print(f"\nKubeflow verification TrainJob: {verified}; with node {nodes - 1} missing: {missing_node}")


def verification_trainjob(rendering: render.Rendering) -> dict[str, Any]:
    (check,) = [
        o
        for o in rendering.manifests()
        if o["kind"] == "TrainJob"
        and o["metadata"]["namespace"] == FEDERATION
        and o["metadata"]["labels"]["app.kubernetes.io/component"] == "verify"
    ]
    return check


def verify_on_the_same_pods(
    rendering: render.Rendering,
    procs: Processes,
    pods: dict[str, netns.Pod],
    runtime_env: list[dict[str, str]],
    root: Path,
) -> tuple[str, str]:
    """The rendered verification TrainJob on every node, then without its last node; returns node 0's verdicts."""
    check = verification_trainjob(rendering)
    nodes = check["spec"]["trainer"]["numNodes"]
    everyone = start_nodes(procs, pods, check, runtime_env, root / "verify", list(range(nodes)))
    codes = procs.exit_codes(everyone, 300)
    assert set(codes.values()) == {0}, f"{codes}\n{procs.logs()}"
    joined = f"OK: node 0: all {nodes} nodes joined and all-reduced over gloo ({nodes * (nodes + 1) // 2})"
    assert joined in procs.log(everyone[0]), procs.log(everyone[0])

    # The last node never starts. The one change to the rendered command: node 0 waits 15 s, not 300.
    for name in everyone:
        procs.running.pop(name)
    trainer = check["spec"]["trainer"]
    command = [*trainer["command"], *trainer["args"]]
    command[command.index("--join-seconds") + 1] = "15"
    argv = [str(framework_bin("kubeflow") / "python"), *command[1:]]
    partial = start_nodes(procs, pods, check, runtime_env, root / "missing", list(range(nodes - 1)), argv)
    codes = procs.exit_codes(partial, 120)
    assert set(codes.values()) == {1}, f"{codes}\n{procs.logs()}"
    missing = f"FAILED: node {nodes - 1} of {nodes} did not join within 15 s"
    assert missing in procs.log(partial[0]), procs.log(partial[0])
    assert f"node 0 gave up waiting for node(s) {nodes - 1}" in procs.log(partial[1]), procs.log(partial[1])
    return joined, missing


def test_enforcement_refuses_the_nodes_when_the_peer_ingress_rule_is_removed(tmp_path: Path) -> None:
    rendering = render.render(STACK)
    job = rendering.find("TrainJob", FEDERATION, FEDERATION)
    nodes = job["spec"]["trainer"]["numNodes"]
    model = without_rule(rendering.manifests(), FEDERATION, f"{FEDERATION}-peers", "ingress", 0)
    master, *others = (f"{ns}/{pod}" for ns, pod in placement(job).values())

    def refused_nodes(refusals: list[str]) -> set[str]:  # the nodes whose rendezvous with the master was refused
        return {r.split(" ->")[0].removeprefix("REFUSED ") for r in refusals if f" -> {master} TCP/29500\n" in r}

    with network(tmp_path, rendering, model) as net, net.enforcement.pod_network(net.pods, placement(job), "kube-dns"):
        (container,) = runtime_pod(rendering)["containers"]
        started = start_nodes(net.procs, net.pods, job, container.get("env", []), tmp_path, list(range(nodes)))
        deadline = time.monotonic() + REFUSAL_SECONDS
        while time.monotonic() < deadline and refused_nodes(net.enforcement.refusals()) != set(others):
            time.sleep(0.5)
        finished = {name: net.procs.running[name].poll() for name in started}
    refusals, admitted = net.enforcement.refusals(), net.enforcement.admitted()

    assert all(code != 0 for code in finished.values()), (finished, net.procs.logs())  # the run cannot complete
    assert not any("TCP/29500" in a for a in admitted), admitted
    assert refused_nodes(refusals) == set(others), "\n".join(refusals)
    for node in others:
        # The test names the dropped flow and the policy that no longer admits it; the lookup itself was fine.
        refused = next(r for r in refusals if r.startswith(f"REFUSED {node} -> {master} TCP/29500\n"))
        assert f"{node} -> {master} TCP/29500 DROPPED: no ingress rule of " in refused, refused
        assert f"{FEDERATION}/{FEDERATION}-peers (isolating {master}) admits {node}" in refused, refused
        assert any(a.startswith(f"admitted {node} -> kube-system/coredns-0 UDP/53") for a in admitted), admitted
