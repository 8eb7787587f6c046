"""A BlockingNode mailbox that asks and reads its answers itself hides its connection's
socket from the loop's poll from its send to its read (``hide_in_thread``), so that the
loop, on another CPU, neither wakes nor takes the GIL for those answers; whatever the thread
does not read reaches the loop all the same: at once when someone waits for the loop's
delivery, else within ``busywait.HIDE_BOUND``."""

from __future__ import annotations

import select
import selectors
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from pynode.blocking import BlockingNode
from pynode.runtime import busywait, transport
from pynode.term import Atom, Pid

from .test_blocking_inline import a_node, counted_deliveries, patient_take
from .test_busywait import epoll_events
from .test_read_inline import c_spin, echo_peer

__all__ = ["c_spin", "patient_take"]  # (fixtures these tests use)

needs_epoll = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll (Linux)")
IN = getattr(select, "EPOLLIN", 1)


@contextmanager
def asking() -> Iterator[tuple[Pid, BlockingNode, int, busywait.SpinningSelector]]:
    """An echo peer, and a node connected to it: the echo's pid, the node, its socket to the
    peer, its loop's selector."""
    with echo_peer() as (b, [echo]), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        node = a.node
        assert node is not None
        conn = node.connector.get(b.name)  # type: ignore[union-attr]
        assert conn is not None
        sel = node._spinner
        assert isinstance(sel, busywait.SpinningSelector)
        yield echo, a, conn.channel._fd, sel  # type: ignore[attr-defined]


@pytest.fixture
def watched() -> Iterator[tuple[busywait.SpinningSelector, socket.socket, list[int]]]:
    """A spinning selector over epoll watching one end of a socket pair for reading, and
    the times its ``wake`` was called."""
    a, b = socket.socketpair()
    sel = busywait.SpinningSelector(selectors.DefaultSelector())
    wakes: list[int] = []
    sel.wake = lambda: wakes.append(1)
    sel.register(a, selectors.EVENT_READ)
    try:
        yield sel, a, wakes
    finally:
        sel.close()
        a.close()
        b.close()


@needs_epoll
def test_a_hide_masks_the_socket_out_until_the_loop_changes_or_drops_it(
    watched: tuple[busywait.SpinningSelector, socket.socket, list[int]],
) -> None:
    sel, a, wakes = watched
    fd, epfd = a.fileno(), sel.inner.fileno()  # type: ignore[attr-defined]
    sel._wakes_by = time.monotonic() + busywait.HIDE_BOUND / 2  # a loop that sleeps briefly
    assert sel.hide(fd) and fd in sel.hidden and epoll_events(epfd, fd) == 0
    assert sel.hide(fd) and epoll_events(epfd, fd) == 0  # (again: only its time)
    sel.modify(a, selectors.EVENT_READ, "other data")  # no events changed, yet shown
    assert fd not in sel.hidden and epoll_events(epfd, fd) == IN
    assert sel.hide(fd)
    sel.unregister(a)
    assert fd not in sel.hidden
    assert not sel.hide(fd)  # (not the loop's)
    assert wakes == []


@needs_epoll
def test_a_socket_the_loop_writes_to_is_not_hidden(
    watched: tuple[busywait.SpinningSelector, socket.socket, list[int]],
) -> None:
    """Its writable events are the loop's writer's (a backlog): masking them would stall it."""
    sel, a, _ = watched
    fd = a.fileno()
    sel._wakes_by = time.monotonic()
    sel.modify(a, selectors.EVENT_READ | selectors.EVENT_WRITE)
    assert not sel.hide(fd) and fd not in sel.hidden


@needs_epoll
def test_a_thread_that_waits_for_the_loop_shows_what_was_hidden(
    watched: tuple[busywait.SpinningSelector, socket.socket, list[int]],
) -> None:
    """show_hidden: at once when the loop is idle; else the loop does as it next selects."""
    sel, a, _ = watched
    fd, epfd = a.fileno(), sel.inner.fileno()  # type: ignore[attr-defined]
    sel._wakes_by = time.monotonic()
    assert sel.hide(fd)
    sel.show_hidden()
    assert fd not in sel.hidden and epoll_events(epfd, fd) == IN
    assert sel.hide(fd)
    sel.own_idle()  # as the loop at work holds it
    sel.show_hidden()
    assert fd in sel.hidden and epoll_events(epfd, fd) == 0
    sel.select(0)
    assert fd not in sel.hidden and epoll_events(epfd, fd) == IN


@needs_epoll
def test_a_loop_that_sleeps_long_is_woken_and_sleeps_short_from_then(
    watched: tuple[busywait.SpinningSelector, socket.socket, list[int]],
) -> None:
    """A hide while the loop sleeps longer than HIDE_BOUND is refused and wakes it; its
    sleeps are that short for ASK_LINGER after."""
    sel, a, wakes = watched
    fd, epfd = a.fileno(), sel.inner.fileno()  # type: ignore[attr-defined]
    assert sel._wakes_by == float("inf")  # (no select yet: as a loop asleep without timers)
    assert not sel.hide(fd) and wakes == [1] and epoll_events(epfd, fd) == IN
    t0 = time.monotonic()
    assert sel.select(None) == []  # nothing comes: it returns after its capped sleep
    assert time.monotonic() - t0 < 5 and sel._wakes_by - t0 <= busywait.HIDE_BOUND + 1
    assert sel.hide(fd) and wakes == [1] and epoll_events(epfd, fd) == 0


@needs_epoll
def test_the_loop_shows_what_nobody_came_back_for(
    watched: tuple[busywait.SpinningSelector, socket.socket, list[int]],
) -> None:
    sel, a, _ = watched
    fd, epfd = a.fileno(), sel.inner.fileno()  # type: ignore[attr-defined]
    sel._wakes_by = time.monotonic()
    assert sel.hide(fd)
    sel.select(0)  # fresh: stays hidden
    assert fd in sel.hidden and epoll_events(epfd, fd) == 0
    sel.hidden[fd] -= busywait.HIDE_BOUND  # as if asked that long ago
    sel.select(0)
    assert fd not in sel.hidden and epoll_events(epfd, fd) == IN


def test_a_mailbox_that_asks_hides_its_socket_and_reads_the_answers(patient_take: None) -> None:
    """(patient_take: the thread's read waits up to 2 s where a loaded machine would end the
    spin and leave the answer to the loop, which shows the socket.)"""
    with asking() as (echo, a, fd, sel):
        epfd = sel.inner.fileno()  # type: ignore[attr-defined]
        box = a.mailbox()
        by_loop = counted_deliveries(box)
        hidden_at_send, masked_after = [], []
        for i in range(30):
            box.send(echo, (box.pid, i))
            hidden_at_send.append(fd in sel.hidden)
            assert box.receive(timeout=10) == i
            masked_after.append(epoll_events(epfd, fd) == 0)  # (left so for the next ask)
        assert not hidden_at_send[0]  # (it asks from its first receive on)
        assert sum(hidden_at_send) >= 20  # (a loop asleep when asked: that send is not hidden)
        assert sum(masked_after) >= 20 and len(by_loop) <= 10


def test_a_send_that_no_receive_follows_leaves_the_answer_to_the_loop(
    c_spin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After asks, a send whose answer goes to another mailbox (no receive on this one): that
    mailbox's receive (with a match, as rpc's) waits for the loop's delivery, so the socket
    is shown at once (HIDE_BOUND here is longer than the receive's timeout); the asking stops."""
    monkeypatch.setattr(busywait, "HIDE_BOUND", 60.0)
    with asking() as (echo, a, _, _):
        box, other = a.mailbox(), a.mailbox()
        for i in range(10):
            box.send(echo, (box.pid, i))
            assert box.receive(timeout=10) == i
        box.send(echo, (other.pid, Atom("to_other")))
        assert other.receive(timeout=10, match=lambda m: True) == Atom("to_other")
        box.send(echo, (box.pid, Atom("again")))  # (a send after a send: no more hiding)
        assert box._asks is False
        assert box.receive(timeout=10) == Atom("again")


def test_an_answer_later_than_the_spin_comes_through_the_loop(
    c_spin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A thread whose read runs out before the answer shows the socket to the loop, which
    delivers it: nothing waits for HIDE_BOUND (longer here than the receives' timeout). (The
    read is made to run out without reading: on a loaded machine a real spin may find
    every answer there already.)"""
    monkeypatch.setattr(busywait, "HIDE_BOUND", 60.0)
    with asking() as (echo, a, fd, sel):
        box = a.mailbox()
        box.send(echo, (box.pid, -1))
        assert box.receive(timeout=10) == -1
        hidden_at_read: list[bool] = []

        def spent(buf: bytearray, epfd: int, fd_: int, *rest: object) -> tuple[int, int]:
            hidden_at_read.append(bool(rest[-1]))
            return busywait.TAKE_SPENT, 0  # as a spin that ran out before the answer came

        monkeypatch.setattr(transport, "_take_own", spent)
        by_loop = counted_deliveries(box)
        for i in range(20):
            box.send(echo, (box.pid, i))
            assert box.receive(timeout=10) == i
            assert fd not in sel.hidden
        assert len(by_loop) == 20 and sum(hidden_at_read) >= 10


def test_async_code_on_the_same_connection_gets_its_answers(
    c_spin: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While and after a thread asks (its socket hidden from the loop's poll), a task in the
    loop that asks the same peer gets its answer: its inline read shows the socket, or the
    loop's wait does not depend on it (HIDE_BOUND here is longer than the receive's timeout)."""
    monkeypatch.setattr(busywait, "HIDE_BOUND", 60.0)
    with asking() as (echo, a, _, _):
        node, portal = a.node, a._portal
        assert node is not None and portal is not None
        box = a.mailbox()

        async def ask(i: int) -> object:
            mb = node.mailbox()
            try:
                await mb.send(echo, (mb.pid, (Atom("async"), i)))
                return await mb.receive(timeout=10)
            finally:
                mb.close()

        for i in range(10):
            box.send(echo, (box.pid, i))
            assert box.receive(timeout=10) == i
            assert portal.call(ask, i) == (Atom("async"), i)
