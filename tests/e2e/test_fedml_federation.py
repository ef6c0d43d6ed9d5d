"""A real FedML 0.9.6 cross-silo federation, started from exactly what the rendered manifests put in the pods.

Render the local-fedml stack, take the server's and both clients' command, args, env and mounted files
(fedml_config.yaml and the gRPC ip-config CSV from the ConfigMap) from the manifests, and run the in-repo
app (examples/fedml-smoke, what the stack's image holds at /app) with the real fedml, each pod in its own
network namespace on a routed pod network. The rendered NetworkPolicies are enforced: each pod's namespace
gets a packet filter derived from tools.netpol, and the DNS names in the CSV resolve through a kube-dns pod
answering the render's Service and pod names (tests/e2e/policy.py `pod_network`), each lookup a UDP/53 flow
the filter judges; the verification round then runs in the same namespaces as its own pods, under its own
policy. Client pods run their rendered init container first, as the kubelet does. With the clients' pod
label changed, their policy no longer selects them and the test names the refused flow.

Test-only differences from a pod: paths are mapped to temp dirs, `python3` is .venv-fedml's python, and
PYTHONPATH carries a shim for PyPI's CUDA-linked torchvision beside the CPU torch (see fedml_shim/).
"""

from __future__ import annotations

import re
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.pods import LocalContainer, materialize
from tests.e2e.policy import Enforcement, relabel
from tests.e2e.processes import Processes, base_env, framework_bin
from tools import render
from tools.stack_files import ROOT

pytestmark = pytest.mark.e2e

STACK = "local-fedml"
NS = "fedml"
APP = ROOT / "examples" / "fedml-smoke" / "fl_node.py"
APP_IN_IMAGE = "/app/fl_node.py"  # where examples/fedml-smoke/Dockerfile puts it
SHIM = Path(__file__).with_name("fedml_shim")
RUN_TIMEOUT = 420  # three imports of fedml+torch on 2 shared cores, then 3 rounds
RANKS = (1, 2)
TEST_ACC = re.compile(r"'test_acc': ([0-9.]+)")


def spec(workload: dict[str, Any]) -> dict[str, Any]:
    return dict(workload["spec"]["template"]["spec"])


def placement(pods: list[str]) -> dict[str, tuple[str, str]]:
    """Local network namespace -> the pod tools.netpol models: rank r's namespace holds `pods[r]`."""
    return {name: (NS, pod) for name, pod in zip(["server", *(f"client{i}" for i in RANKS)], pods, strict=True)}


FEDERATION_PODS = ["fedml-server-0", *(f"fedml-clients-{i}" for i in RANKS)]


def node_command(pod: netns.Pod, bin_dir: Path, container: LocalContainer) -> list[str]:
    """The rendered command with the image's interpreter and app path mapped to this machine's."""
    args = container.args
    assert args[:2] == ["python3", APP_IN_IMAGE], args
    return pod.command([str(bin_dir / "python"), str(APP), *args[2:]])


def python_step(pod: netns.Pod, bin_dir: Path, container: LocalContainer) -> list[str]:
    """An init container or exec probe of the manifests: `python3 -c SCRIPT ARGS...`."""
    assert container.args[:2] == ["python3", "-c"], container.args
    return pod.command([str(bin_dir / "python"), *container.args[1:]])


def pod_env(bin_dir: Path, container: LocalContainer, shim: bool = True) -> dict[str, str]:
    env = {**base_env(bin_dir), **container.env}
    if shim:  # only the FedML nodes import torchvision
        env["PYTHONPATH"] = str(SHIM)
    if "/tmp" in container.mounts:
        env["TMPDIR"] = str(container.mounts["/tmp"])  # the pod's /tmp is its own emptyDir
    return env


def liveness_ok(pod: netns.Pod, bin_dir: Path, workload: dict[str, Any], env: dict[str, str]) -> bool:
    """Runs the client's rendered exec liveness probe inside its pod."""
    probe = spec(workload)["containers"][0]["livenessProbe"]["exec"]["command"]
    assert probe[:2] == ["python3", "-c"]
    out = subprocess.run(
        pod.command([str(bin_dir / "python"), *probe[1:]]), env=env, capture_output=True, timeout=30, check=False
    )
    return out.returncode == 0


@pytest.mark.parametrize("order", ["server-first", "clients-first"])
def test_real_fedml_federation_trains_over_grpc(tmp_path: Path, order: str) -> None:
    why_not = netns.available()
    if why_not:
        pytest.fail(f"cannot run the FedML federation here: {why_not}")
    bin_dir = framework_bin("fedml")
    rendering = render.render(STACK)
    outputs = rendering.outputs()["federations"][NS]
    clients, rounds = outputs["clients"], outputs["rounds"]
    assert clients == 2
    server_deploy = rendering.find("Deployment", "fedml-server", NS)
    client_sts = rendering.find("StatefulSet", "fedml-clients", NS)
    assert client_sts["spec"]["replicas"] == clients
    pods_dir = tmp_path / "pods"

    server = materialize(rendering, server_deploy, "server", pods_dir, map_files=True)
    # Client i is pod index i-1 of the StatefulSet (its ordinals start at 1: pod fedml-clients-i, rank i).
    nodes = {f"client{i}": materialize(rendering, client_sts, "client", pods_dir, i - 1, map_files=True) for i in RANKS}
    waits = {f"client{i}": materialize(rendering, client_sts, "wait-for-server", pods_dir, i - 1) for i in RANKS}
    assert server.env["FEDML_RANK"] == "0"
    assert [nodes[f"client{i}"].env["FEDML_RANK"] for i in RANKS] == ["1", "2"]  # pod index = rank
    assert server.env["FEDML_ENV_VERSION"] == "local"  # the hosted-platform probe stays on loopback

    procs = Processes(tmp_path)
    enforcement = Enforcement(rendering.manifests(), tmp_path / "netpol")
    with netns.pods([*placement(FEDERATION_PODS), "kube-dns"], routed=True) as pods:
        try:
            with enforcement.pod_network(pods, placement(FEDERATION_PODS), dns="kube-dns"):
                run_federation(procs, pods, bin_dir, server, nodes, waits, client_sts, server_deploy, order)
                codes = procs.exit_codes(["server", "client1", "client2"], RUN_TIMEOUT)
            assert codes == {"server": 0, "client1": 0, "client2": 0}, procs.logs()
            if order == "server-first":  # once is enough: the verification does not depend on the order
                (job,) = [o for o in rendering.manifests() if o["kind"] == "Job" and o["metadata"]["namespace"] == NS]
                check_pods = [f"{job['metadata']['name']}-{rank}" for rank in (0, *RANKS)]  # rank = completion index
                with enforcement.pod_network(pods, placement(check_pods), dns="kube-dns"):
                    verdicts = run_verification(procs, pods, bin_dir, rendering, pods_dir)
        finally:
            procs.stop_all()
    if order == "server-first":
        print(f"\nFedML verification round: {verdicts[0]}; with client 2 not started: {verdicts[1]}")

    server_log = (tmp_path / "server.log").read_text(errors="replace")
    accuracy = [float(v) for v in TEST_ACC.findall(server_log)]
    assert len(accuracy) == rounds, (accuracy, procs.logs())
    assert accuracy[-1] > accuracy[0], accuracy  # FedAvg over both silos learned something
    refusals, admitted = enforcement.refusals(), enforcement.admitted()
    assert refusals == [], "\n".join(refusals)
    # Each rank looked its peers up through kube-dns and reached them on the gRPC port, through the filters (the
    # verification round's pods too).
    dns = "kube-system/coredns-0 UDP/53\n"
    for ranks in [FEDERATION_PODS] + ([check_pods] if order == "server-first" else []):
        server_pod, *client_pods = (f"{NS}/{pod}" for pod in ranks)
        assert any(a.startswith(f"admitted {server_pod} -> {dns}") for a in admitted), admitted
        for client in client_pods:
            for flow in (f"{client} -> {dns}", f"{client} -> {server_pod} TCP/8890\n"):
                assert any(a.startswith(f"admitted {flow}") for a in admitted), (flow, admitted)
        assert any(a.startswith(f"admitted {server_pod} -> {client_pods[0]} TCP/8890\n") for a in admitted), admitted


def test_enforcement_refuses_the_clients_when_their_pod_label_changes(tmp_path: Path) -> None:
    why_not = netns.available()
    if why_not:
        pytest.fail(f"cannot run the FedML federation here: {why_not}")
    bin_dir = framework_bin("fedml")
    rendering = render.render(STACK)
    component = "app.kubernetes.io/component"
    model = relabel(rendering.manifests(), "StatefulSet", NS, "fedml-clients", component, "client-renamed")
    enforcement = Enforcement(model, tmp_path / "netpol")
    server_deploy = rendering.find("Deployment", "fedml-server", NS)
    client_sts = rendering.find("StatefulSet", "fedml-clients", NS)
    server = materialize(rendering, server_deploy, "server", tmp_path / "pods", map_files=True)
    procs = Processes(tmp_path)
    with (
        netns.pods([*placement(FEDERATION_PODS), "kube-dns"], routed=True) as pods,
        enforcement.pod_network(pods, placement(FEDERATION_PODS), dns="kube-dns"),
    ):
        try:
            cwd = server.local(spec(server_deploy)["containers"][0]["workingDir"])
            procs.start("server", node_command(pods["server"], bin_dir, server), pod_env(bin_dir, server), cwd)
            for i in RANKS:  # the clients' init containers: they wait for the server's port
                wait = materialize(rendering, client_sts, "wait-for-server", tmp_path / "pods", i - 1)
                env = pod_env(bin_dir, wait, shim=False)
                procs.start(f"client{i}-wait", python_step(pods[f"client{i}"], bin_dir, wait), env)
            enforcement.await_refused_sources(len(RANKS), procs.check_alive)
            waiting = {i: procs.running[f"client{i}-wait"].poll() for i in RANKS}
        finally:
            procs.stop_all()
    refusals, admitted = enforcement.refusals(), enforcement.admitted()

    assert waiting == {1: None, 2: None}, procs.logs()  # their init containers never get through: no client starts
    assert not any(" TCP/8890\n" in a for a in admitted), admitted
    for i in RANKS:
        client = f"{NS}/fedml-clients-{i}"
        refused = [r for r in refusals if r.startswith(f"REFUSED {client} -> ")]
        assert refused, f"no refusal recorded for {client}: {refusals}"
        # The test names the dropped flow: the clients' policy no longer selects them, so nothing admits it.
        dropped = f"{client} -> {NS}/fedml-server-0 TCP/8890 DROPPED: no egress rule of "
        assert dropped in refused[0] and f"(isolating {client}) admits {NS}/fedml-server-0" in refused[0], refused[0]
        # Their lookup of the server's name was still fine (every pod may reach kube-dns).
        assert any(a.startswith(f"admitted {client} -> kube-system/coredns-0 UDP/53") for a in admitted), admitted


def run_verification(
    procs: Processes, pods: dict[str, netns.Pod], bin_dir: Path, rendering: render.Rendering, root: Path
) -> tuple[str, str]:
    """The rendered verification Job: rank i is its completion index (the Job controller's JOB_COMPLETION_INDEX),
    run where the federation's rank i ran; all ranks, then without client 2. Returns the server's verdicts."""
    (job,) = [o for o in rendering.manifests() if o["kind"] == "Job" and o["metadata"]["namespace"] == NS]
    assert job["spec"]["completionMode"] == "Indexed" and job["spec"]["completions"] == len(RANKS) + 1
    where = {0: "server", **{rank: f"client{rank}" for rank in RANKS}}

    def start(run: str, ranks: list[int], seconds: str | None = None) -> list[str]:
        names = []
        for rank in ranks:
            node = materialize(rendering, job, "node", root / run, rank, map_files=True)
            args = list(node.args)
            if seconds:  # the one change for the failing run: a shorter deadline than the rendered 600 s
                args[args.index("--seconds") + 1] = seconds
            assert args[:2] == ["python3", node.local("/etc/fedml/fedml_round.py").as_posix()], args
            separator = args.index("--")
            assert args[separator + 1 : separator + 3] == ["python3", APP_IN_IMAGE], args
            local = [str(bin_dir / "python"), *args[1 : separator + 1], str(bin_dir / "python"), str(APP)]
            env = {**pod_env(bin_dir, node), "JOB_COMPLETION_INDEX": str(rank)}
            name = f"{run}-{rank}"
            cwd = node.local(job["spec"]["template"]["spec"]["containers"][0]["workingDir"])
            procs.start(name, pods[where[rank]].command([*local, *args[separator + 3 :]]), env, cwd)
            names.append(name)
        return names

    began = time.monotonic()
    everyone = start("verify", [0, *RANKS])
    codes = procs.exit_codes(everyone, RUN_TIMEOUT)
    assert set(codes.values()) == {0}, procs.logs()
    finished = f"OK: the server finished the round with all {len(RANKS)} clients"
    assert finished in procs.log(everyone[0]), procs.log(everyone[0])
    assert all(f"OK: client {rank} took part in the round" in procs.log(f"verify-{rank}") for rank in RANKS)

    # Only client 2 missing. The window must let client 1 start and answer: twice what a whole round with its
    # start-ups just took on this machine (so it follows the machine's load), at least a minute.
    window = max(60, 2 * round(time.monotonic() - began))
    partial = start("missing", [0, 1], seconds=str(window))
    (code,) = procs.exit_codes(partial[:1], RUN_TIMEOUT).values()
    assert code == 1, procs.logs()
    name = job["metadata"]["name"]
    missing = f"FAILED: the round did not finish within {window} s: no answer from client 2 ({name}-2."
    assert missing in procs.log(partial[0]), procs.log(partial[0])
    # Client 1 outlives the server's verdict (its grace), so it was named as answering, not as missing.
    assert procs.running[partial[1]].poll() is None, procs.log(partial[1])
    return finished, procs.log(partial[0]).splitlines()[-1]


def run_federation(
    procs: Processes,
    pods: dict[str, netns.Pod],
    bin_dir: Path,
    server: LocalContainer,
    nodes: dict[str, LocalContainer],
    waits: dict[str, LocalContainer],
    client_sts: dict[str, Any],
    server_deploy: dict[str, Any],
    order: str,
) -> None:
    def start_server() -> None:
        cwd = server.local(spec(server_deploy)["containers"][0]["workingDir"])
        procs.start("server", node_command(pods["server"], bin_dir, server), pod_env(bin_dir, server), cwd)

    def start_client(name: str) -> None:
        node = nodes[name]
        cwd = node.local(spec(client_sts)["containers"][0]["workingDir"])
        procs.start(name, node_command(pods[name], bin_dir, node), pod_env(bin_dir, node), cwd)

    if order == "server-first":
        start_server()
    for name, wait in waits.items():  # the kubelet runs init containers before the pod's containers
        procs.start(f"{name}-wait", python_step(pods[name], bin_dir, wait), pod_env(bin_dir, wait, shim=False))
    if order == "clients-first":
        time.sleep(5)
        for name in waits:  # nobody there yet: the init containers hold the clients back
            assert procs.running[f"{name}-wait"].poll() is None, procs.log(f"{name}-wait")
            assert not liveness_ok(pods[name], bin_dir, client_sts, pod_env(bin_dir, waits[name], shim=False))
        start_server()
    for code in procs.exit_codes([f"{name}-wait" for name in waits], 120).values():
        assert code == 0, procs.logs()
    for name in waits:
        assert liveness_ok(pods[name], bin_dir, client_sts, pod_env(bin_dir, waits[name], shim=False))
        start_client(name)
