"""The per-peer transport policy and tick times, and what a node advertises: no sockets."""

from __future__ import annotations

import pytest

from pynode.protocol.epmd import NodeEntry
from pynode.protocol.transports import PROTO_TCP, PROTO_UNIX, Route, TcpEndpoint, UnixEndpoint
from pynode.runtime.advertise import entries, primary_index
from pynode.runtime.listeners import Listening
from pynode.runtime.policy import Rule, TransportPolicy, default_local_hosts

TCP = NodeEntry("n", 4000, 77, PROTO_TCP, 6, 5, b"")
TCP6 = NodeEntry("n", 4001, 77, PROTO_TCP, 6, 5, b"::1")
UNIX = NodeEntry("n", 1, 77, PROTO_UNIX, 6, 5, b"/run/n.sock")
TLS = NodeEntry("n", 4002, 77, 2, 6, 5, b"")  # a protocol this dialler does not know
ALL = [TCP, UNIX, TCP6, TLS]

R_TCP = Route(TcpEndpoint("box", 4000))
R_TCP6 = Route(TcpEndpoint("::1", 4001))
R_UNIX = Route(UnixEndpoint("/run/n.sock"))


def policy(*rules: Rule, **kw: object) -> TransportPolicy:
    return TransportPolicy(rules, local_hosts=["box"], **kw)  # type: ignore[arg-type]


def test_auto_prefers_unix_on_this_host_only() -> None:
    p = policy()
    assert p.routes("n@box", ALL) == [R_UNIX, R_TCP, R_TCP6]
    assert p.routes("n@BOX", ALL)[0] == Route(UnixEndpoint("/run/n.sock"))  # host names ignore case
    far = p.routes("n@far", ALL)
    assert far == [Route(TcpEndpoint("far", 4000)), R_TCP6]
    assert p.routes("n@127.0.0.2", [UNIX]) == [R_UNIX]  # all of 127/8 is this host
    assert p.routes("n@box", [TLS]) == []


def test_rules_first_match_wins_then_default() -> None:
    p = policy(
        Rule("db*@*", transport="tcp"),
        Rule("d*@*", transport="unix"),
        Rule("*@far", ticktime=5),  # sets no transport: skipped for the transport choice
        default="tcp",
    )
    assert p.transport_for("db1@box") == "tcp"
    assert p.transport_for("dx@box") == "unix"
    assert p.transport_for("n@far") == "tcp"  # the default
    assert p.routes("db1@box", ALL) == [R_TCP, R_TCP6]
    assert p.routes("dx@far", ALL) == [R_UNIX]  # "unix" forced even for another host
    assert p.routes("dx@box", [TCP]) == []  # nothing allowed: the connector reports it
    assert not p.needs_advertised("db1@box") and p.needs_advertised("dx@box")


def test_glob_is_case_sensitive_like_node_names() -> None:
    p = policy(Rule("Web*@*", transport="tcp"))
    assert p.transport_for("Web1@box") == "tcp" and p.transport_for("web1@box") == "auto"


def test_ticktime_order() -> None:
    p = policy(Rule("a*@*", ticktime=30), Rule("*", ticktime=40))
    assert p.ticktime_for("ab@h") == 30 and p.ticktime_for("x@h") == 40
    p.ticktimes = {"a*@*": 10, "ab@h": 20}
    assert p.ticktime_for("ab@h") == 20  # an exact name beats a glob
    assert p.ticktime_for("ac@h") == 10
    assert p.ticktime_for("x@h") == 40  # the mapping does not match: the rules
    p.ticktimes = lambda name: 3.5 if name == "x@h" else None
    assert p.ticktime_for("x@h") == 3.5 and p.ticktime_for("ab@h") == 30
    assert TransportPolicy().ticktime_for("x@h") is None


@pytest.mark.parametrize("bad", [0, -1, "10", None])
def test_bad_ticktimes(bad: object) -> None:
    p = policy(ticktimes={"x@h": bad})
    with pytest.raises(ValueError, match="x@h"):
        p.ticktime_for("x@h")


def test_bad_rules_and_defaults() -> None:
    with pytest.raises(ValueError):
        Rule("*", transport="udp")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        Rule("*", ticktime=0)
    with pytest.raises(ValueError):
        TransportPolicy(default="sctp")  # type: ignore[arg-type]


def test_local_hosts() -> None:
    assert "localhost" in default_local_hosts()
    p = TransportPolicy(local_hosts=[])
    assert not p.is_local("myhost") and p.is_local("127.0.0.1")
    p.add_local_host("MyHost")
    assert p.is_local("myhost")


async def _nothing() -> None:
    pass


def listening(*endpoints: TcpEndpoint | UnixEndpoint) -> list[Listening]:
    return [Listening(e, _nothing) for e in endpoints]


def test_what_a_node_advertises() -> None:
    ls = listening(
        UnixEndpoint("/run/a.sock"),
        TcpEndpoint("127.0.0.1", 4000),
        TcpEndpoint("::1", 4001),
        TcpEndpoint(None, 4002),
        UnixEndpoint("/run/b.sock"),
    )
    assert primary_index(ls) == 1  # the first TCP listener goes in ALIVE2
    assert entries(ls) == [
        (PROTO_UNIX, 1, b"/run/a.sock"),
        (PROTO_TCP, 4000, b""),
        (PROTO_TCP, 4001, b"::1"),
        (PROTO_TCP, 4002, b""),  # every interface: the name's host part
        (PROTO_UNIX, 2, b"/run/b.sock"),
    ]
    assert primary_index(listening(UnixEndpoint("/run/a.sock"))) == 0
