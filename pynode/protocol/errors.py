"""Exceptions raised by the sans-IO protocol layer.

Every error a remote peer can provoke is a :class:`ProtocolError`, so the runtime can catch one
class, log it and drop the connection.
"""

from __future__ import annotations

__all__ = ["ProtocolError", "EpmdProtocolError", "HandshakeError"]


class ProtocolError(Exception):
    """The peer sent bytes that break the distribution protocol; the connection is unusable."""


class EpmdProtocolError(ProtocolError):
    """A malformed EPMD request or reply, or an invalid node name."""


class HandshakeError(ProtocolError):
    """The distribution handshake failed; ``reason`` is a short machine-readable code.

    Codes: ``bad_cookie``, ``not_allowed``, ``nok``, ``alive``, ``missing_flags``,
    ``wrong_node``, ``bad_name``, ``closed``, ``protocol``.
    """

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason
        super().__init__(message)
