"""The byte channels under connections: flow control, closing, many senders (asyncio, uvloop
where installed, and trio)."""

from __future__ import annotations

import asyncio
import os
import selectors
import socket
import threading
from collections.abc import Iterator
from typing import Any, cast

import anyio
import pytest

from pynode.runtime import Node, transport
from pynode.term import Atom

pytestmark = pytest.mark.anyio

BACKENDS = [("asyncio", {}), ("trio", {})]
try:
    import uvloop  # noqa: F401

    BACKENDS.append(("asyncio", {"use_uvloop": True}))
except ImportError:  # pragma: no cover - uvloop is an optional extra
    pass


@pytest.fixture(params=BACKENDS, ids=lambda b: "uvloop" if b[1] else b[0])
def anyio_backend(request: pytest.FixtureRequest) -> tuple[str, dict[str, object]]:
    return request.param  # type: ignore[no-any-return]


class RawPeer:
    """A plain loopback listener that accepts one connection in a thread: the far end of a
    channel under test, read and written with blocking socket calls."""

    def __init__(self) -> None:
        self.lsock = socket.socket()
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen()
        self.accepted: list[socket.socket] = []
        self.thread = threading.Thread(target=lambda: self.accepted.append(self.lsock.accept()[0]), daemon=True)
        self.thread.start()

    @property
    def port(self) -> int:
        return int(self.lsock.getsockname()[1])

    def socket(self) -> socket.socket:
        self.thread.join(5)
        assert self.accepted, "the listener never accepted"
        self.accepted[0].settimeout(10)
        return self.accepted[0]

    def close(self) -> None:
        self.thread.join(5)
        for s in self.accepted:
            s.close()
        self.lsock.close()


@pytest.fixture
def raw_peer() -> Iterator[RawPeer]:
    peer = RawPeer()
    yield peer
    peer.close()


async def test_many_senders_to_a_congested_peer_all_finish() -> None:
    """Every task waiting for a slow peer to drain is woken, not only the last one."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            a.add_address(b.name, "127.0.0.1", b.port)
            await a.connect(b.name)
            inbox = b.mailbox("inbox")
            finished: list[int] = []
            with anyio.fail_after(30):
                async with anyio.create_task_group() as tg:

                    async def sender(i: int) -> None:
                        for j in range(20):  # 6 MB per sender: well over the 1 MiB high water
                            await a.send(("inbox", b.name), (i, j, b"y" * 300_000))
                        finished.append(i)

                    for i in range(4):
                        tg.start_soon(sender, i)
                    got = [await inbox.receive() for _ in range(80)]
            assert sorted(finished) == [0, 1, 2, 3]
            for i in range(4):  # each sender's messages arrive in its order
                assert [g[1] for g in got if g[0] == i] == list(range(20))


async def test_closing_with_a_peer_that_never_reads_frees_the_socket(raw_peer: RawPeer) -> None:
    """A peer that stopped reading (what a tick timeout finds) cannot hold our socket, its
    buffer and our blocked senders for ever."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    for _ in range(40):  # 8 MB the peer will never take
        ch.write(b"x" * 200_000)
    drained = anyio.Event()

    async def drain() -> None:
        await ch.drain()
        drained.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(drain)
        await anyio.sleep(0)
        with anyio.fail_after(5):
            await ch.aclose()
            await drained.wait()  # the blocked sender is released
    with pytest.raises(transport.ChannelClosed):
        ch.write(b"more")


async def test_an_abandoned_rpc_leaves_no_spawn_wait() -> None:
    from pynode.runtime import RpcTimeout

    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            b.expose("m", "f")(lambda x: x)
            a.add_address(b.name, "127.0.0.1", b.port)
            assert await a.rpc(b.name, "m", "f", [1], timeout=5) == 1
            for _ in range(5):
                with pytest.raises(RpcTimeout):
                    await a.rpc(b.name, "m", "f", [1], timeout=0)
                with anyio.move_on_after(0):
                    await a.rpc(b.name, "m", "f", [1])
            assert a.signals._spawn_waits == {}
            # the connection still works, and late replies found nobody to leak to
            assert await a.rpc(b.name, "m", "f", [Atom("x")], timeout=5) == Atom("x")
            assert a.signals._spawn_waits == {}


async def test_writev_keeps_order_when_the_socket_fills(raw_peer: RawPeer) -> None:
    """Pieces the socket does not take at once are queued after what it took, and small writes
    made meanwhile come after them: the peer reads exactly the bytes in write order."""
    expected = bytearray()
    got = bytearray()
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.serve, lambda data: None, lambda: None)  # the trio channel's writer
        big = memoryview(bytes(range(256)) * 4096)  # 1 MiB of a known pattern
        for i in range(8):  # 8 MiB nobody reads yet: the socket buffer fills on the way
            pieces = [b"H%d" % i, big[: 300_000 + i], b"T", big[500_000:]]
            ch.writev(pieces)
            ch.write(b"small%d" % i)
            for p in pieces:
                expected += p
            expected += b"small%d" % i
        await drain_to(ch, raw_peer.socket(), got, len(expected))
        tg.cancel_scope.cancel()
    await ch.aclose()
    assert len(got) == len(expected)
    assert got == expected


async def drain_to(ch: Any, peer: socket.socket, got: bytearray, n: int) -> None:
    """Read ``peer`` into ``got`` (in a thread) until it holds ``n`` bytes or the stream
    ends, while the channel writes what it queued."""

    def read_all() -> None:
        while len(got) < n:
            chunk = peer.recv(1 << 20)
            if not chunk:
                break
            got.extend(chunk)

    reader = threading.Thread(target=read_all, daemon=True)
    reader.start()
    with anyio.fail_after(20):
        await ch.drain()
        await anyio.to_thread.run_sync(reader.join, 15)


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
@pytest.mark.parametrize("later", ["write", "writev"])
async def test_a_write_the_socket_takes_in_part_keeps_its_rest_first(raw_peer: RawPeer, later: str) -> None:
    """A lone write that the socket takes only in part keeps the rest in the channel's
    backlog, as a view (asyncio's transport would copy it); a later lone write, with room in
    the socket by then, still goes after that rest."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel) and ch._fd >= 0
    big = bytes(range(256)) * 32768  # 8 MiB: more than the socket takes at once
    got = bytearray()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.serve, lambda data: None, lambda: None)
        peer = raw_peer.socket()
        ch.write(big)
        assert ch.transport is not None and ch.transport.get_write_buffer_size() == 0
        assert 0 < ch.buffered() == ch._backlog_size < len(big) and ch.congested()
        assert len(ch._backlog) == 1 and cast(memoryview, ch._backlog[0]).obj is big  # no copy
        while len(got) < 1 << 20:  # room in the socket again, the backlog unsent
            got += peer.recv(1 << 20)
        ch._last_write = 0  # (as a read of the peer's bytes does: the next write is no burst)
        if later == "write":
            ch.write(b"tail")
        else:
            ch.writev([b"ta", b"il"])
        await drain_to(ch, peer, got, len(big) + 4)
        tg.cancel_scope.cancel()
    await ch.aclose()
    assert len(got) == len(big) + 4 and got == big + b"tail"


ASYNCIO_ONLY = pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])


async def backlogged(raw_peer: RawPeer, big: bytes) -> transport._ProtocolChannel:
    """A plain asyncio channel to ``raw_peer`` that has written ``big`` (more than the
    socket takes while nobody reads): its rest waits in the backlog."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel) and ch._fd >= 0
    ch.writev([b"head", memoryview(big)])
    assert ch._backlog_writer == ch._fd and ch._backlog_size > 0
    return ch


@ASYNCIO_ONLY
async def test_a_waiting_writer_goes_on_once_the_backlog_is_down_to_a_quarter(raw_peer: RawPeer) -> None:
    big = bytes(range(256)) * 32768  # 8 MiB
    ch = await backlogged(raw_peer, big)
    assert ch.congested()  # over HIGH_WATER: writers wait
    peer = raw_peer.socket()
    got = bytearray()

    def read_all() -> None:
        while len(got) < len(big) + 4:
            got.extend(peer.recv(1 << 16))

    reader = threading.Thread(target=read_all, daemon=True)
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.serve, lambda data: None, lambda: None)
            reader.start()
            await ch.drain()
            assert ch._backlog_size <= transport.HIGH_WATER // 4 and not ch.congested()
            await anyio.to_thread.run_sync(reader.join, 15)
            assert ch._backlog_writer < 0 and ch._backlog == [] and ch.buffered() == 0
            tg.cancel_scope.cancel()
    await ch.aclose()
    assert got == b"head" + big


@ASYNCIO_ONLY
async def test_closing_hands_the_backlog_to_the_transport_which_sends_it_first(raw_peer: RawPeer) -> None:
    big = bytes(range(256)) * 16384  # 4 MiB
    ch = await backlogged(raw_peer, big)
    peer = raw_peer.socket()
    ch.close()
    assert ch._backlog_writer < 0 and ch._backlog_size == 0
    assert ch.transport is not None and ch.transport.get_write_buffer_size() > 0
    got = bytearray()

    def read_to_the_end() -> None:
        while chunk := peer.recv(1 << 20):
            got.extend(chunk)

    with anyio.fail_after(20):
        await anyio.to_thread.run_sync(read_to_the_end)
    assert got == b"head" + big  # all of it, then the end of the stream


@ASYNCIO_ONLY
async def test_an_aborted_connection_leaves_no_backlog_writer(raw_peer: RawPeer) -> None:
    ch = await backlogged(raw_peer, bytes(8 << 20))
    fd = ch._fd
    selector: Any = asyncio.get_running_loop()._selector  # type: ignore[attr-defined]
    assert selector.get_key(fd).events & selectors.EVENT_WRITE
    assert ch.transport is not None
    ch.transport.abort()
    with anyio.fail_after(10):
        while not ch._lost:
            await anyio.sleep(0.001)
    assert ch._backlog_writer < 0 and ch._backlog == [] and ch.buffered() == 0
    assert fd not in selector.get_map()  # (asyncio closed the socket: no writer on it)


@ASYNCIO_ONLY
async def test_a_backlog_write_that_fails_alone_ends_the_connection(
    raw_peer: RawPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket's write fails (its read would not): reported as asyncio's write would."""
    ch = await backlogged(raw_peer, bytes(8 << 20))
    broken = ch._fd

    class BrokenPipe:  # transport's os, for this socket's writes
        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

        @staticmethod
        def writev(fd: int, pieces: Any) -> int:
            if fd == broken:
                raise BrokenPipeError(32, "Broken pipe")
            return os.writev(fd, pieces)

    monkeypatch.setattr(transport, "os", BrokenPipe())
    peer, taken = raw_peer.socket(), 0
    while taken < 2 << 20:  # room: the backlog's writer runs
        taken += len(peer.recv(1 << 20))
    with anyio.fail_after(10), pytest.raises(BrokenPipeError):
        await ch.serve(lambda data: None, lambda: None)
    assert ch._lost and ch._backlog_writer < 0 and ch._backlog == []


@ASYNCIO_ONLY
async def test_a_peers_half_close_still_gets_the_backlog(raw_peer: RawPeer) -> None:
    """The peer shuts its side down and reads on: asyncio's transport closes itself (we
    return False from eof_received), after the bytes the backlog held."""
    big = bytes(range(256)) * 32768  # 8 MiB
    ch = await backlogged(raw_peer, big)
    peer = raw_peer.socket()
    peer.shutdown(socket.SHUT_WR)
    got = bytearray()

    def read_to_the_end() -> None:
        while chunk := peer.recv(1 << 20):
            got.extend(chunk)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.serve, lambda data: None, lambda: None)
            await anyio.to_thread.run_sync(read_to_the_end)
            tg.cancel_scope.cancel()
    assert got == b"head" + big


@ASYNCIO_ONLY
async def test_a_threads_partial_write_is_sent_by_the_loop_alone(raw_peer: RawPeer) -> None:
    """Only a thread writes, more than the socket takes: the loop writes the rest (its
    writer, set up from the thread's hand-over), and writers wait past HIGH_WATER."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel) and ch._fd >= 0
    ch._share()  # (as the loop does once a thread first writes)
    big = bytes(range(256)) * 32768  # 8 MiB
    pieces: list[transport.Buffer] = [b"head", memoryview(big)]
    assert await anyio.to_thread.run_sync(ch.write_threadsafe, pieces, len(big) + 4)
    assert 0 < ch._backlog_size == sum(map(len, ch._backlog)) == ch.buffered() < len(big)
    got = bytearray()
    peer = raw_peer.socket()
    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ch.serve, lambda data: None, lambda: None)
            await anyio.sleep(0)  # the loop takes up the hand-over
            assert ch._backlog_writer == ch._fd and ch.congested()
            await drain_to(ch, peer, got, len(big) + 4)
            tg.cancel_scope.cancel()
    await ch.aclose()
    assert got == b"head" + big


@ASYNCIO_ONLY
async def test_writers_wait_once_the_backlog_passes_high_water(raw_peer: RawPeer) -> None:
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel) and ch.transport is not None
    sock = ch.transport.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 32768)  # the socket takes little
    raw_peer.socket().setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 32768)
    ch.writev([b"x" * 100_000])
    assert 0 < ch._backlog_size < transport.HIGH_WATER and not ch.congested()
    while ch._backlog_size <= transport.HIGH_WATER:
        assert not ch.congested()
        ch.writev([b"x" * 100_000])
    assert ch._backlog_size < 2 * transport.HIGH_WATER and ch.congested()
    ch.transport.abort()


@ASYNCIO_ONLY
@pytest.mark.parametrize("size", [100, 8 << 20])  # written whole, or kept in part
async def test_a_failed_write_is_reported_as_asyncios_would(raw_peer: RawPeer, size: int) -> None:
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel) and ch._fd >= 0 and ch.transport is not None
    if size > 100:
        ch.write(bytes(size))  # the rest waits in the backlog
        assert ch._backlog_writer == ch._fd
        raw_peer.socket().recv(1 << 20)  # room: the backlog's writer runs, into the error
    ch.transport.get_extra_info("socket").shutdown(socket.SHUT_WR)  # our writes fail (EPIPE)
    ch._last_write = 0
    with anyio.fail_after(10), pytest.raises(BrokenPipeError):
        if size == 100:
            ch.write(b"x" * size)
        await ch.serve(lambda data: None, lambda: None)
    assert ch._lost and ch._backlog == [] and ch._backlog_writer < 0


@ASYNCIO_ONLY
async def test_a_failed_backlog_write_ends_the_connection_with_its_error(raw_peer: RawPeer) -> None:
    big = bytes(8 << 20)
    ch = await backlogged(raw_peer, big)
    peer = raw_peer.socket()
    peer.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
    peer.close()  # a reset: our next write fails
    with anyio.fail_after(10), pytest.raises(OSError):
        await ch.serve(lambda data: None, lambda: None)
    assert ch._lost and ch._backlog_writer < 0 and ch._backlog == [] and ch._fd == -1


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_replies_to_received_bytes_go_out_in_one_write(
    anyio_backend: object, raw_peer: RawPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What handlers write while received bytes are processed leaves in one socket write at
    the end (a spawn reply and the exit after it); a lone write from a task goes out at once
    (straight to the socket, asyncio's transport having nothing queued) and schedules no
    flush (which would cost a round of the loop)."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel)
    assert ch.transport is not None
    calls: list[bytes] = []  # every hand-over, to the socket or to asyncio's transport
    real_write, real_os_write = ch.transport.write, os.write

    def counting(data: bytes) -> None:
        calls.append(bytes(data))
        real_write(data)

    def counting_os(fd: int, data: Any) -> int:
        if fd == ch._fd:
            calls.append(bytes(data))
        return real_os_write(fd, data)

    ch.transport.write = counting  # type: ignore[method-assign]
    monkeypatch.setattr(os, "write", counting_os)
    ch.write(b"first")
    assert calls == [b"first"] and not ch._corked  # straight out, nothing scheduled

    def on_data(data: bytes) -> None:
        for part in (b"<", data, b">"):
            ch.write(part)
        assert calls[-1] == b"first" or calls[-1].endswith(b">")  # nothing out yet

    peer = raw_peer.socket()
    async with anyio.create_task_group() as tg:
        tg.start_soon(ch.serve, on_data, lambda: None)
        peer.sendall(b"ping")
        got = b""
        with anyio.fail_after(10):
            while not got.endswith(b"ping>"):
                got += await anyio.to_thread.run_sync(peer.recv, 100)
        tg.cancel_scope.cancel()
    await ch.aclose()
    assert got == b"first<ping>"
    assert calls == [b"first", b"<ping>"]  # the handler's three writes, joined once


@pytest.mark.parametrize("anyio_backend", [("asyncio", {})], ids=["asyncio"])
async def test_a_write_after_the_peers_bytes_is_never_corked(
    anyio_backend: object, raw_peer: RawPeer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A write within the cork window of the last one corks the writes after it until the
    loop's flush (a burst); one that follows a read of the peer's bytes (the next request
    after an answer) corks nothing, however soon it comes."""
    ch = await transport.connect_tcp("127.0.0.1", raw_peer.port)
    assert isinstance(ch, transport._ProtocolChannel)
    calls: list[bytes] = []
    real_os_write = os.write

    def counting_os(fd: int, data: Any) -> int:
        if fd == ch._fd:
            calls.append(bytes(data))
        return real_os_write(fd, data)

    monkeypatch.setattr(os, "write", counting_os)
    clock = [10**12]
    monkeypatch.setattr(transport, "_now_ns", lambda: clock[0])
    step = transport._CORK_WINDOW_NS // 20
    ch.write(b"first")
    clock[0] += step
    ch._on_data = lambda data: None  # connected: the peer's bytes go to a handler
    ch._received(b"answer")
    ch.write(b"second")  # soon after the last write, but after the peer's bytes
    assert calls == [b"first", b"second"] and not ch._corked
    clock[0] += step
    ch.write(b"third")  # soon after, nothing read in between: a burst begins
    ch.write(b"fourth")
    assert calls == [b"first", b"second", b"third"] and ch._corked
    with anyio.fail_after(10):
        while ch._corked:  # the loop's flush
            await anyio.sleep(0)
    assert calls == [b"first", b"second", b"third", b"fourth"]
    ch._on_data = None
    await ch.aclose()
    peer = raw_peer.socket()
    got = b""
    with anyio.fail_after(10):
        while len(got) < len(b"firstsecondthirdfourth"):
            chunk = await anyio.to_thread.run_sync(peer.recv, 100)
            assert chunk
            got += chunk
    assert got == b"firstsecondthirdfourth"
