"""Sans-IO distribution protocol: EPMD messages, the handshake, flags, framing and control
messages. Bytes in, typed events out; no sockets, no clocks.

The submodules are the API (``pynode.protocol.epmd``, ``.handshake``, ``.flags``,
``.framing``, ``.control``); the names most callers need are re-exported here. ``framing``
and ``control`` need the term codec, so they are imported lazily.
"""

from __future__ import annotations

from .._lazy import lazy_exports
from ._common import NEED_DATA, NO_PAYLOAD
from .errors import EpmdProtocolError, HandshakeError, ProtocolError
from .flags import DEFAULT, MANDATORY, DFlag, default_flags
from .handshake import (
    Acceptor,
    HandshakeComplete,
    HandshakeFailed,
    Initiator,
    NameReceived,
    StatusReceived,
    WaitingForOldConnection,
)

__all__ = [
    "NEED_DATA",
    "NO_PAYLOAD",
    "ProtocolError",
    "EpmdProtocolError",
    "HandshakeError",
    "DFlag",
    "DEFAULT",
    "MANDATORY",
    "default_flags",
    "Initiator",
    "Acceptor",
    "NameReceived",
    "StatusReceived",
    "WaitingForOldConnection",
    "HandshakeComplete",
    "HandshakeFailed",
    "DistConnection",
    "Message",
    "Tick",
    "TICK",
    "ConnectionClosed",
]

_LAZY = {
    "DistConnection": "framing",
    "Message": "framing",
    "Tick": "framing",
    "TICK": "framing",
    "ConnectionClosed": "framing",
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
