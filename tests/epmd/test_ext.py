"""Extension requests and replies, sans-IO: encodings, incremental client, unsupported."""

from __future__ import annotations

import pytest

from pynode.protocol._common import NEED_DATA
from pynode.protocol.epmd import ALIVE2_REQ, Alive2Request, NodeEntry
from pynode.protocol.epmd_ext import (
    ADD_TRANSPORT_REQ,
    NODES_RESP,
    PREFIX_REQ,
    TRANSPORTS_REQ,
    AddTransportRequest,
    ExtClient,
    ExtensionUnsupported,
    NodesResponse,
    PrefixRequest,
    ResultResponse,
    TransportsRequest,
    encode_nodes_response,
    encode_result_response,
    parse_ext_request,
    parse_nodes_reply,
    parse_result_reply,
)
from pynode.protocol.errors import EpmdProtocolError


def test_tags_are_not_epmd_tags() -> None:
    epmd_tags = {120, 122, 121, 118, 119, 110, 100, 107, 115, 97, 112, 89}  # incl. old R3 ones
    assert {PREFIX_REQ, TRANSPORTS_REQ, ADD_TRANSPORT_REQ, NODES_RESP, 82}.isdisjoint(epmd_tags)


@pytest.mark.parametrize(
    "req",
    [
        PrefixRequest(""),
        PrefixRequest("wéb"),
        TransportsRequest("node1"),
        AddTransportRequest("n", 4000, 3, 72, 6, 5, b"x"),
    ],
)
def test_request_round_trip(req: object) -> None:
    data = req.encode()  # type: ignore[attr-defined]
    assert int.from_bytes(data[:2], "big") == len(data) - 2
    assert parse_ext_request(data[2:]) == req


def test_add_transport_is_alive2_under_another_tag() -> None:
    a = Alive2Request("n", 4000, 77, 3, 6, 5, b"x").encode()
    t = AddTransportRequest("n", 4000, 3, 77, 6, 5, b"x").encode()
    assert t[2] == ADD_TRANSPORT_REQ and a[2] == ALIVE2_REQ and t[3:] == a[3:]


@pytest.mark.parametrize("bad", [b"P\x00", b"L", b"L\xff", b"T\x00", b"x", b""])
def test_bad_requests(bad: bytes) -> None:
    with pytest.raises(EpmdProtocolError):
        parse_ext_request(bad)


def test_replies() -> None:
    entries = [NodeEntry("a", 1), NodeEntry("ü", 2, 72, 1, 6, 5, b"ex")]
    data = encode_nodes_response(entries)
    assert data[:3] == b"N\x00\x02"
    assert parse_nodes_reply(data) == entries
    assert parse_nodes_reply(encode_nodes_response([])) == []
    assert parse_result_reply(encode_result_response(2)) == 2
    with pytest.raises(EpmdProtocolError):
        parse_nodes_reply(data[:-1])
    with pytest.raises(EpmdProtocolError):
        parse_nodes_reply(data + b"x")


def test_client_trickle() -> None:
    entries = [NodeEntry("a", 1), NodeEntry("b", 2)]
    c = ExtClient(PrefixRequest(""))
    assert c.data_to_send() == PrefixRequest("").encode() and c.data_to_send() == b""
    data = encode_nodes_response(entries)
    for b in data[:-1]:
        c.receive_data(bytes([b]))
        assert c.next_event() is NEED_DATA
    c.receive_data(data[-1:])
    assert c.next_event() == NodesResponse(tuple(entries))
    assert c.next_event() is NEED_DATA
    c.receive_eof()
    assert c.next_event() is None


def test_client_result_and_extra_bytes() -> None:
    c = ExtClient(AddTransportRequest("a", 1, 1))
    c.receive_data(b"R\x00")
    assert c.next_event() == ResultResponse(0)
    with pytest.raises(EpmdProtocolError):
        c.receive_data(b"x")


def test_client_sees_unsupported() -> None:
    c = ExtClient(TransportsRequest("a"))
    c.receive_eof()
    with pytest.raises(ExtensionUnsupported):
        c.next_event()
    c = ExtClient(TransportsRequest("a"))
    c.receive_data(b"N\x00")
    c.receive_eof()
    with pytest.raises(EpmdProtocolError) as e:
        c.next_event()
    assert not isinstance(e.value, ExtensionUnsupported)
