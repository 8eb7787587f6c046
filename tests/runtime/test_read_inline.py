"""A task waiting for an answer reads it on the spot (Channel.read_inline), and leaves the
event loop its turn whenever the loop has anything else to do."""

from __future__ import annotations

import asyncio
import contextlib
import select
import socket
import struct
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import pytest

from pynode.blocking import BlockingNode
from pynode.runtime import MailboxClosed, Node, busywait, transport
from pynode.term import Atom, Pid

from .test_transport import RawPeer

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # the only loop with a selector to spin on and a transport to read under


@pytest.fixture
def raw_peer() -> Iterator[RawPeer]:
    peer = RawPeer()
    yield peer
    peer.close()


@pytest.fixture
def c_spin(monkeypatch: pytest.MonkeyPatch) -> None:
    """The compiled spin, also in the pure-Python run (where the package does not load it)."""
    spin = pytest.importorskip("pynode.runtime._spin")
    monkeypatch.setattr(busywait, "_wait_readable", spin.wait_readable)
    monkeypatch.setattr(transport, "_read_ready", spin.read_ready)
    monkeypatch.setattr(transport, "_take_into", spin.take_into)
    monkeypatch.setattr(transport, "_take_own", spin.take_own)
    monkeypatch.setattr(transport, "_queued", spin.queued)
    monkeypatch.setattr(transport, "_hold", spin.hold)


@pytest.fixture
def waits(c_spin: None, monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """The seconds of every inline wait from now on (the compiled read_ready and take_into,
    counted)."""
    real = transport._read_ready
    assert real is not None
    seen: list[float] = []

    def counting(epfd: int, fd: int, seconds: float, size: int) -> bytes | None:
        seen.append(seconds)
        return real(epfd, fd, seconds, size)

    monkeypatch.setattr(transport, "_read_ready", counting)
    take = transport._take_into
    assert take is not None

    def counting_take(buf: bytearray, epfd: int, fd: int, seconds: float, *rest: Any) -> tuple[int, int]:
        seen.append(seconds)  # (a take's reads after the first are not counted)
        return take(buf, epfd, fd, seconds, *rest)

    monkeypatch.setattr(transport, "_take_into", counting_take)
    return seen


def spins(waits: list[float]) -> int:
    """How many of the inline waits spun (a read of what is there already waits 0 s)."""
    return sum(1 for w in waits if w > 0)


class Served:
    """A channel to a raw peer, served: what it received, and whether it saw the end."""

    def __init__(self, ch: transport._ProtocolChannel, peer: socket.socket) -> None:
        self.ch = ch
        self.peer = peer
        self.got = bytearray()
        self.chunks: list[int] = []
        self.eof = False

    def on_data(self, data: bytes) -> None:
        self.got += data
        self.chunks.append(len(data))

    def on_eof(self) -> None:
        self.eof = True

    def has(self, n: int) -> Any:
        """A done() for read_inline: ``n`` bytes received."""
        return lambda: len(self.got) >= n

    async def until(self, cond: Any) -> None:
        """Let the loop run until ``cond()`` (bounded)."""
        with anyio.fail_after(10):
            while not cond():
                await anyio.sleep(0)


@pytest.fixture
async def served(c_spin: None, raw_peer: RawPeer) -> AsyncIterator[Served]:
    loop = asyncio.get_running_loop()
    spinner = busywait.install(loop, 100e-6)
    assert spinner is not None and spinner.spin_fd >= 0
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel)
    s = Served(ch, raw_peer.socket())
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.serve, s.on_data, s.on_eof)
            await s.until(lambda: ch._on_data is not None)
            yield s
            tg.cancel_scope.cancel()
    finally:
        await ch.aclose()
        busywait.uninstall(loop, spinner)


async def next_idle_moment(loop: asyncio.AbstractEventLoop) -> None:
    """Let the loop poll once (a new idle moment: its spin is not spent), then settle."""
    await anyio.sleep(0)
    await settle(loop)


async def settle(loop: asyncio.AbstractEventLoop) -> None:
    """Return when the loop has no callback ready (what read_inline waits for), bounded."""
    with anyio.fail_after(10):
        while loop._ready:  # type: ignore[attr-defined]
            await anyio.sleep(0)


def wait_inline(served: Served, reader: str, done: Any, spin: float) -> None:
    """One task's wait for bytes on the spot, until ``done(all bytes so far)``: by
    read_inline (the bytes handled as read), or by take_inline (the bytes kept, then fed
    as an rpc's _take_answer feeds what is not its answer)."""
    if reader == "read_inline":
        served.ch.read_inline(lambda: done(bytes(served.got)), spin)
    else:
        served.ch.feed(served.ch.take_inline(spin, lambda buf: done(bytes(served.got + buf))))


async def test_the_answer_is_read_and_handled_on_the_waiting_task(served: Served) -> None:
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"answer")
    served.ch.read_inline(lambda: bool(served.got), 0.5)
    # no await in between: the bytes went through data_received on this task
    assert served.got == b"answer"


async def test_bytes_keep_their_order_between_inline_and_loop_reads(served: Served) -> None:
    expected = bytearray()
    for i in range(40):
        chunk = b"<%d>" % i
        expected += chunk
        served.peer.sendall(chunk)
        if i % 3:
            served.ch.read_inline(served.has(len(expected)), 0.2)
        else:
            await anyio.sleep(0)  # a loop iteration now and then: the loop reads some
    await served.until(lambda: len(served.got) >= len(expected))
    assert served.got == expected


@pytest.mark.parametrize("reader", ["task", "loop"])
async def test_a_ready_callback_leaves_the_read_to_the_loop(served: Served, reader: str) -> None:
    """Neither a task's inline read nor the wait after the loop's own read takes the next
    bytes while a callback is ready: the loop's turn."""
    loop = asyncio.get_running_loop()
    await settle(loop)
    ran: list[bool] = []
    loop.call_soon(ran.append, True)
    served.peer.sendall(b"later")
    first = b"" if reader == "task" else b"first;"
    if reader == "task":
        served.ch.read_inline(lambda: bool(served.got), 0.5)
    else:
        served.ch.data_received(first)
    assert served.got == first and ran == []  # nothing read, nothing run
    await served.until(lambda: served.got == first + b"later")
    assert ran == [True]


async def test_another_descriptors_event_ends_the_wait(served: Served) -> None:
    loop = asyncio.get_running_loop()
    other, other_peer = socket.socketpair()
    seen: list[bytes] = []
    loop.add_reader(other.fileno(), lambda: seen.append(other.recv(10)))
    try:
        await settle(loop)
        gate = served.ch._inline_gate
        gate.hits = 0.5  # open: an outcome of either kind would move it
        other_peer.send(b"x")  # readable: the selector descriptor is; this channel has nothing
        t0 = time.monotonic()
        served.ch.read_inline(lambda: bool(served.got), 0.9)
        waited = time.monotonic() - t0
        assert waited < 0.45, f"waited {waited:.3f} s out of a 0.9 s spin for nothing"
        assert served.got == b"" and seen == []
        assert gate.hits == 0.5  # neither a hit nor a miss: the loop's event, not this wait's
        await served.until(lambda: seen == [b"x"])
    finally:
        loop.remove_reader(other.fileno())
        other.close()
        other_peer.close()


async def test_a_timer_due_ends_the_wait(served: Served) -> None:
    loop = asyncio.get_running_loop()
    fired: list[bool] = []
    await settle(loop)
    gate = served.ch._inline_gate
    gate.hits = 0.5
    loop.call_later(0.02, fired.append, True)
    t0 = time.monotonic()
    served.ch.read_inline(lambda: bool(served.got), 0.9)
    waited = time.monotonic() - t0
    assert waited < 0.45, f"waited {waited:.3f} s past a timer due in 0.02 s"
    assert gate.hits == 0.5  # a wait a timer cuts short teaches the gate nothing
    await served.until(lambda: fired == [True])


READERS = ["read_inline", "take_inline"]


@pytest.mark.parametrize("reader", READERS)
async def test_a_streak_of_inline_reads_goes_on_while_the_loop_has_nothing_else(
    served: Served, reader: str
) -> None:
    """After a streak, one poll of the loop's selector finds nothing but this socket's bytes:
    a new streak begins, without the loop's iteration."""
    loop = asyncio.get_running_loop()
    await settle(loop)
    sel: Any = loop._selector  # type: ignore[attr-defined]
    polls = sel.polls
    for i in range(2 * transport._INLINE_STREAK + 1):
        served.peer.sendall(b"%02d" % i)
        wait_inline(served, reader, lambda got, n=2 * (i + 1): len(got) >= n, 0.5)
        assert len(served.got) == 2 * (i + 1), f"read {i} was not inline"
    assert sel.polls == polls  # the loop never ran meanwhile


@pytest.mark.parametrize("reader", READERS)
async def test_the_loop_gets_its_turn_after_a_streak_when_it_has_an_event(
    served: Served, reader: str
) -> None:
    loop = asyncio.get_running_loop()
    await settle(loop)
    for i in range(transport._INLINE_STREAK):
        served.peer.sendall(b"%02d" % i)
        wait_inline(served, reader, lambda got, n=2 * (i + 1): len(got) >= n, 0.5)
        assert len(served.got) == 2 * (i + 1), f"read {i} was not inline"
    other, other_peer = socket.socketpair()
    handled: list[bytes] = []
    loop.add_reader(other, lambda: handled.append(other.recv(10)))
    try:
        other_peer.send(b"o")  # another descriptor's event, after the streak
        served.peer.sendall(b"zz")
        wait_inline(served, reader, lambda got: got.endswith(b"zz"), 0.5)
        assert not served.got.endswith(b"zz")  # the loop has an event: its turn first
        await served.until(lambda: served.got.endswith(b"zz") and handled == [b"o"])
    finally:
        loop.remove_reader(other)
        other.close()
        other_peer.close()
    await settle(loop)
    served.peer.sendall(b"yy")  # the loop polled: inline reads again
    served.ch.read_inline(lambda: served.got.endswith(b"yy"), 0.5)
    assert served.got.endswith(b"yy")


def queue_the_loops_read(ch: transport._ProtocolChannel, loop: asyncio.AbstractEventLoop) -> Any:
    """What the loop's poll queues when the channel's socket is readable: the transport's
    registered reader handle, in the loop's ready callbacks. Returned."""
    reader = loop._selector.get_key(ch._fd).data[0]  # type: ignore[attr-defined]
    assert reader._callback == ch._loop_read
    loop._ready.append(reader)  # type: ignore[attr-defined]
    return reader


async def backlogged(served: Served, size: int) -> tuple[bytes, asyncio.AbstractEventLoop]:
    """``size`` bytes sent, of which the first read (1460 bytes, full) has been handled: the
    rest waits in the socket, as behind a streaming sender."""
    loop = asyncio.get_running_loop()
    await settle(loop)
    served.ch.read_size(1460)
    data = bytes(i % 251 for i in range(size))
    t: Any = served.ch.transport
    t.pause_reading()  # (the loop's reads would take the bytes while they arrive)
    served.peer.sendall(data)
    with anyio.fail_after(10):
        while transport._queued(served.ch._fd) < size:  # type: ignore[misc]  # all arrived
            await anyio.sleep(0)
    t.resume_reading()
    await settle(loop)
    served.ch.read_inline(served.has(1), 0.5)
    assert served.chunks == [1460] and served.ch._full
    return data, loop


@pytest.mark.parametrize("size", [transport._BACKLOG + 1460, 2 * transport._BACKLOG])
async def test_a_backlog_is_read_on_the_task_before_the_loops_own_read(served: Served, size: int) -> None:
    """The socket holds a backlog and the loop's only ready callback is its own read of it:
    a receiving task reads the next bytes on the spot, where it would wait for that read,
    an iteration and a task switch; the loop's read then takes what follows, in order."""
    data, loop = await backlogged(served, size)
    sel: Any = loop._selector  # type: ignore[attr-defined]
    reader = queue_the_loops_read(served.ch, loop)
    polls = sel.polls
    served.ch.read_inline(served.has(2 * 1460), 0.5)
    assert served.chunks == [1460, 1460]  # read here, the loop not polled
    assert sel.polls == polls and list(loop._ready) == [reader]  # type: ignore[attr-defined]
    await served.until(lambda: len(served.got) == size)
    assert served.got == data


@pytest.mark.parametrize("why", ["short", "another callback", "only another callback", "no full read"])
async def test_the_loops_own_read_goes_first_without_a_backlog(served: Served, why: str) -> None:
    """Less than a backlog in the socket, another callback ready besides the loop's read (or
    instead of it), or a last read that did not fill its buffer: the task leaves the bytes
    to the loop."""
    data, loop = await backlogged(served, transport._BACKLOG - 1 + 1460 if why == "short" else 2 * transport._BACKLOG)
    ran: list[bool] = []
    if why.endswith("another callback"):  # (made ready before the loop's poll queued its read)
        loop.call_soon(ran.append, True)
    if why != "only another callback":
        queue_the_loops_read(served.ch, loop)
    if why == "no full read":
        served.ch._full = False  # (as after a read that took all there was)
    served.ch.read_inline(served.has(2 * 1460), 0.5)
    assert served.chunks == [1460]
    await served.until(lambda: len(served.got) == len(data))
    assert served.got == data
    assert ran == ([True] if why.endswith("another callback") else [])


async def test_a_streak_of_backlog_reads_ends_with_the_loops_turn(served: Served) -> None:
    """A task that reads a sender's backlog on the spot never yields to the loop; after a
    streak of such reads it waits for the loop's iteration (its timers, its other tasks),
    however much the socket still holds."""
    # a backlog still after a streak's reads (so only the streak's end stops them)
    data, loop = await backlogged(served, transport._BACKLOG + (transport._INLINE_STREAK + 1) * 1460)
    sel: Any = loop._selector  # type: ignore[attr-defined]
    queue_the_loops_read(served.ch, loop)
    polls = sel.polls
    for _ in range(2 * transport._INLINE_STREAK):
        served.ch.read_inline(served.has(len(served.got) + 1), 0.5)
    # a streak's reads in all since the loop's last poll (backlogged's first one included)
    assert served.chunks == [1460] * transport._INLINE_STREAK
    assert sel.polls == polls
    await served.until(lambda: len(served.got) == len(data))
    assert served.got == data


async def test_a_read_after_a_streams_read_holds_for_more(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """A task's read that follows a stream's read (_STREAM_READ bytes or more) first lets the
    socket gather more while they keep coming (busywait.hold); one that follows an answer's
    read (a small one) reads at once."""
    real = transport._hold
    assert real is not None
    held: list[tuple[int, float, float, int]] = []

    def recording(fd: int, seconds: float, gap: float, enough: int) -> int:
        held.append((fd, seconds, gap, enough))
        return real(fd, seconds, gap, enough)

    monkeypatch.setattr(transport, "_hold", recording)
    await settle(asyncio.get_running_loop())
    sizes = [transport._STREAM_READ, 100, 100]
    for i, n in enumerate(sizes):
        served.peer.sendall(b"s" * n)
        served.ch.read_inline(served.has(sum(sizes[: i + 1])), 0.5)
        assert served.chunks == sizes[: i + 1]  # each read here, whole
        # held: only the read after the stream's
        assert held == ([] if i == 0 else [(served.ch._fd, transport._HOLD, transport._HOLD_GAP, transport._BACKLOG)])


async def test_an_rpcs_answer_read_ends_the_streams_mark(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """After a stream's read, an answer read by take_inline (an rpc's) leaves the next read
    unheld: the connection now carries answers."""
    held: list[int] = []
    monkeypatch.setattr(transport, "_hold", lambda fd, *rest: held.append(fd) or 0)
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"s" * transport._STREAM_READ)
    served.ch.read_inline(served.has(transport._STREAM_READ), 0.5)
    assert served.ch._stream and held == []
    served.peer.sendall(b"answer")
    assert served.ch.take_inline(0.5, lambda buf: len(buf) >= 6) == b"answer"
    assert not served.ch._stream
    served.peer.sendall(b"next")
    served.ch.read_inline(served.has(transport._STREAM_READ + 4), 0.5)
    assert served.got.endswith(b"next") and held == []


async def test_the_end_of_stream_is_left_to_the_transport(served: Served) -> None:
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"last")
    served.peer.shutdown(socket.SHUT_WR)
    served.ch.read_inline(lambda: False, 0.2)  # reads b"last", then finds the end
    assert served.got == b"last" and not served.eof
    await served.until(lambda: served.eof)  # the transport's own read reports it


async def test_nothing_inline_without_a_spinning_loop(c_spin: None, raw_peer: RawPeer) -> None:
    """busy_wait=0 (no spinning selector): the channel never reads on a task."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel)
    s = Served(ch, raw_peer.socket())
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.serve, s.on_data, s.on_eof)
        await s.until(lambda: ch._on_data is not None)
        await settle(asyncio.get_running_loop())
        s.peer.sendall(b"data")
        ch.read_inline(lambda: bool(s.got), 0.5)
        assert s.got == b""
        await s.until(lambda: s.got == b"data")
        tg.cancel_scope.cancel()
    await ch.aclose()


async def test_a_mailbox_waits_on_the_connection_it_last_sent_on(c_spin: None) -> None:
    """Round trips between two nodes of one loop: the answer needs the other node's task,
    so inline reads give way to the loop; every answer still arrives, in order."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            a.add_address(b.name, "127.0.0.1", b.port)
            echo = b.mailbox("echo")
            mb = a.mailbox()
            assert mb._peer is None
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:

                    async def serve() -> None:
                        while True:
                            frm, n = await echo.receive()
                            await echo.send(frm, n)

                    tg.start_soon(serve)
                    for i in range(200):
                        await mb.send((Atom("echo"), b.name), (mb.pid, i))
                        assert await mb.receive() == i
                    tg.cancel_scope.cancel()
            assert mb._peer is a.connector.connections[b.name]


async def test_never_from_inside_data_received(served: Served) -> None:
    """A task started eagerly by a handler, waiting on the same channel, reads nothing: the
    bytes under way would reach a data_received already running (and its context, entered)."""
    errors: list[BaseException] = []
    inner: list[bytes] = []

    def on_data(data: bytes) -> None:
        served.got += data
        if data.startswith(b"x"):
            served.peer.sendall(b"y")  # there to read, were a nested read allowed
            before = bytes(served.got)
            try:
                served.ch.read_inline(lambda: False, 0.2)
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
            inner.append(bytes(served.got[len(before):]))

    served.ch._on_data = on_data
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"x")
    served.ch.read_inline(lambda: bool(served.got), 0.5)
    assert errors == [] and inner == [b""]
    await served.until(lambda: served.got == b"xy")


async def test_a_spin_that_ran_out_is_the_loops_spin(served: Served) -> None:
    """After an inline wait that found nothing, the loop's next poll sleeps at once instead
    of spinning again: one spin per idle moment, as the busy wait promises."""
    loop = asyncio.get_running_loop()
    sel: Any = loop._selector  # type: ignore[attr-defined]
    await settle(loop)
    served.ch.read_inline(lambda: False, 0.001)  # nothing comes: the spin runs out
    assert sel.spent == sel.polls
    spins: list[int] = []  # the poll count at each spin of the loop's selector
    real = sel._c_wait

    def counting(fd: int, seconds: float) -> bool:
        spins.append(sel.polls)
        return bool(real(fd, seconds))

    came = loop.create_future()

    def on_data(data: bytes) -> None:
        served.got += data
        if not came.done():
            came.set_result(None)

    served.ch._on_data = on_data
    sel._c_wait = counting
    try:
        served.peer.sendall(b"z")
        with anyio.fail_after(10):
            await came  # nothing else ready: the loop's next poll may block
        assert served.got == b"z"
        assert sel.polls > sel.spent  # the loop polled since
        assert sel.spent + 1 not in spins  # and its first poll after the inline spin slept
    finally:
        sel._c_wait = real


async def test_reads_take_what_the_connection_asks_for(served: Served) -> None:
    """read_size sets the size of the inline reads and of the transport's own."""
    served.ch.read_size(100)
    assert served.ch.transport.max_size == 100  # type: ignore[union-attr]
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"r" * 250)
    served.ch.read_inline(served.has(250), 0.5)
    assert served.chunks == [100, 100, 50]
    served.ch.read_size(1 << 16)
    served.peer.sendall(b"s" * 5000)
    await served.until(lambda: len(served.got) == 5250)
    assert max(served.chunks[3:]) > 100  # the loop's reads too


async def test_read_size_is_for_tcp_only() -> None:
    """Over a Unix socket no ACK waits on a read: reads stay as large as asyncio's."""
    loop = asyncio.get_running_loop()
    a, b = socket.socketpair()
    try:
        _, ch = await loop.create_connection(transport._ProtocolChannel, sock=a)
        default = ch.transport.max_size  # type: ignore[union-attr]
        ch.read_size(100)
        assert ch.transport.max_size == default and ch._read_size == transport._RECV_SIZE  # type: ignore[union-attr]
        ch.close()
    finally:
        b.close()


async def test_a_connection_whose_answers_come_late_stops_spinning_for_them(
    served: Served, waits: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inline waits that keep running out (answers later than the spin: a peer that sends
    now and then) close the connection's gate: its waits return at once, but for one probe in
    PROBE_EVERY; an answer within the spin opens it again."""
    # a probe whose yield a busy machine takes backs off: not this test's subject
    monkeypatch.setattr(busywait, "spins_given_up", lambda: 0)
    loop = asyncio.get_running_loop()
    ch = served.ch
    gate = ch._inline_gate
    for _ in range(40):
        await next_idle_moment(loop)
        ch.read_inline(lambda: False, 0.002)  # nothing comes
    assert gate.hits < busywait.HIT_FLOOR
    before = spins(waits)
    for _ in range(busywait.PROBE_EVERY):
        await next_idle_moment(loop)
        ch.read_inline(lambda: False, 0.002)
    assert spins(waits) == before + 1  # the probe alone spun
    n = len(served.got)
    for _ in range(100 * busywait.PROBE_EVERY):  # bounded: every probe now finds a byte
        if gate.hits >= busywait.HIT_FLOOR:
            break
        await next_idle_moment(loop)
        served.peer.sendall(b"p")
        ch.read_inline(served.has(n + 1), 1.0)
        await served.until(served.has(n + 1))
        n += 1
    assert gate.hits >= busywait.HIT_FLOOR


async def test_after_the_loops_read_the_next_bytes_are_served_on_the_spot(served: Served) -> None:
    """data_received (the loop's read) goes on reading what the peer sends next while the
    loop has nothing else to do: a peer's next request skips the loop's poll and dispatch."""
    loop = asyncio.get_running_loop()
    await settle(loop)
    served.peer.sendall(b"next")
    with anyio.fail_after(10):  # the bytes are in the socket before the "loop's read"
        while not select.select([served.ch._fd], [], [], 0.01)[0]:
            pass
    served.ch.data_received(b"first;")
    assert served.got == b"first;next"  # no await in between: read and handled here
    assert served.ch._inline_streak == 1  # counted with the tasks' inline reads


async def test_one_spin_per_idle_moment(served: Served, waits: list[float]) -> None:
    """A wait that ran out spent the loop's idle moment: another inline wait before the loop
    polls again (a call whose answer came late, reading on) does not spin a second time."""
    loop = asyncio.get_running_loop()
    await next_idle_moment(loop)
    served.ch.read_inline(lambda: False, 0.002)  # nothing comes: the spin runs out
    assert len(waits) == 1
    assert served.ch.take_inline(0.002, lambda buf: False) == b""
    served.ch.read_inline(lambda: False, 0.002)
    assert len(waits) == 1  # neither spun again
    await next_idle_moment(loop)
    served.ch.read_inline(lambda: False, 0.002)
    assert len(waits) == 2


async def test_a_closed_gate_decides_once_per_call(served: Served, waits: list[float]) -> None:
    """A call asks its connection's gate once: take_inline refused, the read_inline that
    follows (its fallback) does not count as a second refusal towards the next probe."""
    loop = asyncio.get_running_loop()
    ch = served.ch
    ch._inline_gate.hits = 0.0  # closed: answers have been coming after the spin
    before = spins(waits)
    for _ in range(busywait.PROBE_EVERY):
        await next_idle_moment(loop)
        assert ch.take_inline(0.002, lambda buf: False) == b""
        ch.read_inline(lambda: False, 0.002)
    assert spins(waits) - before == 1  # one probe in PROBE_EVERY calls


async def test_a_closed_gate_still_lets_a_task_read_what_is_there(served: Served, waits: list[float]) -> None:
    """Where waits do not pay, a task's read_inline still takes the bytes already in the
    socket (a poll, no spin), and such a read teaches the gate nothing: a mailbox kept busy
    by streaming messages reads the next ones on the spot instead of through the loop."""
    loop = asyncio.get_running_loop()
    ch = served.ch
    gate = ch._inline_gate
    gate.hits = 0.0
    gate._skipped = 1 - busywait.PROBE_EVERY  # the next probe is far off
    served.peer.sendall(b"there")
    with anyio.fail_after(10):  # in the socket before the wait
        while not select.select([ch._fd], [], [], 0.01)[0]:
            pass
    await next_idle_moment(loop)
    before = len(waits)
    ch.read_inline(served.has(5), 0.002)
    assert served.got == b"there"  # read here, no await
    assert waits[before:] == [0.0]  # one poll, no spin
    assert gate.hits == 0.0
    ch.read_inline(lambda: False, 0.002)  # nothing there: back at once, no spin either
    assert waits[before + 1:] == [0.0] and gate.hits == 0.0
    assert ch.take_inline(0.002, lambda buf: False) == b""  # a call's first read waits or not at all
    assert waits[before + 2:] == []


@pytest.mark.parametrize("reader", READERS)
async def test_a_task_whose_answer_came_half_is_a_miss(served: Served, reader: str) -> None:
    """A wait that read part of its answer and then ran out did not save the task its
    sleep: the gate counts it as a miss, as one that read nothing."""
    loop = asyncio.get_running_loop()
    gate = served.ch._inline_gate
    await next_idle_moment(loop)
    served.peer.sendall(b"a")
    wait_inline(served, reader, lambda got: len(got) >= 2, 0.002)  # "a", then in vain
    assert served.got == b"a" and gate.hits < 1.0
    hits = gate.hits
    await next_idle_moment(loop)
    served.peer.sendall(b"b")
    wait_inline(served, reader, lambda got: len(got) >= 2, 0.5)
    assert served.got == b"ab" and gate.hits > hits  # whole: a hit


async def test_an_answer_in_two_reads_is_read_whole_in_one_wait(served: Served) -> None:
    """A wait whose first read brought part of the answer goes on for the rest (read_inline
    makes that first read itself, then the general loop reads on): both parts are handled on
    the task, and the gate learns one hit."""
    loop = asyncio.get_running_loop()
    gate = served.ch._inline_gate
    gate.hits = 0.5  # open (above HIT_FLOOR), and below 1: one hit shows as one step up
    on_data = served.ch._on_data
    assert on_data is not None

    def then_the_rest(data: bytes) -> None:
        on_data(data)
        if data == b"a":  # the rest comes once the first part was read
            served.peer.sendall(b"b")

    served.ch._on_data = then_the_rest
    await next_idle_moment(loop)
    served.peer.sendall(b"a")
    served.ch.read_inline(lambda: len(served.got) >= 2, 0.5)
    assert served.got == b"ab" and served.chunks == [1, 1]
    assert gate.hits == pytest.approx(0.5 + 0.5 * busywait.HIT_WEIGHT)


async def test_a_callback_a_handler_readies_ends_the_wait_after_part_of_the_answer(served: Served) -> None:
    """After a first read that was not the whole answer, a callback made ready by its
    handler is the loop's turn: the rest is the loop's to read."""
    loop = asyncio.get_running_loop()
    on_data = served.ch._on_data
    assert on_data is not None
    ran: list[bool] = []

    def readies(data: bytes) -> None:
        on_data(data)
        if data == b"a":
            loop.call_soon(ran.append, True)
            served.peer.sendall(b"b")

    served.ch._on_data = readies
    await next_idle_moment(loop)
    served.peer.sendall(b"a")
    served.ch.read_inline(lambda: len(served.got) >= 2, 0.5)
    assert served.got == b"a" and ran == []
    await served.until(lambda: served.got == b"ab" and ran == [True])


async def test_take_inline_hands_back_what_it_read_when_enough_raises(served: Served) -> None:
    """Bytes take_inline read are the connection's: a failing ``enough`` loses none."""
    await settle(asyncio.get_running_loop())
    served.peer.sendall(b"kept")

    def enough(buf: bytearray) -> bool:
        raise KeyError("boom")

    with pytest.raises(KeyError):
        served.ch.take_inline(0.5, enough)
    assert served.got == b"kept"


async def test_a_reset_met_by_take_inline_is_the_transports_error(c_spin: None, raw_peer: RawPeer) -> None:
    """A read that fails on the spot ends the connection as the transport's own read would:
    serve raises the reset, and take_inline returns what it read before (nothing)."""
    loop = asyncio.get_running_loop()
    spinner = busywait.install(loop, 100e-6)
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel)
    peer = raw_peer.socket()
    errors: list[BaseException] = []

    async def serve() -> None:
        try:
            await ch.serve(lambda data: None, lambda: None)
        except OSError as e:
            errors.append(e)

    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve)
            with anyio.fail_after(10):
                while ch._on_data is None:
                    await anyio.sleep(0)
            await settle(loop)
            peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            peer.close()  # an RST
            assert ch.take_inline(0.5, lambda buf: False) == b""
            assert ch._lost or ch.transport.is_closing()  # type: ignore[union-attr]
            with anyio.fail_after(10):
                while not errors:
                    await anyio.sleep(0)
        assert isinstance(errors[0], ConnectionResetError)
    finally:
        await ch.aclose()
        busywait.uninstall(loop, spinner)


async def test_a_timer_a_handler_sets_ends_the_serve_wait(served: Served) -> None:
    """A handler run inside the serve's wait may set a timer due before the wait's end: the
    wait ends for it (the loop runs it) instead of spinning on to its end."""
    loop = asyncio.get_running_loop()
    sel: Any = loop._selector  # type: ignore[attr-defined]
    spin, sel.spin = sel.spin, 1.0  # a long wait, to tell the two apart
    fired: list[bool] = []
    on_data = served.ch._on_data

    def handler(data: bytes) -> None:
        assert on_data is not None
        on_data(data)
        if data == b"y":  # read by the serve's wait
            loop.call_later(0.001, fired.append, True)

    served.ch._on_data = handler
    try:
        await settle(loop)
        sel.gate.hits = 1.0
        served.peer.sendall(b"y")
        with anyio.fail_after(10):  # in the socket before the "loop's read"
            while not select.select([served.ch._fd], [], [], 0.01)[0]:
                pass
        t0 = time.monotonic()
        served.ch.data_received(b"x")
        took = time.monotonic() - t0
        assert served.got == b"xy"  # "y" read and handled by the serve's wait
        assert took < 0.5, f"the wait went on {took * 1000:.0f} ms past a timer due in 1 ms"
        await served.until(lambda: fired == [True])
    finally:
        sel.spin = spin
        served.ch._on_data = on_data


async def test_the_serve_waits_anew_after_each_read(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    """A peer whose next bytes keep coming within the spin is served on the spot for longer
    than one spin: each read begins a new wait, as the loop's own would be. (A clock that
    moves 0.4 spin at each look: the first wait alone would end after two reads.)"""
    loop = asyncio.get_running_loop()
    sel: Any = loop._selector  # type: ignore[attr-defined]
    now = [time.monotonic()]

    def clock() -> float:
        now[0] += 0.4 * sel.spin
        return now[0]

    on_data = served.ch._on_data
    sent = [0]

    def handler(data: bytes) -> None:  # each chunk read makes the peer send the next one
        assert on_data is not None
        on_data(data)
        if sent[0] < 10:
            sent[0] += 1
            served.peer.sendall(b"%d;" % sent[0])

    await settle(loop)
    sel.gate.hits = 1.0
    monkeypatch.setattr(transport, "_monotonic", clock)
    served.ch._on_data = handler
    try:
        served.ch.data_received(b"0;")
    finally:
        served.ch._on_data = on_data
    assert served.got == b"".join(b"%d;" % i for i in range(11))  # all read in the serve


@contextlib.contextmanager
def echo_peer(processes: int = 1) -> Iterator[tuple[BlockingNode, list[Pid]]]:
    """A node on a loop of its own (another thread), with ``processes`` processes that each
    send a ``(Pid, term)`` back as ``term``, ``1..n`` to Pid on ``("burst", Pid, n)``, and
    exit with reason ``boom`` on ``die``: a peer that answers while this loop's task waits."""
    with BlockingNode("peer@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
        assert b.node is not None and b._portal is not None
        boxes = [b._portal.call(b.node.mailbox) for _ in range(processes)]

        async def serve(box: Any) -> None:
            while True:
                m = await box.receive()
                if m == Atom("die"):
                    box.close(Atom("boom"))
                    return
                if m[0] == Atom("burst"):  # ("burst", Pid, n): 1..n, in one go
                    for i in range(1, m[2] + 1):
                        await box.send(m[1], i)
                    continue
                await box.send(m[0], m[1])

        for box in boxes:
            b._portal.start_task_soon(serve, box)
        yield b, [box.pid for box in boxes]


async def test_a_receive_reads_its_answer_into_the_queue_without_a_wake(c_spin: None) -> None:
    """A receive with nothing queued reads its peer before it registers as a waiter: the
    mailbox's sink is open, so the answer goes into the queue from the codec's call, and no
    future is made or woken (about a fifth of an echo's Python on one CPU with erl)."""
    with echo_peer() as (b, [echo]):
        async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
            a.add_address(b.name, "127.0.0.1", b.node.port)  # type: ignore[union-attr]
            mb = a.mailbox()
            woken = [0]
            wake = mb._wake

            def counted() -> None:
                woken[0] += 1
                wake()

            mb._wake = counted  # type: ignore[method-assign]
            rounds = 50
            with anyio.fail_after(30):
                for i in range(rounds):
                    await mb.send(echo, (mb.pid, i))
                    assert await mb.receive() == i
            # the peer answers within the spin most times (its thread runs while this one
            # spins without the GIL); a receive that registered a waiter was woken
            assert woken[0] < rounds


async def test_a_receive_reading_inline_sees_its_mailbox_closed_by_what_it_read(c_spin: None) -> None:
    """An exit signal read on the spot closes the mailbox while nothing is queued: the
    receive raises MailboxClosed then, instead of waiting for a wake that never comes. (Six
    processes: the exit comes within the spin most times, not every time; with a timeout and
    without one, two paths.)"""
    with echo_peer(6) as (b, echoes):
        async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
            a.add_address(b.name, "127.0.0.1", b.node.port)  # type: ignore[union-attr]
            for i, echo in enumerate(echoes):
                mb = a.mailbox()
                await mb.link(echo)
                with anyio.fail_after(30):
                    await mb.send(echo, (mb.pid, Atom("linked")))  # the link is there first
                    assert await mb.receive() == Atom("linked")
                    await mb.send(echo, Atom("die"))
                    with pytest.raises(MailboxClosed) as closed:
                        await mb.receive(timeout=5 if i % 2 else None)  # (within fail_after)
                assert closed.value.reason == Atom("boom")
