"""A real NVFlare federation from the rendered local-nvflare stack: both sites must register.

Real: the kits resource's create() (nvflare's Provisioner) with the inputs the program registers; the
Secret and ConfigMap contents the pods mount; the server, site and admin-console commands, mount paths
and working directories of the rendered Deployments and the stack output; NVFlare 2.9.0 itself, run
from `.venv-nvflare` (requirements-e2e-nvflare.txt).
Mapped, and only this: paths (mount path P -> <pod dir>/P, also inside mounted files), `python3` -> the
venv's interpreter, and the network (tests/e2e/loopback: wildcard binds go to 127.0.0.1, and in each client pod
the server's Service FQDN resolves to a loopback address of that pod's own, where a forwarder admits only the
connections the rendered NetworkPolicies allow: tests/e2e/policy.py). With site-2's namespace label changed,
site-2 is refused, the federation forms without it, and the test names the dropped flow.
The stack's verification Job (verify defaults to true on minikube) runs from its rendered command and mounted
verification kit through the same enforcement: it succeeds with both sites up, and fails naming site-2 when
site-2 is not started.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from components.federations import nvflare_kits
from components.federations.nvflare import SITES_OF_LABEL, VERIFY_WAIT_SECONDS
from tests.e2e.local_pods import LocalPod, Processes, materialize
from tests.e2e.policy import Enforcement, relabel
from tests.e2e.processes import framework_bin
from tools import render as render_tool
from tools.dynamic_up import DynamicUp
from tools.mock_runtime import OfflineMocks

pytestmark = pytest.mark.e2e

STACK = "local-nvflare"
FEDERATION = "demo"
LOOPBACK_SHIM = Path(__file__).parent / "loopback"
STARTUP_SECONDS = 30  # server listening
REGISTRATION_SECONDS = 40  # both sites seen by the admin console
MISSING_SITE_WAIT_SECONDS = 20  # the verification's window once the other site is registered


def provisioned_for_real() -> OfflineMocks:
    """The render's CA and kit resources get what `pulumi up` would store: their providers' real create()."""
    return OfflineMocks(synthesizers=DynamicUp().synthesizers(nvflare_kits.CA_TYPE, nvflare_kits.KIT_TYPE))


@dataclass
class Federation:
    outputs: dict[str, Any]
    pods: dict[str, LocalPod]
    processes: Processes
    enforcement: Enforcement
    python: Path
    sites: list[str]
    verifier: LocalPod  # the verification Job's pod, ready to run once


@contextmanager
def started(
    tmp_path: Path,
    change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None,
    missing: frozenset[str] = frozenset(),
) -> Iterator[Federation]:
    """The rendered server and sites (but those in `missing`) running; every client pod (sites, admin, the
    verification Job's) reaches the server's Service through a forwarder that admits only what the rendered
    NetworkPolicies allow (`change`: a changed copy of them)."""
    python = framework_bin("nvflare") / "python"
    rendering = render_tool.render(STACK, provisioned_for_real())
    outputs = rendering.outputs(reveal=True)["federations"][FEDERATION]
    server_host, _, port = outputs["serverAddress"].rpartition(":")
    _require_free(int(port))
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": str(LOOPBACK_SHIM),
        "FLSTACK_E2E_HOSTS": f"{server_host}=127.0.0.1",
        "FLSTACK_E2E_BIND": "127.0.0.1",
    }
    manifests = rendering.manifests()
    deployments = [o for o in manifests if o["kind"] == "Deployment"]
    pods = {
        d["metadata"]["name"]: materialize(d, manifests, tmp_path / d["metadata"]["name"], python, env)
        for d in deployments
    }
    sites = sorted(outputs["sites"])
    assert sites == ["site-1", "site-2"] and set(pods) == {"nvflare-server", "nvflare-admin", *sites}
    (job,) = [o for o in manifests if o["kind"] == "Job" and o["metadata"]["name"].startswith("verify-")]
    verifier = materialize(job, manifests, tmp_path / "verify", python, env)
    enforcement = Enforcement(change(manifests) if change else manifests, tmp_path / "netpol")
    (tmp_path / "logs").mkdir()
    processes = Processes(tmp_path / "logs")
    try:
        for deployment in deployments:  # kube-proxy for each client pod: the server's name leads to its guard
            name = deployment["metadata"]["name"]
            if name != "nvflare-server":
                source = (deployment["metadata"]["namespace"], f"{name}-0")
                address = enforcement.loopback_route(source, server_host, int(port), upstream_port=int(port))
                pods[name].env["FLSTACK_E2E_HOSTS"] = f"{server_host}={address}"
        source = (job["metadata"]["namespace"], f"{job['metadata']['name']}-0")
        address = enforcement.loopback_route(source, server_host, int(port), upstream_port=int(port))
        verifier.env["FLSTACK_E2E_HOSTS"] = f"{server_host}={address}"
        processes.start(pods["nvflare-server"])
        _wait_for_listener(int(port), processes)
        for site in sites:
            if site not in missing:
                processes.start(pods[site])
        yield Federation(outputs, pods, processes, enforcement, python, sites, verifier)
    finally:
        processes.stop_all()
        enforcement.close()


def test_the_rendered_server_and_sites_register_with_the_admin_console(tmp_path: Path) -> None:
    with started(tmp_path) as federation:
        outputs, pods, processes, python, sites = (
            federation.outputs,
            federation.pods,
            federation.processes,
            federation.python,
            federation.sites,
        )
        kits_before = {name: _kit_files(pod) for name, pod in pods.items()}
        _wait_for_sites(outputs, pods["nvflare-admin"], python, sites, processes)
        status = _run_in_pod(outputs["systemStatus"], pods["nvflare-admin"], python)
        assert status.returncode == 0 and all(site in status.stdout for site in sites), status.stdout + status.stderr
        verification = _run_verification(federation)
        rights = _verifier_rights(federation)
    assert all(process.poll() is not None for _, process, _ in processes.running)
    # Least role: the verification identity may view (check_status), and nvflare refuses it an `operate` command.
    answers = [line for line in rights.stdout.splitlines() if line.startswith(("view: ", "operate: "))]
    assert answers == ["view: allowed", "operate: AuthorizationError"], rights.stdout + rights.stderr
    assert verification.returncode == 0, verification.stdout + verification.stderr
    assert "VERIFIED: all 2 sites registered with the server: site-1, site-2" in verification.stdout
    assert federation.enforcement.refusals() == []
    went_through = {entry.split(" ->")[0] for entry in federation.enforcement.admitted()}
    assert went_through == {
        "admitted demo-site-1/site-1-0",
        "admitted demo-site-2/site-2-0",
        "admitted demo-admin/nvflare-admin-0",
        f"admitted demo-admin/{federation.verifier.name}-0",  # the verification Job's pod, admitted by name
    }
    # startup/ and local/ are read-only mounts in the pods: nothing may have been written into them.
    assert {name: _kit_files(pod) for name, pod in pods.items()} == kits_before
    workspace = pods["nvflare-server"].path("/var/tmp/nvflare/workspace")
    assert (workspace / "jobs-storage").is_dir(), "the server's job store belongs on its persistent workspace"


def test_the_verification_job_fails_naming_the_site_that_is_not_started(tmp_path: Path) -> None:
    with started(tmp_path, missing=frozenset({"site-2"})) as federation:
        # Once site-1 is registered, a window shorter than the rendered one can only miss site-2 (test-only change).
        admin = federation.pods["nvflare-admin"]
        _wait_for_sites(federation.outputs, admin, federation.python, ["site-1"], federation.processes)
        argv = federation.verifier.argv
        assert argv[-1] == str(VERIFY_WAIT_SECONDS), argv
        short = replace(federation.verifier, argv=[*argv[:-1], str(MISSING_SITE_WAIT_SECONDS)])
        verification = _run_verification(replace(federation, verifier=short))
        refusals = federation.enforcement.refusals()
    assert refusals == [], refusals
    assert verification.returncode == 1, verification.stdout + verification.stderr
    last = verification.stdout.strip().splitlines()[-1]
    expected = f"VERIFICATION FAILED: site(s) site-2 not registered with the server after {MISSING_SITE_WAIT_SECONDS}s"
    assert last.startswith(expected), last
    assert last.endswith("(registered: site-1)"), last


def _run_verification(federation: Federation) -> subprocess.CompletedProcess[str]:
    """The rendered verification Job's container, once, as the kubelet would start it."""
    return _in_verifier_pod(federation.verifier, federation.verifier.argv, timeout=180)


def _in_verifier_pod(pod: LocalPod, argv: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv,
        cwd=pod.cwd,
        env=pod.env,
        capture_output=True,
        text=True,
        timeout=timeout,
        start_new_session=True,
        check=False,
    )


def _verifier_rights(federation: Federation) -> subprocess.CompletedProcess[str]:
    """What the server lets the verification identity do: `check_status` (view), `report_resources` (operate)."""
    pod = federation.verifier
    kit, user = pod.argv[2], pod.argv[3]  # the rendered command: verify.py KIT_DIR USERNAME ...
    probe = (
        "import sys\n"
        "from nvflare.fuel.flare_api.flare_api import new_secure_session\n"
        "session = new_secure_session(sys.argv[2], sys.argv[1], timeout=30)\n"
        "calls = (('view', session.get_system_info), ('operate', lambda: session.report_resources('server')))\n"
        "for right, call in calls:\n"
        "    try:\n"
        "        call()\n"
        "        print(f'{right}: allowed')\n"
        "    except Exception as ex:\n"
        "        print(f'{right}: {type(ex).__name__}')\n"
        "session.close()\n"
    )
    return _in_verifier_pod(pod, [pod.argv[0], "-c", probe, kit, user], timeout=120)


def _site_2_namespace_relabelled(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """site-2's namespace no longer says whose sites it holds: the server's policy must stop admitting it."""
    return relabel(manifests, "Namespace", None, "demo-site-2", SITES_OF_LABEL, "another-federation")


def test_enforcement_keeps_a_site_out_when_its_namespace_label_changes(tmp_path: Path) -> None:
    with started(tmp_path, _site_2_namespace_relabelled) as federation:
        console = _wait_for_sites(
            federation.outputs, federation.pods["nvflare-admin"], federation.python, ["site-1"], federation.processes
        )
        refusals = federation.enforcement.refusals()
    assert not re.search(r"\|\s*site-2\s*\|", console), console  # the federation formed without site-2
    assert refusals, "site-2 never dialled the server"
    assert all(r.startswith("REFUSED demo-site-2/site-2-0 -> ") for r in refusals), refusals
    dropped = "demo-site-2/site-2-0 -> demo/nvflare-server-0 TCP/8002 DROPPED: no ingress rule of "
    assert dropped in refusals[0], refusals[0]
    assert "demo/nvflare-server-ingress (isolating demo/nvflare-server-0) admits demo-site-2/site-2-0" in refusals[0]


def _require_free(port: int) -> None:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the server does: TIME_WAIT is no conflict
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            pytest.fail(f"127.0.0.1:{port} is in use: the kits are provisioned for this port, free it to run this test")


def _wait_for_listener(port: int, processes: Processes) -> None:
    deadline = time.monotonic() + STARTUP_SECONDS
    while time.monotonic() < deadline:
        processes.check_alive()
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.3)
    raise AssertionError(
        f"the server did not listen on {port} in {STARTUP_SECONDS}s:\n{processes.tail('nvflare-server')}"
    )


def _wait_for_sites(
    outputs: dict[str, Any],
    admin: LocalPod,
    python: Path,
    sites: list[str],
    processes: Processes,
    wrap: Callable[[list[str]], list[str]] = list,
) -> str:
    """Runs the stack output's admin console in the admin pod until `check_status client` lists every site."""
    session = f"{outputs['adminUser']}\ncheck_status client\nbye\n"  # the console asks for the user name first
    deadline = time.monotonic() + REGISTRATION_SECONDS
    output = ""
    while time.monotonic() < deadline:
        processes.check_alive()
        console = _run_in_pod(outputs["adminConsole"], admin, python, stdin=session, wrap=wrap)
        output = console.stdout + console.stderr
        if all(re.search(rf"\|\s*{site}\s*\|", output) for site in sites):
            return output
        time.sleep(1)
    logs = "\n".join(f"--- {name}\n{processes.tail(name)}" for name, _, _ in processes.running)
    raise AssertionError(f"not every site registered in {REGISTRATION_SECONDS}s; console said:\n{output}\n{logs}")


def _run_in_pod(
    kubectl_exec: str,
    pod: LocalPod,
    python: Path,
    stdin: str | None = None,
    wrap: Callable[[list[str]], list[str]] = list,
) -> subprocess.CompletedProcess[str]:
    """A `kubectl exec ... -- python3 ...` stack output, run in the local pod (`wrap`: in its network namespace)."""
    command = shlex.split(kubectl_exec)
    command = command[command.index("--") + 1 :]  # what runs in the pod
    assert command[0] == "python3"
    argv = [str(python), *(pod.translate(arg) for arg in command[1:])]
    return subprocess.run(
        wrap(argv),
        cwd=pod.cwd,
        env=pod.env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=30,
        start_new_session=True,
        check=False,
    )


def _kit_files(pod: LocalPod) -> dict[str, str]:
    files: dict[str, str] = {}
    for mount in pod.mount_paths:
        if mount.endswith(("/startup", "/local")):
            root = pod.path(mount)
            files |= {str(p.relative_to(pod.root)): p.read_text() for p in sorted(root.rglob("*")) if p.is_file()}
    return files
