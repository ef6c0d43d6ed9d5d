"""A tiny TCP forwarder (kube-proxy's job in a cluster):

    python forward.py LISTEN_PORT TARGET_HOST TARGET_PORT [--listen-host HOST] [--policy GUARD.json]

With --policy it admits only the connections the rendered NetworkPolicies allow: GUARD.json (written by
tests/e2e/policy.py) names the render's model, the pod this forwarder serves (or none: then the connecting
client's own address, as a load balancer keeping client addresses delivers it) and the Service name it stands
for; every connection asks tools.netpol (DNS lookup of the Service name, then each endpoint's ingress and
the pod's egress). A refused connection is closed at once and recorded, with the flow and the reason, in
the guard's log file and on stderr.
"""

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    finally:
        writer.close()


class Guard:
    """The rendered policies, asked once per connection."""

    def __init__(self, path: Path) -> None:
        spec: dict[str, Any] = json.loads(path.read_text())
        sys.path.insert(0, spec["root"])  # tools.netpol: standard library only, importable from any venv
        from tools.netpol import Cluster

        self.cluster = Cluster.from_manifests(json.loads(Path(spec["model"]).read_text()))
        # No source pod: an outside client, known by its address (a load balancer that keeps client addresses).
        self.source = self.cluster.pod(*spec["source"]) if spec["source"] else None
        self.host, self.port = spec["host"], int(spec["port"])
        self.log = Path(spec["log"])

    def admits(self, peer: str) -> bool:
        source = self.source or peer
        connection = self.cluster.connect(source, self.host, self.port)
        verdict = "admitted" if connection.allowed else "REFUSED"
        line = f"{verdict} {source} -> {self.host}:{self.port}\n  " + connection.explain().replace("\n", "\n  ")
        with self.log.open("a") as log:
            log.write(json.dumps({"admitted": connection.allowed, "text": line}) + "\n")
        if not connection.allowed:
            print(line, file=sys.stderr, flush=True)
        return connection.allowed


async def main(listen_host: str, listen_port: int, host: str, port: int, guard: Guard | None) -> None:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if guard is not None and not guard.admits(writer.get_extra_info("peername")[0]):
            writer.close()  # what a dropped SYN looks like to the client, minus the wait
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(host, port)
        except OSError:
            writer.close()
            return
        await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer), return_exceptions=True)

    server = await asyncio.start_server(handle, listen_host, listen_port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("listen_port", type=int)
    parser.add_argument("target_host")
    parser.add_argument("target_port", type=int)
    parser.add_argument("--listen-host", default="127.0.0.1")
    parser.add_argument("--policy", type=Path, help="a guard file from tests/e2e/policy.py")
    args = parser.parse_args()
    guard = Guard(args.policy) if args.policy else None
    asyncio.run(main(args.listen_host, args.listen_port, args.target_host, args.target_port, guard))
