"""The files a FATE party runs from, rendered from the party list: fate_flow's service_conf.yaml, the
RabbitMQ route table and configuration, the party proxy's nginx.conf and FATEBoard's application.properties.

Pure functions of plain values, so the e2e test and the unit tests read exactly what the pods get.

Cross-party traffic only ever flows between the parties' proxies, over mutual TLS:
- control: fate_flow sends every scheduling call to its own proxy (plain HTTP, inside the namespace) with a
  `dest-party-id` header; the proxy passes calls for its own party to the local fate_flow and calls for a
  peer to that peer's proxy over HTTPS with its client certificate;
- data: FATE's RabbitMQ federation makes each broker pull from the peer's broker at the address in the route
  table. The route table names this party's own proxy, one local port per peer (AMQP carries no host name to
  route on), and the proxy carries the connection to the peer's proxy over TLS (nginx `stream`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import yaml

FLOW_HTTP_PORT = 9380
FLOW_GRPC_PORT = 9360
AMQP_PORT = 5672
MANAGEMENT_PORT = 15672
PROXY_HTTP_PORT = 9300  # fate_flow -> own proxy (plain, own namespace only)
PROXY_TLS_PORT = 9443  # peer proxies -> this proxy, control (HTTPS, client certificate required)
PROXY_AMQPS_PORT = 5671  # peer proxies -> this proxy -> own broker (TLS, client certificate required)
PEER_AMQP_PORT_BASE = 5700  # own broker -> own proxy:5700+i -> party i's proxy:5671 (i = position in the list)
BOARD_PORT = 8080

FLOW = "fateflow"
RABBITMQ = "rabbitmq"
PROXY = "proxy"
EXCHANGE = "exchange"  # the proxy's mTLS ports, exposed to peers in other clusters (cross-silo)
BOARD = "fateboard"
RABBITMQ_USER = "fate"
TLS_DIR = "/etc/flstack/tls"
TMP = "/tmp"  # nginx's pid and temp files (a writable emptyDir; the root filesystem is read-only)


@dataclass(frozen=True)
class Party:
    """A party as the others see it: in this stack (its namespace) or in another (its exported exchange)."""

    id: int
    namespace: str | None  # None: deployed by another stack, reached at `address`
    address: str | None = None  # the exchange's public name or IP (another stack's party)
    https_port: int = 0  # 0: the in-cluster ports (PROXY_TLS_PORT, PROXY_AMQPS_PORT)
    amqps_port: int = 0

    @property
    def proxy_host(self) -> str:
        """The name peers dial, and the name this party's proxy certificate is checked against."""
        return self.address or f"{PROXY}.{self.namespace}.svc.cluster.local"

    @property
    def control(self) -> str:
        return f"{self.proxy_host}:{self.https_port or PROXY_TLS_PORT}"

    @property
    def data(self) -> str:
        return f"{self.proxy_host}:{self.amqps_port or PROXY_AMQPS_PORT}"


def peer_amqp_port(index: int) -> int:
    return PEER_AMQP_PORT_BASE + index


def service_conf(me: Party, rabbitmq_password: str, sqlite_path: str, cores: int) -> str:
    """fate_flow's conf/service_conf.yaml: standalone computing and storage, RabbitMQ federation, nginx proxy."""
    conf = {
        "party_id": str(me.id),
        "use_registry": False,
        "log_level": 20,
        "encrypt": {"key_0": {"module": "fate_flow.hub.encrypt.password_encrypt#pwdecrypt", "private_path": ""}},
        # 0.0.0.0: Services and probes reach it; fate_flow's calls to itself go through the proxy anyway.
        "fateflow": {
            "host": "0.0.0.0",
            "http_port": FLOW_HTTP_PORT,
            "grpc_port": FLOW_GRPC_PORT,
            "proxy_name": "nginx",
            "protocol": "http",
        },
        "database": {"engine": "sqlite", "decrypt_key": None, "sqlite": {"path": sqlite_path}},
        "default_engines": {"computing": "standalone", "federation": "rabbitmq", "storage": "standalone"},
        "default_provider": {"name": "fate", "version": None, "device": "local"},
        "computing": {"standalone": {"cores": cores}},
        "federation": {
            "nginx": {"host": PROXY, "http_port": PROXY_HTTP_PORT, "protocol": "http"},
            "rabbitmq": {
                "host": RABBITMQ,
                "port": AMQP_PORT,
                "mng_port": MANAGEMENT_PORT,
                "user": RABBITMQ_USER,
                "password": rabbitmq_password,
                "mode": "replication",
                "max_message_size": 1048576,
            },
        },
        # Standalone tables go to fate_flow's data/ (on its volume); fate_flow needs the key even when empty.
        "storage": {},
        "hook_module": {
            "client_authentication": "fate_flow.hook.flow.client_authentication",
            "site_authentication": "fate_flow.hook.flow.site_authentication",
            "permission": "fate_flow.hook.flow.permission",
        },
        # Parties trust each other by their proxies' mTLS certificates, not by fate_flow's signatures.
        "authentication": {"client": False, "site": False, "permission": False},
        "model_store": {"engine": "file", "decrypt_key": None, "file": {"path": None}},
    }
    return yaml.safe_dump(conf, sort_keys=False)


def route_table(me: Party, parties: Sequence[Party]) -> str:
    """conf/rabbitmq_route_table.yaml: where this party's broker finds each party's broker."""
    table: dict[int, dict[str, object]] = {}
    for i, party in enumerate(parties):
        if party.id == me.id:
            table[party.id] = {"host": RABBITMQ, "port": AMQP_PORT}
        else:
            table[party.id] = {"host": PROXY, "port": peer_amqp_port(i)}
    return yaml.safe_dump(table, sort_keys=False)


def rabbitmq_conf() -> str:
    return (
        "# Rendered by flstack. Credentials come from the Secret-mounted default-user file beside this one.\n"
        f"listeners.tcp.default = {AMQP_PORT}\n"
        f"management.tcp.port = {MANAGEMENT_PORT}\n"
        "# The fate user connects from the fateflow pod, never over loopback.\n"
        "loopback_users = none\n"
        "# Publishers block above this share of the memory limit RabbitMQ reads from its cgroup (default 0.4).\n"
        "vm_memory_high_watermark.relative = 0.6\n"
        "log.console = true\n"
        "log.console.level = info\n"
        "log.file = false\n"
    )


def rabbitmq_default_user(password: str) -> str:
    return f"default_user = {RABBITMQ_USER}\ndefault_pass = {password}\n"


RABBITMQ_PLUGINS = "[rabbitmq_management,rabbitmq_federation,rabbitmq_federation_management].\n"

_TLS_CLIENT = f"""\
        proxy_ssl_certificate {TLS_DIR}/tls.crt;
        proxy_ssl_certificate_key {TLS_DIR}/tls.key;
        proxy_ssl_trusted_certificate {TLS_DIR}/ca.crt;
        proxy_ssl_verify on;
        proxy_ssl_verify_depth 2;
        proxy_ssl_protocols TLSv1.3;"""

_TLS_SERVER = f"""\
        ssl_certificate {TLS_DIR}/tls.crt;
        ssl_certificate_key {TLS_DIR}/tls.key;
        ssl_client_certificate {TLS_DIR}/ca.crt;
        ssl_verify_client on;
        ssl_verify_depth 2;
        ssl_protocols TLSv1.3;"""


def nginx_conf(me: Party, parties: Sequence[Party]) -> str:
    """The party proxy: HTTP routing on `dest-party-id` and AMQP links, everything across parties over mTLS."""
    # A peer of another stack whose outputs are not there yet has no address: no route to it yet.
    peers = [(i, p) for i, p in enumerate(parties) if p.id != me.id and (p.namespace or p.address)]
    upstreams = "\n".join(f"    upstream party_{p.id} {{ server {p.control}; }}" for _, p in peers)
    routes = "\n".join(f'        "{p.id}" https://party_{p.id};' for _, p in peers)
    names = "\n".join(f'        "{p.id}" {p.proxy_host};' for _, p in peers)
    links = "\n".join(
        f"""    server {{  # own broker -> party {p.id}'s broker
        listen {peer_amqp_port(i)};
        proxy_pass {p.data};
        proxy_ssl on;
        proxy_ssl_name {p.proxy_host};
{_TLS_CLIENT}
    }}"""
        for i, p in peers
    )
    tmp = TMP
    unknown = [str(p.id) for p in parties if not (p.namespace or p.address)]
    pending = f"\n# Not deployed yet (no route until the next update): {', '.join(unknown)}." if unknown else ""
    return f"""\
# Rendered by flstack: the proxy of FATE party {me.id}. Parties: {", ".join(str(p.id) for p in parties)}.{pending}
worker_processes 1;
pid {tmp}/nginx.pid;
error_log stderr notice;
# Debian packages the stream module separately and loads it from here; the official image has it built in.
include /etc/nginx/modules-enabled/*.conf;

events {{
    worker_connections 1024;
}}

http {{
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    client_max_body_size 0;
    proxy_read_timeout 600s;
    log_format fate '$remote_addr "$request" $status dest=$http_dest_party_id '
                    'upstream=$upstream_addr client_cert="$ssl_client_s_dn"';
    access_log /dev/stdout fate;

    upstream fateflow {{ server {FLOW}:{FLOW_HTTP_PORT}; }}
{upstreams}

    # Where a call for `dest-party-id` goes: this party's fate_flow, or that party's proxy.
    map $http_dest_party_id $fate_upstream {{
        default "";
        "{me.id}" http://fateflow;
{routes}
    }}
    map $http_dest_party_id $fate_peer_name {{
        default "";
{names}
    }}

    server {{  # fate_flow of this party -> any party
        listen {PROXY_HTTP_PORT};
        location / {{
            if ($fate_upstream = "") {{
                return 404 "no route to party $http_dest_party_id\\n";
            }}
            proxy_pass $fate_upstream;
            proxy_ssl_name $fate_peer_name;
            proxy_ssl_server_name on;
{_TLS_CLIENT}
        }}
    }}

    server {{  # peer proxies -> this party's fate_flow
        listen {PROXY_TLS_PORT} ssl;
{_TLS_SERVER}
        location / {{
            if ($http_dest_party_id != "{me.id}") {{
                return 421 "this is party {me.id}\\n";
            }}
            proxy_pass http://fateflow;
        }}
    }}
}}

stream {{
    log_format amqp '$remote_addr $server_port $status $bytes_sent $bytes_received $session_time '
                    'upstream=$upstream_addr client_cert="$ssl_client_s_dn"';
    access_log /dev/stdout amqp;

    server {{  # peer brokers -> this party's broker
        listen {PROXY_AMQPS_PORT} ssl;
{_TLS_SERVER}
        proxy_pass {RABBITMQ}:{AMQP_PORT};
    }}
{links}
}}
"""


def fateboard_properties(username: str, password: str) -> str:
    """FATEBoard's Spring Boot settings, as KubeFATE's chart writes them, pointed at the party's own fate_flow.

    Holds the login password: it goes into a Secret. The username (letters, digits, `_.-`) and the generated password
    (letters and digits) need no escaping in a Java properties file.
    """
    return (
        f"server.port={BOARD_PORT}\n"
        f"fateflow.url=http://{FLOW}:{FLOW_HTTP_PORT}\n"
        "fateflow.http_app_key=\n"
        "fateflow.http_secret_key=\n"
        "server.servlet.encoding.charset=UTF-8\n"
        "server.servlet.encoding.enabled=true\n"
        "server.tomcat.uri-encoding=UTF-8\n"
        "fateboard.front_end.cors=false\n"
        "server.compression.enabled=true\n"
        "server.compression.mime-types=application/json,application/xml,text/html,text/xml,text/plain\n"
        f"server.board.login.username={username}\n"
        f"server.board.login.password={password}\n"
        "server.servlet.session.timeout=4h\n"
        "server.servlet.session.cookie.max-age=4h\n"
        "management.endpoints.web.exposure.exclude=*\n"
        "feign.client.config.default.connectTimeout=10000\n"
        "feign.client.config.default.readTimeout=10000\n"
    )
