"""Transport endpoints (TCP, Unix socket) and how an EPMD entry advertises them, without I/O.

A node may listen on several endpoints. Its EPMD registration advertises each one as an entry
(the ALIVE2 / PORT2_RESP layout, see :mod:`pynode.protocol.epmd_ext`) whose ``Protocol`` byte
says which transport it is and whose ``Extra`` bytes say where it is:

=========  ====================  =====================  ========================================
Protocol   Transport             Port                   Extra
=========  ====================  =====================  ========================================
0          TCP (IPv4 or IPv6)    the listening port     empty: dial the host part of the node
                                                        name (what erl does); else the UTF-8
                                                        address to dial instead (e.g. ``::1``)
1          Unix stream socket    1, 2, ... (the unix    the socket path (file-system encoding);
                                 listener's number:     only meaningful on the node's own host
                                 EPMD keys a node's
                                 transports by
                                 (protocol, port))
=========  ====================  =====================  ========================================

Protocol 0 is epmd's own "tcp/ip" value (erl registers 0 for inet_tcp and inet6_tcp alike);
2 is left for TLS; an entry with any other number is skipped by a dialler that does not know
it. The primary registration (ALIVE2) is the node's first TCP endpoint, so erl and a plain
epmd see an ordinary node; the others go out as ADD_TRANSPORT_REQ, which only pynode's EPMD
answers.

Endpoint syntax (``Node(listen=[...])``, ``connect(address=...)``): ``tcp://host:port``,
``tcp://[::1]:port``, ``tcp://:port`` (every interface), bare ``host:port``, and
``unix:/path/to/socket`` (or ``unix:///path``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

from .epmd import NodeEntry

__all__ = [
    "PROTO_TCP",
    "PROTO_UNIX",
    "MAX_UNIX_PATH",
    "TcpEndpoint",
    "UnixEndpoint",
    "Endpoint",
    "Route",
    "parse_endpoint",
    "advertisement",
    "entry_route",
]

PROTO_TCP: Final = 0
PROTO_UNIX: Final = 1
#: sun_path holds 108 bytes on Linux, including the terminating NUL.
MAX_UNIX_PATH: Final = 107


@dataclass(frozen=True, slots=True)
class TcpEndpoint:
    """TCP on ``host`` (None: every interface when listening) and ``port`` (0: any)."""

    host: str | None = None
    port: int = 0

    def __str__(self) -> str:
        host = self.host or ""
        return f"tcp://[{host}]:{self.port}" if ":" in host else f"tcp://{host}:{self.port}"


@dataclass(frozen=True, slots=True)
class UnixEndpoint:
    """A Unix stream socket at ``path`` (this host only)."""

    path: str

    def __post_init__(self) -> None:
        raw = os.fsencode(self.path)
        if not raw or b"\0" in raw:
            raise ValueError(f"bad Unix socket path {self.path!r}")
        if len(raw) > MAX_UNIX_PATH:
            raise ValueError(f"Unix socket path longer than {MAX_UNIX_PATH} bytes: {self.path!r}")

    def __str__(self) -> str:
        return f"unix:{self.path}"


Endpoint = TcpEndpoint | UnixEndpoint


@dataclass(frozen=True, slots=True)
class Route:
    """Where to dial a peer, and the handshake version its entry announced."""

    endpoint: Endpoint
    version: int = 6


def parse_endpoint(spec: str | Endpoint) -> Endpoint:
    """``tcp://host:port``, ``host:port``, ``unix:/path`` -> an endpoint (ValueError if bad)."""
    if isinstance(spec, (TcpEndpoint, UnixEndpoint)):
        return spec
    if not isinstance(spec, str):
        raise ValueError(f"an endpoint is a string or an Endpoint, not {spec!r}")
    if spec.startswith("unix:"):
        path = spec[5:]
        if path.startswith("//"):
            path = path[2:]
        return UnixEndpoint(path)
    rest = spec[6:] if spec.startswith("tcp://") else spec
    host, sep, port_text = rest.rpartition(":")
    if not sep:
        raise ValueError(f"bad endpoint {spec!r}: expected tcp://host:port or unix:/path")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"bad port in endpoint {spec!r}") from None
    if not 0 <= port <= 0xFFFF:
        raise ValueError(f"port out of range in endpoint {spec!r}")
    return TcpEndpoint(host or None, port)


def advertisement(endpoint: Endpoint, index: int = 1, *, default_host: bool = True) -> tuple[int, int, bytes]:
    """(protocol, port, extra) of a bound endpoint's EPMD entry.

    ``index`` numbers the node's Unix listeners (1, 2, ...); ``default_host`` says the TCP
    endpoint is reached through the host part of the node name, so no address goes in extra.
    """
    if isinstance(endpoint, UnixEndpoint):
        return PROTO_UNIX, index, os.fsencode(endpoint.path)
    extra = b"" if default_host or not endpoint.host else endpoint.host.encode("utf-8")
    return PROTO_TCP, endpoint.port, extra


def entry_route(entry: NodeEntry, peer_host: str) -> Route | None:
    """Where an advertised entry says to dial (None for a protocol we do not know or bad
    extra bytes: the caller skips it)."""
    version = 6 if entry.highest >= 6 else 5
    try:
        if entry.protocol == PROTO_TCP:
            host = entry.extra.decode("utf-8") if entry.extra else peer_host
            return Route(TcpEndpoint(host, entry.port), version)
        if entry.protocol == PROTO_UNIX:
            return Route(UnixEndpoint(os.fsdecode(entry.extra)), version)
    except (UnicodeDecodeError, ValueError):
        return None
    return None
