"""The anyio runtime: Node, connections, mailboxes (and the blocking one-shot client).

Names are imported on first use (PEP 562), so ``pynode.runtime.oneshot`` and
``pynode.runtime.errors`` load without anyio: the ``pynode`` command starts fast.
"""

from __future__ import annotations

from .._lazy import lazy_exports

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from .connection import Connection
    from .cookie import CookieError, read_cookie
    from .epmd import names, port_please
    from .errors import (
        AuthError,
        CallError,
        ConnectError,
        ConnectionLost,
        ConnectTimeout,
        EpmdError,
        ErlangError,
        ErlangExit,
        ErlangThrow,
        MailboxClosed,
        NoConnection,
        NodeError,
        ProcessExit,
        RemoteError,
        RpcError,
        RpcTimeout,
        SpawnError,
    )
    from .mailbox import Mailbox
    from .node import Node
    from .rpc import GenServer
    from .tls import TlsConfig, TlsConfigError, TlsSides, read_optfile


__all__ = [
    "AuthError",
    "ConnectTimeout",
    "CallError",
    "ErlangError",
    "ErlangExit",
    "ErlangThrow",
    "GenServer",
    "NoConnection",
    "ProcessExit",
    "RemoteError",
    "RpcError",
    "RpcTimeout",
    "SpawnError",
    "ConnectError",
    "Connection",
    "ConnectionLost",
    "CookieError",
    "EpmdError",
    "Mailbox",
    "MailboxClosed",
    "Node",
    "NodeError",
    "names",
    "port_please",
    "read_cookie",
    "read_optfile",
    "TlsConfig",
    "TlsConfigError",
    "TlsSides",
]

_ERRORS = (
    "AuthError", "CallError", "ConnectError", "ConnectTimeout", "ConnectionLost", "EpmdError",
    "ErlangError", "ErlangExit", "ErlangThrow", "MailboxClosed", "NoConnection", "NodeError",
    "ProcessExit", "RemoteError", "RpcError", "RpcTimeout", "SpawnError",
)
_LAZY: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "errors"),
    "Connection": "connection",
    "CookieError": "cookie",
    "read_cookie": "cookie",
    "names": "epmd",
    "port_please": "epmd",
    "Mailbox": "mailbox",
    "Node": "node",
    "GenServer": "rpc",
    **dict.fromkeys(("TlsConfig", "TlsConfigError", "TlsSides", "read_optfile"), "tls"),
}

__getattr__, __dir__ = lazy_exports(__name__, _LAZY, globals(), __all__)
