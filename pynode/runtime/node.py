"""The Node: a named member of an Erlang cluster, owning its connections and mailboxes."""

from __future__ import annotations

import logging
import secrets
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup

from ..protocol import control as C
from ..protocol.errors import HandshakeError
from ..protocol.flags import DFlag, default_flags
from ..protocol.framing import DEFAULT_MAX_MESSAGE, DEFAULT_MAX_PACKET
from ..protocol.handshake import (
    Acceptor,
    HandshakeComplete,
    Initiator,
    NameReceived,
    StatusReceived,
    WaitingForOldConnection,
)
from ..term import Atom, Pid, Reference
from . import epmd as epmd_client
from . import rpc as _rpc
from .connection import Connection, ConnectionLost, drive_handshake
from .cookie import read_cookie
from .errors import AuthError, ConnectError, NodeError
from .errors import ConnectTimeout as ConnectTimeout  # importable from here as before
from .iofmt import io_reply, serve_io_request
from .mailbox import Mailbox
from .naming import host_name as _host_name
from .naming import make_node_name as make_node_name  # importable from here as before
from .rpc import GenServer, RpcServer
from .signals import Signals

log = logging.getLogger("pynode.node")

_NET_KERNEL = Atom("net_kernel")
_REX = Atom("rex")
_GEN_CALL = Atom("$gen_call")
_IS_AUTH = Atom("is_auth")
_YES = Atom("yes")
_NORMAL = Atom("normal")
_NOPROC = Atom("noproc")
_NOCONNECTION = Atom("noconnection")


class _Pending:
    """An outgoing connection attempt others may wait on."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.error: BaseException | None = None
        self.incoming = anyio.Event()  # set when the peer's own attempt (which won) ends


class Node(Signals):
    """A pynode: ``async with Node("py@127.0.0.1", cookie="secret") as node: ...``.

    Hidden by default (erl's ``nodes()`` won't list it, ``nodes(hidden)`` will); pass
    ``hidden=False`` for a visible node. With ``epmd=False`` nothing is registered and peers
    must be given as host:port (see ``connect(address=...)``).
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
    ) -> None:
        self.dynamic = dynamic
        if io_output is not None:
            self.io_output = io_output  # type: ignore[method-assign]
        """Ask the first peer for our name (NAME_ME, like erl -name undefined / erl_call -R)."""
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
        self.tick_intensity = tick_intensity
        self.setup_time = setup_time
        self.max_packet = max_packet
        self.max_message = max_message
        self.flags = default_flags(hidden=hidden, fragments=fragments, atom_cache=atom_cache)
        self.creation = creation if creation is not None else secrets.randbelow(0xFFFFFFF0) + 1
        self.port = 0
        self._tg: TaskGroup | None = None
        self._connections: dict[Atom, Connection] = {}
        self._pending: dict[Atom, _Pending] = {}
        self._addresses: dict[Atom, tuple[str, int]] = {}
        self._mailboxes: dict[int, Mailbox] = {}
        self._registered: dict[Atom, Mailbox] = {}
        self._next_id = 1
        self._serial = 0
        self._ref_counter = secrets.randbelow(1 << 40)
        self._listeners: list[Any] = []
        self._event_streams: list[Any] = []
        self._registration: epmd_client.Registration | None = None
        self._started = False
        self.rpc_server = RpcServer(self)
        self._reg_send_handlers: dict[Atom, Callable[[Connection, Pid, Any], None]] = {
            _NET_KERNEL: self._net_kernel,
            _REX: self.rpc_server.rex,
        }
        self.pid: Pid  # the node's own pid, the sender of messages sent without a mailbox
        self.group_leader: Pid  # answers io requests of processes we spawn elsewhere
        self._init_signals()
        self._naming_lock: Any = None  # an anyio.Lock, made in __aenter__
        self.spawn_handler("erpc", "execute_call", self.rpc_server.execute_call)

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
        self._naming_lock = anyio.Lock()
        self._tg_cm = anyio.create_task_group()
        self._tg = await self._tg_cm.__aenter__()
        try:
            await self._start()
        except BaseException:
            self._tg.cancel_scope.cancel()
            await self._tg_cm.__aexit__(None, None, None)
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
        listener = await self._listen()
        self._listeners.append(listener)
        self.port = listener.extra(SocketAttribute.local_port)
        if self.use_epmd:
            alive = self.name.split("@")[0]
            self._registration = await epmd_client.register(
                alive, self.port, host=self.epmd_host, port=self.epmd_port, hidden=self.hidden
            )
            self.creation = self._registration.creation or self.creation
            self._tg.start_soon(self._keep_registered, alive)
        if not self.dynamic:
            self._named()
        self._tg.start_soon(self._serve, listener)
        self._started = True
        log.info("node %s listening on port %d", self.name, self.port)

    def _named(self) -> None:
        """The node has its name: make its own pid and group leader."""
        self.pid = self._new_pid()
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
                return await anyio.create_tcp_listener(local_host=self.listen_host, local_port=p)
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
        for conn in list(self._connections.values()):
            conn.close("node stopping")
        for mb in list(self._mailboxes.values()):
            mb._closed_by_node(Atom("shutdown"))
        for s in self._event_streams:
            s.close()

    async def _release(self) -> None:
        with anyio.CancelScope(shield=True):
            for lst in self._listeners:
                await lst.aclose()
            self._listeners.clear()
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
            await anyio.sleep(2.0)
            try:
                self._registration = await epmd_client.register(
                    alive, self.port, host=self.epmd_host, port=self.epmd_port, hidden=self.hidden
                )
                log.info("re-registered %s with EPMD", self.name)
            except epmd_client.EpmdError as e:
                log.debug("EPMD registration failed, retrying: %s", e)

    # -- identifiers ------------------------------------------------------------------------
    def _new_pid(self) -> Pid:
        i = self._next_id
        self._next_id += 1
        if self._next_id > 0x7FFF:
            self._next_id = 1
            self._serial = (self._serial + 1) & 0x1FFF
        return Pid(self.name, i, self._serial, self.creation)

    def make_ref(self) -> Reference:
        """A new reference of this node (unique for its lifetime)."""
        self._ref_counter += 1
        n = self._ref_counter
        return Reference(self.name, self.creation, (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, secrets.randbits(32)))

    @staticmethod
    def _key(pid: Pid) -> int:
        return pid.id | (pid.serial << 32)

    def _is_local(self, pid: Pid) -> bool:
        return pid.node == self.name and pid.creation == self.creation

    # -- mailboxes --------------------------------------------------------------------------
    def mailbox(self, name: str | None = None) -> Mailbox:
        """A new mailbox (a new pid), registered under ``name`` if given."""
        if not self.has_name:
            raise NodeError("a dynamic node has no name until it connects: connect first")
        mb = Mailbox(self, self._new_pid())
        self._mailboxes[self._key(mb.pid)] = mb
        if name is not None:
            self.register(name, mb)
        return mb

    def register(self, name: str, mailbox: Mailbox) -> None:
        """Register ``mailbox`` under ``name``; a name can only be taken once."""
        a = Atom(name)
        if a in self._registered or a in self._reg_send_handlers:
            raise NodeError(f"name {name!r} is already registered on {self.name}")
        if mailbox.name is not None:
            raise NodeError(f"{mailbox!r} is already registered as {mailbox.name}")
        self._registered[a] = mailbox
        mailbox.name = a

    def unregister(self, name: str) -> None:
        mb = self._registered.pop(Atom(name), None)
        if mb is not None:
            mb.name = None

    def whereis(self, name: str) -> Pid | None:
        mb = self._registered.get(Atom(name))
        return mb.pid if mb is not None else None

    def registered(self) -> list[Atom]:
        return list(self._registered)

    def _forget_mailbox(self, mb: Mailbox) -> None:
        self._mailboxes.pop(self._key(mb.pid), None)
        if mb.name is not None and self._registered.get(mb.name) is mb:
            del self._registered[mb.name]

    def _deliver_local(self, pid: Pid, message: Any) -> bool:
        if pid.creation != self.creation:
            return False
        mb = self._mailboxes.get(pid.id | (pid.serial << 32))
        if mb is None:
            return False
        mb._deliver(message)
        return True

    # -- sending ----------------------------------------------------------------------------
    async def send(self, dest: Any, message: Any, *, sender: Pid | None = None) -> None:
        """Send to a Pid, a registered name (str/Atom) here, or ``(name, node)``.

        Like Erlang's ``!``: it does not wait for delivery and a dead local pid is not an
        error; an unreachable node raises ConnectError.
        """
        if type(dest) is Pid:
            if dest.node == self.name:
                self._deliver_local(dest, message)
                return
            conn = self._connections.get(dest.node)
            if conn is None or not conn.alive:
                conn = await self.connect(dest.node)
            if sender is not None and conn.flags & DFlag.SEND_SENDER:
                await conn.send(C.SendSender(sender, dest), message)
            else:
                await conn.send(C.Send(dest), message)
            return
        if type(dest) is tuple and len(dest) == 2:
            name, node = dest
            if type(name) is not Atom:
                name = Atom(name)
            if type(node) is not Atom:
                node = Atom(node)
            if node != self.name:
                conn = self._connections.get(node)
                if conn is None or not conn.alive:
                    conn = await self.connect(node)
                await conn.send(C.RegSend(sender or self.pid, name), message)
                return
            dest = name
        if isinstance(dest, str):
            mb = self._registered.get(Atom(dest))
            if mb is None:
                raise NodeError(f"no process registered as {dest!r} on {self.name}")
            mb._deliver(message)
            return
        if type(dest) is Reference:  # an alias (OTP 24+)
            if dest.node == self.name:
                mb = self._aliases.get(dest)
                if mb is not None:
                    mb._deliver(message)
                return
            conn = await self.connect(dest.node)
            if conn.flags & DFlag.ALIAS:
                await conn.send(C.AliasSend(sender or self.pid, dest), message)
            return
        raise TypeError(f"cannot send to {dest!r}")

    # -- connections ------------------------------------------------------------------------
    def nodes(self) -> list[Atom]:
        """The nodes this node is connected to now."""
        return [n for n, c in self._connections.items() if c.alive]

    def add_address(self, node: str, host: str, port: int) -> None:
        """Reach ``node`` at host:port directly, without asking EPMD."""
        self._addresses[Atom(node)] = (host, port)

    def is_connected(self, node: str) -> bool:
        c = self._connections.get(Atom(node))
        return c is not None and c.alive

    async def connect(
        self, node: str, *, address: tuple[str, int] | None = None, timeout: float | None = None
    ) -> Connection:
        """The connection to ``node``, set up on demand (EPMD look-up unless an address is known)."""
        peer = Atom(node)
        conn = self._connections.get(peer)
        if conn is not None and conn.alive:
            return conn
        if peer == self.name:
            raise ConnectError("a node does not connect to itself")
        if address is not None:
            self.add_address(peer, *address)
        limit = timeout if timeout is not None else self.setup_time * 4 + 10
        try:
            return await self._connect_within(peer, limit)
        except TimeoutError:
            raise ConnectTimeout(f"cannot connect to {peer}: no connection within {limit} s") from None

    async def _connect_within(self, peer: Atom, limit: float) -> Connection:
        with anyio.fail_after(limit):
            while True:
                conn = self._connections.get(peer)
                if conn is not None and conn.alive:
                    return conn
                pending = self._pending.get(peer)
                if pending is None:
                    pending = _Pending()
                    self._pending[peer] = pending
                    assert self._tg is not None
                    self._tg.start_soon(self._dial, peer, pending)
                await pending.done.wait()
                conn = self._connections.get(peer)
                if conn is not None and conn.alive:
                    return conn
                if pending.error is not None:
                    err = pending.error
                    cls = AuthError if isinstance(err, HandshakeError) and err.reason == "bad_cookie" else ConnectError
                    raise cls(f"cannot connect to {peer}: {err}") from err

    async def _dial(self, peer: Atom, pending: _Pending) -> None:
        try:
            try:
                if self.has_name:
                    await self._dial_inner(peer)
                else:
                    async with self._naming_lock:  # one NAME_ME at a time; then named dials
                        await self._dial_inner(peer)
            except HandshakeError as e:
                if e.reason != "nok":
                    raise
                # simultaneous connect and the peer's attempt wins: wait for it (bounded)
                with anyio.move_on_after(self.setup_time * 2):
                    await pending.incoming.wait()
                if not self.is_connected(peer):
                    raise
        except Exception as e:  # report any failure to the waiters
            pending.error = e
            log.info("connection to %s failed: %s", peer, e)
        finally:
            if self._pending.get(peer) is pending:
                del self._pending[peer]
            pending.done.set()

    async def _dial_inner(self, peer: Atom) -> None:
        alive, _, host = peer.partition("@")
        if not host:
            raise ConnectError(f"bad node name {peer!r}: expected name@host")
        version = 6
        addr = self._addresses.get(peer)
        if addr is None:
            entry = await epmd_client.port_please(alive, host, self.epmd_port)
            if entry is None:
                raise ConnectError(f"EPMD on {host} does not know {alive!r}")
            addr = (host, entry.port)
            version = 6 if entry.highest >= 6 else 5
        try:
            with anyio.fail_after(self.setup_time):
                stream = await anyio.connect_tcp(addr[0], addr[1])
        except (OSError, TimeoutError) as e:
            raise ConnectError(f"cannot reach {peer} at {addr[0]}:{addr[1]}: {e}") from None
        try:
            name_me = not self.has_name
            hs = Initiator(
                this_node=self.name.partition("@")[2] if name_me else self.name,
                peer_node=peer,
                cookie=self.cookie,
                flags=self.flags,
                creation=self.creation,
                version=version,
                name_me=name_me,
            )

            async def on_event(ev: Any) -> None:
                if isinstance(ev, StatusReceived) and ev.status == "alive":
                    old = self._connections.get(peer)
                    hs.answer_alive(old is None or not old.alive)

            done = await drive_handshake(hs, stream, self.setup_time, on_event)
        except BaseException:
            with anyio.CancelScope(shield=True):
                await stream.aclose()
            raise
        if not self.has_name:
            self.name = Atom(done.this_node)
            self.creation = done.this_creation
            self._named()
            log.info("%s named us %s", peer, self.name)
        conn = self._start_connection(peer, stream, done, hs.trailing_data)
        assert self._tg is not None
        self._tg.start_soon(conn.run)

    async def _serve(self, listener: Any) -> None:
        async def handle(stream: ByteStream) -> None:
            try:
                await self._accept(stream)
            except HandshakeError as e:
                log.warning("refused incoming connection: %s", e)
            except Exception as e:
                log.warning("incoming connection failed: %r", e)
            finally:
                with anyio.CancelScope(shield=True):
                    await stream.aclose()

        await listener.serve(handle, task_group=self._tg)

    async def _accept(self, stream: ByteStream) -> None:
        if not self.has_name:
            return  # a dynamic node takes no connections before it is named
        hs = Acceptor(this_node=self.name, cookie=self.cookie, flags=self.flags, creation=self.creation)

        async def on_event(ev: Any) -> None:
            if isinstance(ev, NameReceived):
                peer = Atom(ev.name)
                if ev.name_me:
                    hs.send_status(
                        "named",
                        name=f"pynode_{secrets.token_hex(6)}@{ev.name}",
                        creation=secrets.randbelow(0xFFFFFFF0) + 1,
                    )
                    return
                old = self._connections.get(peer)
                if old is not None and old.alive:
                    hs.send_status("alive")
                elif peer in self._pending:
                    # both sides dialled: the greater name keeps its own attempt (dist_util)
                    hs.send_status("nok" if self.name > peer else "ok_simultaneous")
                else:
                    hs.send_status("ok")
            elif isinstance(ev, WaitingForOldConnection):
                old = self._connections.get(Atom(ev.name))
                if old is not None:
                    old.close("replaced by a new connection")
                hs.old_connection_closed()

        try:
            done = await drive_handshake(hs, stream, self.setup_time, on_event)
            conn = self._start_connection(Atom(done.peer_name), stream, done, hs.trailing_data)
        finally:
            if hs.peer_name is not None:
                pending = self._pending.get(Atom(hs.peer_name))
                if pending is not None:
                    pending.incoming.set()
        # this task is the connection's reader from now on
        await conn.run()

    def _start_connection(
        self, peer: Atom, stream: ByteStream, done: HandshakeComplete, trailing: bytes
    ) -> Connection:
        conn = Connection(
            peer,
            stream,
            done.peer_flags,
            done.peer_creation,
            initial_data=trailing,
            max_packet=self.max_packet,
            max_message=self.max_message,
            net_ticktime=self.net_ticktime,
            tick_intensity=self.tick_intensity,
            dispatch=self._dispatch,
            on_down=self._connection_down,
        )
        old = self._connections.get(peer)
        if old is not None and old.alive:
            old.close("replaced by a new connection")
        self._connections[peer] = conn
        if isinstance(stream, anyio.abc.SocketStream):
            stream.extra(SocketAttribute.raw_socket).setsockopt(
                socket.IPPROTO_TCP, socket.TCP_NODELAY, 1
            )
        log.info("connected to %s", peer)
        self._emit(("nodeup", peer))
        return conn

    def _connection_down(self, conn: Connection, reason: Any) -> None:
        if self._connections.get(conn.peer) is conn:
            del self._connections[conn.peer]
            self._connection_signals_down(conn.peer)
            self._emit(("nodedown", conn.peer, reason))

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
    async def rpc(
        self,
        node: str,
        module: str,
        function: str,
        args: list[Any] | tuple[Any, ...] = (),
        *,
        timeout: float | None = None,
        capture_output: bool = False,
    ) -> Any:
        """``erpc:call(Node, M, F, A, Timeout)``; raises RemoteError, RpcTimeout, NoConnection.

        With ``capture_output`` returns ``(value, printed_text)``.
        """
        return await _rpc.rpc(
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
