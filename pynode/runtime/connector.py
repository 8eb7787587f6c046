"""Connection set-up for a node: dialling (EPMD look-up, initiator handshake), accepting
(acceptor handshake), simultaneous connects, and the table of live connections."""

from __future__ import annotations

import logging
import secrets
import ssl
import time
import weakref
from collections.abc import Callable, Coroutine
from typing import Any, Protocol

import anyio

from ..protocol.epmd_ext import ExtensionUnsupported
from ..protocol.errors import HandshakeError
from ..protocol.flags import DFlag
from ..protocol.framing import Message
from ..protocol.handshake import (
    Acceptor,
    HandshakeComplete,
    Initiator,
    NameReceived,
    StatusReceived,
    WaitingForOldConnection,
)
from ..protocol.transports import Endpoint, Route, TcpEndpoint, UnixEndpoint
from ..term import Atom
from . import epmd as epmd_client
from . import limits, listeners
from .connection import Connection, drive_handshake
from .errors import AuthError, ConnectError, ConnectTimeout
from .policy import TransportPolicy
from .status import PeerHistory
from .tls import tls_reason
from .transport import Channel

log = logging.getLogger("pynode.node")

PLAIN_EPMD_MEMORY = 60.0
"""Seconds an EPMD that closed on TRANSPORTS_REQ (a plain epmd) is asked PORT_PLEASE2 only,
saving one refused connection per dial (no OTP precedent: OTP never asks for transports)."""


class ConnectorHost(Protocol):
    """What the Connector needs of its node."""

    name: Atom
    flags: DFlag
    creation: int
    setup_time: float
    epmd_port: int | None
    max_packet: int
    max_message: int
    net_ticktime: float
    ticktimes: dict[Atom, float]
    tick_intensity: int
    policy: TransportPolicy
    dispatch: Callable[[Connection, Message], None]
    deliver: Callable[[Any, Any], bool]
    sinks: dict[Any, tuple[Any, ...]]
    deliver_signal: Callable[[Connection, tuple[Any, ...], Any], bool]
    tls_client: ssl.SSLContext | None
    """TLS distribution: the context for dialling (None: plain TCP)."""

    @property
    def cookie(self) -> str: ...
    @property
    def has_name(self) -> bool: ...
    def named(self, name: Atom, creation: int) -> None: ...
    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None: ...
    def connection_up(self, conn: Connection) -> None: ...
    def connection_down(self, conn: Connection, reason: Any) -> None: ...
    def ticktime_for(self, node: Atom) -> float: ...


class _Pending:
    """An outgoing connection attempt others may wait on."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.incoming = anyio.Event()  # set when the peer's own attempt (which won) ends


class Connector:
    """Sets up and keeps the connections of one node."""

    def __init__(self, host: ConnectorHost) -> None:
        self.host = host
        self.connections: dict[Atom, Connection] = {}
        self.addresses: dict[Atom, tuple[str, int]] = {}
        self.endpoints: dict[Atom, Endpoint] = {}
        """Peers reached at a known endpoint (a Unix socket path, say) without EPMD."""
        self._plain_epmd: dict[tuple[str, int | None], float] = {}  # -> when it refused
        self._pending: dict[Atom, _Pending] = {}
        self._naming_lock: anyio.Lock | None = None  # made in the loop, on first use
        self.history = PeerHistory()
        """Connects and last disconnect per peer (pynode.runtime.status)."""
        self.gate = limits.HandshakeGate()
        """Incoming handshakes in progress, bounded in count, per address and in time."""
        self._reported: weakref.WeakSet[Connection] = weakref.WeakSet()  # went down, once

    def get(self, node: Atom) -> Connection | None:
        """The live connection to ``node``, or None."""
        c = self.connections.get(node)
        return c if c is not None and c.alive else None

    def close_all(self, reason: Any) -> None:
        for conn in list(self.connections.values()):
            conn.close(reason)

    # -- dialling ---------------------------------------------------------------------------
    async def connect(self, peer: Atom, limit: float) -> Connection:
        """The connection to ``peer``, dialled unless one is up or on its way."""
        try:
            with anyio.fail_after(limit):
                while True:
                    conn = self.get(peer)
                    if conn is not None:
                        return conn
                    pending = self._pending.get(peer)
                    if pending is None:
                        pending = self._pending[peer] = _Pending()
                        self.host.start_soon(self._dial, peer, pending)
                    await pending.done.wait()
                    conn = self.get(peer)
                    if conn is not None:
                        return conn
                    if pending.error is not None:
                        err = pending.error
                        bad_cookie = isinstance(err, HandshakeError) and err.reason == "bad_cookie"
                        cls = AuthError if bad_cookie else ConnectError
                        raise cls(f"cannot connect to {peer}: {err}") from err
        except TimeoutError:
            raise ConnectTimeout(f"cannot connect to {peer}: no connection within {limit} s") from None

    async def _dial(self, peer: Atom, pending: _Pending) -> None:
        try:
            try:
                if self.host.has_name:
                    await self._dial_once(peer)
                else:  # a dynamic node makes one NAME_ME attempt at a time
                    if self._naming_lock is None:
                        self._naming_lock = anyio.Lock()
                    async with self._naming_lock:
                        await self._dial_once(peer)
            except HandshakeError as e:
                if e.reason != "nok":
                    raise
                # simultaneous connect and the peer's attempt wins: wait for it (bounded)
                with anyio.move_on_after(self.host.setup_time * 2):
                    await pending.incoming.wait()
                if self.get(peer) is None:
                    raise
        except Exception as e:  # report any failure to the waiters
            pending.error = e
            log.info("connection to %s failed: %s", peer, e)
        finally:
            if self._pending.get(peer) is pending:
                del self._pending[peer]
            pending.done.set()

    async def _locate(self, peer: Atom) -> list[Route]:
        """Where ``peer`` may be dialled, best first: a known endpoint or address, else what
        its EPMD advertises (TRANSPORTS_REQ; PORT_PLEASE2 from a plain epmd) as the node's
        policy orders it."""
        alive, _, host = peer.partition("@")
        if not host:
            raise ConnectError(f"bad node name {peer!r}: expected name@host")
        endpoint = self.endpoints.get(peer)
        if endpoint is not None:
            return [Route(endpoint)]
        addr = self.addresses.get(peer)
        if addr is not None:
            return [Route(TcpEndpoint(addr[0], addr[1]))]
        policy = self.host.policy
        epmd_port = self.host.epmd_port
        entries = None
        key = (host, epmd_port)
        refused = self._plain_epmd.get(key)
        if refused is not None and time.monotonic() - refused > PLAIN_EPMD_MEMORY:
            del self._plain_epmd[key]
            refused = None
        if policy.needs_advertised(peer) and refused is None:
            try:
                entries = await epmd_client.transports(alive, host, epmd_port)
            except ExtensionUnsupported:
                self._plain_epmd[key] = time.monotonic()
        if entries is None:
            entry = await epmd_client.port_please(alive, host, epmd_port)
            entries = [entry] if entry is not None else []
        if not entries:
            raise ConnectError(f"EPMD on {host} does not know {alive!r}")
        routes = policy.routes(peer, entries)
        if not routes:
            kinds = sorted({e.protocol for e in entries})
            raise ConnectError(
                f"{peer} advertises no transport that the policy "
                f"({policy.transport_for(peer)!r}) allows (EPMD protocols {kinds})"
            )
        return routes

    async def _open(self, peer: Atom, routes: list[Route], advertised: bool) -> tuple[Channel, Route]:
        """The first route that connects (each within setup_time); an ``advertised`` Unix
        socket only if its owner is trusted (see runtime/policy.py)."""
        failures = []
        for route in routes:
            ep = route.endpoint
            if advertised and isinstance(ep, UnixEndpoint):
                owner = listeners.unix_owner(ep.path)
                if owner is not None and owner not in self.host.policy.unix_owners:
                    log.warning("not dialling %s at %s: the socket belongs to uid %d", peer, ep, owner)
                    failures.append(f"{ep}: owned by uid {owner}, not trusted")
                    continue
            tls = self.host.tls_client if isinstance(ep, TcpEndpoint) else None
            try:
                with anyio.fail_after(self.host.setup_time):
                    return await listeners.dial(route.endpoint, tls), route
            except (ssl.SSLError, ConnectionResetError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
                # (anyio's TLS stream wraps the ssl error; asyncio's says only "reset" on an EOF)
                what = f"TLS handshake failed: {tls_reason(e)}" if tls is not None else str(e) or type(e).__name__
                log.debug("cannot reach %s at %s: %s", peer, route.endpoint, what)
                failures.append(f"{route.endpoint}: {what}")
            except (OSError, TimeoutError) as e:
                log.debug("cannot reach %s at %s: %s", peer, route.endpoint, e)
                failures.append(f"{route.endpoint}: {e or type(e).__name__}")
        raise ConnectError(f"cannot reach {peer} at {'; '.join(failures)}")

    async def _dial_once(self, peer: Atom) -> None:
        if self.host.has_name and self.get(peer) is not None:
            return  # the peer's own attempt won while we waited for the naming lock
        advertised = peer not in self.endpoints and peer not in self.addresses
        channel, route = await self._open(peer, await self._locate(peer), advertised)
        version = route.version
        tls = channel.tls  # TLS over TCP when the node has TLS; a Unix socket stays plain
        node = self.host
        name_me = not node.has_name
        hs = Initiator(
            this_node=node.name.partition("@")[2] if name_me else node.name,
            peer_node=peer,
            cookie=node.cookie,
            flags=node.flags,
            creation=node.creation,
            version=version,
            name_me=name_me,
            length_bytes=4 if tls else 2,  # inet_tls_dist: {packet, 4} throughout
        )
        try:
            done = await drive_handshake(hs, channel, node.setup_time, self._initiator_event(hs, peer))
        except BaseException as e:
            with anyio.CancelScope(shield=True):
                await channel.aclose()
            if isinstance(e, ssl.SSLError):  # TLS 1.3: the server refuses our certificate late
                raise ConnectError(f"{peer} refused the TLS connection: {tls_reason(e)}") from None
            if tls and isinstance(e, HandshakeError) and e.reason == "closed":
                raise ConnectError(f"{e} (over TLS: did {peer} refuse our certificate?)") from None
            raise
        if name_me:
            node.named(Atom(done.this_node), done.this_creation)
            log.info("%s named us %s", peer, node.name)
        conn = self._start(peer, channel, done, hs.trailing_data)
        node.start_soon(conn.run)

    def _initiator_event(self, hs: Initiator, peer: Atom) -> Callable[[Any], None]:
        def on_event(ev: Any) -> None:
            if isinstance(ev, StatusReceived) and ev.status == "alive":
                hs.answer_alive(self.get(peer) is None)

        return on_event

    # -- accepting --------------------------------------------------------------------------
    async def accept(self, channel: Channel) -> None:
        """An incoming connection: the handshake, then serve it until it goes down."""
        try:
            await self._accept(channel)
        except HandshakeError as e:
            log.warning("refused incoming connection: %s", e)
        except Exception as e:
            log.warning("incoming connection failed: %r", e)
        finally:
            with anyio.CancelScope(shield=True):
                await channel.aclose()

    async def _accept(self, channel: Channel) -> None:
        node = self.host
        if not node.has_name:
            return  # a dynamic node takes no connections before it is named
        hs = Acceptor(
            this_node=node.name,
            cookie=node.cookie,
            flags=node.flags,
            creation=node.creation,
            length_bytes=4 if channel.tls else 2,  # inet_tls_dist: {packet, 4} throughout
        )
        conn: Connection | None = None
        address = channel.peer_address
        with self.gate.admit(address, limits.HANDSHAKE_STEPS * node.setup_time):
            try:
                done = await drive_handshake(hs, channel, node.setup_time, self._acceptor_event(hs))
                conn = self._start(Atom(done.peer_name), channel, done, hs.trailing_data)
            finally:
                if hs.peer_name is not None:
                    pending = self._pending.get(Atom(hs.peer_name))
                    if pending is not None:
                        pending.incoming.set()
        if conn is None:  # dropped by the gate: out of time, or it gave way to a newer one
            log.warning("gave up an incoming handshake from %s (state %s)", address, hs.state)
            return
        await conn.run()  # this task is the connection's reader from now on

    def _acceptor_event(self, hs: Acceptor) -> Callable[[Any], None]:
        def on_event(ev: Any) -> None:
            if isinstance(ev, NameReceived):
                self._answer_name(hs, ev)
            elif isinstance(ev, WaitingForOldConnection):
                old = self.connections.get(Atom(ev.name))
                if old is not None:
                    old.close("replaced by a new connection")
                hs.old_connection_closed()

        return on_event

    def _answer_name(self, hs: Acceptor, ev: NameReceived) -> None:
        """The status for a peer that introduced itself (dist_util's rules)."""
        if ev.name_me:
            hs.send_status(
                "named",
                name=f"pynode_{secrets.token_hex(6)}@{ev.name}",
                creation=secrets.randbelow(0xFFFFFFF0) + 1,
            )
            return
        peer = Atom(ev.name)
        if self.get(peer) is not None:
            hs.send_status("alive")
        elif peer in self._pending:
            # both sides dialled: the greater name keeps its own attempt (dist_util)
            hs.send_status("nok" if self.host.name > peer else "ok_simultaneous")
        else:
            hs.send_status("ok")

    # -- the connected phase ----------------------------------------------------------------
    def _start(self, peer: Atom, channel: Channel, done: HandshakeComplete, trailing: bytes) -> Connection:
        node = self.host
        conn = Connection(
            peer,
            channel,
            done.peer_flags,
            done.peer_creation,
            initial_data=trailing,
            max_packet=node.max_packet,
            max_message=node.max_message,
            net_ticktime=node.ticktime_for(peer),
            tick_intensity=node.tick_intensity,
            dispatch=node.dispatch,
            on_down=self._down,
            deliver=node.deliver,
            deliver_signal=node.deliver_signal,
            sinks=node.sinks,
        )
        old = self.connections.get(peer)
        if old is not None:
            self._replace(old)
        self.connections[peer] = conn
        self.history.connected(peer)
        log.info("connected to %s", peer)
        node.connection_up(conn)
        return conn

    def _replace(self, old: Connection) -> None:
        """A new connection to ``old``'s node takes over. erts takes the old one down (its
        links and monitors fire with noconnection, nodedown) before the new one comes up;
        so does this, before the new one is registered: the old one's task ends later, and
        by then its node's name belongs to the new connection."""
        old.close("replaced by a new connection")  # unless it went down already, for a reason
        self._down(old, old.down_reason)

    def _down(self, conn: Connection, reason: Any) -> None:
        if conn in self._reported:  # replaced, and now its task has ended too
            return
        self._reported.add(conn)
        self.history.disconnected(conn.peer, reason)
        log.info("disconnected from %s: %s", conn.peer, reason)
        if self.connections.get(conn.peer) is conn:
            del self.connections[conn.peer]
            self.host.connection_down(conn, reason)
