"""decode_dist_packet / decode_dist_header / decode_dist_body, on every implementation.

The packet layouts are erl_ext_dist.md's "Distribution Header" (131 68), the pass-through
form (112) and the body of a reassembled fragmented message. The captured packets in
tests/protocol/erl_packets.py are what OTP 25 and OTP 28 really send.
"""

from __future__ import annotations

import struct
from types import ModuleType
from typing import Any

import pytest

import pynode.term as term
from pynode.term import ATOM_CACHE_SIZE, Atom, DecodeError, Pid, Port, Reference
from tests.protocol import erl_packets

MISSING = object()  # what the protocol layer passes as NO_PAYLOAD
PID = Pid("a@host", 1, 0, 5)


@pytest.fixture(params=sorted(term.IMPLEMENTATIONS))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return term.IMPLEMENTATIONS[request.param]


def slots() -> list[Any]:
    return [None] * ATOM_CACHE_SIZE


def header(*refs: tuple[int, int, str | None], long_atoms: bool = False) -> bytes:
    """NumberOfAtomCacheRefs | Flags | AtomCacheRefs for refs (segment, index, new text)."""
    count = len(refs)
    nibbles = [(8 if text is not None else 0) | seg for seg, _, text in refs]
    nibbles.append(1 if long_atoms else 0)
    if len(nibbles) % 2:
        nibbles.append(0)
    flags = bytes(nibbles[i] | (nibbles[i + 1] << 4) for i in range(0, len(nibbles), 2))
    body = b""
    for _, index, text in refs:
        body += bytes([index])
        if text is not None:
            raw = text.encode()
            body += (struct.pack(">H", len(raw)) if long_atoms else bytes([len(raw)])) + raw
    return bytes([count]) + flags[: count // 2 + 1] + body


def unversioned(x: Any) -> bytes:
    return term.encode(x, versioned=False)


# -- whole packets -----------------------------------------------------------------------------


def test_new_entries_then_references(codec: ModuleType) -> None:
    entries = slots()
    hdr = header((0, 5, ""), (3, 200, "a@host"), (7, 255, "true"))
    ctl = b"h\x03a\x02R\x00" + b"XR\x01" + struct.pack(">III", 1, 0, 5)
    packet = b"\x83D" + hdr + ctl + b"h\x02R\x02R\x00"
    control, payload = codec.decode_dist_packet(packet, entries, MISSING)
    assert control == (2, Atom(""), PID)
    assert payload == (True, Atom(""))
    assert entries[5] == Atom("") and entries[3 * 256 + 200] == Atom("a@host")
    assert entries[7 * 256 + 255] is True  # the atom true is True, as everywhere in the codec
    assert sum(e is not None for e in entries) == 3
    # the same slots again, now as references (no text), in another order
    again = b"\x83D" + header((3, 200, None), (0, 5, None)) + b"h\x03a\x02R\x01XR\x00"
    again += struct.pack(">III", 1, 0, 5) + b"R\x01"
    assert codec.decode_dist_packet(again, entries, MISSING) == ((2, Atom(""), PID), Atom(""))


def test_long_atoms_flag(codec: ModuleType) -> None:
    entries = slots()
    name = "ü" * 200  # 400 bytes of UTF-8: only the 2-byte length can say it
    packet = b"\x83D" + header((1, 2, name), (1, 3, "x"), long_atoms=True) + b"h\x02R\x00R\x01"
    assert codec.decode_dist_packet(packet, entries, MISSING) == ((Atom(name), Atom("x")), MISSING)
    assert entries[258] == Atom(name)


def test_header_atom_longer_than_255_characters(codec: ModuleType) -> None:
    # erts refuses atoms above MAX_ATOM_CHARACTERS (255), in headers as anywhere
    packet = b"\x83D" + header((0, 1, "a" * 256), long_atoms=True) + b"R\x00"
    with pytest.raises(DecodeError, match="longer than 255 characters"):
        codec.decode_dist_packet(packet, slots(), MISSING)


def test_no_payload_gives_missing(codec: ModuleType) -> None:
    control, payload = codec.decode_dist_packet(b"\x83D\x00h\x01a\x05", slots(), MISSING)
    assert control == (5,) and payload is MISSING
    control, payload = codec.decode_dist_packet(b"p" + term.encode((5,)), slots(), MISSING)
    assert control == (5,) and payload is MISSING


def test_pass_through(codec: ModuleType) -> None:
    packet = b"p" + term.encode((2, Atom(""), PID)) + term.encode([1, b"x"])
    assert codec.decode_dist_packet(packet, slots(), None) == ((2, Atom(""), PID), [1, b"x"])
    with pytest.raises(DecodeError, match="expected version byte 131, found 104"):
        codec.decode_dist_packet(b"p" + unversioned((2,)), slots(), None)
    with pytest.raises(DecodeError, match="version byte"):
        codec.decode_dist_packet(b"p" + term.encode((2,)) + b"a\x01", slots(), None)


def test_trailing_bytes(codec: ModuleType) -> None:
    packet = b"\x83D\x00" + unversioned((2, Atom(""), PID)) + unversioned(1) + b"\x00\x00"
    with pytest.raises(DecodeError, match="2 bytes after the payload") as info:
        codec.decode_dist_packet(packet, slots(), None)
    assert info.value.offset == len(packet) - 2


@pytest.mark.parametrize(
    "packet, match, offset",
    [
        (b"", "unexpected end", 0),
        (b"\x83", "unexpected end", 1),
        (b"\x00x", "starts with 0, not 112 or 131 68", 0),
        (b"\x83E\x00", "starts with 131 69", 0),
        (b"\x83D", "truncated before the atom count", 2),
        (b"\x83D\x02", "truncated inside the atom cache flags", 3),
        (b"\x83D\x02\x88", "truncated inside the atom cache flags", 3),
        (b"\x83D\x02\x88\x00", "truncated inside the atom cache", 5),
        (b"\x83D\x01\x08\x05", "truncated inside the atom cache", 5),
        (b"\x83D\x01\x08\x05\x03ab", "truncated inside an atom", 6),
        (b"\x83D\x01\x18\x05\x00", "truncated inside the atom cache", 5),  # LongAtoms: 2 bytes
        (b"\x83D\x01\x00\x07R\x00", "empty slot 0:7", 4),
        (b"\x83D" + header((0, 3, "a"), (3, 2, None)), "empty slot 3:2", 8),
        (b"\x83D\x01\x08\x05\x02\xff\xfeR\x00", "not valid UTF-8", 6),
        (b"\x83D\x00R\x00", "ATOM_CACHE_REF without an atom cache", 3),
        (b"\x83D\x01\x08\x05\x01aR\x01", "ATOM_CACHE_REF 1 is not in the atom cache", 7),
        (b"\x83D\x00", "unexpected end", 3),  # a header and no control message
    ],
)
def test_bad_packets(codec: ModuleType, packet: bytes, match: str, offset: int) -> None:
    with pytest.raises(DecodeError, match=match) as info:
        codec.decode_dist_packet(packet, slots(), MISSING)
    assert info.value.offset == offset


def test_truncation_at_every_offset(codec: ModuleType) -> None:
    for packets in (erl_packets.OTP25, erl_packets.OTP28):
        entries = slots()
        for packet in packets:
            whole = 0  # the cut right after the control message leaves a valid packet
            for cut in range(len(packet)):
                try:
                    _, payload = codec.decode_dist_packet(packet[:cut], entries[:], MISSING)
                except DecodeError:
                    continue
                assert payload is MISSING
                whole += 1
            assert whole == 1
            codec.decode_dist_packet(packet, entries, MISSING)


def test_erl_packets(codec: ModuleType) -> None:
    message = (Atom("event"), 12345, bytes(32), [1, 2, 3])
    for packets in (erl_packets.OTP25, erl_packets.OTP28):
        entries = slots()
        got = [codec.decode_dist_packet(p, entries, MISSING) for p in packets]
        ping_reply = got[0][1]
        assert type(ping_reply[0]) is term.Reference and ping_reply[1] == Atom("yes")
        assert [c[0] for c, _ in got] == [22] * 4 + [6] * 3  # SEND_SENDER, then REG_SEND
        assert all(payload == message for _, payload in got[1:])
        sender = got[1][0][1]
        assert got[4][0] == (6, sender, Atom(""), Atom("capbox"))
        # 3 + 1 + 2 new entries in the three headers that have some
        assert sum(e is not None for e in entries) == 6


def test_header_memo_follows_each_connections_entries(codec: ModuleType) -> None:
    # The pure-Python codec memoizes headers without new entries; what a header means must
    # still come from the entries of the connection at hand, as they are now.
    set_a, set_b = b"\x83D" + header((0, 9, "a")), b"\x83D" + header((0, 9, "b"))
    ref = b"\x83D" + header((0, 9, None)) + b"R\x00"
    one, two = slots(), slots()
    codec.decode_dist_packet(set_a + b"a\x01", one, MISSING)
    for _ in range(3):
        assert codec.decode_dist_packet(ref, one, MISSING) == (Atom("a"), MISSING)
    with pytest.raises(DecodeError, match="empty slot 0:9"):
        codec.decode_dist_packet(ref, two, MISSING)  # same bytes, another connection
    codec.decode_dist_packet(set_b + b"a\x01", two, MISSING)
    assert codec.decode_dist_packet(ref, two, MISSING) == (Atom("b"), MISSING)
    assert codec.decode_dist_packet(ref, one, MISSING) == (Atom("a"), MISSING)
    codec.decode_dist_packet(set_b + b"a\x01", one, MISSING)  # the slot changes
    assert codec.decode_dist_packet(ref, one, MISSING) == (Atom("b"), MISSING)


def _reg_send(hdr: bytes, pid_id: int = 1, to_ref: int = 0) -> bytes:
    """A REG_SEND under header ``hdr``, erl's way: {6, From, '', To}, From's node through ref 1,
    To through ref ``to_ref``, then a payload (ref 0)."""
    ctl = b"h\x04a\x06XR\x01" + struct.pack(">III", pid_id, 0, 5) + b"w\x00R" + bytes([to_ref])
    return b"\x83D" + hdr + ctl + b"h\x02R\x00a\x07"


def test_a_repeated_control_follows_the_entries(codec: ModuleType) -> None:
    # The C twin hands a plain send's control message out again when the next packet repeats
    # its bytes under the same refs; it must not when a ref now names another atom, nor when
    # the bytes differ after a common beginning.
    entries, other = slots(), slots()
    sender = Pid("a@host", 1, 0, 5)
    first = _reg_send(header((0, 9, "capbox"), (0, 10, "a@host")))
    again = _reg_send(header((0, 9, None), (0, 10, None)))
    assert codec.decode_dist_packet(first, entries, MISSING) == (
        (6, sender, Atom(""), Atom("capbox")), (Atom("capbox"), 7))
    for _ in range(2):
        assert codec.decode_dist_packet(again, entries, MISSING) == (
            (6, sender, Atom(""), Atom("capbox")), (Atom("capbox"), 7))
    renamed = _reg_send(header((0, 9, "otherbox"), (0, 10, None)))  # slot 9 now names otherbox
    assert codec.decode_dist_packet(renamed, entries, MISSING) == (
        (6, sender, Atom(""), Atom("otherbox")), (Atom("otherbox"), 7))
    assert codec.decode_dist_packet(again, entries, MISSING)[0][3] == Atom("otherbox")
    # the same bytes, another connection's entries
    codec.decode_dist_packet(_reg_send(header((0, 9, "thirdbox"), (0, 10, "b@host"))), other, MISSING)
    assert codec.decode_dist_packet(again, other, MISSING)[0] == (
        6, Pid("b@host", 1, 0, 5), Atom(""), Atom("thirdbox"))
    # bytes that begin alike: another sender; another recipient (the last byte)
    refs = header((0, 9, None), (0, 10, None))
    assert codec.decode_dist_packet(again, entries, MISSING)[0][1] == sender
    assert codec.decode_dist_packet(_reg_send(refs, 2), entries, MISSING)[0][1] == Pid("a@host", 2, 0, 5)
    assert codec.decode_dist_packet(again, entries, MISSING)[0][1] == sender
    assert codec.decode_dist_packet(_reg_send(refs, to_ref=1), entries, MISSING)[0][3] == Atom("a@host")
    # a control cut short where the kept one would have gone on is still an error, in the
    # caller's bounds as in a packet's
    with pytest.raises(DecodeError):
        codec.decode_dist_packet(again, entries, MISSING, 0, len(again) - 8)
    codec.decode_dist_packet(again, entries, MISSING)
    framed = struct.pack(">I", len(again) - 8) + again
    with pytest.raises(DecodeError):
        codec.decode_dist_sends(framed, entries, MISSING, 0, 1 << 20, lambda to, msg: False, None, {})


def test_a_repeated_control_with_a_list_in_it_is_a_new_list(codec: ModuleType) -> None:
    # {6, From, Unused, To}: erl sends '' as Unused, another peer may send a list, which the
    # codec gives as a Python list; what one receiver does with it is not the next one's
    entries = slots()
    hdr = header((0, 9, "capbox"), (0, 10, "a@host"))
    ctl = b"h\x04a\x06XR\x01" + struct.pack(">III", 1, 0, 5) + b"jR\x00"
    first, _ = codec.decode_dist_packet(b"\x83D" + hdr + ctl + b"a\x07", entries, MISSING)
    first[2].append(1)
    again = b"\x83D" + header((0, 9, None), (0, 10, None)) + ctl + b"a\x07"
    assert codec.decode_dist_packet(again, entries, MISSING)[0][2] == []


def test_bounds_and_buffers(codec: ModuleType) -> None:
    packet = erl_packets.OTP25[0]
    want = codec.decode_dist_packet(packet, slots(), MISSING)
    padded = bytearray(b"\x00" * 7 + packet + b"\xff" * 3)
    end = 7 + len(packet)
    with memoryview(padded) as view, view.cast("b") as signed:
        for data in (padded, bytes(padded), view, signed):
            assert codec.decode_dist_packet(data, slots(), MISSING, 7, end) == want
            assert codec.decode_dist_packet(data, slots(), MISSING, start=7, end=end) == want
    # offsets count from the start of data, whatever start is
    with pytest.raises(DecodeError) as info:
        codec.decode_dist_packet(padded, slots(), MISSING, 7, end - 1)
    with pytest.raises(DecodeError) as plain:
        codec.decode_dist_packet(packet[:-1], slots(), MISSING)
    assert info.value.offset == plain.value.offset + 7
    assert str(info.value).split(" (at offset")[0] == str(plain.value).split(" (at offset")[0]
    padded += b"more"  # no buffer export outlived the calls, errors included
    for start, stop in ((-1, 5), (5, 4), (0, len(padded) + 1)):
        with pytest.raises(ValueError, match="bounds"):
            codec.decode_dist_packet(padded, slots(), MISSING, start, stop)
    with pytest.raises(TypeError):
        codec.decode_dist_packet(padded, slots(), MISSING, 1.0)


def test_cache_entries_must_be_a_list_of_2048_slots(codec: ModuleType) -> None:
    with pytest.raises(TypeError, match="must be a list"):
        codec.decode_dist_packet(b"\x83D\x00a\x01", tuple(slots()), MISSING)
    with pytest.raises(ValueError, match="2048 slots, not 2047"):
        codec.decode_dist_packet(b"\x83D\x00a\x01", slots()[1:], MISSING)
    with pytest.raises(TypeError):
        codec.decode_dist_packet("not bytes", slots(), MISSING)
    with pytest.raises(TypeError):
        codec.decode_dist_packet(b"\x83D\x00a\x01", slots())  # missing is required


# -- header and body, for fragments ------------------------------------------------------------


def test_header_then_body(codec: ModuleType) -> None:
    entries = slots()
    data = b"xx" + header((2, 1, "reg"), (0, 0, "call"))
    refs, pos = codec.decode_dist_header(data, entries, 2)
    assert refs == [Atom("reg"), Atom("call")] and type(refs) is list and pos == len(data)
    assert codec.decode_dist_header(b"\x00", entries) == (None, 1)
    body = b"h\x02R\x01R\x00" + b"R\x00"
    assert codec.decode_dist_body(body, refs, MISSING) == ((Atom("call"), Atom("reg")), Atom("reg"))
    assert codec.decode_dist_body(b"??" + body, refs, MISSING, 2) == (
        (Atom("call"), Atom("reg")),
        Atom("reg"),
    )
    assert codec.decode_dist_body(b"a\x01", None, MISSING) == (1, MISSING)
    with pytest.raises(DecodeError, match="without an atom cache"):
        codec.decode_dist_body(body, None, MISSING)
    with pytest.raises(DecodeError, match="bytes after the payload"):
        codec.decode_dist_body(body + b"j", refs, MISSING)
    with pytest.raises(DecodeError, match="empty slot 5:5"):
        codec.decode_dist_header(bytearray(b"\x01\x05\x05"), entries)
    # a reference to what the first header stored
    assert codec.decode_dist_header(memoryview(b"\x01\x02\x01"), entries) == ([Atom("reg")], 3)


# -- encoding ----------------------------------------------------------------------------------


def test_encode_dist_packet(codec: ModuleType) -> None:
    control, payload = (2, Atom(""), PID), (Atom("event"), 12345, bytes(32), [1, 2, 3])
    packet = codec.encode_dist_packet(control, payload, MISSING)
    body = b"\x83D\x00" + unversioned(control) + unversioned(payload)
    assert packet == struct.pack(">I", len(body)) + body
    plain = codec.encode_dist_packet(control, payload, MISSING, True)
    body = b"p" + term.encode(control) + term.encode(payload)
    assert plain == struct.pack(">I", len(body)) + body
    # no payload: None is the atom undefined, only ``missing`` leaves it out
    assert codec.encode_dist_packet(control, MISSING, MISSING)[7:] == unversioned(control)
    assert codec.encode_dist_packet(control, None, MISSING).endswith(b"w\x09undefined")
    assert codec.encode_dist_packet(control, MISSING, MISSING, pass_through=True)[5:] == (
        term.encode(control)
    )
    # what one side encodes, the other decodes
    for pkt in (packet, plain):
        assert codec.decode_dist_packet(pkt[4:], slots(), MISSING) == (control, payload)
    big = [b"x" * 70_000, list(range(1000))]  # past the C twin's stack buffer
    pkt = codec.encode_dist_packet(control, big, MISSING)
    assert codec.decode_dist_packet(pkt, slots(), MISSING, 4) == (control, big)
    with pytest.raises(term.EncodeError):
        codec.encode_dist_packet(control, object(), MISSING)
    with pytest.raises(term.EncodeError):
        codec.encode_dist_packet((object(),), 1, MISSING)


# -- encoding with the atom cache ---------------------------------------------------------------


def test_atom_cache_sets_slots_then_refers_to_them(codec: ModuleType) -> None:
    out, peer = slots(), slots()  # our send side's slots, and the receiver's
    control, payload = (6, PID, Atom(""), Atom("sink")), (Atom("event"), 1, b"x", [1, 2, 3])
    first = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
    # four refs, all new: the pid's node, '' and the name, and the payload's atom
    assert first[4:7] == b"\x83D\x04"
    assert sorted(a for a in out if a is not None) == ["", "a@host", "event", "sink"]
    assert codec.decode_dist_packet(first, peer, MISSING, 4) == (control, payload)
    again = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
    # now references only: one index byte per ref, no text
    assert len(again) == len(first) - len(b"a@host" + b"sink" + b"event") - 4
    assert codec.decode_dist_packet(again, peer, MISSING, 4) == (control, payload)
    assert peer == out  # the receiver's cache is what the sender thinks it is
    plain = codec.encode_dist_packet(control, payload, MISSING)
    assert len(again) < len(plain)


def apart_in_slots(*texts: str) -> list[str]:
    """``texts``, each with a digit added where needed so that no two share a cache slot
    (a slot is the atom's hash, which changes from run to run: PYTHONHASHSEED)."""
    taken: set[int] = set()
    out: list[str] = []
    for text in texts:
        for candidate in [text, *(f"{text}{i}" for i in range(ATOM_CACHE_SIZE))]:
            slot = hash(Atom(candidate)) & (ATOM_CACHE_SIZE - 1)
            if slot not in taken:
                taken.add(slot)
                out.append(candidate)
                break
    return out


def test_atom_cache_covers_the_controls_own_pids_refs_and_ports(codec: ModuleType) -> None:
    out, peer = slots(), slots()
    a, b, c, z, other = apart_in_slots("a@host", "b@host", "c@host", "z@h", "other")
    pid = Pid(a, 1, 0, 5)
    ref = Reference(b, 7, (1, 2, 3))
    port = Port(c, 9, 3)
    nested = (Atom("nested"), Atom("x"))
    for control in ((19, pid, Atom(other), ref), (3, port, pid, nested), (22, pid, Pid(z, 3, 4, 5))):
        pkt = codec.encode_dist_packet(control, MISSING, MISSING, atom_cache=out)
        assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, MISSING)
    cached = {a for a in out if a is not None}
    assert {a, b, c, z, other} <= cached
    assert not cached & {"nested", "x"}  # nested terms are inline
    assert peer == out


def test_atom_cache_takes_the_payloads_spine(codec: ModuleType) -> None:
    # the payload's atoms and pids' nodes on its tuple spine (itself, and two tuples down)
    # are refs, as erl caches a message's atoms; deeper tuples, lists and maps are inline
    empty, a, b, c, deep, listed, keyed, other = apart_in_slots(
        "", "a@h", "b@h", "top", "deep", "listed", "keyed", "other"
    )
    out, peer = slots(), slots()
    control = (2, Atom(empty), Pid(a, 1, 2, 3))
    payloads = [
        Atom(c),
        (Pid(b, 4, 5, 6), (Atom(c), 7, (Atom(deep),), [Atom(listed)], {Atom(keyed): 1})),
        (Reference(b, 1, (2, 3)), Port(b, 4, 5), (Atom(other), b"x" * 100_000)),
    ]
    for payload in payloads:
        pkt = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
        assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, payload)
        assert peer == out
    cached = {x for x in out if x is not None}
    assert cached == {empty, a, b, c, other}
    again = codec.encode_dist_packet(control, payloads[1], MISSING, atom_cache=out)
    # every spine atom is a ref to a slot set already: no text in the header, none inline
    assert again[6] == 4 and b"top" not in again and b"b@h" not in again
    assert again.count(b"deep") == again.count(b"listed") == again.count(b"keyed") == 1


def test_atom_cache_big_control_and_payload(codec: ModuleType) -> None:
    # a control message past the C twin's stack buffer, and payloads about its size
    out, peer = slots(), slots()
    control = (2, Atom(""), PID, b"c" * 2000)
    for size in (0, 900, 1000, 1100, 70_000):
        payload = (Atom("tag"), b"p" * size, (PID, Atom("inner")))
        pkt = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
        assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, payload)
        assert pkt.count(b"inner") <= 1 and pkt.count(b"tag") <= 1
    assert peer == out and {"tag", "inner"} <= {a for a in out if a is not None}


def test_atom_cache_payload_refs_stop_at_255(codec: ModuleType) -> None:
    out, peer = slots(), slots()
    control = (6, PID, Atom(""), Atom("sink"))
    payload = tuple(Atom(f"p{i}") for i in range(254)) + ((Atom("q"), Atom("r")),)  # 259 atoms
    pkt = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
    assert 200 < pkt[6] <= 255
    assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, payload)
    assert peer == out
    # the same past the C twin's stack buffer (its refs found before the payload is built)
    payload = tuple(Atom(f"s{i}") for i in range(253)) + ((Atom("q"), Atom("r")), b"x" * 5000)
    pkt = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out)
    assert 200 < pkt[6] <= 255
    assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, payload)
    assert peer == out


def test_atom_cache_colliding_slots_and_long_texts_go_inline(codec: ModuleType) -> None:
    # two atoms whose slots are the same: the first takes it, the second is inline;
    # in a later message the second takes the slot over (a new entry), and the peer follows
    by_slot: dict[int, Atom] = {}
    for i in range(ATOM_CACHE_SIZE + 1):  # pigeonhole: a collision within 2049 names
        a = Atom(f"n{i}")
        other = by_slot.setdefault(hash(a) & (ATOM_CACHE_SIZE - 1), a)
        if other is not a:
            break
    else:
        pytest.fail("no two of 2049 atoms share a slot")
    wide = Atom("é" * 200)  # 400 bytes of UTF-8: a header text is at most 255 here
    out, peer = slots(), slots()
    control = (other, a, wide)
    pkt = codec.encode_dist_packet(control, MISSING, MISSING, atom_cache=out)
    assert pkt[6] == 1 and pkt.count(b"\xc3\xa9") == 200
    assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, MISSING)
    pkt = codec.encode_dist_packet((a, wide), MISSING, MISSING, atom_cache=out)
    assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == ((a, wide), MISSING)
    assert out == peer and a in out and other not in out
    control = (other, 1)
    pkt = codec.encode_dist_packet(control, MISSING, MISSING, atom_cache=out)
    assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, MISSING)
    assert out == peer and other in out


def test_atom_cache_full_header_and_non_tuple_controls(codec: ModuleType) -> None:
    out, peer = slots(), slots()
    control = tuple(Atom(f"a{i}") for i in range(255))
    for _ in range(2):  # new entries, then references
        pkt = codec.encode_dist_packet(control, [1], MISSING, atom_cache=out)
        assert pkt[6] > 200  # most of them cached (a few share slots and are inline)
        assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, [1])
    assert out == peer
    # a control that is not a tuple of at most 255 elements: no refs
    for control in (Atom("alone"), tuple(range(256))):  # type: ignore[assignment]
        pkt = codec.encode_dist_packet(control, MISSING, MISSING, atom_cache=out)
        assert pkt[4:7] == b"\x83D\x00"
        assert codec.decode_dist_packet(pkt, peer, MISSING, 4) == (control, MISSING)


def test_atom_cache_is_untouched_by_a_message_that_fails(codec: ModuleType) -> None:
    out = slots()
    with pytest.raises(term.EncodeError):
        codec.encode_dist_packet((6, PID, Atom(""), Atom("sink")), object(), MISSING, atom_cache=out)
    for payload in (
        (Atom("ok"), object()),
        (Atom("ok"), (PID, Atom("x" * 256))),
        (Atom("ok"), b"x" * 5000, object()),  # past the C twin's stack buffer
        (Atom("ok"), b"x" * 5000, (PID, Atom("x" * 256))),
    ):
        with pytest.raises(term.EncodeError):
            codec.encode_dist_packet((6, PID, Atom(""), Atom("sink")), payload, MISSING, atom_cache=out)
    with pytest.raises(term.EncodeError):
        codec.encode_dist_packet((6, PID, Atom("x" * 256)), 1, MISSING, atom_cache=out)
    assert out == slots()
    with pytest.raises(ValueError, match="pass-through"):
        codec.encode_dist_packet((1,), 1, MISSING, True, out)
    for bad in ([None] * 10, tuple(out)):
        with pytest.raises(TypeError, match="2048"):
            codec.encode_dist_packet((1,), 1, MISSING, atom_cache=bad)


def test_atom_cache_twins_fail_alike_and_run_python_code_once() -> None:
    # a payload that fails gives the same error in both twins, whichever way the C twin
    # builds it (in its stack buffer, after the header, or inline once its refs failed); a
    # payload whose encoding runs Python code (a tuple subclass's iteration) runs it once
    if len(term.IMPLEMENTATIONS) < 2:
        pytest.skip("the C twin is not built")  # CI builds it (.ci/run checks)

    class Counting(tuple):  # type: ignore[type-arg]
        def __iter__(self) -> Any:
            self.seen = getattr(self, "seen", 0) + 1
            return super().__iter__()

    small, big = (6, PID, Atom(""), Atom("sink")), (6, PID, Atom(""), Atom("sink"), b"c" * 2000)
    bad = [
        (Atom("ok"), object()),
        (Atom("ok"), (PID, Atom("x" * 256))),
        (Atom("ok"), b"x" * 5000, object()),
        (Atom("ok"), b"x" * 5000, (PID, Atom("y" * 300))),
        (b"x" * 10, (PID, Atom("z" * 256))),
    ]
    for control in (small, big):
        for payload in bad:
            errors = []
            for impl in term.IMPLEMENTATIONS.values():
                with pytest.raises((term.EncodeError, TypeError)) as info:
                    impl.encode_dist_packet(control, payload, MISSING, atom_cache=slots())
                errors.append((type(info.value), str(info.value)))
            assert errors[0] == errors[1], (control[-1:], payload[:1])
        for size in (10, 5000):
            got = []
            for impl in term.IMPLEMENTATIONS.values():
                c = Counting((Atom("n"), b"x" * size))
                got.append(impl.encode_dist_packet(control, (Atom("t"), c), MISSING, atom_cache=slots()))
                assert c.seen == 1
            assert got[0] == got[1]


def test_atom_cache_twins_write_the_same_bytes() -> None:
    if len(term.IMPLEMENTATIONS) < 2:
        pytest.skip("the C twin is not built")  # CI builds it (.ci/run checks)
    ref = Reference("b@host", 7, (1, 2))
    controls = [
        (6, PID, Atom(""), Atom("sink")),
        (19, PID, Atom("other"), ref),
        (6, PID, Atom(""), Atom("sink")),
        (Atom("é" * 200), Atom("é")),
    ]
    caches = {name: slots() for name in term.IMPLEMENTATIONS}
    for control in controls:
        got = {
            name: impl.encode_dist_packet(control, [Atom("p"), b"x" * 2000], MISSING, atom_cache=caches[name])
            for name, impl in term.IMPLEMENTATIONS.items()
        }
        assert len(set(got.values())) == 1
    assert caches["c"] == caches["python"]


def test_atom_cache_twins_agree_on_random_controls_sharing_one_cache() -> None:
    # the twins take turns on one slot list (as if either had sent each message): same bytes,
    # and the receiver's cache follows; collisions, '', str nodes, long texts, ports
    if len(term.IMPLEMENTATIONS) < 2:
        pytest.skip("the C twin is not built")  # CI builds it (.ci/run checks)
    import random

    rng = random.Random(20261204)
    words = [Atom(f"w{i}") for i in range(3000)] + [Atom(""), Atom("é" * 130)]
    nodes = ["a@host", Atom("b@host"), "é@h"]

    def element() -> Any:
        k = rng.randrange(6)
        if k == 0:
            return Pid(rng.choice(nodes), rng.randrange(99), 0, 1)
        if k == 1:
            return Reference(rng.choice(nodes), 1, (rng.randrange(9), 2))
        if k == 2:
            return Port(rng.choice(nodes), rng.randrange(9), 3)
        if k == 3:
            return (rng.choice(words), rng.randrange(9))  # nested: inline
        return rng.choice(words)

    impls = [term.IMPLEMENTATIONS["c"], term.IMPLEMENTATIONS["python"]]
    out, peer = slots(), slots()
    for i in range(600):
        control = tuple(element() for _ in range(rng.randrange(1, 12)))
        payload = rng.choice([
            MISSING, [rng.choice(words)], b"x" * rng.randrange(3000), element(),
            tuple(element() for _ in range(rng.randrange(6))),
            (element(), tuple(element() for _ in range(rng.randrange(4)))),
            # about the C twin's stack buffer (1 KiB): a payload built after the control
            # there, or after the header when it does not fit
            (element(), b"x" * rng.randrange(800, 1100), (element(), element())),
        ])
        shadow = list(out)
        pkts = [
            impl.encode_dist_packet(control, payload, MISSING, atom_cache=c)
            for impl, c in ((impls[i % 2], out), (impls[1 - i % 2], shadow))
        ]
        assert pkts[0] == pkts[1] and out == shadow
        assert impls[i % 2].decode_dist_packet(pkts[0], peer, MISSING, 4) == (control, payload)
    assert out == peer


def test_parts_hold_big_binaries_by_reference(codec: ModuleType) -> None:
    # with parts, a bytes object of 64 KiB or more is a part of its own (the same object),
    # the length in the first part; the concatenation is the packet, cached or not
    blob, edge = b"b" * (1 << 20), b"e" * 65536
    control = (6, PID, Atom(""), Atom("sink"))
    for payload in (
        (Atom("t"), blob, b"s" * 100, edge, 7),
        [blob],
        blob,
        (Atom("t"), b"x" * 65535),  # one byte short: copied
        (Atom("t"), bytearray(blob)),  # mutable: copied
    ):
        for cached in (False, True):
            out, again = (slots(), slots()) if cached else (None, None)
            whole = codec.encode_dist_packet(control, payload, MISSING, atom_cache=again)
            parts = codec.encode_dist_packet(control, payload, MISSING, atom_cache=out, parts=True)
            big = [p for p in (payload if isinstance(payload, (tuple, list)) else [payload])
                   if type(p) is bytes and len(p) >= 65536]
            if not big:
                assert type(parts) is bytes and parts == whole
                continue
            assert type(parts) is list and b"".join(parts) == whole and out == again
            assert [p for p in parts if any(p is b for b in big)] == big
            assert struct.unpack_from(">I", parts[0])[0] == len(whole) - 4
            assert codec.decode_dist_packet(b"".join(parts), slots(), MISSING, 4) == (control, payload)
    # a fun's free variables are inside its Size: written whole, a big binary among them too
    for free in ((b"p" * 1500, bytes(70_000), b"x" * 300), (bytes(70_000),)):
        fun = term.Fun("m", 1, bytes(16), 0, 0, 0, PID, free)
        for payload in (fun, (Atom("f"), fun, blob)):
            for cache in (None, slots()):
                whole = codec.encode_dist_packet(control, payload, MISSING)
                got = codec.encode_dist_packet(control, payload, MISSING, atom_cache=cache, parts=True)
                joined = got if type(got) is bytes else b"".join(got)
                assert codec.decode_dist_packet(joined, slots(), MISSING, 4) == (control, payload)
                assert cache is not None or joined == whole
    # pass-through, and a control without a payload
    pt = codec.encode_dist_packet(control, blob, MISSING, True, parts=True)
    assert b"".join(pt) == codec.encode_dist_packet(control, blob, MISSING, True) and blob in pt
    assert codec.encode_dist_packet(control, MISSING, MISSING, parts=True) == codec.encode_dist_packet(
        control, MISSING, MISSING
    )
    # a failure leaves the cache as it was
    out = slots()
    with pytest.raises(term.EncodeError):
        codec.encode_dist_packet(control, (Atom("n"), blob, object()), MISSING, atom_cache=out, parts=True)
    assert out == slots()
