"""The partition proxy's public face: ``from pynode.proxy import PartitionProxy``.

See :mod:`pynode.epmd.proxy` (the implementation) and ``pynode proxy --help``.
"""

from __future__ import annotations

from .epmd.proxy import (
    DEFAULT_MAX_PENDING,
    DEFAULT_PENDING_TIMEOUT,
    Link,
    PartitionProxy,
    ProxyError,
    Shape,
    control_request,
    node_matches,
)

__all__ = [
    "PartitionProxy",
    "Link",
    "Shape",
    "ProxyError",
    "control_request",
    "node_matches",
    "DEFAULT_PENDING_TIMEOUT",
    "DEFAULT_MAX_PENDING",
]
