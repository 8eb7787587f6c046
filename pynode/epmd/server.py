"""A drop-in EPMD server on anyio: real ``erl`` nodes register with it and look each other up.

Behaviour follows erts/epmd/src/epmd_srv.c (see :mod:`pynode.epmd.core`); the additions are
pynode's extension requests (:mod:`pynode.protocol.epmd_ext`), an optional linger period for dropped
registrations, and a Python API over the tables::

    async with EpmdServer(port=0) as server:
        print(server.port)
        await server.serve_forever()   # until KILL_REQ or server.close()
"""

from __future__ import annotations

import ipaddress
import logging
import os
import socket
from collections.abc import Hashable, Iterable, Sequence
from typing import Any

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup, TaskStatus

from ..protocol._common import NeedData
from ..protocol.epmd import DEFAULT_EPMD_PORT, NodeEntry, NodeType, validate_node_name
from ..protocol.errors import EpmdProtocolError
from .core import EpmdCore, RequestFramer, owners_of
from .registry import (
    ADD_DUPLICATE,
    ADD_NOT_REGISTERED,
    MAX_UNREGISTERED,
    NodeRecord,
    Registry,
)

__all__ = ["EpmdServer", "EpmdServerError", "is_local_peer", "split_addresses"]

log = logging.getLogger("pynode.epmd.server")

#: epmd's CLOSE_TIMEOUT: a connection that holds no registration and stays idle this long
#: (seconds) is closed.
DEFAULT_PACKET_TIMEOUT = 60.0
#: epmd caps its connections at FD_SETSIZE - 1.
DEFAULT_MAX_CONNECTIONS = 1023

_RECV = 65536
_CLOSED_ERRORS = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


class EpmdServerError(Exception):
    """A Python-API call the tables refuse (name taken, node unknown), or a failed bind."""


def split_addresses(text: str) -> list[str]:
    """epmd's -address / ERL_EPMD_ADDRESS syntax: addresses separated by commas or spaces."""
    return [a for a in text.replace(",", " ").split() if a]


def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.ip_address(addr.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    return ip


def is_local_peer(peer: str, local: str) -> bool:
    """epmd's conn_local_peer_check: a loopback peer, or one connecting from our own address.

    (IPv4-mapped IPv6 addresses count as their IPv4 address, for dual-stack sockets.)
    """
    try:
        ip = _ip(peer)
        return ip.is_loopback or ip == _ip(local)
    except ValueError:
        return False


class _Conn:
    """One client connection; hashable by identity, it is the owner of what it registers."""

    __slots__ = ("stream", "local", "fd", "peer", "scope", "closing")

    def __init__(self, stream: SocketStream) -> None:
        self.stream = stream
        self.scope: anyio.CancelScope | None = None
        self.closing = False
        try:
            peer = stream.extra(SocketAttribute.remote_address)
            here = stream.extra(SocketAttribute.local_address)
            self.peer = str(peer[0]) if isinstance(peer, tuple) else str(peer)
            self.local = (
                isinstance(peer, tuple)
                and isinstance(here, tuple)
                and is_local_peer(str(peer[0]), str(here[0]))
            )
        except Exception:  # failure to get the peer name counts as non-local, as in epmd
            self.peer, self.local = "?", False
        try:
            self.fd = stream.extra(SocketAttribute.raw_socket).fileno()
        except Exception:
            self.fd = -1

    def is_gone(self) -> bool:
        """True when the peer has closed or reset the connection (or sent bytes, which
        unregisters as well), seen without reading: a non-blocking MSG_PEEK on a duplicate
        of the descriptor (asyncio's transport owns the socket object itself)."""
        if self.closing:
            return True
        try:
            fd = self.stream.extra(SocketAttribute.raw_socket).fileno()
            peek = socket.socket(fileno=os.dup(fd))
        except Exception:  # no descriptor to look at: trust the connection
            return False
        try:
            peek.recv(1, socket.MSG_PEEK | getattr(socket, "MSG_DONTWAIT", 0))
            return True  # b"": end of stream; a byte: the node asks to be unregistered
        except (BlockingIOError, InterruptedError):
            return False
        except OSError:
            return True
        finally:
            peek.close()

    def close_soon(self) -> None:
        """Its registration was removed elsewhere: stop holding the connection."""
        self.closing = True
        if self.scope is not None:
            self.scope.cancel()


class EpmdServer:
    """An EPMD server (erts/epmd/src/epmd_srv.c), as an async context manager.

    ``host``: the address(es) to listen on: one string (commas or spaces separate several,
    as epmd's -address), a sequence, or None for every IPv4 and IPv6 address. Each must bind.
    ``optional_hosts`` are bound when possible (epmd always adds the loopbacks this way).
    ``port`` 0 picks a free port (the same on every address); read it from :attr:`port`.
    ``relaxed_command_check``: epmd's flag (KILL with nodes alive, STOP).
    ``packet_timeout``: idle seconds before a connection that holds no registration closes.
    ``max_connections``: beyond it new connections are logged and closed.
    ``linger``: seconds a dropped registration still answers PORT_PLEASE2 (0 = epmd).
    ``extensions``: answer pynode's extension requests (False: they are garbage, as epmd).
    """

    def __init__(
        self,
        host: str | Sequence[str] | None = "127.0.0.1",
        port: int = DEFAULT_EPMD_PORT,
        *,
        relaxed_command_check: bool = False,
        packet_timeout: float = DEFAULT_PACKET_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        linger: float = 0.0,
        extensions: bool = True,
        max_unregistered: int = MAX_UNREGISTERED,
        optional_hosts: Sequence[str] = (),
    ) -> None:
        if host is None:
            hosts, optional = ["0.0.0.0"], ["::"]
        elif isinstance(host, str):
            hosts, optional = split_addresses(host) or [host], []
        else:
            hosts, optional = list(host), []
        optional += [h for h in optional_hosts if h not in hosts and h not in optional]
        for addr in hosts + optional:
            try:
                ipaddress.ip_address(addr.split("%", 1)[0])
            except ValueError:
                raise EpmdServerError(f"cannot parse IP address {addr!r}") from None
        self._hosts = hosts
        self._optional_hosts = optional
        self._requested_port = port
        self.packet_timeout = packet_timeout
        self.max_connections = max_connections
        self.registry = Registry(max_unregistered=max_unregistered, linger=linger)
        self.core = EpmdCore(
            self.registry,
            epmd_port=port,
            relaxed_command_check=relaxed_command_check,
            extensions=extensions,
            is_gone=lambda owner: isinstance(owner, _Conn) and owner.is_gone(),
        )
        self._port: int | None = None
        self.addresses: list[tuple[str, int]] = []
        self._listeners: list[SocketListener] = []
        self._tg_cm: TaskGroup | None = None
        self._scope: anyio.CancelScope | None = None
        self._inner: TaskGroup | None = None
        self._stopped: anyio.Event | None = None
        self._close_requested = False
        self._active = 0

    # -- lifetime ----------------------------------------------------------------------
    @property
    def port(self) -> int:
        """The TCP port EPMD listens on (known once started)."""
        if self._port is None:
            raise RuntimeError("the EPMD server is not started")
        return self._port

    @property
    def relaxed_command_check(self) -> bool:
        return self.core.relaxed_command_check

    @property
    def connections(self) -> int:
        """How many client connections are open now."""
        return self._active

    async def __aenter__(self) -> EpmdServer:
        self._stopped = anyio.Event()
        self._close_requested = False
        await self._bind()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg_cm = tg
        try:
            await tg.start(self._run)
        except BaseException:
            tg.cancel_scope.cancel()
            await tg.__aexit__(None, None, None)
            await self._close_listeners()
            raise
        return self

    async def __aexit__(self, *exc: Any) -> None:
        self.close()
        assert self._tg_cm is not None
        try:
            await self._tg_cm.__aexit__(None, None, None)
        finally:
            await self._close_listeners()

    async def serve_forever(self) -> None:
        """Wait until the server stops (KILL_REQ, :meth:`close`, or leaving the context)."""
        if self._stopped is None:
            raise RuntimeError("use 'async with EpmdServer(...)' before serve_forever()")
        await self._stopped.wait()

    def close(self) -> None:
        """Stop serving: close the listeners and every connection (registrations vanish)."""
        self._close_requested = True
        if self._scope is not None:
            self._scope.cancel()

    @property
    def stopped(self) -> bool:
        return self._stopped is not None and self._stopped.is_set()

    async def _bind(self) -> None:
        port = self._requested_port
        errors: list[str] = []
        for _attempt in range(10):
            listeners: list[SocketListener] = []
            bound = port
            try:
                for addr in self._hosts:
                    lst = await self._listen(addr, bound)
                    listeners.append(lst)
                    bound = lst.extra(SocketAttribute.local_port)
                for addr in self._optional_hosts:
                    try:
                        lst = await self._listen(addr, bound)
                    except OSError as e:
                        log.info("not listening on %s: %s", addr, e)
                        continue
                    listeners.append(lst)
                    bound = lst.extra(SocketAttribute.local_port)
            except OSError as e:
                for lst in listeners:
                    await lst.aclose()
                errors.append(str(e))
                if port == 0 and len(listeners) > 0:
                    continue  # the free port of the first address was taken on another
                raise EpmdServerError(
                    f"cannot listen on port {port} of {', '.join(self._hosts)}: {e}"
                ) from e
            if not listeners:
                raise EpmdServerError("no address to listen on")
            self._listeners = listeners
            self._port = bound
            self.core.epmd_port = bound
            self.addresses = []
            for lst in listeners:
                sockname = lst.extra(SocketAttribute.local_address)
                self.addresses.append((str(sockname[0]), int(sockname[1])))
            log.info("EPMD listening on %s", ", ".join(f"{a}:{p}" for a, p in self.addresses))
            return
        raise EpmdServerError(f"cannot find a free port on every address: {errors[-1]}")

    @staticmethod
    async def _listen(addr: str, port: int) -> SocketListener:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        from_socket = getattr(SocketListener, "from_socket", None)
        if from_socket is None:  # anyio < 4.7
            multi = await anyio.create_tcp_listener(local_host=addr, local_port=port)
            return multi.listeners[0]  # type: ignore[return-value]
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((addr, port))
            sock.listen(socket.SOMAXCONN)
            sock.setblocking(False)
        except BaseException:
            sock.close()
            raise
        return await from_socket(sock)  # type: ignore[no-any-return]

    async def _close_listeners(self) -> None:
        for lst in self._listeners:
            await anyio.aclose_forcefully(lst)
        self._listeners = []

    async def _run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        # Our own scope, so that a KILL_REQ stops the server without cancelling the body
        # of the caller's "async with".
        try:
            with anyio.CancelScope() as scope:
                self._scope = scope
                if self._close_requested:
                    scope.cancel()
                async with anyio.create_task_group() as inner:
                    self._inner = inner
                    for lst in self._listeners:
                        inner.start_soon(self._accept_loop, lst)
                    task_status.started()
                    await anyio.sleep_forever()
        finally:
            with anyio.CancelScope(shield=True):
                await self._close_listeners()
            for name, _port in self.registry.names():  # their connections are gone too
                self.registry.unregister(name)
            assert self._stopped is not None
            self._stopped.set()
            log.info("EPMD on port %s stopped", self._port)

    async def _accept_loop(self, listener: SocketListener) -> None:
        assert self._inner is not None
        while True:
            try:
                stream = await listener.accept()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                return
            except OSError as e:  # EMFILE and friends: keep serving those already open
                log.warning("error in accept: %s", e)
                await anyio.sleep(0.1)
                continue
            self._inner.start_soon(self._handle, stream)

    # -- one connection ----------------------------------------------------------------
    async def _handle(self, stream: SocketStream) -> None:
        counted = False
        try:
            if self._active >= self.max_connections:
                log.warning(
                    "refusing a connection: %d connections open (max_connections)", self._active
                )
                return
            self._active += 1
            counted = True
            conn = _Conn(stream)
            log.debug(
                "%s peer %s connected (fd %d)",
                "local" if conn.local else "non-local",
                conn.peer,
                conn.fd,
            )
            await self._serve_conn(conn)
        except Exception:  # never let one client take the server down
            log.exception("EPMD connection handler failed")
        finally:
            if counted:
                self._active -= 1
            await anyio.aclose_forcefully(stream)

    async def _serve_conn(self, conn: _Conn) -> None:
        body = await self._read_request(conn)
        if body is None:
            return
        outcome = self.core.handle(body, local=conn.local, owner=conn, fd=conn.fd)
        if outcome.note:
            log.info("%s (peer %s)", outcome.note, conn.peer)
        self._drop(outcome.dropped, keep=conn)
        if outcome.reply and not await self._send(conn, outcome.reply):
            if outcome.keep:
                self._drop(self.core.connection_lost(conn, linger=False), keep=conn)
            return
        if outcome.kill:
            log.info("EPMD killed by KILL_REQ from %s", conn.peer)
            await anyio.aclose_forcefully(conn.stream)
            self.close()
            return
        if outcome.keep:
            await self._hold(conn)

    async def _read_request(self, conn: _Conn) -> bytes | None:
        framer = RequestFramer()
        while True:
            try:
                body = framer.next_body()
            except EpmdProtocolError as e:
                log.info("%s; closing (peer %s)", e, conn.peer)
                return None
            if not isinstance(body, NeedData):
                return body
            data = b""
            with anyio.move_on_after(self.packet_timeout) as scope:
                try:
                    data = await conn.stream.receive(_RECV)
                except _CLOSED_ERRORS:
                    data = b""
            if scope.cancelled_caught:
                log.info("closing because timed out on receive (peer %s)", conn.peer)
                return None
            if not data:
                if framer.buffered:
                    log.info(
                        "got partial packet only (%d bytes) from %s", framer.buffered, conn.peer
                    )
                return None
            framer.receive_data(data)

    async def _send(self, conn: _Conn, data: bytes) -> bool:
        with anyio.move_on_after(self.packet_timeout):
            try:
                await conn.stream.send(data)
                return True
            except _CLOSED_ERRORS as e:
                log.info("failed to send a reply to %s: %s", conn.peer, e)
                return False
        log.info("timed out sending a reply to %s", conn.peer)
        return False

    async def _hold(self, conn: _Conn) -> None:
        """Keep a registration's connection; EOF, an error or any byte unregisters."""
        linger = True
        with anyio.CancelScope() as scope:
            conn.scope = scope
            if conn.closing:
                scope.cancel()
            try:
                data = await conn.stream.receive(_RECV)
                log.info(
                    "got more than expected on ALIVE socket (%d bytes) from %s",
                    len(data),
                    conn.peer,
                )
                linger = False  # the node asked to go: no reason to keep answering for it
            except _CLOSED_ERRORS:
                pass
        conn.scope = None
        if conn.closing:
            return
        self._drop(self.core.connection_lost(conn, linger=linger), keep=conn)

    def _drop(self, records: Iterable[NodeRecord], *, keep: Hashable | None = None) -> None:
        """Close the connections that held registrations just removed."""
        for record in records:
            for owner in owners_of(record):
                if owner is not keep and isinstance(owner, _Conn):
                    owner.close_soon()

    # -- Python API --------------------------------------------------------------------
    def names(self) -> list[tuple[str, int]]:
        """(name, port) of every registered node, newest first (as NAMES_REQ)."""
        return self.registry.names()

    def lookup(self, name: str) -> NodeEntry | None:
        """What PORT_PLEASE2_REQ answers for ``name`` (None: not registered)."""
        return self.registry.lookup(name)

    def lookup_prefix(self, prefix: str) -> list[NodeEntry]:
        """Registered nodes whose name starts with ``prefix``, sorted by name."""
        return self.registry.lookup_prefix(prefix)

    def transports(self, name: str) -> list[NodeEntry]:
        """The primary entry of ``name`` then its extra transports (empty when unknown)."""
        return self.registry.transports(name)

    def creation(self, name: str) -> int | None:
        """The creation ``name`` was given when it registered (None: not registered)."""
        record = self.registry.get(name)
        return record.creation if record is not None else None

    def register(
        self,
        name: str,
        port: int,
        *,
        node_type: int = NodeType.NORMAL,
        protocol: int = 0,
        highest: int = 6,
        lowest: int = 5,
        extra: bytes = b"",
    ) -> int:
        """Register a node held by Python, not by a connection; returns its creation.

        It stays until :meth:`unregister` (or STOP_REQ). Raises EpmdServerError if taken.
        """
        entry = _entry(name, port, node_type, protocol, highest, lowest, extra)
        record = self.registry.register(entry)
        if record is None:
            raise EpmdServerError(f"node name already occupied: {name!r}")
        log.info("registering %r (creation %d), port %d (Python API)", name, record.creation, port)
        return record.creation

    def unregister(self, name: str) -> bool:
        """Forget ``name`` as STOP_REQ does (its connection is closed); False if unknown."""
        record = self.registry.unregister(name)
        if record is None:
            return False
        self._drop([record])
        return True

    def add_transport(
        self,
        name: str,
        port: int,
        protocol: int,
        *,
        node_type: int | None = None,
        highest: int | None = None,
        lowest: int | None = None,
        extra: bytes = b"",
    ) -> None:
        """Attach another (protocol, port) to the registered node ``name``.

        Type and versions default to the primary registration's. PORT_PLEASE2 keeps
        answering the primary; TRANSPORTS_REQ and :meth:`transports` list every one.
        """
        record = self.registry.get(name)
        if record is None:
            raise EpmdServerError(f"node {name!r} is not registered")
        primary = record.entry
        entry = _entry(
            name,
            port,
            primary.node_type if node_type is None else node_type,
            protocol,
            primary.highest if highest is None else highest,
            primary.lowest if lowest is None else lowest,
            extra,
        )
        result = self.registry.add_transport(entry)
        if result == ADD_NOT_REGISTERED:  # pragma: no cover - checked above
            raise EpmdServerError(f"node {name!r} is not registered")
        if result == ADD_DUPLICATE:
            raise EpmdServerError(
                f"node {name!r} already has a transport with protocol {protocol} port {port}"
            )

    def remove_transport(self, name: str, protocol: int, port: int) -> bool:
        """Detach an extra transport (closing the connection that added it, if any)."""
        transport = self.registry.remove_transport(name, protocol, port)
        if transport is None:
            return False
        if isinstance(transport.owner, _Conn):
            transport.owner.close_soon()
        return True

    def dump(self) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """(active, old/unused) rows of ``(name, port, fd)``, as DUMP_REQ reports them."""
        return self.registry.dump()


def _entry(
    name: str,
    port: int,
    node_type: int,
    protocol: int,
    highest: int,
    lowest: int,
    extra: bytes,
) -> NodeEntry:
    try:
        validate_node_name(name)
    except EpmdProtocolError as e:
        raise EpmdServerError(str(e)) from None
    for what, value, top in (
        ("port", port, 0xFFFF),
        ("node type", node_type, 0xFF),
        ("protocol", protocol, 0xFF),
        ("highest version", highest, 0xFFFF),
        ("lowest version", lowest, 0xFFFF),
    ):
        if not 0 <= value <= top:
            raise EpmdServerError(f"{what} {value} is out of range")
    return NodeEntry(name, port, node_type, protocol, highest, lowest, bytes(extra))
