"""Limits on what peers may make this node hold, with their precedents, in one place.

Every place where input arrives is bounded here or by a limit it names:

- Handshakes not yet authenticated: :class:`HandshakeGate` (count, per peer address, total
  time). Past a cap the *oldest* pending handshake of the busiest address is dropped, so a
  flood of half-open connections cannot lock out a good peer elsewhere.
- Connected phase: packet and message size (``Node(max_packet=, max_message=)``, see
  :mod:`pynode.protocol.framing`), fragmented messages in flight and their bytes
  (:data:`MAX_FRAGMENTED_IN_FLIGHT`, ``max_buffered``).
- EPMD server: connections (``max_connections``, 1023), request size and name length
  (epmd's own values, :mod:`pynode.epmd.core`), unregistered names kept (1000).
- Mailboxes: a warning when a queue grows long (:data:`MAILBOX_WARN_LENGTH`); messages are
  never dropped (Erlang semantics), so this is a diagnostic, not a cap.

Authenticated connections are not limited per address: each is a node that knew the
cookie, there is one per node name, and many nodes share an address (every local erl).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

import anyio

from ..protocol.framing import DEFAULT_MAX_FRAGMENTED

__all__ = [
    "MAX_PENDING_HANDSHAKES",
    "MAX_PENDING_PER_ADDRESS",
    "HANDSHAKE_STEPS",
    "MAX_FRAGMENTED_IN_FLIGHT",
    "MAILBOX_WARN_LENGTH",
    "HandshakeGate",
]

log = logging.getLogger("pynode.node")

MAX_PENDING_HANDSHAKES: Final = 64
"""Incoming handshakes in progress at once. OTP has no such cap (net_kernel spawns one
handshake process per accepted socket, bounded only by net_setuptime); 64 is far above what
a cluster's simultaneous connects need and bounds what a flood of half-open sockets holds."""

MAX_PENDING_PER_ADDRESS: Final = 16
"""Incoming handshakes in progress from one peer IP address. No OTP precedent; a host
starting many nodes at once (tests, a release booting) stays well below it."""

HANDSHAKE_STEPS: Final = 4
"""A whole incoming handshake may take ``HANDSHAKE_STEPS * setup_time``: dist_util starts
its net_setuptime timer (7 s by default) before the name and resets it after the status and
after the challenge (and after an 'alive' status), so an acceptor in erl waits at most
four such windows too. Each single read is also bounded by ``setup_time``."""

MAX_FRAGMENTED_IN_FLIGHT: Final = DEFAULT_MAX_FRAGMENTED
"""Fragmented messages partly received on one connection (the precedent is with the
value, in :mod:`pynode.protocol.framing`)."""

MAILBOX_WARN_LENGTH: Final = 10_000
"""Queue length at which a mailbox logs a warning (again at each doubling). erl has no
default: OTP 27's ``system_monitor`` ``long_message_queue`` is off unless asked for; a
long queue is the usual sign of a consumer that cannot keep up."""


def _host_of(address: Any) -> str:
    if isinstance(address, tuple) and address:
        return str(address[0])
    return str(address)


class HandshakeGate:
    """The incoming handshakes in progress: at most ``max_pending`` in all and
    ``max_per_address`` per peer host, each bounded in time. Admitting one past a cap
    cancels the oldest of that address, or past the total cap the oldest of the address
    with the most pending. A good peer loses its slot only to a flood from its own address
    (or one spread over ``max_pending`` addresses)."""

    def __init__(
        self,
        max_pending: int = MAX_PENDING_HANDSHAKES,
        max_per_address: int = MAX_PENDING_PER_ADDRESS,
    ) -> None:
        if max_pending < 1 or max_per_address < 1:
            raise ValueError("handshake limits must be positive")
        self.max_pending = max_pending
        self.max_per_address = max_per_address
        self._pending: dict[object, tuple[str, anyio.CancelScope]] = {}  # oldest first
        self.dropped = 0
        """Handshakes dropped to make room for newer ones (for tests and stats)."""

    def __len__(self) -> int:
        return len(self._pending)

    def _drop(self, token: object, why: str) -> None:
        host, scope = self._pending.pop(token)
        self.dropped += 1
        log.warning("dropping a pending handshake from %s: %s", host, why)
        scope.cancel()

    @contextmanager
    def admit(self, address: Any, time_limit: float) -> Iterator[anyio.CancelScope]:
        """Hold a slot for one handshake; the scope is cancelled when it must give way or
        after ``time_limit`` seconds (check ``scope.cancel_called`` afterwards)."""
        host = _host_of(address)
        same = [t for t, (h, _) in self._pending.items() if h == host]
        if len(same) >= self.max_per_address:
            self._drop(same[0], f"{len(same)} handshakes pending from this address")
        if len(self._pending) >= self.max_pending:
            # the oldest of the address with the most: a flood from many addresses does not
            # push out a lone good peer
            counts: dict[str, int] = {}
            for h, _ in self._pending.values():
                counts[h] = counts.get(h, 0) + 1
            busiest = max(counts, key=counts.__getitem__)
            oldest = next(t for t, (h, _) in self._pending.items() if h == busiest)
            self._drop(oldest, f"{len(self._pending)} handshakes pending")
        token = object()
        scope = anyio.CancelScope(deadline=anyio.current_time() + time_limit)
        self._pending[token] = (host, scope)
        try:
            with scope:
                yield scope
        finally:
            self._pending.pop(token, None)
