"""Async clients of pynode's EPMD extension requests (see :mod:`pynode.epmd.ext`).

Standard requests (register, port_please, names) live in :mod:`pynode.runtime.epmd`.
Against a real epmd these raise :class:`ExtensionUnsupported` (it closes without replying).
"""

from __future__ import annotations

from dataclasses import dataclass

import anyio
from anyio.abc import SocketStream

from ..protocol._common import NeedData
from ..protocol.epmd import NodeEntry, NodeType
from ..protocol.errors import EpmdProtocolError
from ..runtime.epmd import EPMD_TIMEOUT, EpmdError, default_epmd_port
from .ext import (
    AddTransportRequest,
    ExtClient,
    ExtensionUnsupported,
    ExtReply,
    ExtRequest,
    NodesResponse,
    PrefixRequest,
    ResultResponse,
    TransportsRequest,
)
from .registry import ADD_DUPLICATE, ADD_NOT_REGISTERED

__all__ = [
    "ExtensionUnsupported",
    "TransportRegistration",
    "lookup_prefix",
    "transports",
    "add_transport",
]


async def _reply(stream: SocketStream, client: ExtClient) -> ExtReply:
    await stream.send(client.data_to_send())
    while True:
        ev = client.next_event()
        if ev is not None and not isinstance(ev, NeedData):
            return ev
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        if data:
            client.receive_data(data)
        else:
            client.receive_eof()


async def _exchange(host: str, port: int, request: ExtRequest, timeout: float) -> ExtReply:
    try:
        with anyio.fail_after(timeout):
            async with await anyio.connect_tcp(host, port) as stream:
                return await _reply(stream, ExtClient(request))
    except ExtensionUnsupported:
        raise
    except TimeoutError:
        raise EpmdError(f"EPMD at {host}:{port} did not answer within {timeout} s") from None
    except OSError as e:
        raise EpmdError(f"cannot reach EPMD at {host}:{port}: {e}") from None
    except EpmdProtocolError as e:
        raise EpmdError(f"bad reply from EPMD at {host}:{port}: {e}") from None


async def lookup_prefix(
    prefix: str, host: str = "127.0.0.1", port: int | None = None, *, timeout: float = EPMD_TIMEOUT
) -> list[NodeEntry]:
    """PREFIX_REQ: registered nodes whose name starts with ``prefix``, sorted by name."""
    reply = await _exchange(host, port or default_epmd_port(), PrefixRequest(prefix), timeout)
    if not isinstance(reply, NodesResponse):
        raise EpmdError(f"unexpected reply to PREFIX_REQ: {reply!r}")
    return list(reply.entries)


async def transports(
    name: str, host: str = "127.0.0.1", port: int | None = None, *, timeout: float = EPMD_TIMEOUT
) -> list[NodeEntry]:
    """TRANSPORTS_REQ: the primary registration of ``name`` then its extra transports."""
    reply = await _exchange(host, port or default_epmd_port(), TransportsRequest(name), timeout)
    if not isinstance(reply, NodesResponse):
        raise EpmdError(f"unexpected reply to TRANSPORTS_REQ: {reply!r}")
    return list(reply.entries)


@dataclass
class TransportRegistration:
    """A live extra transport; EPMD drops it when ``stream`` closes."""

    entry: NodeEntry
    stream: SocketStream

    async def aclose(self) -> None:
        await self.stream.aclose()


async def add_transport(
    name: str,
    listen_port: int,
    protocol: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    node_type: int = NodeType.NORMAL,
    highest: int = 6,
    lowest: int = 5,
    extra: bytes = b"",
    timeout: float = EPMD_TIMEOUT,
) -> TransportRegistration:
    """ADD_TRANSPORT_REQ: attach (protocol, listen_port) to the registered node ``name``.

    Keep the returned registration open as long as the transport is served.
    """
    epmd_port = port or default_epmd_port()
    req = AddTransportRequest(name, listen_port, protocol, node_type, highest, lowest, extra)
    try:
        with anyio.fail_after(timeout):
            stream = await anyio.connect_tcp(host, epmd_port)
            try:
                reply = await _reply(stream, ExtClient(req))
            except BaseException:
                await stream.aclose()
                raise
    except ExtensionUnsupported:
        raise
    except TimeoutError:
        raise EpmdError(f"EPMD at {host}:{epmd_port} did not answer within {timeout} s") from None
    except OSError as e:
        raise EpmdError(f"cannot reach EPMD at {host}:{epmd_port}: {e}") from None
    except EpmdProtocolError as e:
        raise EpmdError(f"bad reply from EPMD at {host}:{epmd_port}: {e}") from None
    if not isinstance(reply, ResultResponse) or not reply.ok:
        await stream.aclose()
        why = {
            ADD_NOT_REGISTERED: f"{name!r} is not registered",
            ADD_DUPLICATE: f"{name!r} already has protocol {protocol} port {listen_port}",
        }.get(getattr(reply, "result", -1), f"unexpected reply {reply!r}")
        raise EpmdError(f"EPMD at {host}:{epmd_port} refused the transport: {why}")
    return TransportRegistration(req.entry(), stream)
