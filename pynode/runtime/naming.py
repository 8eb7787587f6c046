"""Node names and the EPMD port, completed the way erl does it (-sname/-name, ERL_EPMD_PORT);
shared by the anyio Node and the blocking one-shot client."""

from __future__ import annotations

import os

from ..protocol.epmd import DEFAULT_EPMD_PORT
from .errors import EpmdError, NodeError

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["EPMD_TIMEOUT", "default_epmd_port", "host_name", "make_node_name"]

EPMD_TIMEOUT = 10.0
"""How long one exchange with EPMD may take."""


def host_name(longnames: bool) -> str:
    """This host as erl names it: the full name (or 127.0.0.1) for -name, the short one for -sname."""
    try:
        import _socket as socket  # what socket.gethostname/gethostbyaddr are; imports faster
    except ImportError:  # pragma: no cover
        import socket  # type: ignore[no-redef]

    if longnames:
        fqdn = _getfqdn(socket)
        return fqdn if "." in fqdn else "127.0.0.1"
    return socket.gethostname().split(".")[0]


def _getfqdn(socket: Any) -> str:
    """socket.getfqdn(), asking with the host name as bytes: as a str it would go through the
    idna codec, whose import costs milliseconds of the command line's start."""
    name = socket.gethostname()
    try:
        hostname, aliases, _ = socket.gethostbyaddr(name.encode() if name.isascii() else name)
    except OSError:
        return name
    for candidate in (hostname, *aliases):
        if "." in candidate:
            return candidate
    return hostname


def make_node_name(name: str | None, *, longnames: bool | None = None, host: str | None = None) -> str:
    """Complete ``name`` with a host as erl -sname / -name would."""
    if name is None:
        import secrets

        name = f"pynode_{secrets.token_hex(4)}"
    if "@" in name:
        alive, _, h = name.partition("@")
        if not alive or not h:
            raise NodeError(f"bad node name {name!r}: expected name@host")
        return name
    if host is None:
        host = host_name(bool(longnames))
    return f"{name}@{host}"


def default_epmd_port() -> int:
    """ERL_EPMD_PORT if set, else 4369, as erl does."""
    value = os.environ.get("ERL_EPMD_PORT")
    if value:
        try:
            return int(value)
        except ValueError:
            raise EpmdError(f"ERL_EPMD_PORT is not a port number: {value!r}") from None
    return DEFAULT_EPMD_PORT
