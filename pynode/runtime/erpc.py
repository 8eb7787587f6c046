"""What erpc, rex and gen_server calls look like on the wire and what their answers mean.

Pure code (no I/O, no anyio) shared by the anyio runtime (:mod:`.rpc`) and the blocking
one-shot client (:mod:`.oneshot`), so both map an answer to the same value or exception.
"""

from __future__ import annotations

from ..term import Atom, Pid, Reference
from .errors import CallError, NoConnection, RemoteError, RpcError

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Any


RETURN = Atom("return")
THROW = Atom("throw")
EXIT = Atom("exit")
ERROR = Atom("error")
BADRPC = Atom("badrpc")
REX = Atom("rex")
CALL = Atom("call")
ERPC = Atom("erpc")
EXECUTE_CALL = Atom("execute_call")
NOCONNECTION = Atom("noconnection")
NODEDOWN = Atom("nodedown")
_EXIT_TAG = Atom("EXIT")


def execute_call_args(res_ref: Reference, module: str, function: str, args: Any) -> list[Any]:
    """The argument list of erpc:execute_call/4, spawned on the peer for one erpc:call."""
    return [res_ref, Atom(module), Atom(function), list(args)]


def erpc_result(down_reason: Any, res_ref: Reference) -> Any:
    """The value an erpc:execute_call process's exit reason (its 'DOWN') carries, or raise
    RemoteError (throw/exit/error, or a crash) / NoConnection, as erpc:call does."""
    r = down_reason
    if type(r) is tuple and len(r) >= 3 and r[0] == res_ref:
        if r[1] == RETURN:
            return r[2]
        if r[1] == ERROR and len(r) == 4:
            raise RemoteError(ERROR, r[2], r[3])
        if r[1] == ERROR and len(r) == 3 and type(r[2]) is tuple and len(r[2]) == 2 and r[2][0] == ERPC:
            # {Res, error, {erpc, R}}: execute_call's badarg for a malformed M, F or A
            raise RemoteError(ERROR, r[2])
        if r[1] in (THROW, EXIT):
            raise RemoteError(r[1], r[2])
    if r == NOCONNECTION:
        raise NoConnection("the connection to the node went down during the call")
    raise RemoteError(EXIT, r)


def spawn_failure(peer: str, reason: Any) -> RpcError:
    """The exception for a refused spawn of erpc:execute_call/4 (SPAWN_REPLY with an error)."""
    if reason == NOCONNECTION:
        return NoConnection("the connection to the node went down during the call")
    return RpcError(f"spawn of erpc:execute_call/4 on {peer} failed: {reason}")


def rex_request(caller: Pid, module: str, function: str, args: list[Any], group_leader: Pid) -> tuple[Any, ...]:
    """``{Caller, {call, M, F, A, GL}}`` for rex: the legacy call of ei and JInterface."""
    return (caller, (CALL, Atom(module), Atom(function), args, group_leader))


def is_rex_reply(message: Any) -> bool:
    """``{rex, Result}``: rex's answer to :func:`rex_request`."""
    return type(message) is tuple and len(message) == 2 and message[0] == REX


def rex_result(result: Any, peer: str) -> Any:
    """The value of a rex ``Result``, or raise for ``{badrpc, Reason}`` as erpc would."""
    if type(result) is tuple and len(result) == 2 and result[0] == BADRPC:
        r = result[1]
        if type(r) is tuple and len(r) == 2 and r[0] == _EXIT_TAG:
            raise RemoteError(EXIT, r[1])
        if r == NODEDOWN:
            raise NoConnection(f"{peer} is down")
        raise RemoteError(ERROR, r)
    return result


def node_of(dest: Any) -> Any:
    """The node of a gen_server call destination (a pid or ``(name, node)``)."""
    if type(dest) is Pid:
        return dest.node
    if type(dest) is tuple:
        return dest[1]
    return Atom("nonode@nohost")


def call_down_error(reason: Any, dest: Any) -> CallError:
    """gen_server:call's failure when the server's monitor fires with ``reason``."""
    if reason == NOCONNECTION:
        return CallError((NODEDOWN, node_of(dest)))
    return CallError(reason)
