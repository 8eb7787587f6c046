"""Connection.send_plain, the mailbox's send: the bytes, counters and errors of send_nowait,
from fewer frames (its usual packet is encoded and written there)."""

from __future__ import annotations

from typing import Any

import pytest

from pynode.protocol import control as c
from pynode.protocol.errors import ProtocolError
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection, Message
from pynode.runtime.connection import Connection
from pynode.runtime.errors import ConnectionLost
from pynode.runtime.transport import Channel, ChannelClosed
from pynode.term import Atom, Pid, Reference

FROM = Pid("here@127.0.0.1", 40, 0, 1)
TO = Pid("peer@127.0.0.1", 41, 0, 1)
SEND = (22, FROM, TO)  # SEND_SENDER's wire tuple, as Node.remote_route makes it
REG = (6, FROM, Atom(""), Atom("a_registered_name"))
BIG = bytes(range(256)) * 400  # 100 KiB: kept apart by the codec (parts), and fragmented


class Recording(Channel):
    """A channel that keeps what it is given to write, as one stream."""

    def __init__(self, congested: bool = False) -> None:
        self.closed = False
        self.wrote = False
        self.writes = 0
        self.stream = bytearray()
        self.calls: list[str] = []
        self._congested = congested

    def write(self, data: bytes) -> None:
        if self.closed:
            raise ChannelClosed("the connection is closed")
        self.writes += 1
        self.calls.append("write")
        self.stream += data

    def writev(self, pieces: list[Any]) -> None:
        self.writes += 1
        self.calls.append("writev")
        for p in pieces:
            self.stream += p

    def congested(self) -> bool:
        return self._congested

    def read_size(self, size: int) -> None:
        pass


def make(flags: Any, congested: bool = False, fragment_size: int = 65536) -> tuple[Connection, Recording]:
    ch = Recording(congested)
    conn = Connection(
        Atom("peer@127.0.0.1"), ch, flags, 1, initial_data=b"", max_packet=1 << 26,
        max_message=1 << 26, net_ticktime=60, tick_intensity=4,
        dispatch=lambda conn, msg: None, on_down=lambda conn, why: None, fragment_size=fragment_size,
    )
    return conn, ch


MESSAGES = [
    (SEND, (Atom("event"), 1, b"x" * 32)),
    (SEND, (Atom("event"), 2, b"x" * 32)),  # its atom by the cache's ref now
    (REG, {Atom("k"): [1, 2.5, b"text"]}),
    (SEND, b"y" * 10_000),  # one packet, fragmented (fragments of 4 KiB)
    (SEND, BIG),  # parts, then fragments
    (SEND, (FROM, (Atom("reply"), BIG))),
    (c.AliasSend(FROM, Reference("peer@127.0.0.1", 1, (1, 2, 3))), Atom("by_alias")),  # not a tuple
    (SEND, Atom("after")),
]


@pytest.mark.parametrize("atom_cache", [True, False])
@pytest.mark.parametrize("fragments", [True, False])
def test_the_same_bytes_and_counters_as_send_nowait(atom_cache: bool, fragments: bool) -> None:
    flags = default_flags(atom_cache=atom_cache, fragments=fragments)
    plain, pch = make(flags, fragment_size=4096)
    nowait, nch = make(flags, fragment_size=4096)
    for control, payload in MESSAGES:
        assert plain.send_plain(control, payload) is False
        nowait.send_nowait(control, payload)
    assert pch.stream == nch.stream and pch.calls == nch.calls and "writev" in pch.calls
    assert plain.counters() == nowait.counters()
    assert plain.messages_out == len(MESSAGES) and plain.bytes_out == len(pch.stream)
    rx = DistConnection(flags)
    rx.receive_data(bytes(pch.stream))
    got = []
    while (ev := rx.next_event()) is not None and isinstance(ev, Message):
        got.append(ev.payload)
    assert got == [payload for _, payload in MESSAGES]


def test_it_reports_the_channel_congested() -> None:
    conn, _ = make(default_flags(atom_cache=True), congested=True)
    assert conn.send_plain(SEND, 1) is True
    conn, _ = make(default_flags(atom_cache=True), congested=True)
    assert conn.send_plain(c.AliasSend(FROM, Reference("peer@127.0.0.1", 1, (1, 2, 3))), 1) is True


def test_an_unencodable_payload_is_a_protocol_error_and_sets_no_slot() -> None:
    flags = default_flags(atom_cache=True)
    plain, pch = make(flags)
    nowait, nch = make(flags)
    for conn in (plain, nowait):
        with pytest.raises(ProtocolError, match="cannot encode distribution message"):
            conn.send_nowait(SEND, (Atom("fresh_atom"), object())) if conn is nowait else conn.send_plain(
                SEND, (Atom("fresh_atom"), object())
            )
    assert pch.stream == nch.stream == b"" and plain.messages_out == 0
    plain.send_plain(SEND, Atom("fresh_atom"))
    nowait.send_nowait(SEND, Atom("fresh_atom"))
    assert pch.stream == nch.stream  # the slot the failed message would have set: set now


def test_a_connection_down_raises_connection_lost() -> None:
    conn, ch = make(default_flags(atom_cache=True))
    conn.alive = False
    with pytest.raises(ConnectionLost):
        conn.send_plain(SEND, 1)
    assert ch.stream == b""


@pytest.mark.parametrize("fragment_size", [8, 60, 100])
def test_the_same_bytes_around_the_fragment_size(fragment_size: int) -> None:
    """Packets a little shorter and longer than a fragment (plain_max's edge), with and
    without atoms new to the cache."""
    flags = default_flags(atom_cache=True, fragments=True)
    plain, pch = make(flags, fragment_size=fragment_size)
    nowait, nch = make(flags, fragment_size=fragment_size)
    for n in range(max(0, fragment_size - 40), fragment_size + 40):
        for payload in (b"z" * n, (Atom(f"atom_{n}"), b"z" * n)):
            plain.send_plain(SEND, payload)
            nowait.send_nowait(SEND, payload)
    assert pch.stream == nch.stream and pch.calls == nch.calls and "writev" in pch.calls
    assert plain.counters() == nowait.counters()


def test_a_closing_channel_is_connection_lost() -> None:
    conn, ch = make(default_flags(atom_cache=True))
    ch.closed = True
    with pytest.raises(ConnectionLost, match="closing"):
        conn.send_plain(SEND, 1)
    assert conn.messages_out == 0 and conn.bytes_out == 0
