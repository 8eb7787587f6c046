"""Runtime tests between pynodes on loopback (no EPMD, no erl), on asyncio and trio."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest

from pynode.protocol.flags import default_flags
from pynode.protocol.handshake import HandshakeComplete, Initiator
from pynode.runtime import ConnectError, MailboxClosed, Node
from pynode.term import Atom, Pid, encode

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@asynccontextmanager
async def two_nodes(**kw: object) -> AsyncIterator[tuple[Node, Node]]:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", **kw) as a:  # type: ignore[arg-type]
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", **kw) as b:  # type: ignore[arg-type]
            a.add_address(b.name, "127.0.0.1", b.port)
            b.add_address(a.name, "127.0.0.1", a.port)
            yield a, b


async def test_ping_and_messages() -> None:
    async with two_nodes() as (a, b):
        assert await a.ping(b.name)
        assert b.name in a.nodes() and a.name in b.nodes()
        inbox = b.mailbox("inbox")
        mb = a.mailbox()
        for i in range(100):
            await mb.send(("inbox", b.name), (Atom("n"), i, mb.pid))
        got = [await inbox.receive(timeout=5) for _ in range(100)]
        assert [g[1] for g in got] == list(range(100))
        await inbox.send(got[0][2], Atom("back"))
        assert await mb.receive(timeout=5) == Atom("back")


async def test_repeated_sends_to_one_destination_follow_a_new_connection() -> None:
    # a mailbox keeps the route of its last remote send (Mailbox.send): once that connection
    # is down, the same destination object goes over a new one, not into the dead one
    async with two_nodes() as (a, b), a.node_events() as events:
        inbox = b.mailbox("inbox")
        mb = a.mailbox()
        by_name, by_pid = ("inbox", b.name), inbox.pid
        gone: list[object] = []
        for round_ in range(3):
            for dest in (by_name, by_pid, by_name):
                await mb.send(dest, round_)
            with anyio.fail_after(10):
                assert [await inbox.receive() for _ in range(3)] == [round_] * 3
                assert await events.receive() == ("nodeup", b.name)
            old = a.connector.get(b.name)
            assert old is not None and old not in gone
            gone.append(old)
            old.close("cut by the test")
            with anyio.fail_after(10):
                assert (await events.receive())[:2] == ("nodedown", b.name)
            assert not old.alive
        with anyio.fail_after(10):
            await mb.send(by_pid, Atom("last"))
            assert await inbox.receive() == Atom("last")
        new = a.connector.get(b.name)
        assert new is not None and new not in gone and new.alive


async def test_a_reply_to_an_equal_pid_keeps_the_route() -> None:
    # a server answers pids decoded anew for each request: an equal destination takes the
    # route kept from the last send (no lookup), a different one a route of its own
    async with two_nodes() as (a, b):
        one, two = b.mailbox(), b.mailbox()
        mb = a.mailbox()
        await mb.send(one.pid, 0)  # connects
        lookups: list[object] = []
        real = a.remote_route

        def counted(dest: object, sender: Pid) -> object:
            lookups.append(dest)
            return real(dest, sender)

        a.remote_route = counted  # type: ignore[method-assign]
        p = one.pid
        for dest in (p, Pid(p.node, p.id, p.serial, p.creation), two.pid, Pid(p.node, p.id, p.serial, p.creation)):
            await mb.send(dest, dest)
        with anyio.fail_after(10):
            assert [await one.receive() for _ in range(4)] == [0, p, p, p]
            assert await two.receive() == two.pid
        assert lookups == [p, two.pid, p]
        # equal tuples may route apart: (True, node) names 'True', (1, node) names '1'
        named_true, named_1 = b.mailbox("True"), b.mailbox("1")
        await mb.send((True, b.name), Atom("t"))
        await mb.send((1, b.name), Atom("one"))
        with anyio.fail_after(10):
            assert await named_true.receive() == Atom("t")
            assert await named_1.receive() == Atom("one")


async def test_selective_receive_keeps_order() -> None:
    async with two_nodes() as (a, b):
        mb = a.mailbox("m")
        for x in [1, Atom("x"), 2, Atom("y"), 3]:
            await a.send("m", x)
        assert await mb.receive(match=lambda m: isinstance(m, str), timeout=1) == Atom("x")
        assert await mb.receive(timeout=1) == 1
        assert await mb.receive(match=lambda m: m == 3, timeout=1) == 3
        assert [mb.receive_nowait(), mb.receive_nowait()] == [2, Atom("y")]
        with pytest.raises(TimeoutError):
            await mb.receive(timeout=0.05)
        mb.close()
        with pytest.raises(MailboxClosed):
            await mb.receive(timeout=1)


async def test_receive_waits_for_a_later_match() -> None:
    async with two_nodes() as (a, b):
        mb = a.mailbox("m")
        async with anyio.create_task_group() as tg:

            async def later() -> None:
                await a.send("m", 1)
                await anyio.sleep(0)
                await a.send("m", 2)

            tg.start_soon(later)
            assert await mb.receive(match=lambda m: m == 2, timeout=5) == 2
        assert mb.receive_nowait() == 1


async def test_selective_receivers_do_not_miss_a_message_after_another_took_one() -> None:
    """Task 1 waits for 'a' having scanned past 'b'; task 2 takes 'b' (the queue shifts);
    'a' then arrives where 'b' was: task 1 must still see it."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        mb = a.mailbox("m")
        mb._deliver(Atom("b"))
        got: list[object] = []
        waiting = anyio.Event()

        def wants_a(m: object) -> bool:
            if m == Atom("b"):
                waiting.set()  # scanned past 'b': it waits next, in this same step
            return m == Atom("a")

        async def first() -> None:
            got.append(await mb.receive(match=wants_a, timeout=5))

        async with anyio.create_task_group() as tg:
            tg.start_soon(first)
            await waiting.wait()
            assert await mb.receive(match=lambda m: m == Atom("b"), timeout=5) == Atom("b")
            mb._deliver(Atom("a"))
        assert got == [Atom("a")]


async def test_wrong_cookie() -> None:
    async with Node("a@127.0.0.1", "one", epmd=False, listen_host="127.0.0.1") as a:
        async with Node("b@127.0.0.1", "two", epmd=False, listen_host="127.0.0.1") as b:
            with pytest.raises(ConnectError):
                await a.connect(b.name, address=("127.0.0.1", b.port))
            assert a.nodes() == [] and b.nodes() == []


async def test_simultaneous_connect_gives_one_connection() -> None:
    async with two_nodes() as (a, b):
        async with anyio.create_task_group() as tg:
            tg.start_soon(a.connect, b.name)
            tg.start_soon(b.connect, a.name)
        assert a.nodes() == [b.name] and b.nodes() == [a.name]
        assert await a.ping(b.name) and await b.ping(a.name)


async def test_nodedown_event_when_peer_stops() -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with a.node_events() as events:
            async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
                await a.connect(b.name, address=("127.0.0.1", b.port))
                assert await events.receive() == ("nodeup", b.name)
            with anyio.fail_after(5):
                ev = await events.receive()
            assert ev[:2] == ("nodedown", b.name)


async def test_tick_timeout_on_silent_peer() -> None:
    """A peer that completes the handshake and then says nothing is declared down."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", net_ticktime=1) as a:
        async with a.node_events() as events:
            stream, _ = await _handshake_raw(a)
            async with stream:
                assert (await events.receive())[0] == "nodeup"
                with anyio.fail_after(4):
                    ev = await events.receive()
                assert ev[0] == "nodedown" and "net_ticktime" in str(ev[2])


@pytest.mark.parametrize("when", ["before", "live"])
async def test_net_ticktime_per_connection(when: str) -> None:
    """One silent peer gets a short net_ticktime; the node's own stays 60 s."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", net_ticktime=60) as a:
        with pytest.raises(ValueError):
            a.set_net_ticktime("raw@127.0.0.1", 0)
        if when == "before":
            a.set_net_ticktime("raw@127.0.0.1", 0.8)
        async with a.node_events() as events:
            stream, _ = await _handshake_raw(a)
            async with stream:
                assert (await events.receive())[0] == "nodeup"
                conn = a.connection(Atom("raw@127.0.0.1"))
                assert conn is not None
                if when == "live":
                    assert conn.net_ticktime == 60
                    a.set_net_ticktime("raw@127.0.0.1", 0.8)
                assert conn.net_ticktime == 0.8
                with anyio.fail_after(5):  # within 60 s it would still be up
                    ev = await events.receive()
                assert ev[0] == "nodedown" and "net_ticktime 0.8" in str(ev[2])


async def test_a_tick_is_answered_when_we_sent_nothing() -> None:
    """As ei and JInterface do: a peer whose net_ticktime is shorter than ours stays up."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", net_ticktime=60) as a:
        stream, _ = await _handshake_raw(a)
        async with stream:
            for _ in range(3):
                await stream.send(b"\x00\x00\x00\x00")
                with anyio.fail_after(5):
                    assert await stream.receive(4) == b"\x00\x00\x00\x00"


async def test_peer_with_a_shorter_net_ticktime_keeps_the_connection() -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", net_ticktime=60) as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", net_ticktime=0.8) as b:
            async with b.node_events() as events:
                conn = await b.connect(a.name, address=("127.0.0.1", a.port))
                assert await events.receive() == ("nodeup", a.name)
                with anyio.move_on_after(3):  # b's limit is 0.8 s: a silent a would be down
                    ev = await events.receive()
                    pytest.fail(f"the connection went down: {ev!r}")
                assert b.connection(a.name) is conn
                inbox = b.mailbox()
                await a.send(inbox.pid, Atom("still_here"))
                assert await inbox.receive(timeout=5) == Atom("still_here")


# -- bad input: one connection closes, the node and its other connections go on ---------------


async def _handshake_raw(node: Node, name: str = "raw@127.0.0.1") -> tuple[anyio.abc.SocketStream, HandshakeComplete]:
    stream = await anyio.connect_tcp("127.0.0.1", node.port)
    hs = Initiator(
        this_node=name, peer_node=node.name, cookie="c",
        flags=default_flags(hidden=True, fragments=True), creation=7,
    )
    await stream.send(hs.data_to_send())
    while True:
        ev = hs.next_event()
        out = hs.data_to_send()
        if out:
            await stream.send(out)
        if isinstance(ev, HandshakeComplete):
            return stream, ev
        if ev.__class__.__name__ == "NeedData":
            with anyio.fail_after(5):
                hs.receive_data(await stream.receive())


async def _closed_by_peer(stream: anyio.abc.SocketStream) -> bool:
    with anyio.fail_after(5):
        try:
            while await stream.receive():
                pass
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return True
    return True


BAD_PACKETS = [
    pytest.param(struct.pack(">I", 5) + b"\xff\xff\xff\xff\xff", id="garbage"),
    pytest.param(struct.pack(">I", 0x7FFFFFFF) + b"x", id="length-over-max"),
    pytest.param(
        struct.pack(">I", 1 + len(encode((99, Atom(""), Atom("x"))))) + b"p" + encode((99, Atom(""), Atom("x"))),
        id="unknown-control-op",
    ),
    pytest.param(struct.pack(">I", 3) + b"p\x83\x61", id="truncated-term"),
    pytest.param(  # a continuation fragment of a sequence that never started
        struct.pack(">I", 19) + b"\x83\x46" + struct.pack(">QQ", 77, 1) + b"x", id="broken-fragments"
    ),
]


@pytest.mark.parametrize("packet", BAD_PACKETS)
async def test_bad_packet_closes_only_that_connection(packet: bytes) -> None:
    async with two_nodes(max_packet=1 << 20) as (a, b):
        assert await b.ping(a.name)
        async with a.node_events() as events:
            stream, _ = await _handshake_raw(a)
            async with stream:
                assert await events.receive() == ("nodeup", Atom("raw@127.0.0.1"))
                await stream.send(packet)
                assert await _closed_by_peer(stream)
            with anyio.fail_after(5):
                down = await events.receive()
        assert down[:2] == ("nodedown", Atom("raw@127.0.0.1"))
        assert await b.ping(a.name)  # the other connection is unharmed
        assert Atom("raw@127.0.0.1") not in a.nodes()


async def test_garbage_handshake_is_refused() -> None:
    async with two_nodes() as (a, b):
        stream = await anyio.connect_tcp("127.0.0.1", a.port)
        async with stream:
            await stream.send(b"\x00\x05hello")
            assert await _closed_by_peer(stream)
        assert await b.ping(a.name)


async def test_stalled_handshake_times_out() -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", setup_time=0.5) as a:
        stream = await anyio.connect_tcp("127.0.0.1", a.port)
        async with stream:
            await stream.send(b"\x00\x10N")  # a send_name that never completes
            assert await _closed_by_peer(stream)


async def test_registered_name_conflicts() -> None:
    async with two_nodes() as (a, _):
        a.mailbox("x")
        with pytest.raises(Exception, match="already registered"):
            a.mailbox("x")
        with pytest.raises(Exception, match="already registered"):
            a.mailbox("net_kernel")


async def test_rpc_between_pynodes_sync_async_and_errors() -> None:
    from pynode.runtime import ErlangThrow, RemoteError

    async with two_nodes() as (a, b):

        @b.expose("py", "add")
        def add(x: int, y: int) -> int:  # runs at once, without a task
            return x + y

        @b.expose("py", "later")
        async def later(x: int) -> tuple[Atom, int]:
            await anyio.sleep(0)
            return (Atom("later"), x)

        @b.expose("py", "deferred")
        def deferred(x: int) -> object:  # a sync function that hands back an awaitable
            return later(x)

        @b.expose("py", "throws")
        def throws() -> None:
            raise ErlangThrow(Atom("ball"))

        for i in range(20):  # each call is its own process and monitor on both sides
            assert await a.rpc(b.name, "py", "add", [i, 1], timeout=5) == i + 1
        assert await a.rpc(b.name, "py", "later", [7], timeout=5) == (Atom("later"), 7)
        assert await a.rpc(b.name, "py", "deferred", [8], timeout=5) == (Atom("later"), 8)
        with pytest.raises(RemoteError) as e:
            await a.rpc(b.name, "py", "throws", [], timeout=5)
        assert e.value.cls == Atom("throw") and e.value.reason == Atom("ball")
        with pytest.raises(RemoteError) as e:
            await a.rpc(b.name, "py", "add", [1], timeout=5)  # wrong arity: undef, as erl says
        assert e.value.cls == Atom("error") and e.value.reason == Atom("undef")
        with pytest.raises(RemoteError) as e:
            await a.rpc(b.name, "nomod", "nofun", [], timeout=5)
        assert e.value.reason == Atom("undef")
        # nothing is left behind: every call's process and monitor are gone on both nodes (a
        # makes its calls from one process, its call box, as an erl process may)
        box = a.call_box()
        assert len(a.processes.mailboxes()) == 2 and box in a.processes.mailboxes()
        assert not box.monitors and not box._calls and not len(box)
        assert len(b.processes.mailboxes()) == 1
        assert not a.processes.monitored and not b.processes.monitored


async def test_timed_out_receives_leave_no_waiters() -> None:
    async with two_nodes() as (a, b):
        mb = a.mailbox()
        for _ in range(20):
            with pytest.raises(TimeoutError):
                await mb.receive(timeout=0.001)
        assert mb._waiters == []
        async with anyio.create_task_group() as tg:  # two tasks wait on one mailbox
            got: list[object] = []

            async def take(want: int) -> None:
                got.append(await mb.receive(match=lambda m: m == want, timeout=5))

            tg.start_soon(take, 1)
            tg.start_soon(take, 2)
            await anyio.sleep(0)
            await b.send(mb.pid, 2)
            await b.send(mb.pid, 1)
        assert sorted(got) == [1, 2]  # type: ignore[type-var]
        assert mb._waiters == []
