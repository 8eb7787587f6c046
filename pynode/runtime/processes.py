"""The processes of one node: pid allocation, mailboxes, registered names, aliases and
monitors, with one lookup from a pid, a name or an alias to its mailbox."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from ..term import Atom, Pid, Reference, make_pid
from .errors import NodeError

if TYPE_CHECKING:
    from .mailbox import Mailbox

# erts' pid layout for external pids: a 15-bit number and a 13-bit serial (NEW_PID_EXT)
_MAX_ID = 0x7FFF
_MAX_SERIAL = 0x1FFF


class ProcessTable:
    """Who lives on this node. Only the node changes it; everything else looks things up."""

    def __init__(self, name: Atom, creation: int) -> None:
        self.name = name
        self.creation = creation
        self._by_key: dict[int, Mailbox] = {}
        self.names: dict[Atom, Mailbox] = {}
        """Registered names (read it; change it with register and unregister)."""
        self.reserved: set[Atom] = set()  # names served by the node itself (net_kernel, rex)
        self.aliases: dict[Reference, Mailbox] = {}
        self.monitored: dict[Reference, Mailbox] = {}  # incoming monitors -> watched mailbox
        self.node_monitors: dict[Atom, list[Mailbox]] = {}
        self.sinks: dict[Any, tuple[Any, ...]] = {}
        """Queues plain sends from the network go into without a Python call (the codec's
        ``decode_dist_sends``): those of the open mailboxes nobody waits on, by pid key and
        by registered name. A mailbox puts its entries in and takes them out (Mailbox._sink)."""
        self.sink_lock = threading.Lock()  # a thread waiting in a receive changes them too
        self._next_id = 1
        self._serial = 0

    def rename(self, name: Atom, creation: int) -> None:
        """A dynamic node got its name: pids made from now on carry it."""
        self.name = name
        self.creation = creation

    # -- pids and mailboxes -----------------------------------------------------------------
    def new_pid(self) -> Pid:
        """A pid no live process has: once the numbers wrap, erts skips the taken ones too
        (a pid handed out without a mailbox, an erpc process that ran at once, must not
        lead erl's signals to a process that lives on)."""
        for _ in range(len(self._by_key) + 1):  # at most that many are taken
            i = self._next_id
            self._next_id += 1
            if self._next_id > _MAX_ID:
                self._next_id = 1
                self._serial = (self._serial + 1) & _MAX_SERIAL
            if i | (self._serial << 32) not in self._by_key:
                break
        return make_pid(self.name, i, self._serial, self.creation)

    def add(self, mb: Mailbox) -> None:
        self._by_key[mb.pid.id | (mb.pid.serial << 32)] = mb
        mb._sink()

    def remove(self, mb: Mailbox) -> None:
        """Forget a dead mailbox: its pid, its name and its aliases."""
        with self.sink_lock:
            self.sink(mb, False)
        self._by_key.pop(mb.pid.id | (mb.pid.serial << 32), None)
        if mb.name is not None and self.names.get(mb.name) is mb:
            del self.names[mb.name]
        for ref in mb.aliases:
            self.aliases.pop(ref, None)
        for lst in self.node_monitors.values():
            while mb in lst:
                lst.remove(mb)

    def sink(self, mb: Mailbox, on: bool) -> None:
        """Put ``mb``'s entries in :attr:`sinks` (``on``) or take them out; under sink_lock.
        A message is appended there while the queue is one short of ``warn_length``: the one
        that reaches it goes through ``_deliver``, which warns."""
        pid = mb.pid
        key = pid.id | (pid.serial << 32)
        q = mb._queue
        name = mb.name if mb.name is not None and self.names.get(mb.name) is mb else None
        sinks = self.sinks
        if on and self._by_key.get(key) is mb:
            limit = mb.warn_length - 1
            sinks[key] = (q, limit, pid.node, pid.creation)
            if name is not None:
                sinks[name] = (q, limit)
            return
        entry = sinks.get(key)
        if entry is not None and entry[0] is q:
            del sinks[key]
        if name is not None:
            entry = sinks.get(name)
            if entry is not None and entry[0] is q:
                del sinks[name]

    def mailboxes(self) -> list[Mailbox]:
        return list(self._by_key.values())

    # -- names ------------------------------------------------------------------------------
    def register(self, name: str, mb: Mailbox) -> None:
        a = Atom(name)
        if a in self.names or a in self.reserved:
            raise NodeError(f"name {name!r} is already registered on {self.name}")
        if mb.name is not None:
            raise NodeError(f"{mb!r} is already registered as {mb.name}")
        self.names[a] = mb
        mb.name = a
        mb._sink()

    def unregister(self, name: str) -> None:
        a = Atom(name)
        mb = self.names.get(a)
        if mb is not None:
            with self.sink_lock:
                self.sink(mb, False)
            del self.names[a]
            mb.name = None
            mb._sink()  # by pid still

    def whereis(self, name: str) -> Mailbox | None:
        return self.names.get(Atom(name))

    def registered(self) -> list[Atom]:
        return list(self.names)

    # -- the one lookup -----------------------------------------------------------------------
    def local(self, pid: Any) -> Mailbox | None:
        """The mailbox of a pid of this node (this incarnation), or None."""
        if type(pid) is not Pid or pid.node != self.name or pid.creation != self.creation:
            return None
        return self._by_key.get(pid.id | (pid.serial << 32))

    def resolve(self, dest: Any) -> Mailbox | None:
        """The mailbox a pid, a registered name (str or Atom) or an alias leads to, or None."""
        if type(dest) is Pid:
            return self.local(dest)
        if type(dest) is Reference:
            return self.aliases.get(dest)
        if isinstance(dest, str):
            return self.names.get(dest if type(dest) is Atom else Atom(dest))
        return None
