"""EPMD advertisement of every listener of a node: ALIVE2 for the primary, ADD_TRANSPORT_REQ
for the others (only pynode's EPMD answers it; with a plain epmd only the primary is
registered, and plain TCP keeps working). Encoding: :mod:`pynode.protocol.transports`."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from ..protocol.epmd import NodeType
from ..protocol.epmd_ext import ExtensionUnsupported
from ..protocol.transports import TcpEndpoint, UnixEndpoint, advertisement
from . import epmd as epmd_client
from .listeners import Listening

log = logging.getLogger("pynode.epmd")

__all__ = ["primary_index", "entries", "register_primary", "add_extras"]


def primary_index(listeners: Sequence[Listening]) -> int:
    """The listener ALIVE2 registers: the first TCP one (what erl and a plain epmd can use)."""
    for i, lst in enumerate(listeners):
        if isinstance(lst.endpoint, TcpEndpoint):
            return i
    return 0


def entries(listeners: Sequence[Listening]) -> list[tuple[int, int, bytes]]:
    """(protocol, port, extra) per listener, in listener order."""
    primary = primary_index(listeners)
    out = []
    unix = 0
    for i, lst in enumerate(listeners):
        ep = lst.endpoint
        if isinstance(ep, UnixEndpoint):
            unix += 1
            out.append(advertisement(ep, unix))
        else:  # the primary, and a wildcard listener, are reached at the name's host part
            out.append(advertisement(ep, default_host=i == primary or not ep.host))
    return out


async def register_primary(
    alive: str, listeners: Sequence[Listening], *, host: str, port: int | None, hidden: bool
) -> epmd_client.Registration:
    protocol, lport, extra = entries(listeners)[primary_index(listeners)]
    return await epmd_client.register(
        alive, lport, host=host, port=port, hidden=hidden, protocol=protocol, extra=extra
    )


async def add_extras(
    alive: str, listeners: Sequence[Listening], *, host: str, port: int | None, hidden: bool
) -> list[epmd_client.TransportRegistration]:
    """Advertise every listener but the primary; [] when EPMD lacks the extension. Keep the
    returned registrations open while the listeners serve (closing one withdraws it)."""
    primary = primary_index(listeners)
    held: list[epmd_client.TransportRegistration] = []
    node_type = NodeType.HIDDEN if hidden else NodeType.NORMAL
    for i, (protocol, lport, extra) in enumerate(entries(listeners)):
        if i == primary:
            continue
        try:
            held.append(
                await epmd_client.add_transport(
                    alive, lport, protocol, host=host, port=port, node_type=node_type, extra=extra
                )
            )
        except ExtensionUnsupported:
            log.info(
                "EPMD at %s does not take extra transports: only %s is advertised",
                host,
                listeners[primary].endpoint,
            )
            for reg in held:
                await reg.aclose()
            return []
        except epmd_client.EpmdError as e:  # refused (a duplicate) or unreachable: the rest still go
            log.warning("could not advertise %s: %s", listeners[i].endpoint, e)
    return held
