"""A real two-party FATE 2.2.0 federation from the rendered local-fate stack: the rendered verification Job
(the toy example between the parties) must succeed, with every cross-party byte through the parties' proxies
over mutual TLS, and must fail, naming the party, once a party's fate_flow is gone.

Real: the render's files, as the pods mount them (fate_flow's service_conf.yaml and RabbitMQ route table,
RabbitMQ's configuration, plugins and generated credentials, the proxies' nginx.conf, certificates made
from the program's pulumi-tls inputs); RabbitMQ (Debian's rabbitmq-server), nginx (Debian's, with its
stream module) and fate_flow 2.2.0 with pyfate from `.venv-fate` (requirements-e2e-fate.txt).
Mapped, and only this:
- each party is one network namespace (its pods share it, so their Service names are loopback), and the
  one table `service_hosts` (the namespace's /etc/hosts) sends the peer proxy's Service name to the peer
  namespace's address. Ports are the rendered ones.
- mount paths -> local directories, in args, env and mounted files (tests/e2e/pods.py);
- the image's fate_flow -> a copy of the pip package per party (fate_flow keeps its conf/, logs, jobs and
  data inside its package directory), started with the party's files in its conf/.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from components.federations import fate, fate_files
from tests.e2e import netns
from tests.e2e.pods import LocalContainer, materialize
from tests.e2e.processes import Processes, base_env, framework_bin
from tests.e2e.real_tls import mocks_with_real_tls
from tools import render as render_tool
from tools.render import Rendering

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(netns.available() is not None, reason=str(netns.available())),
    pytest.mark.skipif(shutil.which("nginx") is None, reason="nginx is not installed (./dev test installs it)"),
]

STACK = "local-fate"
GUEST, HOST = 9999, 10000
RABBITMQ_SERVER = "/usr/lib/rabbitmq/bin/rabbitmq-server"
START_SECONDS = 120  # brokers, proxies and fate_flow servers up (fate_flow alone takes 15-20 s here)
TOY_SECONDS = 420


def service_hosts(me: int, addresses: dict[int, str], parties: list[fate_files.Party]) -> str:
    """The one network mapping: a party's /etc/hosts. Its own Services share its namespace (loopback); the
    peer proxy's Service name goes to the peer namespace's address. Nothing else of the files changes."""
    own = " ".join([fate_files.FLOW, fate_files.RABBITMQ, fate_files.PROXY])
    lines = [f"127.0.0.1 localhost {own}", "::1 localhost"]
    lines += [f"{addresses[p.id]} {p.proxy_host}" for p in parties if p.id != me]
    return "\n".join(lines) + "\n"


@contextmanager
def party_namespaces(parties: list[fate_files.Party]) -> Iterator[dict[int, netns.Pod]]:
    """One network namespace per party, each with its /etc/hosts (`ip netns exec` mounts /etc/netns/NAME/*)."""
    with netns.pods([f"p{p.id}" for p in parties]) as pods:
        by_party = {p.id: pods[f"p{p.id}"] for p in parties}
        # The first party is the hub; the others' addresses are on their links to it (netns.pods).
        addresses = {parties[0].id: netns.hub_address(1)}
        addresses.update({p.id: netns.spoke_address(i) for i, p in enumerate(parties[1:], start=1)})
        made = []
        try:
            for party in parties:
                etc = Path("/etc/netns") / by_party[party.id].name
                etc.mkdir(parents=True, exist_ok=True)
                made.append(etc)
                (etc / "hosts").write_text(service_hosts(party.id, addresses, parties))
            yield by_party
        finally:
            for etc in made:
                shutil.rmtree(etc, ignore_errors=True)


def map_paths(container: LocalContainer, path: Path) -> str:
    """A mounted file with the container's mount paths mapped to their local directories; returns its text."""
    # One pass, longest mount first, so a mapped path is never mapped again.
    mounts = "|".join(re.escape(m) for m in sorted(container.mounts, key=len, reverse=True))
    text = re.sub(rf"(?<![\w/])({mounts})(?=/|;|\s|$)", lambda m: str(container.mounts[m[1]]), path.read_text())
    path.write_text(text)
    return text


def sub_path_file(workload: dict[str, Any], container: LocalContainer, mount_path: str) -> Path:
    """The local file behind a subPath mount (materialize maps the mount to the whole volume's directory)."""
    mounts = workload["spec"]["template"]["spec"]["containers"][0]["volumeMounts"]
    sub_path: str = next(m["subPath"] for m in mounts if m["mountPath"] == mount_path)
    return container.mounts[mount_path] / sub_path


def party_venv(root: Path, fate_bin: Path) -> Path:
    """A venv of its own for one party's fate_flow: a copy of the fate_flow package (and of fate_client, whose
    `flow init` writes into its package), everything else from .venv-fate."""
    venv = root / "venv"
    subprocess.run([str(fate_bin / "python"), "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    shared = next((fate_bin.parent / "lib").glob("python3*/site-packages"))
    own = next((venv / "lib").glob("python3*/site-packages"))
    for package in ("fate_flow", "fate_client"):
        shutil.copytree(shared / package, own / package, ignore=shutil.ignore_patterns("__pycache__"))
    (own / "fate-shared.pth").write_text(f"import site; site.addsitedir({str(shared)!r})\n")
    return venv


def rss_by_session() -> dict[int, float]:
    """Resident memory (MiB) per session: a pod's process and everything it forks (fate_flow's task processes)."""
    totals: dict[int, float] = {}
    page = os.sysconf("SC_PAGE_SIZE")
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            session, rss = int(fields[3]), int(fields[21])  # stat fields 6 (session) and 24 (rss, pages)
        except (OSError, IndexError, ValueError):
            continue
        totals[session] = totals.get(session, 0.0) + rss * page / 2**20
    return totals


class PeakMemory:
    def __init__(self, sessions: dict[str, int]) -> None:
        self.sessions, self.peaks = sessions, dict.fromkeys(sessions, 0.0)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(0.5):
            now = rss_by_session()
            for name, session in self.sessions.items():
                self.peaks[name] = max(self.peaks[name], now.get(session, 0.0))

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def in_pod(pod: netns.Pod, args: list[str], timeout: float, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(pod.command(args), capture_output=True, text=True, timeout=timeout, env=env, check=False)


def listening(pod: netns.Pod, port: int) -> bool:
    probe = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=2).close()"
    return in_pod(pod, [sys.executable, "-c", probe], 10, {}).returncode == 0


def flow_ready(pod: netns.Pod) -> bool:
    url = f"http://127.0.0.1:{fate_files.FLOW_HTTP_PORT}/v2/server/fateflow"
    probe = f"import urllib.request; urllib.request.urlopen({url!r}, timeout=3).read()"
    return in_pod(pod, [sys.executable, "-c", probe], 15, {}).returncode == 0


FLOW_CLI = ["python", "-m", "fate_client.flow_cli.flow"]
PSI_LR = Path(__file__).with_name("fate_psi_lr.py")


@dataclass
class Federation:
    rendering: Rendering
    parties: list[fate_files.Party]
    pods: dict[int, netns.Pod]
    envs: dict[int, dict[str, str]]  # each party's environment for its `flow` and pipeline clients
    procs: Processes

    def run(self, party: int, args: list[str], timeout: float) -> str:
        done = in_pod(self.pods[party], args, timeout, self.envs[party])
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{args} failed in party {party}:\n{output}\n{self.procs.logs()}"
        return output


@contextmanager
def federation(tmp_path: Path) -> Iterator[Federation]:
    """Both parties running from the rendered local-fate stack, each party's `flow` pointed at its fate_flow."""
    fate_bin = framework_bin("fate")
    rendering = render_tool.render(STACK, mocks_with_real_tls())
    parties = parties_of(rendering)
    assert [p.id for p in parties] == [GUEST, HOST]
    procs = Processes(tmp_path)
    try:
        with party_namespaces(parties) as pods:
            envs = start_parties(rendering, parties, pods, procs, tmp_path, fate_bin)
            running = Federation(rendering, parties, pods, envs, procs)
            for party in parties:
                running.run(
                    party.id, [*FLOW_CLI, "init", "--ip", "127.0.0.1", "--port", str(fate_files.FLOW_HTTP_PORT)], 60
                )
            yield running
            procs.check_alive()
            # nginx logs a stream session when it ends: close the brokers' federation links first.
            stop_brokers(procs, parties)
    finally:
        procs.stop_all()


def verification_job(fed: Federation, root: Path) -> tuple[list[str], dict[str, str]]:
    """The rendered verification Job's command (the image's `python` -> .venv-fate's) and env, its mounted script
    materialized under `root`; it runs in the initiating party's namespace (the guest's)."""
    guest = next(p for p in fed.parties if p.id == GUEST)
    (job,) = [
        o
        for o in fed.rendering.manifests()
        if o["kind"] == "Job"
        and o["metadata"]["namespace"] == guest.namespace
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "verify"
    ]
    container = materialize(fed.rendering, job, "verify", root)
    assert container.args[0] == "python", container.args
    return [str(framework_bin("fate") / "python"), *container.args[1:]], {**base_env(Path("/usr/bin")), **container.env}


def test_verification_job_runs_the_toy_between_the_mtls_proxies_and_names_a_missing_party(tmp_path: Path) -> None:
    started = time.monotonic()
    with federation(tmp_path) as fed:
        args, env = verification_job(fed, tmp_path / "verify")
        # Each process group is one pod's container: its peak resident memory sizes the requests and limits.
        sessions = {name: proc.pid for name, proc in fed.procs.running.items()}
        toy_started = time.monotonic()
        with PeakMemory(sessions) as memory:
            toy = in_pod(fed.pods[GUEST], args, TOY_SECONDS, env)
        output = toy.stdout + toy.stderr
        assert toy.returncode == 0, f"{output}\n{fed.procs.logs()}"
        assert "OK: the toy example succeeded on every party: 9999 (fate-9999), 10000 (fate-10000)" in output, output
        # The job's status came from each party's own fate_flow, through the proxies.
        for where in (f"{GUEST} (fate-{GUEST}) (guest)", f"{HOST} (fate-{HOST}) (host)"):
            assert re.search(rf"toy job \S+ on party {re.escape(where)}: success", output), output
        toy_seconds = time.monotonic() - toy_started

        # One party down (its fate_flow not running): the same Job fails and says which party.
        host_flow = fed.procs.running.pop(f"fateflow-{HOST}")
        os.killpg(host_flow.pid, signal.SIGTERM)
        host_flow.wait(timeout=30)
        failed = in_pod(fed.pods[GUEST], args, 120, env)
        output = failed.stdout + failed.stderr
        assert failed.returncode == 1, output
        assert f"FAILED: party {HOST} (fate-{HOST}): its fate_flow does not answer through the proxies" in output, (
            output
        )
        assert "toy job" not in output  # nothing submitted to a federation missing a party
    print(
        f"\nFATE verification (toy): {toy_seconds:.1f} s; whole test {time.monotonic() - started:.1f} s; "
        + "peak RSS "
        + ", ".join(f"{name} {mib:.0f} MiB" for name, mib in sorted(memory.peaks.items()))
    )
    # After the brokers stopped: nginx logs a stream session when it ends.
    assert_traffic_went_through_the_mtls_links(fed.procs, fed.parties)
    for party in fed.parties:
        assert_writes_only_to_volumes(tmp_path / f"party-{party.id}", framework_bin("fate"))


@pytest.mark.slow
def test_psi_and_logistic_regression_between_the_parties(tmp_path: Path) -> None:
    """Each party uploads its own half of the data to its own fate_flow; the guest runs PSI + CoordinatedLR."""
    data = tmp_path / "data"
    data.mkdir()
    started = time.monotonic()
    with federation(tmp_path) as fed:
        fed.run(GUEST, ["python", str(PSI_LR), "data", str(data)], 60)
        fed.run(GUEST, ["python", str(PSI_LR), "upload", str(data / "guest.csv"), "guest"], 300)
        fed.run(HOST, ["python", str(PSI_LR), "upload", str(data / "host.csv"), "host"], 300)
        output = fed.run(GUEST, ["python", str(PSI_LR), "fit", str(GUEST), str(HOST)], 900)
        auc = float(re.findall(r"^AUC (\S+)$", output, re.M)[-1])
        print(f"\nFATE PSI + CoordinatedLR: train AUC {auc:.4f}; {time.monotonic() - started:.0f} s")
        assert auc > 0.8
    assert_traffic_went_through_the_mtls_links(fed.procs, fed.parties)


def assert_writes_only_to_volumes(home: Path, fate_bin: Path) -> None:
    """fate_flow wrote only where the pod has volumes (its state directories): a read-only root is enough."""
    copy = next((home / "venv" / "lib").glob("python3*/site-packages")) / "fate_flow"
    original = next((fate_bin.parent / "lib").glob("python3*/site-packages")) / "fate_flow"
    allowed = {*fate.FLOW_STATE_DIRS, "__pycache__", "conf/service_conf.yaml", "conf/rabbitmq_route_table.yaml"}

    def changed(path: Path) -> bool:
        twin = original / path.relative_to(copy)
        return not twin.exists() or twin.read_bytes() != path.read_bytes()

    written = sorted(str(path.relative_to(copy)) for path in copy.rglob("*") if path.is_file() and changed(path))
    outside = [
        p
        for p in written
        if not any(p == a or p.startswith((a + "/", "__pycache__")) or "/__pycache__/" in p for a in allowed)
    ]
    assert written and not outside, outside


def stop_brokers(procs: Processes, parties: list[fate_files.Party]) -> None:
    for party in parties:
        os.killpg(procs.running[f"rabbitmq-{party.id}"].pid, signal.SIGTERM)
    for party in parties:
        procs.running[f"rabbitmq-{party.id}"].wait(timeout=60)
    time.sleep(1)  # the proxies notice the closed upstream connections and log the sessions


def parties_of(rendering: Rendering) -> list[fate_files.Party]:
    namespaces = sorted(
        (int(o["metadata"]["labels"]["flstack.dev/fate-party"]), o["metadata"]["name"])
        for o in rendering.manifests()
        if o["kind"] == "Namespace" and "flstack.dev/fate-party" in o["metadata"]["labels"]
    )
    return [fate_files.Party(party, ns) for party, ns in namespaces]


def start_parties(
    rendering: Rendering,
    parties: list[fate_files.Party],
    pods: dict[int, netns.Pod],
    procs: Processes,
    root: Path,
    fate_bin: Path,
) -> dict[int, dict[str, str]]:
    """Starts every party's broker, proxy and fate_flow; returns each party's environment for `flow`."""
    flow_envs = {}
    for party in parties:
        ns, pod, home = party.namespace, pods[party.id], root / f"party-{party.id}"
        rabbitmq = materialize(rendering, rendering.find("Deployment", "rabbitmq", ns), "rabbitmq", home)
        env = {**base_env(Path("/usr/lib/rabbitmq/bin")), **rabbitmq.env}
        procs.start(f"rabbitmq-{party.id}", pod.command([RABBITMQ_SERVER]), env)

        proxy = materialize(rendering, rendering.find("Deployment", "proxy", ns), "proxy", home)
        map_paths(proxy, proxy.local("/etc/flstack/nginx/nginx.conf"))
        procs.start(f"proxy-{party.id}", pod.command(proxy.args), base_env(Path("/usr/sbin")))

        statefulset = rendering.find("StatefulSet", "fateflow", ns)
        flow = materialize(rendering, statefulset, "fateflow", home)
        venv = party_venv(home, fate_bin)
        package = next((venv / "lib").glob("python3*/site-packages")) / "fate_flow"
        for name in ("service_conf.yaml", "rabbitmq_route_table.yaml"):
            local = sub_path_file(statefulset, flow, f"{fate.FLOW_CONF}/{name}")
            (package / "conf" / name).write_text(map_paths(flow, local))
        flow_env = base_env(venv / "bin")
        procs.start(
            f"fateflow-{party.id}",
            pod.command([str(venv / "bin" / "python"), str(package / "fate_flow_server.py")]),
            flow_env,
            cwd=home,
        )
        flow_envs[party.id] = flow_env
    for party in parties:
        pod = pods[party.id]
        procs.wait_for(f"party {party.id}'s broker", partial(listening, pod, fate_files.AMQP_PORT), START_SECONDS)
        procs.wait_for(f"party {party.id}'s proxy", partial(listening, pod, fate_files.PROXY_HTTP_PORT), 30)
        procs.wait_for(f"party {party.id}'s fate_flow", partial(flow_ready, pod), START_SECONDS)
    return flow_envs


def assert_traffic_went_through_the_mtls_links(
    procs: Processes,
    parties: list[fate_files.Party],
    link_port: Callable[[fate_files.Party, fate_files.Party], int] | None = None,
) -> None:
    """Each proxy's log: control calls and AMQP links from the other party arrived with its client certificate.

    `link_port(me, peer)`: the local port `me`'s broker dials for `peer` (default: the peer's position in one
    stack's party list)."""
    for party in parties:
        log = (procs.log_dir / f"proxy-{party.id}.log").read_text()
        for peer in (p for p in parties if p.id != party.id):
            peer_cert = f"CN=fate-party-{peer.id}"
            control = [line for line in log.splitlines() if f"dest={party.id}" in line and peer_cert in line]
            assert control, f"no control call from party {peer.id} over mTLS in proxy {party.id}'s log:\n{log}"
            assert all(" 200 " in line or " 201 " in line for line in control[:1])
            amqp_in = [
                line
                for line in log.splitlines()
                if re.match(rf"\S+ {fate_files.PROXY_AMQPS_PORT} 200 ", line) and peer_cert in line
            ]
            assert amqp_in, f"no AMQP link from party {peer.id} over mTLS in proxy {party.id}'s log:\n{log}"
            assert any(int(line.split()[3]) > 0 for line in amqp_in)  # bytes went to the peer's broker link
            # And this party's own calls and broker link to the peer left over TLS, to the peer proxy's ports.
            out = [line for line in log.splitlines() if f"dest={peer.id}" in line]
            assert out and all(f":{fate_files.PROXY_TLS_PORT} " in line for line in out), log
            port = link_port(party, peer) if link_port else fate_files.peer_amqp_port(parties.index(peer))
            link = rf"\S+ {port} 200 \d+ [1-9]\d* .* upstream=\S+:{fate_files.PROXY_AMQPS_PORT} "
            assert re.search(link, log), f"no broker link from party {party.id} to {peer.id}:\n{log}"
