"""Cluster DNS for local pods (kube-dns's stand-in), run in its own network namespace:

    python cluster_dns.py NAMES.json

NAMES.json maps fully qualified names (`<service>.<namespace>.svc.cluster.local`, and `<pod>.<service>...`
for headless Services) to the local addresses of the pods behind them; tests/e2e/policy.py writes it from
the render. A pod resolves through it as in a cluster (its resolv.conf: this server, the pod namespace's
search path, ndots:5), so every lookup of a Service name is a real UDP/53 flow to kube-dns, which the pod's
packet filter admits or refuses like any other. Unknown names get NXDOMAIN; AAAA queries get no answer.
"""

import json
import sys
from pathlib import Path

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSHandler, DNSLogger, DNSServer


class RenderedNames(BaseResolver):  # type: ignore[misc]
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        reply = request.reply()
        addresses = self.names.get(str(request.q.qname).rstrip(".").lower())
        if addresses is None:
            reply.header.rcode = RCODE.NXDOMAIN
        elif request.q.qtype == QTYPE.A:
            for address in addresses:
                reply.add_answer(RR(request.q.qname, QTYPE.A, rdata=A(address), ttl=5))
        return reply


if __name__ == "__main__":
    names = json.loads(Path(sys.argv[1]).read_text())
    logger = DNSLogger("-recv,-send,-data,-truncated", prefix=False)  # one line per request and reply
    DNSServer(RenderedNames(names), address="0.0.0.0", port=53, logger=logger).start()
