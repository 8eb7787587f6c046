"""Signals.deliver_signal, the framing's short way for an rpc's signals (SPAWN_REQUEST,
SPAWN_REPLY, MONITOR_P_EXIT): it must do what dispatch() does with the checked control
object, and leave to dispatch() every tuple from_term would reject."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator, Callable
from functools import partial
from typing import Any

import anyio
import pytest

from pynode.protocol import control as C
from pynode.protocol._common import NO_PAYLOAD
from pynode.protocol.errors import ProtocolError
from pynode.protocol.flags import default_flags
from pynode.protocol.framing import DistConnection, Message
from pynode.runtime import Node
from pynode.runtime.signals import SPAWN_ERROR
from pynode.term import Atom, Pid, Reference, encode

pytestmark = pytest.mark.anyio

PEER = Atom("erl@127.0.0.1")
REMOTE = Pid("erl@127.0.0.1", 40, 0, 1)
DOWN, PROCESS = Atom("DOWN"), Atom("process")


class FakeConn:
    """What the handlers use of a connection: its peer, and what they send on it."""

    peer = PEER

    def __init__(self) -> None:
        self.sent: list[tuple[Any, Any]] = []

    def send_nowait(self, control: Any, payload: Any = NO_PAYLOAD) -> None:
        self.sent.append((control, payload))


@pytest.fixture
async def node() -> AsyncIterator[Node]:
    async with Node("sig@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as n:
        yield n


def by_dispatch(node: Node, conn: Any, control: tuple[Any, ...], payload: Any) -> bool:
    node.signals.dispatch(conn, Message(C.from_term(control, payload), payload))
    return True


def fast(node: Node, conn: Any, control: tuple[Any, ...], payload: Any) -> bool:
    return node.signals.deliver_signal(conn, control, payload)


WAYS = {"deliver_signal": fast, "dispatch": by_dispatch}


def scenario_spawn_reply(node: Node, how: Callable[..., bool], result: Any, flags: int) -> Any:
    conn = FakeConn()
    mb = node.mailbox()
    req = node.signals.spawn_async(conn, mb, "erlang", "abs", [-1])  # type: ignore[arg-type]
    assert conn.sent and conn.sent[0][0][0] == C.DOP.SPAWN_REQUEST
    assert how(node, conn, (C.DOP.SPAWN_REPLY, req, mb.pid, flags, result), NO_PAYLOAD)
    got = drain(mb)
    state = (dict(mb.monitors), dict(mb.links), got, req in node.signals._spawn_waits, conn.sent[1:])
    mb.close()
    node.signals.forget_spawn(req)
    return _norm(state, req)


def drain(mb: Any) -> list[Any]:
    got = []
    for _ in range(100):
        try:
            got.append(mb.receive_nowait())
        except anyio.WouldBlock:
            return got
    raise AssertionError("more than 100 messages")


def _norm(x: Any, *refs: Reference) -> Any:
    """``x`` with the scenario's own refs named, so two runs compare equal."""
    if isinstance(x, Reference):
        return f"ref{refs.index(x)}" if x in refs else x
    if isinstance(x, dict):
        return {_norm(k, *refs): _norm(v, *refs) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_norm(v, *refs) for v in x)
    return x


@pytest.mark.parametrize(("result", "flags"), [
    (REMOTE, C.SPAWN_REPLY_FLAG_MONITOR),  # erpc:call's answer, first half
    (Atom("system_limit"), 0),  # the spawn failed: a SPAWN_ERROR message
])
async def test_spawn_reply_does_what_dispatch_does(node: Node, result: Any, flags: int) -> None:
    fast_state = scenario_spawn_reply(node, fast, result, flags)
    assert fast_state == scenario_spawn_reply(node, by_dispatch, result, flags)
    monitors, _, got, waiting, _ = fast_state
    if type(result) is Pid:
        assert monitors == {"ref0": REMOTE} and got == []
    else:
        assert monitors == {} and got == [(SPAWN_ERROR, "ref0", result)] and not waiting


@pytest.mark.parametrize("payload_op", [True, False])
@pytest.mark.parametrize("from_proc", [REMOTE, Atom("registered")])
async def test_monitor_exit_does_what_dispatch_does(node: Node, payload_op: bool, from_proc: Any) -> None:
    results = {}
    for name, how in WAYS.items():
        mb = node.mailbox()
        ref = node.make_ref()
        mb.monitors[ref] = from_proc
        reason = (Atom("answer"), 42)
        if payload_op:
            taken = how(node, FakeConn(), (C.DOP.PAYLOAD_MONITOR_P_EXIT, from_proc, mb.pid, ref), reason)
        else:
            taken = how(node, FakeConn(), (C.DOP.MONITOR_P_EXIT, from_proc, mb.pid, ref, reason), NO_PAYLOAD)
        assert taken
        results[name] = _norm((drain(mb), dict(mb.monitors)), ref)
        mb.close()
    assert results["deliver_signal"] == results["dispatch"]
    assert results["deliver_signal"] == (
        [(DOWN, "ref0", PROCESS, from_proc, (Atom("answer"), 42))], {}
    )


async def test_spawn_request_does_what_dispatch_does(node: Node) -> None:
    """An unknown function: the SPAWN_REPLY, then the process dies with undef and its
    monitor (here a local watcher's) hears of it."""
    results = {}
    for name, how in WAYS.items():
        conn = FakeConn()
        watcher = node.mailbox()
        req = node.make_ref()
        watcher.monitors[req] = Atom("spawning")  # as spawn_request's caller notes it
        control = (C.DOP.SPAWN_REQUEST, req, watcher.pid, watcher.pid, (Atom("nomod"), Atom("nofun"), 1),
                   [Atom("monitor")])
        assert how(node, conn, control, [7])
        [(reply, _)] = conn.sent
        assert reply[:4] == (C.DOP.SPAWN_REPLY, req, watcher.pid, C.SPAWN_REPLY_FLAG_MONITOR)
        spawned = reply[4]
        assert type(spawned) is Pid and node.processes.local(spawned) is None  # it died
        results[name] = _norm((drain(watcher), req in node.processes.monitored), req)
        watcher.close()
    undef = (Atom("undef"), [(Atom("nomod"), Atom("nofun"), [7], [])])
    assert results["deliver_signal"] == results["dispatch"] == (
        [(DOWN, "ref0", PROCESS, Atom("spawning"), undef)], False
    )


BAD = [
    ([C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1, 2, 3)), REMOTE, 0, REMOTE], NO_PAYLOAD),  # a list
    ((float(C.DOP.SPAWN_REPLY), Reference("n@h", 1, (1, 2, 3)), REMOTE, 0, REMOTE), NO_PAYLOAD),
    ((), NO_PAYLOAD),
    (5, NO_PAYLOAD),
    (None, NO_PAYLOAD),
    ({C.DOP.SPAWN_REPLY: 1}, NO_PAYLOAD),
    ((C.DOP.SPAWN_REPLY, "req", REMOTE, 0, REMOTE), NO_PAYLOAD),  # not a ref
    ((C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1, 2, 3)), REMOTE, "0", REMOTE), NO_PAYLOAD),
    ((C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1, 2, 3)), REMOTE, 0, 5), NO_PAYLOAD),
    ((C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1, 2, 3)), REMOTE, 0), NO_PAYLOAD),  # short
    ((C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1, 2, 3)), REMOTE, 0, REMOTE), 1),  # a payload
    ((C.DOP.MONITOR_P_EXIT, REMOTE, Atom("x"), Reference("n@h", 1, (1,)), 1), NO_PAYLOAD),
    ((C.DOP.MONITOR_P_EXIT, 3, REMOTE, Reference("n@h", 1, (1,)), 1), NO_PAYLOAD),
    ((C.DOP.MONITOR_P_EXIT, REMOTE, REMOTE, Reference("n@h", 1, (1,))), NO_PAYLOAD),
    ((C.DOP.PAYLOAD_MONITOR_P_EXIT, REMOTE, REMOTE, "ref"), 1),
    ((C.DOP.PAYLOAD_MONITOR_P_EXIT, REMOTE, REMOTE, Reference("n@h", 1, (1,))), NO_PAYLOAD),
    ((C.DOP.SPAWN_REQUEST, Reference("n@h", 1, (1,)), REMOTE, REMOTE, (Atom("m"), Atom("f")), []), []),
    ((C.DOP.SPAWN_REQUEST, Reference("n@h", 1, (1,)), REMOTE, REMOTE, (Atom("m"), Atom("f"), 1), ()), []),
    ((C.DOP.SPAWN_REQUEST, Reference("n@h", 1, (1,)), REMOTE, 7, (Atom("m"), Atom("f"), 1), []), []),
    ((C.DOP.SPAWN_REQUEST, Reference("n@h", 1, (1,)), REMOTE, REMOTE, ("m", Atom("f"), 1), []), []),
    ((C.DOP.SPAWN_REQUEST, Reference("n@h", 1, (1,)), REMOTE, REMOTE, (Atom("m"), Atom("f"), 1), []),
     NO_PAYLOAD),
]


@pytest.mark.parametrize(("control", "payload"), BAD)
async def test_what_from_term_rejects_is_left_to_dispatch(node: Node, control: Any, payload: Any) -> None:
    with pytest.raises(ProtocolError):
        C.from_term(control, payload)
    conn = FakeConn()
    assert node.signals.deliver_signal(conn, control, payload) is False  # type: ignore[arg-type]
    assert conn.sent == []


@pytest.mark.parametrize(("control", "payload"), BAD)
async def test_a_malformed_signal_closes_the_connection_as_before(node: Node, control: Any, payload: Any) -> None:
    """Through the framing: the hook declines, from_term's ProtocolError ends the connection."""
    d = DistConnection(default_flags())
    d.deliver_signal = partial(node.signals.deliver_signal, FakeConn())
    body = b"\x70" + encode(control) + (b"" if payload is NO_PAYLOAD else encode(payload))
    d.receive_data(struct.pack(">I", len(body)) + body)
    with pytest.raises(ProtocolError):
        d.next_event()
    assert d.delivered == 0


@pytest.mark.parametrize("control", [
    (C.DOP.LINK, REMOTE, REMOTE),  # not an rpc signal
    (C.DOP.SPAWN_REPLY_TT, Reference("n@h", 1, (1,)), REMOTE, 0, REMOTE, Atom("token")),
    (C.DOP.SPAWN_REPLY, Reference("n@h", 1, (1,)), REMOTE, 0, True),  # 'true', a bool: from_term's care
])
async def test_other_packets_are_left_to_dispatch(node: Node, control: Any) -> None:
    C.from_term(control)  # well-formed: dispatch handles it
    assert node.signals.deliver_signal(FakeConn(), control, NO_PAYLOAD) is False  # type: ignore[arg-type]


class FailingConn(FakeConn):
    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def send_nowait(self, control: Any, payload: Any = NO_PAYLOAD) -> None:
        raise self.error


def _spawn_request(node: Node, watcher: Any) -> tuple[Any, ...]:
    return (C.DOP.SPAWN_REQUEST, node.make_ref(), watcher.pid, watcher.pid,
            (Atom("nomod"), Atom("nofun"), 0), [])


async def test_a_protocol_error_in_a_handler_ends_the_connection(node: Node) -> None:
    watcher = node.mailbox()
    with pytest.raises(ProtocolError, match="unusable"):
        node.signals.deliver_signal(FailingConn(ProtocolError("unusable")), _spawn_request(node, watcher), [])


async def test_a_bug_in_a_handler_is_logged_and_the_packet_taken(
    node: Node, caplog: pytest.LogCaptureFixture
) -> None:
    watcher = node.mailbox()
    control = _spawn_request(node, watcher)
    assert node.signals.deliver_signal(FailingConn(RuntimeError("a bug")), control, []) is True
    assert any("error handling" in r.getMessage() and str(PEER) in r.getMessage() for r in caplog.records)


class ExitConn(FakeConn):
    payload_exits = True  # what _down_over asks of a connection


def _served_call(node: Node, watcher: Pid) -> tuple[tuple[Any, ...], list[Any], Reference]:
    """erpc:call's SPAWN_REQUEST for py:abs(-3), served at once (no task), from ``watcher``."""
    res = node.make_ref()
    control = (C.DOP.SPAWN_REQUEST, node.make_ref(), watcher, watcher, (Atom("erpc"), Atom("execute_call"), 4),
               [Atom("monitor")])
    return control, [res, Atom("py"), Atom("abs"), [-3]], res


@pytest.mark.parametrize("how", list(WAYS))
async def test_a_call_served_at_once_answers_on_its_connection(node: Node, how: str) -> None:
    """The 'DOWN' carrying the result goes back on the connection the request came on."""
    node.expose("py", "abs")(abs)
    conn = ExitConn()
    control, args, res = _served_call(node, REMOTE)
    assert WAYS[how](node, conn, control, args)
    [(reply, _), (down, reason)] = conn.sent
    spawned = reply[4]
    assert reply[:4] == (C.DOP.SPAWN_REPLY, control[1], REMOTE, C.SPAWN_REPLY_FLAG_MONITOR)
    assert down == (C.DOP.PAYLOAD_MONITOR_P_EXIT, spawned, REMOTE, control[1])
    assert reason[0] == res and 3 in reason[1:]  # the result, under the call's ref


async def test_a_call_for_a_watcher_elsewhere_is_answered_as_before(node: Node) -> None:
    """A request naming a watcher not of the requesting peer: the 'DOWN' goes where that
    watcher is (a local mailbox here), never back on the requester's connection."""
    node.expose("py", "abs")(abs)
    watcher = node.mailbox()
    conn = ExitConn()
    control, args, res = _served_call(node, watcher.pid)
    watcher.monitors[control[1]] = Atom("spawning")
    assert node.signals.deliver_signal(conn, control, args)  # type: ignore[arg-type]
    [(reply, _)] = conn.sent  # the SPAWN_REPLY only
    [down] = drain(watcher)
    assert down[:4] == (DOWN, control[1], PROCESS, Atom("spawning")) and down[4][0] == res
    # and a watcher of a third node, with no connection: nothing more is sent on conn
    conn = ExitConn()
    control, args, _ = _served_call(node, Pid("third@127.0.0.1", 9, 0, 1))
    assert node.signals.deliver_signal(conn, control, args)  # type: ignore[arg-type]
    assert [c[0] for c, _ in conn.sent] == [C.DOP.SPAWN_REPLY]
