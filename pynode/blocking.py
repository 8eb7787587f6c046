"""A blocking API for plain scripts and threads: the node runs in its own event-loop thread.

    with BlockingNode("py@127.0.0.1", cookie="secret") as node:
        node.ping("erl@127.0.0.1")
        box = node.mailbox("inbox")
        box.send(("shell", "erl@127.0.0.1"), "hello")
        print(box.receive(timeout=5))

Every call is thread-safe. A mailbox's send and receive, and rpc, over a live connection run
on the calling thread (waking the loop would cost more than the message); the rest is carried
out in the node's event loop.
"""

from __future__ import annotations

import asyncio
import threading
import time
import weakref
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .protocol import control as C
from .protocol._common import NO_PAYLOAD
from .runtime.busywait import AT_ONCE, HIT_FLOOR, SpinGate, Wakeup
from .runtime.connection import Connection
from .runtime.errors import CallError, RpcTimeout
from .runtime.mailbox import _NO_MATCH, Mailbox
from .runtime.node import Node
from .runtime.rpc import (
    ALIAS,
    GEN_CALL,
    erpc_answer,
    erpc_give_up,
    erpc_request,
    erpc_value,
    gen_call_answer,
    gen_call_value,
)
from .runtime.signals import DOWN, EXIT_TAG
from .runtime.transport import default_backend_options
from .term import Atom, ImproperList, Pid, Reference

_SCAN_LOCKS: weakref.WeakKeyDictionary[Mailbox, threading.Lock] = weakref.WeakKeyDictionary()
_SCAN_LOCKS_LOCK = threading.Lock()


class BlockingMailbox:
    """The blocking face of a :class:`~pynode.runtime.Mailbox`.

    ``send`` on a live connection and ``receive`` do not wait for the event loop: the message
    is written to the socket from the calling thread (or handed to the loop when bytes are
    queued before it), and a receiving thread is woken by the delivery itself (waking the
    loop, let alone a round trip through its portal, costs more than the message).
    """

    def __init__(self, owner: BlockingNode, mailbox: Mailbox) -> None:
        self._owner = owner
        self._portal = owner._portal
        self.async_mailbox = mailbox
        with _SCAN_LOCKS_LOCK:  # one scan lock per mailbox, however many wrappers it has
            lock = _SCAN_LOCKS.get(mailbox)
            if lock is None:
                lock = _SCAN_LOCKS[mailbox] = threading.Lock()
        self._scan_lock = lock
        # the last remote destination sent to, its connection and control message (from
        # Node.remote_route) and the node's connection table (see send)
        self._route: tuple[Any, Connection, Any, dict[Atom, Connection]] | None = None
        # it asks and reads the answer itself (a receive followed its last send): its next
        # send hides the channel from the loop's poll until that read (hide_in_thread);
        # a send after a hide that no receive followed stops that
        self._asks = False
        self._hid = False

    @property
    def pid(self) -> Pid:
        return self.async_mailbox.pid

    @property
    def name(self) -> Atom | None:
        return self.async_mailbox.name

    def send(self, dest: Any, message: Any) -> None:
        """Send as ``!`` does. To another node over a live connection the message is encoded
        here (a bad term raises here) and written to the socket from this thread when
        nothing is queued before it, else handed to the loop without waiting for it; a
        message the loop gets after its connection went down is dropped, as erl drops what
        a dying connection had queued."""
        mb = self.async_mailbox
        route = self._route  # (one read: another thread may set it meanwhile)
        # it holds as Mailbox.send's does: the same or an equal pid, or the same object,
        # while its connection is up and still the node's connection to that peer
        if (
            route is None
            or (dest is not route[0] and (type(dest) is not Pid or not dest == route[0]))
            or not route[1].alive
            or route[3].get(route[1].peer) is not route[1]
        ):
            found = mb.node.remote_route(dest, mb.pid)
            route = None if found is None else (dest, *found, mb.node.connector.connections)
            self._route = route
        if route is not None:
            conn = route[1]
            hid = False
            if self._asks:
                if self._hid:  # a send, and no receive: no answer read here, it seems
                    self._asks = self._hid = False
                else:
                    hid = self._hid = conn.channel.hide_in_thread()
            if conn.send_from_thread(route[2], message, self._owner._soon):
                mb._peer = conn  # an answer most likely comes back on it (receive reads it)
                return
            if hid:  # (through the loop, after all)
                self._hid = False
                conn.channel.show_in_thread(False)
        assert self._portal is not None
        self._portal.call(mb.send, dest, message)

    def receive(self, timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
        """Block until a (matching) message arrives; TimeoutError after ``timeout`` seconds.

        Several threads may wait on one mailbox; receive each message from one place only
        (a thread, or async code in the loop), as an Erlang process does."""
        if threading.get_ident() == self._owner._loop_thread:
            raise RuntimeError("receive would block the node's event loop: use the async Mailbox there")
        mb = self.async_mailbox
        deadline = None if timeout is None else time.monotonic() + timeout
        node = self._owner.node
        # a receiving thread spins before it sleeps for the node's busy_wait, on any backend,
        # while such spins pay (the node's receiving threads share one gate)
        spin = node.busy_wait if node is not None else 0.0
        spinner = node._spinner if node is not None else None
        peer = mb._peer
        if peer is not None:
            self._asks = True
            self._hid = False
        if spinner is None or match is not None or peer is None:
            return self._receive(mb, match, deadline, spin, timeout)
        if not peer.alive:  # not kept (with its buffers) once it is down
            mb._peer = self._route = None
            return self._receive(mb, match, deadline, spin, timeout)
        # one that may read its peer itself: the loop leaves that channel's reads to it
        channel = peer.channel
        readers = getattr(channel, "thread_readers", None)  # (a Channel of another kind: none)
        if readers is None:
            return self._receive(mb, match, deadline, spin, timeout)
        readers.append(None)  # (one C call each way, atomic: no lock)
        try:
            gate = self._owner.spin_gate
            # With nothing queued, the peer it last sent on is read here while the loop is
            # idle (its idle lock, taken never waiting for it), before this thread registers
            # as a waiter: the mailbox's sink is open, the answer goes into the queue from
            # the codec's call, and neither the loop's iteration nor a wake of this thread
            # comes in between. (In this frame: a receive's every frame and call is a cost
            # paid with caches an erl on the same CPU has just used.)
            if (
                not mb._queue
                and spin > 0
                and (timeout is None or timeout >= spin)
                and (gate.hits >= HIT_FLOOR or gate.allow())  # (allow's first test, no call)
                and spinner.idle.acquire(False)  # else the loop is at work: it delivers
            ):
                q = mb._queue  # (under the lock: a demonitor's flush may replace it)
                try:  # (asked under the lock: another thread may read too)
                    got = (
                        channel.read_in_thread(q.__len__, spin, peer.dist.buffer, peer.take_in_thread)  # type: ignore[arg-type]
                        if peer.thread_may_read()
                        else None
                    )
                finally:
                    spinner.idle.release()
                if got is not None:
                    gate.outcome(got)
                with self._scan_lock:
                    if q and mb._closed_reason is None:  # (Mailbox._take's, without its call)
                        mb._taken += 1
                        return q.popleft()
                if got is False:  # the spin ran out: the loop's delivery will wake this thread
                    spin = 0.0
            return self._receive(mb, match, deadline, spin, timeout)
        finally:
            readers.pop()

    def _receive(
        self, mb: Mailbox, match: Callable[[Any], bool] | None, deadline: float | None, spin: float,
        timeout: float | None,
    ) -> Any:
        """receive's wait for the loop's delivery (or a look at the queue)."""
        lock = self._scan_lock
        node = self._owner.node
        gate = self._owner.spin_gate
        wakeup = Wakeup()
        # woken by a loop that spins in C: take the GIL once it lets go of it there
        spinner = node._spinner if node is not None else None
        handoff = spinner is not None and spinner.spin_fd >= 0
        if spinner is not None and spinner.hidden:  # (a send's hide_in_thread, no read since:
            spinner.show_hidden()  # the loop delivers, so it must see the socket)
        mb._thread_waiters.append(wakeup)  # before the first look: no delivery goes unnoticed
        mb._sink()  # nor one that skips _deliver
        try:
            scanned = 0
            while True:
                with lock:  # one thread scans at a time: another's take would shift the queue
                    mb._check_open()
                    end = len(mb)  # before the scan: what arrives during it is scanned next time
                    m = mb._take(match, scanned)
                    if m is not _NO_MATCH:
                        return m
                    taken = mb._taken
                scanned = end
                left = -1.0 if deadline is None else max(0.0, deadline - time.monotonic())
                whole = left < 0 or spin <= left  # else the deadline cuts the spin: no outcome
                now_spin = spin if spin and (gate.allow() if whole else gate.open) else 0.0
                t0 = time.monotonic()
                woke = wakeup.wait(left, now_spin, handoff)
                waited = time.monotonic() - t0
                if now_spin and whole and (not woke or waited > AT_ONCE):  # at once: no spin needed
                    gate.outcome(woke and waited <= now_spin)
                if not woke:
                    raise TimeoutError(f"no message within {timeout} s")
                if mb._taken != taken:  # another receiver took one: look from the start
                    scanned = 0
        finally:
            mb._thread_waiters.remove(wakeup)
            mb._sink()

    def _drop(self, match: Callable[[Any], bool]) -> None:
        """Take every queued message ``match`` accepts (a stale answer), from any thread."""
        with self._scan_lock:
            while self.async_mailbox._take(match, 0) is not _NO_MATCH:
                pass

    def close(self, reason: Any = None) -> None:
        assert self._portal is not None
        if reason is None:
            self._portal.call(self.async_mailbox.close)
        else:
            self._portal.call(self.async_mailbox.close, reason)

    def __enter__(self) -> BlockingMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingNode:
    """A :class:`~pynode.runtime.Node` driven from synchronous code (any thread).

    Arguments are those of ``Node``; ``backend`` picks the event loop ("asyncio" or "trio"),
    ``backend_options`` are anyio's (by default plain asyncio with the busy wait, the fastest
    here; ``{"use_uvloop": True}`` or ``PYNODE_LOOP=uvloop`` for uvloop).
    """

    def __init__(
        self,
        *args: Any,
        backend: str = "asyncio",
        backend_options: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._args = args
        self._kwargs = kwargs
        self._backend = backend
        self._backend_options = (
            backend_options if backend_options is not None else default_backend_options(backend)
        )
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self.node: Node | None = None
        self._node_cm: AbstractContextManager[Node]
        self._soon: Callable[..., Any]  # schedule a callback in the loop from any thread
        self._loop_thread = 0  # the loop's thread id, once started
        self.spin_gate = SpinGate()
        """Whether receiving threads spin before they sleep (see pynode.runtime.busywait)."""
        self._rpc_box: BlockingMailbox | None = None  # where rpc answers come, made on first use
        self._rpc_box_lock = threading.Lock()

    def start(self) -> BlockingNode:
        self._portal_cm = start_blocking_portal(self._backend, self._backend_options)
        self._portal = self._portal_cm.__enter__()
        try:
            # entered and exited in one task of the loop, as the node's task group requires
            self._node_cm = self._portal.wrap_async_context_manager(Node(*self._args, **self._kwargs))
            self.node = self._node_cm.__enter__()
            self._soon = self._portal.call(_threadsafe_scheduler)
            self._loop_thread = self._portal.call(threading.get_ident)
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            self._portal = None
            raise
        return self

    def stop(self) -> None:
        if self._portal is None or self.node is None:
            return
        try:
            self._node_cm.__exit__(None, None, None)
        finally:
            assert self._portal_cm is not None
            self._portal_cm.__exit__(None, None, None)
            self._portal = None

    def __enter__(self) -> BlockingNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("the node is not started")
        return self._portal.call(fn, *args)

    @property
    def name(self) -> Atom:
        assert self.node is not None
        return self.node.name

    def mailbox(self, name: str | None = None) -> BlockingMailbox:
        assert self.node is not None and self._portal is not None
        return BlockingMailbox(self, self._call(self.node.mailbox, name))

    def ping(self, node: str, timeout: float = 10.0) -> bool:
        assert self.node is not None
        return bool(self._call(self.node.ping, node, timeout))

    def send(self, dest: Any, message: Any) -> None:
        assert self.node is not None
        self._call(self.node.send, dest, message)

    def nodes(self) -> list[Atom]:
        assert self.node is not None
        return list(self._call(self.node.nodes))

    def connect(self, node: str, address: tuple[str, int] | None = None) -> None:
        assert self.node is not None
        self._call(lambda: self.node.connect(node, address=address))  # type: ignore[union-attr]

    def rpc(
        self, node: str, module: str, function: str, args: list[Any] | tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> Any:
        """``erpc:call``; raises RemoteError, RpcTimeout or NoConnection like ``Node.rpc``.

        Over a live connection the request is sent from this thread and the answer wakes it
        (one mailbox serves every thread's calls, as one erl process may make many calls);
        a connection still to be made goes through the loop."""
        n = self.node
        assert n is not None
        conn = n.connector.get(node if type(node) is Atom else Atom(node))
        if conn is None or not conn.spawns or conn.congested_for_threads():
            return self._call(lambda: n.rpc(node, module, function, args, timeout=timeout))
        box = self._rpc_mailbox()
        req, res_ref = erpc_request(
            n, conn, box.async_mailbox, module, function, args, send=self._thread_send(conn)
        )
        try:
            msg = box.receive(timeout=timeout, match=erpc_answer(req))
        except TimeoutError:
            self._call(erpc_give_up, n, box.async_mailbox, req)
            raise RpcTimeout(f"no answer from {node} within {timeout} s") from None
        finally:
            n.signals.forget_spawn(req)  # a call given up before its SPAWN_REPLY
        return erpc_value(node, msg, res_ref)

    def _rpc_mailbox(self) -> BlockingMailbox:
        """The mailbox rpc and gen_call answers come to; a new one after a kill ended it."""
        box = self._rpc_box
        if box is not None and not box.async_mailbox.closed:
            if len(box.async_mailbox):  # a trapped exit stays queued otherwise: nobody takes it
                box._drop(_is_exit_message)
            return box
        with self._rpc_box_lock:
            box = self._rpc_box
            if box is None or box.async_mailbox.closed:
                box = self._rpc_box = self.mailbox()
                # it traps exits, as rex does: a peer's link exit or exit/2 (but kill) would
                # otherwise fail every thread's calls in flight
                box.async_mailbox.trap_exit = True
            return box

    def _thread_send(self, conn: Connection) -> Callable[..., None]:
        soon = self._soon

        def send(control: Any, payload: Any = NO_PAYLOAD) -> None:
            conn.send_threadsafe(conn.dist.send_pieces(control, payload), soon)

        return send

    def gen_call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
        """``gen_server:call``; raises CallError or RpcTimeout like ``Node.call``.

        To a pid or ``(name, node)`` over a live connection the monitor and the request go
        out from this thread, and the reply (to an alias, as OTP 24+ servers send it) or the
        'DOWN' wakes it, in the mailbox rpc uses; anything else goes through the loop."""
        n = self.node
        assert n is not None
        box = self._rpc_mailbox()
        mb = box.async_mailbox
        route = n.remote_route(dest, mb.pid)
        if route is None or type(dest) is Reference or route[0].congested_for_threads():
            return self._call(n.call, dest, request, timeout)
        conn, control = route
        send = self._thread_send(conn)
        proc = dest if type(dest) is Pid else Atom(dest[0])  # a Pid or (name, node) here
        mref = n.make_ref()
        mb.monitors[mref] = dest if type(dest) is Pid else (proc, conn.peer)
        alias = n.signals.alias(mb)
        tag = ImproperList([ALIAS], alias)
        try:
            send(C.MonitorP(mb.pid, proc, mref))
            try:
                send(control, (GEN_CALL, (mb.pid, tag), request))
            except Exception as e:
                raise CallError(Atom("noproc")) from e
            try:
                reply = box.receive(timeout=timeout, match=gen_call_answer(tag, mref))
            except TimeoutError:
                raise RpcTimeout(f"gen_server call to {dest!r} timed out after {timeout} s") from None
        finally:
            n.signals.unalias(mb, alias)  # a late reply is dropped
            if mb.monitors.pop(mref, None) is not None:
                send(C.DemonitorP(mb.pid, proc, mref))
            box._drop(lambda m: type(m) is tuple and len(m) == 5 and m[0] == DOWN and m[1] == mref)
        return gen_call_value(reply, dest)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run any function or coroutine function of the async API in the node's loop."""
        return self._call(fn, *args)


def _is_exit_message(m: Any) -> bool:
    return type(m) is tuple and len(m) == 3 and m[0] == EXIT_TAG and type(m[1]) is Pid


def _threadsafe_scheduler() -> Callable[..., Any]:
    """In the loop: a function any thread may call to run a callback in this loop soon."""
    try:
        return asyncio.get_running_loop().call_soon_threadsafe
    except RuntimeError:  # no asyncio loop: anyio's other backend, trio
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon
