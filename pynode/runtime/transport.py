"""Byte channels under distribution connections: an asyncio Protocol fast path, anyio streams
for every other backend (trio).

A :class:`Channel` has two phases. During the handshake it is a stream (``send``/``receive``).
Once connected, :meth:`Channel.serve` pushes every received chunk to a callback and
:meth:`Channel.write` queues bytes without blocking.

On asyncio the channel is an ``asyncio.Protocol``: bytes go from ``data_received`` straight
into the sans-IO framing and on to the mailboxes, and writes go straight to the transport, so
no task wakes per packet (the anyio stream path costs a task switch for every read and every
write). The first write of a loop iteration goes out at once (latency); later writes in the
same iteration are joined into one send at the end of it (throughput).
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import logging
import os
import socket
import ssl
import sys
import threading
import time
from asyncio import selector_events
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any

import anyio
from anyio.abc import ByteStream, SocketAttribute, TaskGroup
from anyio.streams.tls import TLSStream

from .busywait import HIT_FLOOR, TAKE_ENOUGH, TAKE_SPENT, TAKE_STREAK, SpinGate
from .busywait import hold as _hold
from .busywait import queued as _queued
from .busywait import read_ready as _read_ready
from .busywait import take_into as _take_into
from .busywait import take_own as _take_own
from .tls import tls_reason

log = logging.getLogger("pynode.node")

HIGH_WATER = 1024 * 1024
"""Buffered outgoing bytes above which ``drain`` waits for the peer to take them: 1 MiB, the
default of erts' own distribution buffer busy limit (``erl +zdbbl``, 1024 KB)."""

_RECV_SIZE = 262144  # what a read asks for until the connection says otherwise (read_size)
# A task's read of what the socket holds goes before the loop's own read queued for it once
# the socket holds this much (see _inline_window): 11 of the reads a stream of small messages
# makes (connection.READ_MIN). With erl streaming on the same CPU the socket held 64 KiB or
# more at 94% of those moments; on two CPUs, under 64 KiB at 79% of them, and reads
# taken there sooner made the sender's TCP segments smaller (recv_place.py, 2026-12-05).
_BACKLOG = 16384
# A task's read that finds the socket holding some of a stream's bytes, but less than
# _BACKLOG, first waits while more keep coming (busywait.hold): for _HOLD seconds at most, and
# no longer than _HOLD_GAP without a byte more. A stream is a previous read of _STREAM_READ
# bytes or more: an answer (echo, rpc) is one small packet. The read then takes the
# connection's read size (about 16 messages, connection.READ_MESSAGES) and leaves the rest
# queued: as there, a read that empties the socket makes the kernel ACK at once, and erl,
# streaming from another CPU, then sent smaller segments and (at a whole core) paid for
# them. In turns with reads at once (2026-12-05): recv_place.py's apart placement 1.19-1.23x
# erl -> 1.28-1.36x (pynode 646k-666k -> 714k-789k msgs/s, B 1.48-1.55 -> 1.27-1.40 us per
# message), dist.py's (b) 0.89-1.01 -> 1.05-1.32 in 4 pairs. Holding until the read size
# instead kept little of that (apart: pynode 642k-674k against 628k-662k msgs/s). 20 us
# is what Linux NICs' receive interrupt coalescing waits by default (ethtool rx-usecs,
# commonly 3-50 us): a stream's message may wait that long, as may another descriptor's
# event or a timer (never past the wait's own end). An rpc's answer read by take_inline
# clears the mark; an answer read right after a stream's read waits out the gap once. A read
# without a wait (a closed gate's, a backlog's) is never held.
_HOLD = 20e-6
_HOLD_GAP = 10e-6  # a sender at work writes every few microseconds (B: 250-600 segments per
# 1000 small messages at 600k-800k msgs/s, one every 2-7 us)
_STREAM_READ = 1024
_CORK_LIMIT = 16384  # writes this big go out alone: joining them would copy them once more
# A write this soon after the previous one is corked (joined with the writes that follow it
# in this loop iteration, flushed at its end); a lone write goes straight to the socket and
# schedules no flush, which would cost a round of the event loop (a burst of sends writes
# every microsecond or two). A read of the peer's bytes ends the window: the write after it
# (an rpc's or echo's next request, an answer) goes straight out however soon it comes (a
# round trip with erl on one CPU takes 13-25 us on a fast host: within 20 us, corked, it
# waited for the loop and took 21 us p50 for pynode's echo instead of 19, benchmarks/README.md)
_CORK_WINDOW_NS = 20_000
_now_ns = time.perf_counter_ns
_monotonic = time.monotonic

_IOV_MAX = 1024  # Linux's IOV_MAX: pieces os.writev takes in one call

# Reads in a row on a waiting task (read_inline) without the loop polling in between, after
# which the task waits in the loop once, unless one poll finds no other event ready (then a
# new streak begins): another descriptor's event waits at most this many round trips. erl's
# schedulers likewise check I/O between processes, not per message.
_INLINE_STREAK = 16


def _never() -> bool:
    return False


def _rest(pieces: list[Buffer], sent: int) -> Iterator[Buffer]:
    """The pieces, less their first ``sent`` bytes (a view: a big binary is not copied)."""
    for piece in pieces:
        n = len(piece)
        if sent >= n:
            sent -= n
            continue
        yield memoryview(piece)[sent:] if sent else piece
        sent = 0


def _drop_sent(pieces: list[Buffer], sent: int) -> None:
    """Takes the first ``sent`` bytes off ``pieces`` in place: a backlog written a little at
    a time is not rebuilt on each writable event (the rest of a piece is a view)."""
    done = 0
    for piece in pieces:
        n = len(piece)
        if sent < n:
            break
        sent -= n
        done += 1
    del pieces[:done]
    if sent:
        pieces[0] = memoryview(pieces[0])[sent:]

Buffer = bytes | memoryview
_NOT_READ = object()  # _ProtocolChannel._read_own's outcome when it did not read
# asyncio's plain socket transport (private name, hence getattr): the one writev bypasses
_SELECTOR_SOCKET_TRANSPORT: type = getattr(selector_events, "_SelectorSocketTransport", type(None))
OnData = Callable[[bytes], None]
OnEof = Callable[[], None]


class ChannelClosed(Exception):
    """The channel was closed while someone waited on it."""


class Channel:
    """One byte connection to a peer (the base class documents the interface)."""

    wrote: bool
    """Set by every write; the ticker clears it each interval (a tick goes out when clear)."""
    thread_messages: int = 0
    thread_bytes: int = 0
    """Messages and bytes other threads wrote themselves (:meth:`write_threadsafe`, which
    counts them under the lock it holds: one lock per send, not two)."""
    thread_readers: list[None]
    """Threads in a BlockingNode receive that may read this channel themselves, one item
    each (a list: a thread's append and pop need no lock): while there are any, the loop does not wait for its
    next bytes after a read (:meth:`_serve_inline`), which would hold the loop's idle lock
    when such a thread wants it and read the answer that thread would read itself. (A
    thread blocked long in such a receive so leaves this channel without that wait: erl's
    requests on it to the loop's handlers then take a loop iteration each.)"""
    writes: int
    """How many writes so far."""
    tls: bool = False
    """TLS runs under this channel (the handshake then frames with 4-byte lengths)."""

    async def send(self, data: bytes) -> None:
        """Handshake phase: send ``data`` and wait until it is handed to the OS."""
        raise NotImplementedError

    async def receive(self) -> bytes:
        """Handshake phase: the next bytes received, ``b""`` at the end of the stream."""
        raise NotImplementedError

    def write(self, data: bytes) -> None:
        """Connected phase: queue ``data``; never blocks (see :meth:`drain`)."""
        raise NotImplementedError

    def writev(self, pieces: list[Buffer]) -> None:
        """Like ``write(b"".join(pieces))`` (one write), without copying the pieces where the
        backend can hand them to the OS as they are (a fragmented message's payload)."""
        self.write(b"".join(pieces))

    def read_size(self, size: int) -> None:
        """Ask for about ``size`` bytes per read from now on (where the backend lets us)."""

    def read_inline(self, done: Callable[[], bool], spin: float) -> None:
        """Read and handle the peer's bytes on the calling task until ``done()``, for at most
        ``spin`` seconds while the event loop has nothing else to do (where the channel can:
        else return at once, and the bytes come through the loop as always)."""

    def hide_in_thread(self) -> bool:
        """In a thread about to send a request whose answer it reads itself: hide the
        channel from the loop's poll until that read (where the channel can: here, not)."""
        return False

    def show_in_thread(self, idle_held: bool) -> None:
        """Undo :meth:`hide_in_thread` for a thread that will not read the answer itself."""

    def read_in_thread(
        self, done: Callable[[], bool], spin: float, buf: bytearray, take: Callable[[int], bool]
    ) -> bool | None:
        """For a thread other than the loop's, which holds the loop's idle lock
        (``SpinningSelector.idle``: the loop waits in its select meanwhile): read the
        peer's bytes into ``buf`` until ``done()``, for up to ``spin`` seconds, calling
        ``take(n)`` after each read of ``n`` bytes; it returns False when it left something
        for the loop (woken with :meth:`wake_handler`), which ends the reads. The outcome:
        True when done; False when the spin ran out; None when it ended otherwise (another
        descriptor's event, the loop's turn) or the channel cannot (here: it reads nothing).
        What a read put in ``buf`` stays there whatever happens next (an exception)."""
        return None

    def wake_handler(self) -> None:
        """From another thread: the loop hands the connection's handler no bytes (``b""``)
        as it hands a read, to take up what :meth:`read_in_thread`'s ``take`` left it."""
        raise NotImplementedError

    def take_inline(self, spin: float, enough: Callable[[bytearray], bool]) -> bytearray:
        """Like :meth:`read_inline`, but the bytes are not handled: they are read into one
        buffer until ``enough(buffer)``, and returned. A task that knows what answer it
        waits for recognises it there itself, at a fraction of the cost of the whole
        receive path; bytes it does not take it must hand to :meth:`feed` before it waits
        or yields (nothing else reads them meanwhile: the loop is not running)."""
        return bytearray()

    def feed(self, data: bytes | bytearray) -> None:
        """Handle bytes :meth:`take_inline` returned, as if just received (here it reads
        none: there is nothing to hand back)."""
        if data:
            raise NotImplementedError

    def write_threadsafe(self, pieces: list[Buffer], size: int) -> bool:
        """From a thread other than the loop's: write ``pieces`` (one message of ``size``
        bytes) to the socket now, after everything written before. False, having written
        nothing, when that needs the loop (bytes are queued, or the backend has no direct
        path): then the loop must write them. Waking the loop for a write costs more than
        the rest of a round trip."""
        return False

    def buffered(self) -> int:
        """Bytes written but not yet handed to the OS."""
        raise NotImplementedError

    def congested(self) -> bool:
        """True when a writer should ``drain`` (cheap: asked after every message)."""
        raise NotImplementedError

    async def drain(self) -> None:
        """Wait while more than HIGH_WATER bytes are buffered."""
        raise NotImplementedError

    async def serve(self, on_data: OnData, on_eof: OnEof) -> None:
        """Connected phase: push received bytes to ``on_data`` (``on_eof`` at the end) until
        the connection closes. An exception from a callback ends it and is raised here."""
        raise NotImplementedError

    def close(self) -> None:
        """Close now; buffered output is flushed where the backend allows."""
        raise NotImplementedError

    async def aclose(self) -> None:
        self.close()

    @property
    def peer_address(self) -> Any:
        raise NotImplementedError


# -- asyncio --------------------------------------------------------------------------------


class _ProtocolChannel(asyncio.Protocol, Channel):
    """A Channel that is its own asyncio Protocol."""

    def __init__(self) -> None:
        self.wrote = False
        self.writes = 0
        self.thread_readers = []
        self._loop = asyncio.get_running_loop()
        self.transport: asyncio.Transport | None = None
        self._chunks: deque[bytes] = deque()
        self._eof = False
        self._lost = False
        self._error: BaseException | None = None
        self._waiter: asyncio.Future[None] | None = None  # receive() or serve() waiting
        self._drain_waiters: list[asyncio.Future[None]] = []  # every task blocked in drain()
        self._paused = False
        self._closing = False
        self._on_data: OnData | None = None
        self._on_eof: OnEof | None = None
        self._out: list[bytes] = []
        self._out_size = 0
        self._corked = False  # a flush is scheduled at the end of this loop iteration
        self._last_write = 0  # perf_counter_ns() of the last uncorked write
        self._held = False  # in data_received: writes wait for its end
        self._fd = -1  # the socket writev may write to directly (plain asyncio sockets only)
        # Other threads write to the socket directly (write_threadsafe); this lock is held
        # around every hand-over of bytes to the socket or the transport, and by
        # connection_lost, so the fd is never closed under a thread's write. What a write
        # (the loop's or a thread's) left unsent waits in _backlog, as it was given (views,
        # not copies), and goes before any later byte (_keep). Reentrant: a transport may
        # call back into the protocol from inside its write.
        self._wlock = threading.RLock()
        self._backlog: list[Buffer] = []
        self._backlog_size = 0
        self._backlog_writer = -1  # the descriptor _write_backlog is the loop's writer for
        # Until a thread first writes (and the loop, asked, sets this), write() takes no lock:
        # no thread writes to the socket meanwhile. An rpc round trip with erl on the same
        # CPU took 1.4-2.8 us less without it (its code runs on caches erl has just used).
        self._shared = False
        self._share_asked = False
        # read_inline: the context data_received runs in (the transport's, as in the loop),
        # the loop's poll count at the last inline read and the inline reads since
        self._context = contextvars.copy_context()
        self._inline_polls = -1
        self._inline_streak = 0
        self._inline_gate = SpinGate()  # a task's waits for answers: do they come soon?
        self._gate_refused = -1  # the loop's poll count when that gate last said no
        self._handle_inline: Callable[[bytes], None] = functools.partial(
            self._context.run, self._received  # type: ignore[call-arg]  # (run's overloads)
        )
        self._read_size = _RECV_SIZE
        self._tcp = False  # a TCP socket (read_size applies)
        self._loop_read: Callable[[], None] | None = None  # the transport's read, while _fd >= 0
        self._full = False  # the last read filled its buffer: the socket holds more, as a rule
        self._stream = False  # the last read was a stream's (_STREAM_READ): the next may hold

    def read_size(self, size: int) -> None:
        # TCP only (the reason is its ACKs); a plain asyncio transport reads max_size bytes
        if self._tcp and self._fd >= 0:
            self._read_size = size
            self.transport.max_size = size  # type: ignore[union-attr]

    def read_inline(self, done: Callable[[], bool], spin: float) -> None:
        """A task that has sent a request and waits for the answer reads it here, without
        going back to the loop: there the loop would spin, read, wake the task and take
        another iteration to resume it, about a third of an echo round trip to a local erl.

        Only on a plain socket of an asyncio loop that spins (:mod:`busywait`, compiled):
        the wait spins on the loop's own selector descriptor, so another descriptor's event
        ends it (this socket having none to read), as do a callback ready or a timer due.
        The bytes are handled by ``data_received`` as the loop would, in its context (never
        from inside it: a task started eagerly there that waits on this channel reads
        nothing). A wait that ran out spent the loop's spin: its next poll blocks at once.

        Where the gate says waits do not pay, what the socket holds already is still read
        (polled once, no spin): a mailbox that streaming messages keep busy takes the next
        ones there instead of through a loop iteration and a task switch per read.

        The first read of the usual wait (nothing else ready or due, an open gate, no
        stream's hold) is made here, in this frame: :meth:`_inline_window` and
        :meth:`_read_loop`'s general case cost 0.4-0.6 us of an echo round trip of 13-15 us
        with erl on the same CPU (2026-12-05). A wait that read only part of its answer
        goes on there, for what is left of it, as a wait of its own: it reads with the size
        that part's handler asked for (what the begun packet lacks), and reading paused or
        the channel closed meanwhile ends it, as they end the loop's reads."""
        gate = self._inline_gate
        t: Any = self.transport
        if self._fd < 0 or spin <= 0 or self._held or self._stream or gate.hits < HIT_FLOOR:
            self._read_loop(done, spin, gate, self._handle_inline, True)
            return
        loop: Any = self._loop  # (fd >= 0: asyncio's socket transport, on a selector loop)
        sel = loop._selector
        if (  # the rest of what _inline_window checks, and what makes _read_loop do more
            getattr(sel, "spin_fd", -1) < 0 or self._on_data is None or t is None or self._lost
            or t._paused or t._closing or loop._ready or sel.spent == sel.polls
            or self._gate_refused == sel.polls
            or (sel.polls == self._inline_polls and self._inline_streak >= _INLINE_STREAK)
        ):
            self._read_loop(done, spin, gate, self._handle_inline, True)
            return
        polls = sel.polls
        end = _monotonic() + spin
        timers = loop._scheduled
        if timers and timers[0]._when < end:  # a wait a timer cuts short: no gate outcome
            self._read_loop(done, spin, gate, self._handle_inline, True)
            return
        if polls != self._inline_polls:
            self._inline_polls, self._inline_streak = polls, 0
        if sel.hidden and self._fd in sel.hidden:  # (a thread's ask: this wait is on the loop's poll)
            sel.show(self._fd)
        try:
            data = _read_ready(sel.spin_fd, self._fd, spin, self._read_size)  # type: ignore[misc]
        except OSError as exc:  # reset: as the transport's own read would report it
            self._read_failed(exc)
            return
        if data is None:  # the spin ran out: this idle moment's (see SpinningSelector)
            sel.spent = sel.polls
            gate.outcome(False)
            return
        if not data:  # another descriptor's event (the loop handles it), or the end
            return
        self._inline_streak += 1
        self._handle_inline(data)
        if done():
            gate.outcome(True)
        elif not (loop._ready or self._lost):
            left = end - _monotonic()
            if left > 0:
                self._read_loop(done, left, gate, self._handle_inline, True)

    def _read_loop(
        self, done: Callable[[], bool], spin: float, gate: SpinGate, handle: Callable[[bytes], None],
        now_only: bool = False,
    ) -> None:
        """Read and ``handle`` the peer's bytes until ``done()`` or the window closes (see
        :meth:`_inline_window`; ``now_only``: the bytes there already, when it refuses to
        spin); the wait's outcome goes to ``gate``."""
        window = self._inline_window(spin, gate, now_only)
        if window is None:
            return
        end, whole = window
        loop: Any = self._loop
        sel = loop._selector
        clock = _monotonic  # loop.time(), less its frame (an asyncio selector loop's)
        read, fd, epfd, size, hold = _read_ready, self._fd, sel.spin_fd, self._read_size, _hold
        assert read is not None  # spin_fd is -1 without it
        # one outcome per call: for the serve's wait, whether bytes came; for a task's, whether
        # its answer came whole (a spin that read half of it did not save the task a sleep)
        got: bool | None = None
        serving = done is _never
        while True:
            if end:
                left = end - clock()
                if left <= 0:
                    break
            else:  # no spin: one poll, and what it finds
                left = 0.0
            try:
                if self._stream and hold is not None and left > 0:  # (see _HOLD)
                    hold(fd, min(_HOLD, left), _HOLD_GAP, _BACKLOG)  # (not size: see _HOLD)
                    left = max(end - clock(), 0.0)  # (the wait's end stays where it was)
                data = read(epfd, fd, left, size)
            except OSError as exc:  # reset: as the transport's own read would report it
                self._read_failed(exc)
                return
            if data is None:
                if end:  # this idle moment's spin is over (see SpinningSelector)
                    sel.spent = sel.polls
                if got is None or not serving:
                    got = False
                break
            if not data:  # another descriptor's event (the loop handles it), or the end
                break
            if serving:
                got = True
            self._inline_streak += 1
            handle(data)
            if done():
                got = True
                break
            if loop._ready or self._lost:
                break
            if serving:  # the wait for the peer's next bytes begins anew, as the loop's would
                if self.thread_readers:  # (see _serve_inline)
                    break
                end = clock() + spin
            timers = loop._scheduled  # one a handler set, due before the end: it ends the wait
            if timers and timers[0]._when < end:
                end, whole = timers[0]._when, False
            if self._inline_streak >= _INLINE_STREAK and not self._streak_goes_on(sel, fd):
                break
        if whole and got is not None:
            gate.outcome(got)

    def hide_in_thread(self) -> bool:
        """In a thread about to send a request whose answer it reads itself (a BlockingNode
        mailbox that asks and receives): mask the socket out of the loop's epoll first, when
        the loop is idle (its idle lock, never waited for). With the caller and its erl peer
        on one CPU the answer is there before the caller reads, and the loop, spinning or
        woken on the other CPU, went for it too: it read nothing, but took the GIL at every
        answer, and the caller slept for it (24-25 us a round trip against the async echo's
        14-15, 2026-12-05). It stays hidden while the thread asks and reads its answers (its
        reads take what else comes and hand it to the loop); a read that leaves the answer
        to the loop shows it (:meth:`read_in_thread`), as does a thread that waits for the
        loop's delivery (``SpinningSelector.show_hidden``), else the loop, busywait.HIDE_BOUND
        after the last request."""
        sel: Any = getattr(self._loop, "_selector", None)
        hidden = getattr(sel, "hidden", None)
        if _take_own is None or hidden is None:
            return False
        fd = self._fd
        if fd in hidden:  # since the last request, whose read left it so: for HIDE_BOUND more
            hidden[fd] = time.monotonic()  # (no lock: a race with the loop's show leaves
            return True  # an entry for a shown socket, which the loop drops in time)
        if not sel.idle.acquire(False):
            return False
        try:  # (under the idle lock: the loop neither closes this nor registers a writer)
            t: Any = self.transport
            fd = self._fd
            # (bytes waiting to be written: the loop's writer needs the writable events)
            if fd < 0 or t is None or self._lost or self._backlog or t._buffer:
                return False
            return bool(sel.hide(fd))
        finally:
            sel.idle.release()

    def show_in_thread(self, idle_held: bool) -> None:
        """Give back what :meth:`hide_in_thread` took, from a thread that will not read the
        answer itself (the loop delivers it): at once when the loop is idle, else by the loop."""
        sel: Any = getattr(self._loop, "_selector", None)
        if sel is None or self._fd not in getattr(sel, "hidden", ()):
            return
        if idle_held:
            sel.show(self._fd)
        elif sel.idle.acquire(False):
            try:
                sel.show(self._fd)
            finally:
                sel.idle.release()
        else:
            try:
                self._loop.call_soon_threadsafe(sel.show, self._fd)
            except RuntimeError:  # the loop is closed: so is the connection
                pass

    def read_in_thread(
        self, done: Callable[[], bool], spin: float, buf: bytearray, take: Callable[[int], bool]
    ) -> bool | None:
        """Only on a plain socket of an asyncio loop that spins on epoll, with the compiled
        helper: an answer there at once is read; else the socket is hidden from the loop's
        poll while this thread waits (``take_own``), so the loop sleeps on through the
        answer it reads; another descriptor's event ends the wait (the loop then goes on once this
        thread lets go of the idle lock). A BlockingNode receive's answer so costs neither
        the loop's iteration nor a wake of the thread, nor their turns at the GIL. On any
        exception (a KeyboardInterrupt) the loop is woken to take up what ``buf`` holds."""
        got = self._read_own(done, spin, buf, take)
        if got is _NOT_READ:  # (the socket may be hidden for this read: the loop's now)
            self.show_in_thread(True)
            return None
        return got  # type: ignore[return-value]

    def _read_own(
        self, done: Callable[[], bool], spin: float, buf: bytearray, take: Callable[[int], bool]
    ) -> object:
        """:meth:`read_in_thread`'s reads; _NOT_READ when it did not come to take_own."""
        t: Any = self.transport
        if self._fd < 0 or self._on_data is None or t is None or self._lost or self._held or spin <= 0:
            return _NOT_READ
        loop: Any = self._loop
        sel = loop._selector
        reads, fd, epfd = _take_own, self._fd, getattr(sel, "spin_fd", -1)
        if reads is None or epfd < 0 or loop._ready or not t.is_reading():
            return _NOT_READ
        if self._backlog or t._buffer:  # bytes wait for the socket: the loop's writer goes on
            return _NOT_READ  # (take_own would hide the socket's writable events from it too)
        timers = loop._scheduled  # one due sooner ends the wait (the loop waits for us)
        if timers:
            spin = min(spin, timers[0]._when - loop.time())
            if spin <= 0:
                return _NOT_READ
        said: list[bool] = []
        seen = len(buf)

        def enough(b: bytearray) -> bool:  # after each read: taken, then done or handed over
            nonlocal seen
            kept = take(len(b) - seen)
            seen = len(b)
            if kept and not done():
                return False
            said.append(kept)
            return True

        mask = sel.mask_of(fd)  # (take_own masks it out while it waits, and puts this back)
        if mask < 0:
            return _NOT_READ
        # hidden since this thread's request (hide_in_thread): it stays so for the next one
        # when this read gets the answer (the selector shows it HIDE_BOUND after the last)
        hidden = fd in sel.hidden
        try:
            outcome, _ = reads(buf, epfd, fd, min(spin, 1.0), self._read_size, enough, 1 << 30, mask, hidden)
        except OSError as exc:  # reset, or the mask not put back: as the loop's own read would
            if hidden:
                sel.show(fd)
            loop.call_soon_threadsafe(self._read_failed, exc)
            return None
        except BaseException:
            if hidden:
                sel.show(fd)
            self.wake_handler()
            raise
        if outcome == TAKE_ENOUGH and said[0]:
            return True
        if hidden:  # the loop takes it from here (an answer, what was left it): it must see it
            sel.show(fd)
        return False if outcome == TAKE_SPENT else None

    def wake_handler(self) -> None:
        """From another thread: the loop hands the connection's handler no bytes (``b""``),
        in the transport's context, as it hands a read: it takes up what that thread left
        it (``Connection.take_in_thread``), and an error ends the connection as a read's
        would."""
        try:
            self._loop.call_soon_threadsafe(self._handle_inline, b"")
        except RuntimeError:  # the loop is closed: so is the connection
            pass

    def take_inline(self, spin: float, enough: Callable[[bytearray], bool]) -> bytearray:
        """:meth:`_read_loop` for bytes only kept: nothing runs between two reads that could
        make a callback ready, set a timer or lose the connection (``enough`` only looks at
        the bytes), so only the reads and the streak are watched, and the reads up to the
        streak's end are one call (``take_into``). Every rpc comes here."""
        buf = bytearray()
        gate = self._inline_gate
        window = self._inline_window(spin, gate)
        if window is None:
            return buf
        end, whole = window
        sel = self._loop._selector  # type: ignore[attr-defined]
        take, fd, epfd, size = _take_into, self._fd, sel.spin_fd, self._read_size
        assert take is not None  # spin_fd is -1 without it
        got: bool | None = None  # as in _read_loop: whether the answer came whole
        try:
            while True:
                left = end - _monotonic()
                if left <= 0:
                    break
                try:
                    outcome, reads = take(buf, epfd, fd, left, size, enough, _INLINE_STREAK - self._inline_streak)
                except OSError as exc:
                    self._read_failed(exc)
                    return buf
                self._inline_streak += reads
                if outcome == TAKE_ENOUGH:
                    got = True
                elif outcome == TAKE_SPENT:
                    sel.spent = sel.polls
                    got = False
                elif outcome == TAKE_STREAK and self._streak_goes_on(sel, fd):
                    continue
                break
        except BaseException:  # what was read is the connection's: never lost
            self.feed(buf)
            raise
        if whole and got is not None:
            gate.outcome(got)
        if buf:
            self._last_write = 0  # (as in _received)
            self._stream = False  # an answer's read: the next one is not held (feed may say)
        return buf

    def feed(self, data: bytes | bytearray) -> None:
        if data:
            self._context.run(self._received, bytes(data))

    def _inline_window(self, spin: float, gate: SpinGate, now_only: bool = False) -> tuple[float, bool] | None:
        """When the socket may be read inline (see :meth:`read_inline`): until when, and
        whether for the whole spin (else a timer cuts it short); None when it may not (or
        ``gate`` says such waits do not pay now: with ``now_only``, ``(0.0, False)`` then,
        a read of what is there without a wait, which teaches the gate nothing)."""
        t: Any = self.transport
        if self._fd < 0 or self._on_data is None or t is None or self._lost or self._held or spin <= 0:
            return None
        loop: Any = self._loop
        sel = loop._selector
        # (t is asyncio's own socket transport, fd >= 0: is_reading() without its two calls)
        if getattr(sel, "spin_fd", -1) < 0 or t._paused or t._closing:
            return None
        if sel.hidden and self._fd in sel.hidden:  # (a thread's ask: this task waits on the loop's poll)
            sel.show(self._fd)
        if loop._ready:
            return self._backlog_window(loop._ready, sel) if now_only else None
        if sel.spent == sel.polls:
            return None  # a wait ran out since the loop's last poll: one spin per idle moment
        if sel.polls != self._inline_polls:
            self._inline_polls, self._inline_streak = sel.polls, 0
        elif self._inline_streak >= _INLINE_STREAK and not self._streak_goes_on(sel, self._fd):
            return None  # the loop's turn: it has not polled the other descriptors for a while
        end = _monotonic() + spin
        timers = loop._scheduled
        whole = not (timers and timers[0]._when < end)  # else a timer ends the wait early
        if gate is self._inline_gate and self._gate_refused == sel.polls:
            # refused already since the loop's last poll: one decision per wait
            return (0.0, False) if now_only else None
        if not (gate.allow() if whole else gate.open):  # (a cut-short wait is no probe)
            if gate is sel.gate:  # the loop's idle spin, decided: its select asks no more
                sel.spent = sel.polls
            else:  # a call's take_inline, refused: its read_inline does not ask again
                self._gate_refused = sel.polls
            return (0.0, False) if now_only else None
        return (end if whole else timers[0]._when), whole

    def _backlog_window(self, ready: Any, sel: Any) -> tuple[float, bool] | None:
        """A task's read of what the socket holds, when all the loop has to do is its own
        read of this socket, queued by its last poll, and the socket holds a backlog: the
        task reads first and saves that read's loop iteration and task switch (erl streaming
        to pynode on one CPU had each read of 19 small messages go through the loop so, at 10
        us a read). A streak of such reads ends as any other, then the loop gets its turn (its
        timers, its tasks). ``(0.0, False)``, or None."""
        if not self._full or len(ready) != 1 or ready[0]._callback != self._loop_read:
            return None
        if sel.polls != self._inline_polls:
            self._inline_polls, self._inline_streak = sel.polls, 0
        elif self._inline_streak >= _INLINE_STREAK:
            return None
        try:
            backlog = _queued(self._fd) if _queued is not None else 0
        except OSError:  # (the loop's own read reports what is wrong with the socket)
            return None
        return (0.0, False) if backlog >= _BACKLOG else None

    def _streak_goes_on(self, sel: Any, fd: int) -> bool:
        """After a streak of inline reads: whether they may go on, a new streak, because the
        loop has nothing to do but read this socket (no other event is ready; ready
        callbacks and due timers end inline reads anyway). Else the loop's turn. An rpc whose
        answer waited for the loop's iteration took 1.5x the others (244 against 147-160 us
        p50, one CPU shared with erl, 2026-12-03): this check is one poll."""
        if sel.others_ready(fd):
            return False
        self._inline_streak = 0
        return True

    def _read_failed(self, exc: OSError) -> None:
        """An inline read failed (reset): reported as the transport's own read would."""
        t: Any = self.transport
        t._fatal_error(exc, "Fatal read error on socket transport")

    # asyncio.Protocol ---------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        t: Any = transport  # uvloop's transports are no asyncio.Transport subclass
        with self._wlock:  # called again with start_tls's transport: the socket is not ours
            if self._backlog and self.transport is not None:  # (what the plain one had left)
                self._hand_backlog(self.transport)
            self._fd = -1
        self._loop_read = None
        self.transport = t
        t.set_write_buffer_limits(high=HIGH_WATER)
        sock = transport.get_extra_info("socket")
        self._tcp = sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6)
        if self._tcp:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if (
            sock is not None
            and isinstance(t, _SELECTOR_SOCKET_TRANSPORT)
            and transport.get_extra_info("sslcontext") is None
        ):
            self._fd = sock.fileno()  # plain bytes may go to it directly (writev, threads)
            self._loop_read = getattr(t, "_read_ready", None)  # what the loop's poll queues for it

    def data_received(self, data: bytes) -> None:
        """The loop's read: handled, and then the peer's next bytes are read here while the
        loop has nothing else to do (:meth:`_serve_inline`)."""
        self._received(data)
        if self._fd >= 0 and self._on_data is not None:
            self._serve_inline()

    def _serve_inline(self) -> None:
        """After the loop's read, wait for the peer's next bytes here, for as long as the
        loop would spin (it has nothing else to do), and again after each read: the loop's
        poll, the events' dispatch and the transport's read cost about a tenth of an erl ->
        pynode rpc round trip, which a peer's next request then skips. erl's schedulers
        likewise poll between processes, not after each message. Other descriptors' events,
        ready callbacks and due timers end it as they end :meth:`read_inline`; the loop's
        spin gate stops it where the next bytes come late (sparse traffic), as it stops the
        loop's spin, whose place it takes (one spin per idle moment, one decision)."""
        sel: Any = self._loop._selector  # type: ignore[attr-defined]
        gate = getattr(sel, "gate", None)  # the loop's own: this wait is its idle moment's spin
        if gate is not None and not self.thread_readers:
            self._read_loop(_never, sel.spin, gate, self._received)

    def _received(self, data: bytes) -> None:
        on_data = self._on_data
        if on_data is None:
            self._chunks.append(data)
            self._wake()
            return
        # (before on_data sets another size; a hint only: the socket's backlog, asked, decides)
        n = len(data)
        self._full = n >= self._read_size
        self._stream = n >= _STREAM_READ
        # what the handlers write while these bytes are processed (a spawn reply and the
        # exit after it, tick answers, ...) goes out in one write when they are done
        self._held = True
        try:
            on_data(data)
        except BaseException as e:  # reported by serve(), which ends the connection
            self._fail(e)
        finally:
            self._held = False
            if self._out and not self._corked:
                self._write_out()
            self._last_write = 0  # the peer answered: what we write next is no burst

    def eof_received(self) -> bool:
        on_eof = self._on_eof
        if on_eof is None:
            self._eof = True
            self._wake()
        else:
            try:
                on_eof()
            except BaseException as e:
                self._fail(e)
        if self._backlog and self.transport is not None:  # (the transport flushes what it holds)
            with self._wlock:
                self._hand_backlog(self.transport)
        return False  # let the transport close itself

    def connection_lost(self, exc: Exception | None) -> None:
        with self._wlock:  # asyncio closes the socket when this returns: no thread writes on
            self._stop_backlog_writer()
            self._fd = -1
            self._backlog, self._backlog_size = [], 0
        self._lost = True
        if exc is not None and self._error is None:
            self._error = exc
        self._wake()
        self._wake_drainers()

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        self._wake_drainers()

    def _wake_drainers(self) -> None:
        waiters, self._drain_waiters = self._drain_waiters, []
        for w in waiters:
            if not w.done():
                w.set_result(None)

    # helpers ------------------------------------------------------------------------------
    def _wake(self) -> None:
        w = self._waiter
        if w is not None and not w.done():
            w.set_result(None)

    def _fail(self, e: BaseException) -> None:
        if self._error is None:
            self._error = e
        self._on_data = self._on_eof = None
        self.close()
        self._wake()

    async def _wait(self) -> None:
        w = self._waiter = self._loop.create_future()
        try:
            await w
        finally:
            self._waiter = None

    # handshake phase ----------------------------------------------------------------------
    async def send(self, data: bytes) -> None:
        self.write(data)
        self._flush()
        await self.drain()

    async def receive(self) -> bytes:
        while not self._chunks:
            if isinstance(self._error, ssl.SSLError):
                raise self._error  # the peer refused our TLS certificate: say so, not "closed"
            if self._eof or self._lost:
                return b""
            await self._wait()
        if len(self._chunks) == 1:
            return self._chunks.popleft()
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data

    # connected phase ----------------------------------------------------------------------
    def write(self, data: bytes) -> None:
        transport: Any = self.transport
        # (asyncio's own socket transport when fd >= 0: is_closing() without its call)
        if transport is None or self._lost or (transport._closing if self._fd >= 0 else transport.is_closing()):
            raise ChannelClosed("the connection is closed")
        self.wrote = True
        self.writes += 1
        if self._corked or self._held:
            if len(data) < _CORK_LIMIT:
                self._out.append(data)
                self._out_size += len(data)
                return
            self._write_out()  # a big packet is not copied into a join: the queue goes first
        else:
            now = _now_ns()
            if now - self._last_write < _CORK_WINDOW_NS:
                self._corked = True
                self._loop.call_soon(self._flush)
            self._last_write = now
        if not self._shared:  # only this thread writes: nothing to take turns with
            fd = self._fd  # (_put's work, in this frame: every message sent comes here)
            if fd >= 0 and not transport._buffer:
                if self._backlog:
                    self._keep((data,))
                    return
                try:
                    sent = os.write(fd, data)
                except (BlockingIOError, InterruptedError):  # (as in _put)
                    sent = 0
                except OSError:
                    transport.write(data)
                    return
                if sent < len(data):
                    self._keep((memoryview(data)[sent:],))
                return
            transport.write(data)
            return
        lock = self._wlock
        lock.acquire()  # (not a with statement: half its cost, on every message sent)
        try:
            self._put(transport, data)
        finally:
            lock.release()

    def writev(self, pieces: list[Buffer]) -> None:
        transport = self.transport
        if transport is None or self._lost or transport.is_closing():
            raise ChannelClosed("the connection is closed")
        self.wrote = True
        self.writes += 1
        self._write_out()  # what is queued goes first
        if not self._corked and not self._held:
            self._corked = True
            self._loop.call_soon(self._flush)
        with self._wlock:
            fd = self._fd
            if fd < 0:  # uvloop (its writelines is a writev), TLS, or another transport
                transport.writelines(pieces)
                return
            if transport.get_write_buffer_size():  # (only after a write error, or closing)
                for piece in pieces:
                    transport.write(piece)
                return
            if self._backlog:
                self._keep(pieces)
                return
            # asyncio's selector transport would copy the pieces into its buffer (3.11's
            # writelines joins them first): they go to the socket as they are, and what it
            # does not take waits as it is (_keep)
            try:
                sent = os.writev(fd, pieces[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:  # asyncio's write meets the error and reports it
                for piece in pieces:
                    transport.write(piece)
                return
            if sent < sum(map(len, pieces)):
                self._keep(_rest(pieces, sent))

    def _flush(self) -> None:
        self._corked = False
        self._write_out()

    def _write_out(self) -> None:
        if not self._out:
            return
        if not self._shared:  # only this thread writes (see write)
            self._write_queue()
            return
        # the queue is emptied under the lock: a thread must not find it empty (and write to
        # the socket itself) while its bytes are on their way to the transport
        with self._wlock:
            self._write_queue()

    def _write_queue(self) -> None:
        """_write_out's work (under _wlock once threads write to the socket)."""
        out = self._out
        if not out:
            return
        data = out[0] if len(out) == 1 else b"".join(out)
        self._out = []
        self._out_size = 0
        transport = self.transport
        if transport is not None and not transport.is_closing():
            self._put(transport, data)

    def _put(self, transport: Any, data: bytes) -> None:
        """Under _wlock (once threads write): hand ``data`` to the socket, after the backlog
        (:meth:`_keep`); through asyncio's transport only when that holds bytes already
        (after a write error) or the socket's write fails (asyncio's write meets the error
        and reports it). asyncio's write would end in the same send, after its own checks: a
        round trip's reply is one packet."""
        fd = self._fd
        if fd >= 0 and not transport._buffer:
            if self._backlog:
                self._keep((data,))
                return
            try:
                sent = os.write(fd, data)
            except (BlockingIOError, InterruptedError):
                sent = 0
            except OSError:
                transport.write(data)
                return
            if sent < len(data):
                self._keep((memoryview(data)[sent:],))
            return
        transport.write(data)

    def _keep(self, pieces: Iterable[Buffer]) -> None:
        """In the loop, under _wlock (once threads write): ``pieces``, which the socket did not
        take, wait in the backlog as they are, after what waits there, and go out on the
        socket's writable events (:meth:`_write_backlog`) before any later byte. asyncio's
        transport would copy them into its buffer: with erl taking 1 MiB binaries on the
        same CPU, half of the bytes went that way (and each piece through its write),
        2026-12-05. Past HIGH_WATER bytes there, writers wait in :meth:`drain`, as for the
        transport's buffer."""
        backlog = self._backlog
        for piece in pieces:
            backlog.append(piece)
            self._backlog_size += len(piece)  # type: ignore[arg-type]
        if backlog and self._backlog_writer < 0 and self._fd >= 0:
            self._loop._add_writer(self._fd, self._write_backlog)  # type: ignore[attr-defined]
            self._backlog_writer = self._fd
        if self._backlog_size > HIGH_WATER:
            self._paused = True

    def _write_backlog(self) -> None:
        """The loop's writer while the backlog holds bytes: as much of it as the socket
        takes; writers waiting in drain go on once it is down to a quarter of HIGH_WATER
        (asyncio's transport resumes at the same share of its high-water mark)."""
        with self._wlock:
            backlog, fd, t = self._backlog, self._fd, self.transport
            if not backlog or fd < 0 or t is None:
                self._stop_backlog_writer()
                return
            try:
                sent = os.writev(fd, backlog[:_IOV_MAX])
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # as asyncio's transport reports its own write's error
                self._stop_backlog_writer()
                self._backlog, self._backlog_size = [], 0
                t._fatal_error(exc, "Fatal write error on socket transport")  # type: ignore[attr-defined]
                return
            _drop_sent(backlog, sent)
            self._backlog_size -= sent
            if not backlog:
                self._stop_backlog_writer()
            resume = self._paused and self._backlog_size <= HIGH_WATER // 4 and not t._buffer  # type: ignore[attr-defined]
        if resume:
            self._paused = False
            self._wake_drainers()

    def _stop_backlog_writer(self) -> None:
        """Under _wlock: the loop no longer calls _write_backlog (the socket is still open:
        asyncio closes it after connection_lost)."""
        fd, self._backlog_writer = self._backlog_writer, -1
        if fd >= 0:
            self._loop._remove_writer(fd)  # type: ignore[attr-defined]

    def _hand_backlog(self, transport: Any) -> None:
        """Under _wlock, in the loop: the backlog goes to the transport (copied into its
        buffer, as before), which flushes it before it closes the socket."""
        self._stop_backlog_writer()
        backlog, self._backlog, self._backlog_size = self._backlog, [], 0
        for piece in backlog:
            transport.write(piece)

    def _flush_backlog(self) -> None:
        """In the loop, after a thread's write left a rest in the backlog: its writer."""
        with self._wlock:
            transport = self.transport
            if self._backlog and transport is not None and not transport.is_closing():
                self._keep(())

    def write_threadsafe(self, pieces: list[Buffer], size: int) -> bool:
        with self._wlock:
            if not self._shared:  # the loop writes this one; from its next turn, threads may
                if not self._share_asked:
                    self._share_asked = True
                    try:
                        self._loop.call_soon_threadsafe(self._share)
                    except RuntimeError:  # the loop is closed: the hand-over meets it too
                        pass
                return False
            fd = self._fd
            transport: Any = self.transport  # asyncio's own socket transport when fd >= 0
            if (
                fd < 0
                or transport is None
                or self._out
                or self._backlog
                or self._closing
                or self._lost
                or transport.is_closing()
                # not get_write_buffer_size(): from 3.12 it iterates the transport's deque,
                # which the loop's _write_sendmsg changes without our lock ("deque mutated
                # during iteration"); its length is one C call (the 3.10-3.11 bytearray too)
                or transport._buffer
            ):
                return False
            try:
                try:  # (a thread's every send comes here)
                    sent = os.write(fd, pieces[0]) if len(pieces) == 1 else os.writev(fd, pieces[:_IOV_MAX])
                except OSError:  # the loop's write meets it too, and reports it
                    return False
                if not sent:
                    return False
                self.thread_messages += 1
                self.thread_bytes += size
                if sent < size:  # the socket's buffer is full: the loop writes the rest, first
                    self._backlog = list(_rest(pieces, sent))
                    self._backlog_size = size - sent
                    self._loop.call_soon_threadsafe(self._flush_backlog)
            except RuntimeError:  # the loop is closed: so is the connection
                self._backlog, self._backlog_size = [], 0
                return True
            except BaseException:
                # interrupted (KeyboardInterrupt in this thread) between the write and keeping
                # its rest: what went out is unknown, and a stream with half a packet in it is
                # worse than none; the connection is dropped
                self._fd = -1
                self._loop.call_soon_threadsafe(self._abort)
                raise
            self.wrote = True
            self.writes += 1  # the ticker only asks whether it changed
            return True

    def _share(self) -> None:
        """In the loop: from now on its writes take _wlock, and threads may write too."""
        self._shared = True

    def _abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    def buffered(self) -> int:
        t = self.transport
        return self._out_size + self._backlog_size + (t.get_write_buffer_size() if t is not None else 0)

    def congested(self) -> bool:
        return self._paused or self._out_size > HIGH_WATER

    async def drain(self) -> None:
        if self._out_size > HIGH_WATER:
            self._write_out()
        while self._paused and not self._lost and not self._closing:
            w = self._loop.create_future()
            self._drain_waiters.append(w)
            try:
                await w
            finally:
                if w in self._drain_waiters:
                    self._drain_waiters.remove(w)

    async def serve(self, on_data: OnData, on_eof: OnEof) -> None:
        self._on_data, self._on_eof = on_data, on_eof
        try:
            if self._chunks:
                data = b"".join(self._chunks)
                self._chunks.clear()
                on_data(data)
            if self._eof:
                on_eof()
            while not self._lost and self._error is None:
                await self._wait()
        finally:
            self._on_data = self._on_eof = None
        if self._error is not None:
            raise self._error

    def close(self) -> None:
        """Close after writing what is queued (asyncio keeps the socket open until the peer
        takes it: :meth:`aclose` gives it one loop iteration, then aborts)."""
        self._closing = True
        self._flush()
        if self.transport is not None:
            with self._wlock:
                self._hand_backlog(self.transport)
            self.transport.close()
        self._wake_drainers()

    async def aclose(self) -> None:
        # as anyio closes a stream: a peer that stopped reading (the very case of a tick
        # timeout) must not hold the socket and its buffer open for ever
        self.close()
        if self.transport is not None and not self._lost:
            await asyncio.sleep(0)
            if not self._lost:
                self.transport.abort()

    @property
    def peer_address(self) -> Any:
        return self.transport.get_extra_info("peername") if self.transport is not None else None


# -- anyio streams (trio, and any other backend) --------------------------------------------


class StreamChannel(Channel):
    """A Channel over an anyio ByteStream: a reader task and a writer task that sends
    everything queued in one write."""

    def __init__(self, stream: ByteStream) -> None:
        self.stream = stream
        self.wrote = False
        self.writes = 0
        self.thread_readers = []
        self._out: list[Buffer] = []
        self._out_size = 0
        self._wake_writer = anyio.Event()
        self._drained = anyio.Event()
        self._drained.set()
        self._closed = False
        sock = stream.extra(SocketAttribute.raw_socket, None)  # TLS streams pass it through
        if sock is not None:
            if sock.family in (socket.AF_INET, socket.AF_INET6):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    async def receive(self) -> bytes:
        try:
            return await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            if isinstance(e.__cause__, ssl.SSLError):
                raise e.__cause__ from None  # the peer refused our TLS certificate
            return b""

    def write(self, data: bytes) -> None:
        if self._closed:
            raise ChannelClosed("the connection is closed")
        self.wrote = True
        self.writes += 1
        self._out.append(data)
        self._out_size += len(data)
        if not self._wake_writer.is_set():
            self._wake_writer.set()
        if self._out_size > HIGH_WATER and self._drained.is_set():
            self._drained = anyio.Event()

    def writev(self, pieces: list[Buffer]) -> None:
        if self._closed:
            raise ChannelClosed("the connection is closed")
        self.wrote = True
        self.writes += 1
        self._out.extend(pieces)
        self._out_size += sum(map(len, pieces))
        if not self._wake_writer.is_set():
            self._wake_writer.set()
        if self._out_size > HIGH_WATER and self._drained.is_set():
            self._drained = anyio.Event()

    def buffered(self) -> int:
        return self._out_size

    def congested(self) -> bool:
        return self._out_size > HIGH_WATER

    async def drain(self) -> None:
        if self._out_size > HIGH_WATER:
            await self._drained.wait()

    async def _writer(self, scope: anyio.CancelScope, errors: list[BaseException]) -> None:
        try:
            while True:
                if not self._out:
                    self._wake_writer = anyio.Event()
                    await self._wake_writer.wait()
                    continue
                chunks, self._out = self._out, []
                self._out_size = 0
                one = chunks[0]
                await self.stream.send(one if len(chunks) == 1 and type(one) is bytes else b"".join(chunks))
                if self._out_size <= HIGH_WATER:
                    self._drained.set()
        except Exception as e:  # raised by serve(), outside the task group
            errors.append(e)
            scope.cancel()

    async def serve(self, on_data: OnData, on_eof: OnEof) -> None:
        errors: list[BaseException] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._writer, tg.cancel_scope, errors)
            try:
                while True:
                    try:
                        data = await self.stream.receive(_RECV_SIZE)
                    except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                        data = b""
                    if not data:
                        on_eof()
                        break
                    on_data(data)
            except Exception as e:
                errors.append(e)
            tg.cancel_scope.cancel()
        if errors:
            raise errors[0]

    def close(self) -> None:
        self._closed = True
        self._drained.set()

    async def aclose(self) -> None:
        self.close()
        with anyio.CancelScope(shield=True):
            await self.stream.aclose()

    @property
    def peer_address(self) -> Any:
        try:
            return self.stream.extra(SocketAttribute.remote_address)
        except anyio.TypedAttributeLookupError:
            return None


# -- dialling and listening -----------------------------------------------------------------


def _on_asyncio() -> bool:
    """Whether this runs in an asyncio loop (anyio's other backend, trio, has none; sniffio
    is no dependency of anyio's any more, nor of ours)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _start_tls_safe() -> bool:
    stdlib = type(asyncio.get_running_loop()).__module__.startswith("asyncio")
    return stdlib and sys.version_info >= (3, 11)


def running_asyncio_loop() -> asyncio.AbstractEventLoop | None:
    """The running asyncio loop, or None under any other backend (trio)."""
    return asyncio.get_running_loop() if _on_asyncio() else None


async def connect_tcp(host: str, port: int, tls: ssl.SSLContext | None = None) -> Channel:
    """A channel to host:port (raises OSError when it cannot be reached). With ``tls`` the
    channel is TLS from the first byte and the server's certificate is checked against
    ``host`` when the context checks host names (ssl.SSLError, an OSError, when refused)."""
    if _on_asyncio():
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(
            _ProtocolChannel, host, port, ssl=tls, server_hostname=host if tls is not None else None
        )
        proto.tls = tls is not None
        return proto
    if tls is None:
        return StreamChannel(await anyio.connect_tcp(host, port))
    stream = await anyio.connect_tcp(host, port)
    try:
        # erl may close without a TLS close_notify: not an error for distribution
        wrapped = await TLSStream.wrap(
            stream, ssl_context=tls, hostname=host, standard_compatible=False
        )
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise
    channel = StreamChannel(wrapped)
    channel.tls = True
    return channel


async def _server_tls(channel: Channel, tls: ssl.SSLContext, timeout: float) -> Channel:
    """The TLS server handshake on an accepted channel (ssl.SSLError when it fails)."""
    if isinstance(channel, _ProtocolChannel):
        transport = channel.transport
        assert transport is not None
        loop = asyncio.get_running_loop()
        new = await loop.start_tls(
            transport, channel, tls, server_side=True, ssl_handshake_timeout=timeout
        )
        if new is None:  # pragma: no cover - only when the transport closed meanwhile
            raise ConnectionResetError("the connection closed during the TLS handshake")
        channel.connection_made(new)  # start_tls does not call it again
        channel.tls = True
        return channel
    assert isinstance(channel, StreamChannel)
    with anyio.fail_after(timeout):
        stream = await TLSStream.wrap(
            channel.stream, server_side=True, ssl_context=tls, standard_compatible=False
        )
    secured = StreamChannel(stream)
    secured.tls = True
    return secured


class Listener:
    """Accepts connections on one or more sockets and hands each to ``on_channel`` in its
    own task of ``task_group``."""

    def __init__(self, listener: Any, servers: list[asyncio.base_events.Server]) -> None:
        self._listener = listener
        self._servers = servers

    @property
    def port(self) -> int:
        return int(self._listener.extra(SocketAttribute.local_port))

    async def aclose(self) -> None:
        for s in self._servers:
            s.close()
        self._servers = []
        await self._listener.aclose()


async def listen_tcp(
    host: str | None,
    port: int,
    on_channel: Callable[[Channel], Coroutine[Any, Any, None]],
    task_group: TaskGroup,
    tls: ssl.SSLContext | None = None,
    tls_timeout: float = 7.0,
) -> Listener:
    """Listen on host:port (every interface when ``host`` is None; port 0 picks one).

    With ``tls`` every accepted connection makes the TLS server handshake (within
    ``tls_timeout`` seconds) before ``on_channel`` sees it; a refused handshake is logged and
    closes that connection only."""
    # anyio makes the listening sockets (every address family, one port for all of them)
    listener = await anyio.create_tcp_listener(local_host=host, local_port=port)
    if tls is not None:
        on_channel = _with_server_tls(on_channel, tls, tls_timeout)
    # start_tls must see the client's first bytes: only the stdlib loop of Python 3.11+ holds
    # them back when connection_made pauses reading (3.10's transport starts its reader
    # anyway, and so does uvloop); elsewhere TLS connections are accepted through anyio's TLS
    # stream
    if not _on_asyncio() or (tls is not None and not _start_tls_safe()):

        async def handle(stream: ByteStream) -> None:
            await on_channel(StreamChannel(stream))

        task_group.start_soon(listener.serve, handle, task_group)
        return Listener(listener, [])

    class _Accepted(_ProtocolChannel):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            if self.transport is not None:  # the TLS transport of start_tls
                super().connection_made(transport)
                return
            super().connection_made(transport)
            if tls is not None:
                transport.pause_reading()  # type: ignore[attr-defined]  # start_tls reads on
            task_group.start_soon(on_channel, self)

    loop = asyncio.get_running_loop()
    subs = getattr(listener, "listeners", [listener])
    servers = []
    try:
        for sub in subs:
            raw = sub.extra(SocketAttribute.raw_socket)
            servers.append(await loop.create_server(_Accepted, sock=raw))
    except BaseException:
        for s in servers:
            s.close()
        await listener.aclose()
        raise
    return Listener(listener, servers)


def _with_server_tls(
    on_channel: Callable[[Channel], Coroutine[Any, Any, None]], tls: ssl.SSLContext, timeout: float
) -> Callable[[Channel], Coroutine[Any, Any, None]]:
    async def accept(channel: Channel) -> None:
        try:
            secured = await _server_tls(channel, tls, timeout)
        except (OSError, TimeoutError, anyio.BrokenResourceError, anyio.EndOfStream) as e:
            log.warning("refused TLS connection from %s: %s", _peer(channel), tls_reason(e))
            with anyio.CancelScope(shield=True):
                await channel.aclose()
            return
        await on_channel(secured)

    return accept


def _peer(channel: Channel) -> str:
    try:
        addr = channel.peer_address
    except Exception:  # pragma: no cover - a closed transport
        addr = None
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) and len(addr) >= 2 else "?"


def default_backend_options(backend: str) -> dict[str, Any]:
    """anyio's options for the loops pynode starts itself (BlockingNode, the command).

    Plain asyncio, whose selector pynode's busy wait can wrap: round trips with a local erl
    measured 48-71 us there against 105-139 us on uvloop, with no steady difference in
    messages per second (benchmarks/dist.py), and a thread's send writes to the socket
    itself only on asyncio's own transport. ``PYNODE_LOOP=uvloop`` picks uvloop (the
    ``pynode-erlang[speed]`` extra) when it is installed."""
    if backend != "asyncio" or os.environ.get("PYNODE_LOOP", "").lower() != "uvloop":
        return {}
    try:
        import uvloop  # noqa: F401
    except ImportError:
        log.warning("PYNODE_LOOP=uvloop, but uvloop is not installed (pynode-erlang[speed]): asyncio it is")
        return {}
    return {"use_uvloop": True}
