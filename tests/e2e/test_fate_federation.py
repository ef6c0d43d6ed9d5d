"""A real two-party FATE 2.2.0 federation from the rendered local-fate stack: the rendered verification Job
(the toy example between the parties) must succeed, with every cross-party byte through the parties' proxies
over mutual TLS and every connection one the rendered NetworkPolicies admit, and must fail, naming the party,
once a party's fate_flow is gone.

Real: the render's files, as the pods mount them (fate_flow's service_conf.yaml and RabbitMQ route table,
RabbitMQ's configuration, plugins and generated credentials, the proxies' nginx.conf, certificates made
from the program's pulumi-tls inputs); RabbitMQ (Debian's rabbitmq-server), nginx (Debian's, with its
stream module) and fate_flow 2.2.0 with pyfate from `.venv-fate` (requirements-e2e-fate.txt).
Mapped, and only this:
- each pod (a party's broker, proxy and fate_flow) is one network namespace on a routed pod network; the
  Service names in the files resolve through a kube-dns pod answering the render's names, and each pod's
  packet filter, derived from tools.netpol, admits only the connections (DNS lookups included) the rendered
  NetworkPolicies allow (tests/e2e/policy.py `pod_network`). Ports are the rendered ones.
- mount paths -> local directories, in args, env and mounted files (tests/e2e/pods.py);
- the image's fate_flow -> a copy of the pip package per party (fate_flow keeps its conf/, logs, jobs and
  data inside its package directory), started with the party's files in its conf/.
With the peer proxies' ingress rule removed from one party's proxy policy, the toy job fails and the test
names the refused flow.
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
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from components.federations import fate, fate_files
from tests.e2e import netns
from tests.e2e.pods import LocalContainer, materialize
from tests.e2e.policy import Enforcement, without_rule
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
REFUSED_TOY_SECONDS = 60  # how long the toy job may try with its control calls refused


COMPONENTS = ("rabbitmq", "proxy", "fateflow")


def placement(parties: list[fate_files.Party]) -> dict[str, tuple[str, str]]:
    """Each party's pods: local network namespace -> the pod tools.netpol models (namespace, name)."""
    return {f"p{p.id}-{c}": (own_namespace(p), f"{c}-0") for p in parties for c in COMPONENTS}


def own_namespace(party: fate_files.Party) -> str:
    assert party.namespace is not None, f"party {party.id} is another stack's"  # local-fate deploys every party
    return party.namespace


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
    pods: dict[int, netns.Pod]  # each party's fate_flow pod, where its `flow` and pipeline clients run
    verify: netns.Pod  # the verification Job's pod
    envs: dict[int, dict[str, str]]  # each party's environment for its `flow` and pipeline clients
    procs: Processes
    enforcement: Enforcement

    def run(self, party: int, args: list[str], timeout: float) -> str:
        done = in_pod(self.pods[party], args, timeout, self.envs[party])
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{args} failed in party {party}:\n{output}\n{self.procs.logs()}"
        return output


@contextmanager
def federation(
    tmp_path: Path, change: Callable[[list[dict[str, Any]]], list[dict[str, Any]]] | None = None
) -> Iterator[Federation]:
    """Both parties running from the rendered local-fate stack, each party's `flow` pointed at its fate_flow, under
    the rendered policies (`change`: a changed copy of them)."""
    fate_bin = framework_bin("fate")
    rendering = render_tool.render(STACK, mocks_with_real_tls())
    parties = parties_of(rendering)
    assert [p.id for p in parties] == [GUEST, HOST]
    procs = Processes(tmp_path)
    manifests = rendering.manifests()
    enforcement = Enforcement(change(manifests) if change else manifests, tmp_path / "netpol")
    guest = next(p for p in parties if p.id == GUEST)
    pods_of = {
        **placement(parties),
        "verify": (own_namespace(guest), f"{verify_job(rendering, guest)['metadata']['name']}-0"),
    }
    with (
        netns.pods([*pods_of, "kube-dns"], routed=True) as pods,
        enforcement.pod_network(pods, pods_of, dns="kube-dns"),
    ):
        try:
            by_party = {p.id: {c: pods[f"p{p.id}-{c}"] for c in COMPONENTS} for p in parties}
            envs = start_parties(rendering, parties, by_party, procs, tmp_path, fate_bin)
            flow_pods = {i: by_party[i]["fateflow"] for i in by_party}
            running = Federation(rendering, parties, flow_pods, pods["verify"], envs, procs, enforcement)
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


def verify_job(rendering: Rendering, guest: fate_files.Party) -> dict[str, Any]:
    """The rendered verification Job: it runs in the initiating party's namespace (the guest's)."""
    (job,) = [
        o
        for o in rendering.manifests()
        if o["kind"] == "Job"
        and o["metadata"]["namespace"] == guest.namespace
        and o["metadata"]["labels"].get("app.kubernetes.io/component") == "verify"
    ]
    return job


def verification_job(fed: Federation, root: Path) -> tuple[list[str], dict[str, str]]:
    """The rendered verification Job's command (the image's `python` -> .venv-fate's) and env, its mounted script
    materialized under `root`; it runs in its own pod (`fed.verify`)."""
    guest = next(p for p in fed.parties if p.id == GUEST)
    container = materialize(fed.rendering, verify_job(fed.rendering, guest), "verify", root)
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
            toy = in_pod(fed.verify, args, TOY_SECONDS, env)
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
        failed = in_pod(fed.verify, args, 120, env)
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
    assert_only_admitted_flows(fed)
    # The verification Job's own pod looked its party's Services up and reached them under its own policy.
    guest = next(p for p in fed.parties if p.id == GUEST)
    job_pod = f"{guest.namespace}/{verify_job(fed.rendering, guest)['metadata']['name']}-0"
    admitted = fed.enforcement.admitted()
    assert any(a.startswith(f"admitted {job_pod} -> kube-system/coredns-0 UDP/53\n") for a in admitted), admitted
    assert any(a.startswith(f"admitted {job_pod} -> {guest.namespace}/") for a in admitted), admitted


def assert_only_admitted_flows(fed: Federation) -> None:
    """Nothing was refused; every pod looked names up through kube-dns, and each party's proxy reached the other's
    TLS ports: the flows the job needed, all through the packet filters."""
    refusals, admitted = fed.enforcement.refusals(), fed.enforcement.admitted()
    assert refusals == [], "\n".join(refusals)
    for party in fed.parties:
        for component in COMPONENTS:
            source = f"admitted {party.namespace}/{component}-0 -> "
            assert any(a.startswith(source + "kube-system/coredns-0 UDP/53\n") for a in admitted), admitted
        for peer in (p for p in fed.parties if p.id != party.id):
            for port in (fate_files.PROXY_TLS_PORT, fate_files.PROXY_AMQPS_PORT):
                flow = f"admitted {party.namespace}/proxy-0 -> {peer.namespace}/proxy-0 TCP/{port}\n"
                assert any(a.startswith(flow) for a in admitted), (flow, admitted)


def _host_proxy_closed_to_peers(manifests: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The host proxy's policy without the ingress rule that admits the other parties' proxies."""
    namespace = f"fate-{HOST}"
    policy = next(
        o
        for o in manifests
        if o["kind"] == "NetworkPolicy" and (o["metadata"]["namespace"], o["metadata"]["name"]) == (namespace, "proxy")
    )
    rules = policy["spec"]["ingress"]
    index = next(i for i, rule in enumerate(rules) if any("namespaceSelector" in peer for peer in rule["from"]))
    return without_rule(manifests, namespace, "proxy", "ingress", index)


def test_enforcement_refuses_the_guest_proxy_when_the_host_proxy_rule_is_removed(tmp_path: Path) -> None:
    with federation(tmp_path, _host_proxy_closed_to_peers) as fed:
        toy = in_pod(
            fed.pods[GUEST],
            [*FLOW_CLI, "test", "toy", "-gid", str(GUEST), "-hid", str(HOST), "-t", str(REFUSED_TOY_SECONDS)],
            REFUSED_TOY_SECONDS + 60,
            fed.envs[GUEST],
        )
    refusals, admitted = fed.enforcement.refusals(), fed.enforcement.admitted()

    output = toy.stdout + toy.stderr
    assert not re.search(r"toy test job \S+ is success", output), output  # the federation cannot work:
    assert "create job failed" in output and "502 Server Error" in output, output  # the host's proxy is unreachable
    guest, host = f"fate-{GUEST}/proxy-0", f"fate-{HOST}/proxy-0"
    assert not any(a.startswith(f"admitted {guest} -> {host} ") for a in admitted), admitted
    # The test names the dropped flow and the policy that no longer admits it.
    dropped = f"{guest} -> {host} TCP/{fate_files.PROXY_TLS_PORT} DROPPED: no ingress rule of "
    refused = [r for r in refusals if dropped in r]
    assert refused, "\n".join(refusals) or output
    assert f"fate-{HOST}/proxy (isolating {host}) admits {guest}" in refused[0], refused[0]
    # Everything else the parties did was admitted: only that rule was missing.
    assert all(f" -> {host} " in r for r in refusals), refusals


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
    assert_only_admitted_flows(fed)


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
    pods: Mapping[int, dict[str, netns.Pod]],
    procs: Processes,
    root: Path,
    fate_bin: Path,
) -> dict[int, dict[str, str]]:
    """Starts every party's broker, proxy and fate_flow, each in its pod (`pods`: party -> component -> pod);
    returns each party's environment for `flow`."""
    flow_envs = {}
    for party in parties:
        ns, pod, home = party.namespace, pods[party.id], root / f"party-{party.id}"
        rabbitmq = materialize(rendering, rendering.find("Deployment", "rabbitmq", ns), "rabbitmq", home)
        env = {**base_env(Path("/usr/lib/rabbitmq/bin")), **rabbitmq.env}
        procs.start(f"rabbitmq-{party.id}", pod["rabbitmq"].command([RABBITMQ_SERVER]), env)

        proxy = materialize(rendering, rendering.find("Deployment", "proxy", ns), "proxy", home)
        map_paths(proxy, proxy.local("/etc/flstack/nginx/nginx.conf"))
        procs.start(f"proxy-{party.id}", pod["proxy"].command(proxy.args), base_env(Path("/usr/sbin")))

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
            pod["fateflow"].command([str(venv / "bin" / "python"), str(package / "fate_flow_server.py")]),
            flow_env,
            cwd=home,
        )
        flow_envs[party.id] = flow_env
    for party in parties:
        pod = pods[party.id]
        broker = partial(listening, pod["rabbitmq"], fate_files.AMQP_PORT)
        procs.wait_for(f"party {party.id}'s broker", broker, START_SECONDS)
        proxy_up = partial(listening, pod["proxy"], fate_files.PROXY_HTTP_PORT)
        procs.wait_for(f"party {party.id}'s proxy", proxy_up, 30)
        procs.wait_for(f"party {party.id}'s fate_flow", partial(flow_ready, pod["fateflow"]), START_SECONDS)
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
