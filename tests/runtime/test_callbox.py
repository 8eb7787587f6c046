"""Node.rpc from one shared process (the call box), between pynodes, on asyncio and trio."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import anyio
import pytest

from pynode.runtime import MailboxClosed, NoConnection, Node, RemoteError, RpcTimeout
from pynode.runtime.callbox import CallBox
from pynode.term import Atom

from .nodes import two_nodes

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def serve(b: Node, gate: anyio.Event) -> None:
    @b.expose("py", "after")
    async def after(x: int, delay: float) -> int:
        await anyio.sleep(delay)
        return x * 10

    @b.expose("py", "blocked")
    async def blocked() -> Atom:
        await gate.wait()
        return Atom("released")


def blocked_call(a: Node, b: Node) -> tuple[anyio.Event, CallBox, list[object], Callable[[], Awaitable[None]]]:
    """A call from ``a`` that ``b`` answers once the gate is set: the gate, ``a``'s call box,
    the list the answer goes to, and the coroutine function that makes the call."""
    gate = anyio.Event()
    serve(b, gate)
    got: list[object] = []

    async def pending() -> None:
        got.append(await a.rpc(b.name, "py", "blocked", [], timeout=30))

    return gate, a.call_box(), got, pending


async def settled(pred: object, what: str) -> None:
    """Wait (bounded) until ``pred()`` holds: remote cleanup is asynchronous."""
    with anyio.fail_after(10):
        while not pred():  # type: ignore[operator]
            await anyio.sleep(0.01)


async def test_concurrent_calls_get_their_own_answers() -> None:
    async with two_nodes() as (a, b):
        serve(b, anyio.Event())
        results: dict[int, int] = {}

        async def one(i: int) -> None:
            # answers come back out of order: later calls sleep less
            results[i] = await a.rpc(b.name, "py", "after", [i, (40 - i) * 0.002], timeout=10)

        async with anyio.create_task_group() as tg:
            for i in range(40):
                tg.start_soon(one, i)
        assert results == {i: i * 10 for i in range(40)}
        box = a.call_box()
        assert not box._calls and not box.monitors and not len(box)
        assert not a.processes.monitored
        await settled(lambda: len(b.processes.mailboxes()) == 1, "b's call processes gone")


async def test_cancelled_and_timed_out_calls_leave_nothing() -> None:
    async with two_nodes() as (a, b):
        gate = anyio.Event()
        serve(b, gate)
        with anyio.move_on_after(0.2) as scope:
            await a.rpc(b.name, "py", "blocked", [])
        assert scope.cancelled_caught
        with pytest.raises(RpcTimeout):
            await a.rpc(b.name, "py", "blocked", [], timeout=0.2)
        box = a.call_box()
        assert not box._calls and not box.monitors
        # both were abandoned, as erpc:call abandons a call that timed out: they run on (the
        # peer had no signal to stop them) until released, and their answers are dropped
        assert len(b.processes.mailboxes()) == 3
        gate.set()
        await settled(lambda: len(b.processes.mailboxes()) == 1, "the released call ended")
        assert not len(box) and not box._calls
        assert await a.rpc(b.name, "py", "after", [3, 0], timeout=5) == 30


async def test_killed_call_box_fails_its_calls_and_is_replaced() -> None:
    async with two_nodes() as (a, b):
        gate = anyio.Event()
        serve(b, gate)
        box = a.call_box()
        errors: list[BaseException] = []

        async def pending() -> None:
            try:
                await a.rpc(b.name, "py", "blocked", [])  # no timeout: only the kill ends it
            except MailboxClosed as e:
                errors.append(e)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pending)
                await settled(lambda: len(box._calls) == 1, "the call waits")
                killer = b.mailbox()
                await killer.exit(box.pid, Atom("kill"))  # exit/2 with kill: cannot be trapped
        assert len(errors) == 1 and errors[0].reason == Atom("killed")  # type: ignore[attr-defined]
        assert box.closed and a.call_box() is not box
        assert await a.rpc(b.name, "py", "after", [4, 0], timeout=5) == 40
        gate.set()


async def test_stray_messages_to_the_call_box_are_dropped() -> None:
    async with two_nodes() as (a, b):
        serve(b, anyio.Event())
        box = a.call_box()
        sender = b.mailbox()
        for junk in [Atom("junk"), (Atom("DOWN"), [1], 2), (1, 2, 3), (Atom("DOWN"), a.make_ref(), 1)]:
            await sender.send(box.pid, junk)
        # one connection carries both: the junk went out before the call's answer
        assert await a.rpc(b.name, "py", "after", [5, 0], timeout=5) == 50
        assert not len(box) and not box._calls and not box.closed


async def test_exit_signals_short_of_kill_leave_the_call_box_alone() -> None:
    """The call box traps exits, as rex does: a peer that linked to it and died, or exit/2
    with any reason but kill, must not fail the node's unrelated calls in flight."""
    async with two_nodes() as (a, b):
        gate, box, got, pending = blocked_call(a, b)

        linker = b.mailbox()
        await linker.link(box.pid)
        await settled(lambda: linker.pid in box.links, "the link is made")
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pending)
                await settled(lambda: len(box._calls) == 1, "the call waits")
                linker.close(Atom("boom"))  # a link exit to the box
                other = b.mailbox()
                await other.exit(box.pid, Atom("shutdown"))  # exit/2, not kill
                # one connection carries both, in order: this call's answer comes after them
                assert await a.rpc(b.name, "py", "after", [6, 0], timeout=10) == 60
                gate.set()
        assert got == [Atom("released")]
        assert not box.closed and a.call_box() is box and not box.links


async def test_a_message_naming_a_call_that_is_no_answer_is_dropped() -> None:
    """Only a 'DOWN' or a spawn error answers a call: another message naming its ref (a
    peer may send anything to the box) neither ends the call nor breaks it."""
    async with two_nodes() as (a, b):
        gate, box, got, pending = blocked_call(a, b)

        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pending)
                await settled(lambda: len(box._calls) == 1, "the call waits")
                (req,) = box._calls
                sender = b.mailbox()
                for junk in [(Atom("DOWN"), req, 1), (Atom("other"), req, 2, 3, 4)]:
                    await sender.send(box.pid, junk)
                assert await a.rpc(b.name, "py", "after", [7, 0], timeout=10) == 70
                assert len(box._calls) == 1  # still waiting for its own answer
                gate.set()
        assert got == [Atom("released")]


@pytest.mark.parametrize("anyio_backend", ["asyncio"])  # it schedules the race with asyncio's timers
async def test_an_answer_that_came_with_the_timeout_is_the_result(anyio_backend: str) -> None:
    """erpc:call returns the result, not a timeout, when the answer arrived by the time the
    timeout is handled; the answer and the deadline both fall due while the loop is busy."""
    import asyncio
    import time

    from pynode.runtime.signals import DOWN, PROCESS

    async with two_nodes() as (a, _b):
        box = a.call_box()
        req = a.make_ref()
        answer = (DOWN, req, PROCESS, a.pid, Atom("done"))
        waiter = box.expect(req)
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, box._deliver, answer)  # before the deadline (0.1 s)...
        loop.call_later(0.01, time.sleep, 0.3)  # ...but handled with it: the loop is busy
        assert await box.answer(req, waiter, 0.1) == answer
        assert not box._calls


async def test_a_call_cancelled_while_its_connection_closes_is_just_cancelled() -> None:
    """Giving up a call drops its monitor; over a connection that is closing, that signal is
    moot (the peer sees the connection go), and must not turn the cancellation into an error."""
    async with two_nodes() as (a, b):
        gate = anyio.Event()
        serve(b, gate)
        box = a.call_box()
        outcome: list[object] = []

        async def pending(scope: anyio.CancelScope) -> None:
            with scope:
                await a.rpc(b.name, "py", "blocked", [])
            outcome.append("cancelled" if scope.cancelled_caught else "returned")

        scope = anyio.CancelScope()
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(pending, scope)
                await settled(lambda: len(box.monitors) == 1, "the call's process runs")
                conn = a.connector.get(b.name)
                assert conn is not None
                await conn.channel.aclose()  # the socket goes; the connection is not down yet
                assert conn.alive
                scope.cancel()
        assert outcome == ["cancelled"]
        assert not box._calls and not box.monitors
        gate.set()


@pytest.mark.parametrize("kind", ["sync", "coroutine function", "sync returning an awaitable"])
async def test_a_served_result_with_no_erlang_form_fails_that_call_only(kind: str) -> None:
    """A served function's value that cannot be encoded ends its call with an error the
    caller can read; it must not take down the connection (every other call and link on
    it) nor the serving node (a process's task that raised out of the node's task group)."""
    async with two_nodes() as (a, b):
        async def value() -> object:
            return object()

        fn = {"sync": lambda: object(), "coroutine function": value, "sync returning an awaitable": lambda: value()}
        b.expose("py", "odd")(fn[kind])
        b.expose("py", "add")(lambda x, y: x + y)
        conn = a.connector.get(b.name)
        with pytest.raises(RemoteError) as e:
            await a.rpc(b.name, "py", "odd", [], timeout=10)
        assert e.value.reason[:2] == (Atom("python_error"), b"EncodeError")
        assert await a.rpc(b.name, "py", "add", [1, 2], timeout=10) == 3
        assert a.connector.get(b.name) is conn and conn is not None and conn.alive
        assert not b.processes.monitored and len(b.processes.mailboxes()) == 1


async def test_a_call_over_a_connection_that_is_closing_fails_as_noconnection() -> None:
    """erpc:call's {erpc, noconnection}: the caller gets NoConnection (an RpcError), not the
    runtime's ConnectionLost, when the socket went but the connection is not down yet."""
    async with two_nodes() as (a, b):
        serve(b, anyio.Event())
        conn = a.connector.get(b.name)
        assert conn is not None
        await conn.channel.aclose()
        assert conn.alive and a.connector.get(b.name) is conn
        with pytest.raises(NoConnection):
            await a.rpc(b.name, "py", "after", [1, 0], timeout=10)
        box = a.call_box()
        assert not box._calls and not box.monitors and not a.signals._spawn_waits


async def test_an_answer_already_in_is_taken_without_waiting(anyio_backend: str) -> None:
    """answered() is answer() for a waiter that is done (the answer read on the caller's
    task): the message, or the failure the waiter holds; the call is forgotten either way."""
    async with two_nodes() as (a, b):
        box = a.call_box()
        ref, other = a.make_ref(), a.make_ref()
        down = (Atom("DOWN"), ref, Atom("process"), b.mailbox().pid, Atom("normal"))
        waiter = box.expect(ref)
        box._deliver(down)
        assert waiter.done() and box.answered(ref, waiter) == down and ref not in box._calls
        waiter = box.expect(other)
        box._closed_by_node(Atom("shutdown"))
        with pytest.raises(MailboxClosed):
            box.answered(other, waiter)
        assert not box._calls
