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


async def test_small_messages_are_read_a_few_at_a_time() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS)
    packets = b"".join(tx.send(c.Send(TO), ("event", i, bytes(32))) for i in range(100))
    conn._on_data(packets)
    assert len(got) == 100
    per = len(packets) // 100
    assert ch.sizes == [max(READ_MIN, per * READ_MESSAGES)]
    assert READ_MIN <= ch.sizes[-1] < 4096  # far below what would empty a busy socket


async def test_a_big_packet_is_read_in_pieces_as_large_as_it_lacks() -> None:
    conn, ch, got = make()
    tx = DistConnection(FLAGS, fragment_size=1 << 20)  # one packet, not 64 KiB fragments
    big = tx.send(c.Send(TO), b"y" * 600_000)
    conn._on_data(big[:READ_MIN])
    assert ch.sizes[-1] == READ_MAX  # lacks more than a read takes
    conn._on_data(big[READ_MIN:-20_000])
    assert ch.sizes[-1] == 20_000  # lacks exactly this
    conn._on_data(big[-20_000:])
    assert got == [b"y" * 600_000]
    assert ch.sizes[-1] == READ_MAX  # messages of that size: as much as a read takes


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
