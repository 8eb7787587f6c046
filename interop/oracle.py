"""The erl codec oracle (moved to :mod:`pynode.testing.oracle`; re-exported)."""

from __future__ import annotations

from pynode.testing.oracle import ErlOracle, OracleError  # noqa: F401
