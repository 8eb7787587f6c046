"""Reading node names off a passing handshake (the partition proxy's link names)."""

from __future__ import annotations

import struct

import pytest

from pynode.protocol.handshake_names import ACCEPTOR, DIALER, MAX_SNIFF_BYTES, NameSniffer


def frame(body: bytes) -> bytes:
    return struct.pack(">H", len(body)) + body


def send_name_n(name: str) -> bytes:  # OTP 23+ 'N'
    raw = name.encode()
    return frame(b"N" + struct.pack(">QIH", 0x1234, 7, len(raw)) + raw)


def send_name_old(name: str) -> bytes:  # 'n', version 5
    return frame(b"n" + struct.pack(">HI", 5, 0x1234) + name.encode())


def challenge_n(name: str) -> bytes:
    raw = name.encode()
    return frame(b"N" + struct.pack(">QIIH", 0x1234, 99, 7, len(raw)) + raw)


def challenge_old(name: str) -> bytes:
    return frame(b"n" + struct.pack(">HII", 5, 0x1234, 99) + name.encode())


@pytest.mark.parametrize("packet", [send_name_n("a@host"), send_name_old("a@host")])
def test_dialer_name_in_one_piece_and_byte_by_byte(packet: bytes) -> None:
    s = NameSniffer(DIALER)
    assert s.receive_data(packet + b"\x00\x03sok") == "a@host"
    assert s.done and not s.failed and s.name == "a@host"
    s = NameSniffer(DIALER)
    found = [s.receive_data(packet[i : i + 1]) for i in range(len(packet))]
    assert found[-1] == "a@host" and all(f is None for f in found[:-1])


@pytest.mark.parametrize("packet", [challenge_n("b@h.example"), challenge_old("b@h.example")])
def test_acceptor_name_comes_after_its_status(packet: bytes) -> None:
    s = NameSniffer(ACCEPTOR)
    assert s.receive_data(frame(b"sok")) is None
    assert not s.done
    assert s.receive_data(packet) == "b@h.example"


def test_unicode_names() -> None:
    s = NameSniffer(DIALER)
    assert s.receive_data(send_name_n("ñodo@høst")) == "ñodo@høst"


@pytest.mark.parametrize(
    "data",
    [
        b"\x16\x03\x01\x02\x00",  # a TLS ClientHello: length 0x1603, far too long
        frame(b"x" * 20),  # not a name message
        frame(b"N" + b"\x00" * 5),  # truncated 'N'
        frame(b"N" + struct.pack(">QIH", 0, 0, 50) + b"short"),  # name shorter than said
        b"\x00\x00",  # zero length
        frame(b"n" + struct.pack(">HI", 5, 0) + b"\xff\xfe"),  # not UTF-8
    ],
)
def test_bytes_that_are_no_handshake_give_up(data: bytes) -> None:
    s = NameSniffer(DIALER)
    assert s.receive_data(data) is None
    assert s.done and s.failed and s.name is None
    assert s.receive_data(send_name_n("a@b")) is None  # stays given up


def test_never_buffers_beyond_one_packet() -> None:
    s = NameSniffer(DIALER)
    s.receive_data(struct.pack(">H", MAX_SNIFF_BYTES) + b"n")
    for _ in range(10):
        s.receive_data(b"z" * 4096)
    assert s.done  # a packet that never completes within the bound is given up on
    assert len(s._buf) == 0


def test_bad_side() -> None:
    with pytest.raises(ValueError):
        NameSniffer("sideways")
