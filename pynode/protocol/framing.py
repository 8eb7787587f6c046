"""The connected phase of a distribution connection, sans-IO.

After the handshake every packet carries a 4-byte big-endian length; a zero-length packet is a
tick. A packet is one of (erl_ext_dist.md "Distribution Header", erl_dist_protocol.md):

* ``112 | 131 Control | [131 Payload]`` -- pass-through, no distribution header;
* ``131 68 | AtomCacheHeader | Control | [Payload]`` -- normal distribution header, terms
  without the 131 version byte, ATOM_CACHE_REF resolved through the header;
* ``131 69 | SeqId:8 | FragId:8 | AtomCacheHeader | data`` then ``131 70 | SeqId:8 | FragId:8 |
  data`` ... -- one message split into fragments (SeqId and FragId are 8-byte big-endian
  integers), FragId counting down to 1.

:class:`DistConnection` turns received bytes into :class:`Message` / :class:`Tick` events and
control messages into packets, choosing the framing from the negotiated flags.
"""

from __future__ import annotations

import itertools
import struct

from pynode.term import (
    ATOM_CACHE_SIZE,
    DecodeError,
    EncodeError,
    decode_dist_body,
    decode_dist_header,
    decode_dist_packet,
    decode_dist_sends,
    encode,
    encode_dist_packet,
    peek_dist_packets,
    peek_spawn_answer,
)

from ._common import NEED_DATA, NO_PAYLOAD, Frozen, NeedData
from .control import ControlMessage, from_term
from .errors import ProtocolError
from .flags import DFlag

_partial: Any = None  # functools.partial, imported on first use (see spawn_answer_reader)

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from typing import Any, Final


__all__ = [
    "PASS_THROUGH",
    "VERSION_MAGIC",
    "DIST_HEADER",
    "DIST_FRAG_HEADER",
    "DIST_FRAG_CONT",
    "ATOM_CACHE_SIZE",
    "DEFAULT_MAX_PACKET",
    "DEFAULT_MAX_MESSAGE",
    "DEFAULT_MAX_FRAGMENTED",
    "DEFAULT_FRAGMENT_SIZE",
    "TICK_PACKET",
    "Message",
    "Tick",
    "TICK",
    "ConnectionClosed",
    "DistEvent",
    "AtomCache",
    "DistConnection",
]

PASS_THROUGH: Final = 112
VERSION_MAGIC: Final = 131
DIST_HEADER: Final = 68
DIST_FRAG_HEADER: Final = 69
DIST_FRAG_CONT: Final = 70

DEFAULT_MAX_PACKET: Final = 128 * 1024 * 1024
DEFAULT_MAX_MESSAGE: Final = 256 * 1024 * 1024
# Fragmented messages partly received on one connection. erts bounds them only by memory;
# a sender interleaves at most one per sending process, so 1024 holds back no real peer and
# stops one from opening sequences forever (their bytes are bounded by max_buffered).
DEFAULT_MAX_FRAGMENTED: Final = 1024
DEFAULT_FRAGMENT_SIZE: Final = 64 * 1024

TICK_PACKET: Final = b"\x00\x00\x00\x00"

_U32 = struct.Struct(">I")
_U32_unpack_from = _U32.unpack_from
_FRAG = struct.Struct(">QQ")
_FRAG_HEAD = struct.Struct(">IBBQQ")  # length, 131, 69/70, seq, frag


_set = object.__setattr__


class Message(Frozen):
    """A distribution message: the control message and its payload (or NO_PAYLOAD)."""

    __slots__ = ("control", "payload")
    control: ControlMessage
    payload: Any

    def __init__(self, control: ControlMessage, payload: Any = NO_PAYLOAD) -> None:
        _set(self, "control", control)
        _set(self, "payload", payload)


# Message(control, payload) without __init__'s object.__setattr__ calls (the receive path
# makes one per message): the slots' own setters
_new_message = object.__new__
_set_control = Message.__dict__["control"].__set__
_set_payload = Message.__dict__["payload"].__set__


def _decline(to: Any, payload: Any) -> bool:
    """The deliver hook of a connection without one: every message becomes an event."""
    return False


class Tick(Frozen):
    """A zero-length keep-alive packet arrived."""

    __slots__ = ()


TICK: Final = Tick()


class ConnectionClosed(Frozen):
    """The peer closed the connection; ``clean`` is False if it stopped inside a packet
    or inside a fragmented message."""

    __slots__ = ("clean",)
    clean: bool

    def __init__(self, clean: bool = True) -> None:
        _set(self, "clean", clean)


DistEvent = Message | Tick | ConnectionClosed


def encode_failure(exc: EncodeError) -> ProtocolError:
    """What a message that cannot be encoded raises (send_pieces, Connection.send_plain)."""
    return ProtocolError(f"cannot encode distribution message: {exc}")


def _header_end(packet: bytes) -> int:
    """Where the body starts in a whole ``Length:4 | 131 68 | atom cache part | ...`` packet."""
    n = packet[6]
    if not n:
        return 7
    pos = 7 + n // 2 + 1
    long_atoms = (packet[7 + n // 2] >> (4 * (n % 2))) & 1
    for i in range(n):
        new = (packet[7 + i // 2] >> (4 * (i % 2))) & 8
        pos += 1  # InternalSegmentIndex
        if new:
            if long_atoms:
                pos += 2 + (packet[pos] << 8 | packet[pos + 1])
            else:
                pos += 1 + packet[pos]
    return pos


def _chunks(parts: list[bytes | memoryview], first: int, step: int) -> Iterator[list[memoryview]]:
    """The bytes of ``parts`` in order, cut ``first`` bytes then ``step`` bytes at a time
    (the last cut shorter), each cut as the views into the parts it spans."""
    want, cut = first, []
    for part in parts:
        view = memoryview(part)
        while view:
            take = view[:want]
            cut.append(take)
            view = view[len(take):]
            want -= len(take)
            if not want:
                yield cut
                want, cut = step, []
    if cut:
        yield cut


class AtomCache:
    """The receive side of the distribution header atom cache (one per connection).

    ``entries`` holds the 2048 slots (None when empty) that ATOM_CACHE_REF indexes refer to
    through each message's header; :meth:`read_header` parses ``NumberOfAtomCacheRefs |
    Flags | AtomCacheRefs`` and stores new entries (the codec's ``decode_dist_header``, which
    ``decode_dist_packet`` also uses for whole messages).
    """

    __slots__ = ("entries",)

    def __init__(self) -> None:
        self.entries: list[Any] = [None] * ATOM_CACHE_SIZE

    def read_header(self, data: bytes, pos: int) -> tuple[list[Any] | None, int]:
        """Parse the atom cache part at ``pos``; return (refs or None, offset after it)."""
        try:
            return decode_dist_header(data, self.entries, pos)
        except DecodeError as exc:
            raise ProtocolError(f"undecodable distribution message: {exc}") from exc


class _Sequence:
    """A fragmented message being reassembled (mutable)."""

    __slots__ = ("refs", "next_frag", "chunks", "size")

    def __init__(self, refs: list[Any] | None, next_frag: int, chunks: list[bytes], size: int) -> None:
        self.refs = refs
        self.next_frag = next_frag
        self.chunks = chunks
        self.size = size


class DistConnection:
    """One connected distribution channel, sans-IO (modeled on h11's Connection).

    ``flags`` are the negotiated flags from :class:`~pynode.protocol.handshake.HandshakeComplete`.
    Feed socket bytes to :meth:`receive_data` (:meth:`receive_eof` at end of stream), pull events with
    :meth:`next_event`; :meth:`send` and :meth:`tick` return bytes for the socket.

    Limits: a packet longer than ``max_packet`` and a reassembled message longer than
    ``max_message`` are protocol errors; incomplete fragmented messages may together hold at
    most ``max_buffered`` bytes (default ``max_message``), and at most ``max_fragmented`` of
    them may be in flight at once. ``fragment_size`` bounds the data
    in each outgoing fragment when FRAGMENTS was negotiated.
    """

    def __init__(
        self,
        flags: int,
        *,
        max_packet: int = DEFAULT_MAX_PACKET,
        max_message: int = DEFAULT_MAX_MESSAGE,
        max_buffered: int | None = None,
        max_fragmented: int = DEFAULT_MAX_FRAGMENTED,
        fragment_size: int = DEFAULT_FRAGMENT_SIZE,
    ) -> None:
        if fragment_size < 1:
            raise ValueError("fragment_size must be positive")
        self.flags = DFlag(int(flags))
        self.max_packet = max_packet
        self.max_message = max_message
        self.max_buffered = max_message if max_buffered is None else max_buffered
        self.max_fragmented = max_fragmented
        self.fragment_size = fragment_size
        self._use_header = bool(flags & (DFlag.DIST_HDR_ATOM_CACHE | DFlag.FRAGMENTS))
        self._fragments = bool(flags & DFlag.FRAGMENTS)
        self._buf = bytearray()
        self.buffer = self._buf
        """The bytes fed and not yet taken (empty: nothing begun, and ``wanted`` is 0), read
        only: a reader that checks it skips the ``wanted`` property's call on most reads."""
        self._pos = 0
        self._eof = False
        self._closed_reported = False
        self._error: ProtocolError | None = None
        self.atom_cache = AtomCache()
        self._entries = self.atom_cache.entries
        # the send side's slots (what the peer's cache holds, as our headers set it), when
        # the atom cache was negotiated: erl then decodes a cached atom by index, not by
        # text (a message's node, '' and registered name cost it a third less to read)
        self._out_cache: list[Any] | None = (
            [None] * ATOM_CACHE_SIZE if flags & DFlag.DIST_HDR_ATOM_CACHE else None
        )
        self.plain_cache: list[Any] | None = self._out_cache if self._use_header else None
        """The event loop's plain sends encode their packets with this cache themselves
        (``Connection.send_plain``, then :meth:`pieces_of`): a mailbox's send is the hot path,
        and send_pieces' frame is a tenth of its Python. None: they go through send_pieces."""
        self.pass_through = not self._use_header
        """Whether packets go without the 131 68 header (neither atom cache nor fragments
        negotiated): what a thread's send encodes with (``Connection.send_from_thread``)."""
        self.plain_max = self.fragment_size + 7 if self._fragments else 1 << 62
        """The longest packet that goes out as it is (longer ones: :meth:`pieces_of`; a
        header is at least 7 bytes: 4 length, 131 68, NumberOfAtomCacheRefs)."""
        self._sequences: dict[int, _Sequence] = {}
        self._buffered = 0
        self.deliver: Callable[[Any, Any], bool] | None = None
        """Plain sends (SEND, SEND_SENDER, REG_SEND) go to ``deliver(to, payload)`` instead of
        becoming Message events, when it returns True (it took the payload). A message is
        the hot path; this spares it the control object and the event."""
        self.deliver_signal: Callable[[tuple[Any, ...], Any], bool] | None = None
        """Any other packet's control tuple and payload go to ``deliver_signal(control,
        payload)`` first; True means it took them (a well-formed signal it handled), False
        makes them a Message event as before. An rpc's signals (SPAWN_REQUEST, SPAWN_REPLY,
        MONITOR_P_EXIT) are a round trip's hot path; this spares them the control object and
        the event.

        Both hooks run inside the codec's decoding of the buffer (``next_event``): they must
        not feed or read this connection. A packet whose deliver_signal raised is consumed;
        a DecodeError from either hook, like one from the bytes, leaves it unusable."""
        self.sinks: dict[Any, tuple[Any, ...]] | None = None
        """Queues that plain sends go to without ``deliver``: see ``decode_dist_sends``. The
        hook's Python call was about half of a small message's cost in the codec call."""
        self.delivered = 0  # how many messages went to ``deliver`` or ``deliver_signal``
        # next() on a count is atomic in CPython: the blocking API encodes on the caller's
        # thread while the event loop encodes too
        self._seqs = itertools.count(1)

    # ------------------------------------------------------------------------ receiving

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket. Empty data is ignored (so an empty
        ``trailing_data`` is harmless); the end of stream is :meth:`receive_eof`."""
        if data:
            if self._eof:
                raise RuntimeError("receive_data() after receive_eof()")
            buf = self._buf
            if self._pos and self._pos == len(buf):
                buf.clear()
                self._pos = 0
            buf += data

    def receive_eof(self) -> None:
        """The peer closed the connection; :class:`ConnectionClosed` follows the last event."""
        self._eof = True

    @property
    def wanted(self) -> int:
        """Bytes still to come for the packet begun in the buffer (0 at a packet boundary):
        the least the next read should ask for."""
        buf, pos = self._buf, self._pos
        avail = len(buf) - pos
        if avail < 4:
            return 4 - avail if avail else 0
        (size,) = _U32_unpack_from(buf, pos)
        return max(0, 4 + size - avail)

    def peek_signals(self, data: bytearray, start: int = 0) -> tuple[int, list[tuple[Any, Any]]] | None:
        """The control tuples and payloads of the whole packets in ``data[start:]`` (bytes
        read after everything fed so far), decoded without taking them, and where the next
        packet begins: for a reader that waits for packets it knows (an erpc call's answer
        has a codec call of its own: :meth:`spawn_answer_reader`). None when they hold a
        tick, a fragment or an undecodable
        packet, or when fed bytes are still buffered: then ``data`` goes through
        :meth:`receive_data` as usual. An incomplete packet at the end is left out.

        Decoding sets the atom cache entries a header brings, and the bytes fed after all are
        decoded again: only the first packet of ``data`` may bring new entries (set again to
        the same atoms), a later one is None undecoded. Decoded, it could overwrite an entry
        an earlier packet refers to, which would then read another atom the second time.
        (One codec call: ``peek_dist_packets``.)"""
        if self._buf or self._error is not None:
            return None
        try:
            return peek_dist_packets(data, self._entries, NO_PAYLOAD, start, self.max_packet)
        except Exception:
            return None

    def spawn_answer_reader(self, req: Any, box: Any, found: list[Any]) -> Callable[[bytearray], bool] | None:
        """For a task that waits for the answer to its spawn request ``req`` from ``box`` (an
        erpc call) and reads it itself (``Channel.take_inline``): a function of the bytes read
        since everything fed so far, True once they are known to hold that answer or not
        (``found`` then gets ``(pos, pid, reason)``, or None: they are the connection's to
        feed); see the codec's ``peek_spawn_answer``. None when fed bytes are still buffered
        (or the connection failed): the answer then comes the usual way. One codec call per
        read, no Python frame of its own."""
        global _partial
        if self._buf or self._error is not None:
            return None
        if _partial is None:  # functools (and what it imports) only once an rpc is made
            from functools import partial

            _partial = partial
        return _partial(peek_spawn_answer, self._entries, NO_PAYLOAD, self.max_packet, req, box, found)

    @property
    def pending_fragments(self) -> int:
        """How many fragmented messages are partly received."""
        return len(self._sequences)

    def next_event(self, data: bytes = b"", sinks_only: bool = False) -> DistEvent | NeedData:
        """The next :class:`Message`, :data:`TICK`, :class:`ConnectionClosed` or NEED_DATA;
        ``data``, if any, is fed first (``receive_data``: every read comes here). ``sinks_only``: neither hook is called, plain sends go to
        :attr:`sinks` only and any other packet is an event (for a reader outside the loop
        that owns the hooks: ``Connection.take_in_thread``).

        Raises :class:`ProtocolError` on malformed input; the connection is then unusable
        and every later call raises the same error.
        """
        if self._error is not None:
            raise self._error
        if data:  # (receive_data's, but for its clear of a buffer taken whole: done then)
            if self._eof:
                raise RuntimeError("receive_data() after receive_eof()")
            self._buf += data
        # Hot path: one codec call decodes the whole packets buffered (112 or 131 68: atom
        # cache header, control message and payload), hands each plain send to the deliver
        # hook and each other packet to the deliver_signal hook, up to the first packet
        # neither takes: that one is an event
        if not self._buf and not self._eof:  # all read: what a read's last call finds
            return NEED_DATA
        try:
            pos, n, control, payload = decode_dist_sends(
                self._buf, self._entries, NO_PAYLOAD, self._pos, self.max_packet,
                _decline if sinks_only else self.deliver or _decline,
                None if sinks_only else self.deliver_signal, self.sinks,
            )
        except BaseException as exc:
            # what was taken before the failure stays taken (never twice); a signal
            # whose hook failed is consumed too
            at = getattr(exc, "dist_pos", None)
            if at is not None:
                self.delivered += exc.dist_delivered  # type: ignore[attr-defined]
                if at != self._pos:
                    self._advance(at)
            elif not isinstance(exc, DecodeError):
                # a hook's exception that took no position: going on would hand what was
                # taken before it again, so the connection is unusable
                self._error = ProtocolError(f"a receive hook raised {type(exc).__name__}: {exc}")
                raise self._error from exc
            if isinstance(exc, DecodeError):
                self._error = ProtocolError(f"undecodable distribution message: {exc}")
                raise self._error from exc
            if isinstance(exc, ProtocolError):  # from a hook: the connection is unusable
                self._error = exc
            raise
        if n:
            self.delivered += n
        if pos != self._pos:
            if pos == len(self._buf):  # (_advance's most common case, without its call)
                self._buf.clear()
                self._pos = 0
            else:
                self._advance(pos)
        if control is not NO_PAYLOAD:
            return self._event(control, payload)
        if not self._buf and not self._eof:
            return NEED_DATA
        try:
            return self._next_event()
        except ProtocolError as exc:
            self._error = exc
            raise

    def _event(self, control: Any, payload: Any) -> Message:
        """A decoded packet as a Message event (its control tuple checked by from_term)."""
        try:
            message = _new_message(Message)
            _set_control(message, from_term(control, payload))
            _set_payload(message, payload)
        except ProtocolError as exc:
            self._error = exc
            raise
        return message

    def _advance(self, pos: int) -> None:
        """Move past the packets before ``pos``, compacting the buffer now and then."""
        buf = self._buf
        if pos == len(buf):
            buf.clear()
            self._pos = 0
        elif pos <= 65536:  # compacted later, by _consume (as it would)
            self._pos = pos
        else:
            self._consume(pos - self._pos)

    def _next_event(self) -> DistEvent | NeedData:
        buf = self._buf
        while True:
            pos = self._pos
            avail = len(buf) - pos
            if avail < 4:
                return self._end_or_need(avail)
            (size,) = _U32_unpack_from(buf, pos)
            if size == 0:
                self._consume(4)
                return TICK
            if size > self.max_packet:
                raise ProtocolError(
                    f"packet of {size} bytes exceeds the {self.max_packet}-byte limit"
                )
            if avail < 4 + size:
                return self._end_or_need(avail)
            end = pos + 4 + size
            if size < 8192:
                packet = bytes(buf[pos + 4 : end])
            else:
                with memoryview(buf) as view:  # one copy; released before the buffer changes
                    packet = bytes(view[pos + 4 : end])
            if end == len(buf):
                buf.clear()
                self._pos = 0
            else:
                self._consume(4 + size)
            event = self._packet(packet)
            if event is not None:
                return event

    def _consume(self, n: int) -> None:
        pos = self._pos + n
        buf = self._buf
        if pos == len(buf):
            buf.clear()
            pos = 0
        elif pos > 65536 and pos * 2 > len(buf):
            del buf[:pos]
            pos = 0
        self._pos = pos

    def _end_or_need(self, avail: int) -> ConnectionClosed | NeedData:
        if not self._eof:
            return NEED_DATA
        if self._closed_reported:
            raise RuntimeError("next_event() after ConnectionClosed")
        self._closed_reported = True
        return ConnectionClosed(clean=avail == 0 and not self._sequences)

    def _packet(self, packet: bytes) -> Message | None:
        first = packet[0]
        if first == VERSION_MAGIC and len(packet) > 1:
            kind = packet[1]
            if kind == DIST_HEADER:
                return self._message(packet)
            if kind == DIST_FRAG_HEADER:
                return self._fragment_start(packet)
            if kind == DIST_FRAG_CONT:
                return self._fragment_cont(packet)
            raise ProtocolError(f"unknown distribution header kind 131 {kind}")
        if first == PASS_THROUGH:
            return self._message(packet)
        raise ProtocolError(f"packet starts with {first}, not 112 or 131: {packet[:16]!r}")

    def _message(self, packet: bytes) -> Message:
        """A whole message in one packet (``131 68 ...`` or ``112 ...``)."""
        try:
            control, payload = decode_dist_packet(packet, self._entries, NO_PAYLOAD)
        except DecodeError as exc:
            raise ProtocolError(f"undecodable distribution message: {exc}") from exc
        return Message(from_term(control, payload), payload)

    def _body(self, data: bytes, pos: int, refs: list[Any] | None) -> Message:
        """``Control | [Payload]`` of a fragmented message, from ``pos`` to the end."""
        try:
            control, payload = decode_dist_body(data, refs, NO_PAYLOAD, pos)
        except DecodeError as exc:
            raise ProtocolError(f"undecodable distribution message: {exc}") from exc
        return Message(from_term(control, payload), payload)

    def _fragment_start(self, packet: bytes) -> Message | None:
        if len(packet) < 18:
            raise ProtocolError("fragment header truncated")
        seq, frag = _FRAG.unpack_from(packet, 2)
        if frag == 0:
            raise ProtocolError(f"fragment id 0 in sequence {seq}")
        refs, pos = self.atom_cache.read_header(packet, 18)
        if frag == 1:
            if seq in self._sequences:
                raise ProtocolError(f"fragment sequence {seq} started twice")
            return self._body(packet, pos, refs)
        if seq in self._sequences:
            raise ProtocolError(f"fragment sequence {seq} started twice")
        if len(self._sequences) >= self.max_fragmented:
            raise ProtocolError(
                f"more than {self.max_fragmented} fragmented messages in flight"
            )
        chunk = packet[pos:]
        self._account(seq, len(chunk), len(chunk))
        self._sequences[seq] = _Sequence(refs, frag - 1, [chunk], len(chunk))
        return None

    def _fragment_cont(self, packet: bytes) -> Message | None:
        if len(packet) < 18:
            raise ProtocolError("fragment continuation header truncated")
        seq, frag = _FRAG.unpack_from(packet, 2)
        state = self._sequences.get(seq)
        if state is None:
            raise ProtocolError(f"continuation fragment for unknown sequence {seq}")
        if frag != state.next_frag:
            raise ProtocolError(f"sequence {seq}: got fragment {frag}, expected {state.next_frag}")
        chunk = packet[18:]
        self._account(seq, len(chunk), state.size + len(chunk))
        state.chunks.append(chunk)
        state.size += len(chunk)
        if frag > 1:
            state.next_frag = frag - 1
            return None
        del self._sequences[seq]
        self._buffered -= state.size
        return self._body(b"".join(state.chunks), 0, state.refs)

    def _account(self, seq: int, added: int, total: int) -> None:
        if total > self.max_message:
            raise ProtocolError(
                f"fragmented message {seq} exceeds the {self.max_message}-byte limit"
            )
        self._buffered += added
        if self._buffered > self.max_buffered:
            raise ProtocolError(
                f"incomplete fragmented messages exceed the {self.max_buffered}-byte limit"
            )

    # -------------------------------------------------------------------------- sending

    def tick(self) -> bytes:
        """A tick packet (send one when nothing was written for a tick interval)."""
        return TICK_PACKET

    def send(self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD) -> bytes:
        """Encode one message; the bytes may hold several packets (fragments)."""
        packets = self.send_packets(control, payload)
        return packets[0] if len(packets) == 1 else b"".join(packets)

    def send_packets(
        self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD
    ) -> list[bytes]:
        """Encode one message as a list of packets (several when it is fragmented), so the
        caller can interleave other packets between fragments."""
        pieces = self.send_pieces(control, payload)
        if len(pieces) == 1:
            return pieces  # type: ignore[return-value]  # an unfragmented packet is bytes
        # the pieces (fragments, and parts of them) cut at the packets' own lengths
        data = b"".join(pieces)
        packets, pos = [], 0
        while pos < len(data):
            end = pos + 4 + _U32_unpack_from(data, pos)[0]
            packets.append(data[pos:end])
            pos = end
        return packets

    def send_pieces(
        self,
        control: ControlMessage | tuple[Any, ...],
        payload: Any = NO_PAYLOAD,
        cache_atoms: bool = False,
    ) -> list[bytes | memoryview]:
        """Encode one message as the pieces of its wire bytes, in order: one packet, or for
        a fragmented message the first fragment then each later fragment's header and its
        data, a view into the encoded message (written with writev, nothing is copied).

        ``cache_atoms``: the control message's atoms, and those on the payload's tuple
        spine, go through the connection's atom cache (when negotiated). Only for a caller
        that writes these pieces before it encodes the next such message (the event loop's
        sends): a header that sets a slot must reach the peer before a message that refers
        to it. Other threads' sends leave it off."""
        if isinstance(control, tuple):
            term = control
        else:
            if control.HAS_PAYLOAD is (payload is NO_PAYLOAD):
                what = "needs a payload" if control.HAS_PAYLOAD else "takes no payload"
                raise ValueError(f"{type(control).__name__} {what}")
            term = control.to_term()
        cache = self._out_cache if cache_atoms else None
        try:
            # the whole packet in one codec call: 131 68 header, or 112 pass-through; a big
            # binary in it is a part of its own, not copied (parts)
            if cache is not None and self._use_header:
                packet = encode_dist_packet(term, payload, NO_PAYLOAD, False, cache, True)
            else:
                packet = encode_dist_packet(term, payload, NO_PAYLOAD, self.pass_through, None, True)
        except EncodeError as exc:  # (the cache is set only by a message encoded whole)
            raise encode_failure(exc) from exc
        return self.pieces_of(packet, term, cache)

    def pieces_of(
        self, packet: bytes | list[bytes], term: tuple[Any, ...], cache: list[Any] | None
    ) -> list[bytes | memoryview]:
        """send_pieces' pieces of ``packet``, which ``encode_dist_packet(term, ...,
        cache, parts=True)`` returned: itself, its parts, or its fragments."""
        if type(packet) is bytes:
            # (a header is at least 7 bytes: 4 length, 131 68, NumberOfAtomCacheRefs)
            if not self._fragments or len(packet) - 7 <= self.fragment_size:
                return [packet]
            parts: list[bytes] = [packet]
            size = len(packet)
        else:
            parts = packet  # type: ignore[assignment]
            size = sum(map(len, parts))
            if not self._fragments or size - 7 <= self.fragment_size:
                return parts  # type: ignore[return-value]
        try:
            first = parts[0]  # the header is whole in the first part
            start = _header_end(first)
            if size - start <= self.fragment_size:
                return parts  # type: ignore[return-value]
            # the control message must be in the first fragment: its inline encoding is at
            # least as long as its encoding with cache refs
            ctl_max = len(encode(term, versioned=False))
            view = memoryview(first)
            return self._fragment(view[6:start], [view[start:], *parts[1:]], ctl_max)
        except BaseException:
            # the slots this message set will never reach the peer: refer to none of ours again
            if cache is not None:
                self._out_cache = self.plain_cache = None
            raise

    def _fragment(
        self, cache_part: memoryview, body: list[bytes | memoryview], ctl_max: int
    ) -> list[bytes | memoryview]:
        """The fragments of a message whose atom cache part (NumberOfAtomCacheRefs | Flags |
        AtomCacheRefs) and body (Control | Payload, in parts) are given; the first fragment
        holds at least ``ctl_max`` bytes of the body. Later fragments are views into the
        parts, nothing copied."""
        step = self.fragment_size
        size = sum(map(len, body))
        first = min(max(step, ctl_max), size)
        count = 1 + (size - first + step - 1) // step
        seq = next(self._seqs) & 0xFFFFFFFFFFFFFFFF or 1
        head = _FRAG_HEAD.pack(0, VERSION_MAGIC, DIST_FRAG_HEADER, seq, count)
        chunks = _chunks(body, first, step)
        chunk = next(chunks)
        pieces: list[bytes | memoryview] = [
            b"".join((_U32.pack(18 + len(cache_part) + first), head[4:], cache_part, *chunk))
        ]
        frag = count - 1
        pack = _FRAG_HEAD.pack
        for chunk in chunks:
            pieces.append(pack(18 + sum(map(len, chunk)), VERSION_MAGIC, DIST_FRAG_CONT, seq, frag))
            pieces += chunk
            frag -= 1
        return pieces
