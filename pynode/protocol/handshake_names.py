"""Node names read off a distribution handshake in passing, for a proxy that only forwards.

A forwarder sees the dialing node's send_name ('n' or 'N') first on one side, and the
accepting node's challenge ('n' or 'N', after its status 's...') on the other; both carry
the node's full name (lib/kernel/src/dist_util.erl). :class:`NameSniffer` is fed the bytes of
one direction and gives the name once it is known; it never holds more than one handshake
packet, and gives up (``failed``) on bytes that are not a handshake (e.g. TLS).
"""

from __future__ import annotations

import struct
from typing import Final

__all__ = ["NameSniffer", "DIALER", "ACCEPTOR", "MAX_SNIFF_BYTES"]

DIALER: Final = "dialer"
ACCEPTOR: Final = "acceptor"

#: A handshake packet longer than this is no name message: a node name is at most 255
#: characters of up to 4 UTF-8 bytes each (epmd's MAXSYMLEN), plus the fixed fields.
MAX_SNIFF_BYTES: Final = 255 * 4 + 32

_U16 = struct.Struct(">H")
_NAME_N = struct.Struct(">cQIH")  # 'N', flags, creation, nlen
_NAME_OLD = struct.Struct(">cHI")  # 'n', version, flags
_CHALLENGE_N = struct.Struct(">cQIIH")  # 'N', flags, challenge, creation, nlen
_CHALLENGE_OLD = struct.Struct(">cHII")  # 'n', version, flags, challenge


class NameSniffer:
    """Reads the node name from one direction of a handshake (``side``: DIALER or ACCEPTOR)."""

    __slots__ = ("side", "name", "failed", "_buf", "_done")

    def __init__(self, side: str) -> None:
        if side not in (DIALER, ACCEPTOR):
            raise ValueError(f"side must be {DIALER!r} or {ACCEPTOR!r}")
        self.side = side
        self.name: str | None = None
        self.failed = False
        self._buf = bytearray()
        self._done = False

    @property
    def done(self) -> bool:
        """True once the name is known or the bytes were no handshake: stop feeding."""
        return self._done

    def receive_data(self, data: bytes) -> str | None:
        """Feed bytes; returns the name when this call found it."""
        if self._done:
            return None
        self._buf += data[: MAX_SNIFF_BYTES + 2]
        while not self._done and len(self._buf) >= 2:
            (size,) = _U16.unpack_from(self._buf)
            if size == 0 or size > MAX_SNIFF_BYTES:
                self._fail()
                return None
            if len(self._buf) < size + 2:
                if len(self._buf) >= MAX_SNIFF_BYTES + 2:
                    self._fail()
                return None
            packet = bytes(self._buf[2 : size + 2])
            del self._buf[: size + 2]
            if self.side == ACCEPTOR and packet[:1] == b"s":
                continue  # the status comes before the challenge
            name = self._parse(packet)
            if name is None:
                self._fail()
                return None
            self.name = name
            self._done = True
            self._buf.clear()
            return name
        return None

    def _fail(self) -> None:
        self.failed = True
        self._done = True
        self._buf.clear()
        return None

    def _parse(self, packet: bytes) -> str | None:
        tag = packet[:1]
        if self.side == DIALER:
            if tag == b"N" and len(packet) >= _NAME_N.size:
                nlen = _NAME_N.unpack_from(packet)[3]
                raw = packet[_NAME_N.size : _NAME_N.size + nlen]
                if len(raw) != nlen:
                    return None
            elif tag == b"n" and len(packet) >= _NAME_OLD.size:
                raw = packet[_NAME_OLD.size :]
            else:
                return None
        else:
            if tag == b"N" and len(packet) >= _CHALLENGE_N.size:
                nlen = _CHALLENGE_N.unpack_from(packet)[4]
                raw = packet[_CHALLENGE_N.size : _CHALLENGE_N.size + nlen]
                if len(raw) != nlen:
                    return None
            elif tag == b"n" and len(packet) >= _CHALLENGE_OLD.size:
                raw = packet[_CHALLENGE_OLD.size :]
            else:
                return None
        try:
            name = raw.decode("utf-8")
        except UnicodeDecodeError:
            return None
        return name if name else None
