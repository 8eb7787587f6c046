"""The busy wait: an asyncio loop polls before it sleeps while a node runs on it."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import select
import selectors
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pynode.runtime import Node, busywait
from pynode.runtime.busywait import SpinningSelector, install, new_event_loop, uninstall
from pynode.runtime.errors import NodeError


def c_spin() -> Any:
    return pytest.importorskip("pynode.runtime._spin").wait_readable


@pytest.fixture(params=["c", "python"])
def spin_impl(request: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Selectors made in the test spin in C (without the GIL) or in Python."""
    monkeypatch.setattr(busywait, "_wait_readable", c_spin() if request.param == "c" else None)
    if request.param == "c":  # and their give-ups are counted where gates look (spins_given_up)
        monkeypatch.setattr(busywait, "_c_given_up", pytest.importorskip("pynode.runtime._spin").given_up)
    return str(request.param)


class Recording(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """Records each select timeout; ``on_block`` runs just before a blocking select."""

    def __init__(self) -> None:
        super().__init__()
        self.timeouts: list[float | None] = []
        self.on_block: Any = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        self.timeouts.append(timeout)
        if timeout is None and self.on_block is not None:
            self.on_block()
        return super().select(timeout)


@pytest.fixture
def pair() -> Any:
    a, b = socket.socketpair()
    yield a, b
    a.close()
    b.close()


def test_ready_at_once_without_blocking(pair: Any, spin_impl: str) -> None:
    a, b = pair
    inner = Recording()
    sel = SpinningSelector(inner, spin=1.0)
    sel.register(a, selectors.EVENT_READ)  # delegated to the wrapped selector
    b.send(b"x")
    ready = sel.select(None)
    assert [key.fileobj for key, _ in ready] == [a]
    assert inner.timeouts == [0]  # one poll found it: no blocking select
    assert sel.get_map()[a.fileno()].fileobj is a
    inner.close()


def test_blocks_after_the_spin_and_still_gets_the_event(pair: Any, spin_impl: str) -> None:
    a, b = pair
    inner = Recording()
    inner.on_block = lambda: b.send(b"late")  # arrives only once the selector blocks
    sel = SpinningSelector(inner, spin=0.0002)
    sel.register(a, selectors.EVENT_READ)
    ready = sel.select(None)
    assert [key.fileobj for key, _ in ready] == [a]
    assert inner.timeouts[-1] is None and all(t == 0 for t in inner.timeouts[:-1])
    inner.close()


def test_a_timeout_shorter_than_the_spin_is_kept(pair: Any, spin_impl: str) -> None:
    a, _ = pair
    inner = Recording()
    sel = SpinningSelector(inner, spin=10.0)
    sel.register(a, selectors.EVENT_READ)
    t0 = time.perf_counter()
    assert sel.select(0.01) == []
    assert time.perf_counter() - t0 < 5.0  # ended by the timeout, not by the 10 s spin
    assert None not in inner.timeouts
    assert sel.select(0) == [] and inner.timeouts[-1] == 0  # a poll stays a poll
    inner.close()


def test_the_c_spin_is_used_when_built(pair: Any) -> None:
    inner = selectors.DefaultSelector()
    try:
        sel = SpinningSelector(inner)
        if busywait.C_SPIN:
            assert sel._c_wait is not None and sel.spin_fd == inner.fileno()
        else:
            assert sel._c_wait is None
        # a selector without a descriptor of its own spins in Python whatever is built
        plain = SpinningSelector(selectors.SelectSelector())
        assert plain._c_wait is None
        plain.close()
    finally:
        inner.close()


def test_c_wait_readable_answers_and_times_out() -> None:
    wait = c_spin()
    given_up = pytest.importorskip("pynode.runtime._spin").given_up
    r, w = os.pipe()
    try:
        before = given_up()
        t0 = time.perf_counter()
        assert wait(r, 0.02) is False
        # the whole time, unless another thread wanted this CPU meanwhile (see the next test)
        assert time.perf_counter() - t0 >= 0.02 or given_up() > before
        assert wait(r, 0) is False and wait(r, -1.0) is False and wait(r, float("nan")) is False
        t0 = time.perf_counter()
        assert wait(r, float("inf")) is False  # capped at 1 s: nothing interrupts it (no GIL)
        assert time.perf_counter() - t0 < 5.0
        os.write(w, b"x")
        assert wait(r, 10.0) is True  # at once, not after 10 s
        with pytest.raises(ValueError, match="negative"):
            wait(-1, 0.1)
        with pytest.raises(TypeError):
            wait("fd", 0.1)
    finally:
        os.close(r)
        os.close(w)


@pytest.fixture
def cpu_hog() -> Iterator[int]:
    """A process that always wants the CPU, pinned with this thread to one CPU (returned)."""
    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("CPU affinity is Linux's")
    own = os.sched_getaffinity(0)
    cpu = min(own)
    code = f"import os\nos.sched_setaffinity(0, {{{cpu}}})\nprint('go', flush=True)\nwhile True: pass\n"
    hog = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert hog.stdout is not None and hog.stdout.readline() == b"go\n"
        os.sched_setaffinity(0, {cpu})  # this thread only
        yield cpu
    finally:
        os.sched_setaffinity(0, own)
        hog.kill()
        hog.wait(10)


def test_c_spin_gives_up_a_cpu_another_thread_wants(cpu_hog: int) -> None:
    """A spin is for an idle CPU: on one shared with a busy process, the first yield hands
    that process a time slice, and the spin ends as one that ran out (its caller sleeps)."""
    spin = pytest.importorskip("pynode.runtime._spin")
    r, w = os.pipe()
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        ep.register(a, select.EPOLLIN)
        before = spin.given_up()
        t0 = time.perf_counter()
        assert spin.wait_readable(r, 5.0) is False
        assert spin.read_ready(ep.fileno(), a.fileno(), 5.0, 64) is None
        assert time.perf_counter() - t0 < 0.5  # not the spins (1 s at most each in C)
        assert spin.given_up() >= before + 2
        os.write(w, b"x")
        assert spin.wait_readable(r, 5.0) is True  # an event there is found all the same
    finally:
        ep.close()
        a.close()
        b.close()
        os.close(r)
        os.close(w)


def test_a_spin_that_shares_its_cpu_sleeps_and_its_gate_learns(
    pair: Any, spin_impl: str, cpu_hog: int
) -> None:
    a, b = pair
    inner, sel = gated(a, 5.0, 1.0)
    inner.on_block = lambda: b.send(b"x")  # sent once the selector sleeps
    t0 = time.perf_counter()
    assert [key.fileobj for key, _ in sel.select(None)] == [a]
    assert time.perf_counter() - t0 < 0.5  # not after the spin (5 s; 1 s at most in C)
    assert inner.timeouts[-1] is None  # it slept
    assert sel.gate.hits < 1.0  # a spin that ran out
    if spin_impl == "python":
        assert sel.given_up == 1


def test_c_read_ready_reads_what_came_or_says_why_not() -> None:
    spin = pytest.importorskip("pynode.runtime._spin")
    read, given_up = spin.read_ready, spin.given_up
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        a.setblocking(False)
        ep.register(a.fileno(), select.EPOLLIN)
        before = given_up()
        t0 = time.perf_counter()
        assert read(ep.fileno(), a.fileno(), 0.02, 100) is None  # the time ran out
        assert time.perf_counter() - t0 >= 0.02 or given_up() > before
        b.sendall(b"hello")
        assert read(ep.fileno(), a.fileno(), 10.0, 3) == b"hel"  # at once; size bounds it
        assert read(ep.fileno(), a.fileno(), 10.0, 100) == b"lo"
        other_r, other_w = os.pipe()  # another descriptor's event: a has nothing to read
        try:
            ep.register(other_r, select.EPOLLIN)
            os.write(other_w, b"x")
            assert read(ep.fileno(), a.fileno(), 10.0, 100) == b""
        finally:
            os.close(other_r)
            os.close(other_w)
        with pytest.raises(ValueError, match="negative"):
            read(-1, a.fileno(), 0.1, 10)
        with pytest.raises(ValueError, match="positive"):
            read(ep.fileno(), a.fileno(), 0.1, 0)
        b.close()  # the end of the stream reads as nothing
        assert read(ep.fileno(), a.fileno(), 10.0, 100) == b""
        with pytest.raises(OSError):  # a descriptor that cannot be read: the OS's error
            read(ep.fileno(), 10**6, 10.0, 100)
    finally:
        ep.close()
        a.close()
        b.close()


def test_c_queued_counts_what_a_socket_holds_unread() -> None:
    spin = pytest.importorskip("pynode.runtime._spin")
    a, b = socket.socketpair()
    try:
        assert spin.queued(a.fileno()) == 0
        b.sendall(b"x" * 5000)
        assert spin.queued(a.fileno()) == 5000
        a.recv(1200)
        assert spin.queued(a) == 3800  # (an object with fileno(), as well)
        with pytest.raises(OSError):  # no such descriptor: the OS's error
            spin.queued(10**6)
        with pytest.raises(ValueError):
            spin.queued(-1)
        with pytest.raises(TypeError):
            spin.queued("3")
    finally:
        a.close()
        b.close()


def test_c_hold_returns_at_once_with_nothing_or_enough_queued() -> None:
    spin = pytest.importorskip("pynode.runtime._spin")
    a, b = socket.socketpair()
    try:
        # (either would wait out the bound, 1 s: the most a hold takes, as a spin)
        t0 = time.monotonic()
        assert spin.hold(a.fileno(), 5.0, 5.0, 16384) == 0  # nothing: no stream to wait for
        b.sendall(b"x" * 20000)
        assert spin.hold(a.fileno(), 5.0, 5.0, 16384) == 20000  # enough: read it now
        assert time.monotonic() - t0 < 0.5
        with pytest.raises(OSError):  # no such descriptor: the OS's error
            spin.hold(10**6, 0.1, 0.1, 16384)
        with pytest.raises(ValueError):
            spin.hold(-1, 0.1, 0.1, 16384)
    finally:
        a.close()
        b.close()


def test_c_hold_ends_when_the_bytes_stop_coming() -> None:
    spin = pytest.importorskip("pynode.runtime._spin")
    a, b = socket.socketpair()
    try:
        b.sendall(b"x" * 100)
        # no sender at work: no more than the gap, not the bound (1 s, the most a hold takes)
        t0 = time.monotonic()
        assert spin.hold(a.fileno(), 5.0, 0.001, 16384) == 100
        assert time.monotonic() - t0 < 0.5
    finally:
        a.close()
        b.close()


def _hold_beside_a_sender(spin: Any, cpus: list[int]) -> int:
    """What a hold (8 KiB, gap 0.5 s) returns while a thread writes 1000 bytes at a time as
    fast as it can, the two on CPUs of their own (on one, the sender's time slice would end
    the hold: a yield that gives the CPU away for long does)."""
    a, b = socket.socketpair()
    go, stop = threading.Event(), threading.Event()

    def sender() -> None:  # once the hold has begun, until it is over (bounded)
        os.sched_setaffinity(0, {cpus[1]})  # (0: this thread)
        go.wait(10)
        with contextlib.suppress(OSError):  # (the reader closed while a write waited)
            for _ in range(20_000):
                if stop.is_set():
                    return
                b.sendall(b"y" * 1000)

    b.sendall(b"y" * 1000)  # (some there when the hold starts: else it has nothing to wait on)
    own = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {cpus[0]})
    t = threading.Thread(target=sender)
    t.start()
    try:
        # a gap far longer than any pause between two writes of a running thread; 8 KiB,
        # well within what a socket pair holds of 1000-byte writes. The sender, woken, needs
        # the GIL, which this thread lets go of only in the hold: its writes come during it
        go.set()
        return int(spin.hold(a.fileno(), 5.0, 0.5, 8192))
    finally:
        go.set()
        stop.set()
        a.close()  # (a write that waits for room fails now, and the sender ends)
        t.join(10)
        b.close()
        os.sched_setaffinity(0, own)
        assert not t.is_alive()


@pytest.mark.skipif(
    not hasattr(os, "sched_setaffinity") or len(os.sched_getaffinity(0)) < 2, reason="two CPUs"
)
def test_c_hold_waits_while_the_bytes_keep_coming() -> None:
    spin = pytest.importorskip("pynode.runtime._spin")
    # A hold that did not wait would return the first 1000 bytes. Another thread taking the
    # hold's CPU for 50 us or more (a busy machine) ends it early, by design, and says so.
    cpus = sorted(os.sched_getaffinity(0))[:2]
    for _ in range(5):
        cut = spin.holds_cut()
        got = _hold_beside_a_sender(spin, cpus)
        assert got >= 8192 or spin.holds_cut() > cut, got


needs_epoll = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll (Linux)")


def epoll_events(epfd: int, fd: int) -> int | None:
    """``fd``'s events (EPOLLIN, EPOLLOUT) in the epoll ``epfd`` as the kernel has them
    (/proc/self/fdinfo), None when it is not there."""
    with open(f"/proc/self/fdinfo/{epfd}") as f:
        for line in f:
            parts = line.split()  # tfd: <fd> events: <hex> data: ...
            if parts[:1] == ["tfd:"] and int(parts[1]) == fd:
                return int(parts[3], 16) & (select.EPOLLIN | select.EPOLLOUT)
    return None


@needs_epoll
def test_c_take_own_reads_a_socket_and_the_loop_keeps_its_mask() -> None:
    """take_own: the socket's bytes into the buffer; another event of the loop's ends it as a
    read that found nothing; the time up, as a spin that ran out; whatever the outcome,
    the loop's epoll has the socket's events back when it returns."""
    spin = pytest.importorskip("pynode.runtime._spin")
    take, given_up = spin.take_own, spin.given_up
    spent, enough_, empty = busywait.TAKE_SPENT, busywait.TAKE_ENOUGH, busywait.TAKE_EMPTY
    IN = select.EPOLLIN
    a, b = socket.socketpair()
    ep = select.epoll()
    other_r, other_w = os.pipe()
    buf = bytearray(b"kept")
    try:
        a.setblocking(False)
        ep.register(a.fileno(), IN)
        ep.register(other_r, IN)
        epfd, fd = ep.fileno(), a.fileno()
        before = given_up()
        t0 = time.perf_counter()
        assert take(buf, epfd, fd, 0.02, 100, bool, 10, IN, False) == (spent, 0)
        assert time.perf_counter() - t0 >= 0.02 or given_up() > before
        assert epoll_events(epfd, fd) == IN
        b.sendall(b"hello")
        assert take(buf, epfd, fd, 10.0, 3, lambda got: len(got) >= 9, 10, IN, False) == (enough_, 2)
        assert buf == b"kepthello"  # (3 bytes a read)
        os.write(other_w, b"x")  # another descriptor's event, a has nothing: the loop's turn
        assert take(buf, epfd, fd, 10.0, 100, bool, 10, IN, False) == (empty, 0)
        assert epoll_events(epfd, fd) == IN
        b.sendall(b"both")  # both: the socket's bytes first
        assert take(buf, epfd, fd, 10.0, 100, bool, 10, IN, False) == (enough_, 1)
        assert buf.endswith(b"both")
        with pytest.raises(ValueError, match="bad file descriptor"):
            take(buf, epfd, -1, 0.1, 10, bool, 10, IN, False)
        with pytest.raises(ValueError, match="bad mask"):
            take(buf, epfd, fd, 0.1, 10, bool, 10, -1, False)
        with pytest.raises(TypeError, match="9 arguments"):
            take(buf, epfd, fd, 0.1, 10, bool, 10)
        def refuse(got: bytearray) -> bool:
            raise RuntimeError("from enough")

        b.sendall(b"raise")
        with pytest.raises(RuntimeError, match="from enough"):
            take(buf, epfd, fd, 10.0, 100, refuse, 10, IN, False)
        assert buf.endswith(b"raise")  # what was read is kept
        assert epoll_events(epfd, fd) == IN
        ep.unregister(fd)  # not the loop's (any more): nothing to wait for, it does not
        assert take(buf, epfd, fd, 10.0, 100, bool, 10, IN, False) == (empty, 0)
        ep.register(fd, IN)
        b.close()  # the end of the stream reads as nothing
        assert take(buf, epfd, fd, 10.0, 100, bool, 10, IN, False) == (empty, 0)
    finally:
        ep.close()
        a.close()
        b.close()
        os.close(other_r)
        os.close(other_w)


@needs_epoll
def test_c_take_own_masks_the_socket_out_while_it_waits_and_puts_it_back() -> None:
    """Seen from another thread (as the loop's poll would be): while take_own waits for bytes
    that do not come, the loop's epoll has the socket masked out; each call puts the mask
    back as it returns, whether its spin ran out or gave its CPU away (a loaded machine)."""
    spin = pytest.importorskip("pynode.runtime._spin")
    IN = select.EPOLLIN
    a, b = socket.socketpair()
    ep = select.epoll()
    stop = threading.Event()
    seen: set[int | None] = set()
    try:
        a.setblocking(False)
        ep.register(a.fileno(), IN)
        epfd, fd = ep.fileno(), a.fileno()

        def watch() -> None:
            deadline = time.monotonic() + 30
            while not stop.is_set() and time.monotonic() < deadline:  # bounded in time
                seen.add(epoll_events(epfd, fd))
                if 0 in seen:
                    return

        watcher = threading.Thread(target=watch)
        watcher.start()
        try:
            for _ in range(200):  # bounded: until the watcher saw the socket masked out
                assert spin.take_own(bytearray(), epfd, fd, 0.05, 100, bool, 4, IN, False)[0] == busywait.TAKE_SPENT
                assert epoll_events(epfd, fd) == IN
                if 0 in seen:
                    break
        finally:
            stop.set()
            watcher.join(timeout=60)
        assert 0 in seen
    finally:
        ep.close()
        a.close()
        b.close()


@needs_epoll
def test_c_take_own_hides_the_socket_from_the_loop_only_while_it_waits() -> None:
    """An answer there at once is read with the loop's mask untouched (hiding it would cost
    two epoll_ctl calls of a round trip); one that is waited for is read while the loop's
    epoll has the descriptor masked out, and the mask is back when the call returns, even
    with an exception from ``enough``. (The waited-for read is a pipe's: its first read is
    no socket's, so take_own hides it and polls, and finds its byte at once: no timing.)"""
    spin = pytest.importorskip("pynode.runtime._spin")
    IN = select.EPOLLIN
    a, b = socket.socketpair()
    r, w = os.pipe()
    ep = select.epoll()
    try:
        a.setblocking(False)
        ep.register(a.fileno(), IN)
        ep.register(r, IN)
        masks: list[int | None] = []

        def enough_at(fd: int) -> Callable[[bytearray], bool]:
            def enough(got: bytearray) -> bool:
                masks.append(epoll_events(ep.fileno(), fd))
                return True

            return enough

        b.sendall(b"now")
        got = bytearray()
        assert spin.take_own(got, ep.fileno(), a.fileno(), 10.0, 100, enough_at(a.fileno()), 4, IN, False) == (
            busywait.TAKE_ENOUGH, 1)
        assert (got, masks) == (b"now", [IN])
        masks.clear()
        os.write(w, b"later")
        got = bytearray()
        assert spin.take_own(got, ep.fileno(), r, 10.0, 100, enough_at(r), 4, IN, False) == (busywait.TAKE_ENOUGH, 1)
        assert (got, masks) == (b"later", [0])
        assert epoll_events(ep.fileno(), r) == IN

        def refuse(got: bytearray) -> bool:
            masks.append(epoll_events(ep.fileno(), r))
            raise RuntimeError("from enough")

        masks.clear()
        os.write(w, b"again")
        got = bytearray()
        with pytest.raises(RuntimeError, match="from enough"):
            spin.take_own(got, ep.fileno(), r, 10.0, 100, refuse, 4, IN, False)
        assert (got, masks) == (b"again", [0])
        assert epoll_events(ep.fileno(), r) == IN
    finally:
        ep.close()
        a.close()
        b.close()
        os.close(r)
        os.close(w)


@needs_epoll
def test_c_take_own_of_a_hidden_socket_leaves_it_hidden() -> None:
    """``hidden``: the socket was masked out before the call (SpinningSelector.hide, ahead of
    the thread's request): an answer there at once and one waited for are both read with it
    masked out, and it is left so whatever the outcome (a spin that ran out, an exception
    from ``enough``): the caller shows it (transport's read_in_thread)."""
    spin = pytest.importorskip("pynode.runtime._spin")
    IN = select.EPOLLIN
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        a.setblocking(False)
        ep.register(a.fileno(), IN)
        epfd, fd = ep.fileno(), a.fileno()
        masks: list[int | None] = []

        def enough(got: bytearray) -> bool:
            masks.append(epoll_events(epfd, fd))
            return True

        def refuse(got: bytearray) -> bool:
            masks.append(epoll_events(epfd, fd))
            raise RuntimeError("from enough")

        for step in ("at once", "spent", "raises"):
            ep.modify(fd, 0)  # hidden, as hide() leaves it
            got = bytearray()
            if step == "at once":
                b.sendall(b"now")
                assert spin.take_own(got, epfd, fd, 10.0, 100, enough, 4, IN, True) == (busywait.TAKE_ENOUGH, 1)
                assert got == b"now"
            elif step == "spent":
                outcome = spin.take_own(got, epfd, fd, 0.02, 100, enough, 4, IN, True)[0]
                assert outcome == busywait.TAKE_SPENT and got == b""
            else:
                b.sendall(b"raise")
                with pytest.raises(RuntimeError, match="from enough"):
                    spin.take_own(got, epfd, fd, 10.0, 100, refuse, 4, IN, True)
                assert got == b"raise"
            assert epoll_events(epfd, fd) == 0, step  # left so: the caller shows it
        assert masks == [0, 0]  # the reads ran with it masked out
    finally:
        ep.close()
        a.close()
        b.close()


@pytest.fixture(params=["c", "composed"])
def take_into(request: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """take_into compiled, or composed in Python of read_ready (a _spin built before it)."""
    spin = pytest.importorskip("pynode.runtime._spin")
    if request.param == "c":
        return spin.take_into
    monkeypatch.setattr(busywait, "read_ready", spin.read_ready)
    return busywait._take_composed


def test_take_into_reads_until_enough_and_says_why_it_stopped(take_into: Any) -> None:
    a, b = socket.socketpair()
    ep = select.epoll()
    try:
        a.setblocking(False)
        ep.register(a.fileno(), select.EPOLLIN)
        epfd, fd = ep.fileno(), a.fileno()
        seen: list[bytes] = []

        def enough(buf: bytearray) -> bool:
            seen.append(bytes(buf))
            return b"." in buf

        buf = bytearray(b"kept:")
        assert take_into(buf, epfd, fd, 0.02, 100, enough, 16) == (busywait.TAKE_SPENT, 0)
        assert buf == b"kept:" and seen == []
        assert take_into(buf, epfd, fd, 0.0, 100, enough, 16) == (busywait.TAKE_LATE, 0)
        b.sendall(b"ab")
        assert take_into(buf, epfd, fd, 10.0, 100, enough, 1) == (busywait.TAKE_STREAK, 1)
        assert buf == b"kept:ab" and seen == [b"kept:ab"]
        b.sendall(b"cdef.gh")
        assert take_into(buf, epfd, fd, 10.0, 3, enough, 16) == (busywait.TAKE_ENOUGH, 2)  # size 3 a read
        assert buf == b"kept:abcdef.g" and seen[1:] == [b"kept:abcde", b"kept:abcdef.g"]
        other_r, other_w = os.pipe()  # another descriptor's event: a has nothing more to read
        try:
            ep.register(other_r, select.EPOLLIN)
            os.write(other_w, b"x")
            assert take_into(buf, epfd, fd, 10.0, 100, enough, 16) == (busywait.TAKE_ENOUGH, 1)  # "h"
            assert take_into(buf, epfd, fd, 10.0, 100, enough, 16) == (busywait.TAKE_EMPTY, 0)
        finally:
            os.close(other_r)
            os.close(other_w)
        b.sendall(b"xy")

        def fails(buf: bytearray) -> bool:
            raise ZeroDivisionError

        buf = bytearray()
        with pytest.raises(ZeroDivisionError):
            take_into(buf, epfd, fd, 10.0, 100, fails, 16)
        assert buf == b"xy"  # what was read stays the caller's
        b.close()  # the end of the stream reads as nothing
        assert take_into(buf, epfd, fd, 10.0, 100, enough, 16) == (busywait.TAKE_EMPTY, 0)
        with pytest.raises(OSError):  # a descriptor that cannot be read: the OS's error
            take_into(buf, epfd, 10**6, 10.0, 100, enough, 16)
        assert buf == b"xy"
    finally:
        ep.close()
        a.close()
        b.close()


@pytest.fixture
def watched() -> Iterator[tuple[socket.socket, socket.socket, select.epoll]]:
    """A socket pair whose reading end (non-blocking) an epoll watches: (a, b, epoll)."""
    a, b = socket.socketpair()
    ep = select.epoll()
    a.setblocking(False)
    ep.register(a.fileno(), select.EPOLLIN)
    yield a, b, ep
    ep.close()
    a.close()
    b.close()


@needs_epoll
def test_c_reads_look_at_the_socket_before_they_poll(take_into: Any) -> None:
    """An answer already there is read before any poll (on one CPU with erl it is there as a
    rule: that poll was one system call of three per echo round trip). Here the epoll
    watches nothing, so only that first read finds the bytes; the socket is a blocking one,
    and a first read that finds nothing does not block."""
    spin = pytest.importorskip("pynode.runtime._spin")
    a, b = socket.socketpair()  # blocking
    ep = select.epoll()  # watches nothing: it never reports a
    try:
        epfd, fd = ep.fileno(), a.fileno()
        assert spin.read_ready(epfd, fd, 0.0, 100) is None  # nothing there, no time to wait
        b.sendall(b"there")
        assert spin.read_ready(epfd, fd, 0.0, 100) == b"there"
        b.sendall(b"answer.")
        buf = bytearray()
        assert take_into(buf, epfd, fd, 5.0, 100, lambda got: b"." in got, 4) == (busywait.TAKE_ENOUGH, 1)
        assert buf == b"answer."
        b.sendall(b"own.")
        buf = bytearray()
        assert spin.take_own(buf, epfd, fd, 5.0, 100, lambda got: True, 4, 0, False) == (busywait.TAKE_ENOUGH, 1)
        assert buf == b"own."
    finally:
        ep.close()
        a.close()
        b.close()


def test_take_into_refuses_bad_arguments(take_into: Any, watched: Any) -> None:
    a, b, ep = watched
    epfd, fd = ep.fileno(), a.fileno()
    with pytest.raises(TypeError, match="bytearray"):
        take_into(b"", epfd, fd, 0.1, 10, bool, 1)
    with pytest.raises(ValueError, match="descriptor"):
        take_into(bytearray(), -1, fd, 0.1, 10, bool, 1)
    with pytest.raises(ValueError, match="positive"):
        take_into(bytearray(), epfd, fd, 0.1, 0, bool, 1)
    with pytest.raises(ValueError, match="positive"):
        take_into(bytearray(), epfd, fd, 0.1, 10, bool, 0)
    with pytest.raises(TypeError):
        take_into(bytearray(), epfd)
    b.sendall(b"x")  # a NaN time is no time: nothing read, as for 0
    assert take_into(bytearray(), epfd, fd, math.nan, 10, bool, 1) == (busywait.TAKE_LATE, 0)

    class Sub(bytearray):
        pass

    buf = Sub(b"s:")  # a bytearray subclass is a bytearray
    assert take_into(buf, epfd, fd, 1.0, 10, lambda _: False, 1) == (busywait.TAKE_STREAK, 1)
    assert buf == b"s:x"


def test_take_into_leaves_the_bytes_in_the_socket_when_buf_cannot_grow(take_into: Any, watched: Any) -> None:
    """enough() may keep a view of buf, which then cannot be resized: the next read is not
    made (its bytes would be lost), and the error is the caller's."""
    a, b, ep = watched
    views: list[memoryview] = []

    def keeps_a_view(buf: bytearray) -> bool:
        views.append(memoryview(buf))
        b.sendall(b"cd")
        return False

    buf = bytearray()
    b.sendall(b"ab")
    with pytest.raises(BufferError):
        take_into(buf, ep.fileno(), a.fileno(), 1.0, 2, keeps_a_view, 16)
    assert buf == b"ab"
    views[0].release()
    assert take_into(buf, ep.fileno(), a.fileno(), 1.0, 100, bool, 16) == (busywait.TAKE_ENOUGH, 1)
    assert buf == b"abcd"


def test_c_take_into_holds_buf_while_it_reads_without_the_gil(watched: Any) -> None:
    """While the compiled spin waits without the GIL, its read's place in buf is exported: a
    thread that resizes buf then gets a BufferError instead of the read landing in freed
    memory, and what the read brings is in buf afterwards."""
    take = pytest.importorskip("pynode.runtime._spin").take_into
    a, b, ep = watched
    buf = bytearray(b"kept")
    refused = threading.Event()
    deadline = time.monotonic() + 10.0

    def resizes() -> None:
        while time.monotonic() < deadline:
            try:  # a resize and its undoing, one GIL hold (see the switch interval below)
                buf.append(0)
                del buf[-1]
            except BufferError:  # the spin holds buf: the bytes it waits for come now
                refused.set()
                b.sendall(b"data")
                return
            time.sleep(0.0005)  # (lets the spin's call take the GIL between its calls)

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    t = threading.Thread(target=resizes)
    t.start()
    try:
        outcome = busywait.TAKE_SPENT
        while outcome == busywait.TAKE_SPENT and time.monotonic() < deadline:
            # a spin ends early when the resizing thread takes its CPU: spin again
            outcome, reads = take(buf, ep.fileno(), a.fileno(), 1.0, 100, bool, 1)
    finally:
        t.join(10.0)
        sys.setswitchinterval(interval)
    assert refused.is_set()
    assert (outcome, reads) == (busywait.TAKE_ENOUGH, 1)
    assert buf == b"keptdata"


def test_c_wait_readable_lets_other_threads_run() -> None:
    """The point of the C spin: while it polls, a Python thread (a BlockingNode caller the
    loop has just woken) gets the GIL. The thread counts while it holds the GIL; this one
    holds it right before the spin and right after: a count that moved moved during it."""
    wait = c_spin()
    own = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []
    r, w = os.pipe()
    count = [0]
    stop = threading.Event()
    started = threading.Event()

    def watch() -> None:
        if len(own) >= 2:  # a CPU of its own: on the spin's, it would end the spin at once
            os.sched_setaffinity(0, {own[1]})
        started.set()
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=watch)
    t.start()
    try:
        assert started.wait(10)
        moved = False
        for _ in range(50):  # bounded: a spin that gave a busy CPU away at once ends early
            before = count[0]
            assert wait(r, 0.2) is False
            if count[0] > before:
                moved = True
                break
        assert moved
    finally:
        stop.set()
        t.join(10)
        os.close(r)


def test_install_counts_its_users_and_restores_the_selector() -> None:
    loop = asyncio.new_event_loop()
    try:
        own = loop._selector  # type: ignore[attr-defined]
        first = install(loop, 1e-4)
        second = install(loop, 2e-4)
        assert first is second and isinstance(first, SpinningSelector)
        assert loop._selector is first and first.inner is own  # type: ignore[attr-defined]
        assert first.spin == 2e-4  # the longest asked for
        uninstall(loop, first)
        assert loop._selector is first  # type: ignore[attr-defined]  # one user left
        uninstall(loop, second)
        assert loop._selector is own  # type: ignore[attr-defined]
        assert install(loop, 0) is None and loop._selector is own  # type: ignore[attr-defined]
        assert install(None, 1e-4) is None
    finally:
        loop.close()


def test_a_loop_made_spinning_runs_and_closes() -> None:
    loop = new_event_loop()
    try:
        own = loop._selector  # type: ignore[attr-defined]
        assert isinstance(own, SpinningSelector)
        assert loop.run_until_complete(asyncio.sleep(0.001, result=7)) == 7

        async def a_node_comes_and_goes() -> None:
            async with Node("bw5@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1"):
                assert loop._selector is own  # type: ignore[attr-defined]

        loop.run_until_complete(a_node_comes_and_goes())
        assert loop._selector is own  # type: ignore[attr-defined]  # still spins
    finally:
        loop.close()


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_node_spins_its_loop_while_it_runs(anyio_backend: str) -> None:
    loop = asyncio.get_running_loop()
    own = loop._selector  # type: ignore[attr-defined]
    async with Node("bw1@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        assert isinstance(loop._selector, SpinningSelector)  # type: ignore[attr-defined]
        async with Node("bw2@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", busy_wait=0) as b:
            conn = await b.connect(str(a.name), address=("127.0.0.1", a.port))
            assert conn.alive  # the two nodes talk over the spinning loop
        assert isinstance(loop._selector, SpinningSelector)  # type: ignore[attr-defined]
    assert loop._selector is own  # type: ignore[attr-defined]
    async with Node("bw3@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", busy_wait=0):
        assert loop._selector is own  # type: ignore[attr-defined]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_node_that_fails_to_start_gives_the_selector_back(anyio_backend: str) -> None:
    loop = asyncio.get_running_loop()
    own = loop._selector  # type: ignore[attr-defined]
    async with Node("bw6@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as taken:
        with pytest.raises(NodeError, match="listen"):  # the port is taken
            async with Node("bw7@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", port=taken.port):
                pass
    assert loop._selector is own  # type: ignore[attr-defined]


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_nothing_to_spin_on_trio(anyio_backend: str) -> None:
    async with Node("bw4@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as node:
        assert node._spinner is None


# -- SpinGate: spinning only while it pays ----------------------------------------------------


def test_a_closed_gates_probe_that_shares_its_cpu_backs_off(
    pair: Any, spin_impl: str, cpu_hog: int
) -> None:
    """A probe that hands its CPU to a busy process doubles the gate's probe interval."""
    a, b = pair
    inner, sel = gated(a, 5.0, 0.0)  # closed
    for _ in range(busywait.PROBE_EVERY - 1):  # refused waits: the next one is a probe
        assert not sel.gate.allow()
    before = busywait.spins_given_up()
    inner.on_block = lambda: b.send(b"x")
    assert [key.fileobj for key, _ in sel.select(None)] == [a]
    assert busywait.spins_given_up() > before
    assert sel.gate.probe_every == 2 * busywait.PROBE_EVERY


class GivenUp:
    """A stand-in for busywait.spins_given_up that the test moves."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> int:
        return self.count


def test_only_the_probes_own_give_up_backs_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    """A spin given up before the probe began (another gate's, a thread's) is not its."""
    gate, given_up = closed_gate(monkeypatch)
    given_up.count += 1  # between two probes
    next_probe(gate)
    gate.outcome(False)
    assert gate.probe_every == busywait.PROBE_EVERY


def closed_gate(monkeypatch: pytest.MonkeyPatch) -> tuple[busywait.SpinGate, GivenUp]:
    given_up = GivenUp()
    monkeypatch.setattr(busywait, "spins_given_up", given_up)
    gate = busywait.SpinGate()
    while gate.hits >= busywait.HIT_FLOOR:  # spins that ran out by themselves
        gate.outcome(False)
    assert gate.probe_every == busywait.PROBE_EVERY
    return gate, given_up


def next_probe(gate: busywait.SpinGate) -> int:
    """Waits until the gate allows one (a probe), that one included."""
    for waits in range(1, 10 * busywait.PROBE_EVERY_MAX):
        if gate.allow():
            return waits
    raise AssertionError("no probe")


def test_probes_given_up_back_off_to_the_cap_and_a_hit_resets_them(monkeypatch: pytest.MonkeyPatch) -> None:
    gate, given_up = closed_gate(monkeypatch)
    next_probe(gate)  # where the count of skipped waits starts from
    every = busywait.PROBE_EVERY
    while every < busywait.PROBE_EVERY_MAX:
        given_up.count += 1  # this probe gave its CPU away
        gate.outcome(False)
        every *= 2
        assert gate.probe_every == every
        assert next_probe(gate) == every
    given_up.count += 1
    gate.outcome(False)
    assert gate.probe_every == busywait.PROBE_EVERY_MAX  # capped
    assert next_probe(gate) == busywait.PROBE_EVERY_MAX
    gate.outcome(True)  # a probe that caught its event
    assert gate.probe_every == busywait.PROBE_EVERY
    assert next_probe(gate) == busywait.PROBE_EVERY


def test_a_probe_that_runs_out_by_itself_resets_the_back_off(monkeypatch: pytest.MonkeyPatch) -> None:
    gate, given_up = closed_gate(monkeypatch)
    next_probe(gate)
    given_up.count += 1
    gate.outcome(False)
    assert gate.probe_every == 2 * busywait.PROBE_EVERY
    next_probe(gate)
    gate.outcome(False)  # ran out with the CPU to itself: sparse traffic, as before
    assert gate.probe_every == busywait.PROBE_EVERY


def test_an_open_gates_spin_given_up_is_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    """An erl node's long turn at a request on the same CPU leaves an open gate as it was."""
    given_up = GivenUp()
    monkeypatch.setattr(busywait, "spins_given_up", given_up)
    gate = busywait.SpinGate()
    given_up.count += 1
    gate.outcome(False)
    assert gate.open and gate.probe_every == busywait.PROBE_EVERY
    assert all(gate.allow() for _ in range(3))


def test_a_gate_spins_while_spins_end_with_events() -> None:
    gate = busywait.SpinGate()
    for _ in range(200):
        assert gate.allow()
        gate.outcome(True)
    assert gate.hits == 1.0


def test_a_gate_closes_when_spins_run_out_and_probes_meanwhile() -> None:
    gate = busywait.SpinGate()
    spun = 0
    for _ in range(64):  # runs out every time: the rate falls below the floor
        if gate.allow():
            spun += 1
            gate.outcome(False)
    assert gate.hits < busywait.HIT_FLOOR
    allowed = [gate.allow() for _ in range(10 * busywait.PROBE_EVERY)]
    probes = [i for i, yes in enumerate(allowed) if yes]
    assert len(probes) == 10  # one wait in PROBE_EVERY still spins, evenly
    assert all(b - a == busywait.PROBE_EVERY for a, b in zip(probes, probes[1:], strict=False))
    assert spun < 64  # some of the first 64 were not spun either


def test_a_closed_gate_opens_again_when_its_probes_hit() -> None:
    gate = busywait.SpinGate()
    while gate.hits >= busywait.HIT_FLOOR:
        gate.outcome(False)
    for _ in range(100 * busywait.PROBE_EVERY):  # bounded: the probes hit from now on
        if gate.allow():
            gate.outcome(True)
        if gate.hits >= busywait.HIT_FLOOR:
            break
    assert gate.allow() and gate.allow()  # open: every wait spins


def gated(sock: socket.socket, spin: float, hits: float) -> tuple[Recording, SpinningSelector]:
    """A recording selector for ``sock`` whose gate's rate is ``hits``."""
    inner = Recording()
    sel = SpinningSelector(inner, spin=spin)
    sel.register(sock, selectors.EVENT_READ)
    sel.gate.hits = hits
    return inner, sel


def test_a_selector_whose_spins_run_out_stops_spinning(
    pair: Any, spin_impl: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a probe whose yield a busy machine takes backs off: not this test's subject
    monkeypatch.setattr(busywait, "spins_given_up", lambda: 0)
    a, b = pair
    inner, sel = gated(a, 0.0001, 1.0)
    for _ in range(40):  # nothing ever comes within the spin (a 1 ms timeout each time)
        assert sel.select(0.001) == []
    assert sel.gate.hits < busywait.HIT_FLOOR
    spun = 0
    for _ in range(5 * busywait.PROBE_EVERY):
        inner.timeouts.clear()
        assert sel.select(0.001) == []
        spun += inner.timeouts != [0.001]  # else it slept at once, without a poll(0) first
    assert spun == 5  # the probes alone
    b.send(b"x")  # an event: found by a plain poll, whatever the gate says
    assert [key.fileobj for key, _ in sel.select(0.001)] == [a]
    inner.close()


def test_a_timer_that_ends_the_spin_is_no_outcome_and_no_probe(pair: Any, spin_impl: str) -> None:
    inner, sel = gated(pair[0], 10.0, 0.5)
    for _ in range(40):
        assert sel.select(0.0005) == []  # the timer ends each spin: nothing learnt from it
    assert sel.gate.hits == 0.5
    sel.gate.hits = 0.0  # closed: a cut-short spin does not probe, it sleeps at once
    for _ in range(3 * busywait.PROBE_EVERY):
        inner.timeouts.clear()
        assert sel.select(0.0005) == []
        assert inner.timeouts == [0.0005]
    assert sel.gate._skipped == 0  # and no probe's turn was used up
    inner.close()


def test_an_event_there_at_once_is_no_outcome(pair: Any, spin_impl: str) -> None:
    a, b = pair
    inner, sel = gated(a, 0.01, 0.5)
    b.send(b"x")  # ready before the select: the spin is not what found it
    for _ in range(20):
        assert [key.fileobj for key, _ in sel.select(None)] == [a]
    # counted as hits, 20 would have taken it to 0.86; a preempted clock may count one or two
    assert sel.gate.hits < 0.6
    inner.close()


@pytest.mark.skipif(not hasattr(selectors, "EpollSelector"), reason="epoll is Linux's")
def test_others_ready_tells_one_readable_socket_from_the_loops_work() -> None:
    """What an inline reader asks after a streak: is anything ready but its socket's bytes?"""
    a, b = socket.socketpair()
    c, d = socket.socketpair()
    sel = SpinningSelector(selectors.EpollSelector(), spin=0.001)
    try:
        sel.register(a, selectors.EVENT_READ)
        sel.register(c, selectors.EVENT_READ)
        assert not sel.others_ready(a.fileno())  # nothing ready at all
        b.send(b"x")
        assert not sel.others_ready(a.fileno())  # only the asker's bytes
        assert sel.others_ready(c.fileno())  # for c's reader, a's bytes are the loop's work
        sel.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE)  # a transport's buffer
        assert sel.others_ready(a.fileno())
        sel.modify(a, selectors.EVENT_READ)
        d.send(b"y")  # another descriptor's event
        assert sel.others_ready(a.fileno())
        assert [k.fileobj for k, _ in sel.select(0)] in ([a, c], [c, a])  # none was taken
    finally:
        sel.close()
        for s in (a, b, c, d):
            s.close()


def test_others_ready_says_yes_when_the_selector_cannot_tell(pair: Any) -> None:
    a, _ = pair
    sel = SpinningSelector(selectors.SelectSelector(), spin=0.001)
    sel.register(a, selectors.EVENT_READ)
    assert sel.others_ready(a.fileno())  # the loop's turn, as without the check
    sel.close()
