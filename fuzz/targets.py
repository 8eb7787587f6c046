"""Fuzz targets: one function per input a peer, a file or a user can hand us.

Each target takes bytes and either returns or raises one of its documented errors (the
``ALLOWED`` table); anything else, a hang or a crash is a bug. The same functions run
under atheris (``fuzz/run.py``, long runs) and under pytest (``tests/test_fuzz.py``, a
bounded run in CI), so a crash found by one is replayed by the other.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from pynode.protocol.errors import EpmdProtocolError, HandshakeError, ProtocolError
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection
from pynode.protocol.handshake import (
    Acceptor,
    HandshakeComplete,
    HandshakeFailed,
    Initiator,
    NameReceived,
    StatusReceived,
    WaitingForOldConnection,
    gen_digest,
)
from pynode.term import IMPLEMENTATIONS, Atom, DecodeError, Pid
from pynode.term.syntax import TermSyntaxError, format_term, parse_term

COOKIE = "fuzzcookie"
OUR_CHALLENGE = 0x1234_5678  # fixed so a structured input can carry the right digest
_EVENT_BUDGET = 10_000  # no input of a few KB may yield more events than this: a loop guard


def _same(a: Any, b: Any) -> bool:
    """Equal as terms, with NaN-free floats compared by bits (the codecs never make NaN)."""
    return type(a) is type(b) and (a == b or repr(a) == repr(b))


def decode(data: bytes) -> None:
    """Both codecs decode the same bytes to the same term, or both raise DecodeError."""
    outcomes = []
    for impl in IMPLEMENTATIONS.values():
        try:
            outcomes.append(("ok", impl.decode(data)))
        except DecodeError:
            outcomes.append(("error", None))
    kinds = {k for k, _ in outcomes}
    assert len(kinds) == 1, f"codecs disagree on {data!r}: {outcomes}"
    if len(outcomes) == 2 and outcomes[0][0] == "ok":
        assert _same(outcomes[0][1], outcomes[1][1]), f"codecs decode {data!r} differently"
        term = outcomes[0][1]
        for impl in IMPLEMENTATIONS.values():  # what we decoded we can send back
            again = impl.decode(impl.encode(term))
            assert _same(again, term), f"{term!r} does not survive a round trip"


_MISSING = object()


def dist_packet(data: bytes) -> None:
    """A connected-phase packet body (131 68 header + control + payload) via each codec."""
    outcomes = []
    for impl in IMPLEMENTATIONS.values():
        cache: list[Any] = [None] * 2048
        try:
            outcomes.append(("ok", impl.decode_dist_packet(data, cache, None)))
        except DecodeError:
            outcomes.append(("error", None))
    assert len({k for k, _ in outcomes}) == 1, f"codecs disagree on {data!r}: {outcomes}"
    # the same bytes as a stream of length-prefixed packets, through the batch call
    runs = []
    for impl in IMPLEMENTATIONS.values():
        taken: list[Any] = []

        def deliver(to: Any, payload: Any, taken: list[Any] = taken) -> bool:
            taken.append(to)
            return len(taken) % 3 != 0  # every third one declined: it comes back as control

        def signal(control: Any, payload: Any, taken: list[Any] = taken) -> bool:
            taken.append(control)
            return len(taken) % 2 != 0  # every other one declined

        try:
            pos, n, ctl, _ = impl.decode_dist_sends(
                data, [None] * 2048, _MISSING, 0, 1 << 16, deliver, signal
            )
            runs.append(("ok", pos, n, ctl is _MISSING, len(taken)))
        except DecodeError as e:  # where each says to go on must agree too
            runs.append(("error", getattr(e, "dist_pos", None), getattr(e, "dist_delivered", None), False, len(taken)))
    assert len(set(runs)) == 1, f"codecs disagree on the stream {data!r}: {runs}"


def _big(term: Any) -> bool:
    """True when ``term`` holds a binary over 64 KiB (checked to a bounded depth)."""
    todo, seen = [term], 0
    while todo and seen < 10_000:
        t = todo.pop()
        seen += 1
        if isinstance(t, (bytes, bytearray)) and len(t) > 65536:
            return True
        if hasattr(t, "data") and isinstance(t.data, bytes) and len(t.data) > 65536:
            return True
        if isinstance(t, (list, tuple)):
            todo.extend(t)
        elif isinstance(t, dict):
            todo.extend(t.keys())
            todo.extend(t.values())
    return False


def syntax(data: bytes) -> None:
    """Erlang term syntax: parsed, or TermSyntaxError; what parses prints and re-parses."""
    try:
        term = parse_term(data)
    except TermSyntaxError:
        return
    if _big(term):  # a 16 MiB binary prints as 33 MB of text: valid, but seconds per input
        return
    text = format_term(term)
    again = parse_term(text)
    assert format_term(again) == text, f"{data!r}: {text!r} does not re-parse to itself"


def _take_pids(to: Any, payload: Any) -> bool:
    """A deliver hook as the node's: takes sends to pids, leaves names to events."""
    if type(to) is not Pid and type(to) is not Atom:
        raise AssertionError(f"deliver hook given {to!r}")
    return type(to) is Pid


def _drain_connected(flags: int, data: bytes, hook: bool = False) -> None:
    """Feed ``data`` to a connected-phase DistConnection with ``flags``; count events."""
    conn = DistConnection(flags, max_packet=1 << 16, max_message=1 << 18)
    if hook:
        conn.deliver = _take_pids
    conn.receive_data(data)
    conn.receive_eof()
    try:
        for _ in range(_EVENT_BUDGET):
            ev = conn.next_event()
            if type(ev).__name__ == "ConnectionClosed":
                return
            if not hasattr(ev, "control") and type(ev).__name__ != "Tick":
                raise AssertionError(f"unexpected event {ev!r}")
        raise AssertionError("event budget exceeded")
    except ProtocolError:
        assert conn.pending_fragments >= 0
        return


def framing(data: bytes) -> None:
    """Connected-phase bytes (fragments, atom cache, pass-through) for a flag set chosen by
    the first byte, with or without a deliver hook; the only error is ProtocolError."""
    if not data:
        return
    choice = data[0] & 7
    flags = default_flags(hidden=True, fragments=choice & 1 == 1, atom_cache=choice & 2 == 2)
    _drain_connected(int(flags), data[1:], hook=choice & 4 == 4)


def _packet(body: bytes) -> bytes:
    return struct.pack(">H", len(body) & 0xFFFF) + body


def _drive(hs: Any, on_event: Callable[[Any], None]) -> HandshakeComplete | None:
    """Run the handshake on what it has; a failure is reported once, then raised."""
    if hs.state == "failed":
        try:
            hs.next_event()
        except HandshakeError:
            return None
        raise AssertionError("a failed handshake went on")
    for _ in range(_EVENT_BUDGET):
        ev = hs.next_event()
        if type(ev).__name__ == "NeedData":
            return None
        if isinstance(ev, HandshakeFailed):
            try:
                hs.next_event()
            except HandshakeError:
                return None
            raise AssertionError("a failed handshake answered again")
        if isinstance(ev, HandshakeComplete):
            return ev
        on_event(ev)
    raise AssertionError("event budget exceeded")


def _after_handshake(hs: Any, done: HandshakeComplete | None) -> None:
    if done is not None:  # what followed the handshake is the connected phase
        _drain_connected(int(done.peer_flags), hs.trailing_data)


def handshake_acceptor(data: bytes) -> None:
    """We accept: the peer's bytes. With a first byte of 1 the harness sends a well-formed
    name and the right digest, so the fuzzer reaches the connected phase."""
    hs = Acceptor(
        this_node="fuzz@127.0.0.1",
        cookie=COOKIE,
        flags=default_flags(hidden=True),
        creation=7,
        challenge=OUR_CHALLENGE,
    )

    def on_event(ev: Any) -> None:
        if isinstance(ev, NameReceived):
            if ev.name_me:
                hs.send_status("named", name=f"dyn@{ev.name}", creation=3)
            else:
                hs.send_status("ok")
        elif isinstance(ev, WaitingForOldConnection):
            hs.old_connection_closed()
        else:
            raise AssertionError(f"unexpected acceptor event {ev!r}")

    if data[:1] == b"\x01" and len(data) >= 13:
        flags = int.from_bytes(data[1:9], "big") | int(default_flags(hidden=True))
        name = b"p@" + bytes(c % 26 + 97 for c in data[9:13])
        hs.receive_data(_packet(b"N" + struct.pack(">QIH", flags, 1, len(name)) + name))
        _drive(hs, on_event)
        hs.receive_data(_packet(b"r" + struct.pack(">I", 99) + gen_digest(OUR_CHALLENGE, COOKIE)))
        hs.receive_data(data[13:])
    else:
        hs.receive_data(data)
    if data[-1:] == b"\x00":  # the peer may also hang up
        hs.receive_eof()
    _after_handshake(hs, _drive(hs, on_event))


def handshake_initiator(data: bytes) -> None:
    """We dial: the acceptor's bytes. With a first byte of 1 the harness answers ``sok``, a
    well-formed challenge and the right ack digest, then the fuzzed rest."""
    hs = Initiator(
        this_node="fuzz@127.0.0.1",
        peer_node="peer@127.0.0.1",
        cookie=COOKIE,
        flags=default_flags(hidden=True),
        creation=7,
        challenge=OUR_CHALLENGE,
    )

    def on_event(ev: Any) -> None:
        if isinstance(ev, StatusReceived):
            if ev.status == "alive":
                hs.answer_alive(True)
        else:
            raise AssertionError(f"unexpected initiator event {ev!r}")

    if data[:1] == b"\x01" and len(data) >= 9:
        flags = int.from_bytes(data[1:9], "big") | int(default_flags(hidden=True))
        name = b"peer@127.0.0.1"
        hs.receive_data(_packet(b"sok"))
        hs.receive_data(_packet(b"N" + struct.pack(">QIIH", flags, 5, 2, len(name)) + name))
        _drive(hs, on_event)
        hs.receive_data(_packet(b"a" + gen_digest(OUR_CHALLENGE, COOKIE)))
        hs.receive_data(data[9:])
    else:
        hs.receive_data(data)
    if data[-1:] == b"\x00":  # the peer may also hang up
        hs.receive_eof()
    _after_handshake(hs, _drive(hs, on_event))


def epmd_request(data: bytes) -> None:
    """One EPMD client connection's bytes against the server's request handling."""
    from pynode.epmd.core import EpmdCore, RequestFramer
    from pynode.epmd.registry import Registry

    framer = RequestFramer()
    core = EpmdCore(Registry(), epmd_port=4369)
    framer.receive_data(data)
    try:
        body = framer.next_body()
    except EpmdProtocolError:
        return
    if isinstance(body, bytes):
        out = core.handle(body, local=data[:1] == b"\x01", owner=1)
        assert isinstance(out.reply, bytes)
        core.connection_lost(1)
        assert not core.registry.names(), "a closed connection kept its registration"


TARGETS: dict[str, Callable[[bytes], None]] = {
    "decode": decode,
    "dist_packet": dist_packet,
    "syntax": syntax,
    "framing": framing,
    "handshake_acceptor": handshake_acceptor,
    "handshake_initiator": handshake_initiator,
    "epmd_request": epmd_request,
}
"""Every fuzz target by name."""
