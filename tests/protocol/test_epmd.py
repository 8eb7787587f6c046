import struct

import pytest

from pynode.protocol import NEED_DATA
from pynode.protocol.epmd import (
    CLOSED,
    MAX_REQUEST_SIZE,
    Alive2Request,
    Alive2Response,
    DumpRequest,
    DumpResponse,
    EpmdClient,
    EpmdProtocolError,
    KillRequest,
    KillResponse,
    NamesRequest,
    NamesResponse,
    NodeEntry,
    NodeType,
    Port2Response,
    PortPlease2Request,
    RequestReader,
    StopRequest,
    StopResponse,
    encode_alive2_response,
    encode_dump_response,
    encode_kill_response,
    encode_names_response,
    encode_port2_response,
    encode_request,
    encode_stop_response,
    parse_alive2_response,
    parse_dump_response,
    parse_kill_response,
    parse_names_response,
    parse_port2_response,
    parse_request,
    parse_stop_response,
    validate_node_name,
)

# ------------------------------------------------------------------ requests, golden bytes


def test_alive2_request_golden_bytes():
    req = Alive2Request("foo", 4000)
    body = bytes([120]) + struct.pack(">HBBHHH", 4000, 77, 0, 6, 5, 3) + b"foo" + b"\x00\x00"
    assert req.encode() == struct.pack(">H", len(body)) + body
    assert encode_request(req) == req.encode()


def test_alive2_request_hidden_and_extra():
    req = Alive2Request("h", 1, NodeType.HIDDEN, extra=b"xy")
    raw = req.encode()
    assert raw[5] == 72
    assert raw.endswith(b"\x00\x02xy")
    assert parse_request(raw[2:]) == req


@pytest.mark.parametrize(
    "req, body",
    [
        (PortPlease2Request("foo"), b"zfoo"),
        (NamesRequest(), b"n"),
        (DumpRequest(), b"d"),
        (KillRequest(), b"k"),
        (StopRequest("foo"), b"sfoo"),
    ],
)
def test_simple_requests_round_trip(req, body):
    assert req.encode() == struct.pack(">H", len(body)) + body
    assert parse_request(body) == req


def test_alive2_request_round_trip_unicode():
    req = Alive2Request("nöde_ü", 65535, NodeType.NORMAL, 0, 6, 6)
    assert parse_request(req.encode()[2:]) == req


def test_port_please_tolerates_trailing_nul():
    assert parse_request(b"zfoo\x00") == PortPlease2Request("foo")


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"\x01",
        b"x" + b"\x00" * 12,  # too short for ALIVE2 (epmd needs > 13 bytes)
        bytes([120]) + struct.pack(">HBBHHH", 1, 77, 0, 6, 5, 50) + b"abc" + b"\x00\x00",
        bytes([120]) + struct.pack(">HBBHHH", 1, 77, 0, 6, 5, 3) + b"abc" + b"\x00\x09",
        bytes([120]) + struct.pack(">HBBHHH", 1, 77, 0, 6, 5, 3) + b"a\x00c" + b"\x00\x00",
        b"z",
        b"za\x00b",
        b"z\xff\xfe",
        b"s",
    ],
)
def test_bad_requests(body):
    with pytest.raises(EpmdProtocolError):
        parse_request(body)


# ------------------------------------------------------------------------ name validation


def test_name_validation():
    assert validate_node_name("abc") == b"abc"
    assert validate_node_name("é" * 255) == "é".encode() * 255  # 255 chars, 510 bytes
    assert validate_node_name("😀" * 255) == "😀".encode() * 255  # 1020 bytes
    for bad in ["", "a\x00b", "x" * 256, b"\xc3", b"", "\ud800"]:
        with pytest.raises(EpmdProtocolError):
            validate_node_name(bad)
    with pytest.raises(EpmdProtocolError):
        Alive2Request("a" * 256, 1).encode()
    with pytest.raises(EpmdProtocolError):
        Alive2Request("a", 70000).encode()
    with pytest.raises(EpmdProtocolError):
        PortPlease2Request("a\x00").encode()


# ------------------------------------------------------------------- server request reader


def test_request_reader_partial_and_pipelined():
    reader = RequestReader()
    data = Alive2Request("foo", 4000).encode() + NamesRequest().encode()
    for byte in data[:-1]:
        reader.receive_data(bytes([byte]))
    assert reader.next_request() == Alive2Request("foo", 4000)
    assert reader.next_request() is NEED_DATA
    reader.receive_data(data[-1:])
    assert reader.next_request() == NamesRequest()
    assert reader.next_request() is NEED_DATA
    reader.receive_eof()
    assert reader.next_request() is CLOSED


def test_request_reader_errors():
    reader = RequestReader()
    reader.receive_data(b"\x00\x00")
    with pytest.raises(EpmdProtocolError, match="zero-length"):
        reader.next_request()
    reader = RequestReader()
    reader.receive_data(struct.pack(">H", MAX_REQUEST_SIZE + 1))
    with pytest.raises(EpmdProtocolError, match="exceeds"):
        reader.next_request()
    reader = RequestReader()
    reader.receive_data(b"\x00\x05zfo")
    reader.receive_eof()
    with pytest.raises(EpmdProtocolError, match="closed inside"):
        reader.next_request()
    reader = RequestReader()
    reader.receive_data(b"\x00\x01\x07")
    with pytest.raises(EpmdProtocolError, match="unknown EPMD request"):
        reader.next_request()


# ------------------------------------------------------------------------------ responses


def test_response_encoders_golden():
    assert encode_alive2_response(0, 0x01020304) == b"v\x00\x01\x02\x03\x04"
    assert encode_alive2_response(1, 99, extended=False) == b"y\x01\x00\x63"
    assert encode_port2_response(None) == b"w\x01"
    entry = NodeEntry("foo", 4000, NodeType.HIDDEN, 0, 6, 5, b"")
    assert encode_port2_response(entry) == (
        b"w\x00" + struct.pack(">HBBHHH", 4000, 72, 0, 6, 5, 3) + b"foo\x00\x00"
    )
    assert encode_names_response(4369, [("a", 1), ("b", 2)]) == (
        b"\x00\x00\x11\x11name a at port 1\nname b at port 2\n"
    )
    assert encode_kill_response(True) == b"OK" and encode_kill_response(False) == b"NO"
    assert encode_stop_response(True) == b"STOPPED"
    assert encode_stop_response(False) == b"NOEXIST"
    with pytest.raises(EpmdProtocolError):
        encode_port2_response(None, result=0)
    with pytest.raises(EpmdProtocolError):
        encode_alive2_response(0, 1 << 32)


def test_whole_reply_parsers():
    assert parse_alive2_response(b"v\x00\x00\x00\x00\x07") == Alive2Response(0, 7, True)
    assert parse_alive2_response(b"y\x01\x00\x63") == Alive2Response(1, 99, False)
    assert not parse_alive2_response(b"y\x01\x00\x63").ok
    assert parse_port2_response(b"w\x01") == Port2Response(1, None)
    assert parse_kill_response(b"NO") == KillResponse(False)
    assert parse_stop_response(b"NOEXIST") == StopResponse(False)
    with pytest.raises(EpmdProtocolError, match="truncated"):
        parse_alive2_response(b"v\x00\x00")
    with pytest.raises(EpmdProtocolError, match="unexpected"):
        parse_alive2_response(b"v\x00\x00\x00\x00\x07!")
    with pytest.raises(EpmdProtocolError, match="garbage"):
        parse_alive2_response(b"xx\x00\x00")
    with pytest.raises(EpmdProtocolError, match="garbage"):
        parse_kill_response(b"KO")


def feed_bytewise(client: EpmdClient, data: bytes, *, eof: bool):
    """Feed one byte at a time; the reply must appear only when it is complete."""
    events = []
    for byte in data:
        client.receive_data(bytes([byte]))
        ev = client.next_event()
        if ev is not NEED_DATA:
            events.append(ev)
    if eof:
        client.receive_eof()
        ev = client.next_event()
        events.append(ev)
    return events


def test_client_alive2_x_resp_in_pieces():
    client = EpmdClient(Alive2Request("foo", 4000))
    assert client.data_to_send() == Alive2Request("foo", 4000).encode()
    assert client.data_to_send() == b""
    events = feed_bytewise(client, encode_alive2_response(0, 0xDEADBEEF), eof=False)
    assert events == [Alive2Response(0, 0xDEADBEEF, True)]
    assert events[0].ok
    assert client.next_event() is NEED_DATA  # the registration connection stays open
    client.receive_eof()
    assert client.next_event() is CLOSED


def test_client_alive2_old_resp_and_duplicate():
    client = EpmdClient(Alive2Request("foo", 4000, highest=5))
    events = feed_bytewise(client, encode_alive2_response(1, 99, extended=False), eof=False)
    assert events == [Alive2Response(1, 99, False)]


def test_client_data_after_reply_is_an_error():
    client = EpmdClient(Alive2Request("foo", 1))
    client.receive_data(encode_alive2_response(0, 1))
    assert client.next_event() == Alive2Response(0, 1, True)
    with pytest.raises(EpmdProtocolError, match="unexpected"):
        client.receive_data(b"\x00")
    client = EpmdClient(Alive2Request("foo", 1))
    client.receive_data(encode_alive2_response(0, 1) + b"\x00")
    with pytest.raises(EpmdProtocolError, match="unexpected"):
        client.next_event()


def test_client_port2_found_in_pieces():
    entry = NodeEntry("bär", 51234, NodeType.NORMAL, 0, 6, 5, b"extra")
    client = EpmdClient(PortPlease2Request("bär"))
    events = feed_bytewise(client, encode_port2_response(entry), eof=True)
    assert events == [Port2Response(0, entry), CLOSED]
    assert events[0].found


def test_client_port2_not_found():
    client = EpmdClient(PortPlease2Request("nobody"))
    events = feed_bytewise(client, b"w\x01", eof=True)
    assert events == [Port2Response(1, None), CLOSED]
    assert not events[0].found


def test_client_eof_before_complete_reply():
    client = EpmdClient(PortPlease2Request("x"))
    client.receive_data(b"w\x00\x10")
    assert client.next_event() is NEED_DATA
    client.receive_eof()
    with pytest.raises(EpmdProtocolError, match="before a complete reply"):
        client.next_event()


def test_client_names_in_pieces():
    data = encode_names_response(4369, [("foo", 4000), ("bär", 4001), ("a b", 7)])
    client = EpmdClient(NamesRequest(), epmd_port=4369)
    events = feed_bytewise(client, data, eof=True)  # the reply ends when EPMD closes
    assert events == [NamesResponse(4369, (("foo", 4000), ("bär", 4001), ("a b", 7)))]
    assert client.next_event() is CLOSED


def test_names_parsing_skips_garbage_and_incomplete_lines():
    data = (
        b"\x00\x00\x11\x11"
        b"name foo at port 4000\n"
        b"garbage line\n"
        b"name bad at port x\n"
        b"name trailing at port 12"  # no newline: incomplete, dropped like erl_epmd
    )
    assert parse_names_response(data) == NamesResponse(4369, (("foo", 4000),))
    assert parse_names_response(b"\x00\x00\x11\x11") == NamesResponse(4369, ())
    with pytest.raises(EpmdProtocolError):
        parse_names_response(b"\x00\x00")


def test_names_wrong_epmd_port():
    client = EpmdClient(NamesRequest(), epmd_port=4369)
    client.receive_data(encode_names_response(5000, []))
    client.receive_eof()
    with pytest.raises(EpmdProtocolError, match="5000"):
        client.next_event()


def test_dump():
    data = encode_dump_response(4369, [("foo", 4000, 5)], [("old", 4001, -1)])
    assert b"\x00" in data[4:]
    reply = parse_dump_response(data)
    assert reply == DumpResponse(
        4369,
        (
            "active name     <foo> at port 4000, fd = 5",
            "old/unused name <old>, port = 4001, fd = -1 ",
        ),
    )
    client = EpmdClient(DumpRequest())
    assert feed_bytewise(client, data, eof=True) == [reply]
    assert client.next_event() is CLOSED


def test_kill_and_stop_clients():
    client = EpmdClient(KillRequest())
    assert feed_bytewise(client, b"OK", eof=True) == [KillResponse(True), CLOSED]
    client = EpmdClient(KillRequest())
    assert feed_bytewise(client, b"NO", eof=False) == [KillResponse(False)]
    client = EpmdClient(StopRequest("foo"))
    assert feed_bytewise(client, b"STOPPED", eof=True) == [StopResponse(True), CLOSED]
    client = EpmdClient(StopRequest("foo"))
    assert feed_bytewise(client, b"NOEXIST", eof=False) == [StopResponse(False)]


def test_response_objects_encode():
    for reply in [
        Alive2Response(0, 5),
        Alive2Response(0, 5, extended=False),
        Port2Response(1),
        Port2Response(0, NodeEntry("x", 1)),
        NamesResponse(4369, (("x", 1),)),
        KillResponse(True),
        StopResponse(False),
    ]:
        parser = {
            Alive2Response: parse_alive2_response,
            Port2Response: parse_port2_response,
            NamesResponse: parse_names_response,
            KillResponse: parse_kill_response,
            StopResponse: parse_stop_response,
        }[type(reply)]
        assert parser(reply.encode()) == reply


def test_empty_data_is_ignored():
    client = EpmdClient(NamesRequest())
    client.receive_data(b"")
    assert client.next_event() is NEED_DATA
    reader = RequestReader()
    reader.receive_data(b"")
    assert reader.next_request() is NEED_DATA
    reader.receive_eof()
    with pytest.raises(EpmdProtocolError):
        reader.receive_data(b"\x00")
