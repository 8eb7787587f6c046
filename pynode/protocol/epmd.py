"""EPMD messages, both directions, without I/O.

Requests carry a 2-byte big-endian length prefix; replies do not, and some replies (NAMES,
DUMP) end only when EPMD closes the connection. Clients use :class:`EpmdClient` (one per TCP
connection: it holds the request bytes and parses the reply as it arrives in pieces); an EPMD
server uses :class:`RequestReader` / :func:`parse_request` and the ``encode_*_response``
functions. Facts from erl_dist_protocol.md, erts/epmd/src/epmd_srv.c and erl_epmd.erl.
"""

from __future__ import annotations

import struct

from ._common import NEED_DATA, Frozen, NeedData
from .errors import EpmdProtocolError

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from collections.abc import Iterable
    from typing import Final


_set = object.__setattr__

__all__ = [
    "ALIVE2_REQ",
    "ALIVE2_RESP",
    "ALIVE2_X_RESP",
    "DUMP_REQ",
    "KILL_REQ",
    "NAMES_REQ",
    "PORT2_RESP",
    "PORT_PLEASE2_REQ",
    "STOP_REQ",
    "DEFAULT_EPMD_PORT",
    "MAX_NAME_CHARS",
    "MAX_REQUEST_SIZE",
    "NodeType",
    "Alive2Request",
    "PortPlease2Request",
    "NamesRequest",
    "DumpRequest",
    "KillRequest",
    "StopRequest",
    "EpmdRequest",
    "Alive2Response",
    "NodeEntry",
    "Port2Response",
    "NamesResponse",
    "DumpResponse",
    "KillResponse",
    "StopResponse",
    "EpmdReply",
    "Closed",
    "CLOSED",
    "EpmdClient",
    "RequestReader",
    "validate_node_name",
    "encode_request",
    "parse_request",
    "encode_alive2_response",
    "encode_port2_response",
    "encode_names_response",
    "encode_dump_response",
    "encode_kill_response",
    "encode_stop_response",
    "parse_alive2_response",
    "parse_port2_response",
    "parse_names_response",
    "parse_dump_response",
    "parse_kill_response",
    "parse_stop_response",
]

ALIVE2_REQ: Final = 120
ALIVE2_X_RESP: Final = 118
ALIVE2_RESP: Final = 121
PORT_PLEASE2_REQ: Final = 122
PORT2_RESP: Final = 119
NAMES_REQ: Final = 110
DUMP_REQ: Final = 100
KILL_REQ: Final = 107
STOP_REQ: Final = 115

DEFAULT_EPMD_PORT: Final = 4369

#: epmd counts a node name in characters: an atom holds at most 255 (epmd_srv.c verify_utf8).
MAX_NAME_CHARS: Final = 255
#: ...so at most 4 bytes each in UTF-8 (epmd_int.h MAXSYMLEN = 255*4).
MAX_NAME_BYTES: Final = 255 * 4
#: epmd's input buffer (INBUF_SIZE = 3*MAXSYMLEN); a longer request is refused.
MAX_REQUEST_SIZE: Final = 3 * MAX_NAME_BYTES

_U16 = struct.Struct(">H")
_U32 = struct.Struct(">I")
_ALIVE2_HEAD = struct.Struct(">BHBBHHH")  # tag, port, type, proto, high, low, nlen
_PORT2_HEAD = struct.Struct(">BBHBBHHH")  # tag, result, port, type, proto, high, low, nlen


class NodeType:
    """The node type byte of ALIVE2_REQ / PORT2_RESP (ints, not an IntEnum: importing enum
    costs the ``pynode`` command milliseconds)."""

    NORMAL: Final = 77  # 'M': a normal Erlang node (OTP registers this even for -hidden)
    HIDDEN: Final = 72  # 'H': hidden / C node


def validate_node_name(name: str | bytes) -> bytes:
    """Return the UTF-8 bytes of an EPMD node name, or raise :class:`EpmdProtocolError`.

    A name is non-empty valid UTF-8, has no NUL, and at most 255 characters (epmd's limit).
    """
    if isinstance(name, str):
        try:
            raw = name.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise EpmdProtocolError(f"node name {name!r} is not encodable as UTF-8") from exc
        text = name
    else:
        raw = bytes(name)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise EpmdProtocolError(f"node name {raw!r} is not valid UTF-8") from exc
    if not raw:
        raise EpmdProtocolError("node name is empty")
    if b"\x00" in raw:
        raise EpmdProtocolError(f"node name {text!r} contains a NUL byte")
    if len(text) > MAX_NAME_CHARS:
        raise EpmdProtocolError(
            f"node name is {len(text)} characters long; EPMD allows at most {MAX_NAME_CHARS}"
        )
    return raw


def _name_text(raw: bytes) -> str:
    validate_node_name(raw)
    return raw.decode("utf-8")


def _check_u16(what: str, value: int) -> int:
    if not 0 <= value <= 0xFFFF:
        raise EpmdProtocolError(f"{what} {value} does not fit in 16 bits")
    return value


def _check_u8(what: str, value: int) -> int:
    if not 0 <= value <= 0xFF:
        raise EpmdProtocolError(f"{what} {value} does not fit in 8 bits")
    return value


def _frame(body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise EpmdProtocolError(f"EPMD request of {len(body)} bytes is too long")
    return _U16.pack(len(body)) + body


# --------------------------------------------------------------------------- requests


class _NodeRecord(Frozen):
    """The fields a node registers with and EPMD answers look-ups with (ALIVE2_REQ and
    PORT2_RESP carry the same ones)."""

    __slots__ = ("name", "port", "node_type", "protocol", "highest", "lowest", "extra")
    name: str
    port: int
    node_type: int
    protocol: int
    highest: int
    lowest: int
    extra: bytes

    def __init__(
        self,
        name: str,
        port: int,
        node_type: int = NodeType.NORMAL,
        protocol: int = 0,
        highest: int = 6,
        lowest: int = 5,
        extra: bytes = b"",
    ) -> None:
        _set(self, "name", name)
        _set(self, "port", port)
        _set(self, "node_type", node_type)
        _set(self, "protocol", protocol)
        _set(self, "highest", highest)
        _set(self, "lowest", lowest)
        _set(self, "extra", extra)


class Alive2Request(_NodeRecord):
    """Register ``name`` (the part before '@') as listening on ``port``."""

    __slots__ = ()

    def encode(self) -> bytes:
        """The request with its 2-byte length prefix, ready for the socket."""
        raw = validate_node_name(self.name)
        extra = bytes(self.extra)
        head = _ALIVE2_HEAD.pack(
            ALIVE2_REQ,
            _check_u16("port", self.port),
            _check_u8("node type", self.node_type),
            _check_u8("protocol", self.protocol),
            _check_u16("highest version", self.highest),
            _check_u16("lowest version", self.lowest),
            len(raw),
        )
        return _frame(head + raw + _U16.pack(_check_u16("extra length", len(extra))) + extra)


class PortPlease2Request(Frozen):
    """Ask for the distribution port of ``name`` (the part before '@')."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        _set(self, "name", name)

    def encode(self) -> bytes:
        return _frame(bytes([PORT_PLEASE2_REQ]) + validate_node_name(self.name))


class NamesRequest(Frozen):
    """List the registered names (``net_adm:names/0``)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return _frame(bytes([NAMES_REQ]))


class DumpRequest(Frozen):
    """Debug dump of EPMD's tables (local clients only)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return _frame(bytes([DUMP_REQ]))


class KillRequest(Frozen):
    """Stop EPMD (refused with "NO" while nodes are registered, unless -relaxed_command_check)."""

    __slots__ = ()

    def encode(self) -> bytes:
        return _frame(bytes([KILL_REQ]))


class StopRequest(Frozen):
    """Unregister ``name`` (only honoured with -relaxed_command_check)."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        _set(self, "name", name)

    def encode(self) -> bytes:
        return _frame(bytes([STOP_REQ]) + validate_node_name(self.name))


EpmdRequest = (
    Alive2Request | PortPlease2Request | NamesRequest | DumpRequest | KillRequest | StopRequest
)


def encode_request(request: EpmdRequest) -> bytes:
    """Encode any request (length prefix included)."""
    return request.encode()


def parse_request(body: bytes) -> EpmdRequest:
    """Decode one request body (without its 2-byte length), as epmd_srv.c does."""
    body = bytes(body)
    if not body:
        raise EpmdProtocolError("empty EPMD request")
    tag = body[0]
    if tag == ALIVE2_REQ:
        size = len(body)
        if size <= 13:
            raise EpmdProtocolError(f"ALIVE2_REQ of {size} bytes is too short")
        _, port, ntype, proto, high, low, nlen = _ALIVE2_HEAD.unpack_from(body)
        if nlen + 13 > size:
            raise EpmdProtocolError("ALIVE2_REQ name length exceeds the request")
        (elen,) = _U16.unpack_from(body, 11 + nlen)
        if elen + nlen + 13 > size:
            raise EpmdProtocolError("ALIVE2_REQ extra length exceeds the request")
        name = _name_text(body[11 : 11 + nlen])
        extra = body[13 + nlen : 13 + nlen + elen]
        return Alive2Request(name, port, ntype, proto, high, low, extra)
    if tag == PORT_PLEASE2_REQ:
        raw = body[1:]
        if raw.endswith(b"\x00"):  # epmd skips one terminating NUL
            raw = raw[:-1]
        return PortPlease2Request(_name_text(raw))
    if tag == NAMES_REQ:
        return NamesRequest()
    if tag == DUMP_REQ:
        return DumpRequest()
    if tag == KILL_REQ:
        return KillRequest()
    if tag == STOP_REQ:
        return StopRequest(_name_text(body[1:]))
    raise EpmdProtocolError(f"unknown EPMD request tag {tag}")


class RequestReader:
    """Server side: split a client's byte stream into 2-byte-length-prefixed requests."""

    def __init__(self, *, max_request: int = MAX_REQUEST_SIZE) -> None:
        self._buf = bytearray()
        self._max = max_request
        self._eof = False

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket (empty data is ignored; see :meth:`receive_eof`)."""
        if data:
            if self._eof:
                raise EpmdProtocolError("data received after the end of stream")
            self._buf += data

    def receive_eof(self) -> None:
        """The client closed its side of the connection."""
        self._eof = True

    def next_request(self) -> EpmdRequest | NeedData | Closed:
        """The next complete request, NEED_DATA, or CLOSED once the client has closed."""
        buf = self._buf
        if len(buf) >= 2:
            (size,) = _U16.unpack_from(buf)
            if size == 0:
                raise EpmdProtocolError("zero-length EPMD request")
            if size > self._max:
                raise EpmdProtocolError(
                    f"EPMD request of {size} bytes exceeds the {self._max}-byte limit"
                )
            if len(buf) >= 2 + size:
                body = bytes(buf[2 : 2 + size])
                del buf[: 2 + size]
                return parse_request(body)
        if self._eof:
            if buf:
                raise EpmdProtocolError("connection closed inside an EPMD request")
            return CLOSED
        return NEED_DATA


# --------------------------------------------------------------------------- replies


class Alive2Response(Frozen):
    """Registration result; ``extended`` is ALIVE2_X_RESP (32-bit creation)."""

    __slots__ = ("result", "creation", "extended")
    result: int
    creation: int
    extended: bool

    def __init__(self, result: int, creation: int, extended: bool = True) -> None:
        _set(self, "result", result)
        _set(self, "creation", creation)
        _set(self, "extended", extended)

    @property
    def ok(self) -> bool:
        return self.result == 0

    def encode(self) -> bytes:
        return encode_alive2_response(self.result, self.creation, extended=self.extended)


class NodeEntry(_NodeRecord):
    """What EPMD knows about a registered node (the body of a found PORT2_RESP)."""

    __slots__ = ()


class Port2Response(Frozen):
    """PORT2_RESP: ``node`` is None when ``result`` is non-zero (name not registered)."""

    __slots__ = ("result", "node")
    result: int
    node: NodeEntry | None

    def __init__(self, result: int, node: NodeEntry | None = None) -> None:
        _set(self, "result", result)
        _set(self, "node", node)

    @property
    def found(self) -> bool:
        return self.result == 0 and self.node is not None

    def encode(self) -> bytes:
        return encode_port2_response(self.node, result=self.result)


class NamesResponse(Frozen):
    """NAMES reply: EPMD's own port and ``(name, port)`` per registered node."""

    __slots__ = ("epmd_port", "nodes")
    epmd_port: int
    nodes: tuple[tuple[str, int], ...]

    def __init__(self, epmd_port: int, nodes: tuple[tuple[str, int], ...] = ()) -> None:
        _set(self, "epmd_port", epmd_port)
        _set(self, "nodes", nodes)

    def encode(self) -> bytes:
        return encode_names_response(self.epmd_port, self.nodes)


class DumpResponse(Frozen):
    """DUMP reply: EPMD's port and its text lines (NUL terminators removed)."""

    __slots__ = ("epmd_port", "lines")
    epmd_port: int
    lines: tuple[str, ...]

    def __init__(self, epmd_port: int, lines: tuple[str, ...] = ()) -> None:
        _set(self, "epmd_port", epmd_port)
        _set(self, "lines", lines)


class KillResponse(Frozen):
    """ "OK" (EPMD stops) or "NO" (refused)."""

    __slots__ = ("ok",)
    ok: bool

    def __init__(self, ok: bool) -> None:
        _set(self, "ok", ok)

    def encode(self) -> bytes:
        return encode_kill_response(self.ok)


class StopResponse(Frozen):
    """ "STOPPED" or "NOEXIST"."""

    __slots__ = ("ok",)
    ok: bool

    def __init__(self, ok: bool) -> None:
        _set(self, "ok", ok)

    def encode(self) -> bytes:
        return encode_stop_response(self.ok)


EpmdReply = (
    Alive2Response | Port2Response | NamesResponse | DumpResponse | KillResponse | StopResponse
)


class Closed(Frozen):
    """The peer closed the connection after a complete exchange."""

    __slots__ = ()


CLOSED: Final = Closed()


def encode_alive2_response(result: int, creation: int, *, extended: bool = True) -> bytes:
    """ALIVE2_X_RESP (``extended``, 32-bit creation) or the old ALIVE2_RESP (16-bit)."""
    _check_u8("result", result)
    if extended:
        if not 0 <= creation <= 0xFFFFFFFF:
            raise EpmdProtocolError(f"creation {creation} does not fit in 32 bits")
        return bytes([ALIVE2_X_RESP, result]) + _U32.pack(creation)
    return bytes([ALIVE2_RESP, result]) + _U16.pack(_check_u16("creation", creation))


def encode_port2_response(node: NodeEntry | None, *, result: int | None = None) -> bytes:
    """PORT2_RESP for a found node, or ``119 | result`` (default 1) when ``node`` is None."""
    if node is None:
        code = 1 if result is None else result
        if code == 0:
            raise EpmdProtocolError("a PORT2_RESP with result 0 needs a node entry")
        return bytes([PORT2_RESP, _check_u8("result", code)])
    if result not in (None, 0):
        raise EpmdProtocolError("a PORT2_RESP for a found node has result 0")
    raw = validate_node_name(node.name)
    extra = bytes(node.extra)
    head = _PORT2_HEAD.pack(
        PORT2_RESP,
        0,
        _check_u16("port", node.port),
        _check_u8("node type", node.node_type),
        _check_u8("protocol", node.protocol),
        _check_u16("highest version", node.highest),
        _check_u16("lowest version", node.lowest),
        len(raw),
    )
    return head + raw + _U16.pack(_check_u16("extra length", len(extra))) + extra


def encode_names_response(epmd_port: int, nodes: Iterable[tuple[str, int]]) -> bytes:
    """EPMD's port then one ``name N at port P\\n`` line per node (EPMD then closes)."""
    parts = [_U32.pack(epmd_port)]
    for name, port in nodes:
        raw = validate_node_name(name)
        parts.append(b"name " + raw + b" at port %d\n" % port)
    return b"".join(parts)


def encode_dump_response(
    epmd_port: int,
    active: Iterable[tuple[str, int, int]] = (),
    unused: Iterable[tuple[str, int, int]] = (),
) -> bytes:
    """DUMP reply in epmd_srv.c's layout: ``(name, port, fd)`` lines, each NUL-terminated."""
    parts = [_U32.pack(epmd_port)]
    for name, port, fd in active:
        raw = validate_node_name(name)
        parts.append(b"active name     <" + raw + b"> at port %d, fd = %d\n\x00" % (port, fd))
    for name, port, fd in unused:
        raw = validate_node_name(name)
        parts.append(b"old/unused name <" + raw + b">, port = %d, fd = %d \n\x00" % (port, fd))
    return b"".join(parts)


def encode_kill_response(ok: bool) -> bytes:
    return b"OK" if ok else b"NO"


def encode_stop_response(ok: bool) -> bytes:
    return b"STOPPED" if ok else b"NOEXIST"


# Incremental reply parsers: each takes the bytes so far and whether EPMD has closed, and
# returns (reply, bytes consumed) or (None, 0) when more bytes are needed.


def _parse_alive2(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if not buf:
        return None, 0
    tag = buf[0]
    if tag == ALIVE2_X_RESP:
        if len(buf) < 6:
            return None, 0
        (creation,) = _U32.unpack_from(buf, 2)
        return Alive2Response(buf[1], creation, True), 6
    if tag == ALIVE2_RESP:
        if len(buf) < 4:
            return None, 0
        (creation,) = _U16.unpack_from(buf, 2)
        return Alive2Response(buf[1], creation, False), 4
    raise EpmdProtocolError(f"garbage from EPMD in reply to ALIVE2_REQ: {bytes(buf[:16])!r}")


def _parse_port2(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if len(buf) < 2:
        return None, 0
    if buf[0] != PORT2_RESP:
        raise EpmdProtocolError(
            f"garbage from EPMD in reply to PORT_PLEASE2_REQ: {bytes(buf[:16])!r}"
        )
    if buf[1] != 0:
        return Port2Response(buf[1], None), 2
    if len(buf) < 12:
        return None, 0
    _, _, port, ntype, proto, high, low, nlen = _PORT2_HEAD.unpack_from(buf)
    end = 12 + nlen
    if len(buf) < end + 2:
        return None, 0
    (elen,) = _U16.unpack_from(buf, end)
    if len(buf) < end + 2 + elen:
        return None, 0
    name = _name_text(bytes(buf[12:end]))
    extra = bytes(buf[end + 2 : end + 2 + elen])
    return Port2Response(0, NodeEntry(name, port, ntype, proto, high, low, extra)), end + 2 + elen


def _parse_names(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if not eof:
        return None, 0
    return parse_names_response(buf), len(buf)


def _parse_dump(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if not eof:
        return None, 0
    return parse_dump_response(buf), len(buf)


def _parse_kill(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if len(buf) < 2:
        return None, 0
    word = bytes(buf[:2])
    if word == b"OK":
        return KillResponse(True), 2
    if word == b"NO":
        return KillResponse(False), 2
    raise EpmdProtocolError(f"garbage from EPMD in reply to KILL_REQ: {word!r}")


def _parse_stop(buf: bytes | bytearray, eof: bool) -> tuple[EpmdReply | None, int]:
    if len(buf) < 7:
        return None, 0
    word = bytes(buf[:7])
    if word == b"STOPPED":
        return StopResponse(True), 7
    if word == b"NOEXIST":
        return StopResponse(False), 7
    raise EpmdProtocolError(f"garbage from EPMD in reply to STOP_REQ: {word!r}")


def _whole(parser, data: bytes, what: str) -> EpmdReply:  # type: ignore[no-untyped-def]
    reply, used = parser(bytes(data), True)
    if reply is None:
        raise EpmdProtocolError(f"truncated {what}")
    if used != len(data):
        raise EpmdProtocolError(f"{len(data) - used} unexpected bytes after {what}")
    return reply


def parse_alive2_response(data: bytes) -> Alive2Response:
    """Decode a complete ALIVE2_X_RESP / ALIVE2_RESP."""
    return _whole(_parse_alive2, data, "ALIVE2 reply")  # type: ignore[return-value]


def parse_port2_response(data: bytes) -> Port2Response:
    """Decode a complete PORT2_RESP."""
    return _whole(_parse_port2, data, "PORT2_RESP")  # type: ignore[return-value]


def parse_names_response(data: bytes | bytearray) -> NamesResponse:
    """Decode a whole NAMES reply (everything EPMD sent before closing).

    Lines that are not ``name N at port P`` are skipped, as erl_epmd.erl does; a last line
    without its newline is incomplete and dropped.
    """
    data = bytes(data)
    if len(data) < 4:
        raise EpmdProtocolError("NAMES reply shorter than the 4-byte EPMD port")
    (port,) = _U32.unpack_from(data)
    nodes: list[tuple[str, int]] = []
    lines = data[4:].split(b"\n")
    for line in lines[:-1]:  # the element after the last "\n" is incomplete
        entry = _parse_names_line(line)
        if entry is not None:
            nodes.append(entry)
    return NamesResponse(port, tuple(nodes))


def _parse_names_line(line: bytes) -> tuple[str, int] | None:
    if not line.startswith(b"name "):
        return None
    name, sep, port = line[5:].rpartition(b" at port ")
    if not sep or not port.isdigit():
        return None
    try:
        return name.decode("utf-8"), int(port)
    except UnicodeDecodeError:
        return None


def parse_dump_response(data: bytes | bytearray) -> DumpResponse:
    """Decode a whole DUMP reply into its text lines."""
    data = bytes(data)
    if len(data) < 4:
        raise EpmdProtocolError("DUMP reply shorter than the 4-byte EPMD port")
    (port,) = _U32.unpack_from(data)
    text = data[4:].replace(b"\x00", b"").decode("utf-8", "replace")
    return DumpResponse(port, tuple(line for line in text.split("\n") if line))


def parse_kill_response(data: bytes) -> KillResponse:
    return _whole(_parse_kill, data, "KILL reply")  # type: ignore[return-value]


def parse_stop_response(data: bytes) -> StopResponse:
    return _whole(_parse_stop, data, "STOP reply")  # type: ignore[return-value]


_PARSERS = {
    Alive2Request: _parse_alive2,
    PortPlease2Request: _parse_port2,
    NamesRequest: _parse_names,
    DumpRequest: _parse_dump,
    KillRequest: _parse_kill,
    StopRequest: _parse_stop,
}


class _ClientState:
    __slots__ = ("buf", "eof", "reply", "delivered")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.eof = False
        self.reply: EpmdReply | None = None
        self.delivered = False


class EpmdClient:
    """One client exchange with EPMD (one TCP connection), sans-IO.

    Send :meth:`data_to_send`, feed what arrives to :meth:`receive_data` (and call
    :meth:`receive_eof` when EPMD closes) and call :meth:`next_event` until it returns the reply. After the reply it
    returns NEED_DATA while the connection stays open (the registration connection must stay
    open: closing it unregisters the node) and CLOSED when EPMD closes it. Bytes after a
    complete reply are a protocol error.
    """

    def __init__(self, request: EpmdRequest, *, epmd_port: int | None = None) -> None:
        self.request = request
        self._out = request.encode()
        self._parser = _PARSERS[type(request)]
        self._epmd_port = epmd_port
        self._s = _ClientState()

    def data_to_send(self) -> bytes:
        """The encoded request, once; afterwards ``b""``."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from EPMD (empty data is ignored; see :meth:`receive_eof`)."""
        s = self._s
        if not data:
            return
        if s.eof:
            raise EpmdProtocolError("data received after EPMD closed the connection")
        if s.reply is not None:
            raise EpmdProtocolError(
                f"EPMD sent {len(data)} unexpected bytes after its {type(s.reply).__name__}"
            )
        s.buf += data

    def receive_eof(self) -> None:
        """EPMD closed the connection (this ends a NAMES or DUMP reply)."""
        self._s.eof = True

    def next_event(self) -> EpmdReply | NeedData | Closed:
        """The parsed reply (once), then NEED_DATA or CLOSED."""
        s = self._s
        if s.reply is None:
            reply, used = self._parser(s.buf, s.eof)
            if reply is None:
                if s.eof:
                    raise EpmdProtocolError(
                        f"EPMD closed the connection before a complete reply to "
                        f"{type(self.request).__name__}"
                    )
                return NEED_DATA
            if used != len(s.buf):
                raise EpmdProtocolError(
                    f"EPMD sent {len(s.buf) - used} unexpected bytes after its "
                    f"{type(reply).__name__}"
                )
            if (
                self._epmd_port is not None
                and isinstance(reply, (NamesResponse, DumpResponse))
                and reply.epmd_port != self._epmd_port
            ):
                raise EpmdProtocolError(
                    f"EPMD reports port {reply.epmd_port}, but we asked the one on port "
                    f"{self._epmd_port}"
                )
            s.reply = reply
            s.buf.clear()
        if not s.delivered:
            s.delivered = True
            return s.reply
        return CLOSED if s.eof else NEED_DATA
