
import pytest

from pynode.protocol import NO_PAYLOAD, ProtocolError
from pynode.protocol import control as c
from pynode.protocol.flags import DFlag, default_flags
from pynode.protocol.framing import DistConnection, Message
from pynode.term.types import Atom, Pid, Reference

P1 = Pid("a@host", 1, 0, 5)
P2 = Pid("b@host", 2, 3, 6)
REF = Reference("a@host", 5, (1, 2, 3))
TOKEN = (0, Atom("label"), 1, P1, P2)
NAME = Atom("net_kernel")

CASES = [
    (c.Link(P1, P2), (1, P1, P2), False),
    (c.Send(P2), (2, Atom(""), P2), True),
    (c.Exit(P1, P2, Atom("normal")), (3, P1, P2, Atom("normal")), False),
    (c.Unlink(P1, P2), (4, P1, P2), False),
    (c.NodeLink(), (5,), False),
    (c.RegSend(P1, NAME), (6, P1, Atom(""), NAME), True),
    (c.GroupLeader(P1, P2), (7, P1, P2), False),
    (c.Exit2(P1, P2, Atom("kill")), (8, P1, P2, Atom("kill")), False),
    (c.SendTT(P2, TOKEN), (12, Atom(""), P2, TOKEN), True),
    (c.ExitTT(P1, P2, TOKEN, 1), (13, P1, P2, TOKEN, 1), False),
    (c.RegSendTT(P1, NAME, TOKEN), (16, P1, Atom(""), NAME, TOKEN), True),
    (c.Exit2TT(P1, P2, TOKEN, 2), (18, P1, P2, TOKEN, 2), False),
    (c.MonitorP(P1, P2, REF), (19, P1, P2, REF), False),
    (c.MonitorP(P1, NAME, REF), (19, P1, NAME, REF), False),
    (c.DemonitorP(P1, NAME, REF), (20, P1, NAME, REF), False),
    (c.MonitorPExit(NAME, P1, REF, Atom("noproc")), (21, NAME, P1, REF, Atom("noproc")), False),
    (c.SendSender(P1, P2), (22, P1, P2), True),
    (c.SendSenderTT(P1, P2, TOKEN), (23, P1, P2, TOKEN), True),
    (c.PayloadExit(P1, P2), (24, P1, P2), True),
    (c.PayloadExitTT(P1, P2, TOKEN), (25, P1, P2, TOKEN), True),
    (c.PayloadExit2(P1, P2), (26, P1, P2), True),
    (c.PayloadExit2TT(P1, P2, TOKEN), (27, P1, P2, TOKEN), True),
    (c.PayloadMonitorPExit(P2, P1, REF), (28, P2, P1, REF), True),
    (
        c.SpawnRequest(REF, P1, P2, Atom("erpc"), Atom("execute_call"), 4, [Atom("monitor")]),
        (29, REF, P1, P2, (Atom("erpc"), Atom("execute_call"), 4), [Atom("monitor")]),
        True,
    ),
    (
        c.SpawnRequestTT(REF, P1, P2, Atom("m"), Atom("f"), 0, [], TOKEN),
        (30, REF, P1, P2, (Atom("m"), Atom("f"), 0), [], TOKEN),
        True,
    ),
    (c.SpawnReply(REF, P1, 2, P2), (31, REF, P1, 2, P2), False),
    (c.SpawnReply(REF, P1, 0, Atom("badarg")), (31, REF, P1, 0, Atom("badarg")), False),
    (c.SpawnReplyTT(REF, P1, 3, P2, TOKEN), (32, REF, P1, 3, P2, TOKEN), False),
    (c.AliasSend(P1, REF), (33, P1, REF), True),
    (c.AliasSendTT(P1, REF, TOKEN), (34, P1, REF, TOKEN), True),
    (c.UnlinkId(1 << 63, P1, P2), (35, 1 << 63, P1, P2), False),
    (c.UnlinkIdAck(7, P2, P1), (36, 7, P2, P1), False),
    (c.AltactSigSend(4, P1, REF), (37, 4, P1, REF), True),
    (c.AltactSigSend(2 | 8, P1, NAME, TOKEN), (37, 10, P1, NAME, TOKEN), True),
    (c.AltactSigSend(1 | 64, P1, P2), (37, 65, P1, P2), True),  # unknown flag bit kept
]


@pytest.mark.parametrize("msg, term, has_payload", CASES, ids=lambda x: type(x).__name__)
def test_to_term_and_back(msg, term, has_payload):
    assert msg.to_term() == term
    assert msg.OP == term[0]
    assert type(msg).HAS_PAYLOAD is has_payload
    payload = [1, 2] if has_payload else NO_PAYLOAD
    back = c.from_term(term, payload)
    assert back == msg and type(back) is type(msg)
    assert c.ControlMessage.from_term(term, payload) == msg
    # built without calling the class (slot setters), yet the same in every way
    assert repr(back) == repr(msg)
    if not isinstance(msg, c.SpawnRequest):  # its opts list makes it unhashable
        assert hash(back) == hash(msg)
    for name in type(msg)._FIELDS:
        value = getattr(back, name)
        assert value == getattr(msg, name) and type(value) is type(getattr(msg, name))
        with pytest.raises(AttributeError):
            setattr(back, name, value)


@pytest.mark.parametrize(
    "flags", [default_flags(), default_flags(fragments=True)], ids=["pass-through", "dist-header"]
)
@pytest.mark.parametrize("msg, term, has_payload", CASES, ids=lambda x: type(x).__name__)
def test_through_the_wire(flags, msg, term, has_payload):
    sender, receiver = DistConnection(flags), DistConnection(flags)
    payload = {Atom("k"): (1.5, b"bin", [1, 2])} if has_payload else NO_PAYLOAD
    receiver.receive_data(sender.send(msg, payload))
    assert receiver.next_event() == Message(msg, payload)


def test_spawn_request_fields():
    msg = c.from_term(
        (29, REF, P1, P2, (Atom("erpc"), Atom("execute_call"), 4), [Atom("monitor")]), [1]
    )
    assert msg.mfa == (Atom("erpc"), Atom("execute_call"), 4)
    assert msg.opts == [Atom("monitor")]


def test_bool_atoms_become_atoms_in_name_positions():
    msg = c.from_term((6, P1, Atom(""), True), 1)
    assert msg.to_name == Atom("true") and type(msg.to_name) is Atom


@pytest.mark.parametrize(
    "term, payload, match",
    [
        ((99, P1), NO_PAYLOAD, "unknown distribution operation"),
        ((9,), NO_PAYLOAD, "unknown distribution operation"),
        (("1", P1, P2), NO_PAYLOAD, "unknown"),
        ((), NO_PAYLOAD, "non-empty tuple"),
        ([1, P1, P2], NO_PAYLOAD, "non-empty tuple"),
        (Atom("link"), NO_PAYLOAD, "non-empty tuple"),
        ((1, P1), NO_PAYLOAD, "elements"),
        ((1, P1, P2, P2), NO_PAYLOAD, "elements"),
        ((1, P1, Atom("x")), NO_PAYLOAD, "pid"),
        ((2, Atom(""), NAME), 1, "pid"),
        ((6, P1, Atom(""), "notatom"), 1, "atom"),
        ((19, P1, 5, REF), NO_PAYLOAD, "pid or a registered name"),
        ((19, P1, P2, P1), NO_PAYLOAD, "reference"),
        ((35, "1", P1, P2), NO_PAYLOAD, "integer"),
        ((35, True, P1, P2), NO_PAYLOAD, "integer"),
        ((29, REF, P1, P2, (Atom("m"), Atom("f")), []), [], "Module"),
        ((29, REF, P1, P2, (Atom("m"), Atom("f"), 0), ()), [], "list"),
        ((29, REF, P1, P2, (Atom("m"), Atom("f"), 0)), [], "elements"),
        ((31, REF, P1, 0, 1.5), NO_PAYLOAD, "pid or an atom"),
        ((33, P1, P2), 1, "reference"),
        ((37, 0, P1), 1, "4 or 5"),
        ((37, 0, P1, 1.0), 1, "alias"),
        ((2, Atom(""), P2), NO_PAYLOAD, "needs a payload"),
        ((1, P1, P2), 5, "takes no payload"),
    ],
)
def test_malformed(term, payload, match):
    with pytest.raises(ProtocolError, match=match):
        c.from_term(term, payload)


def test_raw_tuple_can_be_sent():
    sender, receiver = DistConnection(DFlag(0)), DistConnection(DFlag(0))
    receiver.receive_data(sender.send((22, P1, P2), Atom("hi")))
    assert receiver.next_event() == Message(c.SendSender(P1, P2), Atom("hi"))
