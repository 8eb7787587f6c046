"""erpc:call's answer recognised in bytes as they are read (rpc._AnswerReader): only its own
SPAWN_REPLY and exit signal, and nothing else, make an answer."""

from __future__ import annotations

from typing import Any

import pytest

from pynode.protocol import control as c
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection
from pynode.runtime.rpc import _AnswerReader, _take_answer
from pynode.runtime.signals import DOWN, PROCESS, SPAWN_ERROR
from pynode.term import Atom, Pid, Reference

BOX = Pid("py@host", 1, 0, 5)
PID = Pid("erl@host", 90, 0, 7)
REQ = Reference("py@host", 5, (1, 2, 3))
OTHER = Reference("py@host", 5, (4, 5, 6))
REASON = (REQ, Atom("return"), 42)


@pytest.fixture(params=[False, True], ids=["plain", "header"])
def pair(request: pytest.FixtureRequest) -> tuple[DistConnection, DistConnection]:
    flags = default_flags(atom_cache=request.param)
    return DistConnection(flags), DistConnection(flags)


def read(rx: DistConnection, *chunks: bytes) -> tuple[_AnswerReader, list[bool]]:
    """Feed ``chunks`` to a reader as reads that add to one buffer: the reader, and what it
    said after each read (True: done)."""
    reader = _AnswerReader(rx, BOX, REQ)
    buf = bytearray()
    said = []
    for chunk in chunks:
        buf += chunk
        said.append(reader(buf))
    return reader, said


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


class Taken:
    """A connection whose socket holds ``data``: what _take_answer reads, feeds and counts."""

    def __init__(self, dist: DistConnection, data: bytes) -> None:
        self.dist = dist
        self.channel = self
        self.data = data
        self.fed: list[bytes] = []
        self.took: list[tuple[int, int]] = []

    def take_inline(self, spin: float, enough: Any) -> bytearray:
        buf = bytearray(self.data)
        enough(buf)
        return buf

    def feed(self, data: Any) -> None:
        if data:
            self.fed.append(bytes(data))

    def taken(self, nbytes: int, messages: int) -> None:
        self.took.append((nbytes, messages))


def test_what_follows_the_answer_goes_to_the_connection(pair: Any) -> None:
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
