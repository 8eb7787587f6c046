"""Per-peer choices of a node: which advertised transport to dial, and the tick time.

Rules, in this order (the first that applies wins):

Transport (for dialling; an accepted connection keeps the transport the peer chose):
1. the first :class:`Rule` whose glob ``pattern`` (``fnmatch``, on the full node name)
   matches the peer and that sets ``transport``;
2. else the policy's ``default``.
``"tcp"`` dials only TCP entries; ``"unix"`` only Unix-socket entries (the connection fails
with a clear error when the peer advertises none); ``"auto"`` tries the peer's Unix sockets
first when the peer is on this host (its host part is one of ``local_hosts``), then TCP.
Routes come from what the peer's EPMD advertises (TRANSPORTS_REQ), else its PORT_PLEASE2
entry (a plain epmd: TCP only); within one kind they keep EPMD's order (primary first).
An advertised Unix socket is dialled only if its file is owned by one of ``unix_owners``
(default: this process's user): any local process may register with EPMD, and a node must
not be sent to write its handshake into some other program's socket.

Tick time (both dialled and accepted connections, applied when the connection comes up):
1. ``Node.set_net_ticktime(peer, t)`` (the node's ``ticktimes``);
2. ``ticktimes``: a callable ``name -> seconds | None``, or a mapping whose keys are exact
   names or globs (an exact key wins over globs; the first matching glob in order next);
3. the first matching Rule that sets ``ticktime``;
4. the node's ``net_ticktime``.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

from ..protocol.epmd import NodeEntry
from ..protocol.transports import Route, TcpEndpoint, UnixEndpoint, entry_route

TransportChoice = Literal["auto", "tcp", "unix"]
_CHOICES = ("auto", "tcp", "unix")

Ticktimes = Mapping[str, float] | Callable[[str], float | None]


@dataclass(frozen=True)
class Rule:
    """For peers whose name matches ``pattern`` (a glob such as ``"db*@*"``)."""

    pattern: str
    transport: TransportChoice | None = None
    ticktime: float | None = None

    def __post_init__(self) -> None:
        if self.transport is not None and self.transport not in _CHOICES:
            raise ValueError(f"transport must be one of {_CHOICES}, not {self.transport!r}")
        if self.ticktime is not None and not self.ticktime > 0:
            raise ValueError(f"ticktime must be positive, not {self.ticktime!r}")


def default_local_hosts() -> frozenset[str]:
    """Names this host answers to without asking DNS (lower case)."""
    name = socket.gethostname().lower()
    return frozenset({"localhost", "127.0.0.1", "::1", name, name.split(".")[0]})


class TransportPolicy:
    """Which transport to dial per peer, and per-peer tick times (see the module docstring)."""

    def __init__(
        self,
        rules: Iterable[Rule] = (),
        *,
        default: TransportChoice = "auto",
        ticktimes: Ticktimes | None = None,
        local_hosts: Iterable[str] | None = None,
        unix_owners: Iterable[int] | None = None,
    ) -> None:
        if default not in _CHOICES:
            raise ValueError(f"default must be one of {_CHOICES}, not {default!r}")
        self.rules = list(rules)
        self.default: TransportChoice = default
        self.ticktimes = ticktimes
        self.unix_owners = frozenset(unix_owners) if unix_owners is not None else frozenset({os.geteuid()})
        self.local_hosts = frozenset(
            h.lower() for h in (local_hosts if local_hosts is not None else default_local_hosts())
        )

    def add_local_host(self, host: str) -> None:
        """Also treat ``host`` as this host (a node adds the host part of its own name)."""
        self.local_hosts = self.local_hosts | {host.lower()}

    # -- transport --------------------------------------------------------------------------
    def transport_for(self, peer: str) -> TransportChoice:
        for rule in self.rules:
            if rule.transport is not None and fnmatchcase(peer, rule.pattern):
                return rule.transport
        return self.default

    def needs_advertised(self, peer: str) -> bool:
        """Whether the choice for ``peer`` can use more than the PORT_PLEASE2 entry."""
        return self.transport_for(peer) != "tcp"

    def is_local(self, host: str) -> bool:
        h = host.lower()
        return h in self.local_hosts or h.startswith("127.")

    def routes(self, peer: str, entries: Sequence[NodeEntry]) -> list[Route]:
        """The routes to try for ``peer``, best first, from its advertised entries."""
        host = peer.partition("@")[2]
        found = [r for r in (entry_route(e, host) for e in entries) if r is not None]
        tcp = [r for r in found if isinstance(r.endpoint, TcpEndpoint)]
        unix = [r for r in found if isinstance(r.endpoint, UnixEndpoint)]
        choice = self.transport_for(peer)
        if choice == "tcp":
            return tcp
        if choice == "unix":
            return unix
        return (unix if self.is_local(host) else []) + tcp

    # -- tick time --------------------------------------------------------------------------
    def ticktime_for(self, peer: str) -> float | None:
        """The tick time this policy sets for ``peer``, or None (the node's default)."""
        t = self.ticktimes
        if t is not None:
            if callable(t):
                value = t(peer)
                if value is not None:
                    return _positive(value, peer)
            else:
                if peer in t:
                    return _positive(t[peer], peer)
                for pattern, value in t.items():
                    if fnmatchcase(peer, pattern):
                        return _positive(value, peer)
        for rule in self.rules:
            if rule.ticktime is not None and fnmatchcase(peer, rule.pattern):
                return rule.ticktime
        return None


def _positive(value: float, peer: str) -> float:
    if not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"net_ticktime for {peer} must be a positive number, not {value!r}")
    return float(value)
