"""Connection.send_from_thread, a BlockingNode thread's send: the bytes of send_threadsafe
(send_pieces without the atom cache), from fewer frames; congestion, hand-overs to the loop
and bad terms as before."""

from __future__ import annotations

from typing import Any

import pytest

from pynode.protocol import control as c
from pynode.protocol.errors import ProtocolError
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection, Message
from pynode.runtime.connection import Connection
from pynode.runtime.transport import HIGH_WATER, Buffer, Channel
from pynode.term import Atom, Pid, Reference

FROM = Pid("here@127.0.0.1", 40, 0, 1)
TO = Pid("peer@127.0.0.1", 41, 0, 1)
SEND = (22, FROM, TO)  # SEND_SENDER's wire tuple, as Node.remote_route makes it
REG = (6, FROM, Atom(""), Atom("a_registered_name"))
BIG = bytes(range(256)) * 400  # 100 KiB: kept apart by the codec (parts), and fragmented

MESSAGES = [
    (SEND, (Atom("event"), 1, b"x" * 32)),
    (REG, {Atom("k"): [1, 2.5, b"text"]}),
    (SEND, b"y" * 10_000),  # one packet, fragmented (fragments of 4 KiB)
    (SEND, BIG),  # parts, then fragments
    (c.AliasSend(FROM, Reference("peer@127.0.0.1", 1, (1, 2, 3))), Atom("by_alias")),  # not a tuple
    (SEND, Atom("after")),
]


class ThreadChannel(Channel):
    """A channel whose thread writes are kept (or refused, as a full socket's would be)."""

    def __init__(self, takes: bool = True, congested: bool = False) -> None:
        self.wrote = False
        self.writes = 0
        self.thread_readers = []
        self.takes = takes
        self._congested = congested
        self.stream = bytearray()  # what threads wrote, in order
        self.messages: list[int] = []  # the pieces of each thread write

    def write_threadsafe(self, pieces: list[Buffer], size: int) -> bool:
        if not self.takes:
            return False
        assert size == sum(map(len, pieces))
        for p in pieces:
            self.stream += p
        self.messages.append(len(pieces))
        self.thread_messages += 1
        self.thread_bytes += size
        return True

    def congested(self) -> bool:
        return self._congested


def make(flags: Any, takes: bool = True, congested: bool = False) -> tuple[Connection, ThreadChannel]:
    ch = ThreadChannel(takes, congested)
    conn = Connection(
        Atom("peer@127.0.0.1"), ch, flags, 1, initial_data=b"", max_packet=1 << 26,
        max_message=1 << 26, net_ticktime=60, tick_intensity=4,
        dispatch=lambda conn, msg: None, on_down=lambda conn, why: None, fragment_size=4096,
    )
    return conn, ch


def decoded(flags: Any, stream: bytes) -> list[Any]:
    rx = DistConnection(flags)
    rx.receive_data(stream)
    got = []
    while (ev := rx.next_event()) is not None and isinstance(ev, Message):
        got.append(ev.payload)
    return got


def never(*args: Any) -> None:
    raise AssertionError("handed to the loop")


@pytest.mark.parametrize("atom_cache", [True, False])
@pytest.mark.parametrize("fragments", [True, False])
def test_the_same_bytes_and_counters_as_send_threadsafe(atom_cache: bool, fragments: bool) -> None:
    flags = default_flags(atom_cache=atom_cache, fragments=fragments)
    new, nch = make(flags)
    old, och = make(flags)
    for control, payload in MESSAGES:
        assert new.send_from_thread(control, payload, never) is True
        old.send_threadsafe(old.dist.send_pieces(control, payload), never)
    assert nch.stream == och.stream and nch.messages == och.messages
    if fragments:  # a fragmented message's pieces go in one write
        assert max(nch.messages) > 1
    assert new.counters() == old.counters()
    assert new.counters()["messages_out"] == len(MESSAGES)
    assert new.counters()["bytes_out"] == len(nch.stream)
    assert decoded(flags, bytes(nch.stream)) == [payload for _, payload in MESSAGES]


def test_a_congested_connection_sends_nothing() -> None:
    conn, ch = make(default_flags(), congested=True)
    assert conn.send_from_thread(SEND, 1, never) is False
    assert ch.stream == b"" and conn.counters()["messages_out"] == 0


def test_what_the_socket_does_not_take_goes_to_the_loop_and_later_sends_after_it() -> None:
    flags = default_flags()
    conn, ch = make(flags, takes=False)
    handed: list[tuple[Any, ...]] = []
    assert conn.send_from_thread(SEND, Atom("first"), lambda *a: handed.append(a)) is True
    assert len(handed) == 1 and ch.stream == b""
    ch.takes = True  # the socket takes bytes again: still, the next send waits its turn
    assert conn.send_from_thread(SEND, Atom("second"), lambda *a: handed.append(a)) is True
    assert len(handed) == 2 and ch.stream == b""
    written = bytearray()
    ch.write = written.extend  # type: ignore[method-assign]  # the loop's write
    for fn, *args in handed:
        fn(*args)
    assert decoded(flags, bytes(written)) == [Atom("first"), Atom("second")]
    assert conn._handed == 0 and conn.send_from_thread(SEND, Atom("third"), never) is True
    assert decoded(flags, bytes(ch.stream)) == [Atom("third")]


def test_an_unencodable_payload_is_a_protocol_error() -> None:
    conn, ch = make(default_flags(atom_cache=True))
    with pytest.raises(ProtocolError, match="cannot encode distribution message"):
        conn.send_from_thread(SEND, (Atom("fresh_atom"), object()), never)
    assert ch.stream == b"" and conn.counters()["messages_out"] == 0


def test_a_thread_goes_through_the_loop_once_it_handed_it_too_much() -> None:
    conn, ch = make(default_flags(), takes=False)
    handed: list[Any] = []
    sent = 0
    while conn._handed <= HIGH_WATER:
        assert sent < 100, "never congested"
        assert conn.send_from_thread(SEND, b"h" * 60_000, lambda *a: handed.append(a)) is True
        sent += 1
    assert len(handed) == sent
    assert conn.send_from_thread(SEND, b"late", lambda *a: handed.append(a)) is False
    assert len(handed) == sent and ch.stream == b""


def test_a_connection_down_hands_the_message_to_the_loop_which_drops_it() -> None:
    conn, ch = make(default_flags())
    conn.alive = False
    handed: list[Any] = []
    assert conn.send_from_thread(SEND, Atom("lost"), lambda *a: handed.append(a)) is True
    assert len(handed) == 1 and ch.stream == b""
    fn, *args = handed[0]
    fn(*args)  # the loop: the connection is down, nothing is written
    assert ch.stream == b"" and conn._handed == 0 and conn.counters()["messages_out"] == 0
