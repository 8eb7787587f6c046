"""The partition proxy over loopback, with a stand-in node that echoes (no erl needed):
look-ups, link names, cuts both ways and one way, shaping, bounded pending look-ups, the
control port. Real erl clusters through it: interop/test_proxy_erl.py."""

from __future__ import annotations

import json
import struct
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import pytest
from anyio.abc import SocketStream

from pynode.epmd.proxy import (
    CHUNK,
    MAX_HELD_CHUNKS,
    PartitionProxy,
    ProxyError,
    Shape,
    control_request,
    node_matches,
)
from pynode.protocol.epmd import DumpRequest, parse_dump_response
from pynode.runtime import epmd as epmd_client

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def send_name(name: str) -> bytes:
    raw = name.encode()
    body = b"N" + struct.pack(">QIH", 0, 1, len(raw)) + raw
    return struct.pack(">H", len(body)) + body


class EchoNode:
    """Listens like a node; echoes what it gets after the name packet, counting bytes."""

    def __init__(self) -> None:
        self.received = 0
        self.connections = 0
        self.streams: list[SocketStream] = []

    async def handle(self, stream: SocketStream) -> None:
        self.connections += 1
        self.streams.append(stream)
        async with stream:
            try:
                while True:
                    data = await stream.receive()
                    self.received += len(data)
                    await stream.send(data)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass


@asynccontextmanager
async def proxy_with_node(**kwargs: object) -> AsyncIterator[tuple[PartitionProxy, EchoNode]]:
    node = EchoNode()
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1", local_port=0)
    port = listener.extra(anyio.abc.SocketAttribute.local_port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.serve, node.handle)
        async with PartitionProxy(port=0, control_port=0, **kwargs) as proxy:  # type: ignore[arg-type]
            proxy.register("b", port)
            yield proxy, node
        tg.cancel_scope.cancel()


async def dial(proxy: PartitionProxy, me: str = "a@127.0.0.1") -> SocketStream:
    entry = await epmd_client.port_please("b", "127.0.0.1", proxy.port)
    assert entry is not None
    assert entry.port != proxy.registry.lookup("b").port  # type: ignore[union-attr]
    stream = await anyio.connect_tcp("127.0.0.1", entry.port)
    await stream.send(send_name(me))
    return stream


async def recv_exactly(stream: SocketStream, n: int, timeout: float = 10.0) -> bytes:
    out = b""
    with anyio.fail_after(timeout):
        while len(out) < n:
            out += await stream.receive()
    return out


async def nothing_arrives(stream: SocketStream, within: float = 0.5) -> bool:
    with anyio.move_on_after(within):
        await stream.receive()
        return False
    return True


async def wait_until(cond: object, timeout: float = 10.0) -> None:
    with anyio.fail_after(timeout):
        while not cond():  # type: ignore[operator]
            await anyio.sleep(0.02)


async def test_lookup_leads_through_a_named_link() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            name = send_name("a@127.0.0.1")
            assert await recv_exactly(s, len(name)) == name  # echoed through the proxy
            await s.send(b"x" * 1000)
            assert await recv_exactly(s, 1000) == b"x" * 1000
            st = proxy.status()
            (link,) = st["links"]
            assert link["dialer"] == "a@127.0.0.1" and link["acceptor"] == "b"
            assert link["state"] == "open"
            assert link["bytes_to_acceptor"] == link["bytes_to_dialer"] == len(name) + 1000
            assert st["pending"] == []
            assert [n["name"] for n in st["nodes"]] == ["b"]


async def test_cut_holds_bytes_and_heal_delivers_them() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            await recv_exactly(s, len(send_name("a@127.0.0.1")))
            proxy.cut(["a"], ["b"])
            assert proxy.status()["links"][0]["state"] == "cut"
            before = node.received
            await s.send(b"held")
            assert await nothing_arrives(s)
            assert node.received == before  # held at the proxy, the socket still open
            proxy.heal()
            assert await recv_exactly(s, 4) == b"held"


async def test_one_way_cuts() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            await recv_exactly(s, len(send_name("a@127.0.0.1")))
            before = node.received
            proxy.cut("b", "a@127.0.0.1", one_way=True)  # acceptor -> dialer only
            assert "acceptor to dialer blocked" in proxy.status()["links"][0]["state"]
            await s.send(b"ping")
            await wait_until(lambda: node.received == before + 4)  # it got there...
            assert await nothing_arrives(s)  # ...but the echo is held
            proxy.heal("b", "a")
            assert await recv_exactly(s, 4) == b"ping"
            proxy.cut("a", "b", one_way=True)
            assert "dialer to acceptor blocked" in proxy.status()["links"][0]["state"]
            await s.send(b"pong")
            assert await nothing_arrives(s)
            assert node.received == before + 4
            proxy.heal("a", "b")
            assert await recv_exactly(s, 4) == b"pong"


async def test_connections_made_during_a_cut_are_held() -> None:
    async with proxy_with_node() as (proxy, node):
        proxy.cut("a", "b")
        s = await dial(proxy)
        async with s:
            assert await nothing_arrives(s)
            assert node.received == 0
            proxy.heal("a", "b")
            assert len(await recv_exactly(s, len(send_name("a@127.0.0.1")))) > 0


async def test_latency_and_bandwidth() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            await recv_exactly(s, len(send_name("a@127.0.0.1")))
            t = time.monotonic()
            await s.send(b"1")
            await recv_exactly(s, 1)
            plain = time.monotonic() - t
            proxy.shape("a", "b", latency=0.3)
            t = time.monotonic()
            await s.send(b"2")
            await recv_exactly(s, 1)
            delayed = time.monotonic() - t
            assert delayed >= 0.6  # 0.3 s each way
            assert plain < delayed
            proxy.unshape()
            proxy.shape("a", "b", bandwidth=100_000, one_way=True)
            t = time.monotonic()
            await s.send(b"z" * 150_000)
            await recv_exactly(s, 150_000, timeout=30)
            assert time.monotonic() - t >= 1.3  # 150 kB at 100 kB/s, less the first slice


async def test_a_lookup_without_connect_expires() -> None:
    async with proxy_with_node(pending_timeout=0.3) as (proxy, node):
        entry = await epmd_client.port_please("b", "127.0.0.1", proxy.port)
        assert entry is not None
        assert [p["port"] for p in proxy.status()["pending"]] == [entry.port]
        await wait_until(lambda: not proxy.pending)
        assert proxy.expired == 1
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", entry.port)  # nothing listens any more


async def test_pending_lookups_are_capped() -> None:
    async with proxy_with_node(max_pending=2, pending_timeout=30) as (proxy, node):
        got = [await epmd_client.port_please("b", "127.0.0.1", proxy.port) for _ in range(3)]
        assert got[0] is not None and got[1] is not None
        assert got[2] is None  # refused while two wait
        assert proxy.refused == 1 and len(proxy.pending) == 2


async def test_names_dump_transports_and_unknown_nodes() -> None:
    async with proxy_with_node() as (proxy, node):
        real = proxy.registry.lookup("b")
        assert real is not None
        names = await epmd_client.names("127.0.0.1", proxy.port)
        assert names == [("b", real.port)]
        s = await anyio.connect_tcp("127.0.0.1", proxy.port)
        async with s:
            await s.send(DumpRequest().encode())
            data = b""
            with anyio.fail_after(10):
                try:
                    while True:
                        data += await s.receive()
                except anyio.EndOfStream:
                    pass
        dump = parse_dump_response(data)
        assert dump.epmd_port == proxy.port
        assert dump.lines[0].startswith(f"active name     <b> at port {real.port}")
        assert await epmd_client.port_please("nobody", "127.0.0.1", proxy.port) is None
        assert proxy.pending == {}
        # TRANSPORTS_REQ answers the proxied primary only (extra transports would bypass it)
        proxy.add_transport("b", 5555, 3)
        (entry,) = await epmd_client.transports("b", "127.0.0.1", proxy.port)
        assert entry.port in proxy.pending and entry.port != real.port
        assert await epmd_client.transports("nobody", "127.0.0.1", proxy.port) == []


async def test_jitter_keeps_order() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            await recv_exactly(s, len(send_name("a@127.0.0.1")))
            proxy.shape("a", "b", latency=0.05, jitter=0.05)
            sent = b"".join(bytes([i]) * 3 for i in range(40))
            for i in range(40):
                await s.send(bytes([i]) * 3)
            assert await recv_exactly(s, len(sent)) == sent


async def test_a_cut_holds_a_bounded_amount() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        async with s:
            await recv_exactly(s, len(send_name("a@127.0.0.1")))
            proxy.cut("a", "b")
            sent = 0
            chunk = b"y" * 65536
            with anyio.move_on_after(3):  # the sender stalls once buffers are full
                while sent < 64 * 1024 * 1024:
                    await s.send(chunk)
                    sent += len(chunk)
            (link,) = proxy.status()["links"]
            # held by us: the queue, the chunk the writer holds at the cut and the one the
            # reader waits to queue; the rest waits in TCP buffers and then in the sender
            assert link["held_to_acceptor"] <= (MAX_HELD_CHUNKS + 2) * CHUNK
            assert sent < 64 * 1024 * 1024
            assert link["bytes_to_acceptor"] == len(send_name("a@127.0.0.1"))


async def test_a_peer_closing_ends_its_link() -> None:
    async with proxy_with_node() as (proxy, node):
        s = await dial(proxy)
        await recv_exactly(s, len(send_name("a@127.0.0.1")))
        assert len(proxy.links) == 1
        await node.streams[0].aclose()  # the node dies
        with anyio.fail_after(10):
            with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError)):
                while True:
                    await s.receive()
        await wait_until(lambda: not proxy.links)
        await s.aclose()
        s2 = await dial(proxy)  # the proxy goes on serving
        async with s2:
            assert await recv_exactly(s2, len(send_name("a@127.0.0.1")))


async def test_control_port() -> None:
    async with proxy_with_node() as (proxy, node):
        port = proxy.control_port
        assert port is not None
        st = await anyio.to_thread.run_sync(control_request, {"op": "status"}, port)
        assert st["epmd_port"] == proxy.port
        await anyio.to_thread.run_sync(
            control_request, {"op": "cut", "a": ["x"], "b": ["y", "z"], "one_way": True}, port
        )
        assert sorted(proxy._cuts) == [("x", "y"), ("x", "z")]
        with pytest.raises(ProxyError, match="unknown op"):
            await anyio.to_thread.run_sync(control_request, {"op": "explode"}, port)
        with pytest.raises(ProxyError, match="needs islands"):
            await anyio.to_thread.run_sync(control_request, {"op": "cut", "a": ["x"]}, port)
        with pytest.raises(ProxyError, match="latency"):
            await anyio.to_thread.run_sync(
                control_request, {"op": "shape", "a": "x", "b": "y", "latency": -1}, port
            )
        s = await anyio.connect_tcp("127.0.0.1", port)
        async with s:
            await s.send(b"{not json\n")
            reply = json.loads(await recv_exactly(s, 10))
            assert reply["ok"] is False and "not JSON" in reply["error"]


def test_node_matching_and_shape_checks() -> None:
    assert node_matches("a", "a@host") and node_matches("a@host", "a@host")
    assert not node_matches("a@other", "a@host") and not node_matches("ab", "a@host")
    assert not node_matches("a", None)
    with pytest.raises(ProxyError):
        Shape(latency=float("nan"))
    with pytest.raises(ProxyError):
        Shape(bandwidth=-5)
    assert Shape(latency=1.0, jitter=0.5).delay() <= 1.5
