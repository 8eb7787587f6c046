"""A BlockingNode receive reads its answer itself while the loop is idle (it holds the
loop's idle lock meanwhile): plain sends go into the queue, anything else is left to the
loop, in order."""

from __future__ import annotations

import select
import time
from typing import Any

import pytest

from pynode.blocking import BlockingNode
from pynode.runtime import MailboxClosed, busywait, transport
from pynode.term import Atom

from .test_busywait import epoll_events
from .test_read_inline import c_spin, echo_peer

__all__ = ["c_spin"]  # (a fixture these tests use)


def a_node() -> BlockingNode:
    return BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1")


@pytest.fixture
def patient_take(c_spin: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The thread's read spins on where the compiled one gives up: it ends a spin once a
    yield gave its CPU away (a loaded machine, or the peer's thread on this CPU: the peer
    here is in this process), and these tests need the thread to read, not the loop. Up to
    two seconds, ended as before by anything else (the answer, another event of the loop)."""
    take = transport._take_own
    assert take is not None

    def patient(buf: bytearray, epfd: int, fd: int, seconds: float, *rest: Any) -> tuple[int, int]:
        deadline = time.monotonic() + 2.0
        while True:
            outcome, made = take(buf, epfd, fd, seconds, *rest)
            if outcome != busywait.TAKE_SPENT or made or time.monotonic() >= deadline:
                return outcome, made

    monkeypatch.setattr(transport, "_take_own", patient)


def counted_deliveries(box: Any) -> list[Any]:
    """What the loop delivers to ``box`` (``_deliver``), from now on; the thread's own reads
    go into the queue without it."""
    mb = box.async_mailbox
    seen: list[Any] = []
    deliver = mb._deliver

    def counted(message: Any) -> None:
        seen.append(message)
        deliver(message)

    mb._deliver = counted
    return seen


def test_a_blocking_receive_reads_its_answer_itself(patient_take: None) -> None:
    with echo_peer() as (b, [echo]), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        box = a.mailbox()
        by_loop = counted_deliveries(box)
        rounds = 50
        for i in range(rounds):
            box.send(echo, (box.pid, i))
            assert box.receive(timeout=10) == i
        # the peer answers within the spin most times; a receive that waited was woken by
        # the loop's delivery
        assert len(by_loop) < rounds


def test_what_the_thread_leaves_the_loop_keeps_its_place(c_spin: None) -> None:
    """A send that no sink takes (the queue at its warning length) stops the thread's read:
    the loop delivers it, then what followed it; the receiver sees them all in order."""
    with echo_peer() as (b, [echo]), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        box = a.mailbox()
        by_loop = counted_deliveries(box)
        n = 40
        for _ in range(5):
            box.async_mailbox.warn_length = 4  # (doubled by each warning)
            box.send(echo, (Atom("burst"), box.pid, n))
            assert [box.receive(timeout=10) for _ in range(n)] == list(range(1, n + 1))
        assert by_loop  # what the sinks could not take went through the loop


def test_an_exit_the_thread_read_closes_the_mailbox(c_spin: None) -> None:
    """A blocking receive whose read brought an exit signal (left to the loop) raises
    MailboxClosed, as when the loop read it."""
    with echo_peer(6) as (b, echoes), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        for echo in echoes:
            box = a.mailbox()
            a._portal.call(box.async_mailbox.link, echo)  # type: ignore[union-attr]
            box.send(echo, (box.pid, Atom("linked")))  # (after the link, on one socket)
            assert box.receive(timeout=10) == Atom("linked")
            box.send(echo, Atom("die"))
            with pytest.raises(MailboxClosed) as closed:
                box.receive(timeout=10)
            assert closed.value.reason == Atom("boom")


def test_the_loop_holds_its_idle_lock_except_in_select() -> None:
    with a_node() as a:
        sel = a.node._spinner  # type: ignore[union-attr]
        assert isinstance(sel, busywait.SpinningSelector)  # (busy_wait's default)
        # from the loop: held; from here, taken only while the loop waits in select
        assert a.run(lambda: not sel.idle.acquire(False))
        assert sel.idle.acquire(timeout=10)
        try:
            assert sel._idle_owned is False
        finally:
            sel.idle.release()


def test_a_reading_thread_gives_the_loop_its_sockets_mask_back(patient_take: None) -> None:
    """``mask_of``: the events the loop registered the socket with, as the kernel has them
    (``take_own`` masks the socket out while a thread waits on it, and puts these back), -1
    for a descriptor the loop does not watch; after receives the thread read itself, the
    kernel has them again, and a message nobody waits for reaches the mailbox through the
    loop; while the thread asks, the socket is hidden from the loop, until HIDE_BOUND after
    the last ask."""
    with echo_peer() as (b, [echo]), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        conn = a.node.connector.get(b.name)  # type: ignore[union-attr]
        assert conn is not None
        fd = conn.channel._fd  # type: ignore[attr-defined]
        sel = a.node._spinner  # type: ignore[union-attr]
        assert isinstance(sel, busywait.SpinningSelector) and fd >= 0
        epfd = sel.spin_fd
        assert sel.mask_of(fd) == select.EPOLLIN == epoll_events(epfd, fd)
        assert sel.mask_of(epfd) == -1  # (not one of the loop's)
        box = a.mailbox()
        by_loop = counted_deliveries(box)
        for i in range(20):
            box.send(echo, (box.pid, i))
            assert box.receive(timeout=10) == i
        assert len(by_loop) < 20  # the thread read some itself
        # hidden from the loop while the thread asks (hide_in_thread), given back by the
        # loop HIDE_BOUND after the last ask
        deadline = time.monotonic() + 10
        while epoll_events(epfd, fd) != select.EPOLLIN and time.monotonic() < deadline:
            time.sleep(0.001)  # bounded: until the loop shows it
        assert epoll_events(epfd, fd) == select.EPOLLIN and fd not in sel.hidden
        b.send(box.pid, Atom("unasked"))  # from the peer; no receive is waiting
        queued = box.async_mailbox._queue
        for _ in range(1000):  # bounded: until the loop queued it
            if queued:
                break
            time.sleep(0.01)
        assert list(queued) == [Atom("unasked")]
        assert box.receive(timeout=10) == Atom("unasked")


def test_an_interrupt_in_the_threads_read_loses_nothing(patient_take: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A KeyboardInterrupt while the thread handles what it read (Ctrl-C in a script's
    receive): the bytes are in the connection's buffer already, the loop is woken for them,
    and the next receive gets the answer; the connection goes on."""
    with echo_peer() as (b, [echo]), a_node() as a:
        a.connect(b.name, address=("127.0.0.1", b.node.port))  # type: ignore[union-attr]
        box = a.mailbox()
        conn = a.node.connector.get(b.name)  # type: ignore[union-attr]
        assert conn is not None
        take = conn.take_in_thread
        interrupted: list[int] = []

        def interrupt_once(nbytes: int) -> bool:
            if not interrupted:
                interrupted.append(nbytes)
                raise KeyboardInterrupt
            return take(nbytes)

        monkeypatch.setattr(conn, "take_in_thread", interrupt_once)
        for i in range(50):  # bounded: until a read of the thread's own was interrupted
            box.send(echo, (box.pid, i))
            try:
                assert box.receive(timeout=10) == i
            except KeyboardInterrupt:
                assert box.receive(timeout=10) == i  # the loop took it up
                break
        assert interrupted
        box.send(echo, (box.pid, Atom("after")))
        assert box.receive(timeout=10) == Atom("after")
        assert conn.alive
