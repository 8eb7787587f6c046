"""The blocking one-shot client against a pynode Node in the same process, and against a
scripted peer that never speaks (its own ticks, silence detection). No erl, no EPMD."""

from __future__ import annotations

import socket
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from pynode.protocol import NEED_DATA
from pynode.protocol.flags import DFlag, default_flags
from pynode.protocol.framing import DistConnection, Tick
from pynode.protocol.handshake import Acceptor, HandshakeComplete, NameReceived
from pynode.runtime import ErlangError, ErlangThrow, GenServer, Node
from pynode.runtime.errors import AuthError, CallError, NoConnection, RemoteError, RpcTimeout
from pynode.runtime.oneshot import OneShot
from pynode.term import Atom

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Adder(GenServer):
    async def handle_call(self, request: Any, from_: Any) -> Any:
        return request[0] + request[1]


@asynccontextmanager
async def peer_node(**kw: Any) -> AsyncIterator[Node]:
    async with Node("peer@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", **kw) as node:

        @node.expose("py", "add")
        def add(a: int, b: int) -> int:
            return a + b

        @node.expose("py", "fail")
        def fail(how: Atom) -> None:
            if how == Atom("throw"):
                raise ErlangThrow(Atom("ball"))
            raise ErlangError(Atom("oops"))

        @node.expose("py", "slow")
        async def slow(seconds: float) -> Atom:
            await anyio.sleep(seconds)  # the workload: a call that outlasts net_ticktime
            return Atom("done")

        node.start_server(Adder(), "adder")
        yield node


async def in_thread(fn: Callable[[], Any]) -> Any:
    """Run blocking client code while the Node serves in this event loop."""
    return await anyio.to_thread.run_sync(fn)


def connected(node: Node, **kw: Any) -> OneShot:
    c = OneShot(kw.pop("cookie", "c"), node.name, name="cli@127.0.0.1", **kw)
    c.connect(node.name, address=("127.0.0.1", node.port), timeout=10)
    return c


async def test_rpc_call_ping_send() -> None:
    async with peer_node() as node:
        box = node.mailbox("box")

        def work() -> Any:
            with connected(node) as c:
                assert c.ping(node.name)
                assert c.rpc(node.name, "py", "add", [2, 3]) == 5
                with pytest.raises(RemoteError) as info:
                    c.rpc(node.name, "py", "fail", [Atom("throw")])
                assert (info.value.cls, info.value.reason) == (Atom("throw"), Atom("ball"))
                with pytest.raises(RemoteError) as info:
                    c.rpc(node.name, "py", "fail", [Atom("error")])
                assert (info.value.cls, info.value.reason) == (Atom("error"), Atom("oops"))
                with pytest.raises(RemoteError) as info:
                    c.rpc(node.name, "py", "nope", [])
                assert info.value.reason == Atom("undef")
                assert c.call(("adder", node.name), (40, 2)) == 42
                with pytest.raises(CallError) as info2:
                    c.call(("nobody", node.name), (1, 2), timeout=5)
                assert info2.value.reason == Atom("noproc")
                c.send(("box", node.name), (Atom("hi"), c.pid))
                assert c.ping(node.name)  # a round trip: the message is delivered
                return c.pid

        pid = await in_thread(work)
        assert await box.receive(timeout=5) == (Atom("hi"), pid)


async def test_rex_fallback_to_a_node() -> None:
    async with peer_node() as node:

        def work() -> None:
            with connected(node, flags=default_flags(hidden=True) & ~DFlag.SPAWN) as c:
                assert c.rpc(node.name, "py", "add", [1, 1]) == 2

        await in_thread(work)


async def test_timeout_and_bad_cookie() -> None:
    async with peer_node() as node:

        def work() -> None:
            with connected(node) as c, pytest.raises(RpcTimeout):
                c.rpc(node.name, "py", "slow", [5.0], timeout=0.2)
            with pytest.raises(AuthError):
                connected(node, cookie="wrong")

        await in_thread(work)


async def test_answers_ticks_through_a_long_call() -> None:
    """The Node drops a peer silent for net_ticktime (0.6 s); the client (net_ticktime 60 s,
    so its own ticks come every 15 s) stays connected by answering the Node's ticks."""
    async with peer_node(net_ticktime=0.6) as node:

        def work() -> Any:
            with connected(node) as c:
                assert c.tick_interval == 15.0
                return c.rpc(node.name, "py", "slow", [2.0], timeout=30)

        assert await in_thread(work) == Atom("done")


def silent_peer(ticks: list[int], done: threading.Event) -> tuple[socket.socket, threading.Thread]:
    """A peer that completes the handshake, then never sends a byte; counts the ticks it gets."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(10)

    def run() -> None:
        conn, _ = server.accept()
        conn.settimeout(10)
        with conn:
            hs = Acceptor(this_node="silent@127.0.0.1", cookie="c", flags=default_flags(hidden=True), creation=7)
            dist = None
            for _ in range(1000):
                out = hs.data_to_send()
                if out:
                    conn.sendall(out)
                ev = hs.next_event()
                if ev is NEED_DATA:
                    out = hs.data_to_send()
                    if out:
                        conn.sendall(out)
                    hs.receive_data(conn.recv(65536))
                elif isinstance(ev, NameReceived):
                    hs.send_status("ok")
                elif isinstance(ev, HandshakeComplete):
                    conn.sendall(hs.data_to_send())
                    dist = DistConnection(ev.peer_flags)
                    dist.receive_data(hs.trailing_data)
                    break
            assert dist is not None
            while True:  # until the client hangs up (bounded by the 10 s socket timeout)
                data = conn.recv(65536)
                if not data:
                    break
                dist.receive_data(data)
                while (ev := dist.next_event()) is not NEED_DATA:
                    if type(ev) is Tick:
                        ticks[0] += 1
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return server, t


def test_own_ticks_and_silence() -> None:
    """With net_ticktime 0.4 s the client ticks every 0.1 s on its own, and declares a peer
    that sent nothing for 0.4 s gone (NoConnection) instead of waiting for ever."""
    ticks = [0]
    done = threading.Event()
    server, thread = silent_peer(ticks, done)
    with server:
        c = OneShot("c", "silent@127.0.0.1", name="cli@127.0.0.1", net_ticktime=0.4)
        c.connect("silent@127.0.0.1", address=("127.0.0.1", server.getsockname()[1]), timeout=10)
        with pytest.raises(NoConnection, match="sent nothing"):
            c.receive(lambda to, m: False, timeout=30)
        assert not c.connected
        assert done.wait(10)
        thread.join(10)
    assert ticks[0] >= 1
