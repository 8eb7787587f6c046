"""What a running node can tell about itself: per-connection counters, connection history,
and the ``pynode_status`` process that answers erl (and ``pynode status``) with them.

Reply format (an Erlang map; keys are atoms)::

    #{node => 'py@host', creation => integer(), port => integer(), hidden => boolean(),
      uptime_ms => integer(),
      connections => [#{peer => 'erl@host', hidden => boolean(), alive => boolean(),
                        net_ticktime => number(), connected_ms => integer(),
                        messages_in => N, messages_out => N, bytes_in => N, bytes_out => N,
                        ticks_in => N, ticks_out => N, connects => N, reconnects => N}],
      history => [#{peer => 'erl@host', connects => N, reconnects => N,
                    down_ms => integer() | undefined, down_reason => binary() | undefined}]}

``*_ms`` are milliseconds since the Unix epoch (``connected_ms``, ``down_ms``) or a duration
(``uptime_ms``). Messages count whole messages (a fragmented one once); bytes count what went
over the socket, packet headers and ticks included; ``reconnects`` is ``connects - 1``.

Ask it from erl: ``gen_server:call({pynode_status, 'py@host'}, status)``, or send
``{status, self()}`` and receive ``{pynode_status, 'py@host', Status}``.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ..term import Atom, ImproperList, Pid, Reference

if TYPE_CHECKING:  # pragma: no cover
    from .connection import Connection
    from .node import Node

STATUS_NAME = Atom("pynode_status")
"""The registered name of the status process on every pynode node."""

# Peers whose history is kept. OTP's net_kernel keeps none; a node serving many one-shot
# clients (each with a fresh dynamic name) must not grow without bound: the oldest
# disconnected peer is forgotten first.
MAX_HISTORY = 1024
# A down reason is kept as text of at most this many characters: a reason can be any term
# (net_kernel keeps no reasons, so there is no OTP value; this bound is ours).
MAX_REASON_CHARS = 2000

_STATUS = Atom("status")
_GEN_CALL = Atom("$gen_call")
_ALIAS = Atom("alias")


def _ms(t: float) -> int:
    return int(t * 1000)


class PeerHistory:
    """Connects and the last disconnect of each peer (bounded by MAX_HISTORY), and when the
    node was made (its uptime)."""

    __slots__ = ("_peers", "started")

    def __init__(self) -> None:
        self.started = time.monotonic()
        # peer -> [connects, down time or None, down reason or None]
        self._peers: dict[Atom, list[Any]] = {}

    def connected(self, peer: Atom) -> None:
        rec = self._peers.pop(peer, None) or [0, None, None]
        rec[0] += 1
        self._peers[peer] = rec  # most recently active last
        self._trim()

    def disconnected(self, peer: Atom, reason: Any) -> None:
        rec = self._peers.pop(peer, None) or [0, None, None]
        rec[1] = time.time()
        text = str(reason)
        rec[2] = text if len(text) <= MAX_REASON_CHARS else text[:MAX_REASON_CHARS] + "..."
        self._peers[peer] = rec
        self._trim()

    def _trim(self) -> None:
        while len(self._peers) > MAX_HISTORY:
            del self._peers[next(iter(self._peers))]

    def connects(self, peer: Atom) -> int:
        rec = self._peers.get(peer)
        return rec[0] if rec else 0

    def items(self) -> list[dict[Atom, Any]]:
        out = []
        for peer, (n, down, reason) in self._peers.items():
            out.append({
                Atom("peer"): peer,
                Atom("connects"): n,
                Atom("reconnects"): max(0, n - 1),
                Atom("down_ms"): None if down is None else _ms(down),
                Atom("down_reason"): None if reason is None else str(reason).encode("utf-8", "replace"),
            })
        return out


def connection_stats(conn: Connection, connects: int = 1) -> dict[Atom, Any]:
    """One connection's counters as the status map's entry."""
    return {
        Atom("peer"): conn.peer,
        Atom("hidden"): conn.hidden,
        Atom("alive"): conn.alive,
        Atom("net_ticktime"): conn.net_ticktime,
        Atom("connected_ms"): _ms(conn.connected_at),
        **{Atom(name): value for name, value in conn.counters().items()},
        Atom("connects"): connects,
        Atom("reconnects"): max(0, connects - 1),
    }


def node_status(node: Node) -> dict[Atom, Any]:
    """The node's status (the map ``pynode_status`` replies with; see the module docstring)."""
    history: PeerHistory = node.connector.history
    conns = [
        connection_stats(c, history.connects(peer))
        for peer, c in list(node.connector.connections.items())
    ]
    return {
        Atom("node"): node.name,
        Atom("creation"): node.creation,
        Atom("port"): node.port,
        Atom("hidden"): node.hidden,
        Atom("uptime_ms"): _ms(time.monotonic() - history.started),
        Atom("connections"): conns,
        Atom("history"): history.items(),
    }


def observations(node: Node) -> list[tuple[str, int, dict[str, str]]]:
    """Every counter as ``(metric name, value, attributes)``, e.g.
    ``("pynode.connection.bytes_in", 4096, {"peer": "erl@host", "node": "py@host"})``.

    For metrics exporters that pull: an OpenTelemetry ``ObservableCounter`` callback yields
    ``Observation(value, attributes)`` from these. Nothing runs unless the exporter asks, so
    it costs nothing when unused (there are no per-message hooks).
    """
    out: list[tuple[str, int, dict[str, str]]] = []
    history: PeerHistory = node.connector.history
    for peer, conn in list(node.connector.connections.items()):
        attrs = {"peer": str(peer), "node": str(node.name)}
        for name, value in conn.counters().items():
            out.append((f"pynode.connection.{name}", value, attrs))
        out.append(("pynode.connection.reconnects", max(0, history.connects(peer) - 1), attrs))
    return out


def install(node: Node) -> None:
    """Serve ``pynode_status`` on ``node`` (a name handler: no task, no mailbox)."""
    def handle(conn: Connection, from_pid: Pid, message: Any) -> None:
        if type(message) is not tuple:
            return
        if len(message) == 3 and message[0] == _GEN_CALL and type(message[1]) is tuple and len(message[1]) == 2:
            caller, tag = message[1]
            reply: Any = node_status(node) if message[2] == _STATUS else (Atom("error"), Atom("unknown_request"))
            if type(tag) is ImproperList and tag.items == (_ALIAS,) and type(tag.tail) is Reference:
                node.send_nowait(tag.tail, (tag, reply))
            elif type(caller) is Pid:
                node.send_nowait(caller, (tag, reply))
        elif len(message) == 2 and message[0] == _STATUS and type(message[1]) is Pid:
            node.send_nowait(message[1], (STATUS_NAME, node.name, node_status(node)))

    node.signals.serve_name(STATUS_NAME, handle)
