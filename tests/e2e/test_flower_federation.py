"""A real Flower federation, started from exactly what the rendered manifests put in the pods.

Render the default Flower stack (with real certificates made from the program's pulumi-tls inputs),
take the SuperLink's and SuperNodes' args, env and mounted files from the manifests, and run the real
`flower-superlink` and two `flower-supernode` processes, each in its own network namespace like a pod
(so they keep their default ports and no host port is used). Only mount paths are mapped to temp dirs
and the Service host to 127.0.0.1, forwarded to the SuperLink pod as kube-proxy would. Then `flwr run`
the in-repo app with the stack's port-forward `config.toml` output and check every round heard from
both partitions.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.pods import materialize
from tests.e2e.processes import Processes, base_env, framework_bin
from tests.e2e.real_tls import mocks_with_real_tls
from tools import render, stack_files
from tools.stack_files import ROOT

pytestmark = pytest.mark.e2e

STACK = "local-flower"
APP = ROOT / "examples" / "flower-smoke"


def stack_with(**flower: object) -> render.Rendering:
    """The shipped stack's config with Flower settings overridden, rendered with real certificates."""
    files = stack_files.load(STACK)
    federations = json.loads(files.config["flstack:federations"])
    federations[0]["flower"].update(flower)
    config = {**files.config, "flstack:federations": json.dumps(federations)}
    return render.render_config(replace(files, config=config), mocks_with_real_tls())


def entrypoint(bin_dir: Path, container: dict[str, Any]) -> str:
    """The flwr images' entrypoint is their binary: flwr/superlink:V runs flower-superlink."""
    return str(bin_dir / ("flower-" + container["image"].split("/")[-1].split(":")[0]))


VARIANTS: dict[str, dict[str, Any]] = {
    "tls": {},
    "tls+node-auth": {"nodeAuth": True},
    "process-isolation": {"isolation": "process"},
}


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_real_federation_completes_rounds_with_both_partitions(tmp_path: Path, variant: str) -> None:
    why_not = netns.available()
    if why_not:
        pytest.fail(f"cannot run the Flower federation here: {why_not}")
    bin_dir = framework_bin("flower")
    settings = VARIANTS[variant]
    rendering = stack_with(**settings) if settings else render.render(STACK, mocks_with_real_tls())
    outputs = rendering.outputs(reveal=True)["federations"]["demo"]
    service_host, _, port_text = outputs["superlinkAddress"].rpartition(":")
    port = int(port_text)
    to_loopback = {service_host: "127.0.0.1"}
    pods_dir = tmp_path / "pods"
    env = base_env(bin_dir)

    superlink_deploy = rendering.find("Deployment", "superlink", "demo")
    # SuperNode i: pod i of the group's StatefulSet, or with node auth pod 0 of its own StatefulSet.
    if settings.get("nodeAuth"):
        supernodes = [(rendering.find("StatefulSet", f"supernodes-default-{i}", "demo"), 0) for i in range(2)]
    else:
        group = rendering.find("StatefulSet", "supernodes-default", "demo")
        assert group["spec"]["replicas"] == 2
        supernodes = [(group, 0), (group, 1)]
    # With process isolation, ServerApps run in their own pod, ClientApps in a sidecar of each SuperNode.
    clients = [f"node{i}" for i in range(2)] + (["serverapp"] if settings.get("isolation") == "process" else [])

    procs = Processes(tmp_path)
    with netns.pods(["superlink", *clients]) as pods:
        try:
            superlink = materialize(rendering, superlink_deploy, "superlink", pods_dir, host_map=to_loopback)
            command = pods["superlink"].command([str(bin_dir / "flower-superlink"), *superlink.args])
            procs.start("superlink", command, {**env, **superlink.env})
            ca_file = superlink.local("/etc/flwr/tls/ca.crt")
            procs.wait_for("SuperLink /health", partial(https_ok, pods["superlink"], bin_dir, port, ca_file), 60)
            for index, name in enumerate(clients, start=1):  # kube-proxy: the Service address in every pod
                procs.start(f"forward-{name}", pods[name].forward(port, netns.hub_address(index), port), env)

            if settings.get("nodeAuth"):
                register_supernodes(rendering, pods["superlink"], bin_dir, pods_dir, to_loopback)
            if "serverapp" in clients:
                deploy = rendering.find("Deployment", "superexec-serverapp", "demo")
                (container,) = deploy["spec"]["template"]["spec"]["containers"]
                app = materialize(rendering, deploy, "superexec", pods_dir, host_map=to_loopback)
                command = pods["serverapp"].command([entrypoint(bin_dir, container), *app.args])
                procs.start("superexec-serverapp", command, {**env, **app.env})

            for index, (workload, pod_index) in enumerate(supernodes):
                pod = pods[f"node{index}"]
                for container in workload["spec"]["template"]["spec"]["containers"]:  # all share the pod's network
                    local = materialize(
                        rendering, workload, container["name"], pods_dir, pod_index=pod_index, host_map=to_loopback
                    )
                    command = pod.command([entrypoint(bin_dir, container), *local.args])
                    procs.start(f"{container['name']}-{index}", command, {**env, **local.env})
            # The port the manifests point the kubelet's probes at answers gRPC health with SERVING.
            probe = supernodes[0][0]["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]
            health_port = probe["grpc"]["port"]
            for index in range(2):
                pod = pods[f"node{index}"]
                procs.wait_for(f"supernode-{index} gRPC health", partial(grpc_serving, bin_dir, pod, health_port), 60)
            # `flwr` runs where `kubectl port-forward` would land: inside the SuperLink's pod.
            result = run_app(pods["superlink"], bin_dir, tmp_path, outputs, procs)
        finally:
            procs.stop_all()

    rounds = result["rounds"]
    assert len(rounds) == 2, result
    for round_ in rounds:
        assert round_["partition_ids"] == [0, 1], (round_, procs.logs())
        assert round_["errors"] == []
    assert abs(result["final_w"][0] - 2.0) < 0.2  # the model learned: real training happened


def https_ok(pod: netns.Pod, bin_dir: Path, port: int, ca_file: Path) -> bool:
    check = (
        "import ssl, sys, urllib.request\n"
        f"ctx = ssl.create_default_context(cafile={str(ca_file)!r})\n"
        f"r = urllib.request.urlopen('https://127.0.0.1:{port}/health', context=ctx, timeout=3)\n"
        "sys.exit(0 if r.status == 200 else 1)\n"
    )
    out = subprocess.run(
        pod.command([str(bin_dir / "python"), "-c", check]), capture_output=True, timeout=20, check=False
    )
    return out.returncode == 0


def register_supernodes(
    rendering: render.Rendering, pod: netns.Pod, bin_dir: Path, pods_dir: Path, to_loopback: dict[str, str]
) -> None:
    """Runs the rendered registration Job's container (its python3 is the Flower venv's)."""
    job = rendering.find("Job", "register-supernodes", "demo")
    spec = {"kind": "Job", "metadata": job["metadata"], "spec": job["spec"]}
    register = materialize(rendering, spec, "register", pods_dir, host_map=to_loopback)
    assert register.args[0] == "python3"
    for attempt in ("first", "retry"):  # a retried Job must succeed too
        out = subprocess.run(
            pod.command([str(bin_dir / "python3"), *register.args[1:]]),
            env={**base_env(bin_dir), **register.env},
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert out.returncode == 0, (attempt, out.stdout, out.stderr)
        if attempt == "first":
            assert out.stdout.count('"success": true') == 2, out.stdout
        else:
            assert out.stdout.count("already in use") == 2, out.stdout


def grpc_serving(bin_dir: Path, pod: netns.Pod, port: int) -> bool:
    check = (
        "import grpc, sys\n"
        "from grpc_health.v1 import health_pb2, health_pb2_grpc\n"
        f"ch = grpc.insecure_channel('127.0.0.1:{port}')\n"
        "r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)\n"
        "sys.exit(0 if r.status == health_pb2.HealthCheckResponse.SERVING else 1)\n"
    )
    out = subprocess.run(
        pod.command([str(bin_dir / "python"), "-c", check]), capture_output=True, timeout=20, check=False
    )
    return out.returncode == 0


def run_app(pod: netns.Pod, bin_dir: Path, tmp_path: Path, outputs: dict[str, Any], procs: Processes) -> dict[str, Any]:
    """`flwr run` as the README tells a user to: the stack's port-forward config.toml, verbatim, beside the CA."""
    flwr_home = tmp_path / "cli"
    flwr_home.mkdir()
    ca_file = flwr_home / "ca-demo.crt"
    ca_file.write_text(outputs["caCertificate"])
    (flwr_home / "config.toml").write_text(outputs["flwrConfigPortForward"].replace("@CA_FILE@", str(ca_file)))
    env = {**base_env(bin_dir), "HOME": str(flwr_home), "FLWR_HOME": str(flwr_home), "FLWR_TELEMETRY_ENABLED": "0"}
    result_path = tmp_path / "result.json"
    run = subprocess.run(
        pod.command(
            [str(bin_dir / "flwr"), "run", str(APP), "demo", "--stream", "--run-config", f'result-path="{result_path}"']
        ),
        env=env,
        cwd=flwr_home,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    # `flwr run --stream` exits 0 even when the run failed: the result file and `flwr ls` tell the truth.
    listing = subprocess.run(
        pod.command([str(bin_dir / "flwr"), "ls", "demo", "--format", "json"]),
        env=env,
        cwd=flwr_home,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert '"finished:completed"' in listing.stdout, f"{run.stdout}\n{run.stderr}\n{listing.stdout}\n{procs.logs()}"
    assert result_path.exists(), f"{run.stdout}\n{run.stderr}\n{procs.logs()}"
    return dict(json.loads(result_path.read_text()))
