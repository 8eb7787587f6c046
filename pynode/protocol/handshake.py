"""The distribution handshake as two sans-IO state machines (lib/kernel/src/dist_util.erl).

:class:`Initiator` (node A, who connected) and :class:`Acceptor` (node B, who accepted) each
take bytes with ``receive_data``, hand out typed events from ``next_event`` and queue their
replies for ``data_to_send``. During the handshake every message is framed with a 2-byte
length (``length_bytes=4`` for TLS distribution: inet_tls_dist opens its socket with
``{packet, 4}`` for the handshake too); after :class:`HandshakeComplete`, ``trailing_data``
holds any bytes that already belong to the connected (4-byte framed) phase.

Decisions that need node-wide knowledge stay with the caller: the acceptor pauses after
:class:`NameReceived` until :meth:`Acceptor.send_status` says ok / ok_simultaneous / nok /
not_allowed / alive / named; the initiator pauses after an ``alive`` status until
:meth:`Initiator.answer_alive`. Timeouts (net_setuptime) are the caller's too.
"""

from __future__ import annotations

import os
import struct

# MD5 and the constant-time compare from CPython's built-in modules when they are there:
# hashlib and hmac load OpenSSL, which costs milliseconds on every start of the command line.
try:
    from _md5 import md5 as _md5
except ImportError:  # pragma: no cover - a build without the built-in MD5
    from hashlib import md5 as _md5
try:
    from _operator import _compare_digest as compare_digest
except ImportError:  # pragma: no cover - not CPython
    from hmac import compare_digest  # type: ignore[no-redef]

from ._common import NEED_DATA, Frozen, NeedData
from .errors import HandshakeError
from .flags import MANDATORY, DFlag, expand_mandatory_25, flag_names

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Final


__all__ = [
    "STATUSES",
    "gen_digest",
    "gen_challenge",
    "split_node_name",
    "NameReceived",
    "StatusReceived",
    "WaitingForOldConnection",
    "HandshakeComplete",
    "HandshakeFailed",
    "HandshakeEvent",
    "Initiator",
    "Acceptor",
]

#: The status strings an acceptor may send after the name ('named' adds name and creation).
STATUSES: Final = ("ok", "ok_simultaneous", "nok", "not_allowed", "alive", "named")

_U16 = struct.Struct(">H")
_NAME_N = struct.Struct(">cQIH")  # 'N', flags, creation, nlen
_NAME_OLD = struct.Struct(">cHI")  # 'n', version, flags
_CHALLENGE_N = struct.Struct(">cQIIH")  # 'N', flags, challenge, creation, nlen
_COMPLEMENT = struct.Struct(">cII")  # 'c', flags high, creation
_REPLY = struct.Struct(">cI")  # 'r', challenge (+ 16-byte digest)
_U32 = struct.Struct(">I")
_LENGTHS = {2: _U16, 4: _U32}

MAX_HANDSHAKE_MESSAGE: Final = 0xFFFF
"""The largest handshake message taken with 4-byte framing: what 2-byte framing (inet_tcp_dist's
``{packet, 2}``) allows; every real handshake message is a few hundred bytes at most."""


def gen_digest(challenge: int, cookie: str | bytes) -> bytes:
    """MD5 of the cookie followed by the decimal text of the unsigned 32-bit challenge."""
    return _md5(_cookie_bytes(cookie) + b"%d" % (challenge & 0xFFFFFFFF)).digest()


def gen_challenge() -> int:
    """A random 32-bit challenge from the OS CSPRNG."""
    return int.from_bytes(os.urandom(4), "big")


def _cookie_bytes(cookie: str | bytes) -> bytes:
    if isinstance(cookie, (bytes, bytearray, memoryview)):
        return bytes(cookie)
    try:
        # The cookie is an atom and erlang:md5 takes its characters as bytes: only code
        # points below 256 can ever match an Erlang node's digest.
        return cookie.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(
            "a cookie must consist of characters below U+0100 (Erlang hashes them as bytes)"
        ) from exc


def split_node_name(name: str) -> tuple[str, str]:
    """Split ``name@host``; both parts must be non-empty and there is exactly one '@'."""
    parts = name.split("@")
    if len(parts) != 2 or not parts[0] or not parts[1]:
        raise ValueError(f"{name!r} is not a node name of the form name@host")
    return parts[0], parts[1]


def _is_node_name(name: str) -> bool:
    parts = name.split("@")
    return len(parts) == 2 and bool(parts[0]) and bool(parts[1])


def _is_host_name(name: str) -> bool:
    return bool(name) and "@" not in name


def _wire_name(name: str) -> bytes:
    # dist_util sends node names with atom_to_binary(Node, latin1) and reads them back
    # with list_to_atom of the bytes: on the handshake wire a name is Latin-1.
    try:
        return name.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"node name {name!r} has characters above U+00FF, which the handshake cannot carry"
        ) from exc


# ----------------------------------------------------------------------------- events


_set = object.__setattr__


class NameReceived(Frozen):
    """Acceptor: the initiator introduced itself; answer with :meth:`Acceptor.send_status`.

    ``flags`` are the flags it offered (MANDATORY_25_DIGEST expanded); ``creation`` is None
    for an old v5 'n' name until its complement arrives; ``name_me`` means it asks for a
    dynamic name and ``name`` is then only its host name.
    """

    __slots__ = ("name", "flags", "creation", "version", "name_me")
    name: str
    flags: DFlag
    creation: int | None
    version: int
    name_me: bool

    def __init__(self, name: str, flags: DFlag, creation: int | None, version: int, name_me: bool) -> None:
        _set(self, "name", name)
        _set(self, "flags", flags)
        _set(self, "creation", creation)
        _set(self, "version", version)
        _set(self, "name_me", name_me)


class StatusReceived(Frozen):
    """Initiator: the acceptor's status. After ``alive`` call :meth:`Initiator.answer_alive`.

    For ``named`` the acceptor assigned us ``name`` and ``creation``.
    """

    __slots__ = ("status", "name", "creation")
    status: str
    name: str | None
    creation: int | None

    def __init__(self, status: str, name: str | None = None, creation: int | None = None) -> None:
        _set(self, "status", status)
        _set(self, "name", name)
        _set(self, "creation", creation)


class WaitingForOldConnection(Frozen):
    """Acceptor, after status ``alive`` and a valid challenge reply: the peer proved its
    cookie; take down the old connection to ``name``, then call
    :meth:`Acceptor.old_connection_closed` to send the final ack."""

    __slots__ = ("name",)
    name: str

    def __init__(self, name: str) -> None:
        _set(self, "name", name)


class HandshakeComplete(Frozen):
    """The connection is up: switch to 4-byte framing with ``peer_flags``.

    ``peer_flags`` are the negotiated flags (AND of both offers), ``offered_flags`` what the
    peer offered; ``this_node``/``this_creation`` differ from what we started with only
    when the acceptor named us (NAME_ME).
    """

    __slots__ = (
        "peer_name", "peer_flags", "peer_creation", "offered_flags", "this_node",
        "this_creation", "version", "status",
    )
    peer_name: str
    peer_flags: DFlag
    peer_creation: int
    offered_flags: DFlag
    this_node: str
    this_creation: int
    version: int
    status: str

    def __init__(
        self,
        peer_name: str,
        peer_flags: DFlag,
        peer_creation: int,
        offered_flags: DFlag,
        this_node: str,
        this_creation: int,
        version: int,
        status: str,
    ) -> None:
        _set(self, "peer_name", peer_name)
        _set(self, "peer_flags", peer_flags)
        _set(self, "peer_creation", peer_creation)
        _set(self, "offered_flags", offered_flags)
        _set(self, "this_node", this_node)
        _set(self, "this_creation", this_creation)
        _set(self, "version", version)
        _set(self, "status", status)


class HandshakeFailed(Frozen):
    """The handshake is over without a connection; close the socket after flushing
    ``data_to_send()`` (it may hold a final status for the peer)."""

    __slots__ = ("reason", "message")
    reason: str
    message: str

    def __init__(self, reason: str, message: str) -> None:
        _set(self, "reason", reason)
        _set(self, "message", message)

    @property
    def error(self) -> HandshakeError:
        return HandshakeError(self.reason, self.message)


HandshakeEvent = (
    NameReceived | StatusReceived | WaitingForOldConnection | HandshakeComplete | HandshakeFailed
)


class _State:
    """The handshake's states: strings, so an error message shows them as they are."""

    AWAIT_STATUS = "await_status"
    AWAIT_ALIVE_ANSWER = "await_alive_answer"
    AWAIT_CHALLENGE = "await_challenge"
    AWAIT_ACK = "await_ack"
    AWAIT_NAME = "await_name"
    AWAIT_DECISION = "await_decision"
    AWAIT_ALIVE_REPLY = "await_alive_reply"
    AWAIT_COMPLEMENT = "await_complement"
    AWAIT_REPLY = "await_reply"
    AWAIT_OLD_CONNECTION = "await_old_connection"
    DONE = "done"
    FAILED = "failed"


# Which states wait on the caller rather than on the peer.
_CALLER_STATES: Final = {
    _State.AWAIT_ALIVE_ANSWER: "answer_alive()",
    _State.AWAIT_DECISION: "send_status()",
    _State.AWAIT_OLD_CONNECTION: "old_connection_closed()",
}


class _Handshake:
    """Shared buffering, framing and failure handling."""

    def __init__(
        self,
        *,
        this_node: str,
        cookie: str | bytes,
        flags: int,
        creation: int,
        required_flags: int,
        challenge: int | None,
        length_bytes: int = 2,
    ) -> None:
        if length_bytes not in _LENGTHS:
            raise ValueError("handshake messages are framed with 2-byte or 4-byte lengths")
        self._length = _LENGTHS[length_bytes]
        if not 0 <= creation <= 0xFFFFFFFF:
            raise ValueError(f"creation {creation} does not fit in 32 bits")
        self.this_node = this_node
        self.this_creation = creation
        self._cookie = _cookie_bytes(cookie)
        # Offer every bit MANDATORY_25_DIGEST stands for: the AND of both offers must hold
        # them individually.
        self._flags = DFlag(int(expand_mandatory_25(flags)) | DFlag.HANDSHAKE_23)
        self._required = DFlag(int(required_flags))
        self._my_challenge = gen_challenge() if challenge is None else challenge & 0xFFFFFFFF
        self._in = bytearray()
        self._out = bytearray()
        self._eof = False
        self._events: list[HandshakeEvent] = []  # a few at most
        self._failure: HandshakeFailed | None = None
        self._failure_reported = False
        self._state: str

    # -- caller API ---------------------------------------------------------------------

    @property
    def state(self) -> str:
        """The current state's name (for logs and tests)."""
        return self._state

    @property
    def complete(self) -> bool:
        return self._state is _State.DONE

    @property
    def trailing_data(self) -> bytes:
        """Bytes received beyond the handshake: the start of the connected phase."""
        if self._state is not _State.DONE:
            return b""
        return bytes(self._in)

    def receive_data(self, data: bytes) -> None:
        """Feed bytes from the socket (empty data is ignored; see :meth:`receive_eof`)."""
        if data:
            if self._eof:
                raise RuntimeError("receive_data() after receive_eof()")
            self._in += data

    def receive_eof(self) -> None:
        """The peer closed the connection."""
        self._eof = True

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call."""
        out = bytes(self._out)
        self._out.clear()
        return out

    def next_event(self) -> HandshakeEvent | NeedData:
        """The next event, or NEED_DATA. A failure is reported once as
        :class:`HandshakeFailed`; later calls raise its :class:`HandshakeError`."""
        if self._events:
            return self._events.pop(0)
        if self._failure is not None:
            if self._failure_reported:
                raise self._failure.error
            self._failure_reported = True
            return self._failure
        while True:
            state = self._state
            if state is _State.DONE:
                raise RuntimeError("the handshake is complete; feed trailing_data onward")
            waiting = _CALLER_STATES.get(state)
            if waiting is not None:
                raise RuntimeError(f"the handshake waits for {waiting}, not for data")
            packet = self._next_packet()
            if packet is None:
                if self._eof:
                    if state is _State.AWAIT_ACK:
                        # erl closes without a word when our digest is wrong (dist_util
                        # gen_digest mismatch: ?shutdown2(..., bad_cookie))
                        self._fail(
                            "bad_cookie",
                            "the peer closed the connection after our challenge reply: "
                            "it did not accept our cookie (wrong cookie?)",
                        )
                    else:
                        self._fail(
                            "closed",
                            f"the peer closed the connection during the handshake "
                            f"(state {state})",
                        )
                    return self.next_event()
                return NEED_DATA
            if not packet:
                self._fail("protocol", "empty handshake message")
            else:
                self._handle(packet)
            if self._events or self._failure is not None:
                return self.next_event()

    # -- internals ------------------------------------------------------------------------

    def _handle(self, packet: bytes) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _next_packet(self) -> bytes | None:
        buf = self._in
        head = self._length.size
        if len(buf) < head:
            return None
        (size,) = self._length.unpack_from(buf)
        if size > MAX_HANDSHAKE_MESSAGE:
            self._fail("protocol", f"handshake message of {size} bytes (at most {MAX_HANDSHAKE_MESSAGE})")
            return b""
        if len(buf) < head + size:
            return None
        packet = bytes(buf[head : head + size])
        del buf[: head + size]
        return packet

    def _send(self, body: bytes) -> None:
        self._out += self._length.pack(len(body))
        self._out += body

    def _fail(self, reason: str, message: str) -> None:
        self._state = _State.FAILED
        if self._failure is None:
            self._failure = HandshakeFailed(reason, message)

    def _unexpected(self, packet: bytes, expected: str) -> None:
        self._fail(
            "protocol",
            f"expected {expected} in state {self._state}, got {packet[:32]!r}"
            f"{'...' if len(packet) > 32 else ''}",
        )

    def _missing(self, flags: DFlag, mask: int = -1) -> DFlag:
        return DFlag(int(self._required) & mask & ~int(flags))

    def _missing_message(self, who: str, missing: DFlag) -> str:
        return f"{who} lacks mandatory distribution flags: {', '.join(flag_names(missing))}"


class Initiator(_Handshake):
    """Node A: we dialled ``peer_node``. The send_name message is queued at construction.

    ``flags`` is what we offer (see :func:`pynode.protocol.flags.default_flags`). With
    ``name_me=True`` we ask the acceptor for a dynamic name: ``this_node`` is then just our
    host name and the assigned name arrives in the ``named`` status. ``version=5`` sends the
    old 'n' name and the 'c' complement, as OTP 23/24 nodes do without EPMD (for
    compatibility tests; OTP 25+ expects the default 6). ``length_bytes=4`` frames the messages
    as TLS distribution does.
    """

    def __init__(
        self,
        *,
        this_node: str,
        peer_node: str,
        cookie: str | bytes,
        flags: int,
        creation: int,
        required_flags: int = MANDATORY,
        name_me: bool = False,
        version: int = 6,
        challenge: int | None = None,
        length_bytes: int = 2,
    ) -> None:
        super().__init__(
            this_node=this_node,
            cookie=cookie,
            flags=flags,
            creation=creation,
            required_flags=required_flags,
            challenge=challenge,
            length_bytes=length_bytes,
        )
        if not _is_node_name(peer_node):
            raise ValueError(f"peer node {peer_node!r} is not of the form name@host")
        if version not in (5, 6):
            raise ValueError("the handshake version is 5 (old 'n' name) or 6")
        self.peer_node = peer_node
        self.name_me = name_me
        self.version = version
        own = int(self._flags) & ~int(DFlag.NAME_ME)
        if name_me:
            if version != 6:
                raise ValueError("NAME_ME needs the version 6 handshake")
            if not _is_host_name(this_node):
                raise ValueError("with name_me, this_node is a host name without '@'")
            own = (own & ~int(DFlag.PUBLISHED)) | int(DFlag.NAME_ME)
        elif not _is_node_name(this_node):
            raise ValueError(f"this node {this_node!r} is not of the form name@host")
        self._flags = DFlag(own)
        self._status = ""
        self._state = _State.AWAIT_STATUS
        name = _wire_name(this_node)
        if version == 6:
            sent_creation = 0 if name_me else creation
            self._send(_NAME_N.pack(b"N", own, sent_creation, len(name)) + name)
        else:
            self._send(_NAME_OLD.pack(b"n", 5, own & 0xFFFFFFFF) + name)

    @property
    def flags(self) -> DFlag:
        """The flags we offer on this connection."""
        return self._flags

    def answer_alive(self, keep_going: bool) -> None:
        """Reply to status ``alive``: True if our old connection to the peer is gone (go on),
        False to give up this attempt."""
        if self._state is not _State.AWAIT_ALIVE_ANSWER:
            raise RuntimeError(f"answer_alive() in state {self._state}")
        self._send(b"strue" if keep_going else b"sfalse")
        if keep_going:
            self._state = _State.AWAIT_CHALLENGE
        else:
            self._fail("alive", f"{self.peer_node} still has a connection from us; gave up")

    def _handle(self, packet: bytes) -> None:
        state = self._state
        if state is _State.AWAIT_STATUS:
            self._on_status(packet)
        elif state is _State.AWAIT_CHALLENGE:
            self._on_challenge(packet)
        elif state is _State.AWAIT_ACK:
            self._on_ack(packet)
        else:  # pragma: no cover - next_event filters the other states
            self._unexpected(packet, "nothing")

    def _on_status(self, packet: bytes) -> None:
        if packet[:1] != b"s":
            self._unexpected(packet, "a status message 's'")
            return
        if packet.startswith(b"snamed:"):
            self._on_named(packet)
            return
        status = packet[1:].decode("latin-1")
        if status == "not_allowed":
            self._fail("not_allowed", f"{self.peer_node} does not allow us to connect")
            return
        if self.name_me:
            self._fail("protocol", f"asked for a dynamic name but got status {status!r}")
            return
        if status == "nok":
            self._fail(
                "nok",
                f"{self.peer_node} is already connecting to us (simultaneous connect); "
                f"its attempt wins",
            )
            return
        if status == "alive":
            self._status = status
            self._state = _State.AWAIT_ALIVE_ANSWER
            self._events.append(StatusReceived(status))
            return
        if status in ("ok", "ok_simultaneous"):
            self._status = status
            self._state = _State.AWAIT_CHALLENGE
            self._events.append(StatusReceived(status))
            return
        self._fail("protocol", f"unknown handshake status {status!r} from {self.peer_node}")

    def _on_named(self, packet: bytes) -> None:
        if not self.name_me:
            self._fail("protocol", "got a 'named:' status but did not ask for a dynamic name")
            return
        body = packet[7:]
        if len(body) < 2:
            self._unexpected(packet, "a complete 'named:' status")
            return
        (nlen,) = _U16.unpack_from(body)
        if len(body) < 2 + nlen + 4:
            self._unexpected(packet, "a complete 'named:' status")
            return
        try:
            name = body[2 : 2 + nlen].decode("utf-8")
        except UnicodeDecodeError:
            self._fail("bad_name", "the assigned node name is not valid UTF-8")
            return
        (creation,) = _U32.unpack_from(body, 2 + nlen)
        if not _is_node_name(name) or name.split("@")[1] != self.this_node:
            self._fail(
                "bad_name",
                f"assigned name {name!r} is not a node name on our host {self.this_node!r}",
            )
            return
        self.this_node = name
        self.this_creation = creation
        self._status = "named"
        self._state = _State.AWAIT_CHALLENGE
        self._events.append(StatusReceived("named", name, creation))

    def _on_challenge(self, packet: bytes) -> None:
        if packet[:1] != b"N" or len(packet) < _CHALLENGE_N.size:
            self._unexpected(packet, "a challenge 'N'")
            return
        _, peer_flags, challenge, creation, nlen = _CHALLENGE_N.unpack_from(packet)
        end = _CHALLENGE_N.size + nlen
        if len(packet) < end:
            self._unexpected(packet, "a complete challenge 'N'")
            return
        name = packet[_CHALLENGE_N.size : end].decode("latin-1")
        if name != self.peer_node:
            self._fail("wrong_node", f"dialled {self.peer_node} but the peer says it is {name}")
            return
        offered = expand_mandatory_25(peer_flags)
        chosen = DFlag(int(self._flags) & int(offered))
        missing = self._missing(chosen)
        if missing:
            self._fail("missing_flags", self._missing_message(name, missing))
            return
        self._offered = offered
        self._chosen = chosen
        self._peer_creation = creation
        if self.version == 5:
            self._send(_COMPLEMENT.pack(b"c", int(self._flags) >> 32, self.this_creation))
        digest = gen_digest(challenge, self._cookie)
        self._send(_REPLY.pack(b"r", self._my_challenge) + digest)
        self._state = _State.AWAIT_ACK

    def _on_ack(self, packet: bytes) -> None:
        if packet[:1] != b"a" or len(packet) != 17:
            self._unexpected(packet, "a challenge ack 'a' with a 16-byte digest")
            return
        expected = gen_digest(self._my_challenge, self._cookie)
        if not compare_digest(packet[1:], expected):
            self._fail(
                "bad_cookie",
                f"the challenge ack digest from {self.peer_node} did not match: "
                f"it has a different cookie (wrong cookie)",
            )
            return
        self._state = _State.DONE
        self._events.append(
            HandshakeComplete(
                peer_name=self.peer_node,
                peer_flags=self._chosen,
                peer_creation=self._peer_creation,
                offered_flags=self._offered,
                this_node=self.this_node,
                this_creation=self.this_creation,
                version=6,
                status=self._status,
            )
        )


class Acceptor(_Handshake):
    """Node B: a peer connected to us. Wait for :class:`NameReceived`, then decide with
    :meth:`send_status`. ``flags`` is what we offer (PUBLISHED for a visible node)."""

    def __init__(
        self,
        *,
        this_node: str,
        cookie: str | bytes,
        flags: int,
        creation: int,
        required_flags: int = MANDATORY,
        challenge: int | None = None,
        length_bytes: int = 2,
    ) -> None:
        super().__init__(
            this_node=this_node,
            cookie=cookie,
            flags=int(flags) & ~int(DFlag.NAME_ME),
            creation=creation,
            required_flags=required_flags,
            challenge=challenge,
            length_bytes=length_bytes,
        )
        if not _is_node_name(this_node):
            raise ValueError(f"this node {this_node!r} is not of the form name@host")
        self._wire_this = _wire_name(this_node)
        self._state = _State.AWAIT_NAME
        self.peer_name: str | None = None
        self.peer_version = 0
        self.peer_name_me = False
        self._peer_flags = DFlag(0)
        self._peer_creation: int | None = None
        self._status = ""

    @property
    def flags(self) -> DFlag:
        """The flags we offer to this peer (NAME_ME replaces PUBLISHED for a dynamic name)."""
        return self._flags

    def send_status(
        self, status: str, *, name: str | None = None, creation: int | None = None
    ) -> None:
        """Answer the name: ``ok`` / ``ok_simultaneous`` continue; ``nok`` (we have our own
        attempt in progress and it wins) and ``not_allowed`` end the handshake; ``alive`` asks
        the peer whether to replace our existing connection; ``named`` (only for a NAME_ME
        peer) assigns it ``name`` (name@its-host) and ``creation``."""
        if self._state is not _State.AWAIT_DECISION:
            raise RuntimeError(f"send_status() in state {self._state}")
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}; expected one of {STATUSES}")
        peer = self.peer_name or ""
        if self.peer_name_me and status not in ("named", "nok", "not_allowed"):
            raise ValueError(f"a peer asking for a dynamic name needs 'named', not {status!r}")
        if status == "named":
            if not self.peer_name_me:
                raise ValueError("'named' is only for a peer that set NAME_ME")
            if name is None or creation is None:
                raise ValueError("'named' needs the assigned name and creation")
            if not _is_node_name(name) or name.split("@")[1] != peer:
                raise ValueError(f"assigned name {name!r} must be some_name@{peer}")
            if not 0 <= creation <= 0xFFFFFFFF:
                raise ValueError(f"creation {creation} does not fit in 32 bits")
            raw = name.encode("utf-8")
            self._send(b"snamed:" + _U16.pack(len(raw)) + raw + _U32.pack(creation))
            self.peer_name = name
            self._peer_creation = creation
        else:
            self._send(b"s" + status.encode("ascii"))
        self._status = status
        if status == "nok":
            self._fail("nok", f"refused {peer}: our own connection attempt to it wins")
        elif status == "not_allowed":
            self._fail("not_allowed", f"refused {peer}: not allowed")
        elif status == "alive":
            self._state = _State.AWAIT_ALIVE_REPLY
        else:
            self._send_challenge()

    def old_connection_closed(self) -> None:
        """After :class:`WaitingForOldConnection`: the old connection is gone, finish."""
        if self._state is not _State.AWAIT_OLD_CONNECTION:
            raise RuntimeError(f"old_connection_closed() in state {self._state}")
        self._finish()

    def _send_challenge(self) -> None:
        self._send(
            _CHALLENGE_N.pack(
                b"N",
                int(self._flags),
                self._my_challenge,
                self.this_creation,
                len(self._wire_this),
            )
            + self._wire_this
        )
        self._state = _State.AWAIT_COMPLEMENT if self._peer_creation is None else _State.AWAIT_REPLY

    def _handle(self, packet: bytes) -> None:
        state = self._state
        if state is _State.AWAIT_NAME:
            self._on_name(packet)
        elif state is _State.AWAIT_ALIVE_REPLY:
            self._on_alive_reply(packet)
        elif state is _State.AWAIT_COMPLEMENT:
            self._on_complement(packet)
        elif state is _State.AWAIT_REPLY:
            self._on_reply(packet)
        else:  # pragma: no cover - next_event filters the other states
            self._unexpected(packet, "nothing")

    def _on_name(self, packet: bytes) -> None:
        tag = packet[:1]
        if tag == b"N" and len(packet) >= _NAME_N.size:
            _, flags, creation, nlen = _NAME_N.unpack_from(packet)
            end = _NAME_N.size + nlen
            if len(packet) < end:
                self._unexpected(packet, "a complete send_name 'N'")
                return
            name = packet[_NAME_N.size : end].decode("latin-1")
            version = 6
            name_me = bool(flags & DFlag.NAME_ME)
            mask = -1
        elif tag == b"n" and len(packet) >= _NAME_OLD.size:
            _, _version, flags = _NAME_OLD.unpack_from(packet)
            name = packet[_NAME_OLD.size :].decode("latin-1")
            version = 5
            creation = None
            name_me = False
            mask = 0xFFFFFFFF  # high flags arrive with the complement; check them then
        else:
            self._unexpected(packet, "a send_name 'N' or 'n'")
            return
        if name_me:
            if not _is_host_name(name):
                self._fail("bad_name", f"{name!r} is not a host name (NAME_ME)")
                return
        elif not _is_node_name(name):
            self._fail("bad_name", f"{name!r} is not a node name of the form name@host")
            return
        offered = expand_mandatory_25(flags)
        self.peer_name = name
        self.peer_version = version
        self.peer_name_me = name_me
        self._peer_flags = offered
        self._peer_creation = creation
        if name_me:
            self._flags = DFlag((int(self._flags) & ~int(DFlag.PUBLISHED)) | DFlag.NAME_ME)
        missing = self._missing(offered, mask)
        if missing:
            self._send(b"snot_allowed")
            self._fail("missing_flags", self._missing_message(name, missing))
            return
        self._state = _State.AWAIT_DECISION
        self._events.append(NameReceived(name, offered, creation, version, name_me))

    def _on_alive_reply(self, packet: bytes) -> None:
        if packet == b"strue":
            self._send_challenge()
        elif packet == b"sfalse":
            self._fail("alive", f"{self.peer_name} chose not to replace its old connection")
        else:
            self._unexpected(packet, "'strue' or 'sfalse'")

    def _on_complement(self, packet: bytes) -> None:
        if packet[:1] != b"c" or len(packet) != _COMPLEMENT.size:
            self._unexpected(packet, "a complement 'c'")
            return
        _, flags_high, creation = _COMPLEMENT.unpack(packet)
        offered = expand_mandatory_25(int(self._peer_flags) | (flags_high << 32))
        self._peer_flags = offered
        self._peer_creation = creation
        missing = self._missing(offered)
        if missing:
            self._send(b"snot_allowed")
            self._fail("missing_flags", self._missing_message(self.peer_name or "", missing))
            return
        self._state = _State.AWAIT_REPLY

    def _on_reply(self, packet: bytes) -> None:
        if packet[:1] != b"r" or len(packet) != 21:
            self._unexpected(packet, "a challenge reply 'r' with a 16-byte digest")
            return
        _, peer_challenge = _REPLY.unpack_from(packet)
        expected = gen_digest(self._my_challenge, self._cookie)
        if not compare_digest(packet[5:], expected):
            self._fail(
                "bad_cookie",
                f"the challenge reply digest from {self.peer_name} did not match: "
                f"it has a different cookie (wrong cookie)",
            )
            return
        self._peer_challenge = peer_challenge
        if self._status == "alive":
            self._state = _State.AWAIT_OLD_CONNECTION
            self._events.append(WaitingForOldConnection(self.peer_name or ""))
        else:
            self._finish()

    def _finish(self) -> None:
        self._send(b"a" + gen_digest(self._peer_challenge, self._cookie))
        self._state = _State.DONE
        assert self._peer_creation is not None
        self._events.append(
            HandshakeComplete(
                peer_name=self.peer_name or "",
                peer_flags=DFlag(int(self._flags) & int(self._peer_flags)),
                peer_creation=self._peer_creation,
                offered_flags=self._peer_flags,
                this_node=self.this_node,
                this_creation=self.this_creation,
                version=self.peer_version,
                status=self._status,
            )
        )
