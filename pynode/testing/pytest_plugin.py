"""The pytest plugin of pynode (entry point ``pytest11``): fixtures for real Erlang clusters.

- ``erl_cluster``: a factory, ``erl_cluster(erl=3, py=2, net_ticktime=4)`` starts that many
  real erl nodes and pynode nodes on private names and cookie, behind their own partition
  proxy, and returns a :class:`~pynode.testing.cluster.Cluster` (partition, heal, shape,
  wait_split, wait_full_mesh, status...). Every cluster it made is stopped after the test,
  whatever happened.
- ``partition_proxy``: a running :class:`~pynode.epmd.proxy.PartitionProxy` alone (in a thread).
- ``wait_for``: :func:`~pynode.testing.cluster.wait_for`, bounded polling for a condition.

``--pynode-erl PATH`` (or ``$PYNODE_ERL``) picks the ``erl`` to run; default: ``erl`` on PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from .cluster import Cluster, ProxyThread


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("pynode", "pynode Erlang cluster fixtures")
    group.addoption(
        "--pynode-erl",
        default=None,
        metavar="PATH",
        help="erl for the erl_cluster fixture (default: $PYNODE_ERL, else erl on PATH)",
    )


@pytest.fixture
def erl_cluster(request: pytest.FixtureRequest) -> Iterator[Callable[..., Cluster]]:
    """Factory of clusters (see :class:`~pynode.testing.cluster.Cluster`); all stopped after."""
    from .cluster import Cluster

    made: list[Cluster] = []

    def make(erl: int = 0, py: int = 0, **kwargs: Any) -> Cluster:
        if kwargs.get("otp") is None:
            kwargs["otp"] = request.config.getoption("--pynode-erl")
        cluster = Cluster(erl, py, **kwargs)
        made.append(cluster)
        return cluster

    try:
        yield make
    finally:
        for cluster in reversed(made):
            cluster.close()


@pytest.fixture
def partition_proxy() -> Iterator[ProxyThread]:
    """A partition proxy on free loopback ports (``.port``, ``.control_port``), stopped after."""
    from .cluster import ProxyThread

    proxy = ProxyThread()
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def wait_for() -> Callable[..., Any]:
    """``wait_for(condition, timeout=30, what="...")``: poll until true, else TimeoutError."""
    from .cluster import wait_for as _wait_for

    return _wait_for
