"""The anyio runtime: Node, connections, mailboxes."""

from __future__ import annotations

from .connection import Connection, ConnectionLost
from .cookie import CookieError, read_cookie
from .epmd import EpmdError, names, port_please
from .mailbox import Mailbox, MailboxClosed
from .node import AuthError, ConnectError, ConnectTimeout, Node, NodeError
from .rpc import (
    CallError,
    ErlangError,
    ErlangExit,
    ErlangThrow,
    GenServer,
    NoConnection,
    RemoteError,
    RpcError,
    RpcTimeout,
)
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
