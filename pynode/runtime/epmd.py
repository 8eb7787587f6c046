"""EPMD client over anyio: look-ups, names, the long-lived registration, and the clients of
pynode's EPMD extension requests (prefix look-up, transports; see
:mod:`pynode.protocol.epmd_ext`), which a real epmd answers by closing
(:class:`ExtensionUnsupported`)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import overload

import anyio
from anyio.abc import SocketStream

from ..protocol._common import NeedData
from ..protocol.epmd import (
    Alive2Request,
    Alive2Response,
    Closed,
    EpmdClient,
    EpmdReply,
    EpmdRequest,
    NamesRequest,
    NodeEntry,
    NodeType,
    Port2Response,
    PortPlease2Request,
)
from ..protocol.epmd_ext import (
    ADD_DUPLICATE,
    ADD_NOT_REGISTERED,
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
from ..protocol.errors import EpmdProtocolError
from .errors import EpmdError as EpmdError  # importable from here as before
from .errors import epmd_failure
from .naming import EPMD_TIMEOUT as EPMD_TIMEOUT
from .naming import default_epmd_port as default_epmd_port

log = logging.getLogger("pynode.epmd")


@overload
async def _reply(stream: SocketStream, client: EpmdClient) -> EpmdReply: ...
@overload
async def _reply(stream: SocketStream, client: ExtClient) -> ExtReply: ...
async def _reply(stream: SocketStream, client: EpmdClient | ExtClient) -> EpmdReply | ExtReply:
    """Send the client's request and read until its reply is complete."""
    await stream.send(client.data_to_send())
    while True:
        ev = client.next_event()
        if ev is None or isinstance(ev, Closed):  # pragma: no cover - next_event raises first
            raise EpmdProtocolError("closed before replying")
        if not isinstance(ev, NeedData):
            return ev
        try:
            data = await stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = b""
        if data:
            client.receive_data(data)
        else:
            client.receive_eof()


@contextmanager
def _epmd_errors(host: str, port: int, timeout: float) -> Iterator[None]:
    """Every way talking to EPMD fails becomes one EpmdError that says where and why."""
    try:
        yield
    except ExtensionUnsupported:  # not pynode's EPMD: the caller decides what that means
        raise
    except (OSError, EpmdProtocolError) as e:  # TimeoutError is an OSError
        raise epmd_failure(e, host, port, timeout) from None


async def _exchange(
    host: str, port: int, request: EpmdRequest, timeout: float = EPMD_TIMEOUT
) -> EpmdReply:
    with _epmd_errors(host, port, timeout), anyio.fail_after(timeout):
        async with await anyio.connect_tcp(host, port) as stream:
            return await _reply(stream, EpmdClient(request, epmd_port=port))


async def port_please(name: str, host: str, port: int | None = None) -> NodeEntry | None:
    """The registration of ``name`` on ``host`` (None when EPMD does not know it)."""
    reply = await _exchange(host, port or default_epmd_port(), PortPlease2Request(name))
    assert isinstance(reply, Port2Response)
    return reply.node if reply.found else None


async def names(host: str = "127.0.0.1", port: int | None = None) -> list[tuple[str, int]]:
    """``net_adm:names/1``: the (name, port) pairs registered with EPMD on ``host``."""
    reply = await _exchange(host, port or default_epmd_port(), NamesRequest())
    return list(reply.nodes)  # type: ignore[union-attr]


@dataclass
class Registration:
    """A live ALIVE2 registration; EPMD forgets the name when ``stream`` closes."""

    creation: int
    stream: SocketStream


async def register(
    name: str,
    listen_port: int,
    *,
    host: str = "127.0.0.1",
    port: int | None = None,
    hidden: bool = False,
    timeout: float = EPMD_TIMEOUT,
    protocol: int = 0,
    extra: bytes = b"",
) -> Registration:
    """Send ALIVE2_REQ and keep the connection; raise EpmdError if the name is taken.

    ``protocol`` and ``extra`` describe the transport (see :mod:`pynode.protocol.transports`);
    the defaults are erl's (TCP, nothing extra)."""
    epmd_port = port or default_epmd_port()
    # OTP registers 77 even for hidden nodes; 72 marks a C node, which is what a hidden
    # pynode is to EPMD's clients (erl_call and ei treat both the same).
    node_type = NodeType.HIDDEN if hidden else NodeType.NORMAL
    req = Alive2Request(name, listen_port, node_type, protocol, extra=extra)
    with _epmd_errors(host, epmd_port, timeout), anyio.fail_after(timeout):
        stream = await anyio.connect_tcp(host, epmd_port)
        try:
            ev = await _reply(stream, EpmdClient(req, epmd_port=epmd_port))
        except BaseException:
            await stream.aclose()
            raise
    assert isinstance(ev, Alive2Response)
    if not ev.ok:
        await stream.aclose()
        raise EpmdError(f"EPMD at {host}:{epmd_port} refused the name {name!r} (already registered?)")
    return Registration(ev.creation, stream)


async def _ext_exchange(host: str, port: int, request: ExtRequest, timeout: float) -> ExtReply:
    with _epmd_errors(host, port, timeout), anyio.fail_after(timeout):
        async with await anyio.connect_tcp(host, port) as stream:
            return await _reply(stream, ExtClient(request))


async def lookup_prefix(
    prefix: str, host: str = "127.0.0.1", port: int | None = None, *, timeout: float = EPMD_TIMEOUT
) -> list[NodeEntry]:
    """PREFIX_REQ: registered nodes whose name starts with ``prefix``, sorted by name."""
    reply = await _ext_exchange(host, port or default_epmd_port(), PrefixRequest(prefix), timeout)
    if not isinstance(reply, NodesResponse):
        raise EpmdError(f"unexpected reply to PREFIX_REQ: {reply!r}")
    return list(reply.entries)


async def transports(
    name: str, host: str = "127.0.0.1", port: int | None = None, *, timeout: float = EPMD_TIMEOUT
) -> list[NodeEntry]:
    """TRANSPORTS_REQ: the primary registration of ``name`` then its extra transports."""
    reply = await _ext_exchange(host, port or default_epmd_port(), TransportsRequest(name), timeout)
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
    with _epmd_errors(host, epmd_port, timeout), anyio.fail_after(timeout):
        stream = await anyio.connect_tcp(host, epmd_port)
        try:
            reply = await _reply(stream, ExtClient(req))
        except BaseException:
            await stream.aclose()
            raise
    if not isinstance(reply, ResultResponse) or not reply.ok:
        await stream.aclose()
        why = {
            ADD_NOT_REGISTERED: f"{name!r} is not registered",
            ADD_DUPLICATE: f"{name!r} already has protocol {protocol} port {listen_port}",
        }.get(getattr(reply, "result", -1), f"unexpected reply {reply!r}")
        raise EpmdError(f"EPMD at {host}:{epmd_port} refused the transport: {why}")
    return TransportRegistration(req.entry(), stream)
