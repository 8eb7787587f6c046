"""Plain sends from the network go straight into the queue of a mailbox nobody waits on
(ProcessTable.sinks, the codec's decode_dist_sends), and through _deliver, which wakes the
waiter and warns, whenever somebody waits or the queue is long."""

from __future__ import annotations

import logging
import threading
from typing import Any

import anyio
import pytest

from pynode.blocking import BlockingNode
from pynode.runtime import Mailbox, Node
from pynode.term import Atom

from .nodes import two_nodes

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def keys(node: Node, mb: Mailbox) -> set[Any]:
    """The sinks entries of ``mb`` (by pid key, by name)."""
    return {k for k, e in node.processes.sinks.items() if e[0] is mb._queue}


def pid_key(mb: Mailbox) -> int:
    return mb.pid.id | (mb.pid.serial << 32)


async def until(cond: Any) -> None:
    with anyio.fail_after(10):
        while not cond():
            await anyio.sleep(0.001)


async def test_messages_to_an_idle_mailbox_go_into_its_queue_in_order() -> None:
    async with two_nodes() as (a, b):
        inbox = b.mailbox("inbox")
        assert keys(b, inbox) == {pid_key(inbox), Atom("inbox")}
        conn = b.connection(a.name)
        assert conn is not None
        before = conn.messages_in
        for i in range(30):  # by pid and by name, mixed
            await a.send(inbox.pid if i % 2 else ("inbox", b.name), i)
        await until(lambda: len(inbox) == 30)
        assert [inbox.receive_nowait() for _ in range(30)] == list(range(30))
        assert conn.messages_in - before == 30


async def test_a_waiting_receiver_takes_the_entries_out_and_is_woken() -> None:
    async with two_nodes() as (a, b):
        inbox = b.mailbox("inbox")
        seen: list[set[Any]] = []

        async def receiver() -> None:
            seen.append(keys(b, inbox))
            got.append(await inbox.receive(timeout=10))

        got: list[Any] = []
        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await until(lambda: inbox._waiters)
            assert keys(b, inbox) == set()  # a delivery must wake it: no straight path
            await a.send(("inbox", b.name), Atom("hello"))
        assert got == [Atom("hello")]
        assert keys(b, inbox) == {pid_key(inbox), Atom("inbox")}  # nobody waits again
        # a receive that timed out puts them back as well
        with pytest.raises(TimeoutError):
            await inbox.receive(timeout=0.01)
        assert keys(b, inbox) == {pid_key(inbox), Atom("inbox")}


async def test_names_and_closing() -> None:
    async with two_nodes() as (a, b):
        inbox = b.mailbox()
        assert keys(b, inbox) == {pid_key(inbox)}
        b.register("named", inbox)
        assert keys(b, inbox) == {pid_key(inbox), Atom("named")}
        await a.send(("named", b.name), 1)
        await until(lambda: len(inbox) == 1)
        b.unregister("named")
        assert keys(b, inbox) == {pid_key(inbox)}
        inbox.close()
        assert keys(b, inbox) == set()
        assert b.call_box() is not None and keys(b, b.call_box()) == set()  # delivers its own way


async def test_the_warning_comes_at_warn_length_over_the_network(caplog: pytest.LogCaptureFixture) -> None:
    async with two_nodes() as (a, b):
        inbox = b.mailbox("inbox")
        inbox.warn_length = 5
        assert b.processes.sinks[Atom("inbox")][1] == 4  # the 5th goes through _deliver
        with caplog.at_level(logging.WARNING, logger="pynode.node"):
            for i in range(12):
                await a.send(("inbox", b.name), i)
            await until(lambda: len(inbox) == 12)
        warnings = [r.getMessage() for r in caplog.records if "messages queued" in r.getMessage()]
        assert len(warnings) == 2, warnings
        assert "has 5 messages" in warnings[0] and "has 10 messages" in warnings[1]
        assert b.processes.sinks[Atom("inbox")][1] == 19  # warn_length doubled twice
        assert [inbox.receive_nowait() for _ in range(12)] == list(range(12))


async def test_a_flush_keeps_the_entries_on_the_new_queue() -> None:
    async with two_nodes() as (a, b):
        inbox = b.mailbox("inbox")
        for m in (1, Atom("drop"), 2):
            await a.send(("inbox", b.name), m)
        await until(lambda: len(inbox) == 3)
        inbox._remove_where(lambda m: m == Atom("drop"))  # demonitor(flush) replaces the queue
        assert keys(b, inbox) == {pid_key(inbox), Atom("inbox")}
        await a.send(inbox.pid, 3)
        await until(lambda: len(inbox) == 3)
        assert [inbox.receive_nowait() for _ in range(3)] == [1, 2, 3]


def test_a_thread_waiting_takes_the_entries_out_and_is_woken() -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            assert a.node is not None and b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            inbox = b.mailbox("inbox")
            mb, procs = inbox.async_mailbox, b.node.processes
            got: list[Any] = []
            t = threading.Thread(target=lambda: got.append(inbox.receive(timeout=10)))
            t.start()
            try:
                deadline = 100
                while not mb._thread_waiters and deadline:  # bounded: 100 x 10 ms
                    threading.Event().wait(0.01)
                    deadline -= 1
                assert mb._thread_waiters
                assert b.run(lambda: {k for k, e in procs.sinks.items() if e[0] is mb._queue}) == set()
                a.mailbox().send(("inbox", b.name), Atom("hello"))
            finally:
                t.join(15)
            assert got == [Atom("hello")]
            assert b.run(lambda: {k for k, e in procs.sinks.items() if e[0] is mb._queue}) == {
                mb.pid.id | (mb.pid.serial << 32), Atom("inbox"),
            }
