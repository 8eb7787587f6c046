"""Real erl nodes for tests (moved to :mod:`pynode.testing.erlnode`; re-exported)."""

from __future__ import annotations

from pynode.testing.erlnode import Epmd, ErlNode, free_port, stop_nodes, unique, wait_for_port  # noqa: F401
