"""The EPMD server over loopback sockets, on asyncio and trio."""

from __future__ import annotations

import struct
import time
from collections.abc import Awaitable, Callable

import anyio
import pytest
from anyio.abc import SocketAttribute, SocketStream

from pynode.epmd import EpmdServer, EpmdServerError, ExtensionUnsupported
from pynode.epmd.core import MAX_BODY
from pynode.epmd.server import _Conn
from pynode.protocol.epmd import (
    Alive2Request,
    DumpRequest,
    KillRequest,
    NodeEntry,
    PortPlease2Request,
    StopRequest,
    parse_alive2_response,
    parse_dump_response,
    parse_names_response,
)
from pynode.runtime import epmd as ext_client
from pynode.runtime.epmd import EpmdError, names, port_please, register

pytestmark = pytest.mark.anyio


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


async def read_all(stream: SocketStream, timeout: float = 5.0) -> bytes:
    """Everything until the server closes (bounded)."""
    out = b""
    with anyio.fail_after(timeout):
        while True:
            try:
                out += await stream.receive()
            except (anyio.EndOfStream, anyio.BrokenResourceError):
                return out


async def raw(port: int, *chunks: bytes, delay: float = 0.0, host: str = "127.0.0.1") -> bytes:
    """Send ``chunks`` (pausing ``delay`` between them), return all the server sent back."""
    async with await anyio.connect_tcp(host, port) as s:
        for chunk in chunks:
            await s.send(chunk)
            if delay:
                await anyio.sleep(delay)
        return await read_all(s)


async def hold(port: int, request: bytes, reply_len: int = 6) -> tuple[SocketStream, bytes]:
    """Send a registration and read its reply, keeping the connection."""
    s = await anyio.connect_tcp("127.0.0.1", port)
    await s.send(request)
    reply = b""
    with anyio.fail_after(5):
        while len(reply) < reply_len:
            reply += await s.receive()
    return s, reply


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 5.0) -> None:
    with anyio.fail_after(timeout):
        while not await check():
            await anyio.sleep(0.01)


async def test_register_lookup_names() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        reg = await register("alpha", 5001, port=p)
        reg_b = await register("beta", 5002, port=p, hidden=True)
        assert abs(reg.creation - time.time()) < 60  # seeded from the clock
        assert await names("127.0.0.1", p) == [("beta", 5002), ("alpha", 5001)]  # newest first
        assert await port_please("alpha", "127.0.0.1", p) == NodeEntry("alpha", 5001)
        entry = await port_please("beta", "127.0.0.1", p)
        assert entry is not None and entry.node_type == 72
        assert await port_please("gamma", "127.0.0.1", p) is None
        assert server.names() == [("beta", 5002), ("alpha", 5001)]
        assert server.creation("alpha") == reg.creation
        await reg.stream.aclose()
        await reg_b.stream.aclose()


async def test_ipv6_and_several_addresses() -> None:
    async with EpmdServer(["127.0.0.1", "::1"], port=0) as server:
        assert {a for a, _ in server.addresses} == {"127.0.0.1", "::1"}
        reg = await register("six", 5001, host="::1", port=server.port)
        assert await port_please("six", "127.0.0.1", server.port) == NodeEntry("six", 5001)
        assert await names("::1", server.port) == [("six", 5001)]
        await reg.stream.aclose()


async def test_duplicate_name() -> None:
    async with EpmdServer(port=0) as server:
        reg = await register("dup", 5001, port=server.port)
        with pytest.raises(EpmdError, match="refused"):
            await register("dup", 5002, port=server.port)
        reply = await raw(server.port, Alive2Request("dup", 5003).encode())
        assert reply == b"\x76\x01\x00\x00\x00\x63"  # result 1, creation 99, then closed
        assert await port_please("dup", "127.0.0.1", server.port) == NodeEntry("dup", 5001)
        await reg.stream.aclose()


async def test_close_unregisters_and_creation_increments() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        reg = await register("node", 5001, port=p)
        await reg.stream.aclose()
        await eventually(lambda: _absent(p, "node"))
        reg2 = await register("node", 5002, port=p)
        assert reg2.creation == reg.creation + 1
        await reg2.stream.aclose()


async def _absent(port: int, name: str) -> bool:
    return await port_please(name, "127.0.0.1", port) is None


async def test_reregister_right_after_drop() -> None:
    """No stale "name taken": the dropped session is noticed when the name comes back."""
    async with EpmdServer(port=0) as server:
        p = server.port
        for _ in range(20):
            s, reply = await hold(p, Alive2Request("again", 5001).encode())
            first = parse_alive2_response(reply)
            await s.aclose()
            # no waiting: the server may not have processed the close yet
            s2, reply2 = await hold(p, Alive2Request("again", 5002).encode())
            second = parse_alive2_response(reply2)
            assert second.ok and second.creation == first.creation + 1
            await s2.aclose()
            await eventually(lambda: _absent(p, "again"))


async def test_any_byte_on_registration_unregisters() -> None:
    async with EpmdServer(port=0) as server:
        s, _ = await hold(server.port, Alive2Request("chatty", 5001).encode())
        await s.send(b"x")
        assert await read_all(s) == b""  # the server closes it
        assert await _absent(server.port, "chatty")
        await s.aclose()


async def test_partial_packets() -> None:
    async with EpmdServer(port=0) as server:
        data = Alive2Request("slow", 5001).encode()
        s = await anyio.connect_tcp("127.0.0.1", server.port)
        for b in data:
            await s.send(bytes([b]))
            await anyio.sleep(0.005)
        with anyio.fail_after(5):
            reply = await s.receive()
        assert parse_alive2_response(reply).ok
        reply = await raw(
            server.port, *[bytes([b]) for b in PortPlease2Request("slow").encode()], delay=0.005
        )
        assert reply[:4] == b"\x77\x00\x13\x89"
        await s.aclose()


@pytest.mark.parametrize(
    "data",
    [
        b"\x00\x00",  # zero length
        struct.pack(">H", MAX_BODY + 1) + b"n" * 100,  # too large
        b"\x00\x02?x",  # unknown request
        b"\x00\x01nn",  # more bytes than the request
        b"\x00\x01",  # closed inside the request (the client half-closes below)
    ],
    ids=["zero", "too-large", "unknown", "extra-bytes", "partial"],
)
async def test_bad_requests_close_without_reply(data: bytes) -> None:
    async with EpmdServer(port=0) as server:
        async with await anyio.connect_tcp("127.0.0.1", server.port) as s:
            await s.send(data)
            await s.send_eof()
            assert await read_all(s) == b""
        # and the server still works
        assert await names("127.0.0.1", server.port) == []


async def test_largest_request_is_answered() -> None:
    async with EpmdServer(port=0) as server:
        reply = await raw(server.port, struct.pack(">H", MAX_BODY) + b"n" * MAX_BODY)
        assert parse_names_response(reply).epmd_port == server.port


async def test_nul_in_name_refused() -> None:
    async with EpmdServer(port=0) as server:
        name = b"a\x00b"
        req = struct.pack(">HBHBBHHH", 13 + len(name), 120, 5001, 77, 0, 6, 5, len(name))
        assert await raw(server.port, req + name + b"\x00\x00") == b""
        assert await raw(server.port, b"\x00\x04za\x00b") == b""
        assert server.names() == []


async def test_unicode_names() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        name = "ñodé_日本_" + "ü" * 200
        reg = await register(name, 5001, port=p)
        assert await names("127.0.0.1", p) == [(name, 5001)]
        assert await port_please(name, "127.0.0.1", p) == NodeEntry(name, 5001)
        longest = "ü" * 255
        reg2 = await register(longest, 5002, port=p)
        too_long = ("ü" * 256).encode()
        req = struct.pack(">HBHBBHHH", 13 + len(too_long), 120, 5003, 77, 0, 6, 5, len(too_long))
        reply = await raw(p, req + too_long + b"\x00\x00")
        assert parse_alive2_response(reply).result == 1
        await reg.stream.aclose()
        await reg2.stream.aclose()


async def test_old_version_gets_16_bit_creation() -> None:
    async with EpmdServer(port=0) as server:
        s, reply = await hold(server.port, Alive2Request("old", 5001, highest=5).encode(), 4)
        r = parse_alive2_response(reply)
        assert not r.extended and r.ok and r.creation in (1, 2, 3)
        await s.aclose()


async def test_kill_refused_with_nodes_alive() -> None:
    async with EpmdServer(port=0) as server:
        reg = await register("alive", 5001, port=server.port)
        assert await raw(server.port, KillRequest().encode()) == b"NO"
        assert not server.stopped
        await reg.stream.aclose()
        await eventually(lambda: _absent(server.port, "alive"))
        assert await raw(server.port, KillRequest().encode()) == b"OK"
        with anyio.fail_after(5):
            await server.serve_forever()
        assert server.stopped
        with pytest.raises(OSError):
            await anyio.connect_tcp("127.0.0.1", server.port)


async def test_kill_with_relaxed_check_drops_nodes() -> None:
    async with EpmdServer(port=0, relaxed_command_check=True) as server:
        s, _ = await hold(server.port, Alive2Request("victim", 5001).encode())
        assert await raw(server.port, KillRequest().encode()) == b"OK"
        with anyio.fail_after(5):
            await server.serve_forever()
        assert await read_all(s) == b""
        await s.aclose()


async def test_stop_needs_relaxed_check() -> None:
    async with EpmdServer(port=0) as server:
        reg = await register("st", 5001, port=server.port)
        assert await raw(server.port, StopRequest("st").encode()) == b""
        assert server.names() == [("st", 5001)]
        await reg.stream.aclose()


async def test_stop_with_relaxed_check() -> None:
    async with EpmdServer(port=0, relaxed_command_check=True) as server:
        s, _ = await hold(server.port, Alive2Request("st", 5001).encode())
        assert await raw(server.port, StopRequest("st").encode()) == b"STOPPED"
        assert await read_all(s) == b""  # its registration connection is closed
        assert server.names() == []
        assert await raw(server.port, StopRequest("st").encode()) == b"NOEXIST"
        await s.aclose()


async def test_dump() -> None:
    async with EpmdServer(port=0) as server:
        reg = await register("d1", 5001, port=server.port)
        reg2 = await register("d2", 5002, port=server.port)
        await reg2.stream.aclose()
        await eventually(lambda: _absent(server.port, "d2"))
        dump = parse_dump_response(await raw(server.port, DumpRequest().encode()))
        assert dump.epmd_port == server.port
        assert dump.lines[0].startswith("active name     <d1> at port 5001, fd = ")
        assert dump.lines[1].startswith("old/unused name <d2>, port = 5002, fd = ")
        await reg.stream.aclose()


async def test_idle_connections_time_out_but_registrations_stay() -> None:
    async with EpmdServer(port=0, packet_timeout=0.3) as server:
        reg = await register("stay", 5001, port=server.port)
        async with await anyio.connect_tcp("127.0.0.1", server.port) as idle:
            await idle.send(b"\x00")  # half a length, then silence
            t0 = time.monotonic()
            assert await read_all(idle, timeout=5) == b""
            assert 0.2 < time.monotonic() - t0 < 3
        assert await port_please("stay", "127.0.0.1", server.port) is not None
        await reg.stream.aclose()


async def test_connection_limit() -> None:
    async with EpmdServer(port=0, max_connections=3) as server:
        idle = [await anyio.connect_tcp("127.0.0.1", server.port) for _ in range(3)]

        async def all_open() -> bool:
            return server.connections == 3

        await eventually(all_open)
        async with await anyio.connect_tcp("127.0.0.1", server.port) as extra:
            assert await read_all(extra, timeout=5) == b""  # refused: closed at once
        for s in idle:
            await s.aclose()

        async def drained() -> bool:
            return server.connections == 0

        await eventually(drained)
        assert await names("127.0.0.1", server.port) == []


async def test_linger_keeps_answering_port_please() -> None:
    async with EpmdServer(port=0, linger=2.0) as server:
        p = server.port
        reg = await register("brief", 5001, port=p)
        await reg.stream.aclose()

        async def unlisted() -> bool:
            return await names("127.0.0.1", p) == []

        await eventually(unlisted)
        assert await port_please("brief", "127.0.0.1", p) == NodeEntry("brief", 5001)
        await eventually(lambda: _absent(p, "brief"), timeout=10)
        # and lingering never blocks the name
        reg2 = await register("brief", 5002, port=p)
        await reg2.stream.aclose()
        await eventually(unlisted)
        reg3 = await register("brief", 5003, port=p)
        assert reg3.creation == reg.creation + 2
        await reg3.stream.aclose()


async def test_prefix_lookup() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        regs = [await register(n, 5000 + i, port=p) for i, n in enumerate(["web2", "db", "web1"])]
        assert [e.name for e in server.lookup_prefix("web")] == ["web1", "web2"]
        found = await ext_client.lookup_prefix("web", port=p)
        assert found == [NodeEntry("web1", 5002), NodeEntry("web2", 5000)]
        assert [e.name for e in await ext_client.lookup_prefix("", port=p)] == [
            "db",
            "web1",
            "web2",
        ]
        assert await ext_client.lookup_prefix("x", port=p) == []
        for r in regs:
            await r.stream.aclose()


async def test_transports_python_api() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        reg = await register("multi", 5001, port=p)
        server.add_transport("multi", 6001, protocol=1)
        with pytest.raises(EpmdServerError):
            server.add_transport("multi", 6001, protocol=1)
        with pytest.raises(EpmdServerError):
            server.add_transport("nobody", 6001, protocol=1)
        assert await port_please("multi", "127.0.0.1", p) == NodeEntry("multi", 5001)
        assert [(e.protocol, e.port) for e in await ext_client.transports("multi", port=p)] == [
            (0, 5001),
            (1, 6001),
        ]
        assert server.remove_transport("multi", 1, 6001)
        assert not server.remove_transport("multi", 1, 6001)
        assert server.transports("multi") == [NodeEntry("multi", 5001)]
        await reg.stream.aclose()


async def test_transports_extension_request() -> None:
    async with EpmdServer(port=0) as server:
        p = server.port
        reg = await register("multi", 5001, port=p)
        tr = await ext_client.add_transport("multi", 7001, protocol=2, port=p)
        with pytest.raises(EpmdError, match="already has"):
            await ext_client.add_transport("multi", 7001, protocol=2, port=p)
        with pytest.raises(EpmdError, match="not registered"):
            await ext_client.add_transport("ghost", 7001, protocol=2, port=p)
        got = await ext_client.transports("multi", port=p)
        assert [(e.protocol, e.port) for e in got] == [(0, 5001), (2, 7001)]
        assert await ext_client.transports("ghost", port=p) == []
        # closing the transport's connection removes it
        await tr.aclose()

        async def one() -> bool:
            return len(server.transports("multi")) == 1

        await eventually(one)
        # unregistering the node closes the connections of its transports
        tr2 = await ext_client.add_transport("multi", 7002, protocol=2, port=p)
        await reg.stream.aclose()
        assert await read_all(tr2.stream) == b""
        await tr2.aclose()


async def test_extensions_off_look_like_epmd() -> None:
    async with EpmdServer(port=0, extensions=False) as server:
        with pytest.raises(ExtensionUnsupported):
            await ext_client.lookup_prefix("", port=server.port)


async def test_python_api_register_and_unregister() -> None:
    async with EpmdServer(port=0) as server:
        creation = server.register("py", 5001, node_type=72)
        assert server.lookup("py") == NodeEntry("py", 5001, 72)
        with pytest.raises(EpmdServerError):
            server.register("py", 5002)
        with pytest.raises(EpmdServerError):
            server.register("bad\x00name", 5002)
        assert await names("127.0.0.1", server.port) == [("py", 5001)]
        assert server.unregister("py") and not server.unregister("py")
        assert server.register("py", 5001) == creation + 1
        # unregistering a connection-held name closes that connection
        s, _ = await hold(server.port, Alive2Request("held", 5003).encode())
        assert server.unregister("held")
        assert await read_all(s) == b""
        await s.aclose()


async def test_close_and_restart_on_the_same_port() -> None:
    async with EpmdServer(port=0) as server:
        port = server.port
        reg = await register("x", 5001, port=port)
        server.close()
        with anyio.fail_after(5):
            await server.serve_forever()
        assert await read_all(reg.stream) == b""
        await reg.stream.aclose()
    async with EpmdServer(port=port) as again:
        assert again.port == port
        assert await names("127.0.0.1", port) == []


async def test_port_in_use() -> None:
    async with EpmdServer(port=0) as server:
        with pytest.raises(EpmdServerError, match="cannot listen"):
            async with EpmdServer(port=server.port):
                pass


async def test_dropped_session_is_seen_without_reading() -> None:
    """_Conn.is_gone peeks at the socket: the basis of the immediate re-registration."""
    listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
    async with listener:
        port = listener.extra(SocketAttribute.local_port)
        for ending in ("close", "byte"):
            client = await anyio.connect_tcp("127.0.0.1", port)
            with anyio.fail_after(5):
                accepted = await listener.listeners[0].accept()  # type: ignore[attr-defined]
            conn = _Conn(accepted)
            assert conn.local and not conn.is_gone()
            if ending == "close":
                await client.aclose()
            else:
                await client.send(b"x")

            async def gone(conn: _Conn = conn) -> bool:
                return conn.is_gone()

            await eventually(gone)
            await client.aclose()
            await accepted.aclose()


async def test_addresses_must_be_ip_literals() -> None:
    with pytest.raises(EpmdServerError, match="cannot parse IP address"):
        EpmdServer("localhost", port=0)
    with pytest.raises(EpmdServerError, match="cannot parse IP address"):
        EpmdServer("127.0.0.1, nonsense", port=0)


async def test_stopped_server_forgets_registrations() -> None:
    async with EpmdServer(port=0) as server:
        reg = await register("gone", 5001, port=server.port)
        assert server.names() == [("gone", 5001)]
    assert server.stopped and server.names() == []
    await reg.stream.aclose()


async def test_junk_from_many_clients_does_no_harm() -> None:
    import random

    rnd = random.Random(4369)
    async with EpmdServer(port=0, packet_timeout=2.0) as server:
        reg = await register("survivor", 5001, port=server.port)

        async def junk(i: int) -> None:
            tag = rnd.choice([120, 122, 110, 100, 107, 115, 80, 76, 84, 7])
            body = bytes([tag]) + rnd.randbytes(rnd.randrange(0, 40))
            size = len(body) if i % 3 else rnd.randrange(0, 0x10000)
            data = struct.pack(">H", size) + body
            async with await anyio.connect_tcp("127.0.0.1", server.port) as s:
                try:
                    for k in range(0, len(data), 7):
                        await s.send(data[k : k + 7])
                    await s.send_eof()
                    await read_all(s)
                except (anyio.BrokenResourceError, OSError):
                    pass  # the server may close as soon as it has seen enough

        async with anyio.create_task_group() as tg:
            for i in range(150):
                tg.start_soon(junk, i)
        assert await port_please("survivor", "127.0.0.1", server.port) == NodeEntry(
            "survivor", 5001
        )
        assert not server.stopped

        async def one_left() -> bool:
            return server.connections == 1  # the registration

        await eventually(one_left)
        await reg.stream.aclose()
