"""Certificates with pulumi-tls: generated once, kept in state, stable across updates."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

import pulumi
import pulumi_tls as tls

CA_VALIDITY_HOURS = 10 * 365 * 24
LEAF_VALIDITY_HOURS = 365 * 24
# `pulumi up` within 30 days of expiry re-issues the certificate (same CA, so clients keep trusting it).
EARLY_RENEWAL_HOURS = 30 * 24


class CertificateAuthority:
    def __init__(self, name: str, common_name: str, opts: pulumi.ResourceOptions) -> None:
        self.opts = opts
        self.name = name
        self.key = tls.PrivateKey(f"{name}-ca-key", algorithm="ECDSA", ecdsa_curve="P384", opts=opts)
        self.cert = tls.SelfSignedCert(
            f"{name}-ca",
            private_key_pem=self.key.private_key_pem,
            is_ca_certificate=True,
            set_subject_key_id=True,
            validity_period_hours=CA_VALIDITY_HOURS,
            allowed_uses=["cert_signing", "crl_signing", "digital_signature"],
            subject={"common_name": common_name, "organization": "flstack"},
            opts=opts,
        )

    def server_certificate(
        self, name: str, common_name: str, hosts: Sequence[str], client_auth: bool = False
    ) -> ServerCertificate:
        return ServerCertificate(self, name, common_name, hosts, client_auth)


class ServerCertificate:
    """A key and a certificate signed by `ca`, valid for every name and IP in `hosts` (the SANs).

    `client_auth`: the same certificate also identifies its holder as a client (mutual TLS between peers).
    """

    def __init__(
        self, ca: CertificateAuthority, name: str, common_name: str, hosts: Sequence[str], client_auth: bool = False
    ) -> None:
        ips = [h for h in hosts if is_ip(h)]
        dns = [h for h in hosts if not is_ip(h)]
        self.key = tls.PrivateKey(f"{name}-key", algorithm="ECDSA", ecdsa_curve="P384", opts=ca.opts)
        request = tls.CertRequest(
            f"{name}-csr",
            private_key_pem=self.key.private_key_pem,
            subject={"common_name": common_name, "organization": "flstack"},
            dns_names=dns,
            ip_addresses=ips,
            opts=ca.opts,
        )
        self.cert = tls.LocallySignedCert(
            f"{name}-cert",
            cert_request_pem=request.cert_request_pem,
            ca_private_key_pem=ca.key.private_key_pem,
            ca_cert_pem=ca.cert.cert_pem,
            validity_period_hours=LEAF_VALIDITY_HOURS,
            early_renewal_hours=EARLY_RENEWAL_HOURS,
            allowed_uses=[
                "digital_signature",
                "key_encipherment",
                "server_auth",
                *(["client_auth"] if client_auth else []),
            ],
            opts=ca.opts,
        )


def is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
