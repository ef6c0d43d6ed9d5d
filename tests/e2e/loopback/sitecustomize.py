"""Test-only network mapping for the local NVFlare federation, loaded by Python at start-up (PYTHONPATH).

The kits stay exactly as provisioned: the server's name is its Kubernetes Service FQDN, and the server
binds every interface as it would in a pod. Here that FQDN resolves to loopback (FLSTACK_E2E_HOSTS,
`name=address,...`) and wildcard binds go to loopback only (FLSTACK_E2E_BIND), so nothing listens
beyond this machine.
"""

import os
import socket

_HOSTS = dict(pair.split("=", 1) for pair in os.environ.get("FLSTACK_E2E_HOSTS", "").split(",") if "=" in pair)
_BIND = os.environ.get("FLSTACK_E2E_BIND")
_WILDCARDS = {"", "0", "0.0.0.0", "::"}

if _HOSTS:
    _getaddrinfo = socket.getaddrinfo

    def _mapped_getaddrinfo(host, *args, **kwargs):
        name = host.decode() if isinstance(host, bytes) else host
        return _getaddrinfo(_HOSTS.get(name, host), *args, **kwargs)

    socket.getaddrinfo = _mapped_getaddrinfo

if _BIND:
    _bind = socket.socket.bind

    def _loopback_bind(self, address):
        if isinstance(address, tuple) and address[0] in _WILDCARDS:
            loopback = "::1" if self.family == socket.AF_INET6 else _BIND
            address = (loopback, *address[1:])
        return _bind(self, address)

    socket.socket.bind = _loopback_bind  # type: ignore[method-assign]
