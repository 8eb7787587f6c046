"""Discovery: keep a node connected to every node its sources find, round after round.

``async with node.discover(LocalEpmd(), include=["app*"]) as d: async for ev in d: ...``

Each round (every ``interval`` seconds, with jitter) asks the sources (see
:mod:`pynode.runtime.discovery_sources`) which nodes exist; those the name filter lets
through and that are not connected are dialled. A failed dial, or a lost connection to a
node that is still listed, is retried with capped exponential back-off (with jitter), so a
node that comes back is found again: libcluster's one-shot LocalEpmd leaves that to the user.
A visible node also connects to the visible nodes its visible peers are connected to
(``erlang:nodes()`` there), as erl's global does when a node joins a cluster; a hidden one
only when asked (``transitive=True``). The scheduling is a sans-IO :class:`Tracker` (time is
passed in), so its rules are tested without sockets or sleeps.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

import anyio

from ..term import Atom
from .discovery_sources import Address, Found, LocalEpmd, Source, SourceContext
from .errors import NodeError
from .naming import EPMD_TIMEOUT

if TYPE_CHECKING:
    from contextlib import AsyncExitStack

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

    from .node import Node

__all__ = ["Backoff", "Discovery", "Join", "Leave", "NameFilter", "Tracker"]

log = logging.getLogger("pynode.discovery")

# libcluster's polling strategies default to a 5 s polling interval.
DEFAULT_INTERVAL = 5.0
# Events a consumer may fall behind by before new ones are dropped (and logged), as node_events.
MAX_EVENTS = 1000
# Visible peers asked for erlang:nodes() at once in a round.
MAX_TRANSITIVE_PEERS = 64
# Dials in progress at once: a round that finds hundreds of nodes (or a peer whose
# erlang:nodes() lists thousands) does not open them all in the same instant.
MAX_PARALLEL_DIALS = 32
# Nodes one round may list. OTP sets no cluster size limit, but a full mesh of more than a
# few hundred nodes is already beyond what Erlang clusters run; a source or a peer that lists
# more is cut here (and logged) rather than trusted with our memory and sockets.
MAX_FOUND = 4096
_GONE = Atom("gone")


# -- events ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Join:
    """``node`` joined: connected (or, with ``connect=False``, appeared in a source)."""

    node: Atom

    def to_term(self) -> tuple[Atom, Atom]:
        return (Atom("join"), self.node)


@dataclass(frozen=True)
class Leave:
    """``node`` left: its connection went down (``reason``), or it vanished from the sources."""

    node: Atom
    reason: Any = _GONE

    def to_term(self) -> tuple[Atom, Atom, Any]:
        return (Atom("leave"), self.node, self.reason)


Event = Join | Leave


# -- names ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class NameFilter:
    """Which node names discovery may connect: any ``include`` pattern matches (or there is
    none) and no ``exclude`` pattern does. Patterns are globs matched against the whole
    ``name@host`` (fnmatch, case-sensitive as atoms are), or with ``regex`` regular
    expressions searched in it."""

    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    regex: bool = False
    _compiled: tuple[tuple[re.Pattern[str], ...], tuple[re.Pattern[str], ...]] | None = field(
        default=None, compare=False, repr=False
    )

    def __post_init__(self) -> None:
        object.__setattr__(self, "include", tuple(self.include))
        object.__setattr__(self, "exclude", tuple(self.exclude))
        if self.regex:
            try:
                compiled = (tuple(map(re.compile, self.include)), tuple(map(re.compile, self.exclude)))
            except re.error as e:
                raise ValueError(f"bad node name pattern: {e}") from None
            object.__setattr__(self, "_compiled", compiled)

    def _match(self, name: str, patterns: tuple[str, ...], which: int) -> bool:
        if self._compiled is not None:
            return any(p.search(name) for p in self._compiled[which])
        return any(fnmatchcase(name, p) for p in patterns)

    def __call__(self, node: str) -> bool:
        if self.include and not self._match(node, self.include, 0):
            return False
        return not self._match(node, self.exclude, 1)


# -- back-off -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Backoff:
    """Capped exponential back-off with jitter: after the n-th failure in a row wait
    ``min(cap, initial * factor**(n-1))``, less up to ``jitter`` of it at random (so nodes
    that lost the same peer do not all dial it at the same instant)."""

    initial: float = 0.5
    factor: float = 2.0
    # A lost node still listed by its EPMD is tried at least every 30 s; like OTP's
    # net_kernel connect retries, a few seconds of first attempts, then patience.
    cap: float = 30.0
    jitter: float = 0.5

    def __post_init__(self) -> None:
        if not (self.initial > 0 and self.factor >= 1 and self.cap >= self.initial and 0 <= self.jitter <= 1):
            raise ValueError(f"bad back-off {self!r}: need initial > 0, factor >= 1, cap >= initial, 0 <= jitter <= 1")

    def delay(self, failures: int, rand: Callable[[], float] = random.random) -> float:
        n = min(max(failures, 1), 64) - 1  # 2**63 is past any cap: no float overflow
        base = min(self.cap, self.initial * self.factor**n)
        return base * (1.0 - self.jitter * rand())


# -- the rules, without I/O -----------------------------------------------------------------
class Tracker:
    """Which nodes to dial when; what joined and left. Every method takes the time."""

    def __init__(self, backoff: Backoff | None = None, rand: Callable[[], float] = random.random) -> None:
        self.backoff = backoff or Backoff()
        self.rand = rand
        self.found: dict[Atom, Address | None] = {}
        self.up: set[Atom] = set()
        """Members: nodes connected that the filter lets through (a Join was reported)."""
        self.dialling: set[Atom] = set()
        self.failures: dict[Atom, int] = {}
        self.next_try: dict[Atom, float] = {}

    def observe(self, found: Found) -> tuple[list[Atom], list[Atom]]:
        """A round's result: the nodes that appeared and those that vanished. A vanished
        node is no longer dialled; one that (re)appears is dialled at once."""
        new = sorted(n for n in found if n not in self.found)
        gone = sorted(n for n in self.found if n not in found)
        for n in gone:
            self.failures.pop(n, None)
            self.next_try.pop(n, None)
        for n in new:
            self.failures.pop(n, None)
            self.next_try.pop(n, None)
        self.found = dict(found)
        return new, gone

    def due(self, now: float) -> list[Atom]:
        """The listed nodes to dial now: not connected, not being dialled, not backing off."""
        return sorted(
            n for n in self.found
            if n not in self.up and n not in self.dialling and self.next_try.get(n, now) <= now
        )

    def dial_started(self, node: Atom) -> None:
        self.dialling.add(node)

    def dial_failed(self, now: float, node: Atom) -> float:
        """Back off from ``node``; returns how long."""
        self.dialling.discard(node)
        n = self.failures[node] = self.failures.get(node, 0) + 1
        delay = self.backoff.delay(n, self.rand)
        self.next_try[node] = now + delay
        return delay

    def dial_done(self, node: Atom) -> None:
        self.dialling.discard(node)

    def node_up(self, node: Atom) -> bool:
        """``node`` (a member) is connected; True when that is news (report a Join)."""
        self.failures.pop(node, None)
        self.next_try.pop(node, None)
        if node in self.up:
            return False
        self.up.add(node)
        return True

    def node_down(self, now: float, node: Atom) -> bool:
        """The connection to ``node`` is gone; True when it was a member (report a Leave).
        While it is still listed it is redialled after the first back-off step."""
        if node not in self.up:
            return False
        self.up.discard(node)
        self.failures[node] = 0
        self.next_try[node] = now + self.backoff.delay(1, self.rand)
        return True

    def next_wakeup(self) -> float | None:
        """When the next back-off ends (None when nothing waits)."""
        times = [
            t for n, t in self.next_try.items()
            if n in self.found and n not in self.up and n not in self.dialling
        ]
        return min(times) if times else None


# -- the service ----------------------------------------------------------------------------
class Discovery:
    """The discovery service of one node (see the module docstring); ``async with`` runs it
    and ``async for event in discovery`` yields :class:`Join` and :class:`Leave` events."""

    def __init__(
        self,
        node: Node,
        sources: Sequence[Source] = (),
        *,
        interval: float = DEFAULT_INTERVAL,
        jitter: float = 0.2,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        regex: bool = False,
        backoff: Backoff | None = None,
        transitive: bool | None = None,
        connect: bool = True,
        timeout: float = EPMD_TIMEOUT,
        max_events: int = MAX_EVENTS,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"discovery interval must be positive, not {interval!r}")
        if not 0 <= jitter < 1:
            raise ValueError(f"discovery jitter must be in [0, 1), not {jitter!r}")
        self.node = node
        self.sources: list[Source] = list(sources) or [LocalEpmd()]
        self.interval = interval
        self.jitter = jitter
        self.filter = NameFilter(tuple(include), tuple(exclude), regex)
        self.transitive = (not node.hidden) if transitive is None else transitive
        self.connect = connect
        self.timeout = timeout
        self.rand = rand
        self.tracker = Tracker(backoff, rand)
        self.rounds = 0
        """Rounds completed (every source asked once)."""
        self._max_events = max_events
        self._from_sources: Found = {}
        self._via: dict[Atom, set[Atom]] = {}  # visible peer -> its erlang:nodes()
        self._addressed: dict[Atom, Address] = {}  # addresses we gave the node's connector
        self._dial_limiter: anyio.CapacityLimiter | None = None
        self._asking = 0  # erlang:nodes() look-ups in progress
        self._wake = anyio.Event()
        self._progress = anyio.Event()  # set (and replaced) when a round or a dial ends
        self._poll_at = 0.0
        self._tg: TaskGroup | None = None
        self._stack: AsyncExitStack | None = None
        self._send: MemoryObjectSendStream[Event] | None = None
        self._receive: MemoryObjectReceiveStream[Event] | None = None

    # -- lifetime --
    async def __aenter__(self) -> Discovery:
        from contextlib import AsyncExitStack

        if not self.node._started:
            raise NodeError("start the node (async with node) before discovery")
        self._send, self._receive = anyio.create_memory_object_stream[Event](self._max_events)
        async with AsyncExitStack() as stack:
            node_events = None
            if self.connect:  # only a connecting service follows connections
                node_events = await stack.enter_async_context(self.node.node_events())
            self._tg = await stack.enter_async_context(anyio.create_task_group())
            if node_events is not None:
                for peer in self.node.nodes():
                    self._on_up(peer)
                self._tg.start_soon(self._follow, node_events)
            self._tg.start_soon(self._run)
            self._stack = stack.pop_all()
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._tg is not None and self._stack is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._stack.__aexit__(None, None, None)
        finally:
            if self._send is not None:
                self._send.close()
        return None

    def __aiter__(self) -> MemoryObjectReceiveStream[Event]:
        assert self._receive is not None, "use the events inside 'async with'"
        return self._receive

    @property
    def members(self) -> set[Atom]:
        """The nodes that joined and have not left."""
        return set(self.tracker.up)

    @property
    def found(self) -> dict[Atom, Address | None]:
        """What the last round found (after the filter)."""
        return dict(self.tracker.found)

    async def settled(self, rounds: int = 1) -> None:
        """Wait until ``rounds`` rounds are done and no dial they started is in progress
        (bound it with a timeout: a dial may take up to ``timeout`` + the node's setup time)."""
        while self.rounds < rounds or self._asking or (self.connect and self.tracker.dialling):
            await self._progress.wait()

    def _notify(self) -> None:
        self._progress.set()
        self._progress = anyio.Event()

    def refresh(self) -> None:
        """Start a round now instead of at the end of the interval."""
        self._poll_at = 0.0
        self._wake.set()

    # -- events --
    def _emit(self, event: Event) -> None:
        assert self._send is not None
        log.info("discovery: %s", event)
        try:
            self._send.send_nowait(event)
        except anyio.WouldBlock:
            log.warning("discovery event listener is not keeping up; dropped %r", event)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            pass

    def _member(self, node: Atom) -> bool:
        return node != self.node.name and self.filter(node)

    def _on_up(self, peer: Atom) -> None:
        if self._member(peer) and self.tracker.node_up(peer):
            self._emit(Join(peer))
            if self.transitive and self._tg is not None:
                self._tg.start_soon(self._ask_peers, [peer])

    def _on_down(self, peer: Atom, reason: Any) -> None:
        self._via.pop(peer, None)
        if self.tracker.node_down(anyio.current_time(), peer):
            self._emit(Leave(peer, reason))
            # a lost node may have gone from its EPMD too: look again soon
            self._poll_at = min(self._poll_at, anyio.current_time() + self.tracker.backoff.initial)
            self._wake.set()

    async def _follow(self, node_events: MemoryObjectReceiveStream[Any]) -> None:
        async for ev in node_events:
            if ev[0] == "nodeup":
                self._on_up(ev[1])
            elif ev[0] == "nodedown":
                self._on_down(ev[1], ev[2])

    # -- rounds --
    def _context(self) -> SourceContext:
        node = self.node
        return SourceContext(
            node_host=node.name.partition("@")[2],
            epmd_host=node.epmd_host,
            epmd_port=node.epmd_port,
            timeout=self.timeout,
        )

    async def _ask_sources(self) -> Found:
        ctx = self._context()
        found: Found = {}
        results: list[Found] = [{} for _ in self.sources]

        async def one(i: int, source: Source) -> None:
            try:
                with anyio.fail_after(self.timeout * 4):
                    results[i] = await source.find(ctx)
            except Exception as e:  # one broken source must not stop the others
                log.warning("discovery: %r failed: %s", source, e)

        async with anyio.create_task_group() as tg:
            for i, s in enumerate(self.sources):
                tg.start_soon(one, i, s)
        for r in results:
            for n, addr in r.items():
                if found.get(n) is None:
                    found[n] = addr
        return found

    async def _ask_peers(self, peers: list[Atom]) -> None:
        """erlang:nodes() of the peers: the visible nodes global would connect us to."""
        limiter = anyio.CapacityLimiter(MAX_TRANSITIVE_PEERS)
        self._asking += 1

        async def one(peer: Atom) -> None:
            # (a hidden erl's nodes() is empty: all its connections are hidden)
            async with limiter:
                try:
                    nodes = await self.node.rpc(peer, "erlang", "nodes", [], timeout=self.timeout)
                except Exception as e:
                    log.debug("discovery: erlang:nodes() on %s failed: %s", peer, e)
                    return
            if isinstance(nodes, list) and peer in self.tracker.up:
                self._via[peer] = {n for n in nodes if isinstance(n, Atom)}

        try:
            async with anyio.create_task_group() as tg:
                for p in peers:
                    tg.start_soon(one, p)
            self._observe()
            self._start_dials()  # before anyone sees this look-up as settled
        finally:
            self._asking -= 1
            self._notify()

    def _observe(self) -> None:
        found: Found = {}
        for n, addr in self._from_sources.items():
            if self._member(n):
                found[n] = addr
        for nodes in self._via.values():
            for n in nodes:
                if self._member(n) and n not in found:
                    found[n] = None
        if len(found) > MAX_FOUND:
            log.warning("discovery: %d nodes found; connecting only the first %d", len(found), MAX_FOUND)
            found = dict(sorted(found.items())[:MAX_FOUND])
        addresses = self.node.connector.addresses
        for n, addr in found.items():
            if addr is not None:  # EPMD said where it listens now (a restart moves it)
                self.node.add_address(n, *addr)
                self._addressed[n] = addr
        new, gone = self.tracker.observe(found)
        for n in gone:  # an address only we knew would outlive the node: EPMD knows better
            if n in self._addressed and addresses.get(n) == self._addressed.pop(n):
                del addresses[n]
        if not self.connect:
            for n in new:
                self._emit(Join(n))
            for n in gone:
                self._emit(Leave(n, _GONE))

    async def _round(self) -> None:
        self._from_sources = await self._ask_sources()
        if self.transitive and self.connect:
            await self._ask_peers(sorted(self.tracker.up))
        else:
            self._observe()
        self.rounds += 1
        self._start_dials()  # before anyone sees the round as settled
        self._notify()

    def _start_dials(self) -> None:
        if not self.connect:
            return
        assert self._tg is not None
        for peer in self.tracker.due(anyio.current_time()):
            self.tracker.dial_started(peer)
            self._tg.start_soon(self._dial, peer)

    async def _dial(self, peer: Atom) -> None:
        if self._dial_limiter is None:
            self._dial_limiter = anyio.CapacityLimiter(MAX_PARALLEL_DIALS)
        try:
            async with self._dial_limiter:
                await self.node.connect(peer, timeout=self.timeout + self.node.setup_time)
        except Exception as e:
            delay = self.tracker.dial_failed(anyio.current_time(), peer)
            log.info("discovery: cannot connect to %s (%s); again in %.1f s", peer, e, delay)
        else:
            self.tracker.dial_done(peer)
            self._on_up(peer)  # the nodeup event may come later; both are idempotent
        finally:
            self._wake.set()
            self._notify()

    async def _run(self) -> None:
        assert self._tg is not None
        while True:
            now = anyio.current_time()
            if now >= self._poll_at:
                self._poll_at = float("inf")
                await self._round()
                spread = self.interval * self.jitter * (2 * self.rand() - 1)
                self._poll_at = min(self._poll_at, anyio.current_time() + self.interval + spread)
            self._start_dials()
            wake_at = self._poll_at
            retry = self.tracker.next_wakeup()
            if retry is not None:
                wake_at = min(wake_at, retry)
            with anyio.move_on_after(max(0.0, wake_at - anyio.current_time())):
                await self._wake.wait()
            self._wake = anyio.Event()
