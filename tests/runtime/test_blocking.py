"""The blocking facade, used from plain threads."""

from __future__ import annotations

import threading

import pytest

from pynode.blocking import BlockingNode
from pynode.protocol.errors import ProtocolError
from pynode.runtime import MailboxClosed
from pynode.term import Atom


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
