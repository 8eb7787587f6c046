"""Mailboxes: a pid, an optional registered name, and a selective receive."""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..term import Atom, Pid, Reference
from .errors import MailboxClosed
from .limits import MAILBOX_WARN_LENGTH

log = logging.getLogger("pynode.node")

if TYPE_CHECKING:
    from .connection import Connection
    from .node import Node

_NO_MATCH = object()
_NORMAL = Atom("normal")


class Mailbox:
    """A Python process as erl sees it: messages arrive in order, receive can be selective.

    ``receive(match=...)`` takes the first message ``match`` accepts and leaves the others
    queued in their order, like Erlang's receive with patterns.
    """

    def __init__(
        self, node: Node, pid: Pid, name: Atom | None = None, *, loop: asyncio.AbstractEventLoop | None = None
    ) -> None:
        self.node = node
        self.pid = pid
        self.name = name
        self._queue: deque[Any] = deque()
        # tasks blocked in receive: bare futures on asyncio (``loop``; a third cheaper than
        # anyio.Event, and a wake is the hot path of every round trip), anyio Events elsewhere
        self._loop = loop
        self._waiters: list[Any] = []
        self._thread_waiters: list[Any] = []  # threads blocked in receive (blocking API)
        # messages taken so far: a waiting receiver's saved scan position is void once another
        # receiver took one (the queue shifted under it)
        self._taken = 0
        self._closed_reason: Any = None
        # the connection this process last sent on: an answer most likely comes back on it,
        # and a receive waiting for one reads it there first (Channel.read_inline)
        self._peer: Connection | None = None
        # the last remote send's destination (the object itself) and its route: a process
        # sends to one peer over and over, and the lookup is most of a send's Python
        self._route_dest: Any = _NO_MATCH
        self._route: tuple[Connection, Any, dict[Atom, Connection]] | None = None
        self.trap_exit = False
        """When True, exit signals arrive as ``('EXIT', From, Reason)`` messages."""
        self.links: dict[Pid, int] = {}  # pid -> 0 (linked) or the id of our pending unlink
        self.monitors: dict[Reference, Any] = {}  # our monitors: ref -> pid or (name, node)
        self.monitored_by: dict[Reference, tuple[Pid, Any]] = {}  # ref -> (watcher, as named)
        self.aliases: set[Reference] = set()
        self._warn_length = MAILBOX_WARN_LENGTH
        # plain sends from the network may go straight into the queue while nobody waits
        # (ProcessTable.sinks); not into a subclass that delivers its own way
        self._sinkable = type(self)._deliver is Mailbox._deliver

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name else ""
        return f"<Mailbox{name} {self.pid.node}.{self.pid.id}.{self.pid.serial}>"

    @property
    def warn_length(self) -> int:
        """Queue length at which a warning is logged (again at each doubling); see limits."""
        return self._warn_length

    @warn_length.setter
    def warn_length(self, n: int) -> None:
        self._warn_length = n
        self._sink()

    def _sink(self) -> None:
        """Let plain sends from the network into the queue without a Python call while
        nobody waits on it (ProcessTable.sinks); take that back while someone does, since a
        delivery must then wake them. Each change of who waits comes here."""
        if self._sinkable:
            procs = self.node.processes
            with procs.sink_lock:
                procs.sink(self, self._closed_reason is None and not self._waiters and not self._thread_waiters)

    # -- delivery (called by the node, in its event loop) ----------------------------------
    def _deliver(self, message: Any) -> None:
        if self._closed_reason is not None:
            return
        self._queue.append(message)
        if len(self._queue) >= self._warn_length:
            self._long_queue()
        if self._waiters:
            self._wake()
        if self._thread_waiters:
            for t in self._thread_waiters[:]:  # a copy: threads add and remove themselves
                t.set()

    def _long_queue(self) -> None:
        log.warning(
            "%r has %d messages queued: is its consumer keeping up?", self, len(self._queue)
        )
        self.warn_length *= 2  # (and the sinks' limit with it)

    def _wake(self) -> None:
        waiters, self._waiters = self._waiters, []
        if self._loop is not None:
            for f in waiters:
                if not f.done():
                    f.set_result(None)
        else:
            for e in waiters:
                e.set()
        self._sink()  # nobody waits now: the next messages of this read go straight in

    # -- receiving --------------------------------------------------------------------------
    def _take(self, match: Callable[[Any], bool] | None, start: int) -> Any:
        q = self._queue
        if match is None:
            if not q:
                return _NO_MATCH
            self._taken += 1
            return q.popleft()
        for i in range(start, len(q)):
            m = q[i]
            if match(m):
                del q[i]
                self._taken += 1
                return m
        return _NO_MATCH

    def receive_nowait(self, match: Callable[[Any], bool] | None = None) -> Any:
        """The first (matching) message; raise ``anyio.WouldBlock`` when there is none."""
        self._check_open()
        m = self._take(match, 0)
        if m is _NO_MATCH:
            raise anyio.WouldBlock
        return m

    async def receive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        """Wait for the first message (that ``match`` accepts); TimeoutError after ``timeout``."""
        # fast path: a waiting message needs no cancel scope (which costs ~8 us to set up)
        q = self._queue
        if self._closed_reason is None:
            if q:
                if match is None:
                    self._taken += 1
                    return q.popleft()
                m = self._take(match, 0)
                if m is not _NO_MATCH:
                    return m
            elif match is None and timeout is None and self._peer is not None:
                m = self._read_peer()
                if m is not _NO_MATCH:
                    return m
                return await self._wait_for(match, True)
        if timeout is None:
            return await self._wait_for(match)
        with anyio.fail_after(timeout):
            return await self._wait_for(match)

    def _read_peer(self) -> Any:
        """A receive with nothing queued reads its peer on the spot (``read_inline``) before it
        registers as a waiter: the mailbox's sink is still open, so an answer goes into the
        queue from the codec's call, with no future made, set and awaited, and no sink
        closed and opened again (on one CPU with erl, a fifth of an echo's Python). The first
        message queued then, or _NO_MATCH."""
        peer = self._peer
        if peer is None or self._loop is None:
            return _NO_MATCH
        if not peer.alive:
            self._peer = self._route = None  # not kept (with its buffers) once it is down
            return _NO_MATCH
        q = self._queue
        peer.channel.read_inline(q.__len__, self.node.busy_wait)  # type: ignore[arg-type]
        if q and self._closed_reason is None:
            self._taken += 1
            return q.popleft()
        return _NO_MATCH

    async def _wait_for(self, match: Callable[[Any], bool] | None, tried: bool = False) -> Any:
        """``tried``: the caller read the peer already (``_read_peer``), and nothing came."""
        scanned = 0
        while True:
            self._check_open()
            m = self._take(match, scanned)
            if m is not _NO_MATCH:
                return m
            scanned = len(self._queue)
            taken = self._taken
            if match is None and not tried:
                m = self._read_peer()
                if m is not _NO_MATCH:
                    return m
                if self._closed_reason is not None:  # by what was read: _check_open raises
                    continue
                tried = True
            if self._loop is not None:
                w: Any = self._loop.create_future()
                self._waiters.append(w)
                self._sink()
                try:
                    peer = self._peer
                    if tried:  # (and nothing came: the loop's turn)
                        tried = False
                    elif peer is not None:
                        if peer.alive:
                            peer.channel.read_inline(w.done, self.node.busy_wait)
                        else:
                            # not kept (with its buffers) once it is down
                            self._peer = self._route = None
                    await w
                finally:
                    if w in self._waiters:  # not woken (cancelled, timed out)
                        self._waiters.remove(w)
                        self._sink()
            else:
                w = anyio.Event()
                self._waiters.append(w)
                self._sink()
                try:
                    await w.wait()
                finally:
                    if w in self._waiters:
                        self._waiters.remove(w)
                        self._sink()
            if self._taken != taken:  # another receiver took one: look from the start
                scanned = 0

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except MailboxClosed:
                return

    def __len__(self) -> int:
        return len(self._queue)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise MailboxClosed(self._closed_reason)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    # -- sending and lifetime ---------------------------------------------------------------
    async def send(self, dest: Any, message: Any) -> None:
        """Send ``message`` to a Pid, a registered name, or ``(name, node)``, from this pid."""
        route = self._route
        # the route holds while its connection is up and still the node's connection to
        # that peer (a replaced one is out of the table before it is down); an equal pid is
        # the same destination (a server's replies go to pids decoded anew each time), where
        # equal tuples may route apart ((True, n) and (1, n): names 'True' and '1'); (not
        # ``!=``: Pid's __ne__ is _Record's, which calls __eq__, a frame more per reply)
        if (
            (dest is not self._route_dest and (type(dest) is not Pid or not dest == self._route_dest))
            or route is None
            or not route[0].alive
            or route[2].get(route[0].peer) is not route[0]
        ):
            node = self.node
            found = node.remote_route(dest, self.pid)
            if found is None:  # here, not connected yet, or not a remote destination
                self._route_dest = _NO_MATCH
                self._route = None
                if node._send_unrouted(dest, message) is None:
                    return  # delivered here, or dropped as ``!`` drops
                conn = await node._send(dest, message, self.pid)  # connects first
                if conn is not None:
                    self._peer = conn
                return
            route = (*found, node.connector.connections)
            self._route_dest, self._route = dest, route
        conn, control, _ = route
        self._peer = conn
        if conn.send_plain(control, message):
            await conn.channel.drain()

    def register(self, name: str) -> None:
        """Register this mailbox under ``name`` on its node."""
        self.node.register(name, self)

    def close(self, reason: Any = _NORMAL) -> None:
        """End this process with ``reason``: links get exit signals, monitors 'DOWN'."""
        self.node.signals._close_mailbox(self, reason)

    def _closed_by_node(self, reason: Any) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._wake()
            for t in self._thread_waiters[:]:
                t.set()

    def _remove_where(self, pred: Callable[[Any], bool]) -> None:
        procs = self.node.processes
        with procs.sink_lock:  # the entries name the queue: out with the old one
            procs.sink(self, False)
            self._queue = deque(m for m in self._queue if not pred(m))
        self._sink()
        self._taken += 1

    # -- process signals ------------------------------------------------------------------
    async def link(self, pid: Pid) -> None:
        """link/1: if either side dies, the other gets an exit signal."""
        await self.node.signals.link(self, pid)

    async def unlink(self, pid: Pid) -> None:
        """unlink/1 (the OTP 26 protocol: exits from ``pid`` are dropped until acknowledged)."""
        await self.node.signals.unlink(self, pid)

    async def monitor(self, target: Any) -> Reference:
        """monitor(process, Target) for a Pid, a local name or (name, node); returns the ref.

        ``('DOWN', Ref, process, Object, Reason)`` arrives when the target is gone.
        """
        return await self.node.signals.monitor(self, target)

    async def demonitor(self, ref: Reference, *, flush: bool = False) -> bool:
        """demonitor/2; ``flush`` also drops a 'DOWN' message already received."""
        return await self.node.signals.demonitor(self, ref, flush=flush)

    async def exit(self, pid: Pid, reason: Any) -> None:
        """exit/2: send an exit signal to ``pid``."""
        await self.node.signals.exit(self, pid, reason)

    async def monitor_node(self, node: str) -> None:
        """monitor_node/2: ``{nodedown, Node}`` arrives when the connection goes down."""
        await self.node.signals.monitor_node(self, node)

    def alias(self) -> Reference:
        """alias/0: a reference others can send to (ALIAS_SEND) until ``unalias``."""
        return self.node.signals.alias(self)

    def unalias(self, ref: Reference) -> bool:
        return self.node.signals.unalias(self, ref)

    async def spawn(
        self,
        node: str,
        module: str,
        function: str,
        args: list[Any],
        *,
        link: bool = False,
        timeout: float | None = None,
    ) -> Pid:
        """spawn_request of ``module:function(*args)`` on ``node``; the new pid."""
        pid, _ = await self.node.signals.spawn_request(
            self, node, module, function, args, link=link, timeout=timeout
        )
        assert pid is not None
        return pid

    async def spawn_monitor(
        self, node: str, module: str, function: str, args: list[Any], *, timeout: float | None = None
    ) -> tuple[Pid, Reference]:
        """spawn_monitor on ``node``: the pid and the monitor reference."""
        pid, ref = await self.node.signals.spawn_request(
            self, node, module, function, args, monitor=True, timeout=timeout
        )
        assert pid is not None
        return pid, ref

    async def __aenter__(self) -> Mailbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
