"""erpc:call's answer recognised in bytes as they are read (the codec's peek_spawn_answer,
through DistConnection.spawn_answer_reader, both codecs alike): only its own SPAWN_REPLY and
exit signal, and nothing else, make an answer."""

from __future__ import annotations

from typing import Any

import pytest

from pynode import term
from pynode.protocol import control as c
from pynode.protocol import framing
from pynode.protocol._common import NO_PAYLOAD
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection
from pynode.runtime.rpc import _take_answer
from pynode.runtime.signals import DOWN, PROCESS, SPAWN_ERROR
from pynode.term import Atom, Pid, Reference

BOX = Pid("py@host", 1, 0, 5)
PID = Pid("erl@host", 90, 0, 7)
REQ = Reference("py@host", 5, (1, 2, 3))
OTHER = Reference("py@host", 5, (4, 5, 6))
REASON = (REQ, Atom("return"), 42)


@pytest.fixture(params=sorted(term.IMPLEMENTATIONS))
def codec(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each codec in turn, as the one DistConnection.spawn_answer_reader binds."""
    impl = term.IMPLEMENTATIONS[request.param]
    monkeypatch.setattr(framing, "peek_spawn_answer", impl.peek_spawn_answer)
    return str(request.param)


@pytest.fixture(params=[False, True], ids=["plain", "header"])
def pair(request: pytest.FixtureRequest, codec: str) -> tuple[DistConnection, DistConnection]:
    flags = default_flags(atom_cache=request.param)
    return DistConnection(flags), DistConnection(flags)


class Read:
    """What a reader said after each read, and what it found."""

    def __init__(self) -> None:
        self.said: list[bool] = []
        self.found: list[Any] = []

    @property
    def answer(self) -> Any:
        """As _take_answer gives it: the call box's message, False for anything else, None
        while it may still come."""
        if not self.found:
            return None
        if self.found[0] is None:
            return False
        _, pid, reason = self.found[0]
        return (SPAWN_ERROR, REQ, reason) if pid is None else (DOWN, REQ, PROCESS, pid, reason)


def read(rx: DistConnection, *chunks: bytes) -> tuple[Read, list[bool]]:
    """Feed ``chunks`` to a reader as reads that add to one buffer: what it found, and what
    it said after each read (True: done)."""
    out = Read()
    reader = rx.spawn_answer_reader(REQ, BOX, out.found)
    assert reader is not None
    buf = bytearray()
    for chunk in chunks:
        buf += chunk
        out.said.append(reader(buf))
        assert len(out.found) == (1 if out.said[-1] else 0)  # found once it said so
    return out, out.said


def test_the_reply_then_the_exit_make_the_answer(pair: Any) -> None:
    tx, rx = pair
    reply = tx.send(c.SpawnReply(REQ, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID))
    down = tx.send(c.PayloadMonitorPExit(PID, BOX, REQ), REASON)
    reader, said = read(rx, reply, down)
    assert said == [False, True]  # the reply alone: the exit is still to come
    assert reader.answer == (DOWN, REQ, PROCESS, PID, REASON)
    reader, said = read(rx, reply + down[:5], down[5:])  # split anywhere
    assert said == [False, True] and reader.answer == (DOWN, REQ, PROCESS, PID, REASON)
    old = tx.send(c.MonitorPExit(PID, BOX, REQ, Atom("noproc")))  # the reason in the control
    reader, said = read(rx, reply + old)
    assert said == [True] and reader.answer == (DOWN, REQ, PROCESS, PID, Atom("noproc"))


def test_a_failed_spawn_is_its_answer(pair: Any) -> None:
    tx, rx = pair
    reader, said = read(rx, tx.send(c.SpawnReply(REQ, BOX, 0, Atom("badopt"))))
    assert said == [True] and reader.answer == (SPAWN_ERROR, REQ, Atom("badopt"))


def test_anything_else_goes_to_the_connection(pair: Any) -> None:
    tx, rx = pair
    reply = tx.send(c.SpawnReply(REQ, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID))
    down = tx.send(c.PayloadMonitorPExit(PID, BOX, REQ), REASON)
    cases = {
        "another call's reply": tx.send(c.SpawnReply(OTHER, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID)),
        "a reply to another pid": tx.send(c.SpawnReply(REQ, PID, c.SPAWN_REPLY_FLAG_MONITOR, PID)),
        "a link asked for": tx.send(c.SpawnReply(REQ, BOX, 3, PID)),
        "a message first": tx.send(c.Send(BOX), Atom("hi")) + reply + down,
        "a message between": reply + tx.send(c.Send(BOX), Atom("hi")) + down,
        "another monitor's exit": reply + tx.send(c.PayloadMonitorPExit(PID, BOX, OTHER), REASON),
        "another process's exit": reply + tx.send(c.PayloadMonitorPExit(BOX, BOX, REQ), REASON),
        "a link's exit": reply + tx.send(c.PayloadExit(PID, BOX), REASON),
        "more after the answer": reply + down + tx.send(c.Send(BOX), Atom("hi")),
        "a tick": reply + tx.tick(),
        "an error after the answer": reply + tx.send(c.SpawnReply(REQ, BOX, 0, Atom("x"))),
    }
    for name, data in cases.items():
        reader, said = read(rx, data)
        assert said == [True] and reader.answer is False, name
    assert read(rx, b"")[0].answer is None  # nothing yet: nothing said


def test_an_undecodable_packet_is_the_connections_to_report(pair: Any) -> None:
    """A bad packet is not the answer, and raises nothing here: the connection decodes the
    same bytes again and reports it."""
    tx, rx = pair
    reply = tx.send(c.SpawnReply(REQ, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID))
    bad = b"\x00\x00\x00\x05\x70\x83\x68\x09\x61"  # a tuple of 9 that ends at once
    reader, said = read(rx, reply + bad)
    assert said == [True] and reader.answer is False


def test_the_answers_position_is_where_the_next_packet_begins(pair: Any) -> None:
    tx, rx = pair
    reply = tx.send(c.SpawnReply(REQ, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID))
    down = tx.send(c.PayloadMonitorPExit(PID, BOX, REQ), REASON)
    reader, said = read(rx, reply + down + b"\x00\x00")  # a next packet's first bytes
    assert said == [True] and reader.found[0][0] == len(reply + down)


def test_no_reader_while_fed_bytes_wait(pair: Any) -> None:
    """Bytes fed to the connection and not yet taken come first: no reader then."""
    tx, rx = pair
    rx.receive_data(tx.send(c.Send(BOX), Atom("hi"))[:6])
    assert rx.spawn_answer_reader(REQ, BOX, []) is None


def test_a_codec_call_checks_its_arguments() -> None:
    for impl in term.IMPLEMENTATIONS.values():
        entries = [None] * term.ATOM_CACHE_SIZE
        with pytest.raises(TypeError):
            impl.peek_spawn_answer(entries, NO_PAYLOAD, 1 << 20, REQ, BOX, (), b"")  # found: a list
        with pytest.raises((TypeError, ValueError)):
            impl.peek_spawn_answer([], NO_PAYLOAD, 1 << 20, REQ, BOX, [], b"")  # no cache list
        with pytest.raises(TypeError):
            impl.peek_spawn_answer(entries, NO_PAYLOAD, 1 << 20, REQ, BOX, [], "text")


class Taken:  # (uses the codec the package picked)
    """A connection whose socket holds ``data``: what _take_answer reads, feeds and counts."""

    def __init__(self, dist: DistConnection, data: bytes) -> None:
        self.dist = dist
        self.channel = self
        self.data = data
        self.fed: list[bytes] = []
        self.took: list[tuple[int, int]] = []
        self.left = False  # a BlockingNode thread's read left the loop an event
        self.reads = 0

    def take_inline(self, spin: float, enough: Any) -> bytearray:
        self.reads += 1
        buf = bytearray(self.data)
        enough(buf)
        return buf

    def thread_left_something(self) -> bool:
        return self.left

    def feed(self, data: Any) -> None:
        if data:
            self.fed.append(bytes(data))

    def taken(self, nbytes: int, messages: int) -> None:
        self.took.append((nbytes, messages))


def test_what_follows_the_answer_goes_to_the_connection(pair: Any) -> None:
    """(_take_answer: what it reads is the connection's but for the answer.)"""
    tx, rx = pair
    reply = tx.send(c.SpawnReply(REQ, BOX, c.SPAWN_REPLY_FLAG_MONITOR, PID))
    down = tx.send(c.PayloadMonitorPExit(PID, BOX, REQ), REASON)
    after = tx.send(c.Send(BOX), Atom("next"))
    conn = Taken(rx, reply + down + after[:7])  # the next packet's start came in the same read
    answer, rest = _take_answer(conn, BOX, REQ, 0.1)  # type: ignore[arg-type]
    assert answer == (DOWN, REQ, PROCESS, PID, REASON)
    assert conn.fed == [after[:7]] and conn.took == [(len(reply + down), 2)]
    assert not rest  # fed already: nothing is left for the caller to feed
    conn = Taken(rx, reply + after)  # not the answer: all of it is the caller's to feed
    answer, read = _take_answer(conn, BOX, REQ, 0.1)  # type: ignore[arg-type]
    assert answer is None and read == reply + after and conn.fed == [] and conn.took == []
    conn = Taken(rx, reply + down)  # the answer is there, but an event a thread left is first
    conn.left = True
    answer, read = _take_answer(conn, BOX, REQ, 0.1)  # type: ignore[arg-type]
    assert answer is None and read == b"" and conn.reads == 0 and conn.took == []
