"""Certificates for TLS distribution tests (good, from another CA, expired, for another host)
and the erl arguments that use them."""

from __future__ import annotations

import datetime
import glob
import os
from dataclasses import dataclass
from pathlib import Path

from pynode.certs import cert_pem, erl_optfile, key_pem, make_ca, make_node_cert
from pynode.runtime.tls import TlsConfig

from .otp import Otp

_SSL_APPS = ("ssl", "public_key", "asn1")


def ssl_code_path(otp: Otp) -> list[str]:
    """``-pa`` arguments for an OTP without the ssl application: the OTP 28 runtime we test
    has none, so it loads Debian OTP 25's ssl, public_key and asn1 (crypto is its own)."""
    root = os.path.dirname(os.path.dirname(os.path.realpath(otp.erl)))
    if glob.glob(os.path.join(root, "lib", "ssl-*")) or glob.glob(os.path.join(root, "lib", "erlang", "lib", "ssl-*")):
        return []
    args: list[str] = []
    for app in _SSL_APPS:
        found = sorted(glob.glob(f"/usr/lib/erlang/lib/{app}-*/ebin"))
        if not found:
            raise RuntimeError(f"no {app} application to lend to {otp.name} (apt-get install erlang-nox)")
        args += ["-pa", found[-1]]
    return args


def erl_tls_args(otp: Otp, optfile: Path | str) -> list[str]:
    return [*ssl_code_path(otp), "-proto_dist", "inet_tls", "-ssl_dist_optfile", str(optfile)]


@dataclass
class Pki:
    """Files under ``root``: ``<name>.pem``/``<name>.key`` per certificate, ``ca.pem`` (the
    CA every good node trusts) and ``rogue_ca.pem`` (another CA)."""

    root: Path

    @property
    def ca(self) -> Path:
        return self.root / "ca.pem"

    def cert(self, name: str) -> Path:
        return self.root / f"{name}.pem"

    def key(self, name: str) -> Path:
        return self.root / f"{name}.key"

    def config(self, name: str | None, **kw: object) -> TlsConfig:
        """pynode's TLS setting with certificate ``name`` (None: no certificate)."""
        if name is None:
            return TlsConfig(certfile=None, cafile=str(self.ca), **kw)  # type: ignore[arg-type]
        return TlsConfig(certfile=str(self.cert(name)), keyfile=str(self.key(name)), cafile=str(self.ca), **kw)  # type: ignore[arg-type]

    def optfile(self, server: str, client: str | None = "", *, tag: str = "") -> Path:
        """An erl optfile: server certificate ``server``, client certificate ``client``
        (the server's by default; None: the client presents none), both trusting ``ca.pem``."""
        text = erl_optfile(str(self.cert(server)), str(self.key(server)), str(self.ca))
        client = server if client == "" else client
        if client != server:
            head, _, _ = text.partition(" {client, [")
            if client is None:
                tail = f' {{client, [{{cacertfile, "{self.ca}"}}, {{verify, verify_peer}}]}}].\n'
            else:
                other = erl_optfile(str(self.cert(client)), str(self.key(client)), str(self.ca))
                tail = " {client, [" + other.partition(" {client, [")[2]
            text = head + tail
        path = self.root / f"{server}-{client}{tag}.conf"
        path.write_text(text)
        return path


def make_pki(root: Path, host: str = "127.0.0.1") -> Pki:
    """good (``node@host``), rogue (another CA), expired, otherhost (a name for another
    host), all keyed EC P-256."""
    root.mkdir(parents=True, exist_ok=True)
    ca_key, ca = make_ca(days=2)
    rogue_key, rogue = make_ca(days=2, name="rogue CA")
    (root / "ca.pem").write_bytes(cert_pem(ca))
    (root / "rogue_ca.pem").write_bytes(cert_pem(rogue))
    now = datetime.datetime.now(datetime.timezone.utc)
    made = {
        "good": make_node_cert(ca_key, ca, f"node@{host}", days=2),
        "rogue": make_node_cert(rogue_key, rogue, f"node@{host}", days=2),
        "expired": make_node_cert(
            ca_key, ca, f"node@{host}",
            not_before=now - datetime.timedelta(days=3), not_after=now - datetime.timedelta(days=1),
        ),
        "otherhost": make_node_cert(ca_key, ca, "node@otherhost.invalid", days=2),
    }
    for name, (key, cert) in made.items():
        (root / f"{name}.pem").write_bytes(cert_pem(cert))
        (root / f"{name}.key").write_bytes(key_pem(key))
    return Pki(root)
