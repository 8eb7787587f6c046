"""Every limit of pynode.runtime.limits crossed, and a flood that must not hurt a good peer."""

from __future__ import annotations

import logging
import struct

import anyio
import pytest

from pynode.protocol import ProtocolError
from pynode.protocol import control as c
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DEFAULT_MAX_FRAGMENTED, DistConnection
from pynode.runtime import Node
from pynode.runtime.limits import (
    MAX_PENDING_PER_ADDRESS,
    HandshakeGate,
)
from pynode.term import Atom, Pid

pytestmark = pytest.mark.anyio

FRAGS = default_flags(fragments=True)
P = Pid(Atom("b@h"), 1, 0, 1)


def _first_fragments(tx: DistConnection, n: int) -> bytes:
    """The first fragment of ``n`` more fragmented messages from ``tx``."""
    return b"".join(tx.send_packets(c.Send(P), b"x" * 1000)[0] for _ in range(n))


def test_fragmented_messages_in_flight_are_bounded() -> None:
    assert DEFAULT_MAX_FRAGMENTED == 1024
    tx = DistConnection(FRAGS, fragment_size=64)
    rx = DistConnection(FRAGS, max_fragmented=3)
    rx.receive_data(_first_fragments(tx, 3))
    assert rx.next_event().__class__.__name__ == "NeedData"
    assert rx.pending_fragments == 3
    rx.receive_data(_first_fragments(tx, 1))
    with pytest.raises(ProtocolError, match="more than 3 fragmented messages in flight"):
        rx.next_event()


async def test_gate_drops_the_oldest_of_an_address() -> None:
    gate = HandshakeGate(max_pending=10, max_per_address=2)
    with gate.admit(("10.0.0.1", 1), 60) as first:
        with gate.admit(("10.0.0.1", 2), 60) as second:
            with gate.admit(("10.0.0.2", 3), 60) as other:
                assert len(gate) == 3 and gate.dropped == 0
                with gate.admit(("10.0.0.1", 4), 60) as third:
                    assert first.cancel_called and not second.cancel_called
                    assert not other.cancel_called and not third.cancel_called
                    assert len(gate) == 3 and gate.dropped == 1
    assert len(gate) == 0


async def test_gate_drops_the_oldest_of_the_busiest_address() -> None:
    gate = HandshakeGate(max_pending=3, max_per_address=5)
    with gate.admit(("good", 1), 60) as good, gate.admit(("bad", 1), 60) as b1:
        with gate.admit(("bad", 2), 60) as b2, gate.admit(("other", 1), 60) as o:
            assert [good.cancel_called, b1.cancel_called, b2.cancel_called, o.cancel_called] == [
                False, True, False, False]
            with gate.admit(("x", 1), 60):  # a tie: the oldest of the first address counted
                assert good.cancel_called and not b2.cancel_called


async def test_gate_bounds_the_time_of_a_handshake() -> None:
    gate = HandshakeGate()
    with anyio.fail_after(10):
        with gate.admit(("a", 1), 0.05) as scope:
            await anyio.sleep_forever()
    assert scope.cancelled_caught and len(gate) == 0


def test_gate_refuses_nonsense_limits() -> None:
    with pytest.raises(ValueError):
        HandshakeGate(max_pending=0)


def test_mailbox_warns_at_the_threshold_and_each_doubling(caplog: pytest.LogCaptureFixture) -> None:
    async def main() -> None:
        async with Node("w@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as node:
            mb = node.mailbox()
            mb.warn_length = 5
            with caplog.at_level(logging.WARNING, logger="pynode.node"):
                for i in range(12):
                    await node.send(mb.pid, i)
            warnings = [r.getMessage() for r in caplog.records if "messages queued" in r.getMessage()]
            assert len(warnings) == 2, warnings
            assert "has 5 messages" in warnings[0] and "has 10 messages" in warnings[1]
            assert [mb.receive_nowait() for _ in range(12)] == list(range(12))  # none dropped

    anyio.run(main)


async def _half_open(port: int, sent: bytes) -> anyio.abc.SocketStream:
    s = await anyio.connect_tcp("127.0.0.1", port)
    if sent:
        await s.send(sent)
    return s


async def _closed_by_peer(s: anyio.abc.SocketStream) -> bool:
    """True once the node closed ``s`` (EOF or reset); bounded by the caller's scope."""
    try:
        while True:
            await s.receive()
    except (anyio.EndOfStream, anyio.BrokenResourceError, ConnectionResetError, OSError):
        return True


async def test_flood_of_half_open_handshakes_does_not_stop_a_good_peer() -> None:
    """More half-open connections than the per-address cap, each holding a handshake (a
    partial name packet), then a good node connects and exchanges messages."""
    flood = 3 * MAX_PENDING_PER_ADDRESS
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        socks = []
        try:
            for i in range(flood):
                # a name packet announced as 40 bytes, of which only 3 ever come
                socks.append(await _half_open(a.port, struct.pack(">H", 40) + b"N" + bytes([i, 0])))
            with anyio.fail_after(30):
                while a.connector.gate.dropped < flood - MAX_PENDING_PER_ADDRESS:
                    await anyio.sleep(0.01)
                assert len(a.connector.gate) == MAX_PENDING_PER_ADDRESS
                assert await _closed_by_peer(socks[0])  # the oldest were let go
            async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
                b.add_address(a.name, "127.0.0.1", a.port)
                with anyio.fail_after(30):
                    assert await b.ping(a.name)
                    inbox = a.mailbox("inbox")
                    for i in range(50):
                        await b.send(("inbox", a.name), i)
                    assert [await inbox.receive(timeout=20) for _ in range(50)] == list(range(50))
            assert a.connector.gate.dropped >= flood - MAX_PENDING_PER_ADDRESS + 1
        finally:
            for s in socks:
                await s.aclose()


async def test_a_trickling_handshake_is_cut_at_its_total_time() -> None:
    """One byte per 0.1 s keeps every read under setup_time, but not the whole handshake."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", setup_time=0.5) as a:
        s = await _half_open(a.port, struct.pack(">H", 60000))
        try:
            with anyio.fail_after(30):
                for _ in range(300):  # 30 s of trickle at most; 4 * 0.5 s is the limit
                    try:
                        await s.send(b"N")
                    except (anyio.BrokenResourceError, OSError):
                        break
                    with anyio.move_on_after(0.1):
                        if await _closed_by_peer(s):
                            break
                else:
                    raise AssertionError("the trickling handshake was never cut")
        finally:
            await s.aclose()
        assert len(a.connector.gate) == 0


def test_binary_literal_size_is_bounded() -> None:
    from pynode.term.syntax import TermSyntaxError, parse_term

    assert len(parse_term(b"<<0:134217728>>")) == 16 * 1024 * 1024  # 16 MiB: the limit
    with pytest.raises(TermSyntaxError, match="over 16777216 bytes"):
        parse_term(b"<<1:8, 0:134217728>>")
    with pytest.raises(TermSyntaxError, match="over 16777216 bytes"):
        parse_term(b"<<0:" + b"9" * 100 + b">>")
