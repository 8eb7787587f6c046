"""``pynode status NODE``: ask a running pynode node's ``pynode_status`` process for its
connections and counters, and print them as a table (or JSON)."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Any

from .runtime.errors import CallError, RpcTimeout
from .runtime.status import STATUS_NAME
from .term import Atom

if TYPE_CHECKING:  # pragma: no cover
    import argparse

_COLUMNS = ("peer", "state", "messages in/out", "bytes in/out", "ticks in/out", "reconnects", "connected since")


def _get(m: Any, key: str, default: Any = None) -> Any:
    return m.get(Atom(key), default) if isinstance(m, dict) else default


def _clock(ms: Any) -> str:
    if type(ms) is not int:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ms / 1000))


def format_status(status: Any) -> str:
    """The reply of ``pynode_status`` as a table, for people."""
    if not isinstance(status, dict):
        raise ValueError(f"not a pynode status reply: {status!r:.200}")
    node = _get(status, "node")
    head = (
        f"node {node}  creation {_get(status, 'creation')}  port {_get(status, 'port')}  "
        f"{'hidden' if _get(status, 'hidden') else 'visible'}  up {(_get(status, 'uptime_ms', 0) or 0) / 1000:.1f} s"
    )
    rows = [list(_COLUMNS)]
    for c in _get(status, "connections", []) or []:
        rows.append([
            str(_get(c, "peer")),
            ("up" if _get(c, "alive") else "down") + (" hidden" if _get(c, "hidden") else ""),
            f"{_get(c, 'messages_in')}/{_get(c, 'messages_out')}",
            f"{_get(c, 'bytes_in')}/{_get(c, 'bytes_out')}",
            f"{_get(c, 'ticks_in')}/{_get(c, 'ticks_out')}",
            str(_get(c, "reconnects")),
            _clock(_get(c, "connected_ms")),
        ])
    widths = [max(len(r[i]) for r in rows) for i in range(len(_COLUMNS))]
    lines = [head, ""]
    if len(rows) == 1:
        lines.append("no connections")
    else:
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    downs = [h for h in _get(status, "history", []) or [] if _get(h, "down_ms") is not None]
    if downs:
        lines += ["", "disconnects (last per peer):"]
        for h in downs:
            reason = _get(h, "down_reason")
            text = reason.decode("utf-8", "replace") if isinstance(reason, bytes) else str(reason)
            lines.append(f"  {_get(h, 'peer')}  {_clock(_get(h, 'down_ms'))}  "
                         f"connects {_get(h, 'connects')}  {text}")
    return "\n".join(lines)


def run_status(opts: argparse.Namespace) -> int:
    """The ``pynode status`` command (see cli.build_parser)."""
    from . import cli

    peer = cli.peer_name(opts.node)
    with cli._session(opts, peer) as node:
        try:
            reply = node.call((STATUS_NAME, peer), Atom("status"), opts.timeout)
        except CallError as e:
            if e.reason == Atom("noproc"):
                raise cli.RemoteFailure(f"{peer} has no {STATUS_NAME} process (not a pynode node?)") from e
            cls = cli.ConnectFailure if cli._is_nodedown(e.reason) else cli.RemoteFailure
            raise cls(f"status request to {peer} failed: {cli.format_term(e.reason)}") from e
        except RpcTimeout as e:
            raise cli.RemoteFailure(f"status request to {peer}: no reply within {opts.timeout} s") from e
    if opts.json:
        cli._emit(opts, reply)
    else:
        try:
            text = format_status(reply)
        except ValueError as e:
            raise cli.RemoteFailure(str(e)) from None
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
    return cli.EXIT_OK
