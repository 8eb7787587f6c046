"""TLS for distribution: ``ssl.SSLContext``s for listening and dialling, built from the files
erl's ``-ssl_dist_optfile`` names (or from that very file).

Defaults mirror ``erl -proto_dist inet_tls`` with ``verify_peer`` and
``fail_if_no_peer_cert``: both sides present a certificate signed by the CA, and both verify
the other's chain and dates. The dialling side also checks the server's certificate against
the host part of the node name (inet_tls_dist passes that host as ``server_name_indication``,
which makes OTP's ssl check it); the listening side checks no host name of its clients, as
inet_tls_dist does unless its ``verify_fun`` is set to ``inet_tls_dist:verify_client/3``.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from typing import Any, NamedTuple

__all__ = ["SSLError", "TlsConfig", "TlsConfigError", "TlsSides", "contexts", "read_optfile", "tls_reason"]

SSLError = ssl.SSLError


class TlsConfigError(ValueError):
    """A TLS setting that cannot work: a missing or unreadable file, a bad key, a bad optfile."""


def _readable(what: str, path: str) -> str:
    path = os.path.expanduser(path)
    if not os.path.isfile(path):
        raise TlsConfigError(f"TLS {what} {path!r} does not exist (or is not a file)")
    if not os.access(path, os.R_OK):
        raise TlsConfigError(f"TLS {what} {path!r} is not readable")
    return path


@dataclass(frozen=True)
class TlsConfig:
    """Certificate, key and CA of a node. ``keyfile`` may be None when the key is in
    ``certfile``; ``certfile`` may be None on a dialling-only side (erl's client options may
    lack it too; a server that requires client certificates will refuse it);
    ``verify=False`` turns every check off (erl's ``verify_none``; for tests only);
    ``check_hostname=False`` stops the client's check of the server's host name.
    ``tls13=False`` keeps to TLS 1.2, as inet_tls_dist does unless its ``versions`` option
    says otherwise (dist_defaults); it also makes a refused certificate fail the handshake
    itself, where TLS 1.3 tells the client only after it has finished."""

    certfile: str | None
    keyfile: str | None = None
    cafile: str | None = None
    verify: bool = True
    check_hostname: bool = True
    password: str | None = None
    tls13: bool = False

    def __post_init__(self) -> None:
        if self.verify and self.cafile is None:
            raise TlsConfigError("TLS verification needs a CA file (cacertfile)")

    def _context(self, purpose: ssl.Purpose) -> ssl.SSLContext:
        server = purpose is ssl.Purpose.CLIENT_AUTH
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER if server else ssl.PROTOCOL_TLS_CLIENT)
        # TLS 1.2 is what inet_tls_dist offers by default (dist_defaults); 1.3 where both can
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if not self.tls13:
            ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        if self.certfile is not None:
            certfile = _readable("certificate file", self.certfile)
            keyfile = _readable("key file", self.keyfile) if self.keyfile else None
            try:
                ctx.load_cert_chain(certfile, keyfile, password=self.password)
            except ssl.SSLError as e:
                raise TlsConfigError(
                    f"cannot use certificate {certfile!r} with key {keyfile or certfile!r}: {e.reason or e}"
                ) from None
        elif server:
            raise TlsConfigError("a TLS node that accepts connections needs a certificate (certfile)")
        if self.cafile is not None:
            cafile = _readable("CA file", self.cafile)
            try:
                ctx.load_verify_locations(cafile=cafile)
            except ssl.SSLError as e:
                raise TlsConfigError(f"cannot read CA certificates from {cafile!r}: {e.reason or e}") from None
        if not self.verify:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif server:
            ctx.verify_mode = ssl.CERT_REQUIRED  # verify_peer + fail_if_no_peer_cert
        else:
            ctx.check_hostname = self.check_hostname
            ctx.verify_mode = ssl.CERT_REQUIRED
        return ctx

    def server_context(self) -> ssl.SSLContext:
        """For accepting connections (raises TlsConfigError)."""
        return self._context(ssl.Purpose.CLIENT_AUTH)

    def client_context(self) -> ssl.SSLContext:
        """For dialling (raises TlsConfigError)."""
        return self._context(ssl.Purpose.SERVER_AUTH)



class TlsSides(NamedTuple):
    """Separate settings for accepting (``server``) and dialling (``client``), as an erl
    optfile has them."""

    server: TlsConfig
    client: TlsConfig


def contexts(tls: TlsConfig | TlsSides) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server context, client context) of a node's TLS setting (raises TlsConfigError)."""
    server, client = (tls.server, tls.client) if isinstance(tls, TlsSides) else (tls, tls)
    return server.server_context(), client.client_context()


_TLS_REASONS = {
    # OpenSSL's reason codes, in words that say whose certificate is the problem
    "PEER_DID_NOT_RETURN_A_CERTIFICATE": "the peer presented no certificate",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED": "the peer requires a certificate and we presented none",
    "SSLV3_ALERT_HANDSHAKE_FAILURE": "the peer refused the handshake (did we present a certificate?)",
    "TLSV1_ALERT_UNKNOWN_CA": "the peer refused our certificate: signed by a CA it does not trust",
    "SSLV3_ALERT_CERTIFICATE_EXPIRED": "the peer refused our certificate: expired",
    "SSLV3_ALERT_BAD_CERTIFICATE": "the peer refused our certificate",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE": "the peer refused our certificate (unsupported)",
    "SSLV3_ALERT_CERTIFICATE_REVOKED": "the peer refused our certificate: revoked",
    "WRONG_VERSION_NUMBER": "the peer does not speak TLS",
    # Python's TLS servers (asyncio, anyio) close without sending their alert
    "UNEXPECTED_EOF_WHILE_READING": "the peer closed the connection in the TLS handshake (did it refuse our certificate?)",
}


def tls_reason(e: BaseException) -> str:
    """Why a TLS handshake failed, in words (the first SSL error under anyio's wrappers)."""
    if isinstance(e, TimeoutError) or (isinstance(e, ConnectionAbortedError) and "longer" in str(e)):
        return "no TLS handshake in time"  # (asyncio: "SSL handshake is taking longer than")
    seen: BaseException | None = e
    for _ in range(5):  # a short chain
        if seen is None:
            break
        if isinstance(seen, (ssl.SSLWantReadError, ssl.SSLWantWriteError)):
            seen = seen.__cause__ or seen.__context__
            continue
        if isinstance(seen, ssl.SSLCertVerificationError):
            return f"the peer's certificate failed verification: {seen.verify_message} ({seen.reason})"
        if isinstance(seen, ssl.SSLError):
            code = seen.reason or ""
            words = _TLS_REASONS.get(code)
            return f"{words} ({code})" if words else str(code or seen)
        seen = seen.__cause__ or seen.__context__
    if isinstance(e, (ConnectionResetError, EOFError)) or type(e).__name__ == "EndOfStream":
        return _TLS_REASONS["UNEXPECTED_EOF_WHILE_READING"]
    return str(e) or type(e).__name__


_VERSIONS = ("tlsv1.3", "tlsv1.2", "tlsv1.1", "tlsv1")
_VERIFY = {"verify_peer": True, "verify_none": False}


def _text(value: Any, key: str, path: str) -> str:
    if isinstance(value, list) and all(isinstance(c, int) for c in value):
        return "".join(map(chr, value))
    if isinstance(value, (bytes, str)):
        return value.decode() if isinstance(value, bytes) else str(value)
    raise TlsConfigError(f"{path}: {key} must be a string, not {value!r}")


def _side(options: Any, side: str, path: str) -> TlsConfig:
    if not isinstance(options, list):
        raise TlsConfigError(f"{path}: the {side} options must be a list")
    found: dict[str, Any] = {}
    for opt in options:
        if not (isinstance(opt, tuple) and len(opt) == 2 and isinstance(opt[0], str)):
            raise TlsConfigError(f"{path}: {side} option {opt!r} is not a {{Key, Value}} pair")
        found.setdefault(str(opt[0]), opt[1])  # proplists: the first one counts
    if "certfile" not in found and side == "server":
        raise TlsConfigError(f"{path}: the server options have no certfile")
    verify = found.get("verify", "verify_none")  # OTP ssl's default is verify_none
    if verify not in _VERIFY:
        raise TlsConfigError(f"{path}: {side} verify must be verify_peer or verify_none, not {verify!r}")
    if side == "server" and _VERIFY[verify] and found.get("fail_if_no_peer_cert") is not True:
        # Python's server side either requires a client certificate or does not verify at
        # all; refuse a setting we cannot honour rather than weaken it silently
        raise TlsConfigError(f"{path}: server verify_peer needs {{fail_if_no_peer_cert, true}} with pynode")
    versions = found.get("versions", ["tlsv1.2"])
    if not (isinstance(versions, list) and versions and all(v in _VERSIONS for v in versions)):
        raise TlsConfigError(f"{path}: {side} versions must be a list of {', '.join(_VERSIONS)}")
    if "tlsv1.2" not in versions and "tlsv1.3" not in versions:
        raise TlsConfigError(f"{path}: pynode speaks TLS 1.2 and 1.3 only, not {versions!r}")
    return TlsConfig(
        tls13="tlsv1.3" in versions,
        certfile=_text(found["certfile"], "certfile", path) if "certfile" in found else None,
        keyfile=_text(found["keyfile"], "keyfile", path) if "keyfile" in found else None,
        cafile=_text(found["cacertfile"], "cacertfile", path) if "cacertfile" in found else None,
        verify=_VERIFY[verify],
        password=_text(found["password"], "password", path) if "password" in found else None,
    )


def read_optfile(path: str) -> TlsSides:
    """Read erl's ``-ssl_dist_optfile`` (``[{server, Opts}, {client, Opts}].``): both sides as
    TlsConfig. ``versions`` decides TLS 1.3 (inet_tls_dist's default is 1.2 only); options
    pynode does not use (ciphers, depth, ...) are ignored."""
    from ..term.syntax import TermSyntaxError, parse_term

    path = _readable("options file", path)
    try:
        with open(path, encoding="utf-8") as f:
            term = parse_term(f.read())
    except (TermSyntaxError, UnicodeDecodeError) as e:
        raise TlsConfigError(f"{path}: not an Erlang term: {e}") from None
    if not isinstance(term, list):
        raise TlsConfigError(f"{path}: expected [{{server, Opts}}, {{client, Opts}}]")
    sides: dict[str, Any] = {}
    for item in term:
        if isinstance(item, tuple) and len(item) == 2 and item[0] in ("server", "client"):
            sides[str(item[0])] = item[1]
    missing = [s for s in ("server", "client") if s not in sides]
    if missing:
        raise TlsConfigError(f"{path}: no {' and no '.join(missing)} options")
    return TlsSides(_side(sides["server"], "server", path), _side(sides["client"], "client", path))


def from_options(
    optfile: str | None = None,
    certfile: str | None = None,
    keyfile: str | None = None,
    cafile: str | None = None,
) -> TlsSides | None:
    """The TLS setting of command-line options: erl's optfile, or certificate/key/CA files
    (the same for both sides); None when none is given. Raises TlsConfigError."""
    if optfile is not None:
        if certfile or keyfile or cafile:
            raise TlsConfigError("give either an ssl_dist optfile or certificate files, not both")
        return read_optfile(optfile)
    if certfile is None and keyfile is None and cafile is None:
        return None
    if certfile is None or cafile is None:
        raise TlsConfigError("TLS needs a certificate and a CA file (--tls-cert and --tls-ca)")
    config = TlsConfig(certfile=certfile, keyfile=keyfile, cafile=cafile)
    return TlsSides(config, config)
