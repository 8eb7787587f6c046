"""Extension requests only pynode's EPMD answers, without I/O.

They use the standard framing (2-byte big-endian length + body; replies unprefixed) and tags
that epmd does not know. A real epmd treats an unknown tag as garbage and closes the
connection without replying, so a client sees EOF before any reply: that means
"unsupported" (:class:`ExtClient` raises :class:`ExtensionUnsupported`).

Requests (body after the length):

- PREFIX_REQ ``80 ('P') | Prefix``: the live nodes whose name starts with Prefix (UTF-8, no
  NUL, may be empty = all). Reply NODES_RESP, then EPMD closes.
- TRANSPORTS_REQ ``76 ('L') | Name``: every transport of the node: the primary registration
  first, then the extra ones in the order they were added. Reply NODES_RESP (count 0 when the
  name is unknown), then EPMD closes.
- ADD_TRANSPORT_REQ ``84 ('T') | Port:2 | NodeType:1 | Protocol:1 | Highest:2 | Lowest:2 |
  Nlen:2 | Name | Elen:2 | Extra`` (ALIVE2_REQ's layout under another tag): attach another
  (protocol, port) to the registered node Name. Local clients only. Reply RESULT_RESP; on
  success the connection stays open and holds the transport, as ALIVE2 holds a name: closing
  it (or sending any byte) removes the transport, and EPMD closes it when Name unregisters.

Replies:

- NODES_RESP ``78 ('N') | Count:2 | Count x Entry``, Entry = ``Port:2 | NodeType:1 |
  Protocol:1 | Highest:2 | Lowest:2 | Nlen:2 | Name | Elen:2 | Extra`` (PORT2_RESP's body).
- RESULT_RESP ``82 ('R') | Result:1``: 0 ok, 1 name not registered, 2 that (protocol, port)
  is already a transport of the node.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Final

from ._common import NEED_DATA, NeedData
from .epmd import (
    ALIVE2_REQ,
    Alive2Request,
    NodeEntry,
    NodeType,
    encode_port2_response,
    parse_request,
    validate_node_name,
)
from .errors import EpmdProtocolError

__all__ = [
    "PREFIX_REQ",
    "TRANSPORTS_REQ",
    "ADD_TRANSPORT_REQ",
    "NODES_RESP",
    "RESULT_RESP",
    "ADD_OK",
    "ADD_NOT_REGISTERED",
    "ADD_DUPLICATE",
    "EXTENSION_TAGS",
    "MAX_ENTRIES",
    "PrefixRequest",
    "TransportsRequest",
    "AddTransportRequest",
    "ExtRequest",
    "NodesResponse",
    "ResultResponse",
    "ExtReply",
    "ExtensionUnsupported",
    "ExtClient",
    "parse_ext_request",
    "encode_entry",
    "encode_nodes_response",
    "encode_result_response",
    "parse_nodes_reply",
    "parse_result_reply",
]

PREFIX_REQ: Final = 80  # 'P'
TRANSPORTS_REQ: Final = 76  # 'L'
ADD_TRANSPORT_REQ: Final = 84  # 'T'
NODES_RESP: Final = 78  # 'N'
RESULT_RESP: Final = 82  # 'R'

#: RESULT_RESP codes of ADD_TRANSPORT_REQ.
ADD_OK: Final = 0
ADD_NOT_REGISTERED: Final = 1
ADD_DUPLICATE: Final = 2

EXTENSION_TAGS: Final = frozenset({PREFIX_REQ, TRANSPORTS_REQ, ADD_TRANSPORT_REQ})
#: A NODES_RESP lists at most this many entries (its count is 16 bits).
MAX_ENTRIES: Final = 0xFFFF

_U16 = struct.Struct(">H")
_ENTRY_HEAD = struct.Struct(">HBBHHH")  # port, type, proto, high, low, nlen


def _frame(body: bytes) -> bytes:
    if len(body) > 0xFFFF:
        raise EpmdProtocolError(f"EPMD request of {len(body)} bytes is too long")
    return _U16.pack(len(body)) + body


def _prefix_bytes(prefix: str | bytes) -> bytes:
    """A prefix is a node name that may be empty."""
    if prefix in ("", b""):
        return b""
    return validate_node_name(prefix)


@dataclass(frozen=True, slots=True)
class PrefixRequest:
    """Live nodes whose name starts with ``prefix`` ("" lists every node with its entry)."""

    prefix: str = ""

    def encode(self) -> bytes:
        return _frame(bytes([PREFIX_REQ]) + _prefix_bytes(self.prefix))


@dataclass(frozen=True, slots=True)
class TransportsRequest:
    """Every transport of ``name``: primary first."""

    name: str

    def encode(self) -> bytes:
        return _frame(bytes([TRANSPORTS_REQ]) + validate_node_name(self.name))


@dataclass(frozen=True, slots=True)
class AddTransportRequest:
    """Attach another (protocol, port) to the registered node ``name``."""

    name: str
    port: int
    protocol: int
    node_type: int = NodeType.NORMAL
    highest: int = 6
    lowest: int = 5
    extra: bytes = b""

    def encode(self) -> bytes:
        alive = Alive2Request(
            self.name,
            self.port,
            self.node_type,
            self.protocol,
            self.highest,
            self.lowest,
            self.extra,
        ).encode()
        return alive[:2] + bytes([ADD_TRANSPORT_REQ]) + alive[3:]

    def entry(self) -> NodeEntry:
        return NodeEntry(
            self.name,
            self.port,
            self.node_type,
            self.protocol,
            self.highest,
            self.lowest,
            bytes(self.extra),
        )


ExtRequest = PrefixRequest | TransportsRequest | AddTransportRequest


def parse_ext_request(body: bytes) -> ExtRequest:
    """Decode one extension request body (without its length prefix)."""
    body = bytes(body)
    if not body or body[0] not in EXTENSION_TAGS:
        raise EpmdProtocolError("not an extension request")
    tag = body[0]
    if tag == PREFIX_REQ:
        raw = body[1:]
        text = "" if not raw else validate_node_name(raw).decode("utf-8")
        return PrefixRequest(text)
    if tag == TRANSPORTS_REQ:
        return TransportsRequest(validate_node_name(body[1:]).decode("utf-8"))
    alive = parse_request(bytes([ALIVE2_REQ]) + body[1:])
    assert isinstance(alive, Alive2Request)
    return AddTransportRequest(
        alive.name,
        alive.port,
        alive.protocol,
        alive.node_type,
        alive.highest,
        alive.lowest,
        alive.extra,
    )


@dataclass(frozen=True, slots=True)
class NodesResponse:
    """NODES_RESP: node entries (a prefix match or one node's transports)."""

    entries: tuple[NodeEntry, ...] = ()


@dataclass(frozen=True, slots=True)
class ResultResponse:
    """RESULT_RESP of ADD_TRANSPORT_REQ."""

    result: int

    @property
    def ok(self) -> bool:
        return self.result == 0


ExtReply = NodesResponse | ResultResponse


def encode_entry(entry: NodeEntry) -> bytes:
    """One entry: the body of a found PORT2_RESP after its tag and result bytes."""
    return encode_port2_response(entry)[2:]


def encode_nodes_response(entries: list[NodeEntry] | tuple[NodeEntry, ...]) -> bytes:
    """NODES_RESP for at most MAX_ENTRIES entries (the rest are left out)."""
    entries = list(entries)[:MAX_ENTRIES]
    return bytes([NODES_RESP]) + _U16.pack(len(entries)) + b"".join(map(encode_entry, entries))


def encode_result_response(result: int) -> bytes:
    if not 0 <= result <= 0xFF:
        raise EpmdProtocolError(f"result {result} does not fit in 8 bits")
    return bytes([RESULT_RESP, result])


def _parse_entry(buf: bytes | bytearray, pos: int) -> tuple[NodeEntry | None, int]:
    if len(buf) < pos + _ENTRY_HEAD.size:
        return None, pos
    port, ntype, proto, high, low, nlen = _ENTRY_HEAD.unpack_from(buf, pos)
    end = pos + _ENTRY_HEAD.size + nlen
    if len(buf) < end + 2:
        return None, pos
    (elen,) = _U16.unpack_from(buf, end)
    if len(buf) < end + 2 + elen:
        return None, pos
    name = validate_node_name(bytes(buf[pos + _ENTRY_HEAD.size : end])).decode("utf-8")
    extra = bytes(buf[end + 2 : end + 2 + elen])
    return NodeEntry(name, port, ntype, proto, high, low, extra), end + 2 + elen


def _parse_reply(buf: bytes | bytearray) -> tuple[ExtReply | None, int]:
    if not buf:
        return None, 0
    tag = buf[0]
    if tag == RESULT_RESP:
        if len(buf) < 2:
            return None, 0
        return ResultResponse(buf[1]), 2
    if tag == NODES_RESP:
        if len(buf) < 3:
            return None, 0
        (count,) = _U16.unpack_from(buf, 1)
        pos = 3
        entries: list[NodeEntry] = []
        for _ in range(count):
            entry, pos = _parse_entry(buf, pos)
            if entry is None:
                return None, 0
            entries.append(entry)
        return NodesResponse(tuple(entries)), pos
    raise EpmdProtocolError(f"garbage from EPMD in reply to an extension: {bytes(buf[:16])!r}")


def _whole(data: bytes, what: type) -> ExtReply:
    reply, used = _parse_reply(bytes(data))
    if reply is None:
        raise EpmdProtocolError(f"truncated {what.__name__}")
    if used != len(data):
        raise EpmdProtocolError(f"{len(data) - used} unexpected bytes after {what.__name__}")
    if not isinstance(reply, what):
        raise EpmdProtocolError(f"expected {what.__name__}, got {type(reply).__name__}")
    return reply


def parse_nodes_reply(data: bytes) -> list[NodeEntry]:
    """Decode a complete NODES_RESP."""
    reply = _whole(data, NodesResponse)
    assert isinstance(reply, NodesResponse)
    return list(reply.entries)


def parse_result_reply(data: bytes) -> int:
    """Decode a complete RESULT_RESP into its result byte."""
    reply = _whole(data, ResultResponse)
    assert isinstance(reply, ResultResponse)
    return reply.result


class ExtensionUnsupported(EpmdProtocolError):
    """EPMD closed without replying: it is not pynode's EPMD (or has extensions off)."""


class ExtClient:
    """One extension exchange (one TCP connection), sans-IO, like protocol.epmd.EpmdClient."""

    def __init__(self, request: ExtRequest) -> None:
        self.request = request
        self._out = request.encode()
        self._buf = bytearray()
        self._eof = False
        self._reply: ExtReply | None = None
        self._delivered = False

    def data_to_send(self) -> bytes:
        """The encoded request, once; afterwards ``b""``."""
        out, self._out = self._out, b""
        return out

    def receive_data(self, data: bytes) -> None:
        if not data:
            return
        if self._eof:
            raise EpmdProtocolError("data received after EPMD closed the connection")
        if self._reply is not None:
            raise EpmdProtocolError(f"EPMD sent {len(data)} unexpected bytes after its reply")
        self._buf += data

    def receive_eof(self) -> None:
        self._eof = True

    def next_event(self) -> ExtReply | NeedData | None:
        """The reply (once), then NEED_DATA while open, then None once EPMD has closed."""
        if self._reply is None:
            reply, used = _parse_reply(self._buf)
            if reply is None:
                if self._eof:
                    if not self._buf:
                        raise ExtensionUnsupported(
                            f"EPMD closed without answering {type(self.request).__name__}: "
                            "it does not support pynode's extensions"
                        )
                    raise EpmdProtocolError("EPMD closed the connection inside its reply")
                return NEED_DATA
            if used != len(self._buf):
                raise EpmdProtocolError(
                    f"EPMD sent {len(self._buf) - used} unexpected bytes after its reply"
                )
            self._reply = reply
            self._buf.clear()
        if not self._delivered:
            self._delivered = True
            return self._reply
        return None if self._eof else NEED_DATA
