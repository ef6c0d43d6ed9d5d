"""FedML cross-silo: one real round between a server and every configured client, as a verification.

Each pod of the verification Job (an Indexed Job: completion index = FedML rank, 0 the server) runs this
wrapper around the federation's own command: it adds `--rank` and `--role` for its index, and bounds the run.
The Job completes only when every index exits 0, and FedAvg's server finishes a round only once every client's
model arrived: so a complete Job means every configured client took part. A client that never answers is named.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

INDEX = "JOB_COMPLETION_INDEX"  # what the Job controller sets in an Indexed Job's pods
# Clients outlive the server's bound by this much: when the round times out, the server names the clients that
# do not answer, so a client that did take part must still be answering then (the Job's deadline is longer).
CLIENT_GRACE_SECONDS = 60


def peers(ipconfig: str) -> dict[int, tuple[str, int]]:
    """rank -> (the name peers dial, port), from FedML 0.9.6's ip-config CSV."""
    rows = [line.split(",") for line in Path(ipconfig).read_text().strip().splitlines()[1:]]
    return {int(rank): (ingress or bound, int(port)) for _, rank, bound, port, ingress in rows}


def answers(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=3).close()
        return True
    except OSError:
        return False


def run(command: list[str], seconds: float) -> int | None:
    """The node's process (its output is this pod's); None when it outlives `seconds`."""
    node = subprocess.Popen(command)
    try:
        return node.wait(timeout=seconds)
    except subprocess.TimeoutExpired:
        node.kill()
        node.wait()
        return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ipconfig", required=True, help="the verification's gRPC ip-config CSV")
    parser.add_argument("--seconds", type=float, default=600, help="how long the round may take, start-up included")
    parser.add_argument("command", nargs=argparse.REMAINDER, help="-- the federation's node command and --cf FILE")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    rank = int(os.environ[INDEX])
    nodes = peers(args.ipconfig)
    clients = sorted(r for r in nodes if r != 0)
    role = "server" if rank == 0 else "client"
    seconds = args.seconds + (CLIENT_GRACE_SECONDS if role == "client" else 0)
    deadline = time.monotonic() + seconds
    if role == "client":
        # A 0.9.6 client that finds no server hangs forever: wait for it first, like the federation's clients.
        host, port = nodes[0]
        while not answers(host, port):
            if time.monotonic() > deadline:
                print(f"FAILED: client {rank}: the server ({host}:{port}) did not answer in {seconds:.0f} s")
                return 1
            time.sleep(2)
    code = run([*command, "--rank", str(rank), "--role", role], max(1.0, deadline - time.monotonic()))
    if code is None:
        if role == "client":
            print(f"FAILED: client {rank}: the round did not finish within {seconds:.0f} s", flush=True)
            return 1
        silent = [f"client {r} ({nodes[r][0]}:{nodes[r][1]})" for r in clients if not answers(*nodes[r])]
        why = f"no answer from {', '.join(silent)}" if silent else "every client answers: see the logs above"
        print(f"FAILED: the round did not finish within {args.seconds:.0f} s: {why}", flush=True)
        return 1
    if code != 0:
        print(f"FAILED: {role} {rank} exited with {code}", flush=True)
        return 1
    if role == "server":
        print(f"OK: the server finished the round with all {len(clients)} clients", flush=True)
    else:
        print(f"OK: client {rank} took part in the round", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
