"""Endpoint syntax and the EPMD advertisement encoding of transports, without sockets."""

from __future__ import annotations

import pytest

from pynode.protocol.epmd import NodeEntry
from pynode.protocol.epmd_ext import encode_nodes_response, parse_nodes_reply
from pynode.protocol.transports import (
    PROTO_TCP,
    PROTO_UNIX,
    Route,
    TcpEndpoint,
    UnixEndpoint,
    advertisement,
    entry_route,
    parse_endpoint,
)


@pytest.mark.parametrize(
    ("spec", "endpoint"),
    [
        ("tcp://127.0.0.1:4000", TcpEndpoint("127.0.0.1", 4000)),
        ("tcp://[::1]:0", TcpEndpoint("::1", 0)),
        ("tcp://:5000", TcpEndpoint(None, 5000)),
        ("localhost:6000", TcpEndpoint("localhost", 6000)),
        ("unix:/tmp/a.sock", UnixEndpoint("/tmp/a.sock")),
        ("unix:///tmp/a.sock", UnixEndpoint("/tmp/a.sock")),
        ("unix:rel.sock", UnixEndpoint("rel.sock")),
    ],
)
def test_parse_endpoint(spec: str, endpoint: object) -> None:
    assert parse_endpoint(spec) == endpoint
    assert parse_endpoint(endpoint) is endpoint  # type: ignore[arg-type]
    assert parse_endpoint(str(endpoint)) == endpoint  # str() is parseable again


@pytest.mark.parametrize(
    "bad", ["", "nocolon", "tcp://h:x", "tcp://h:70000", "unix:", "unix:/a\0b", "unix:/" + "a" * 107]
)
def test_bad_endpoints(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_endpoint(bad)


def test_bad_endpoint_type() -> None:
    with pytest.raises(ValueError):
        parse_endpoint(4000)  # type: ignore[arg-type]


def test_advertisement_round_trips_through_a_nodes_reply() -> None:
    ads = [
        advertisement(TcpEndpoint("127.0.0.1", 4000)),  # primary: the name's host
        advertisement(TcpEndpoint("::1", 4001), default_host=False),
        advertisement(UnixEndpoint("/run/n.sock"), 1),
        advertisement(UnixEndpoint("/run/m.sock"), 2),
    ]
    assert ads == [
        (PROTO_TCP, 4000, b""),
        (PROTO_TCP, 4001, b"::1"),
        (PROTO_UNIX, 1, b"/run/n.sock"),
        (PROTO_UNIX, 2, b"/run/m.sock"),
    ]
    entries = [NodeEntry("n", port, 77, proto, 6, 5, extra) for proto, port, extra in ads]
    back = parse_nodes_reply(encode_nodes_response(entries))
    assert [entry_route(e, "h.example") for e in back] == [
        Route(TcpEndpoint("h.example", 4000)),
        Route(TcpEndpoint("::1", 4001)),
        Route(UnixEndpoint("/run/n.sock")),
        Route(UnixEndpoint("/run/m.sock")),
    ]


def test_entry_route_version_and_unknowns() -> None:
    old = NodeEntry("n", 4000, 77, PROTO_TCP, 5, 5)
    assert entry_route(old, "h") == Route(TcpEndpoint("h", 4000), 5)
    assert entry_route(NodeEntry("n", 4000, 77, 2, 6, 5, b"tls"), "h") is None  # unknown protocol
    assert entry_route(NodeEntry("n", 1, 77, PROTO_UNIX, 6, 5, b""), "h") is None  # no path
    assert entry_route(NodeEntry("n", 4000, 77, PROTO_TCP, 6, 5, b"\xff"), "h") is None  # not UTF-8
