"""Listening on and dialling any transport endpoint (TCP, Unix socket) as a Channel.

Unix sockets: the file is made by us and removed when the listener closes (only if it is
still ours). A file left at the path is handled as erl handles a stale epmd socket: if
nobody accepts on it, it is stale and unlinked; if a live process listens there, or the path
is not a socket at all, listening fails with a clear error instead of stealing it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import socket
import ssl
import stat
from collections.abc import Callable, Coroutine
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, SocketListener, TaskGroup

from ..protocol.transports import Endpoint, TcpEndpoint, UnixEndpoint
from . import transport
from .errors import NodeError
from .transport import Channel, StreamChannel, _on_asyncio, _ProtocolChannel

log = logging.getLogger("pynode.node")

OnChannel = Callable[[Channel], Coroutine[Any, Any, None]]

__all__ = ["Listening", "listen", "dial", "channel_family", "unix_owner", "StaleSocketError"]


class StaleSocketError(NodeError):
    """The Unix socket path is taken (a live listener, or not a socket)."""


class Listening:
    """One bound endpoint accepting into a node; ``endpoint`` has the real port."""

    def __init__(self, endpoint: Endpoint, closer: Callable[[], Coroutine[Any, Any, None]]) -> None:
        self.endpoint = endpoint
        self._closer = closer
        self._closed = False

    @property
    def port(self) -> int:
        return self.endpoint.port if isinstance(self.endpoint, TcpEndpoint) else 0

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            await self._closer()

    def __repr__(self) -> str:
        return f"<Listening {self.endpoint}>"


async def listen(
    endpoint: Endpoint,
    on_channel: OnChannel,
    task_group: TaskGroup,
    tls: ssl.SSLContext | None = None,
    tls_timeout: float = 7.0,
) -> Listening:
    """Accept on ``endpoint``, each connection handed to ``on_channel`` in ``task_group``;
    with ``tls``, TCP endpoints take TLS only (a Unix socket stays plain)."""
    if isinstance(endpoint, UnixEndpoint):
        return await _listen_unix(endpoint, on_channel, task_group)
    lst = await transport.listen_tcp(endpoint.host, endpoint.port, on_channel, task_group, tls, tls_timeout)
    return Listening(TcpEndpoint(endpoint.host, lst.port), lst.aclose)


async def dial(endpoint: Endpoint, tls: ssl.SSLContext | None = None) -> Channel:
    """A channel to ``endpoint`` (OSError when it cannot be reached); TLS over TCP with ``tls``."""
    if isinstance(endpoint, TcpEndpoint):
        if not endpoint.host:
            raise OSError(errno.EINVAL, "no host to dial")
        return await transport.connect_tcp(endpoint.host, endpoint.port, tls)
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_unix_connection(_ProtocolChannel, endpoint.path)
        return proto
    return StreamChannel(await anyio.connect_unix(endpoint.path))


# -- Unix sockets ---------------------------------------------------------------------------


def _accepted_factory(on_channel: OnChannel, task_group: TaskGroup) -> Callable[[], _ProtocolChannel]:
    """asyncio protocol factory: every accepted connection starts ``on_channel`` in a task."""

    class _Accepted(_ProtocolChannel):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            super().connection_made(transport)
            if task_group.cancel_scope.cancel_called:  # accepted while the node stops
                transport.close()
                return
            task_group.start_soon(on_channel, self)

    return _Accepted


def _clear_stale(path: str) -> None:
    """Unlink a socket file nobody listens on; refuse a live one or a non-socket."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise StaleSocketError(f"cannot listen on {path}: it exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        log.info("removing stale Unix socket %s (nobody listens on it)", path)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    except OSError as e:
        raise StaleSocketError(f"cannot listen on {path}: {e}") from None
    finally:
        probe.close()
    raise StaleSocketError(f"cannot listen on {path}: another process is listening on it")


def _bind_unix(path: str) -> tuple[socket.socket, tuple[int, int]]:
    _clear_stale(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.bind(path)
        # backlog as anyio's and erl's listen default (inet_tcp_dist uses a backlog of 128)
        sock.listen(128)
        sock.setblocking(False)
        st = os.stat(path)
    except OSError as e:
        sock.close()
        raise NodeError(f"cannot listen on {path}: {e}") from None
    return sock, (st.st_dev, st.st_ino)


def _remove_if_ours(path: str, ident: tuple[int, int]) -> None:
    """Unlink the socket file unless someone else has replaced it since."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if (st.st_dev, st.st_ino) == ident:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)


async def _listen_unix(endpoint: UnixEndpoint, on_channel: OnChannel, task_group: TaskGroup) -> Listening:
    try:  # advertised to other processes: relative to our working directory means nothing
        endpoint = UnixEndpoint(os.path.abspath(endpoint.path))
    except ValueError as e:
        raise NodeError(f"cannot listen on {endpoint}: {e}") from None
    path = endpoint.path
    sock, ident = _bind_unix(path)
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        try:
            server = await loop.create_unix_server(_accepted_factory(on_channel, task_group), sock=sock)
        except BaseException:
            sock.close()
            _remove_if_ours(path, ident)
            raise

        async def close_asyncio() -> None:
            server.close()
            _remove_if_ours(path, ident)

        return Listening(endpoint, close_asyncio)

    try:
        listener: SocketListener = await SocketListener.from_socket(sock)
    except BaseException:
        sock.close()
        _remove_if_ours(path, ident)
        raise

    async def handle(stream: ByteStream) -> None:
        await on_channel(StreamChannel(stream))

    task_group.start_soon(listener.serve, handle, task_group)

    async def close_stream() -> None:
        try:
            await listener.aclose()
        finally:
            _remove_if_ours(path, ident)

    return Listening(endpoint, close_stream)


def channel_family(channel: Channel) -> socket.AddressFamily | None:
    """The address family under a channel (AF_UNIX, AF_INET, AF_INET6), None if unknown:
    which transport a connection took."""
    sock: Any = None
    if isinstance(channel, _ProtocolChannel) and channel.transport is not None:
        sock = channel.transport.get_extra_info("socket")
    elif isinstance(channel, StreamChannel):
        with contextlib.suppress(anyio.TypedAttributeLookupError):
            sock = channel.stream.extra(SocketAttribute.raw_socket)
    return sock.family if sock is not None else None


def unix_owner(path: str) -> int | None:
    """The uid owning the Unix socket at ``path``; None when there is no socket there."""
    try:
        st = os.lstat(path)
    except OSError:
        return None
    return st.st_uid if stat.S_ISSOCK(st.st_mode) else None
