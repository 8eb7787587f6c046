"""Several transports per node: Unix sockets, several listeners, the per-peer policy, per-peer
tick times, and advertisement through pynode's EPMD; on asyncio and trio, loopback only."""

from __future__ import annotations

import os
import shutil
import socket
import tempfile
from collections.abc import Iterator

import anyio
import pytest

from pynode.epmd import EpmdServer
from pynode.protocol.transports import PROTO_TCP, PROTO_UNIX
from pynode.runtime import ConnectError, Node, NodeError
from pynode.runtime import epmd as epmd_client
from pynode.runtime.listeners import StaleSocketError, channel_family
from pynode.runtime.policy import Rule, TransportPolicy
from pynode.term import Atom

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def sockdir() -> Iterator[str]:
    """A short directory for socket files (sun_path holds 107 bytes)."""
    d = tempfile.mkdtemp(prefix="pyn", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def family(node: Node, peer: str) -> socket.AddressFamily | None:
    conn = node.connection(Atom(peer))
    assert conn is not None, f"{node.name} is not connected to {peer}"
    return channel_family(conn.channel)


async def exchange(a: Node, b: Node) -> None:
    """Messages both ways over the connection between a and b."""
    inbox = b.mailbox("inbox")
    mb = a.mailbox()
    for i in range(50):
        await mb.send(("inbox", b.name), (Atom("n"), i, mb.pid))
    got = [await inbox.receive(timeout=10) for _ in range(50)]
    assert [g[1] for g in got] == list(range(50))
    await inbox.send(got[0][2], Atom("back"))
    assert await mb.receive(timeout=10) == Atom("back")


async def test_two_nodes_over_unix_sockets(sockdir: str) -> None:
    pa, pb = f"{sockdir}/a.sock", f"{sockdir}/b.sock"
    async with Node("a@127.0.0.1", "c", epmd=False, listen=[f"unix:{pa}"]) as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen=[f"unix://{pb}"]) as b:
            assert os.path.exists(pa) and os.path.exists(pb)
            assert a.port == 0 and [str(x.endpoint) for x in a.listening] == [f"unix:{pa}"]
            await a.connect(b.name, address=f"unix:{pb}", timeout=20)
            assert family(a, b.name) == socket.AF_UNIX
            assert family(b, a.name) == socket.AF_UNIX
            await exchange(a, b)
            await exchange(b, a)
            big = bytes(range(256)) * 12_000  # ~3 MB: fragments, written as pieces (writev)
            sink = b.mailbox("big")
            await a.send(("big", b.name), big)
            assert await sink.receive(timeout=30) == big
            a.expose("t", "where")(lambda: Atom("a"))
            assert await b.rpc(a.name, "t", "where", [], timeout=10) == Atom("a")
    assert not os.path.exists(pa) and not os.path.exists(pb)  # removed on stop


async def test_one_node_reached_over_tcp_and_unix(sockdir: str) -> None:
    path = f"{sockdir}/m.sock"
    async with Node("m@127.0.0.1", "c", epmd=False, listen=["tcp://127.0.0.1:0", f"unix:{path}"]) as m:
        assert m.port > 0 and m.port == m.listening[0].port
        async with Node("u@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as u, Node(
            "t@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1"
        ) as t:
            await u.connect(m.name, address=f"unix:{path}", timeout=20)
            await t.connect(m.name, address=("127.0.0.1", m.port), timeout=20)
            assert family(m, u.name) == socket.AF_UNIX
            assert family(m, t.name) == socket.AF_INET
            assert sorted(m.nodes()) == sorted([u.name, t.name])
            await exchange(u, m)
            await exchange(m, t)


async def test_stale_and_taken_socket_paths(sockdir: str) -> None:
    stale = f"{sockdir}/stale.sock"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(stale)
    s.close()  # the file stays, nobody listens: stale, like a crashed node's
    assert os.path.exists(stale)
    async with Node("s@127.0.0.1", "c", epmd=False, listen=[f"unix:{stale}"]) as node:
        assert os.stat(stale).st_ino == os.stat(node.listening[0].endpoint.path).st_ino  # type: ignore[union-attr]
        # a live listener at the path is not stolen
        with pytest.raises(StaleSocketError, match="another process is listening"):
            async with Node("s2@127.0.0.1", "c", epmd=False, listen=[f"unix:{stale}"]):
                pass
        assert os.path.exists(stale)
    plain = f"{sockdir}/plain"
    with open(plain, "w") as f:
        f.write("not a socket")
    with pytest.raises(StaleSocketError, match="not a socket"):
        async with Node("s3@127.0.0.1", "c", epmd=False, listen=[f"unix:{plain}"]):
            pass
    assert open(plain).read() == "not a socket"
    with pytest.raises(NodeError, match="cannot listen"):
        async with Node("s4@127.0.0.1", "c", epmd=False, listen=[f"unix:{sockdir}/no/such/dir.sock"]):
            pass


async def test_bad_listen_specs() -> None:
    with pytest.raises(ValueError):
        Node("x@127.0.0.1", "c", epmd=False, listen=[])
    with pytest.raises(ValueError):
        Node("x@127.0.0.1", "c", epmd=False, listen=["tcp://127.0.0.1:notaport"])
    with pytest.raises(ValueError):
        Node("x@127.0.0.1", "c", epmd=False, listen=["unix:/" + "x" * 200])
    with pytest.raises(ValueError, match="not both"):
        Node("x@127.0.0.1", "c", epmd=False, listen=["tcp://127.0.0.1:0"], port=4000)


async def test_unreachable_unix_endpoint_is_a_clear_error(sockdir: str) -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        with pytest.raises(ConnectError, match="no-one.sock"):
            await a.connect("b@127.0.0.1", address=f"unix:{sockdir}/no-one.sock", timeout=20)


async def test_peer_ticktimes_apply_when_the_connection_comes_up() -> None:
    """Set before connecting, for dialled and accepted connections; set_net_ticktime wins."""
    times = {"b@127.0.0.1": 7.0, "c*@127.0.0.1": 9.0}
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", peer_ticktimes=times) as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b, Node(
            "c1@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1"
        ) as c1, Node("d@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as d:
            a.set_net_ticktime("d@127.0.0.1", 3)
            await a.connect(b.name, address=("127.0.0.1", b.port), timeout=20)  # dialled
            await c1.connect(a.name, address=("127.0.0.1", a.port), timeout=20)  # accepted
            await d.connect(a.name, address=("127.0.0.1", a.port), timeout=20)
            with anyio.fail_after(10):
                while a.connection(c1.name) is None or a.connection(d.name) is None:
                    await anyio.sleep(0.01)
            assert a.connection(b.name).net_ticktime == 7.0  # type: ignore[union-attr]
            assert a.connection(c1.name).net_ticktime == 9.0  # type: ignore[union-attr]
            assert a.connection(d.name).net_ticktime == 3  # type: ignore[union-attr]
            assert b.connection(a.name).net_ticktime == 60.0  # type: ignore[union-attr]


async def test_peer_ticktimes_callable_and_a_broken_one() -> None:
    def pick(name: str) -> float | None:
        if name.startswith("bad"):
            raise RuntimeError("oops")
        return 11.0 if name.startswith("b") else None

    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", peer_ticktimes=pick) as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b, Node(
            "bad@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1"
        ) as bad:
            await a.connect(b.name, address=("127.0.0.1", b.port), timeout=20)
            await a.connect(bad.name, address=("127.0.0.1", bad.port), timeout=20)
            assert a.connection(b.name).net_ticktime == 11.0  # type: ignore[union-attr]
            assert a.connection(bad.name).net_ticktime == 60.0  # type: ignore[union-attr]
            await exchange(a, bad)  # the broken callable did not break the connection


# -- with pynode's EPMD ------------------------------------------------------------------------


async def test_advertised_through_our_epmd_and_chosen_by_policy(sockdir: str) -> None:
    path = f"{sockdir}/m.sock"
    async with EpmdServer(port=0) as server:
        ep = server.port
        async with Node(
            "m@127.0.0.1", "c", epmd_port=ep, listen=["tcp://127.0.0.1:0", f"unix:{path}"]
        ) as m:
            assert m.advertised == 2
            entries = await epmd_client.transports("m", "127.0.0.1", ep)
            assert [(e.protocol, e.port, e.extra) for e in entries] == [
                (PROTO_TCP, m.port, b""),
                (PROTO_UNIX, 1, path.encode()),
            ]
            # PORT_PLEASE2 (what erl asks) still answers the TCP listener
            assert (await epmd_client.port_please("m", "127.0.0.1", ep)).port == m.port  # type: ignore[union-attr]

            # default policy "auto": same host, so the Unix socket
            async with Node("auto@127.0.0.1", "c", epmd_port=ep) as auto:
                assert await auto.ping(m.name)
                assert family(auto, m.name) == socket.AF_UNIX
                await exchange(auto, m)
            # a TCP default, with a rule that sends u* peers... the other way round
            tcp_policy = TransportPolicy([Rule("m@*", transport="tcp")], default="unix")
            async with Node("tcp@127.0.0.1", "c", epmd_port=ep, policy=tcp_policy) as t:
                assert await t.ping(m.name)
                assert family(t, m.name) == socket.AF_INET
            # a unix-only policy towards a TCP-only peer fails with a clear error
            async with Node("plain@127.0.0.1", "c", epmd_port=ep) as plain:
                strict = TransportPolicy(default="unix")
                async with Node("strict@127.0.0.1", "c", epmd_port=ep, policy=strict) as s:
                    with pytest.raises(ConnectError, match="no transport that the policy"):
                        await s.connect(plain.name, timeout=20)
                    assert await s.ping(m.name)
                    assert family(s, m.name) == socket.AF_UNIX
        # stopping withdraws every transport and removes the socket file
        with anyio.fail_after(10):
            while await epmd_client.transports("m", "127.0.0.1", ep):
                await anyio.sleep(0.02)
        assert not os.path.exists(path)


async def test_stale_unix_entry_falls_back_to_tcp(sockdir: str) -> None:
    """The advertised socket is gone (removed by hand): the dialler takes the TCP entry."""
    path = f"{sockdir}/gone.sock"
    async with EpmdServer(port=0) as server:
        ep = server.port
        async with Node("g@127.0.0.1", "c", epmd_port=ep, listen=["tcp://127.0.0.1:0", f"unix:{path}"]) as g:
            os.unlink(path)
            async with Node("d@127.0.0.1", "c", epmd_port=ep) as d:
                assert await d.ping(g.name)
                assert family(d, g.name) == socket.AF_INET


async def test_unix_only_node_and_two_tcp_listeners(sockdir: str) -> None:
    path = f"{sockdir}/only.sock"
    async with EpmdServer(["127.0.0.1", "::1"], port=0) as server:
        ep = server.port
        async with Node("only@127.0.0.1", "c", epmd_port=ep, listen=[f"unix:{path}"]) as only:
            entries = await epmd_client.transports("only", "127.0.0.1", ep)
            assert [(e.protocol, e.extra) for e in entries] == [(PROTO_UNIX, path.encode())]
            async with Node(
                "two@127.0.0.1", "c", epmd_port=ep, listen=["tcp://127.0.0.1:0", "tcp://[::1]:0"]
            ) as two:
                entries = await epmd_client.transports("two", "127.0.0.1", ep)
                assert [(e.protocol, e.port, e.extra) for e in entries] == [
                    (PROTO_TCP, two.listening[0].port, b""),
                    (PROTO_TCP, two.listening[1].port, b"::1"),
                ]
                assert await two.ping(only.name)
                assert family(two, only.name) == socket.AF_UNIX


class _ServerTask:
    """An EPMD server run as a task, so it can stop and start while a node lives on."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.up = anyio.Event()
        self.stop = anyio.Event()
        self.down = anyio.Event()

    async def run(self) -> None:
        try:
            async with EpmdServer(port=self.port) as server:
                self.port = server.port
                self.up.set()
                await self.stop.wait()
        finally:
            self.down.set()


async def test_transports_are_advertised_again_after_epmd_restarts(sockdir: str) -> None:
    path = f"{sockdir}/r.sock"
    async with anyio.create_task_group() as tg:
        first = _ServerTask(0)
        tg.start_soon(first.run)
        with anyio.fail_after(10):
            await first.up.wait()
        ep = first.port
        listen = ["tcp://127.0.0.1:0", f"unix:{path}"]
        async with Node("r@127.0.0.1", "c", epmd_port=ep, listen=listen) as r:
            assert len(await epmd_client.transports("r", "127.0.0.1", ep)) == 2
            first.stop.set()
            with anyio.fail_after(10):
                await first.down.wait()
            second = _ServerTask(ep)  # a new EPMD on the same port knows nothing
            tg.start_soon(second.run)
            with anyio.fail_after(10):
                await second.up.wait()
            with anyio.fail_after(30):  # the node retries every 2 s, as OTP's erl_epmd
                while len(await epmd_client.transports("r", "127.0.0.1", ep)) < 2:
                    await anyio.sleep(0.1)
            assert r.advertised == 2
            entries = await epmd_client.transports("r", "127.0.0.1", ep)
            assert [(e.protocol, e.extra) for e in entries] == [(PROTO_TCP, b""), (PROTO_UNIX, path.encode())]
        second.stop.set()


async def test_advertised_unix_socket_of_an_untrusted_owner_is_not_dialled(sockdir: str) -> None:
    """Any local process may register with EPMD: a socket owned by a user the policy does
    not trust is skipped (TCP is used), unless the endpoint was given by hand."""
    path = f"{sockdir}/o.sock"
    async with EpmdServer(port=0) as server:
        ep = server.port
        async with Node("o@127.0.0.1", "c", epmd_port=ep, listen=["tcp://127.0.0.1:0", f"unix:{path}"]) as o:
            others = TransportPolicy(unix_owners=[os.geteuid() + 1])
            async with Node("d1@127.0.0.1", "c", epmd_port=ep, policy=others) as d:
                assert await d.ping(o.name)
                assert family(d, o.name) == socket.AF_INET
            strict = TransportPolicy(default="unix", unix_owners=[os.geteuid() + 1])
            async with Node("d2@127.0.0.1", "c", epmd_port=ep, policy=strict) as d:
                with pytest.raises(ConnectError, match="not trusted"):
                    await d.connect(o.name, timeout=20)
                await d.connect(o.name, address=f"unix:{path}", timeout=20)  # given: trusted
                assert family(d, o.name) == socket.AF_UNIX
            mine = TransportPolicy(unix_owners=[os.geteuid()])
            async with Node("d3@127.0.0.1", "c", epmd_port=ep, policy=mine) as d:
                assert await d.ping(o.name)
                assert family(d, o.name) == socket.AF_UNIX
