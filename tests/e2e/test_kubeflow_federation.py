"""A real federated run of the rendered TrainJob: its command as N processes, one network namespace per node.

Render the shipped `local-kubeflow` stack, take the `fedavg` TrainJob's command, args and env, the
runtime's container env and its pod sysctls, and start one process per node, each in its own network
namespace (the set is routed, like a flat pod network), with exactly the PET_* variables Trainer v2
would give that node (`trainer_env`, pinned by `test_trainer_env.py`). `/etc/hosts` per pod resolves
the master address to node 0 and the pod's own hostname to its own address, as DNS and the kubelet do
in a cluster. Then check that FedAvg finishes every round, all ranks end with the same averaged
weights, the federation's loss falls, and gloo listened only on ports the peer NetworkPolicy admits.

Only `python3` is mapped to the venv's interpreter and the image's WORKDIR to examples/kubeflow-fedavg
(the Dockerfile copies fedavg.py there). The Kubeflow controllers themselves do not run here.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import time
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.processes import Processes, base_env, framework_bin
from tests.e2e.trainer_env import pet_env
from tools import render
from tools.stack_files import ROOT

pytestmark = pytest.mark.e2e

STACK = "local-kubeflow"
FEDERATION = "fedavg"
APP = ROOT / "examples" / "kubeflow-fedavg"  # the image's WORKDIR


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


def test_rendered_trainjob_runs_fedavg_to_identical_weights_and_a_falling_loss(tmp_path: Path) -> None:
    """Then, on the same pods, the rendered verification TrainJob: all nodes join; with one node missing, it fails
    and names that node."""
    why_not = netns.available()
    if why_not:
        pytest.skip(why_not)
    rendering = render.render(STACK)
    job = rendering.find("TrainJob", FEDERATION, FEDERATION)
    trainer = job["spec"]["trainer"]
    pod_spec = runtime_pod(rendering)
    (container,) = pod_spec["containers"]
    command = [*trainer["command"], *trainer.get("args", [])]
    nodes = trainer["numNodes"]
    rounds = int(command[command.index("--rounds") + 1])
    names = [f"node-{i}" for i in range(nodes)]
    master = pet_env(job, 0)["PET_MASTER_ADDR"]
    check_master = pet_env(verification_trainjob(rendering), 0)["PET_MASTER_ADDR"]

    procs = Processes(tmp_path)
    seen_ports: set[int] = set()
    stop = threading.Event()
    with ExitStack() as stack, netns.pods(names, routed=True) as pods:
        stack.callback(procs.stop_all)
        for i, name in enumerate(names):
            pod = pods[name]
            for sysctl in pod_spec["securityContext"].get("sysctls", []):
                netns.sysctl(pod, sysctl["name"], sysctl["value"])
            # The kubelet maps the pod's hostname to its own IP; cluster DNS maps the master name to node 0.
            stack.enter_context(
                netns.etc_hosts(
                    pod,
                    {master: netns.address(0), check_master: netns.address(0), socket.gethostname(): netns.address(i)},
                )
            )

        def sample() -> None:
            while not stop.is_set():
                for pod in pods.values():
                    seen_ports.update(listening_ports(pod))
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stack.callback(sampler.join, 15)
        stack.callback(stop.set)
        runtime_env = container.get("env", [])
        started = start_nodes(procs, pods, job, runtime_env, tmp_path, list(range(nodes)))
        codes = procs.exit_codes(started, 300)
        assert set(codes.values()) == {0}, f"{codes}\n{procs.logs()}"
        events = {
            f"node-{i}": [json.loads(line) for line in procs.log(name, tail=1000).splitlines() if line.startswith("{")]
            for i, name in enumerate(started)
        }
        verified, missing_node = verify_on_the_same_pods(rendering, procs, pods, runtime_env, tmp_path)

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
