"""pulumi-tls, emulated with `cryptography`: real keys and certificates built from the program's inputs.

The offline render fills TLS outputs with placeholders. For the end-to-end tests we need certificates
that really work, made from exactly what the program asked for (curve, subject, SANs, CA flag, key
usages), so a missing SAN in the program makes the real federation fail.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from pulumi.runtime import mocks

from tools.mock_runtime import OfflineMocks, Synthesizer, plain

CURVES: dict[str, type[ec.EllipticCurve]] = {
    "P224": ec.SECP224R1,
    "P256": ec.SECP256R1,
    "P384": ec.SECP384R1,
    "P521": ec.SECP521R1,
}
PEM = serialization.Encoding.PEM


def _new_key(inputs: dict[str, Any]) -> Any:
    if inputs.get("algorithm", "RSA") == "ECDSA":
        curve = CURVES[inputs.get("ecdsaCurve", "P224")]
        return ec.generate_private_key(curve())
    return rsa.generate_private_key(public_exponent=65537, key_size=int(inputs.get("rsaBits", 2048)))


def _name(subject: dict[str, Any] | None) -> x509.Name:
    attrs = []
    if subject and subject.get("commonName"):
        attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, subject["commonName"]))
    if subject and subject.get("organization"):
        attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, subject["organization"]))
    return x509.Name(attrs)


def _load_key(pem: str) -> Any:
    return serialization.load_pem_private_key(pem.encode(), password=None)


def _usages(builder: x509.CertificateBuilder, uses: list[str], is_ca: bool) -> x509.CertificateBuilder:
    builder = builder.add_extension(x509.BasicConstraints(ca=is_ca, path_length=None), critical=True)
    builder = builder.add_extension(
        x509.KeyUsage(
            digital_signature="digital_signature" in uses,
            content_commitment=False,
            key_encipherment="key_encipherment" in uses,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign="cert_signing" in uses,
            crl_sign="crl_signing" in uses,
            encipher_only=False,
            decipher_only=False,
        ),
        critical=True,
    )
    ekus = [
        oid
        for use, oid in (
            ("server_auth", ExtendedKeyUsageOID.SERVER_AUTH),
            ("client_auth", ExtendedKeyUsageOID.CLIENT_AUTH),
        )
        if use in uses
    ]
    if ekus:
        builder = builder.add_extension(x509.ExtendedKeyUsage(ekus), critical=False)
    return builder


def _validity(builder: x509.CertificateBuilder, hours: float) -> x509.CertificateBuilder:
    now = dt.datetime.now(dt.UTC)
    return builder.not_valid_before(now - dt.timedelta(minutes=5)).not_valid_after(now + dt.timedelta(hours=hours))


def private_key(args: mocks.MockResourceArgs) -> dict[str, Any]:
    key = _new_key(plain(args.inputs, reveal=True))
    public = key.public_key()
    return {
        "privateKeyPem": key.private_bytes(
            PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode(),
        "privateKeyOpenssh": key.private_bytes(
            PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
        ).decode(),
        "publicKeyPem": public.public_bytes(PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode(),
        "publicKeyOpenssh": public.public_bytes(
            serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
        ).decode()
        + "\n",
    }


def self_signed_cert(args: mocks.MockResourceArgs) -> dict[str, Any]:
    i = plain(args.inputs, reveal=True)  # private keys arrive as secrets
    key = _load_key(i["privateKeyPem"])
    name = _name(i.get("subject"))
    builder = x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
    builder = _validity(builder.serial_number(x509.random_serial_number()), i["validityPeriodHours"])
    builder = _usages(builder, i.get("allowedUses", []), bool(i.get("isCaCertificate")))
    if i.get("setSubjectKeyId"):
        builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    return {"certPem": builder.sign(key, hashes.SHA256()).public_bytes(PEM).decode()}


def cert_request(args: mocks.MockResourceArgs) -> dict[str, Any]:
    i = plain(args.inputs, reveal=True)  # private keys arrive as secrets
    key = _load_key(i["privateKeyPem"])
    sans: list[x509.GeneralName] = [x509.DNSName(n) for n in i.get("dnsNames", [])]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in i.get("ipAddresses", [])]
    builder = x509.CertificateSigningRequestBuilder().subject_name(_name(i.get("subject")))
    if sans:
        builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
    return {"certRequestPem": builder.sign(key, hashes.SHA256()).public_bytes(PEM).decode()}


def locally_signed_cert(args: mocks.MockResourceArgs) -> dict[str, Any]:
    i = plain(args.inputs, reveal=True)  # private keys arrive as secrets
    csr = x509.load_pem_x509_csr(i["certRequestPem"].encode())
    ca_cert = x509.load_pem_x509_certificate(i["caCertPem"].encode())
    ca_key = _load_key(i["caPrivateKeyPem"])
    builder = x509.CertificateBuilder().subject_name(csr.subject).issuer_name(ca_cert.subject)
    builder = _validity(
        builder.public_key(csr.public_key()).serial_number(x509.random_serial_number()), i["validityPeriodHours"]
    )
    builder = _usages(builder, i.get("allowedUses", []), bool(i.get("isCaCertificate")))
    for ext in csr.extensions:
        builder = builder.add_extension(ext.value, critical=ext.critical)
    return {"certPem": builder.sign(ca_key, hashes.SHA256()).public_bytes(PEM).decode()}


def _kept(synthesize: Synthesizer, state: dict[str, dict[str, Any]]) -> Synthesizer:
    """As Pulumi's state keeps a resource: the same name and inputs give the outputs of the last run."""

    def keep(args: mocks.MockResourceArgs) -> dict[str, Any]:
        key = f"{args.typ}::{args.name}::{json.dumps(plain(args.inputs, reveal=True), sort_keys=True)}"
        if key not in state:
            state[key] = synthesize(args)
        return state[key]

    return keep


def mocks_with_real_tls(state: dict[str, dict[str, Any]] | None = None) -> OfflineMocks:
    """`state`: one stack's certificates across its renders (its `pulumi up`s): kept, not made anew."""
    synthesizers: dict[str, Synthesizer] = {
        "tls:index/privateKey:PrivateKey": private_key,
        "tls:index/selfSignedCert:SelfSignedCert": self_signed_cert,
        "tls:index/certRequest:CertRequest": cert_request,
        "tls:index/locallySignedCert:LocallySignedCert": locally_signed_cert,
    }
    if state is not None:
        synthesizers = {typ: _kept(synthesize, state) for typ, synthesize in synthesizers.items()}
    return OfflineMocks(synthesizers=synthesizers)
