"""DNS queries and replies (A, AAAA, SRV) without sockets: crafted packets, byte for byte."""

from __future__ import annotations

import struct

import pytest

from pynode.protocol.dns import (
    AAAA,
    SRV,
    AddressRecord,
    DnsError,
    SrvRecord,
    encode_query,
    encode_response,
    parse_response,
)


def test_query_bytes() -> None:
    q = encode_query(0x1234, "_erlang._tcp.example.org", SRV)
    assert q == (
        b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00"
        b"\x07_erlang\x04_tcp\x07example\x03org\x00"
        b"\x00\x21\x00\x01"
    )
    assert encode_query(1, "example.org.", AAAA).endswith(b"\x07example\x03org\x00\x00\x1c\x00\x01")


@pytest.mark.parametrize("bad", ["a..b", "x" * 64 + ".org", ".".join(["abcdefg"] * 40)])
def test_query_rejects_bad_names(bad: str) -> None:
    with pytest.raises(ValueError):
        encode_query(1, bad, SRV)


def _compressed_srv_reply(ident: int) -> bytes:
    """A reply as a server sends it: the answer's owner and target point into the question."""
    header = struct.pack(">HHHHHH", ident, 0x8180, 1, 2, 0, 1)
    question = b"\x07_erlang\x04_tcp\x07example\x03org\x00\x00\x21\x00\x01"  # name at offset 12
    # answer 1: owner = pointer to 12; target "n1" + pointer to "example.org" (offset 12+8+5=25)
    rdata1 = struct.pack(">HHH", 10, 5, 4369) + b"\x02n1\xc0\x19"
    ans1 = b"\xc0\x0c" + struct.pack(">HHIH", SRV, 1, 300, len(rdata1)) + rdata1
    rdata2 = struct.pack(">HHH", 5, 0, 4370) + b"\x02n2\xc0\x19"
    ans2 = b"\xc0\x0c" + struct.pack(">HHIH", SRV, 1, 300, len(rdata2)) + rdata2
    # an additional A record for n1 (skipped: only answers count)
    extra = b"\x02n1\xc0\x19" + struct.pack(">HHIH", 1, 1, 300, 4) + bytes([127, 0, 0, 7])
    return header + question + ans1 + ans2 + extra


def test_parse_compressed_srv() -> None:
    records = parse_response(_compressed_srv_reply(77), 77)
    assert records == [
        SrvRecord(10, 5, 4369, "n1.example.org"),
        SrvRecord(5, 0, 4370, "n2.example.org"),
    ]


def test_round_trip_addresses_and_srv() -> None:
    answers = [AddressRecord("h.example", "127.0.0.9"), AddressRecord("h.example", "::1"),
               SrvRecord(1, 2, 3, "t.example")]
    assert parse_response(encode_response(9, "h.example", SRV, answers), 9) == answers


def test_unknown_record_types_are_skipped() -> None:
    reply = bytearray(encode_response(5, "x.example", SRV, [SrvRecord(1, 1, 1, "t")]))
    # add a TXT answer (type 16) after the SRV one and count it
    reply += b"\xc0\x0c" + struct.pack(">HHIH", 16, 1, 0, 3) + b"\x02hi"
    struct.pack_into(">H", reply, 6, 2)
    assert parse_response(bytes(reply), 5) == [SrvRecord(1, 1, 1, "t")]


def test_errors() -> None:
    ok = encode_response(3, "x.example", SRV, [SrvRecord(1, 1, 1, "t.example")])
    with pytest.raises(DnsError, match="another query"):
        parse_response(ok, 4)
    with pytest.raises(DnsError, match="no such name") as e:
        parse_response(encode_response(3, "x.example", SRV, [], rcode=3), 3)
    assert e.value.rcode == 3
    with pytest.raises(DnsError, match="server failure"):
        parse_response(encode_response(3, "x.example", SRV, [], rcode=2), 3)
    tc = bytearray(ok)
    tc[2] |= 0x02
    with pytest.raises(DnsError, match="truncated"):
        parse_response(bytes(tc), 3)
    query = encode_query(3, "x.example", SRV)
    with pytest.raises(DnsError, match="not a reply"):
        parse_response(query, 3)
    with pytest.raises(DnsError, match="shorter"):
        parse_response(b"\x00\x03", 3)
    for cut in range(12, len(ok)):  # every truncation is an error, never an IndexError
        with pytest.raises(DnsError):
            parse_response(ok[:cut], 3)


def test_pointer_loops_and_forward_pointers_are_refused() -> None:
    header = struct.pack(">HHHHHH", 1, 0x8180, 1, 0, 0, 0)
    with pytest.raises(DnsError, match="loop"):
        parse_response(header + b"\xc0\x0c", 1)  # points at itself
    with pytest.raises(DnsError, match="loop"):
        parse_response(header + b"\xc0\x20" + b"\x00" * 40, 1)  # points forward


def test_bad_address_lengths() -> None:
    reply = bytearray(encode_response(2, "h", SRV, [AddressRecord("h", "127.0.0.1")]))
    # make the A record claim 5 bytes of data (and supply them)
    idx = reply.index(bytes([127, 0, 0, 1]))
    struct.pack_into(">H", reply, idx - 2, 5)
    reply += b"\x00"
    with pytest.raises(DnsError, match="A record of 5 bytes"):
        parse_response(bytes(reply), 2)
