import hashlib
import struct

import pytest

from pynode.protocol import NEED_DATA
from pynode.protocol.errors import HandshakeError
from pynode.protocol.flags import MANDATORY, MANDATORY_25, DFlag, default_flags
from pynode.protocol.handshake import (
    Acceptor,
    HandshakeComplete,
    HandshakeFailed,
    Initiator,
    NameReceived,
    StatusReceived,
    WaitingForOldConnection,
    gen_challenge,
    gen_digest,
    split_node_name,
)

COOKIE = "monster"


def initiator(**kw):
    args = dict(
        this_node="a@host",
        peer_node="b@host",
        cookie=COOKIE,
        flags=default_flags(),
        creation=11,
    )
    args.update(kw)
    return Initiator(**args)


def acceptor(**kw):
    args = dict(this_node="b@host", cookie=COOKIE, flags=default_flags(), creation=22)
    args.update(kw)
    return Acceptor(**args)


def move(src, dst):
    data = src.data_to_send()
    if data:
        dst.receive_data(data)
    return data


def run_until_name(a, b):
    move(a, b)
    ev = b.next_event()
    assert isinstance(ev, NameReceived)
    return ev


def finish(a, b):
    """After the status: drive both sides to their final events."""
    move(b, a)
    ev_a = a.next_event()
    assert ev_a is NEED_DATA  # a sent its challenge reply
    move(a, b)
    ev_b = b.next_event()
    move(b, a)
    ev_a = a.next_event()
    return ev_a, ev_b


# ------------------------------------------------------------------------------- digests


def test_digest_golden_values():
    # md5(cookie ++ integer_to_list(Challenge)), the challenge unsigned 32-bit
    assert gen_digest(0xFFFFFFFF, "secret") == hashlib.md5(b"secret4294967295").digest()
    assert gen_digest(0, "secret") == hashlib.md5(b"secret0").digest()
    assert gen_digest(123456789, b"abc") == hashlib.md5(b"abc123456789").digest()
    assert gen_digest(1, "\xe9") == hashlib.md5(b"\xe91").digest()  # Latin-1 cookie chars
    with pytest.raises(ValueError):
        gen_digest(1, "\u20ac")
    assert 0 <= gen_challenge() <= 0xFFFFFFFF


def test_wire_bytes_of_a_full_handshake():
    a = initiator(challenge=0, flags=MANDATORY, creation=0x01020304)
    b = acceptor(challenge=0xFFFFFFFF, flags=MANDATORY, creation=0x0A0B0C0D)
    flags_a = int(MANDATORY | DFlag.HANDSHAKE_23)
    sent = a.data_to_send()
    body = b"N" + struct.pack(">QIH", flags_a, 0x01020304, 6) + b"a@host"
    assert sent == struct.pack(">H", len(body)) + body
    b.receive_data(sent)
    assert isinstance(b.next_event(), NameReceived)
    b.send_status("ok")
    out = b.data_to_send()
    challenge = b"N" + struct.pack(">QIIH", flags_a, 0xFFFFFFFF, 0x0A0B0C0D, 6) + b"b@host"
    assert out == b"\x00\x03sok" + struct.pack(">H", len(challenge)) + challenge
    a.receive_data(out)
    assert a.next_event() == StatusReceived("ok")
    assert a.next_event() is NEED_DATA
    reply = a.data_to_send()
    assert reply == b"\x00\x15r\x00\x00\x00\x00" + hashlib.md5(b"monster4294967295").digest()
    b.receive_data(reply)
    assert isinstance(b.next_event(), HandshakeComplete)
    ack = b.data_to_send()
    assert ack == b"\x00\x11a" + hashlib.md5(b"monster0").digest()
    a.receive_data(ack)
    assert isinstance(a.next_event(), HandshakeComplete)


# ------------------------------------------------------------------------------ statuses


@pytest.mark.parametrize("status", ["ok", "ok_simultaneous"])
def test_ok_statuses(status):
    a, b = initiator(), acceptor()
    name = run_until_name(a, b)
    assert name == NameReceived("a@host", name.flags, 11, 6, False)
    assert name.flags & MANDATORY == MANDATORY
    b.send_status(status)
    move(b, a)
    assert a.next_event() == StatusReceived(status)
    ev_a, ev_b = finish(a, b)
    assert isinstance(ev_a, HandshakeComplete) and isinstance(ev_b, HandshakeComplete)
    assert ev_a.peer_name == "b@host" and ev_b.peer_name == "a@host"
    assert ev_a.peer_creation == 22 and ev_b.peer_creation == 11
    assert ev_a.peer_flags == ev_b.peer_flags
    assert ev_a.peer_flags & DFlag.PUBLISHED
    assert ev_a.status == ev_b.status == status
    assert ev_b.version == 6
    assert a.complete and b.complete
    assert a.trailing_data == b"" and b.trailing_data == b""


def test_negotiated_flags_are_the_and():
    a = initiator(flags=default_flags(hidden=True) | DFlag.FRAGMENTS)
    b = acceptor(flags=default_flags() | DFlag.DIST_HDR_ATOM_CACHE)
    run_until_name(a, b)
    b.send_status("ok")
    move(b, a)
    a.next_event()
    ev_a, ev_b = finish(a, b)
    for ev in (ev_a, ev_b):
        assert not ev.peer_flags & DFlag.PUBLISHED  # hidden on one side
        assert not ev.peer_flags & DFlag.FRAGMENTS
        assert not ev.peer_flags & DFlag.DIST_HDR_ATOM_CACHE
        assert ev.peer_flags & DFlag.SPAWN
    assert ev_b.offered_flags & DFlag.FRAGMENTS
    assert not ev_b.offered_flags & DFlag.PUBLISHED


@pytest.mark.parametrize("status", ["nok", "not_allowed"])
def test_refusing_statuses(status):
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    b.send_status(status)
    ev_b = b.next_event()
    assert isinstance(ev_b, HandshakeFailed) and ev_b.reason == status
    assert move(b, a) == b"\x00" + bytes([len(status) + 1]) + b"s" + status.encode()
    ev_a = a.next_event()
    assert isinstance(ev_a, HandshakeFailed) and ev_a.reason == status
    with pytest.raises(HandshakeError) as info:
        a.next_event()
    assert info.value.reason == status


def test_alive_true_then_wait_for_old_connection():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    b.send_status("alive")
    assert b.next_event() is NEED_DATA
    move(b, a)
    assert a.next_event() == StatusReceived("alive")
    with pytest.raises(RuntimeError, match="answer_alive"):
        a.next_event()
    a.answer_alive(True)
    assert move(a, b) == b"\x00\x05strue"
    assert b.next_event() is NEED_DATA  # b sent its challenge
    move(b, a)
    assert a.next_event() is NEED_DATA
    move(a, b)
    assert b.next_event() == WaitingForOldConnection("a@host")
    assert b.data_to_send() == b""  # the ack waits for the old connection
    with pytest.raises(RuntimeError, match="old_connection_closed"):
        b.next_event()
    b.old_connection_closed()
    ev_b = b.next_event()
    assert isinstance(ev_b, HandshakeComplete) and ev_b.status == "alive"
    move(b, a)
    assert isinstance(a.next_event(), HandshakeComplete)


def test_alive_false():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    b.send_status("alive")
    move(b, a)
    assert a.next_event() == StatusReceived("alive")
    a.answer_alive(False)
    assert a.next_event().reason == "alive"
    assert move(a, b) == b"\x00\x06sfalse"
    ev = b.next_event()
    assert isinstance(ev, HandshakeFailed) and ev.reason == "alive"


def test_name_me():
    a = initiator(this_node="host", name_me=True)
    b = acceptor()
    assert a.flags & DFlag.NAME_ME and not a.flags & DFlag.PUBLISHED
    name = run_until_name(a, b)
    assert name.name == "host" and name.name_me and name.creation == 0
    with pytest.raises(ValueError):
        b.send_status("ok")
    with pytest.raises(ValueError):
        b.send_status("named", name="x@otherhost", creation=5)
    b.send_status("named", name="dyn7@host", creation=0x55)
    sent = b.data_to_send()
    status = b"snamed:" + struct.pack(">H", 9) + b"dyn7@host" + struct.pack(">I", 0x55)
    assert sent.startswith(struct.pack(">H", len(status)) + status)
    a.receive_data(sent)
    assert a.next_event() == StatusReceived("named", "dyn7@host", 0x55)
    assert a.next_event() is NEED_DATA
    move(a, b)
    ev_b = b.next_event()
    move(b, a)
    ev_a = a.next_event()
    assert isinstance(ev_a, HandshakeComplete) and isinstance(ev_b, HandshakeComplete)
    assert ev_a.this_node == "dyn7@host" and ev_a.this_creation == 0x55
    assert ev_b.peer_name == "dyn7@host" and ev_b.peer_creation == 0x55
    assert ev_a.peer_flags & DFlag.NAME_ME and not ev_a.peer_flags & DFlag.PUBLISHED


def test_named_for_a_static_peer_is_refused():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    with pytest.raises(ValueError):
        b.send_status("named", name="x@host", creation=1)
    with pytest.raises(ValueError):
        b.send_status("maybe")


def test_initiator_rejects_named_it_did_not_ask_for():
    a = initiator()
    a.data_to_send()
    status = b"snamed:" + struct.pack(">H", 6) + b"x@host" + b"\x00\x00\x00\x01"
    a.receive_data(struct.pack(">H", len(status)) + status)
    assert a.next_event().reason == "protocol"


def test_initiator_checks_named_host():
    a = initiator(this_node="host", name_me=True)
    a.data_to_send()
    status = b"snamed:" + struct.pack(">H", 7) + b"x@other" + b"\x00\x00\x00\x01"
    a.receive_data(struct.pack(">H", len(status)) + status)
    assert a.next_event().reason == "bad_name"


def test_initiator_name_me_rejects_plain_ok():
    a = initiator(this_node="host", name_me=True)
    a.receive_data(b"\x00\x03sok")
    assert a.next_event().reason == "protocol"


# ----------------------------------------------------------------------- old v5 peer


def test_v5_peer_with_complement():
    a = initiator(version=5, creation=0x77)
    b = acceptor()
    sent = a.data_to_send()
    assert sent[2:3] == b"n" and sent[3:5] == b"\x00\x05"
    (low,) = struct.unpack(">I", sent[5:9])
    assert low == int(a.flags) & 0xFFFFFFFF and sent[9:] == b"a@host"
    b.receive_data(sent)
    name = b.next_event()
    assert name.version == 5 and name.creation is None
    assert not name.flags & DFlag.SPAWN  # high flags not known yet
    b.send_status("ok")
    move(b, a)
    assert a.next_event() == StatusReceived("ok")
    assert a.next_event() is NEED_DATA
    out = a.data_to_send()
    # the complement comes right after the challenge, before the challenge reply
    assert out[:11] == b"\x00\x09c" + struct.pack(">II", int(a.flags) >> 32, 0x77)
    assert out[11:14] == b"\x00\x15r"
    b.receive_data(out)
    ev_b = b.next_event()
    assert isinstance(ev_b, HandshakeComplete)
    assert ev_b.peer_creation == 0x77 and ev_b.version == 5
    assert ev_b.offered_flags & DFlag.SPAWN and ev_b.peer_flags & DFlag.V4_NC
    move(b, a)
    assert isinstance(a.next_event(), HandshakeComplete)


def test_v5_peer_missing_high_mandatory_flags():
    a = initiator(version=5)
    b = acceptor()
    run_until_name(a, b)  # the low 32 bits are fine
    b.send_status("ok")
    move(b, a)
    a.next_event()
    a.next_event()
    out = bytearray(a.data_to_send())
    assert out[2:3] == b"c"
    high = (int(a.flags) & ~int(DFlag.V4_NC)) >> 32
    out[3:7] = struct.pack(">I", high)  # a peer without V4_NC
    b.receive_data(bytes(out))
    ev = b.next_event()
    assert ev.reason == "missing_flags" and "V4_NC" in ev.message
    assert b.data_to_send() == b"\x00\x0csnot_allowed"


def test_v5_peer_missing_low_mandatory_flags():
    a = initiator(version=5, flags=default_flags() & ~DFlag.MAP_TAG & ~DFlag.MANDATORY_25_DIGEST)
    b = acceptor()
    move(a, b)
    ev = b.next_event()
    assert ev.reason == "missing_flags" and "MAP_TAG" in ev.message
    assert b.data_to_send() == b"\x00\x0csnot_allowed"


def test_complement_garbage():
    a = initiator(version=5)
    b = acceptor()
    run_until_name(a, b)
    b.send_status("ok")
    b.receive_data(b"\x00\x02cx")
    assert b.next_event().reason == "protocol"


# ------------------------------------------------------------------------ failures


def test_wrong_cookie_detected_by_acceptor():
    a = initiator(cookie="one")
    b = acceptor(cookie="two")
    run_until_name(a, b)
    b.send_status("ok")
    move(b, a)
    a.next_event()
    a.next_event()
    move(a, b)
    ev = b.next_event()
    assert isinstance(ev, HandshakeFailed) and ev.reason == "bad_cookie"
    assert "did not match" in ev.message and "wrong cookie" in ev.message
    assert b.data_to_send() == b""  # no ack for a bad digest
    with pytest.raises(HandshakeError, match="wrong cookie"):
        b.next_event()
    a.receive_eof()  # b closes the socket without a word, as erl does
    ev_a = a.next_event()
    assert isinstance(ev_a, HandshakeFailed) and ev_a.reason == "bad_cookie"
    assert "wrong cookie" in ev_a.message


def test_close_before_the_challenge_reply_is_not_a_cookie_error():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    a.receive_eof()  # the acceptor went away before challenging us
    ev = a.next_event()
    assert isinstance(ev, HandshakeFailed) and ev.reason == "closed"


def test_wrong_cookie_detected_by_initiator():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    b.send_status("ok")
    ev_a, ev_b = None, None
    move(b, a)
    a.next_event()
    a.next_event()
    move(a, b)
    ev_b = b.next_event()
    assert isinstance(ev_b, HandshakeComplete)
    ack = bytearray(b.data_to_send())
    ack[-1] ^= 0xFF  # a forged ack: the acceptor does not know our cookie
    a.receive_data(bytes(ack))
    ev_a = a.next_event()
    assert ev_a.reason == "bad_cookie" and "wrong cookie" in ev_a.message
    assert not a.complete


def test_acceptor_refuses_missing_mandatory_flags():
    a = initiator(flags=MANDATORY_25 | DFlag.PUBLISHED)  # no V4_NC / UNLINK_ID
    b = acceptor()
    move(a, b)
    ev = b.next_event()
    assert ev.reason == "missing_flags"
    assert "V4_NC" in ev.message and "UNLINK_ID" in ev.message
    move(b, a)
    assert a.next_event().reason == "not_allowed"


def test_initiator_refuses_missing_mandatory_flags():
    a = initiator()
    b = acceptor(flags=MANDATORY_25, required_flags=MANDATORY_25)
    run_until_name(a, b)
    b.send_status("ok")
    move(b, a)
    assert a.next_event() == StatusReceived("ok")
    ev = a.next_event()
    assert ev.reason == "missing_flags" and "UNLINK_ID" in ev.message
    assert a.data_to_send() == b""


def test_mandatory_digest_flag_stands_for_the_25_set():
    digest_only = DFlag.MANDATORY_25_DIGEST | DFlag.V4_NC | DFlag.UNLINK_ID | DFlag.HANDSHAKE_23
    a = initiator(flags=digest_only)
    b = acceptor()
    name = run_until_name(a, b)
    assert name.flags & MANDATORY_25 == MANDATORY_25
    b.send_status("ok")
    move(b, a)
    a.next_event()
    ev_a, ev_b = finish(a, b)
    assert ev_b.peer_flags & MANDATORY == MANDATORY


def test_wrong_node_answers():
    a = initiator(peer_node="b@host")
    b = acceptor(this_node="c@host")
    run_until_name(a, b)
    b.send_status("ok")
    move(b, a)
    a.next_event()
    ev = a.next_event()
    assert ev.reason == "wrong_node" and "c@host" in ev.message


@pytest.mark.parametrize("name", [b"nohost", b"a@b@c", b"@host", b"a@"])
def test_acceptor_rejects_bad_names(name):
    b = acceptor()
    body = b"N" + struct.pack(">QIH", int(default_flags()), 1, len(name)) + name
    b.receive_data(struct.pack(">H", len(body)) + body)
    ev = b.next_event()
    assert ev.reason == "bad_name"
    assert b.data_to_send() == b""


def test_acceptor_rejects_host_with_at_for_name_me():
    b = acceptor()
    flags = int(default_flags() | DFlag.NAME_ME)
    body = b"N" + struct.pack(">QIH", flags, 0, 6) + b"a@host"
    b.receive_data(struct.pack(">H", len(body)) + body)
    assert b.next_event().reason == "bad_name"


@pytest.mark.parametrize(
    "packet",
    [b"\x00\x03xyz", b"\x00\x05N\x00\x00\x00\x00", b"\x00\x00", b"\x00\x03n\x00\x05"],
)
def test_acceptor_garbage(packet):
    b = acceptor()
    b.receive_data(packet)
    assert b.next_event().reason == "protocol"


def test_acceptor_name_extra_bytes_ignored():
    b = acceptor()
    body = b"N" + struct.pack(">QIH", int(default_flags()), 9, 6) + b"a@hostEXTRA"
    b.receive_data(struct.pack(">H", len(body)) + body)
    assert b.next_event().name == "a@host"


def test_initiator_ignores_extra_bytes_after_challenge_name():
    a = initiator()
    a.data_to_send()
    body = b"N" + struct.pack(">QIIH", int(default_flags()), 5, 9, 6) + b"b@hostEXTRA"
    a.receive_data(b"\x00\x03sok" + struct.pack(">H", len(body)) + body)
    assert a.next_event() == StatusReceived("ok")
    assert a.next_event() is NEED_DATA
    assert a.data_to_send()[2:3] == b"r"


def test_initiator_garbage_status_and_challenge():
    a = initiator()
    a.receive_data(b"\x00\x06sweird")
    assert a.next_event().reason == "protocol"
    a = initiator()
    a.receive_data(b"\x00\x03sok\x00\x02n!")
    assert a.next_event() == StatusReceived("ok")
    assert a.next_event().reason == "protocol"
    a = initiator()
    a.receive_data(b"\x00\x02xx")
    assert a.next_event().reason == "protocol"


def test_bad_ack_and_reply_lengths():
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    b.send_status("ok")
    move(b, a)
    a.next_event()
    a.next_event()
    a.receive_data(b"\x00\x03abc")
    assert a.next_event().reason == "protocol"
    b.receive_data(b"\x00\x03rrr")
    assert b.next_event().reason == "protocol"


def test_eof_mid_handshake():
    a = initiator()
    a.receive_data(b"\x00\x03so")
    assert a.next_event() is NEED_DATA
    a.receive_eof()
    ev = a.next_event()
    assert ev.reason == "closed"
    with pytest.raises(HandshakeError):
        a.next_event()


# ---------------------------------------------------------------- incremental delivery


def test_byte_by_byte_and_trailing_data():
    a, b = initiator(), acceptor()
    for byte in a.data_to_send():
        assert b.next_event() is NEED_DATA
        b.receive_data(bytes([byte]))
    assert isinstance(b.next_event(), NameReceived)
    b.send_status("ok")
    for byte in b.data_to_send():
        a.receive_data(bytes([byte]))
        ev = a.next_event()
        assert ev in (NEED_DATA, StatusReceived("ok"))
    reply = a.data_to_send()
    assert reply
    b.receive_data(reply + b"\x00\x00\x00\x00")  # a already ticks in the connected phase
    assert isinstance(b.next_event(), HandshakeComplete)
    assert b.trailing_data == b"\x00\x00\x00\x00"
    a.receive_data(b.data_to_send() + b"\x00\x00\x00\x05p1234")
    assert isinstance(a.next_event(), HandshakeComplete)
    assert a.trailing_data == b"\x00\x00\x00\x05p1234"
    with pytest.raises(RuntimeError):
        a.next_event()


# ----------------------------------------------------------------------- API misuse


def test_api_misuse():
    b = acceptor()
    with pytest.raises(RuntimeError):
        b.send_status("ok")
    with pytest.raises(RuntimeError):
        b.old_connection_closed()
    a = initiator()
    with pytest.raises(RuntimeError):
        a.answer_alive(True)
    with pytest.raises(ValueError):
        initiator(this_node="nohost")
    with pytest.raises(ValueError):
        initiator(peer_node="b")
    with pytest.raises(ValueError):
        initiator(this_node="a@host", name_me=True)
    with pytest.raises(ValueError):
        initiator(version=4)
    with pytest.raises(ValueError):
        acceptor(this_node="b")
    with pytest.raises(ValueError):
        acceptor(creation=-1)
    a, b = initiator(), acceptor()
    run_until_name(a, b)
    with pytest.raises(RuntimeError, match="send_status"):
        b.next_event()
    assert split_node_name("x@y") == ("x", "y")
    with pytest.raises(ValueError):
        split_node_name("x")


# ------------------------------------------------------------------ 4-byte framing (TLS)


def test_four_byte_framing_full_handshake():
    # inet_tls_dist frames the handshake with {packet, 4}: every message has a 4-byte length
    a = initiator(challenge=0, flags=MANDATORY, creation=0x01020304, length_bytes=4)
    b = acceptor(challenge=0xFFFFFFFF, flags=MANDATORY, creation=0x0A0B0C0D, length_bytes=4)
    flags_a = int(MANDATORY | DFlag.HANDSHAKE_23)
    sent = a.data_to_send()
    body = b"N" + struct.pack(">QIH", flags_a, 0x01020304, 6) + b"a@host"
    assert sent == struct.pack(">I", len(body)) + body
    b.receive_data(sent)
    assert isinstance(b.next_event(), NameReceived)
    b.send_status("ok")
    out = b.data_to_send()
    assert out.startswith(b"\x00\x00\x00\x03sok")
    a.receive_data(out)
    assert a.next_event() == StatusReceived("ok")
    assert a.next_event() is NEED_DATA
    reply = a.data_to_send()
    assert reply == b"\x00\x00\x00\x15r\x00\x00\x00\x00" + hashlib.md5(b"monster4294967295").digest()
    b.receive_data(reply + b"\x00\x00\x00\x00")  # a first tick may follow at once
    assert isinstance(b.next_event(), HandshakeComplete)
    assert b.trailing_data == b"\x00\x00\x00\x00"
    ack = b.data_to_send()
    assert ack == b"\x00\x00\x00\x11a" + hashlib.md5(b"monster0").digest()
    a.receive_data(ack)
    assert isinstance(a.next_event(), HandshakeComplete)


def test_four_byte_framing_fed_byte_by_byte():
    a, b = initiator(length_bytes=4), acceptor(length_bytes=4)
    for byte in a.data_to_send():
        assert b.next_event() is NEED_DATA
        b.receive_data(bytes([byte]))
    assert isinstance(b.next_event(), NameReceived)


def test_four_byte_framing_refuses_a_huge_length():
    b = acceptor(length_bytes=4)
    b.receive_data(struct.pack(">I", 0x7FFFFFFF) + b"N")
    ev = b.next_event()
    assert isinstance(ev, HandshakeFailed)
    assert ev.reason == "protocol" and "2147483647 bytes" in ev.message


def test_two_byte_peer_against_four_byte_side_fails_cleanly():
    a, b = initiator(), acceptor(length_bytes=4)  # a plain-TCP peer on a TLS-framed side
    move(a, b)
    ev = b.next_event()
    assert isinstance(ev, HandshakeFailed) and ev.reason == "protocol"


def test_length_bytes_must_be_two_or_four():
    with pytest.raises(ValueError, match="2-byte or 4-byte"):
        acceptor(length_bytes=3)
