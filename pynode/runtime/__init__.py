"""The anyio runtime: Node, connections, mailboxes (and the blocking one-shot client).

Names are imported on first use (PEP 562), so ``pynode.runtime.oneshot`` and
``pynode.runtime.errors`` load without anyio: the ``pynode`` command starts fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .connection import Connection, ConnectionLost
    from .cookie import CookieError, read_cookie
    from .epmd import names, port_please
    from .errors import (
        AuthError,
        CallError,
        ConnectError,
        ConnectTimeout,
        EpmdError,
        ErlangError,
        ErlangExit,
        ErlangThrow,
        NoConnection,
        NodeError,
        RemoteError,
        RpcError,
        RpcTimeout,
    )
    from .mailbox import Mailbox, MailboxClosed
    from .node import Node
    from .rpc import GenServer
    from .signals import ProcessExit, SpawnError

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
]

_ERRORS = (
    "AuthError", "CallError", "ConnectError", "ConnectTimeout", "EpmdError", "ErlangError",
    "ErlangExit", "ErlangThrow", "NoConnection", "NodeError", "RemoteError", "RpcError", "RpcTimeout",
)
_LAZY: dict[str, str] = {
    **dict.fromkeys(_ERRORS, "errors"),
    "Connection": "connection",
    "ConnectionLost": "connection",
    "CookieError": "cookie",
    "read_cookie": "cookie",
    "names": "epmd",
    "port_please": "epmd",
    "Mailbox": "mailbox",
    "MailboxClosed": "mailbox",
    "Node": "node",
    "GenServer": "rpc",
    "ProcessExit": "signals",
    "SpawnError": "signals",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import import_module

    value = getattr(import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
