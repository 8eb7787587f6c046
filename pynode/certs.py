"""A test certificate authority for TLS distribution: a CA, one certificate and key per node,
and an erl ``-ssl_dist_optfile`` for each node (the ``pynode certs`` command).

Keys are EC P-256 (OTP's ssl and OpenSSL both take them; they are quick to make). A node's
certificate names the node in its common name and the host part of the node name in its
subjectAltName (as an IP address when it is one, and as a DNS name in every case), because the
dialling side checks the server's certificate against that host (see pynode.runtime.tls).
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertSet", "NodeFiles", "make_ca", "make_node_cert", "write_certs", "erl_optfile"]

Key = ec.EllipticCurvePrivateKey


def _key() -> Key:
    return ec.generate_private_key(ec.SECP256R1())


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def make_ca(days: int = 365, name: str = "pynode test CA") -> tuple[Key, x509.Certificate]:
    """A self-signed CA that may sign node certificates only (path length 0)."""
    key = _key()
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = _now()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))  # clocks differ a little
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def make_node_cert(
    ca_key: Key,
    ca_cert: x509.Certificate,
    node: str,
    *,
    days: int = 365,
    not_before: datetime.datetime | None = None,
    not_after: datetime.datetime | None = None,
) -> tuple[Key, x509.Certificate]:
    """A certificate for ``node`` (name@host), good for both TLS server and client use.
    ``not_before``/``not_after`` override the validity (tests make expired ones)."""
    alive, _, host = node.partition("@")
    if not alive or not host:
        raise ValueError(f"bad node name {node!r}: expected name@host")
    key = _key()
    now = _now()
    alt: list[x509.GeneralName] = [x509.DNSName(host)]
    try:
        alt.insert(0, x509.IPAddress(ipaddress.ip_address(host)))
    except ValueError:
        pass
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - datetime.timedelta(minutes=5))
        .not_valid_after(not_after or now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
        .sign(ca_key, hashes.SHA256())
    )
    return key, cert


def cert_pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def key_pem(key: Key) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _write(path: Path, data: bytes, private: bool = False) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _erl_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def erl_optfile(certfile: str, keyfile: str, cafile: str) -> str:
    """The text of an erl ``-ssl_dist_optfile``: mutual verification on both sides."""
    opts = (
        f"{{certfile, {_erl_string(certfile)}}},\n"
        f"    {{keyfile, {_erl_string(keyfile)}}},\n"
        f"    {{cacertfile, {_erl_string(cafile)}}},\n"
        "    {verify, verify_peer},\n"
        "    {secure_renegotiate, true}"
    )
    return (
        "%% TLS distribution options for erl -proto_dist inet_tls -ssl_dist_optfile FILE\n"
        "%% (pynode reads this file too: pynode ... --ssl-dist-optfile FILE)\n"
        f"[{{server, [{opts},\n    {{fail_if_no_peer_cert, true}}]}},\n"
        f" {{client, [{opts}]}}].\n"
    )


@dataclass
class NodeFiles:
    node: str
    certfile: Path
    keyfile: Path
    optfile: Path


@dataclass
class CertSet:
    """What :func:`write_certs` wrote."""

    directory: Path
    cafile: Path
    cakeyfile: Path
    nodes: list[NodeFiles] = field(default_factory=list)


def _file_stem(node: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.@-]", "_", node)


def write_certs(directory: str | os.PathLike[str], nodes: list[str], days: int = 365) -> CertSet:
    """Make a CA and a certificate, key and erl optfile per node under ``directory``."""
    if days < 1:
        raise ValueError("days must be at least 1")
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = make_ca(days)
    out = CertSet(d, d / "ca.pem", d / "ca.key")
    _write(out.cafile, cert_pem(ca_cert))
    _write(out.cakeyfile, key_pem(ca_key), private=True)
    for node in nodes:
        key, cert = make_node_cert(ca_key, ca_cert, node, days=days)
        stem = _file_stem(node)
        files = NodeFiles(node, d / f"{stem}.pem", d / f"{stem}.key", d / f"{stem}.ssl_dist.conf")
        _write(files.certfile, cert_pem(cert))
        _write(files.keyfile, key_pem(key), private=True)
        _write(files.optfile, erl_optfile(str(files.certfile), str(files.keyfile), str(out.cafile)).encode())
        out.nodes.append(files)
    return out
