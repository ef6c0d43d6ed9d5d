"""A real Flower federation, started from exactly what the rendered manifests put in the pods.

Render the default Flower stack (with real certificates made from the program's pulumi-tls inputs),
take the SuperLink's and SuperNodes' args, env and mounted files from the manifests, and run the real
`flower-superlink` and two `flower-supernode` processes, each in its own network namespace like a pod
(so they keep their default ports and no host port is used). Only mount paths are mapped to temp dirs
and the Service host to 127.0.0.1, forwarded to the SuperLink pod as kube-proxy would, but only where the
rendered NetworkPolicies allow it (tests/e2e/policy.py: DNS lookup, egress and ingress per connection).
Then `flwr run` the in-repo app with the stack's port-forward `config.toml` output and check every round
heard from both partitions. With one policy peer removed or one pod label changed, the forwarders refuse
the SuperNodes and say which flow the policies drop.

The stack's verification Job (verify defaults to true on minikube) runs in its own pod too, from its rendered
command and mounted files, through the same policy enforcement: it succeeds on the running federation and
fails, naming the missing partition, when one SuperNode is not started.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from tests.e2e import netns
from tests.e2e.pods import materialize
from tests.e2e.policy import Enforcement, relabel, without_peer
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


@dataclass
class Federation:
    """What a started federation's tests need: its pods, processes, render outputs and policy enforcement."""

    rendering: render.Rendering
    settings: dict[str, Any]
    pods: dict[str, netns.Pod]
    procs: Processes
    enforcement: Enforcement
    bin_dir: Path
    pods_dir: Path
    outputs: dict[str, Any]
    port: int
    to_loopback: dict[str, str]


def supernode_pods(rendering: render.Rendering, settings: dict[str, Any]) -> list[tuple[dict[str, Any], int]]:
    """SuperNode i: pod i of the group's StatefulSet, or with node auth pod 0 of its own StatefulSet."""
    if settings.get("nodeAuth"):
        return [(rendering.find("StatefulSet", f"supernodes-default-{i}", "demo"), 0) for i in range(2)]
    group = rendering.find("StatefulSet", "supernodes-default", "demo")
    assert group["spec"]["replicas"] == 2
    return [(group, 0), (group, 1)]


def client_pods(rendering: render.Rendering, settings: dict[str, Any]) -> dict[str, str]:
    """The pods that dial the SuperLink's Service: local network namespace -> the pod tools.netpol models."""
    clients = {}
    for i, (workload, pod_index) in enumerate(supernode_pods(rendering, settings)):
        ordinal = workload["spec"].get("ordinals", {}).get("start", 0) + pod_index
        clients[f"node{i}"] = f"{workload['metadata']['name']}-{ordinal}"
    if settings.get("isolation") == "process":  # ServerApps run in their own pod
        clients["serverapp"] = "superexec-serverapp-0"
    if settings.get("nodeAuth"):  # the registration Job's pod
        clients["register"] = "register-supernodes-0"
    clients["verify"] = verification_job(rendering)["metadata"]["name"] + "-0"
    return clients


def verification_job(rendering: render.Rendering) -> dict[str, Any]:
    (job,) = [o for o in rendering.manifests() if o["kind"] == "Job" and o["metadata"]["name"].startswith("verify-")]
    return job


@contextmanager
def started(
    tmp_path: Path,
    rendering: render.Rendering,
    settings: dict[str, Any],
    model: list[dict[str, Any]] | None = None,
    missing: frozenset[int] = frozenset(),
) -> Iterator[Federation]:
    """The SuperLink and both SuperNodes (but those in `missing`) running, each client pod's Service address
    forwarded to the SuperLink through the rendered NetworkPolicies (`model`: the manifests the policies are
    read from, default the render's)."""
    why_not = netns.available()
    if why_not:
        pytest.fail(f"cannot run the Flower federation here: {why_not}")
    bin_dir = framework_bin("flower")
    outputs = rendering.outputs(reveal=True)["federations"]["demo"]
    service_host, _, port_text = outputs["superlinkAddress"].rpartition(":")
    port = int(port_text)
    to_loopback = {service_host: "127.0.0.1"}
    pods_dir = tmp_path / "pods"
    env = base_env(bin_dir)
    enforcement = Enforcement(rendering.manifests() if model is None else model, tmp_path / "netpol")
    clients = client_pods(rendering, settings)

    procs = Processes(tmp_path)
    with netns.pods(["superlink", *clients]) as pods:
        federation = Federation(
            rendering, settings, pods, procs, enforcement, bin_dir, pods_dir, outputs, port, to_loopback
        )
        try:
            superlink = materialize(
                rendering,
                rendering.find("Deployment", "superlink", "demo"),
                "superlink",
                pods_dir,
                host_map=to_loopback,
            )
            command = pods["superlink"].command([str(bin_dir / "flower-superlink"), *superlink.args])
            procs.start("superlink", command, {**env, **superlink.env})
            ca_file = superlink.local("/etc/flwr/tls/ca.crt")
            procs.wait_for("SuperLink /health", partial(https_ok, pods["superlink"], bin_dir, port, ca_file), 60)
            for index, (name, model_pod) in enumerate(clients.items(), start=1):  # kube-proxy, guarded
                guard = enforcement.guard(("demo", model_pod), service_host, port)
                procs.start(f"forward-{name}", pods[name].forward(port, netns.hub_address(index), port, guard), env)
            if settings.get("nodeAuth"):  # before the SuperNodes start: an unknown key is refused at once
                register_supernodes(federation)
            if "serverapp" in clients:
                deploy = rendering.find("Deployment", "superexec-serverapp", "demo")
                (container,) = deploy["spec"]["template"]["spec"]["containers"]
                app = materialize(rendering, deploy, "superexec", pods_dir, host_map=to_loopback)
                command = pods["serverapp"].command([entrypoint(bin_dir, container), *app.args])
                procs.start("superexec-serverapp", command, {**env, **app.env})

            for index, (workload, pod_index) in enumerate(supernode_pods(rendering, settings)):
                if index in missing:
                    continue
                pod = pods[f"node{index}"]
                for container in workload["spec"]["template"]["spec"]["containers"]:  # all share the pod's network
                    local = materialize(
                        rendering, workload, container["name"], pods_dir, pod_index=pod_index, host_map=to_loopback
                    )
                    command = pod.command([entrypoint(bin_dir, container), *local.args])
                    procs.start(f"{container['name']}-{index}", command, {**env, **local.env})
            yield federation
        finally:
            procs.stop_all()


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_real_federation_completes_rounds_with_both_partitions(tmp_path: Path, variant: str) -> None:
    settings = VARIANTS[variant]
    rendering = stack_with(**settings) if settings else render.render(STACK, mocks_with_real_tls())
    with started(tmp_path, rendering, settings) as federation:
        procs, pods = federation.procs, federation.pods
        # The port the manifests point the kubelet's probes at answers gRPC health with SERVING.
        probe = supernode_pods(rendering, settings)[0][0]["spec"]["template"]["spec"]["containers"][0]
        health_port = probe["readinessProbe"]["grpc"]["port"]
        for index in range(2):
            pod = pods[f"node{index}"]
            check = partial(grpc_serving, federation.bin_dir, pod, health_port)
            procs.wait_for(f"supernode-{index} gRPC health", check, 60)
        # `flwr` runs where `kubectl port-forward` would land: inside the SuperLink's pod.
        result = run_app(pods["superlink"], federation.bin_dir, tmp_path, federation.outputs, procs)
        verification = run_verification(federation)
        refusals = federation.enforcement.refusals()

    assert refusals == [], "\n".join(refusals)
    assert len(federation.enforcement.admitted()) >= len(
        client_pods(rendering, settings)
    )  # every client pod went through it
    rounds = result["rounds"]
    assert len(rounds) == 2, result
    for round_ in rounds:
        assert round_["partition_ids"] == [0, 1], (round_, procs.logs())
        assert round_["errors"] == []
    assert abs(result["final_w"][0] - 2.0) < 0.2  # the model learned: real training happened
    # The rendered verification Job, through the Control API and the policies, proved the same.
    assert verification.returncode == 0, f"{verification.stdout}\n{verification.stderr}\n{procs.logs()}"
    assert "VERIFIED: run " in verification.stdout and "every partition 0..1" in verification.stdout


def test_verification_job_fails_naming_the_supernode_that_is_not_started(tmp_path: Path) -> None:
    rendering = render.render(STACK, mocks_with_real_tls())
    with started(tmp_path, rendering, {}, missing=frozenset({1})) as federation:
        verification = run_verification(federation)
        refusals = federation.enforcement.refusals()
    assert refusals == [], "\n".join(refusals)
    assert verification.returncode == 1, verification.stdout
    last = verification.stdout.strip().splitlines()[-1]
    expected = "VERIFICATION FAILED: 1 of 2 SuperNodes took part; round 1: partitions [0] replied, missing 1"
    assert last.startswith(expected), verification.stdout


def _supernode_peer_removed(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    policy = next(o for o in manifests if o["kind"] == "NetworkPolicy" and o["metadata"]["name"] == "superlink-ingress")
    peers = policy["spec"]["ingress"][0]["from"]
    index = next(i for i, p in enumerate(peers) if "supernode" in json.dumps(p.get("podSelector")))
    return without_peer(manifests, "demo", "superlink-ingress", index)


def _supernode_label_changed(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    component = "app.kubernetes.io/component"
    return relabel(manifests, "StatefulSet", "demo", "supernodes-default", component, "supernode-renamed")


BREAKAGES = {
    "supernode peer removed from superlink-ingress": _supernode_peer_removed,
    "supernode pod label changed": _supernode_label_changed,
}


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_enforcement_refuses_supernodes_the_policies_would_drop(tmp_path: Path, breakage: str) -> None:
    rendering = render.render(STACK, mocks_with_real_tls())
    with started(tmp_path, rendering, {}, BREAKAGES[breakage](rendering.manifests())) as federation:
        enforcement = federation.enforcement
        enforcement.await_refused_sources(2, federation.procs.check_alive)  # both SuperNodes
        refusals, admitted = enforcement.refusals(), enforcement.admitted()

    assert admitted == [], admitted  # no SuperNode connection got through: the federation cannot form
    for node in ("supernodes-default-0", "supernodes-default-1"):
        refused = [r for r in refusals if r.startswith(f"REFUSED demo/{node} -> ")]
        assert refused, f"no refusal recorded for {node}: {refusals}"
        # The test names the flow that was dropped and the policy that should have admitted it.
        assert f"demo/{node} -> demo/superlink-0 TCP/8000 DROPPED: no ingress rule of " in refused[0], refused[0]
        assert f"demo/superlink-ingress (isolating demo/superlink-0) admits demo/{node}" in refused[0], refused[0]
        assert "UDP/53 allowed" in refused[0]  # the DNS lookup itself was fine


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


def register_supernodes(federation: Federation, namespace: str = "demo", keys: int = 2) -> None:
    """Runs the rendered registration Job's container in its own pod (its python3 is the Flower venv's)."""
    rendering, bin_dir, pod = federation.rendering, federation.bin_dir, federation.pods["register"]
    job = rendering.find("Job", "register-supernodes", namespace)
    spec = {"kind": "Job", "metadata": job["metadata"], "spec": job["spec"]}
    register = materialize(rendering, spec, "register", federation.pods_dir, host_map=federation.to_loopback)
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
            assert out.stdout.count('"success": true') == keys, out.stdout
        else:
            assert out.stdout.count("already in use") == keys, out.stdout


def run_verification(federation: Federation) -> subprocess.CompletedProcess[str]:
    """The rendered verification Job's container in its own pod (python3 and flwr from the Flower venv)."""
    job = verification_job(federation.rendering)
    spec = {"kind": "Job", "metadata": job["metadata"], "spec": job["spec"]}
    local = materialize(federation.rendering, spec, "verify", federation.pods_dir, host_map=federation.to_loopback)
    assert local.args[0] == "python3"
    bin_dir = federation.bin_dir
    return subprocess.run(
        federation.pods["verify"].command([str(bin_dir / "python3"), *local.args[1:]]),
        env={**base_env(bin_dir), **local.env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


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


def run_app(
    pod: netns.Pod,
    bin_dir: Path,
    tmp_path: Path,
    outputs: dict[str, Any],
    procs: Processes,
    federation: str = "demo",
    run_config: str = "",
) -> dict[str, Any]:
    """`flwr run` as the README tells a user to: the stack's port-forward config.toml, verbatim, beside the CA."""
    flwr_home = tmp_path / "cli"
    flwr_home.mkdir()
    ca_file = flwr_home / f"ca-{federation}.crt"
    ca_file.write_text(outputs["caCertificate"])
    (flwr_home / "config.toml").write_text(outputs["flwrConfigPortForward"].replace("@CA_FILE@", str(ca_file)))
    env = {**base_env(bin_dir), "HOME": str(flwr_home), "FLWR_HOME": str(flwr_home), "FLWR_TELEMETRY_ENABLED": "0"}
    result_path = tmp_path / "result.json"
    run = subprocess.run(
        pod.command(
            [
                *[str(bin_dir / "flwr"), "run", str(APP), federation, "--stream"],
                *["--run-config", f'result-path="{result_path}" {run_config}'.strip()],
            ]
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
        pod.command([str(bin_dir / "flwr"), "ls", federation, "--format", "json"]),
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
