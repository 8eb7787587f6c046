"""What an EPMD server does with one request, without I/O (erts/epmd/src/epmd_srv.c).

:class:`RequestFramer` collects the single request of a connection exactly as epmd's do_read
does; :class:`EpmdCore` turns a request body into an :class:`Outcome` (the reply bytes, and
whether to hold the connection, stop the server, or close connections whose registration
was removed). The anyio server in :mod:`pynode.epmd.server` only moves bytes.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

from ..protocol._common import NEED_DATA, NeedData
from ..protocol.epmd import (
    ALIVE2_REQ,
    DUMP_REQ,
    KILL_REQ,
    MAX_NAME_BYTES,
    NAMES_REQ,
    PORT_PLEASE2_REQ,
    STOP_REQ,
    Alive2Request,
    NodeEntry,
    PortPlease2Request,
    encode_alive2_response,
    encode_dump_response,
    encode_kill_response,
    encode_names_response,
    encode_port2_response,
    encode_stop_response,
    parse_request,
)
from ..protocol.epmd_ext import (
    ADD_TRANSPORT_REQ,
    EXTENSION_TAGS,
    AddTransportRequest,
    PrefixRequest,
    TransportsRequest,
    encode_nodes_response,
    encode_result_response,
    parse_ext_request,
)
from ..protocol.errors import EpmdProtocolError
from .registry import ADD_OK, MAX_EXTRA_BYTES, NodeRecord, Registry

__all__ = ["INBUF_SIZE", "MAX_BODY", "RequestFramer", "Outcome", "EpmdCore", "owners_of"]

log = logging.getLogger("pynode.epmd.server")

#: epmd_int.h INBUF_SIZE (3*MAXSYMLEN): epmd refuses a request when length + 2 >= this.
INBUF_SIZE: Final = 3 * MAX_NAME_BYTES
#: ...so the longest request body epmd accepts.
MAX_BODY: Final = INBUF_SIZE - 3

#: epmd answers a failed ALIVE2 with this creation.
_FAILED_CREATION: Final = 99

_U16 = struct.Struct(">H")


class RequestFramer:
    """The one request of a connection: 2-byte length + body, epmd's limits and checks.

    Raises EpmdProtocolError for a zero or too large length, and for bytes beyond the
    request that arrived with it (epmd: "got N bytes in packet, expected M").
    """

    def __init__(self, *, max_body: int = MAX_BODY) -> None:
        self._buf = bytearray()
        self._max = max_body
        self._done = False

    def receive_data(self, data: bytes) -> None:
        self._buf += data

    @property
    def buffered(self) -> int:
        return len(self._buf)

    def next_body(self) -> bytes | NeedData:
        """The request body once complete, else NEED_DATA."""
        if self._done:
            raise EpmdProtocolError("only one request per connection")
        buf = self._buf
        if len(buf) < 2:
            return NEED_DATA
        (size,) = _U16.unpack_from(buf)
        if size == 0 or size > self._max:
            raise EpmdProtocolError(f"invalid packet size ({size})")
        if len(buf) > size + 2:
            raise EpmdProtocolError(f"got {len(buf) - 2} bytes in packet, expected {size}")
        if len(buf) < size + 2:
            return NEED_DATA
        self._done = True
        return bytes(buf[2:])


@dataclass(slots=True)
class Outcome:
    """What to do after a request.

    ``reply`` is sent (nothing when empty); ``keep`` holds the connection (it owns a
    registration or transport); ``kill`` stops the server after replying; ``dropped`` are
    registrations removed by this request whose connections must now be closed; ``note``
    says why a request was refused, for the log.
    """

    reply: bytes = b""
    keep: bool = False
    kill: bool = False
    dropped: list[NodeRecord] = field(default_factory=list)
    note: str = ""


def owners_of(record: NodeRecord) -> list[Hashable]:
    """The connections holding ``record``: its registration and its extra transports."""
    owners = [record.owner] if record.owner is not None else []
    owners += [t.owner for t in record.transports if t.owner is not None]
    return owners


def _alive2_shape_ok(body: bytes) -> str:
    """epmd's structural checks of ALIVE2_REQ, done before it tries to register ("" = ok)."""
    size = len(body)
    if size <= 13:
        return f"packet too small for request ALIVE2_REQ ({size})"
    (nlen,) = _U16.unpack_from(body, 9)
    if nlen + 13 > size:
        return "node name size error in ALIVE2_REQ"
    (elen,) = _U16.unpack_from(body, 11 + nlen)
    if elen + nlen + 13 > size:
        return "extra info size error in ALIVE2_REQ"
    if b"\x00" in body[11 : 11 + nlen]:
        return "node name contains ascii 0 in ALIVE2_REQ"
    return ""


class EpmdCore:
    """Request semantics of epmd_srv.c do_request, plus pynode's extension requests.

    ``epmd_port`` is reported in NAMES and DUMP replies. ``relaxed_command_check`` is epmd's
    -relaxed_command_check (KILL with nodes alive, STOP). ``extensions`` False makes the
    extension tags garbage, as for a real epmd. ``is_gone(owner)`` tells whether the
    connection holding a name has already dropped although its close is not processed yet;
    then a new registration of the name takes over instead of getting "name taken".
    """

    def __init__(
        self,
        registry: Registry,
        *,
        epmd_port: int = 0,
        relaxed_command_check: bool = False,
        extensions: bool = True,
        is_gone: Callable[[Hashable], bool] | None = None,
    ) -> None:
        self.registry = registry
        self.epmd_port = epmd_port
        self.relaxed_command_check = relaxed_command_check
        self.extensions = extensions
        self.is_gone = is_gone

    def handle(self, body: bytes, *, local: bool, owner: Hashable, fd: int = -1) -> Outcome:
        """Process one request body from a client (``local``: a loopback/own-address peer)."""
        if not body:
            return Outcome(note="empty request")
        tag = body[0]
        if tag == ALIVE2_REQ:
            return self._alive2(body, local, owner, fd)
        if tag == PORT_PLEASE2_REQ:
            return self._port_please(body)
        if tag == NAMES_REQ:
            return Outcome(encode_names_response(self.epmd_port, self.registry.names()))
        if tag == DUMP_REQ:
            if not local:
                return Outcome(note="DUMP_REQ from non local address")
            active, unused = self.registry.dump()
            return Outcome(encode_dump_response(self.epmd_port, active, unused))
        if tag == KILL_REQ:
            return self._kill(local)
        if tag == STOP_REQ:
            return self._stop(body, local)
        if self.extensions and tag in EXTENSION_TAGS:
            return self._extension(body, local, owner)
        return Outcome(note=f"got garbage (request tag {tag})")

    def connection_lost(self, owner: Hashable, *, linger: bool = True) -> list[NodeRecord]:
        """The connection ``owner`` closed (or sent more bytes): free what it held.

        Returns the registrations removed (their other connections should be closed).
        """
        self.registry.remove_transports_of(owner)
        record = self.registry.owned_by(owner)
        if record is None:
            return []
        removed = self.registry.unregister(record.name, linger=linger)
        if removed is not None:
            log.info(
                "unregistering %r (creation %d), port %d",
                removed.name,
                removed.creation,
                removed.entry.port,
            )
        return [removed] if removed is not None else []

    # -- requests ----------------------------------------------------------------------
    def _alive2(self, body: bytes, local: bool, owner: Hashable, fd: int) -> Outcome:
        if not local:
            return Outcome(note="ALIVE2_REQ from non local address")
        problem = _alive2_shape_ok(body)
        if problem:
            return Outcome(note=problem)
        (highest,) = _U16.unpack_from(body, 5)
        try:
            req = parse_request(body)
        except EpmdProtocolError as e:  # name not UTF-8, empty or over 255 characters
            return self._alive2_refused(highest, f"invalid node name in ALIVE2_REQ: {e}")
        assert isinstance(req, Alive2Request)
        if len(req.extra) > MAX_EXTRA_BYTES:
            return self._alive2_refused(highest, f"extra data is too long ({len(req.extra)})")
        entry = NodeEntry(
            req.name, req.port, req.node_type, req.protocol, req.highest, req.lowest, req.extra
        )
        record = self.registry.register(entry, owner, fd=fd)
        dropped: list[NodeRecord] = []
        if record is None:
            holder = self.registry.get(req.name)
            if (
                holder is not None
                and holder.owner is not None
                and self.is_gone is not None
                and self.is_gone(holder.owner)
            ):
                log.info("the session holding %r has dropped; re-registering", req.name)
                dropped = self.connection_lost(holder.owner)
                record = self.registry.register(entry, owner, fd=fd)
        if record is None:
            return self._alive2_refused(highest, f"node name already occupied {req.name!r}")
        log.info(
            "registering %r (creation %d), port %d, type %d proto %d highvsn %d lowvsn %d",
            req.name,
            record.creation,
            req.port,
            req.node_type,
            req.protocol,
            req.highest,
            req.lowest,
        )
        return Outcome(
            encode_alive2_response(0, record.creation, extended=highest >= 6),
            keep=True,
            dropped=dropped,
        )

    @staticmethod
    def _alive2_refused(highest: int, note: str) -> Outcome:
        # epmd keeps a refused registrant's connection open until it closes; OTP and ei
        # close it at once, so closing after the reply changes nothing for them.
        return Outcome(
            encode_alive2_response(1, _FAILED_CREATION, extended=highest >= 6), note=note
        )

    def _port_please(self, body: bytes) -> Outcome:
        try:
            req = parse_request(body)
        except EpmdProtocolError as e:
            return Outcome(note=f"invalid node name in PORT2_REQ: {e}")
        assert isinstance(req, PortPlease2Request)
        entry = self.registry.lookup(req.name)
        return Outcome(encode_port2_response(entry))

    def _kill(self, local: bool) -> Outcome:
        if not local:
            return Outcome(note="KILL_REQ from non local address")
        if not self.relaxed_command_check and len(self.registry):
            return Outcome(encode_kill_response(False), note="disallowed KILL_REQ, live nodes")
        return Outcome(encode_kill_response(True), kill=True, note="got KILL_REQ")

    def _stop(self, body: bytes, local: bool) -> Outcome:
        if not local:
            return Outcome(note="STOP_REQ from non local address")
        if not self.relaxed_command_check:
            return Outcome(note="disallowed STOP_REQ, no relaxed_command_check")
        if len(body) <= 1:
            return Outcome(note=f"packet too small for request STOP_REQ ({len(body)})")
        raw = body[1:].split(b"\x00", 1)[0]  # epmd reads the name as a C string
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return Outcome(encode_stop_response(False))
        record = self.registry.unregister(name)
        if record is None:
            return Outcome(encode_stop_response(False))
        log.info("stopped %r (creation %d)", name, record.creation)
        return Outcome(encode_stop_response(True), dropped=[record])

    def _extension(self, body: bytes, local: bool, owner: Hashable) -> Outcome:
        if body[0] == ADD_TRANSPORT_REQ and not local:
            return Outcome(note="ADD_TRANSPORT_REQ from non local address")
        try:
            req = parse_ext_request(body)
        except EpmdProtocolError as e:
            return Outcome(note=f"bad extension request: {e}")
        if isinstance(req, PrefixRequest):
            return Outcome(encode_nodes_response(self.registry.lookup_prefix(req.prefix)))
        if isinstance(req, TransportsRequest):
            return Outcome(encode_nodes_response(self.registry.transports(req.name)))
        assert isinstance(req, AddTransportRequest)
        if len(req.extra) > MAX_EXTRA_BYTES:
            return Outcome(note=f"extra data is too long ({len(req.extra)})")
        result = self.registry.add_transport(req.entry(), owner)
        if result == ADD_OK:
            log.info("transport of %r: protocol %d port %d", req.name, req.protocol, req.port)
        return Outcome(encode_result_response(result), keep=result == ADD_OK)
