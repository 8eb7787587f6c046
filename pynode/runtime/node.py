"""The Node: a named member of an Erlang cluster, owning its connections and mailboxes."""

from __future__ import annotations

import asyncio
import copy
import itertools
import logging
import secrets
import ssl
import sys
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
from anyio.abc import TaskGroup

from ..protocol import control as C
from ..protocol.flags import default_flags
from ..protocol.framing import DEFAULT_MAX_MESSAGE, DEFAULT_MAX_PACKET, Message
from ..protocol.transports import Endpoint, TcpEndpoint, parse_endpoint
from ..term import Atom, Pid, Reference, make_ref
from . import advertise, busywait, transport
from . import epmd as epmd_client
from . import listeners as _listeners
from . import rpc as _rpc
from .callbox import CallBox
from .connection import Connection
from .connector import Connector
from .cookie import read_cookie
from .errors import AuthError, ConnectError, ConnectionLost, NodeError  # noqa: F401
from .errors import ConnectTimeout as ConnectTimeout  # importable from here as before
from .iofmt import io_reply, serve_io_request
from .mailbox import Mailbox
from .naming import host_name as _host_name
from .naming import make_node_name as make_node_name  # importable from here as before
from .policy import Ticktimes, TransportPolicy
from .processes import ProcessTable
from .rpc import GenServer, RpcServer
from .signals import Signals, SpawnHandler
from .status import install as _install_status
from .tls import TlsConfig, TlsSides
from .tls import contexts as tls_contexts

if TYPE_CHECKING:
    from .discovery import Discovery

log = logging.getLogger("pynode.node")

_NET_KERNEL = Atom("net_kernel")
# the sends' operations (erl_dist_protocol: SEND_SENDER 22, SEND 2, REG_SEND 6)
_SEND_SENDER, _SEND, _REG_SEND = int(C.DOP.SEND_SENDER), int(C.DOP.SEND), int(C.DOP.REG_SEND)
_EMPTY = Atom("")
_REX = Atom("rex")
_GEN_CALL = Atom("$gen_call")
_IS_AUTH = Atom("is_auth")
_YES = Atom("yes")
_NORMAL = Atom("normal")
_NOPROC = Atom("noproc")
_NOCONNECTION = Atom("noconnection")


async def _nothing() -> None:
    """Closes nothing: the default listener is closed through ``_listeners``."""


class Node:
    """A pynode: ``async with Node("py@127.0.0.1", cookie="secret") as node: ...``.

    Hidden by default (erl's ``nodes()`` won't list it, ``nodes(hidden)`` will); pass
    ``hidden=False`` for a visible node. With ``epmd=False`` nothing is registered and peers
    must be given as host:port (see ``connect(address=...)``). With ``tls`` (a
    :class:`~pynode.runtime.tls.TlsConfig`, or :func:`~pynode.runtime.tls.read_optfile` of an
    erl ``-ssl_dist_optfile``) the node speaks TLS distribution like ``erl -proto_dist inet_tls``
    on its TCP endpoints (Unix-socket connections stay local and plain).

    ``listen`` takes several endpoints at once (``"tcp://127.0.0.1:0"``, ``"tcp://[::1]:0"``,
    ``"unix:/run/x.sock"``; instead of ``listen_host``/``port``); ``policy`` picks the transport
    per peer and ``peer_ticktimes`` (mapping of names or globs, or a callable) the tick time per
    peer: see :mod:`pynode.runtime.policy` and README "Transports".

    On an asyncio loop the node makes the loop poll for ``busy_wait`` seconds (300 us) before
    it sleeps, as erl's schedulers do: a local peer's reply then costs no wake-up (round trips
    about 30% faster, for at most that much CPU per idle moment, and none while most spins run
    out: :class:`~pynode.runtime.busywait.SpinGate`). ``busy_wait=0`` turns it off
    (for this node: the loop spins as long as any node on it asks). uvloop and trio have no
    such hook. A BlockingNode's thread blocked in a receive spins as long (on any loop).
    """

    def __init__(
        self,
        name: str | None = None,
        cookie: str | None = None,
        *,
        hidden: bool = True,
        longnames: bool | None = None,
        host: str | None = None,
        listen_host: str | None = None,
        port: int | tuple[int, int] = 0,
        epmd: bool = True,
        epmd_host: str = "127.0.0.1",
        epmd_port: int | None = None,
        net_ticktime: float = 60.0,
        tick_intensity: int = 4,
        setup_time: float = 7.0,
        max_packet: int = DEFAULT_MAX_PACKET,
        max_message: int = DEFAULT_MAX_MESSAGE,
        fragments: bool = True,
        atom_cache: bool = True,
        creation: int | None = None,
        dynamic: bool = False,
        io_output: Callable[[str], None] | None = None,
        listen: Sequence[str | Endpoint] | None = None,
        policy: TransportPolicy | None = None,
        peer_ticktimes: Ticktimes | None = None,
        tls: TlsConfig | TlsSides | None = None,
        busy_wait: float = busywait.DEFAULT_SPIN,
    ) -> None:
        self.busy_wait = busy_wait
        """Seconds an asyncio loop polls before it sleeps, while this node runs on it (as
        erl's schedulers busy-wait; 0 turns it off): see :mod:`pynode.runtime.busywait`."""
        self._spinner: busywait.SpinningSelector | None = None
        self.tls_server: ssl.SSLContext | None = None
        self.tls_client: ssl.SSLContext | None = None
        """TLS distribution (erl -proto_dist inet_tls): every connection, in and out, is TLS."""
        if tls is not None:
            self.tls_server, self.tls_client = tls_contexts(tls)  # TlsConfigError now, not later
        self.dynamic = dynamic
        """Ask the first peer for our name (NAME_ME, like erl -name undefined / erl_call -R)."""
        if io_output is not None:
            self.io_output = io_output  # type: ignore[method-assign,assignment]
        if dynamic:
            if name is not None and "@" in name:
                host = name.partition("@")[2]
            self.name = Atom(f"undefined@{host or _host_name(bool(longnames))}")
            epmd = False
        else:
            self.name = Atom(make_node_name(name, longnames=longnames, host=host))
        self._cookie = cookie
        self.hidden = hidden
        self.listen_host = listen_host
        self._port_spec = port
        self.use_epmd = epmd
        self.epmd_host = epmd_host
        self.epmd_port = epmd_port
        self.net_ticktime = net_ticktime
        self.ticktimes: dict[Atom, float] = {}
        """net_ticktime per peer node, where it is not ``net_ticktime`` (see set_net_ticktime)."""
        self.tick_intensity = tick_intensity
        self.setup_time = setup_time
        self.max_packet = max_packet
        self.max_message = max_message
        self.flags = default_flags(hidden=hidden, fragments=fragments, atom_cache=atom_cache)
        self.creation = creation if creation is not None else secrets.randbelow(0xFFFFFFF0) + 1
        self.port = 0
        self._tg: TaskGroup | None = None
        self._loop: asyncio.AbstractEventLoop | None = None  # the asyncio loop we run in, if any
        self._call_box: CallBox | None = None
        self._refs = itertools.count(secrets.randbits(80))  # next() is atomic: any thread
        self._listeners: list[transport.Listener] = []
        self._event_streams: list[Any] = []
        self._registration: epmd_client.Registration | None = None
        self._endpoints = [parse_endpoint(e) for e in listen] if listen is not None else None
        if self._endpoints is not None:
            if not self._endpoints:
                raise ValueError("listen needs at least one endpoint")
            if listen_host is not None or port != 0:
                raise ValueError("give either listen=[...] or listen_host/port, not both")
        self.listening: list[_listeners.Listening] = []
        """Every bound endpoint (real ports), in ``listen`` order; advertised in this order."""
        self._extra_regs: list[epmd_client.TransportRegistration] = []
        # a copy: adding this node's host (and peer_ticktimes) must not change a shared policy
        self.policy = copy.copy(policy) if policy is not None else TransportPolicy()
        """Which transport to dial per peer and per-peer tick times (runtime/policy.py)."""
        self.policy.add_local_host(self.name.partition("@")[2])
        if peer_ticktimes is not None:
            self.policy.ticktimes = peer_ticktimes
        self._started = False
        self.processes = ProcessTable(self.name, self.creation)
        """Every process (mailbox) of this node: pids, names, aliases, monitors."""
        self.signals = Signals(self)
        self.dispatch: Callable[[Connection, Message], None] = self.signals.dispatch  # no extra call
        self.deliver: Callable[[Any, Any], bool] = self.signals.deliver_send
        self.sinks: dict[Any, tuple[Any, ...]] = self.processes.sinks  # and most go straight in
        self.deliver_signal: Callable[[Connection, tuple[Any, ...], Any], bool] = self.signals.deliver_signal
        self.connector = Connector(self)
        """Every connection of this node, and how they are set up."""
        self.rpc_server = RpcServer(self)
        self.signals.serve_name(_NET_KERNEL, self._net_kernel)
        self.signals.serve_name(_REX, self.rpc_server.rex)
        _install_status(self)  # the pynode_status process
        self.pid: Pid  # the node's own pid, the sender of messages sent without a mailbox
        self.group_leader: Pid  # answers io requests of processes we spawn elsewhere
        self.signals.spawn_handler(
            "erpc", "execute_call", self.rpc_server.execute_call, self.rpc_server.execute_call_now
        )

    def __repr__(self) -> str:
        return f"<Node {self.name} port={self.port} {'hidden' if self.hidden else 'visible'}>"

    @property
    def cookie(self) -> str:
        if self._cookie is None:
            self._cookie = read_cookie()
        return self._cookie

    # -- lifetime ---------------------------------------------------------------------------
    async def __aenter__(self) -> Node:
        _ = self.cookie  # fail early on an unreadable cookie file
        self._loop = transport.running_asyncio_loop()
        self._spinner = busywait.install(self._loop, self.busy_wait)
        self._tg_cm = anyio.create_task_group()
        self._tg = await self._tg_cm.__aenter__()
        try:
            await self._start()
        except BaseException:
            self._tg.cancel_scope.cancel()
            try:
                await self._tg_cm.__aexit__(None, None, None)
            finally:  # the listeners and the loop's own selector come back even then
                await self._release()
            raise
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> bool | None:
        await self.stop()
        try:
            # the body's own exception propagates as it is, not wrapped in a group
            await self._tg_cm.__aexit__(None, None, None)
        finally:
            await self._release()
        return None

    async def _start(self) -> None:
        assert self._tg is not None
        if self._endpoints is None:
            listener = await self._listen()
            self._listeners.append(listener)
            self.port = listener.port
            self.listening.append(
                _listeners.Listening(TcpEndpoint(self.listen_host, listener.port), _nothing)
            )
        else:
            for endpoint in self._endpoints:
                try:
                    lst = await _listeners.listen(
                        endpoint, self.connector.accept, self._tg, self.tls_server, self.setup_time
                    )
                except OSError as e:
                    raise NodeError(f"cannot listen on {endpoint}: {e}") from None
                self.listening.append(lst)
            self.port = self.listening[advertise.primary_index(self.listening)].port
        if self.use_epmd:
            alive = self.name.split("@")[0]
            self._registration = await advertise.register_primary(
                alive, self.listening, host=self.epmd_host, port=self.epmd_port, hidden=self.hidden
            )
            await self._advertise_extras(alive)
            self.creation = self._registration.creation or self.creation
            self.processes.rename(self.name, self.creation)
            self._tg.start_soon(self._keep_registered, alive)
        if not self.dynamic:
            self._make_own_processes()
        self._started = True
        log.info("node %s listening on port %d", self.name, self.port)

    def named(self, name: Atom, creation: int) -> None:
        """A peer gave this dynamic node its name (NAME_ME)."""
        self.name = name
        self.creation = creation
        self.processes.rename(name, creation)
        self._make_own_processes()

    def _make_own_processes(self) -> None:
        """The node has its name: make its own pid and group leader."""
        self.pid = self.processes.new_pid()
        gl = self.mailbox()
        self.group_leader = gl.pid
        assert self._tg is not None
        self._tg.start_soon(self._io_server, gl)

    @property
    def has_name(self) -> bool:
        """False for a dynamic node until a peer has named it."""
        return not (self.dynamic and self.name.startswith("undefined@"))

    async def _listen(self) -> Any:
        spec = self._port_spec
        ports = [spec] if isinstance(spec, int) else list(range(spec[0], spec[1] + 1))
        last: Exception | None = None
        for p in ports:
            try:
                assert self._tg is not None
                return await transport.listen_tcp(
                    self.listen_host, p, self.connector.accept, self._tg, self.tls_server, self.setup_time
                )
            except OSError as e:
                last = e
        raise NodeError(f"cannot listen on {self.listen_host or '*'} port {spec}: {last}")

    async def stop(self) -> None:
        """Close every connection and mailbox, unregister from EPMD, stop listening."""
        if not self._started:
            return
        self._started = False
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        self.connector.close_all("node stopping")
        for mb in self.processes.mailboxes():
            mb._closed_by_node(Atom("shutdown"))
        for s in self._event_streams:
            s.close()

    async def _release(self) -> None:
        busywait.uninstall(self._loop, self._spinner)
        self._spinner = None
        with anyio.CancelScope(shield=True):
            for lst in self._listeners:
                await lst.aclose()
            self._listeners.clear()
            for listening in self.listening:
                await listening.aclose()  # a Unix listener removes its socket file
            self.listening.clear()
            for extra in self._extra_regs:
                await extra.aclose()
            self._extra_regs.clear()
            if self._registration is not None:
                await self._registration.stream.aclose()
                self._registration = None

    async def _keep_registered(self, alive: str) -> None:
        """Hold the EPMD connection; when EPMD goes away, register again every 2 s (as OTP)."""
        while True:
            reg = self._registration
            if reg is not None:
                try:
                    while await reg.stream.receive(64):
                        pass  # EPMD never sends on this connection
                except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                    pass
                log.warning("lost the EPMD registration of %s; re-registering", self.name)
                await reg.stream.aclose()
                self._registration = None
            for extra in self._extra_regs:
                await extra.aclose()
            self._extra_regs.clear()
            await anyio.sleep(2.0)
            try:
                self._registration = await advertise.register_primary(
                    alive, self.listening, host=self.epmd_host, port=self.epmd_port, hidden=self.hidden
                )
                await self._advertise_extras(alive)
                log.info("re-registered %s with EPMD", self.name)
            except epmd_client.EpmdError as e:
                log.debug("EPMD registration failed, retrying: %s", e)

    async def _advertise_extras(self, alive: str) -> None:
        """Every listener but the primary, through pynode's EPMD extension (none with epmd)."""
        if len(self.listening) > 1:
            self._extra_regs = await advertise.add_extras(
                alive, self.listening, host=self.epmd_host, port=self.epmd_port, hidden=self.hidden
            )

    @property
    def advertised(self) -> int:
        """How many transports EPMD holds for this node (0 unregistered; 1 with a plain epmd)."""
        return (1 + len(self._extra_regs)) if self._registration is not None else 0

    # -- identifiers ------------------------------------------------------------------------
    def make_ref(self) -> Reference:
        """A new reference of this node (unique for its lifetime)."""
        n = next(self._refs)
        # erts' layout: 18 bits, then 32, then 32; a counter seeded at random fills them
        # (a ref must be unique, not secret, and one from the OS random source per call costs
        # a syscall on the rpc path)
        return make_ref(self.name, self.creation, n)

    # -- mailboxes --------------------------------------------------------------------------
    def mailbox(self, name: str | None = None) -> Mailbox:
        """A new mailbox (a new pid), registered under ``name`` if given."""
        if not self.has_name:
            raise NodeError("a dynamic node has no name until it connects: connect first")
        mb = self.mailbox_for(self.processes.new_pid())
        if name is not None:
            self.processes.register(name, mb)
        return mb

    def mailbox_for(self, pid: Pid) -> Mailbox:
        """A mailbox for ``pid``, from ``processes.new_pid()``: a spawned process gets its pid
        at once and a mailbox only if it outlives the call that started it."""
        mb = Mailbox(self, pid, loop=self._loop)
        self.processes.add(mb)
        return mb

    def call_box(self) -> CallBox:
        """The process this node's calls (rpc) are made from, made on first use and again
        after something killed it."""
        box = self._call_box
        if box is None or box.closed:
            if not self.has_name:
                raise NodeError("a dynamic node has no name until it connects: connect first")
            box = self._call_box = CallBox(self, self.processes.new_pid(), loop=self._loop)
            self.processes.add(box)
        return box

    def register(self, name: str, mailbox: Mailbox) -> None:
        """Register ``mailbox`` under ``name``; a name can only be taken once."""
        self.processes.register(name, mailbox)

    def unregister(self, name: str) -> None:
        self.processes.unregister(name)

    def whereis(self, name: str) -> Pid | None:
        mb = self.processes.whereis(name)
        return mb.pid if mb is not None else None

    def registered(self) -> list[Atom]:
        return self.processes.registered()

    # -- sending ----------------------------------------------------------------------------
    async def send(self, dest: Any, message: Any, *, sender: Pid | None = None) -> None:
        """Send to a Pid, a registered name (str/Atom) here, ``(name, node)`` or an alias.

        Like Erlang's ``!``: it does not wait for delivery and a dead local pid is not an
        error; an unreachable node raises ConnectError. Waits while a slow peer has more than
        HIGH_WATER bytes queued.
        """
        await self._send(dest, message, sender)

    async def _send(self, dest: Any, message: Any, sender: Pid | None) -> Connection | None:
        """:meth:`send`; returns the connection the message went out on (None: not remote)."""
        r = self.send_nowait(dest, message, sender=sender)
        if r is None:
            return None
        if type(r) is Atom:
            await self.connect(r)
            r = self.send_nowait(dest, message, sender=sender)
            if r is None:
                return None
            if type(r) is Atom:
                raise ConnectionLost(f"the connection to {r} went down at once")
        assert isinstance(r, Connection)
        if r.channel.congested():
            await r.channel.drain()
        return r

    def remote_route(self, dest: Any, sender: Pid) -> tuple[Connection, Any] | None:
        """The live connection and control message a send from ``sender`` to ``dest`` on
        another node takes; None when ``dest`` is here, not connected, or not a remote
        pid, ``(name, node)`` or alias that the connection can carry. Reads only: any thread
        may ask (the blocking API encodes on its own thread).

        A send's control message is its wire tuple (SEND_SENDER, SEND, REG_SEND), which the
        framing encodes as it is: a message is the hot path, and a control object costs
        more than the rest of its way to the socket."""
        t = type(dest)
        if t is Pid:
            if dest.node == self.name:
                return None
            conn = self.connector.connections.get(dest.node)
            if conn is None or not conn.alive:
                return None
            if conn.send_sender:
                return conn, (_SEND_SENDER, sender, dest)
            return conn, (_SEND, _EMPTY, dest)
        if t is tuple and len(dest) == 2:
            name, node = dest
            if node == self.name:
                return None
            conn = self.connector.get(node if type(node) is Atom else Atom(node))
            if conn is None:
                return None
            return conn, (_REG_SEND, sender, _EMPTY, name if type(name) is Atom else Atom(name))
        if t is Reference and dest.node != self.name:
            conn = self.connector.get(dest.node)
            if conn is None or not conn.aliases:
                return None
            return conn, C.AliasSend(sender, dest)
        return None

    def send_nowait(self, dest: Any, message: Any, *, sender: Pid | None = None) -> Connection | Atom | None:
        """Send now if no connection must be made first (never blocks): the connection used,
        None when delivered here (or dropped, as ``!`` drops), or the name of the node that
        must be connected first (then nothing was sent)."""
        route = self.remote_route(dest, sender or self.pid)
        if route is not None:
            conn, control = route
            conn.send_nowait(control, message)
            return conn
        return self._send_unrouted(dest, message)

    def _send_unrouted(self, dest: Any, message: Any) -> Atom | None:
        """send_nowait for a ``dest`` that ``remote_route`` has no route to: deliver it
        here, drop it, or name the node to connect to first."""
        t = type(dest)
        if t is Pid:
            if dest.node != self.name:
                return dest.node
            mb = self.processes.local(dest)
            if mb is not None:
                mb._deliver(message)
            return None
        if t is tuple and len(dest) == 2:
            name, node = dest
            if node != self.name:
                return node if type(node) is Atom else Atom(node)
            dest = name
        elif t is Reference:  # an alias (OTP 24+)
            if dest.node != self.name:
                # unconnected: connect first; connected without ALIAS: dropped, as erts does
                return dest.node if self.connector.get(dest.node) is None else None
            mb = self.processes.aliases.get(dest)
            if mb is not None:
                mb._deliver(message)
            return None
        if isinstance(dest, str):
            mb = self.processes.whereis(dest)
            if mb is None:
                raise NodeError(f"no process registered as {dest!r} on {self.name}")
            mb._deliver(message)
            return None
        raise TypeError(f"cannot send to {dest!r}")

    # -- connections ------------------------------------------------------------------------
    def nodes(self) -> list[Atom]:
        """The nodes this node is connected to now."""
        return [n for n, c in self.connector.connections.items() if c.alive]

    def add_address(self, node: str, host: str, port: int) -> None:
        """Reach ``node`` at host:port directly, without asking EPMD."""
        self.connector.addresses[Atom(node)] = (host, port)

    def add_endpoint(self, node: str, endpoint: str | Endpoint) -> None:
        """Reach ``node`` at ``endpoint`` (``"unix:/path"``, ``"tcp://host:port"``) without EPMD."""
        self.connector.endpoints[Atom(node)] = parse_endpoint(endpoint)

    def is_connected(self, node: str) -> bool:
        return self.connector.get(Atom(node)) is not None

    def ticktime_for(self, node: Atom) -> float:
        """The net_ticktime a new connection to ``node`` gets (runtime/policy.py's order)."""
        t = self.ticktimes.get(node)
        if t is not None:
            return t
        try:
            chosen = self.policy.ticktime_for(node)
        except Exception as e:  # a user's callable or mapping: never break the connection
            log.warning("peer_ticktimes failed for %s, using net_ticktime: %r", node, e)
            chosen = None
        return chosen if chosen is not None else self.net_ticktime

    def set_net_ticktime(self, node: str, seconds: float) -> None:
        """net_ticktime for the connection to ``node`` only, now and on every reconnect: a
        peer across a slow link may get longer than the rest, a critical one shorter
        (erl has one net_ticktime per node; the OTP board asked for one per connection)."""
        if not seconds > 0:
            raise ValueError(f"net_ticktime must be positive, not {seconds!r}")
        peer = Atom(node)
        self.ticktimes[peer] = seconds
        conn = self.connector.get(peer)
        if conn is not None:
            conn.set_net_ticktime(seconds)

    def connection(self, node: Atom) -> Connection | None:
        """The live connection to ``node``, or None (never dials)."""
        return self.connector.get(node)

    async def connect(
        self,
        node: str,
        *,
        address: tuple[str, int] | str | Endpoint | None = None,
        timeout: float | None = None,
    ) -> Connection:
        """The connection to ``node``, set up on demand (EPMD look-up unless an address is
        known). ``address``: ``(host, port)``, ``"tcp://host:port"`` or ``"unix:/path"``."""
        peer = Atom(node)
        conn = self.connector.get(peer)
        if conn is not None:
            return conn
        if peer == self.name:
            raise ConnectError("a node does not connect to itself")
        if isinstance(address, tuple):
            self.add_address(peer, *address)
        elif address is not None:
            self.add_endpoint(peer, address)
        limit = timeout if timeout is not None else self.setup_time * 4 + 10
        return await self.connector.connect(peer, limit)

    # -- what the parts of the node call back ----------------------------------------------------
    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        """Run ``fn(*args)`` in the node's task group (it ends when the node stops)."""
        assert self._tg is not None
        self._tg.start_soon(fn, *args)

    def connection_up(self, conn: Connection) -> None:
        self._emit(("nodeup", conn.peer))

    def connection_down(self, conn: Connection, reason: Any) -> None:
        self.signals.connection_down(conn.peer)
        self._emit(("nodedown", conn.peer, reason))

    def discover(self, *sources: Any, **options: Any) -> Discovery:
        """The discovery service (:class:`~pynode.runtime.discovery.Discovery`): ``async with
        node.discover(LocalEpmd(), include=["app*"]) as d: async for event in d: ...`` keeps
        this node connected to every node the sources find (the local EPMD by default)."""
        from .discovery import Discovery  # imported on use: most nodes never discover

        return Discovery(self, sources, **options)

    # -- process signals (a Mailbox's link, monitor, exit... are node.signals') -----------------
    def spawn_handler(self, module: str, function: str, handler: SpawnHandler) -> None:
        """Serve spawn requests for ``module:function``: ``handler(mailbox, *args)`` runs as
        the new process; returning ends it with reason normal, ProcessExit with its reason."""
        self.signals.spawn_handler(module, function, handler)

    # -- node events ------------------------------------------------------------------------
    @asynccontextmanager
    async def node_events(self, max_buffer: int = 1000) -> AsyncIterator[Any]:
        """``("nodeup", node)`` and ``("nodedown", node, reason)`` events while the block runs."""
        send, receive = anyio.create_memory_object_stream[Any](max_buffer)
        self._event_streams.append(send)
        try:
            async with receive:
                yield receive
        finally:
            self._event_streams.remove(send)
            send.close()

    def _emit(self, event: Any) -> None:
        for s in list(self._event_streams):
            try:
                s.send_nowait(event)
            except anyio.WouldBlock:
                log.warning("node event listener is not keeping up; dropped %r", event)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

    # -- net_kernel and rex, as far as a node must answer them ------------------------------
    def _net_kernel(self, conn: Connection, from_pid: Pid, message: Any) -> None:
        # {'$gen_call', {From, Tag}, {is_auth, Node}}: net_adm:ping/1
        if (
            type(message) is tuple
            and len(message) == 3
            and message[0] == _GEN_CALL
            and type(message[1]) is tuple
            and len(message[1]) == 2
        ):
            caller, tag = message[1]
            request = message[2]
            if type(request) is tuple and request and request[0] == _IS_AUTH and type(caller) is Pid:
                conn.send_nowait(C.Send(caller), (tag, _YES))

    # -- RPC and gen_server ---------------------------------------------------------------
    def rpc(
        self,
        node: str,
        module: str,
        function: str,
        args: list[Any] | tuple[Any, ...] = (),
        *,
        timeout: float | None = None,
        capture_output: bool = False,
    ) -> Coroutine[Any, Any, Any]:
        """``erpc:call(Node, M, F, A, Timeout)``, awaited; raises RemoteError, RpcTimeout,
        NoConnection.

        With ``capture_output`` returns ``(value, printed_text)``.

        Not a coroutine function: the call's own coroutine (:func:`pynode.runtime.rpc.rpc`)
        comes back, one coroutine fewer per call.
        """
        return _rpc.rpc(
            self, node, module, function, args, timeout=timeout, capture_output=capture_output
        )

    async def cast(self, node: str, module: str, function: str, args: list[Any] | tuple[Any, ...] = ()) -> None:
        """``erpc:cast/4``: fire and forget."""
        await _rpc.cast(self, node, module, function, args)

    async def multicall(
        self, nodes: list[str], module: str, function: str, args: list[Any] | tuple[Any, ...] = (),
        *, timeout: float | None = None,
    ) -> list[tuple[str, Any]]:
        """``erpc:multicall``: ``('ok', Value)`` or ``('error', exception)`` per node."""
        return await _rpc.multicall(self, nodes, module, function, args, timeout=timeout)

    async def call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
        """``gen_server:call(Dest, Request, Timeout)``; raises CallError or RpcTimeout."""
        return await _rpc.gen_call(self, dest, request, timeout)

    async def gen_cast(self, dest: Any, request: Any) -> None:
        """``gen_server:cast(Dest, Request)``."""
        await _rpc.gen_cast(self, dest, request)

    def expose(self, module: str, function: str | None = None) -> Callable[[Any], Any]:
        """Decorator: serve a Python function to erl as ``module:function`` (sync or async)."""

        def register(fn: Any) -> Any:
            self.rpc_server.register(module, function or fn.__name__, fn)
            return fn

        return register

    def expose_module(self, pymodule: Any, name: str | None = None) -> list[str]:
        """Serve every public function of a Python module; returns their names."""
        return self.rpc_server.register_module(pymodule, name)

    def start_server(self, server: GenServer, name: str | None = None) -> Mailbox:
        """Run a :class:`GenServer` in its own mailbox (registered as ``name``)."""
        mb = self.mailbox(name)
        assert self._tg is not None
        self._tg.start_soon(server.serve, self, mb)
        return mb

    # -- group leader ---------------------------------------------------------------------
    async def _io_server(self, gl: Mailbox, output: Callable[[str], None] | None = None) -> None:
        """Answer the io protocol for processes we spawn on other nodes (their group leader),
        so io:format there never blocks; the text goes to ``output`` or ``self.io_output``."""
        async for msg in gl:
            answer = serve_io_request(msg, output or self.io_output)
            if answer is not None:
                try:
                    await self.send(answer[0], answer[1], sender=gl.pid)
                except Exception as e:  # the requester's node went away
                    log.debug("io reply failed: %s", e)

    def _io_request(self, request: Any, output: Callable[[str], None]) -> Any:
        return io_reply(request, output)

    def capture_group_leader(self) -> tuple[Pid, list[str], Mailbox]:
        """A fresh group leader whose output is collected in the returned list (close the
        mailbox when done); for rpc with captured output."""
        gl = self.mailbox()
        out: list[str] = []
        assert self._tg is not None
        self._tg.start_soon(self._io_server, gl, out.append)
        return gl.pid, out, gl

    def io_output(self, text: str) -> None:
        """Where output of remote processes we spawned goes: stdout unless ``Node(io_output=...)``."""
        sys.stdout.write(text)

    # -- ping -------------------------------------------------------------------------------
    async def ping(self, node: str, timeout: float = 10.0) -> bool:
        """``net_adm:ping/1``: True (pong) when ``node`` answers, False (pang) otherwise."""
        try:
            with anyio.fail_after(timeout):
                await self.connect(node)
                mb = self.mailbox()
                try:
                    ref = self.make_ref()
                    await self.send(
                        (_NET_KERNEL, node),
                        (_GEN_CALL, (mb.pid, ref), (_IS_AUTH, self.name)),
                        sender=mb.pid,
                    )
                    reply = await mb.receive(
                        match=lambda m: type(m) is tuple and len(m) == 2 and m[0] == ref
                    )
                    return reply[1] == _YES
                finally:
                    mb.close()
        except (ConnectError, TimeoutError, ConnectionLost) as e:
            log.info("ping %s: pang (%s)", node, e)
            return False
