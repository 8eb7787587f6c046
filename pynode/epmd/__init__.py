"""The EPMD family on anyio: a drop-in EPMD server and clients of its extensions.

- :class:`EpmdServer`: EPMD as erts/epmd/src/epmd_srv.c does it (``python -m pynode.epmd``
  runs it like the ``epmd`` program), plus a Python API and extension requests.
- :mod:`pynode.protocol.epmd_ext`: the extension requests, sans-IO (prefix lookup, extra transports).
- the async clients of the extension requests live in :mod:`pynode.runtime.epmd`.
- :class:`PartitionProxy` (:mod:`pynode.epmd.proxy`): an EPMD stand-in whose look-ups lead
  through forwarders that can cut, delay or throttle links between named nodes.
- :mod:`pynode.epmd.core`, :mod:`pynode.epmd.registry`: request semantics and tables, no I/O.
"""

from __future__ import annotations

from ..protocol.epmd_ext import ExtensionUnsupported
from ..runtime.epmd import TransportRegistration, add_transport, lookup_prefix, transports
from .core import EpmdCore, Outcome, RequestFramer
from .proxy import PartitionProxy, ProxyError
from .registry import NodeRecord, Registry
from .server import EpmdServer, EpmdServerError, is_local_peer

__all__ = [
    "EpmdServer",
    "EpmdServerError",
    "PartitionProxy",
    "ProxyError",
    "EpmdCore",
    "Outcome",
    "RequestFramer",
    "Registry",
    "NodeRecord",
    "ExtensionUnsupported",
    "TransportRegistration",
    "add_transport",
    "lookup_prefix",
    "transports",
    "is_local_peer",
]
