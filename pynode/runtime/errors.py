"""Every exception the runtime raises, in one module that imports nothing heavy: the anyio
Node and the blocking one-shot client (the ``pynode`` command) raise the same ones."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Any

    from ..term import Atom


def _show(term: Any) -> str:
    from ..term.syntax import format_term  # only when a message is made: keeps imports light

    return format_term(term)


# -- nodes and connections ---------------------------------------------------------------------


class NodeError(Exception):
    """A node-level failure: bad name, address in use, EPMD refused us..."""


class ConnectError(NodeError):
    """A connection to another node could not be set up (unreachable, refused, bad cookie)."""


class AuthError(ConnectError):
    """The peer and we do not share the cookie (the handshake digests did not match)."""


class ConnectTimeout(ConnectError, TimeoutError):
    """Setting up the connection took longer than allowed."""


class ConnectionLost(Exception):
    """The connection to a node went down (closed, timed out, or a protocol error)."""


class EpmdError(Exception):
    """EPMD could not be reached, refused the request, or answered nonsense."""


def epmd_failure(exc: BaseException, host: str, port: int, timeout: float | None) -> EpmdError:
    """One EpmdError that says where and why, for any way talking to EPMD fails (a timeout,
    a socket error, or a reply the protocol layer rejected)."""
    if isinstance(exc, TimeoutError):
        return EpmdError(f"EPMD at {host}:{port} did not answer within {timeout} s")
    if isinstance(exc, OSError):
        return EpmdError(f"cannot reach EPMD at {host}:{port}: {exc}")
    return EpmdError(f"bad reply from EPMD at {host}:{port}: {exc}")


# -- processes ---------------------------------------------------------------------------------


class MailboxClosed(Exception):
    """The mailbox was closed (by ``close``, an exit signal, or its node stopping)."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"mailbox closed: {reason!r}")


class ProcessExit(Exception):
    """Raise in a spawned handler to end its process with ``reason`` (like ``exit/1``)."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"process exit: {reason!r}")


class SpawnError(Exception):
    """A spawn request was refused; ``reason`` is erl's error atom (badopt, notsup...)."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"spawn failed: {reason!r}")


# -- RPC ---------------------------------------------------------------------------------------


class RpcError(Exception):
    """An RPC did not return a value."""


class RemoteError(RpcError):
    """The remote call raised: ``cls`` is throw, exit or error; ``stack`` is erl's stacktrace
    (for error), as erpc:call reports it."""

    def __init__(self, cls: Atom, reason: Any, stack: Any = None) -> None:
        self.cls = cls
        self.reason = reason
        self.stack = stack if stack is not None else []
        super().__init__(f"{cls}: {_show(reason)}")


class RpcTimeout(RpcError, TimeoutError):
    """No answer within the timeout. As erpc:call, pynode stops waiting and watching: the
    function may or may not be applied on the peer, and runs on if it was."""


class NoConnection(RpcError):
    """The connection to the node was lost or could not be made (erpc's noconnection)."""


class CallError(RpcError):
    """gen_server:call failed: the server died (``reason``) or was not there (noproc)."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"call failed: {_show(reason)}")


class ErlangThrow(Exception):
    """Raise in a Python RPC function to make the caller see ``throw(Term)``."""

    def __init__(self, term: Any) -> None:
        self.term = term
        super().__init__(repr(term))


class ErlangExit(Exception):
    """Raise in a Python RPC function to make the caller see ``exit(Reason)``."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(repr(reason))


class ErlangError(Exception):
    """Raise in a Python RPC function to make the caller see ``error(Reason)``."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(repr(reason))
