"""The table ``pynode status`` prints from a pynode_status reply (interop/test_status_erl.py
asks a real node)."""

from __future__ import annotations

import pytest

from pynode.runtime.status import PeerHistory
from pynode.status_cli import format_status
from pynode.term import Atom


def a(text: str) -> Atom:
    return Atom(text)


def test_table_and_disconnects() -> None:
    status = {
        a("node"): a("py@h"), a("creation"): 7, a("port"): 4000, a("hidden"): True, a("uptime_ms"): 1500,
        a("connections"): [{
            a("peer"): a("erl@h"), a("alive"): True, a("hidden"): False, a("messages_in"): 3,
            a("messages_out"): 4, a("bytes_in"): 100, a("bytes_out"): 200, a("ticks_in"): 1,
            a("ticks_out"): 2, a("reconnects"): 1, a("connected_ms"): 0,
        }],
        a("history"): [{a("peer"): a("old@h"), a("connects"): 2, a("reconnects"): 1, a("down_ms"): 0,
                        a("down_reason"): b"old@h closed the connection"}],
    }
    lines = format_status(status).splitlines()
    assert lines[0] == "node py@h  creation 7  port 4000  hidden  up 1.5 s"
    assert lines[2].split()[:2] == ["peer", "state"]
    assert lines[3].split()[:6] == ["erl@h", "up", "3/4", "100/200", "1/2", "1"]
    assert lines[-2] == "disconnects (last per peer):"
    assert lines[-1].startswith("  old@h ") and lines[-1].endswith("connects 2  old@h closed the connection")


def test_no_connections_and_bad_replies() -> None:
    assert "no connections" in format_status({a("node"): a("py@h"), a("connections"): []})
    with pytest.raises(ValueError):
        format_status((a("error"), a("unknown_request")))


def test_peer_history_counts_reconnects() -> None:
    h = PeerHistory()
    p = a("erl@h")
    assert h.connects(p) == 0
    h.connected(p)
    h.disconnected(p, "gone")
    h.connected(p)
    (item,) = h.items()
    assert (item[a("connects")], item[a("reconnects")], item[a("down_reason")]) == (2, 1, b"gone")
    h.disconnected(p, "x" * 100_000)  # any term can be a reason: kept bounded
    (item,) = h.items()
    assert len(item[a("down_reason")]) < 2100
