"""The EPMD family on anyio: a drop-in EPMD server and clients of its extensions.

- :class:`EpmdServer`: EPMD as erts/epmd/src/epmd_srv.c does it (``python -m pynode.epmd``
  runs it like the ``epmd`` program), plus a Python API and extension requests.
- :mod:`pynode.epmd.ext`: the extension requests, sans-IO (prefix lookup, extra transports).
- :mod:`pynode.epmd.client`: async clients of the extension requests.
- :mod:`pynode.epmd.core`, :mod:`pynode.epmd.registry`: request semantics and tables, no I/O.
"""

from __future__ import annotations

from .client import TransportRegistration, add_transport, lookup_prefix, transports
from .core import EpmdCore, Outcome, RequestFramer
from .ext import ExtensionUnsupported
from .registry import NodeRecord, Registry
from .server import EpmdServer, EpmdServerError, is_local_peer

__all__ = [
    "EpmdServer",
    "EpmdServerError",
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
