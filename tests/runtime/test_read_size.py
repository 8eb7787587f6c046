"""How much a connection asks each read for: a few messages' worth of small ones (so the
kernel does not ACK every read and a streaming sender fills its segments), what a begun
packet lacks for a big one."""

from __future__ import annotations

from typing import Any

import pytest

from pynode.protocol import control as c
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection
from pynode.runtime.connection import READ_MAX, READ_MESSAGES, READ_MIN, Connection
from pynode.runtime.transport import Channel
from pynode.term import Atom, Pid

pytestmark = pytest.mark.anyio

FLAGS = default_flags(atom_cache=True, fragments=True)
TO = Pid("here@127.0.0.1", 40, 0, 1)


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Recording(Channel):
    """A channel that only records the read sizes asked for."""

    def __init__(self) -> None:
        self.wrote = False
        self.writes = 0
        self.sizes: list[int] = []

    def read_size(self, size: int) -> None:
        self.sizes.append(size)

    def write(self, data: bytes) -> None:  # a tick's answer
        self.wrote = True
        self.writes += 1


def make() -> tuple[Connection, Recording, list[Any]]:
    ch = Recording()
    got: list[Any] = []
    conn = Connection(
        Atom("peer@127.0.0.1"), ch, FLAGS, 1, initial_data=b"", max_packet=1 << 26,
        max_message=1 << 26, net_ticktime=60, tick_intensity=4,
        dispatch=lambda conn, msg: got.append(msg.payload), on_down=lambda conn, why: None,
    )
    return conn, ch, got


def asked(ch: Recording) -> int:
    return ch.sizes[-1] if ch.sizes else 262144  # asyncio's own until told otherwise


def feed_behind(conn: Connection, ch: Recording, stream: bytes) -> int:
    """Feed ``stream`` as a socket that always has more queued: each read full. Reads."""
    reads = 0
    while stream:
        k = asked(ch)
        conn._on_data(stream[:k])
        stream = stream[k:]
        reads += 1
    return reads


async def test_small_messages_are_read_a_few_at_a_time() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS)
    packets = b"".join(tx.send(c.Send(TO), ("event", i, bytes(32))) for i in range(100))
    conn._on_data(packets)  # all there was: a short read
    assert len(got) == 100
    per = len(packets) // 100
    assert ch.sizes == [max(READ_MIN, per * READ_MESSAGES)]
    assert READ_MIN <= ch.sizes[-1] < 4096  # far below what would empty a busy socket


async def test_reads_stay_small_behind_a_streaming_sender() -> None:
    """Full reads (more queued) do not grow: a read that empties the socket is what makes
    the kernel ACK each small segment, and a streaming erl then sends smaller ones."""
    conn, ch, got = make()
    tx = DistConnection(FLAGS)
    conn._on_data(b"".join(tx.send(c.Send(TO), i) for i in range(20)))
    assert ch.sizes[-1] == READ_MIN
    stream = b"".join(tx.send(c.Send(TO), i) for i in range(5000))
    feed_behind(conn, ch, stream)
    assert len(got) == 5020
    assert max(ch.sizes) < READ_MIN + 64  # a few messages, and the rest of one cut in two


async def test_a_big_packet_is_read_in_pieces_as_large_as_it_lacks() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS, fragment_size=1 << 20)  # one packet, not 64 KiB fragments
    big = tx.send(c.Send(TO), b"y" * 200_000)
    conn._on_data(big[:READ_MIN])  # what had come
    assert ch.sizes[-1] == READ_MIN + len(big) - READ_MIN  # the rest, and a few messages more
    conn._on_data(big[READ_MIN:-20_000])  # short of what was asked: the rest is on its way
    assert ch.sizes[-1] == READ_MIN + 20_000
    conn._on_data(big[-20_000:])
    assert got == [b"y" * 200_000]
    assert ch.sizes[-1] == READ_MAX  # messages of that size: as much as a read takes
    huge = tx.send(c.Send(TO), b"h" * 600_000)
    conn._on_data(huge[:1000])
    assert ch.sizes[-1] == READ_MAX  # lacks more than a read takes


async def test_fragments_after_small_messages_take_a_read_each() -> None:
    """A big message in 64 KiB fragments after small traffic: each read asks for the rest
    of the fragment begun and a little more, not 1460 bytes then the rest."""
    conn, ch, got = make()
    tx = DistConnection(FLAGS)
    conn._on_data(b"".join(tx.send(c.Send(TO), i) for i in range(20)))
    assert ch.sizes[-1] == READ_MIN
    big = tx.send(c.Send(TO), b"f" * (1 << 20))  # 16 fragments and then some
    reads = feed_behind(conn, ch, big)
    assert got[-1] == b"f" * (1 << 20)
    assert reads <= 20, reads


async def test_a_small_message_after_big_ones_shrinks_the_reads_again() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS, fragment_size=1 << 20)
    conn._on_data(tx.send(c.Send(TO), b"z" * 300_000))
    assert ch.sizes[-1] == READ_MAX
    small = b"".join(tx.send(c.Send(TO), i) for i in range(10))
    conn._on_data(small)
    assert ch.sizes[-1] == READ_MIN and len(got) == 11


async def test_messages_and_ticks_are_still_all_delivered() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS)
    stream = b"".join(tx.send(c.Send(TO), i) + tx.tick() for i in range(50))
    for k in range(0, len(stream), 7):  # as badly cut as a socket may
        conn._on_data(stream[k : k + 7])
    assert got == list(range(50))
    assert ch.sizes and all(READ_MIN <= s <= READ_MAX for s in ch.sizes)
