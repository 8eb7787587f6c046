"""The blocking facade, used from plain threads."""

from __future__ import annotations

import asyncio
import importlib.util
import subprocess
import sys
import threading
import time
from typing import Any, cast

import pytest

from pynode.blocking import BlockingNode
from pynode.protocol.errors import ProtocolError
from pynode.runtime import MailboxClosed
from pynode.runtime.connection import Connection
from pynode.runtime.transport import default_backend_options
from pynode.term import Atom, decode, encode


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_nodes_talk(backend: str) -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as b:
            assert b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            assert a.ping(b.name)
            inbox = b.mailbox("inbox")
            out = a.mailbox()
            errors: list[BaseException] = []

            def sender() -> None:
                try:
                    for i in range(50):
                        out.send(("inbox", b.name), (i, out.pid))
                except BaseException as e:  # pragma: no cover - reported below
                    errors.append(e)

            t = threading.Thread(target=sender)
            t.start()
            got = [inbox.receive(timeout=10) for _ in range(50)]
            t.join(10)
            assert not errors
            assert [g[0] for g in got] == list(range(50))
            inbox.send(got[0][1], Atom("thanks"))
            assert out.receive(timeout=5) == Atom("thanks")
            with pytest.raises(TimeoutError):
                out.receive(timeout=0.05)
            assert a.nodes() == [b.name]


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_receive_is_selective_and_woken_by_close(backend: str) -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as b:
            assert b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            inbox = b.mailbox()
            out = a.mailbox()
            for i in range(5):  # over the connection: the send fast path
                out.send(inbox.pid, (Atom("n"), i))
            out.send(inbox.pid, Atom("last"))
            assert inbox.receive(timeout=10, match=lambda m: m == Atom("last")) == Atom("last")
            assert [inbox.receive(timeout=10)[1] for _ in range(5)] == [0, 1, 2, 3, 4]

            # a thread blocked in receive wakes when the mailbox is closed under it
            outcome: list[BaseException] = []
            started = threading.Event()

            def waiter() -> None:
                started.set()
                try:
                    inbox.receive(timeout=30)
                except BaseException as e:
                    outcome.append(e)

            t = threading.Thread(target=waiter)
            t.start()
            assert started.wait(10)
            inbox.close(Atom("bye"))
            t.join(10)
            assert not t.is_alive()
            assert len(outcome) == 1 and isinstance(outcome[0], MailboxClosed)
            assert outcome[0].reason == Atom("bye")


def test_blocking_receive_sees_a_delivery_made_during_its_scan() -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as node:
        box = node.mailbox()
        mb = box.async_mailbox
        delivered: list[bool] = []

        def match(m: object) -> bool:
            if m == Atom("other") and not delivered:
                delivered.append(True)
                mb._deliver(Atom("wanted"))  # arrives while this receive scans the queue
            return m == Atom("wanted")

        node.run(mb._deliver, Atom("other"))
        assert box.receive(timeout=5, match=match) == Atom("wanted")
        assert box.receive(timeout=5) == Atom("other")


def test_two_threads_receiving_on_one_mailbox() -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as node:
        box = node.mailbox()
        mb = box.async_mailbox
        got: dict[str, object] = {}
        waiting = threading.Barrier(3)

        def rx(name: str, timeout: float) -> None:
            waiting.wait(10)
            try:
                got[name] = box.receive(timeout=timeout)
            except TimeoutError:
                got[name] = "timeout"

        a = threading.Thread(target=rx, args=("A", 20))
        b = threading.Thread(target=rx, args=("B", 0.05))
        a.start()
        b.start()
        waiting.wait(10)
        b.join(10)  # B gives up first; A must still be woken by the next delivery
        assert got == {"B": "timeout"}
        node.run(mb._deliver, Atom("hello"))
        a.join(10)
        assert got == {"B": "timeout", "A": Atom("hello")}
        assert mb._thread_waiters == []


def test_blocking_send_errors_and_misuse_are_raised_to_the_caller() -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            assert b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            inbox = b.mailbox()
            out = a.mailbox()
            with pytest.raises(ProtocolError, match="encode"):
                out.send(inbox.pid, object())  # the fast path encodes on this thread
            out.send(inbox.pid, Atom("fine"))
            assert inbox.receive(timeout=5) == Atom("fine")
            # in the loop's own thread a blocking receive would hang the node: refused
            with pytest.raises(RuntimeError, match="event loop"):
                a.run(lambda: out.receive(timeout=1))


def _connected_pair(a: BlockingNode, b: BlockingNode, shared: bool = False) -> Connection:
    """a connected to b; ``shared``: after a first send from a thread of a's, which lets
    threads write to the socket themselves from then on."""
    assert a.node is not None and b.node is not None
    a.connect(b.name, address=("127.0.0.1", b.node.port))
    conn = a.node.connector.connections[b.name]
    if shared:
        inbox = b.mailbox()
        a.mailbox().send(inbox.pid, Atom("first"))
        assert inbox.receive(timeout=10) == Atom("first")
        assert cast(Any, conn.channel)._shared
        a.run(lambda: None)  # the loop is past its hand-over (a received message may not be)
        assert conn._handed == 0
        inbox.close()
    return conn


def test_a_threads_send_goes_straight_to_the_socket() -> None:
    """No loop wake-up per send: a thread writes to the socket itself when nothing is queued
    (after its first send, which the loop writes: from then on the loop's own writes take
    turns with threads under the channel's lock; before, it writes without taking it)."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b)
            channel: Any = conn.channel
            inbox = b.mailbox()
            out = a.mailbox()
            assert not channel._shared
            by_loop = conn.messages_out
            out.send(inbox.pid, Atom("first"))
            assert inbox.receive(timeout=10) == Atom("first")
            a.run(lambda: None)  # the loop is past its hand-over (b may receive before)
            assert conn.messages_out == by_loop + 1  # the loop wrote it
            assert channel._shared
            by_loop = conn.messages_out
            before = conn.counters()["messages_out"]
            for i in range(50):  # round trips: nothing is ever queued before a send
                out.send(inbox.pid, (i, out.pid))
                assert inbox.receive(timeout=10) == (i, out.pid)
                inbox.send(out.pid, i)
                assert out.receive(timeout=10) == i
            assert conn.counters()["messages_out"] - before == 50
            assert conn.messages_out == by_loop  # the loop wrote none of them
            assert conn.counters()["bytes_out"] - conn.bytes_out == channel.thread_bytes > 50 * 20
            assert channel.thread_readers == []  # every receive that read it has left it


def test_thread_sends_keep_their_order_through_a_full_socket() -> None:
    """When the socket takes part of a message, what is left goes out before any later byte:
    a thread's messages (big ones in fragments, small ones whole) arrive whole and in order,
    and so do the loop's own sends, queued (while the loop is held) to run before the loop
    writes the rest."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b, shared=True)
            assert a.node is not None
            channel: Any = conn.channel
            inbox, other = b.mailbox(), b.mailbox()
            out = a.mailbox()
            n, k = 400, 50

            def body(i: int) -> bytes:
                return bytes([i % 251]) * (70_000 if i % 2 else 1000)

            # hold both loops: b's reads nothing (the socket fills), a's runs nothing yet
            gate = threading.Event()
            held = threading.Barrier(3)

            def hold(node: BlockingNode) -> None:
                def in_loop() -> None:
                    held.wait(30)
                    gate.wait(60)

                node.run(in_loop)

            holders = [threading.Thread(target=hold, args=(x,)) for x in (a, b)]
            for h in holders:
                h.start()
            partial = threading.Event()
            errors: list[BaseException] = []
            try:
                held.wait(30)
                for i in range(k):  # the loop's sends, queued ahead of its write of the rest
                    a._soon(a.node.send_nowait, other.pid, i)

                def sender() -> None:
                    try:
                        for i in range(n):
                            out.send(inbox.pid, (i, body(i)))
                            if channel._backlog:
                                partial.set()
                    except BaseException as e:  # pragma: no cover - reported below
                        errors.append(e)

                t = threading.Thread(target=sender)
                t.start()
                assert partial.wait(30), "the socket never took part of a message"
            finally:
                gate.set()
            for h in holders:
                h.join(30)
            got = [inbox.receive(timeout=30) for _ in range(n)]
            t.join(30)
            assert not errors
            assert [g[0] for g in got] == list(range(n))
            assert all(g[1] == body(g[0]) for g in got)
            assert [other.receive(timeout=30) for _ in range(k)] == list(range(k))
            assert conn.alive


def test_the_loops_pynode_starts_are_plain_asyncio_unless_uvloop_is_asked_for(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PYNODE_LOOP", raising=False)
    assert default_backend_options("asyncio") == {}
    assert default_backend_options("trio") == {}
    monkeypatch.setenv("PYNODE_LOOP", "uvloop")
    assert default_backend_options("trio") == {}
    expected = {"use_uvloop": True} if importlib.util.find_spec("uvloop") else {}
    assert default_backend_options("asyncio") == expected


def test_selective_receivers_in_threads_do_not_miss_a_message_after_another_took_one() -> None:
    """T1 waits for 'a' having scanned past 'b'; T2 takes 'b' (the queue shifts); then 'a'
    arrives where 'b' was: T1 must still see it."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as node:
        box = node.mailbox()
        mb = box.async_mailbox
        node.run(mb._deliver, Atom("b"))
        got: dict[str, object] = {}
        passed_b = threading.Event()

        def wants_a(m: object) -> bool:
            if m == Atom("b"):
                passed_b.set()
            return m == Atom("a")

        def rx(name: str, match: Any) -> None:
            try:
                got[name] = box.receive(timeout=5, match=match)
            except TimeoutError:
                got[name] = "timeout"

        t1 = threading.Thread(target=rx, args=("T1", wants_a))
        t1.start()
        assert passed_b.wait(10)
        assert box._scan_lock.acquire(timeout=10)  # T1's scan is over
        box._scan_lock.release()
        t2 = threading.Thread(target=rx, args=("T2", lambda m: m == Atom("b")))
        t2.start()
        t2.join(10)
        assert got == {"T2": Atom("b")}
        node.run(mb._deliver, Atom("a"))
        t1.join(10)
        assert got == {"T2": Atom("b"), "T1": Atom("a")}


class _LockStandIn:
    """Stands in for a channel's write lock (``acquire`` is the subclass's hook)."""

    def __init__(self, lock: Any, loop_thread: int) -> None:
        self._lock, self._loop_thread = lock, loop_thread

    def acquire(self) -> Any:
        return self._lock.acquire()

    def release(self) -> None:
        self._lock.release()

    def __enter__(self) -> Any:
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


class _SwitchAtLock(_LockStandIn):
    """The first time the loop's thread is about to take the lock while ``armed``, another
    thread runs ``then`` to its end first (as a switch of the GIL there lets it), then the
    lock is taken as usual."""

    def __init__(self, lock: Any, loop_thread: int, then: Any) -> None:
        super().__init__(lock, loop_thread)
        self._then = then
        self.armed = False
        self.fired = False

    def acquire(self) -> Any:
        if self.armed and not self.fired and threading.get_ident() == self._loop_thread:
            self.fired = True
            t = threading.Thread(target=self._then)
            t.start()
            t.join(30)
        return super().acquire()


class _CountingLock(_LockStandIn):
    """Counts the times the loop's thread takes the lock."""

    by_loop = 0

    def acquire(self) -> Any:
        if threading.get_ident() == self._loop_thread:
            self.by_loop += 1
        return super().acquire()


def test_the_loops_writes_take_the_lock_only_once_a_thread_writes() -> None:
    """The write lock is for threads writing to the socket themselves: until one has asked
    to, the loop's writes (every message of an asyncio-only node) do without it."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b)
            assert a.node is not None
            node = a.node
            channel: Any = conn.channel
            inbox = b.mailbox()
            counting = _CountingLock(channel._wlock, a._loop_thread)

            def loop_sends(x: int) -> None:
                channel._wlock = counting
                node.send_nowait(inbox.pid, x)

            a.run(loop_sends, 1)
            assert inbox.receive(timeout=10) == 1
            assert counting.by_loop == 0 and not channel._shared
            a.mailbox().send(inbox.pid, 2)  # a thread's first send: the loop writes it, and shares
            assert inbox.receive(timeout=10) == 2
            a.run(loop_sends, 3)
            assert inbox.receive(timeout=10) == 3
            assert channel._shared and counting.by_loop >= 1


@pytest.mark.parametrize("corked", [False, True], ids=["written-at-once", "corked"])
def test_a_threads_later_send_never_overtakes_one_the_loop_is_writing(corked: bool) -> None:
    """A thread's message handed to the loop (bytes were queued before it) is still in the
    loop's hands until it is in the transport or the socket: a later send of the same
    process, from any thread, that runs while the loop is about to write it (a switch of the
    GIL) is handed over too, not written to the socket ahead of it. ``corked``: the loop
    joins it with other writes and writes them at the end of its iteration."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b, shared=True)
            assert a.node is not None
            node = a.node
            channel: Any = conn.channel
            inbox, other = b.mailbox(), b.mailbox()
            out = a.mailbox()
            errors: list[BaseException] = []

            def send(i: int) -> None:
                try:
                    out.send(inbox.pid, i)
                except BaseException as e:  # pragma: no cover - reported below
                    errors.append(e)

            switch = _SwitchAtLock(channel._wlock, a._loop_thread, lambda: send(2))
            write_handed = conn._write_handed

            def arm_then_write(*args: Any) -> None:
                switch.armed = True  # the loop now writes message 1
                write_handed(*args)

            def in_loop() -> int:
                # a loop write that waits for the end of this iteration, as a second write
                # in a burst does: a thread's send now finds bytes queued before it
                channel._corked = True
                node.send_nowait(other.pid, b"loop")
                assert channel._out
                if not corked:
                    asyncio.get_running_loop().call_soon(channel._flush)
                channel._wlock = switch
                conn._write_handed = arm_then_write  # type: ignore[method-assign]
                t = threading.Thread(target=send, args=(1,))
                t.start()
                t.join(30)
                if corked:  # the flush comes after the loop took message 1 into its queue
                    asyncio.get_running_loop().call_soon(channel._flush)
                return conn._handed

            assert a.run(in_loop) > 0  # message 1 was handed to the loop
            got = [inbox.receive(timeout=10) for _ in range(2)]
            assert other.receive(timeout=10) == b"loop"
            assert switch.fired and not errors
            assert got == [1, 2]
            assert conn.alive


def test_a_threads_send_never_iterates_the_transports_buffer() -> None:
    """asyncio's loop changes its transport's write buffer without our lock (3.12+:
    _write_sendmsg pops from a deque), so a thread may only ask its length: iterating it
    (3.12+'s get_write_buffer_size sums it) raises "deque mutated during iteration" when the
    GIL switches in the middle, out of the user's send."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b, shared=True)
            channel: Any = conn.channel
            off_loop: list[int] = []

            def watch() -> None:
                transport = channel.transport
                own = type(transport._buffer)
                loop_thread = a._loop_thread

                def __iter__(self: Any) -> Any:
                    if threading.get_ident() != loop_thread:
                        off_loop.append(threading.get_ident())
                    return own.__iter__(self)

                watched = type("Watched", (own,), {"__iter__": __iter__})
                transport._buffer = watched(transport._buffer)

            a.run(watch)
            inbox, out = b.mailbox(), a.mailbox()
            sent = threading.Thread(target=lambda: [out.send(inbox.pid, i) for i in range(20)])
            sent.start()
            sent.join(30)
            assert [inbox.receive(timeout=10) for _ in range(20)] == list(range(20))
            assert conn.counters()["messages_out"] >= 20
            assert off_loop == []


def test_pynode_runs_without_sniffio() -> None:
    """anyio no longer depends on sniffio, and neither does pynode: two nodes talk in a
    process where importing it fails."""
    code = (
        "import sys; sys.modules['sniffio'] = None\n"
        "from pynode.blocking import BlockingNode\n"
        "with BlockingNode('a@127.0.0.1', 'c', epmd=False, listen_host='127.0.0.1') as a,"
        " BlockingNode('b@127.0.0.1', 'c', epmd=False, listen_host='127.0.0.1') as b:\n"
        "    a.connect(b.name, address=('127.0.0.1', b.node.port))\n"
        "    inbox = b.mailbox(); a.mailbox().send(inbox.pid, 'hi')\n"
        "    print(inbox.receive(timeout=10))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "b'hi'"


def test_an_interrupted_thread_write_drops_the_connection_not_the_stream(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C between a thread's write and keeping what the socket did not take: how much
    went out is unknown, so the connection goes down (no half packet is followed by more)."""
    import os

    from pynode.runtime import transport

    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            conn = _connected_pair(a, b, shared=True)
            inbox = b.mailbox()
            out = a.mailbox()
            out.send(inbox.pid, Atom("before"))
            assert inbox.receive(timeout=10) == Atom("before")

            torn = cast(Any, conn.channel)._fd

            class HalfThenInterrupt:  # transport's os, for the connection's socket
                def __getattr__(self, name: str) -> Any:
                    return getattr(os, name)

                @staticmethod
                def write(fd: int, data: Any) -> int:
                    if fd != torn:
                        return os.write(fd, data)
                    os.write(fd, bytes(data)[:5])
                    raise KeyboardInterrupt

            monkeypatch.setattr(transport, "os", HalfThenInterrupt())
            with pytest.raises(KeyboardInterrupt):
                out.send(inbox.pid, Atom("torn"))
            monkeypatch.undo()
            assert a.node is not None
            deadline = time.monotonic() + 10
            while conn.alive or b.name in a.nodes():
                assert time.monotonic() < deadline, "the connection stayed up"
                time.sleep(0.01)
            with pytest.raises(TimeoutError):
                inbox.receive(timeout=0.2)


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_rpc_outlives_exit_signals_to_its_mailbox(backend: str) -> None:
    """The mailbox every thread's rpc and gen_call answers come to traps exits (as the
    async call box and rex do): a peer's link exit or exit/2 leaves it; exit(Pid, kill) ends
    it, and the next call gets a new one (the dead one failed every later call for good)."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as b:
            assert b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            b.node.expose("py", "add")(lambda x, y: x + y)
            assert a.rpc(b.name, "py", "add", [1, 2], timeout=10) == 3
            box = a._rpc_box
            assert box is not None
            linker = b.mailbox()
            b.run(linker.async_mailbox.link, box.pid)
            linker.close(Atom("boom"))  # a link exit to the box
            other = b.mailbox()
            b.run(other.async_mailbox.exit, box.pid, Atom("shutdown"))
            assert a.rpc(b.name, "py", "add", [2, 3], timeout=10) == 5  # after both signals
            assert a._rpc_box is box and not box.async_mailbox.closed
            assert a.rpc(b.name, "py", "add", [0, 0], timeout=10) == 0
            assert len(box.async_mailbox) == 0  # the trapped exits did not pile up
            b.run(other.async_mailbox.exit, box.pid, Atom("kill"))
            deadline = time.monotonic() + 10
            while not box.async_mailbox.closed and time.monotonic() < deadline:
                assert a.ping(b.name)  # a round trip: the kill went before its answer
            assert box.async_mailbox.closed
            assert a.rpc(b.name, "py", "add", [3, 4], timeout=10) == 7
            assert a._rpc_box is not box


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_receiving_threads_stop_spinning_when_nothing_comes_within_the_spin(backend: str) -> None:
    """Receives whose spin runs out (sparse traffic) close the node's gate; a message still
    arrives, from the sleep."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as a:
        mb = a.mailbox()
        for _ in range(40):  # each spin (300 us) runs out within the 5 ms
            with pytest.raises(TimeoutError):
                mb.receive(timeout=0.005)
        assert not a.spin_gate.open
        a.send(mb.pid, "late")
        assert mb.receive(timeout=30) == "late"


def test_a_threads_sends_follow_their_destination_and_its_connection() -> None:
    """A thread's send keeps the last destination's route: another destination, or the same
    one once its connection went down and a new one came up, is routed anew."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            assert a.node is not None and b.node is not None
            first = _connected_pair(a, b)
            one, two = b.mailbox(), b.mailbox()
            out = a.mailbox()
            same_one = decode(encode(one.pid))  # an equal pid, decoded anew (a reply's)
            assert same_one == one.pid and same_one is not one.pid
            for dest, other in ((one.pid, two), (two.pid, one), (one.pid, two), (same_one, two)):
                out.send(dest, Atom("hello"))
                box = one if dest == one.pid else two
                assert box.receive(timeout=10) == Atom("hello")
                with pytest.raises(TimeoutError):
                    other.receive(timeout=0.05)
            a.run(first.close)
            deadline = time.monotonic() + 10
            while b.name in a.nodes():
                assert time.monotonic() < deadline, "the connection stayed up"
                time.sleep(0.01)
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            second = a.node.connector.connections[b.name]
            assert second is not first and not first.alive
            out.send(one.pid, Atom("again"))
            assert one.receive(timeout=10) == Atom("again")
            a.run(lambda: None)  # the loop is past its hand-over (b may receive before)
            assert second.counters()["messages_out"] >= 1


class _Decoy:
    """A connection a stale route may name: it records what it is asked to send."""

    def __init__(self, peer: Atom, alive: bool) -> None:
        self.peer, self.alive, self.sent = peer, alive, []

    def send_from_thread(self, control: Any, payload: Any, soon: Any) -> bool:
        self.sent.append(payload)
        return True


def test_a_kept_route_needs_its_connection_up_and_in_the_nodes_table() -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            assert a.node is not None
            _connected_pair(a, b)
            inbox = b.mailbox()
            out = a.mailbox()
            out.send(inbox.pid, 0)
            assert inbox.receive(timeout=10) == 0
            route = out._route
            assert route is not None and route[0] == inbox.pid
            up_elsewhere = _Decoy(b.name, alive=True)  # replaced: out of the table, not yet down
            down_in_table = _Decoy(b.name, alive=False)
            for i, (decoy, table) in enumerate(((up_elsewhere, {}), (down_in_table, {b.name: down_in_table})), 1):
                out._route = (route[0], cast(Any, decoy), route[2], table)
                out.send(inbox.pid, i)
                assert inbox.receive(timeout=10) == i and decoy.sent == []
                assert out._route[1] is a.node.connector.connections[b.name]


def test_names_that_compare_equal_are_routed_apart() -> None:
    """(True, Node) == (1, Node) in Python, but they name 'True' and '1'."""
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend_options={}) as b:
            _connected_pair(a, b)
            boxes = {"True": b.mailbox("True"), "1": b.mailbox("1")}
            out = a.mailbox()
            for name in (True, 1, True):
                out.send((name, b.name), name)
                assert boxes[str(name)].receive(timeout=10) == name
            for box in boxes.values():
                with pytest.raises(TimeoutError):
                    box.receive(timeout=0.05)
