"""Test real Erlang clusters from Python: erl nodes, pynode nodes, the partition proxy.

The pytest plugin (:mod:`pynode.testing.pytest_plugin`, entry point ``pytest11``) gives
fixtures over :class:`~pynode.testing.cluster.Cluster`; the pieces are usable without pytest.
"""

from __future__ import annotations

from .cluster import Cluster, ClusterNode, ErlClusterNode, ProxyThread, PyClusterNode, wait_for
from .erlnode import Epmd, ErlNode, free_port, unique
from .otp import Otp, find_otp

__all__ = [
    "Cluster",
    "ClusterNode",
    "ErlClusterNode",
    "PyClusterNode",
    "ProxyThread",
    "wait_for",
    "Epmd",
    "ErlNode",
    "free_port",
    "unique",
    "Otp",
    "find_otp",
]
