"""EPMD client over anyio: look-ups, names, and the long-lived registration."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

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
from ..protocol.errors import EpmdProtocolError
from .errors import EpmdError as EpmdError  # importable from here as before
from .errors import epmd_failure
from .naming import EPMD_TIMEOUT as EPMD_TIMEOUT
from .naming import default_epmd_port as default_epmd_port

log = logging.getLogger("pynode.epmd")


async def _reply(stream: SocketStream, client: EpmdClient) -> EpmdReply:
    """Send the client's request and read until its reply is complete."""
    await stream.send(client.data_to_send())
    while True:
        ev = client.next_event()
        if isinstance(ev, Closed):  # pragma: no cover - next_event raises first
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
) -> Registration:
    """Send ALIVE2_REQ and keep the connection; raise EpmdError if the name is taken."""
    epmd_port = port or default_epmd_port()
    # OTP registers 77 even for hidden nodes; 72 marks a C node, which is what a hidden
    # pynode is to EPMD's clients (erl_call and ei treat both the same).
    req = Alive2Request(name, listen_port, NodeType.HIDDEN if hidden else NodeType.NORMAL)
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
