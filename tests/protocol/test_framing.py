import struct

import pytest

from pynode.protocol import NEED_DATA, NO_PAYLOAD, ProtocolError
from pynode.protocol import control as c
from pynode.protocol.flags import DFlag, default_flags
from pynode.protocol.framing import (
    TICK,
    AtomCache,
    ConnectionClosed,
    DistConnection,
    Message,
)
from pynode.term import encode
from pynode.term.types import Atom, Pid, Reference

from . import erl_packets

P1 = Pid("a@host", 1, 0, 5)
P2 = Pid("b@host", 2, 0, 6)
PLAIN = default_flags()
HEADER = default_flags(atom_cache=True)
FRAGS = default_flags(fragments=True)


def frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def drain(conn):
    events = []
    while True:
        ev = conn.next_event()
        if ev is NEED_DATA:
            return events
        events.append(ev)
        if isinstance(ev, ConnectionClosed):
            return events


# --------------------------------------------------------------------------- basic framing


def test_framing_choice_follows_flags():
    msg = c.SendSender(P1, P2)
    plain = DistConnection(PLAIN).send(msg, Atom("x"))
    assert plain[4] == 112 and plain[5] == 131
    assert plain == frame(b"p" + encode(msg.to_term()) + encode(Atom("x")))
    for flags in (HEADER, FRAGS):
        data = DistConnection(flags).send(msg, Atom("x"))
        assert data == frame(
            b"\x83D\x00"
            + encode(msg.to_term(), versioned=False)
            + encode(Atom("x"), versioned=False)
        )


def test_ticks_and_split_data():
    tx, rx = DistConnection(PLAIN), DistConnection(PLAIN)
    stream = (
        tx.tick() + tx.send(c.Link(P1, P2)) + tx.tick() + tx.send(c.Send(P2), [1, 2, 3]) + tx.tick()
    )
    events = []
    for byte in stream:
        rx.receive_data(bytes([byte]))
        events.extend(drain(rx))
    assert events == [
        TICK,
        Message(c.Link(P1, P2)),
        TICK,
        Message(c.Send(P2), [1, 2, 3]),
        TICK,
    ]
    rx.receive_data(stream)  # all at once
    assert len(drain(rx)) == 5
    rx.receive_eof()
    assert rx.next_event() == ConnectionClosed(clean=True)


def test_wanted_is_what_the_begun_packet_lacks():
    """What a read should at least ask for: nothing at a packet boundary, the rest of the
    length prefix, then the rest of the packet."""
    tx, rx = DistConnection(PLAIN), DistConnection(PLAIN)
    packet = tx.send(c.Send(P2), b"x" * 10_000)
    assert rx.wanted == 0
    rx.receive_data(packet[:2])
    assert rx.wanted == 2 and drain(rx) == []
    rx.receive_data(packet[2:1000])
    assert rx.wanted == len(packet) - 1000 and drain(rx) == []
    rx.receive_data(packet[1000:] + packet[:3])  # the packet and the start of the next
    assert drain(rx) == [Message(c.Send(P2), b"x" * 10_000)]
    assert rx.wanted == 1
    rx.receive_data(packet[3:])
    assert len(drain(rx)) == 1 and rx.wanted == 0


def test_eof_inside_a_packet():
    rx = DistConnection(PLAIN)
    rx.receive_data(b"\x00\x00\x00\x09p")
    assert rx.next_event() is NEED_DATA
    rx.receive_eof()
    assert rx.next_event() == ConnectionClosed(clean=False)
    with pytest.raises(RuntimeError):
        rx.next_event()


def test_oversize_packet_is_an_error_and_sticks():
    rx = DistConnection(PLAIN, max_packet=100)
    rx.receive_data(struct.pack(">I", 101))
    with pytest.raises(ProtocolError, match="exceeds"):
        rx.next_event()
    with pytest.raises(ProtocolError, match="exceeds"):
        rx.next_event()
    rx = DistConnection(PLAIN, max_packet=100)
    rx.receive_data(struct.pack(">I", 100))
    assert rx.next_event() is NEED_DATA


@pytest.mark.parametrize(
    "body, match",
    [
        (b"\x00garbage", "not 112 or 131"),
        (b"\x83", "not 112 or 131"),
        (b"\x83Z\x00", "unknown distribution header"),
        (b"p\x83\x68\x01", "undecodable"),
        (b"p" + encode((1, P1, P2)) + b"\x83", "undecodable"),
        (b"p" + encode((1, P1, P2)) + encode(1) + b"\x00", "bytes after"),
        (b"p" + encode((99, P1)), "unknown distribution operation"),
        (b"p" + encode(Atom("x")), "tuple"),
        (b"\x83D", "truncated"),
        (b"\x83D\x01", "truncated"),
        (b"\x83D\x01\x08\x05", "truncated"),
        (b"\x83D\x01\x00\x05h\x01a\x05", "empty slot"),
        (b"\x83D\x01\x08\x05\x02\xff\xfe", "UTF-8"),
        (b"\x83D\x00h\x03a\x01R\x00", "undecodable"),  # cache ref without a header entry
    ],
)
def test_garbage(body, match):
    rx = DistConnection(HEADER)
    rx.receive_data(frame(body))
    with pytest.raises(ProtocolError, match=match):
        rx.next_event()


def test_errors_stick_and_follow_good_messages():
    tx = DistConnection(HEADER)
    good = tx.send(c.Send(P2), 1)
    for bad, match in (
        (frame(b"\x83D\x00" + encode((2, Atom(""), P2), versioned=False) + b"a"), "undecodable"),
        (frame(b"\x83D\x00" + encode((99,), versioned=False)), "unknown distribution operation"),
    ):
        rx = DistConnection(HEADER)
        rx.receive_data(good + good + bad + good)
        assert rx.next_event() == rx.next_event() == Message(c.Send(P2), 1)
        with pytest.raises(ProtocolError, match=match) as first:
            rx.next_event()
        with pytest.raises(ProtocolError) as again:
            rx.next_event()
        assert again.value is first.value


def test_erl_packets_in_one_read_and_byte_by_byte():
    message = (Atom("event"), 12345, bytes(32), [1, 2, 3])
    for packets in (erl_packets.OTP25, erl_packets.OTP28):
        stream = b"".join(frame(p) for p in packets)
        rx = DistConnection(HEADER | DFlag.FRAGMENTS)
        rx.receive_data(stream)
        events = drain(rx)
        slow = DistConnection(HEADER | DFlag.FRAGMENTS)
        trickled = []
        for i in range(len(stream)):
            slow.receive_data(stream[i : i + 1])
            trickled.extend(drain(slow))
        assert trickled == events and len(events) == 7
        assert [type(ev.control) for ev in events] == [c.SendSender] * 4 + [c.RegSend] * 3
        assert events[0].payload[1] == Atom("yes")
        assert all(ev.payload == message for ev in events[1:])
        sender = events[1].control.from_pid
        assert events[4].control == c.RegSend(sender, Atom("capbox"))
        assert rx.atom_cache.entries == slow.atom_cache.entries
        assert sum(e is not None for e in rx.atom_cache.entries) == 6


def test_next_event_feeds_its_data_first() -> None:
    """``next_event(data)`` is ``receive_data(data)`` then ``next_event()`` (a read's one
    call): the same events from the same bytes in any split, what a packet begun waits for
    kept, ``buffer`` empty exactly when nothing is, and no data after the end of stream."""
    stream = b"".join(frame(p) for p in erl_packets.OTP28) + b"\0\0\0\0"  # and a tick
    whole = DistConnection(HEADER | DFlag.FRAGMENTS)
    whole.receive_data(stream)
    expected = drain(whole)
    for step in (1, 3, 7, 64, len(stream)):
        rx = DistConnection(HEADER | DFlag.FRAGMENTS)
        got = []
        for i in range(0, len(stream), step):
            ev = rx.next_event(stream[i : i + step])
            if ev is not NEED_DATA:
                got += [ev, *drain(rx)]
            assert bool(rx.buffer) == (rx.wanted > 0), step
        assert got == expected and len(got) == 8 and got[-1] is TICK
        assert not rx.buffer
    rx = DistConnection(HEADER)
    rx.receive_eof()
    with pytest.raises(RuntimeError):
        rx.next_event(b"\0\0\0\0")


def test_buffer_compaction_with_many_messages():
    tx, rx = DistConnection(HEADER), DistConnection(HEADER)
    one = tx.send(c.Send(P2), b"x" * 1000)
    rx.receive_data(one * 200)
    for _ in range(150):
        assert rx.next_event() == Message(c.Send(P2), b"x" * 1000)
    rx.receive_data(one)
    assert len(drain(rx)) == 51


# ------------------------------------------------------------------------------ atom cache


def new_pid(node_bytes: bytes, num: int, serial: int, creation: int) -> bytes:
    return b"X" + node_bytes + struct.pack(">III", num, serial, creation)


def test_atom_cache_header_long_atoms_then_doc_example():
    rx = DistConnection(HEADER | DFlag.FRAGMENTS)
    # Message 1: two new entries with LongAtoms: 'a@host' at segment 4 / index 10 and ''
    # at segment 0 / index 5. Nibbles: ref0 = 8|4, ref1 = 8|0; the next nibble has
    # LongAtoms = 1.
    header = bytes([131, 68, 2, 0x8C, 0x01, 10, 0, 6]) + b"a@host" + bytes([5, 0, 0])
    pid = new_pid(b"R\x00", 1, 0, 2)
    control = b"h\x03a\x01" + pid + pid
    rx.receive_data(frame(header + control))
    link = Pid("a@host", 1, 0, 2)
    assert rx.next_event() == Message(c.Link(link, link))

    # Message 2: the fragmented example from erl_ext_dist.md, which refers to the two
    # entries above as already cached and adds 'reg', 'call' and 'set_get_state'.
    first = bytes(
        [131, 69, 0, 0, 2, 168, 0, 0, 5, 83, 0, 0, 0, 0, 0, 0, 0, 2]
        + [5, 4, 137, 9, 10, 5, 236, 3, 114, 101, 103, 9, 4, 99, 97, 108, 108]
        + [238, 13, 115, 101, 116, 95, 103, 101, 116, 95, 115, 116, 97, 116, 101]
        + [104, 4, 97, 6, 103, 82, 0, 0, 0, 0, 85, 0, 0, 0, 0, 2, 82, 1, 82, 2]
        + [104, 3, 82, 3, 103, 82, 0, 0, 0, 0, 245, 0, 0, 0, 2, 2]
        + [104, 2, 82, 4, 109, 0, 0, 0, 128]
        + [0] * 103
    )
    second = bytes([131, 70, 0, 0, 2, 168, 0, 0, 5, 83, 0, 0, 0, 0, 0, 0, 0, 1] + [0] * 25)
    rx.receive_data(frame(first))
    assert rx.next_event() is NEED_DATA
    assert rx.pending_fragments == 1
    rx.receive_data(frame(second))
    ev = rx.next_event()
    assert ev.control == c.RegSend(Pid("a@host", 85, 0, 2), Atom("reg"), Atom(""))
    assert ev.payload == (
        Atom("call"),
        Pid("a@host", 245, 2, 2),
        (Atom("set_get_state"), bytes(128)),
    )
    assert rx.pending_fragments == 0

    # Message 3 only references cached entries: 'reg' (1/236), 'call' (0/9), 'a@host' (4/10).
    header = bytes([131, 68, 3, 0x01, 0x04, 236, 9, 10])
    control = b"h\x04a\x06" + new_pid(b"R\x02", 7, 0, 2) + b"w\x00R\x00"
    rx.receive_data(frame(header + control + b"R\x01"))
    ev = rx.next_event()
    assert ev == Message(c.RegSend(Pid("a@host", 7, 0, 2), Atom("reg")), Atom("call"))


def test_atom_cache_short_utf8_atoms_and_booleans():
    rx = DistConnection(HEADER)
    text = "ünï".encode()
    header = bytes([131, 68, 2, 0x98, 0x00, 1, 4]) + b"true" + bytes([2, len(text)]) + text
    control = b"h\x04a\x06" + new_pid(b"w\x06a@host", 1, 0, 1) + b"w\x00R\x01"
    payload = b"h\x02R\x00R\x01"
    rx.receive_data(frame(header + control + payload))
    ev = rx.next_event()
    assert ev.control == c.RegSend(Pid("a@host", 1, 0, 1), Atom("ünï"))
    assert ev.payload == (True, Atom("ünï"))
    assert rx.atom_cache.entries[(1 << 8) | 2] == Atom("ünï")


def test_atom_cache_direct():
    cache = AtomCache()
    refs, pos = cache.read_header(b"\x00rest", 0)
    assert refs is None and pos == 1
    # three new refs: the third nibble is the low half of byte 1, LongAtoms the high half
    odd = bytes([3, 0x88, 0x18]) + b"\x00\x00\x01a" + b"\x01\x00\x01b" + b"\x02\x00\x01c"
    refs, pos = cache.read_header(odd, 0)
    assert refs == [Atom("a"), Atom("b"), Atom("c")] and pos == len(odd)


def test_atom_cache_repeated_header_and_replaced_entry():
    cache = AtomCache()
    new_a = bytes([1, 0x08, 0x05, 1]) + b"a"  # one new entry: segment 0, index 5 = 'a'
    assert cache.read_header(new_a, 0) == ([Atom("a")], len(new_a))
    old = bytes([1, 0x00, 0x05])  # the same slot, already known
    first = cache.read_header(old, 0)
    assert first == ([Atom("a")], 3)
    assert cache.read_header(old + b"tail", 0) == ([Atom("a")], 3)  # served from the header memo
    new_b = bytes([1, 0x08, 0x05, 1]) + b"b"  # the slot now holds 'b'
    assert cache.read_header(new_b, 0) == ([Atom("b")], len(new_b))
    assert cache.read_header(old, 0) == ([Atom("b")], 3)  # the memo did not keep the old atom


# ------------------------------------------------------------------------------- fragments


def fragments(conn, msg, payload):
    return conn.send_packets(msg, payload)


def parse_frag(packet: bytes):
    size, magic, kind, seq, frag = struct.unpack_from(">IBBQQ", packet)
    assert size == len(packet) - 4 and magic == 131
    return kind, seq, frag


def test_fragmented_send_and_reassembly():
    tx = DistConnection(FRAGS, fragment_size=100)
    rx = DistConnection(FRAGS)
    payload = bytes(range(256)) * 4
    packets = fragments(tx, c.Send(P2), payload)
    assert len(packets) > 5
    kinds = [parse_frag(p) for p in packets]
    seq = kinds[0][1]
    assert kinds[0][0] == 69 and kinds[0][2] == len(packets)
    assert packets[0][22] == 0  # no atom cache refs
    assert [k for k, _, _ in kinds[1:]] == [70] * (len(packets) - 1)
    assert [f for _, _, f in kinds] == list(range(len(packets), 0, -1))
    assert all(s == seq for _, s, _ in kinds)
    assert all(len(p) - 4 - 18 <= 100 for p in packets[1:])
    for packet in packets:
        rx.receive_data(packet)
    assert drain(rx) == [Message(c.Send(P2), payload)]
    rx.receive_data(tx.send(c.Send(P2), payload))  # send() concatenates the packets
    assert drain(rx) == [Message(c.Send(P2), payload)]


def test_fragment_refs_are_those_of_its_first_fragment():
    # A message interleaved between fragments may change a cache slot the fragmented
    # message refers to: the refs are taken when its header arrives.
    rx = DistConnection(FRAGS)
    to = new_pid(b"w\x06a@host", 1, 0, 1)
    body = b"h\x03a\x02R\x00" + to + b"l\x00\x00\x00\x02R\x00R\x00j"
    head = struct.pack(">QQ", 7, 2) + bytes([1, 0x08, 5, 1]) + b"a"
    rx.receive_data(frame(b"\x83E" + head + body[:6]))
    other = b"\x83D" + bytes([1, 0x08, 5, 1]) + b"b" + b"h\x03a\x02R\x00" + to + b"R\x00"
    rx.receive_data(frame(other))
    rx.receive_data(frame(b"\x83F" + struct.pack(">QQ", 7, 1) + body[6:]))
    pid = Pid("a@host", 1, 0, 1)
    assert drain(rx) == [
        Message(c.Send(pid, Atom("b")), Atom("b")),
        Message(c.Send(pid, Atom("a")), [Atom("a"), Atom("a")]),
    ]
    assert rx.atom_cache.entries[5] == Atom("b")


def test_small_messages_are_not_fragmented():
    tx = DistConnection(FRAGS, fragment_size=1000)
    packets = tx.send_packets(c.Send(P2), b"x" * 10)
    assert len(packets) == 1 and packets[0][4:7] == b"\x83D\x00"


def test_control_larger_than_fragment_size():
    tx = DistConnection(FRAGS, fragment_size=8)
    rx = DistConnection(FRAGS)
    msg = c.Exit(P1, P2, Atom("a_rather_long_exit_reason"))
    packets = tx.send_packets(msg)
    assert parse_frag(packets[0])[2] == 1  # a single start fragment with FragId 1
    rx.receive_data(packets[0])
    assert rx.next_event() == Message(msg)


def test_interleaved_sequences_ticks_and_messages():
    tx = DistConnection(FRAGS, fragment_size=64)
    rx = DistConnection(FRAGS)
    a = tx.send_packets(c.Send(P2), b"A" * 500)
    b = tx.send_packets(c.RegSend(P1, Atom("srv")), [b"B" * 300])
    assert parse_frag(a[0])[1] != parse_frag(b[0])[1]
    order = []
    for i in range(max(len(a), len(b))):
        if i < len(a):
            order.append(a[i])
        order.append(tx.tick())
        if i < len(b):
            order.append(b[i])
        if i == 2:
            order.append(tx.send(c.Link(P1, P2)))
    rx.receive_data(b"".join(order))
    events = [ev for ev in drain(rx) if ev is not TICK]
    assert events == [
        Message(c.Link(P1, P2)),
        Message(c.RegSend(P1, Atom("srv")), [b"B" * 300]),
        Message(c.Send(P2), b"A" * 500),
    ]


def test_broken_sequences():
    tx = DistConnection(FRAGS, fragment_size=50)
    packets = tx.send_packets(c.Send(P2), b"z" * 400)
    rx = DistConnection(FRAGS)
    rx.receive_data(packets[0] + packets[2])  # fragment skipped
    with pytest.raises(ProtocolError, match="expected"):
        drain(rx)
    rx = DistConnection(FRAGS)
    rx.receive_data(packets[1])  # continuation without a start
    with pytest.raises(ProtocolError, match="unknown sequence"):
        rx.next_event()
    rx = DistConnection(FRAGS)
    rx.receive_data(packets[0] + packets[0])  # started twice
    with pytest.raises(ProtocolError, match="started twice"):
        drain(rx)
    rx = DistConnection(FRAGS)
    rx.receive_data(frame(b"\x83E" + struct.pack(">QQ", 1, 0) + b"\x00"))
    with pytest.raises(ProtocolError, match="fragment id 0"):
        rx.next_event()
    rx = DistConnection(FRAGS)
    rx.receive_data(frame(b"\x83F\x00\x00"))
    with pytest.raises(ProtocolError, match="truncated"):
        rx.next_event()


def test_fragment_memory_limits():
    tx = DistConnection(FRAGS, fragment_size=100)
    packets = tx.send_packets(c.Send(P2), b"m" * 1000)
    rx = DistConnection(FRAGS, max_message=500)
    rx.receive_data(b"".join(packets))
    with pytest.raises(ProtocolError, match="500-byte limit"):
        drain(rx)
    other = tx.send_packets(c.Send(P2), b"n" * 1000)
    rx = DistConnection(FRAGS, max_message=2000, max_buffered=1500)
    rx.receive_data(b"".join(packets[:8] + other[:8]))
    with pytest.raises(ProtocolError, match="1500-byte limit"):
        drain(rx)


def test_eof_inside_a_fragmented_message():
    tx = DistConnection(FRAGS, fragment_size=100)
    packets = tx.send_packets(c.Send(P2), b"q" * 1000)
    rx = DistConnection(FRAGS)
    rx.receive_data(packets[0])
    rx.receive_eof()
    assert rx.next_event() == ConnectionClosed(clean=False)


def test_send_checks_payload_presence():
    tx = DistConnection(PLAIN)
    with pytest.raises(ValueError, match="needs a payload"):
        tx.send(c.Send(P2))
    with pytest.raises(ValueError, match="takes no payload"):
        tx.send(c.Link(P1, P2), 1)


def test_send_rejects_unencodable():
    tx = DistConnection(PLAIN)
    with pytest.raises(ProtocolError, match="cannot encode"):
        tx.send(c.Send(P2), object())
    with pytest.raises(ValueError):
        DistConnection(PLAIN, fragment_size=0)


def test_no_payload_versus_none():
    tx, rx = DistConnection(PLAIN), DistConnection(PLAIN)
    rx.receive_data(tx.send(c.Send(P2), None))
    ev = rx.next_event()
    assert ev.payload is not NO_PAYLOAD and ev.payload == Atom("undefined")
    ref = Reference("a@host", 1, (1, 2, 3))
    rx.receive_data(tx.send(c.MonitorP(P1, P2, ref)))
    assert rx.next_event().payload is NO_PAYLOAD


def test_empty_data_is_not_end_of_stream():
    # A handshake usually ends with empty trailing_data; feeding it must not close.
    rx = DistConnection(PLAIN)
    rx.receive_data(b"")
    assert rx.next_event() is NEED_DATA
    rx.receive_data(DistConnection(PLAIN).tick())
    assert rx.next_event() is TICK
    rx.receive_eof()
    assert rx.next_event() == ConnectionClosed(clean=True)
    with pytest.raises(RuntimeError):
        rx.receive_data(b"x")


# ----------------------------------------------------------------- plain sends to a deliver hook


def hooked(flags, take=lambda to: True):
    """A receiving connection whose deliver hook records what it takes."""
    rx = DistConnection(flags)
    took = []

    def deliver(to, payload):
        if not take(to):
            return False
        took.append((to, payload))
        return True

    rx.deliver = deliver
    return rx, took


@pytest.mark.parametrize("flags", [PLAIN, HEADER, FRAGS])
def test_plain_sends_go_to_the_hook_in_order_with_other_events(flags):
    tx = DistConnection(flags)
    rx, took = hooked(flags)
    link = c.Link(P1, P2)
    stream = b"".join([
        tx.send(c.Send(P2), 1),
        tx.send(c.SendSender(P1, P2), 2),
        tx.send(c.RegSend(P1, Atom("inbox")), 3),
        tx.send(link),  # not a send: an event, after the three sends were taken
        tx.tick(),
        tx.send(c.SendTT(P2, Atom("token")), 4),  # traced: an event
        tx.send(c.RegSend(P1, Atom("box")), 5),
    ])
    rx.receive_data(stream)
    assert rx.next_event() == Message(link)
    assert took == [(P2, 1), (P2, 2), (Atom("inbox"), 3)] and rx.delivered == 3
    assert rx.next_event() is TICK
    assert rx.next_event() == Message(c.SendTT(P2, Atom("token")), 4)
    assert rx.next_event() is NEED_DATA
    assert took[-1] == (Atom("box"), 5) and rx.delivered == 4


def test_sends_the_hook_declines_are_events():
    tx = DistConnection(HEADER)
    rx, took = hooked(HEADER, take=lambda to: to == Atom("known"))
    rx.receive_data(tx.send(c.RegSend(P1, Atom("unknown")), 1) + tx.send(c.RegSend(P1, Atom("known")), 2)
                    + tx.send(c.Send(P1), 3))
    assert drain(rx) == [Message(c.RegSend(P1, Atom("unknown")), 1), Message(c.Send(P1), 3)]
    assert took == [(Atom("known"), 2)] and rx.delivered == 1


def test_a_fragmented_send_reaches_the_hook_as_an_event():
    tx = DistConnection(FRAGS, fragment_size=100)
    rx, took = hooked(FRAGS)
    payload = bytes(range(256)) * 4
    for packet in fragments(tx, c.Send(P2), payload):
        rx.receive_data(packet)
    assert drain(rx) == [Message(c.Send(P2), payload)] and took == []


@pytest.mark.parametrize("control", [
    (22, Atom("notapid"), P2),  # SEND_SENDER from an atom
    (6, P1, Atom(""), 42),  # REG_SEND to a number
    (6, Atom("x"), Atom(""), Atom("inbox")),  # REG_SEND from an atom
    (2, Atom(""), Atom("inbox")),  # SEND to a name
    (22, P1, P2, 1),  # one element too many
])
def test_malformed_sends_are_protocol_errors_with_the_hook_too(control):
    body = b"\x70" + encode(control) + encode(1)  # pass-through: each term with its 131
    for rx, took in (hooked(PLAIN), (DistConnection(PLAIN), [])):
        rx.receive_data(frame(body))
        with pytest.raises(ProtocolError):
            rx.next_event()
        assert took == []


# -- the deliver hook when something fails in the middle of a batch ---------------------------

def _send_packet(n: int) -> bytes:
    body = b"\x83D\x00" + encode((2, Atom(""), Pid("n@h", 1, 2, 3)))[1:] + encode(n)[1:]
    return struct.pack(">I", len(body)) + body


@pytest.fixture(params=["c", "python"])
def batch_impl(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The framing's batch call from one codec or the other."""
    from pynode import term
    from pynode.protocol import framing

    impl = term.IMPLEMENTATIONS.get(request.param)
    if impl is None:  # pragma: no cover - depends on the build
        pytest.skip("the C codec is not built")
    monkeypatch.setattr(framing, "decode_dist_sends", impl.decode_dist_sends)
    return str(request.param)


def test_a_hook_error_mid_batch_delivers_nothing_twice(batch_impl: str) -> None:
    d = DistConnection(default_flags(fragments=True, atom_cache=True))
    got: list[int] = []
    calls = [0]

    def deliver(to: object, payload: int) -> bool:
        calls[0] += 1
        if calls[0] == 2:
            raise RuntimeError("the hook failed once")
        got.append(payload)
        return True

    d.deliver = deliver
    d.receive_data(_send_packet(1) + _send_packet(2) + _send_packet(3))
    with pytest.raises(RuntimeError, match="once"):
        d.next_event()
    assert d.delivered == 1 and got == [1]  # the first counted; the failed one comes again
    assert d.next_event() is NEED_DATA
    assert got == [1, 2, 3] and d.delivered == 3


def test_a_protocol_error_from_the_hook_sticks(batch_impl: str) -> None:
    d = DistConnection(default_flags(fragments=True, atom_cache=True))

    def deliver(to: object, payload: object) -> bool:
        raise ProtocolError("the hook says no")

    d.deliver = deliver
    d.receive_data(_send_packet(1))
    with pytest.raises(ProtocolError, match="says no"):
        d.next_event()
    d.deliver = lambda to, payload: True
    with pytest.raises(ProtocolError, match="says no"):  # unusable, as after a bad packet
        d.next_event()


class _Stiff(Exception):
    """An exception that takes no attributes: the codec cannot say where it stopped."""

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(name)


def test_a_hook_error_without_a_position_ends_the_connection(batch_impl: str) -> None:
    d = DistConnection(default_flags(fragments=True, atom_cache=True))
    got: list[int] = []

    def deliver(to: object, payload: int) -> bool:
        if got:
            raise _Stiff("no position")
        got.append(payload)
        return True

    d.deliver = deliver
    d.receive_data(_send_packet(1) + _send_packet(2))
    with pytest.raises(ProtocolError, match="_Stiff: no position"):
        d.next_event()
    with pytest.raises(ProtocolError, match="_Stiff"):  # never the first one handed again
        d.next_event()
    assert got == [1]


# -- the deliver_signal hook: other packets' control tuples, before they become events --------

def _signal_hooked(took: list[tuple[object, object]], ops: set[int]) -> DistConnection:
    d = DistConnection(default_flags(fragments=True, atom_cache=True))
    d.deliver = lambda to, payload: took.append(("send", payload)) is None

    def signal(control: tuple[object, ...], payload: object) -> bool:
        if control[0] not in ops:
            return False
        took.append((control, payload))
        return True

    d.deliver_signal = signal
    return d


def test_other_packets_go_to_the_signal_hook_in_order(batch_impl: str) -> None:
    tx = DistConnection(default_flags(fragments=True, atom_cache=True))
    ref = Reference("a@h", 1, (1, 2, 3))
    reply, down = c.SpawnReply(ref, P1, 2, P2), c.PayloadMonitorPExit(P2, P1, ref)
    took: list[tuple[object, object]] = []
    rx = _signal_hooked(took, {c.DOP.SPAWN_REPLY, c.DOP.PAYLOAD_MONITOR_P_EXIT})
    rx.receive_data(b"".join([
        tx.send(reply), tx.send(c.Send(P1), 1), tx.send(c.Link(P1, P2)), tx.send(down, Atom("done")),
        tx.tick(), tx.send(c.Send(P1), 2),
    ]))
    assert rx.next_event() == Message(c.Link(P1, P2))  # declined: an event, after those before it
    assert took == [(reply.to_term(), NO_PAYLOAD), ("send", 1)] and rx.delivered == 2
    assert rx.next_event() is TICK
    assert took[2:] == [(down.to_term(), Atom("done"))] and rx.delivered == 3
    assert rx.next_event() is NEED_DATA
    assert took[3:] == [("send", 2)] and rx.delivered == 4


def test_a_signal_hook_error_loses_only_its_packet(batch_impl: str) -> None:
    tx = DistConnection(default_flags(fragments=True, atom_cache=True))
    rx = DistConnection(default_flags(fragments=True, atom_cache=True))
    seen: list[object] = []

    def signal(control: tuple[object, ...], payload: object) -> bool:
        seen.append(control)
        if len(seen) == 1:
            raise RuntimeError("the hook failed once")
        return False

    rx.deliver_signal = signal
    rx.receive_data(tx.send(c.Link(P1, P2)) + tx.send(c.Link(P2, P1)))
    with pytest.raises(RuntimeError, match="once"):
        rx.next_event()
    assert rx.next_event() == Message(c.Link(P2, P1))  # the failed one is not handed again
    assert seen == [c.Link(P1, P2).to_term(), c.Link(P2, P1).to_term()]
    assert rx.next_event() is NEED_DATA


def test_a_protocol_error_from_the_signal_hook_sticks(batch_impl: str) -> None:
    tx = DistConnection(default_flags(fragments=True, atom_cache=True))
    rx = DistConnection(default_flags(fragments=True, atom_cache=True))

    def signal(control: tuple[object, ...], payload: object) -> bool:
        raise ProtocolError("the signal hook says no")

    rx.deliver_signal = signal
    rx.receive_data(tx.send(c.Link(P1, P2)) + tx.send(c.Link(P2, P1)))
    with pytest.raises(ProtocolError, match="says no"):
        rx.next_event()
    rx.deliver_signal = None
    with pytest.raises(ProtocolError, match="says no"):
        rx.next_event()


def test_a_limit_beyond_any_size_is_no_limit(batch_impl: str) -> None:
    d = DistConnection(default_flags(), max_packet=2**64)
    d.receive_data(_send_packet(7))
    ev = d.next_event()
    assert isinstance(ev, Message) and ev.payload == 7


# --------------------------------------------------------------------------- peek_signals

REF = Reference("a@host", 1, (1, 2, 3))


@pytest.mark.parametrize("flags", [PLAIN, HEADER, FRAGS], ids=["plain", "header", "fragments"])
def test_peek_signals_decodes_without_taking(flags):
    tx, rx = DistConnection(flags), DistConnection(flags)
    reply = tx.send(c.SpawnReply(REF, P1, 2, P2))
    down = tx.send(c.PayloadMonitorPExit(P2, P1, REF), (Atom("ok"), 5))
    data = bytearray(reply + down[:7])  # the second packet is not whole yet
    pos, got = rx.peek_signals(data)
    assert pos == len(reply) and got == [((31, REF, P1, 2, P2), NO_PAYLOAD)]
    data += down[7:]
    assert rx.peek_signals(data, pos) == (len(data), [((28, P2, P1, REF), (Atom("ok"), 5))])
    send = tx.send(c.Send(P1), Atom("hi"))  # a plain send is peeked as any packet
    assert rx.peek_signals(bytearray(send)) == (len(send), [((2, Atom(""), P1), Atom("hi"))])
    # nothing was taken: fed as usual, the same packets come out
    rx.receive_data(bytes(data))
    assert drain(rx) == [
        Message(c.SpawnReply(REF, P1, 2, P2)),
        Message(c.PayloadMonitorPExit(P2, P1, REF), (Atom("ok"), 5)),
    ]


def test_peek_signals_declines_what_the_connection_must_handle():
    tx, rx = DistConnection(PLAIN), DistConnection(PLAIN)
    reply = tx.send(c.SpawnReply(REF, P1, 2, P2))
    assert rx.peek_signals(bytearray(tx.tick())) is None  # a tick
    assert rx.peek_signals(bytearray(reply + tx.tick())) is None  # one after a signal
    assert rx.peek_signals(bytearray(frame(b"p\x83\x01"))) is None  # undecodable
    assert rx.peek_signals(bytearray(struct.pack(">I", 1 << 30))) is None  # over max_packet
    assert rx.peek_signals(bytearray(b"\x00\x00")) == (0, [])  # a length not whole yet
    rx.receive_data(reply[:3])  # fed bytes come first: the caller must feed these too
    assert rx.peek_signals(bytearray(reply[3:])) is None


def test_peek_signals_never_decodes_a_later_packets_new_cache_entries():
    """A packet the peek decoded is decoded again when the bytes are fed: a later packet's
    new entry decoded by the peek could replace the atom an earlier one refers to. Only the
    first packet may bring new entries."""
    rx = DistConnection(HEADER)
    control = encode((2, Atom(""), P1), versioned=False)
    new_a = bytes([1, 0x08, 0x05, 1]) + b"a"  # slot 5 = 'a'
    new_b = bytes([1, 0x08, 0x05, 1]) + b"b"  # slot 5 = 'b'
    old = bytes([1, 0x00, 0x05])  # slot 5 as known
    ref0 = b"R\x00"  # the payload: the header's first atom
    rx.receive_data(frame(b"\x83D" + new_a + control + ref0))
    assert [e.payload for e in drain(rx)] == [Atom("a")]
    refers = frame(b"\x83D" + old + control + ref0)
    replaces = frame(b"\x83D" + new_b + control + ref0)
    assert rx.peek_signals(bytearray(refers + replaces)) is None
    assert rx.atom_cache.entries[5] == Atom("a")  # the second packet was not decoded
    assert rx.peek_signals(bytearray(refers), 0) == (len(refers), [((2, Atom(""), P1), Atom("a"))])
    # the first packet may: decoding it again sets the same atoms
    pos, got = rx.peek_signals(bytearray(replaces + refers))
    assert pos == len(replaces + refers) and [p for _, p in got] == [Atom("b"), Atom("b")]
    rx.receive_data(replaces + refers)
    assert [e.payload for e in drain(rx)] == [Atom("b"), Atom("b")]


# ---------------------------------------------------------------------- atom cache, sending

CACHED = default_flags(fragments=True, atom_cache=True)


def joined(pieces) -> bytes:
    return b"".join(bytes(p) for p in pieces)


def test_the_loops_sends_use_the_atom_cache_when_negotiated():
    tx, rx = DistConnection(CACHED), DistConnection(CACHED)
    msg = c.RegSend(P1, Atom("sink"))
    first = joined(tx.send_pieces(msg, Atom("x"), True))
    again = joined(tx.send_pieces(msg, Atom("y"), True))
    assert first[4:7] == again[4:7] == b"\x83D\x04"  # P1's node, '', the name and the payload
    assert len(again) < len(first)  # references, no texts
    plain = joined(tx.send_pieces(msg, Atom("z")))  # another thread's send: no refs
    assert plain[4:7] == b"\x83D\x00"
    rx.receive_data(first + plain + again)
    assert drain(rx) == [Message(msg, Atom("x")), Message(msg, Atom("z")), Message(msg, Atom("y"))]
    # not negotiated: no refs, whoever sends
    assert DistConnection(FRAGS).send_pieces(msg, 1, True)[0][4:7] == b"\x83D\x00"
    assert DistConnection(PLAIN).send_pieces(msg, 1, True)[0][4:6] == b"p\x83"  # pass-through


def test_a_fragmented_message_carries_its_refs_in_the_first_fragment():
    tx, rx = DistConnection(CACHED, fragment_size=100), DistConnection(CACHED)
    msg = c.RegSend(P1, Atom("a_registered_name"))
    payload = bytes(range(256)) * 4
    pieces = tx.send_pieces(msg, payload, True)
    packets = [bytes(pieces[0])] + [bytes(pieces[i]) + bytes(pieces[i + 1]) for i in range(1, len(pieces), 2)]
    kinds = [parse_frag(p) for p in packets]
    assert kinds[0][0] == 69 and kinds[0][2] == len(packets) > 5
    assert packets[0][22] == 3  # NumberOfAtomCacheRefs, all new
    assert [f for _, _, f in kinds] == list(range(len(packets), 0, -1))
    assert all(len(p) - 4 - 18 <= 100 for p in packets[1:])
    small = joined(tx.send_pieces(msg, 1, True))  # refers to what the first fragment set
    assert small[6] == 3 and b"a_registered_name" not in small
    rx.receive_data(b"".join(packets) + small)
    assert drain(rx) == [Message(msg, payload), Message(msg, 1)]
    # refs again, and a control longer than a fragment: it stays in the first one
    tx8 = DistConnection(CACHED, fragment_size=8)
    exit_ = c.Exit(P1, P2, Atom("a_rather_long_exit_reason"))
    for _ in range(2):
        pieces = tx8.send_pieces(exit_, cache_atoms=True)
        assert parse_frag(bytes(pieces[0]))[2] == len(pieces) // 2 + 1
        rx.receive_data(joined(pieces))
        assert drain(rx) == [Message(exit_)]


def test_a_failure_after_the_slots_were_set_stops_the_cache(monkeypatch):
    # the re-encode that finds a fragmented control's length fails (say, out of memory):
    # the message is not sent, so the peer never sees the slots it set; later messages
    # refer to none of them, and the peer reads them whole
    tx, rx = DistConnection(CACHED, fragment_size=100), DistConnection(CACHED)
    msg = c.RegSend(P1, Atom("a_registered_name"))
    import pynode.protocol.framing as framing

    def failing(*args, **kwargs):
        raise MemoryError

    with monkeypatch.context() as m:
        m.setattr(framing, "encode", failing)
        with pytest.raises(MemoryError):
            tx.send_pieces(msg, b"x" * 1000, True)
    assert tx.plain_cache is None  # nor do the plain sends (Connection.send_plain)
    again = joined(tx.send_pieces(msg, 1, True))
    assert again[4:7] == b"\x83D\x00"
    rx.receive_data(again)
    assert drain(rx) == [Message(msg, 1)]


@pytest.mark.parametrize("flags", [CACHED, FRAGS, HEADER, PLAIN], ids=["cached", "frags", "header", "plain"])
def test_a_big_binary_goes_out_by_reference(flags) -> None:
    # the codec keeps a bytes object of 64 KiB or more as a part of its own: fragments are
    # views into it, an unfragmented packet has it as a piece; the peer reads it whole
    tx, rx = DistConnection(flags), DistConnection(flags)
    blob = bytes(range(256)) * 4096  # 1 MiB
    payloads = [
        blob,
        (Atom("tag"), blob, [b"x" * 70_000, 1], b"tail"),
        [bytearray(b"y" * 100_000)],  # mutable: copied, not kept
    ]
    for payload in payloads:
        pieces = tx.send_pieces(c.Send(P2), payload, True)
        shared = [p for p in pieces if p is blob or (isinstance(p, memoryview) and p.obj is blob)]
        if payload is payloads[2]:
            assert not shared
        else:
            assert sum(map(len, shared)) >= len(blob) - 70_000  # all but the first fragment's
        rx.receive_data(joined(pieces))
        assert drain(rx) == [Message(c.Send(P2), payload if payload is not payloads[2] else [b"y" * 100_000])]
    packets = tx.send_packets(c.Send(P2), (blob, blob))  # cut at the packets' lengths
    assert all(len(p) == 4 + struct.unpack_from(">I", p)[0] for p in packets)
    rx.receive_data(b"".join(packets))
    assert drain(rx) == [Message(c.Send(P2), (blob, blob))]
