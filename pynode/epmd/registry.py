"""EPMD's tables, without I/O: registered nodes, recently unregistered names, extra transports.

Mirrors erts/epmd/src/epmd_srv.c (node_reg2, node_unreg, node_unreg_sock, bump_creation,
get_creation): a name freed by its node goes to a bounded "unused" table so that a later
registration of the same name gets the next creation, and a name seen for the first time
gets a creation seeded from the wall clock. Clocks are injected so tests need no sleeping.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Final

from ..protocol.epmd import NodeEntry
from ..protocol.epmd_ext import ADD_DUPLICATE, ADD_NOT_REGISTERED, ADD_OK

__all__ = [
    "MAX_UNREGISTERED",
    "MAX_EXTRA_BYTES",
    "ADD_OK",
    "ADD_NOT_REGISTERED",
    "ADD_DUPLICATE",
    "NodeRecord",
    "Transport",
    "Registry",
    "next_creation_counter",
    "creation_for",
]

#: epmd_int.h MAX_UNREG_COUNT: how many freed names keep their creation counter.
MAX_UNREGISTERED: Final = 1000
#: epmd refuses an ALIVE2_REQ whose extra field is longer than MAXSYMLEN (255*4) bytes.
MAX_EXTRA_BYTES: Final = 255 * 4

def next_creation_counter(counter: int) -> int:
    """epmd's bump_creation: +1 on an unsigned 32-bit counter, skipping 0..3."""
    counter = (counter + 1) & 0xFFFFFFFF
    return 4 if counter < 4 else counter


def creation_for(counter: int, highest: int) -> int:
    """epmd's get_creation: the 32-bit counter for v6 nodes, 1..3 for old (v5) ones."""
    return counter if highest >= 6 else counter % 3 + 1


@dataclass(frozen=True, slots=True)
class Transport:
    """An extra (protocol, port) of a registered node; ``owner`` is the connection holding it."""

    entry: NodeEntry
    owner: Hashable | None


@dataclass(slots=True)
class NodeRecord:
    """A live registration: what PORT_PLEASE2 answers, plus who holds it."""

    entry: NodeEntry
    counter: int
    owner: Hashable | None = None
    fd: int = -1
    transports: list[Transport] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.entry.name

    @property
    def creation(self) -> int:
        """The creation answered in ALIVE2_X_RESP / ALIVE2_RESP."""
        return creation_for(self.counter, self.entry.highest)

    def transport_entries(self) -> list[NodeEntry]:
        """The primary entry first, then the extra transports in the order they were added."""
        return [self.entry, *(t.entry for t in self.transports)]


@dataclass(slots=True)
class _Unused:
    entry: NodeEntry
    counter: int
    fd: int
    linger_until: float  # monotonic; PORT_PLEASE2 still answers before this


class Registry:
    """Registered names, with epmd's creation rules.

    ``clock`` seeds creations (wall-clock seconds, as epmd's ``time()``); ``monotonic``
    times the optional linger period. ``linger`` > 0 keeps answering PORT_PLEASE2 for a name
    whose registration connection dropped, for that many seconds (it is never listed by
    NAMES and never blocks a new registration of the name). 0 is epmd's behaviour.
    """

    def __init__(
        self,
        *,
        max_unregistered: int = MAX_UNREGISTERED,
        linger: float = 0.0,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._live: dict[str, NodeRecord] = {}  # insertion order = registration order
        self._unused: OrderedDict[str, _Unused] = OrderedDict()  # oldest first
        self.max_unregistered = max_unregistered
        self.linger = linger
        self._clock = clock
        self._monotonic = monotonic

    # -- registration ------------------------------------------------------------------
    def register(
        self, entry: NodeEntry, owner: Hashable | None = None, *, fd: int = -1
    ) -> NodeRecord | None:
        """Register ``entry``; None when its name is already registered (epmd answers 1)."""
        name = entry.name
        if name in self._live:
            return None
        old = self._unused.pop(name, None)
        if old is not None:
            counter = next_creation_counter(old.counter)
        else:
            counter = next_creation_counter(int(self._clock()) & 0xFFFFFFFF)
        record = NodeRecord(entry, counter, owner, fd)
        self._live[name] = record
        return record

    def unregister(self, name: str, *, linger: bool = False) -> NodeRecord | None:
        """Forget ``name`` (STOP_REQ, or its connection closed); returns the removed record.

        ``linger`` applies the linger period (only meaningful for a dropped connection).
        """
        record = self._live.pop(name, None)
        if record is None:
            return None
        until = self._monotonic() + self.linger if linger and self.linger > 0 else 0.0
        self._unused.pop(name, None)
        self._unused[name] = _Unused(record.entry, record.counter, record.fd, until)
        while len(self._unused) > max(self.max_unregistered, 0):
            self._unused.popitem(last=False)
        return record

    def owned_by(self, owner: Hashable) -> NodeRecord | None:
        """The live registration held by ``owner`` (a connection), if any."""
        for record in self._live.values():
            if record.owner is owner:
                return record
        return None

    # -- queries -----------------------------------------------------------------------
    def get(self, name: str) -> NodeRecord | None:
        """The live registration of ``name``."""
        return self._live.get(name)

    def lookup(self, name: str) -> NodeEntry | None:
        """What PORT_PLEASE2 answers: the live entry, else a lingering one, else None."""
        record = self._live.get(name)
        if record is not None:
            return record.entry
        old = self._unused.get(name)
        if old is not None and old.linger_until > self._monotonic():
            return old.entry
        return None

    def names(self) -> list[tuple[str, int]]:
        """(name, port) per live node, newest first (epmd prepends to its list)."""
        return [(r.name, r.entry.port) for r in reversed(self._live.values())]

    def lookup_prefix(self, prefix: str) -> list[NodeEntry]:
        """Live entries whose name starts with ``prefix``, sorted by name."""
        return sorted(
            (r.entry for r in self._live.values() if r.name.startswith(prefix)),
            key=lambda e: e.name,
        )

    def dump(self) -> tuple[list[tuple[str, int, int]], list[tuple[str, int, int]]]:
        """(active, unused) as ``(name, port, fd)`` rows, in epmd's DUMP order."""
        active = [(r.name, r.entry.port, r.fd) for r in reversed(self._live.values())]
        unused = [(u.entry.name, u.entry.port, u.fd) for u in self._unused.values()]
        return active, unused

    def __len__(self) -> int:
        return len(self._live)

    def __contains__(self, name: object) -> bool:
        return name in self._live

    # -- extra transports --------------------------------------------------------------
    def add_transport(self, entry: NodeEntry, owner: Hashable | None = None) -> int:
        """Attach another (protocol, port) to the live node ``entry.name``.

        Returns ADD_OK, ADD_NOT_REGISTERED, or ADD_DUPLICATE when that (protocol, port) is
        already the primary or an extra transport of the node.
        """
        record = self._live.get(entry.name)
        if record is None:
            return ADD_NOT_REGISTERED
        key = (entry.protocol, entry.port)
        if any((e.protocol, e.port) == key for e in record.transport_entries()):
            return ADD_DUPLICATE
        record.transports.append(Transport(entry, owner))
        return ADD_OK

    def remove_transport(self, name: str, protocol: int, port: int) -> Transport | None:
        """Detach one extra transport; returns it (None when there is no such transport)."""
        record = self._live.get(name)
        if record is None:
            return None
        for i, t in enumerate(record.transports):
            if (t.entry.protocol, t.entry.port) == (protocol, port):
                del record.transports[i]
                return t
        return None

    def remove_transports_of(self, owner: Hashable) -> int:
        """Detach every extra transport held by ``owner``; returns how many."""
        count = 0
        for record in self._live.values():
            kept = [t for t in record.transports if t.owner is not owner]
            count += len(record.transports) - len(kept)
            record.transports[:] = kept
        return count

    def transports(self, name: str) -> list[NodeEntry]:
        """Primary then extra transports of the live node ``name`` (empty when unknown)."""
        record = self._live.get(name)
        return record.transport_entries() if record is not None else []
