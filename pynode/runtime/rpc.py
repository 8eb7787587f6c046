"""RPC both ways (erpc and the legacy rex protocol) and gen_server calls.

Out: ``rpc`` spawns erpc:execute_call/4 on the peer with a monitor, as erpc:call does, and
falls back to rex for peers without SPAWN. In: Python callables registered by module and
function name answer erpc:call / rpc:call and the rex protocol; Python exceptions become
Erlang errors whose stack is the Python traceback.
"""

from __future__ import annotations

import inspect
import logging
import traceback
from collections.abc import Callable, Coroutine
from types import ModuleType
from typing import TYPE_CHECKING, Any

import anyio

from ..protocol import control as C
from ..term import Atom, ImproperList, Pid, Reference
from .connection import Connection
from .erpc import (
    call_down_error,
    execute_call_args,
    is_rex_reply,
    rex_request,
    rex_result,
    spawn_failure,
)
from .erpc import erpc_result as _result
from .errors import (  # the exception classes moved there; still importable from here
    CallError as CallError,
)
from .errors import (
    ConnectError,
    ConnectionLost,
    ErlangError,
    ErlangExit,
    ErlangThrow,
    NoConnection,
    ProcessExit,
    RpcError,
    RpcTimeout,
)
from .errors import (
    RemoteError as RemoteError,
)
from .signals import DOWN, MONITOR_OPT, PROCESS, RUN_AS_TASK, SPAWN_ERROR, Later

if TYPE_CHECKING:
    from .callbox import CallBox
    from .mailbox import Mailbox
    from .node import Node

log = logging.getLogger("pynode.rpc")

RETURN = Atom("return")
THROW = Atom("throw")
EXIT = Atom("exit")
ERROR = Atom("error")
UNDEF = Atom("undef")
BADRPC = Atom("badrpc")
REX = Atom("rex")
CALL = Atom("call")
CAST = Atom("cast")
GEN_CALL = Atom("$gen_call")
GEN_CAST = Atom("$gen_cast")
ALIAS = Atom("alias")
_SPAWN_REQUEST = C.SpawnRequest.OP
ERPC = Atom("erpc")
EXECUTE_CALL = Atom("execute_call")
_EXECUTE_CALL_MFA = (ERPC, EXECUTE_CALL, 4)  # erpc:execute_call/4, which every call spawns
_MONITOR_ONLY = [MONITOR_OPT]  # its spawn options (encoded, never changed)


# -- calling out ---------------------------------------------------------------------------------


def rpc(
    node: Node,
    peer: str,
    module: str,
    function: str,
    args: list[Any] | tuple[Any, ...] = (),
    *,
    timeout: float | None = None,
    capture_output: bool = False,
) -> Coroutine[Any, Any, Any]:
    """Call ``module:function(*args)`` on ``peer``: await this for its value (erpc:call/5).

    With ``capture_output`` the result is ``(value, text)``: what the call printed through
    its group leader (like erl_call -fetch_stdout).

    Not a coroutine function itself: over a live connection the call's own coroutine comes
    back, one frame fewer to make and resume on each call.
    """
    conn = node.connector.connections.get(peer if type(peer) is Atom else Atom(peer))  # (.get's work)
    if conn is not None and not conn.alive:
        conn = None
    elif conn is not None and conn.spawns and not capture_output:
        return _erpc_call(node, conn, peer, module, function, args, timeout)
    return _rpc(node, conn, peer, module, function, args, timeout, capture_output)


async def _rpc(
    node: Node,
    conn: Connection | None,
    peer: str,
    module: str,
    function: str,
    args: list[Any] | tuple[Any, ...],
    timeout: float | None,
    capture_output: bool,
) -> Any:
    """rpc's other cases: a connection to make, output to capture, a peer without SPAWN."""
    if conn is None:
        try:
            conn = await node.connect(peer)
        except ConnectError as e:
            raise NoConnection(str(e)) from e
    if not conn.spawns:
        if capture_output:
            raise RpcError(f"{peer} does not support spawn_request; cannot capture output")
        return await _rex_call(node, peer, module, function, list(args), timeout)
    if not capture_output:
        return await _erpc_call(node, conn, peer, module, function, args, timeout)
    mb = node.mailbox()
    gl: Pid | None = None
    out: list[str] = []
    gl_mb = None
    if capture_output:
        gl, out, gl_mb = node.capture_group_leader()
    req: Reference | None = None
    try:
        # erpc:call's way: spawn with a monitor, wait for nothing but the 'DOWN' (or an error)
        req, res_ref = erpc_request(node, conn, mb, module, function, args, group_leader=gl)
        try:
            msg = await mb.receive(timeout=timeout, match=erpc_answer(req))
        except TimeoutError:
            await erpc_give_up(node, mb, req)
            raise RpcTimeout(f"no answer from {peer} within {timeout} s") from None
        value = erpc_value(peer, msg, res_ref)
        if capture_output:
            # io requests were answered before the process ended; the text is all here
            return value, "".join(out)
        return value
    finally:
        if req is not None:
            node.signals.forget_spawn(req)  # a call given up before its SPAWN_REPLY
        mb.close()
        if gl_mb is not None:
            gl_mb.close()


async def _erpc_call(
    node: Node,
    conn: Connection,
    peer: str,
    module: str,
    function: str,
    args: list[Any] | tuple[Any, ...],
    timeout: float | None,
) -> Any:
    """erpc:call from the node's call box: the answer comes straight to this task. (The
    answer read here costs no more frames than these: the wait through the call box is
    :func:`_wait_answer`.)"""
    box = node._call_box
    if box is None or box._closed_reason is not None:  # (call_box's check, without its frames)
        box = node.call_box()
    # spawn_async's request (erpc_request's work), inline: every call comes here, and what
    # runs between one call's answer and the next request decides, with erl on another
    # CPU, whether its schedulers are still awake (benchmarks/README.md, rpc_floor.py).
    # The SPAWN_REPLY is registered by _wait_answer, unless this task reads the answer.
    # One ref is the request's id (the monitor's too) and tags the result in the exit
    # reason (erpc:call makes one of each): each only needs to be a ref nobody else has.
    req = node.make_ref()
    try:
        conn.send_nowait(
            (_SPAWN_REQUEST, req, box.pid, node.group_leader, _EXECUTE_CALL_MFA, _MONITOR_ONLY),
            [req, module if type(module) is Atom else Atom(module),
             function if type(function) is Atom else Atom(function), list(args)],
        )
    except ConnectionLost as e:  # the socket went; the connection is not down yet
        raise NoConnection(str(e)) from e
    spin = node.busy_wait if timeout is None else min(node.busy_wait, timeout)
    try:
        msg, read = _take_answer(conn, box.pid, req, spin)
        if msg is None:
            msg = await _wait_answer(node, conn, box, peer, req, read, spin, timeout)
    except BaseException:  # given up (cancelled, timed out): stop watching the call
        box.forget(req)
        _drop_monitor(node, box, req)
        raise
    if msg[0] is SPAWN_ERROR:  # erpc_value's work, inline
        raise spawn_failure(peer, msg[2])
    return _result(msg[4], req)


async def _wait_answer(
    node: Node,
    conn: Connection,
    box: CallBox,
    peer: str,
    req: Reference,
    read: bytes | bytearray,
    spin: float,
    timeout: float | None,
) -> Any:
    """The answer to call ``req`` when :func:`_take_answer` did not read it: through the call
    box (``read``, the bytes it read, are handed to the connection once the call waits)."""
    try:
        try:
            node.signals.report_spawn(req, box, conn.peer)
            waiter = box.expect(req)  # before any answer: it is handled by this loop, later
        finally:
            conn.channel.feed(read)  # (bytes take_inline read: they may hold the answer)
        if not waiter.done():  # the answer read here, on this task, when it comes soon
            conn.channel.read_inline(waiter.done, spin)
        try:
            return box.answered(req, waiter) if waiter.done() else await box.answer(req, waiter, timeout)
        except TimeoutError:
            await erpc_give_up(node, box, req)
            raise RpcTimeout(f"no answer from {peer} within {timeout} s") from None
    finally:
        node.signals.forget_spawn(req)  # a call given up before its SPAWN_REPLY


def _take_answer(conn: Connection, box: Pid, req: Reference, spin: float) -> tuple[Any, bytes | bytearray]:
    """The answer to call ``req`` from ``box``, when this task reads it off the socket itself
    within ``spin`` seconds (its 'DOWN' message or spawn error; else None), and the bytes
    read that are not the answer's. An answer recognised there skips the receive path
    (framing, signal handlers, the spawn and monitor tables, the call box): 10-15% of a
    round trip to an erl on the same CPU (benchmarks/README.md); it is recognised in one
    codec call per read (``peek_spawn_answer``). Bytes returned must go to
    ``conn.channel.feed`` once the call is registered (nothing else has read them)."""
    found: list[Any] = []
    enough = None if conn.thread_left_something() else conn.dist.spawn_answer_reader(req, box, found)
    if enough is None:  # bytes fed before are still buffered: the connection goes first
        return None, b""
    read = conn.channel.take_inline(spin, enough)
    if not found or found[0] is None:
        return None, read
    pos, pid, reason = found[0]
    conn.taken(pos, 1 if pid is None else 2)
    if pos < len(read):  # what follows the answer in the last read (the start of a packet)
        conn.channel.feed(read[pos:])  # is the connection's
    if pid is None:  # the spawn failed: the reason is an atom
        return (SPAWN_ERROR, req, reason), b""
    return (DOWN, req, PROCESS, pid, reason), b""


def _drop_monitor(node: Node, mb: Mailbox, req: Reference) -> None:
    """Drop ``mb``'s monitor ``req`` now (no await: this runs while a task is cancelled)."""
    target = mb.monitors.pop(req, None)
    if target is not None:
        node.signals._demonitor_remote(mb.pid, req, target)


def erpc_request(
    node: Node,
    conn: Connection,
    mb: Mailbox,
    module: str,
    function: str,
    args: list[Any] | tuple[Any, ...],
    *,
    group_leader: Pid | None = None,
    send: Callable[[Any, Any], None] | None = None,
) -> tuple[Reference, Reference]:
    """Send erpc:call's spawn request from ``mb``: (request ref, result ref). The answer
    comes to ``mb`` (see :func:`erpc_answer`); ``send`` as for ``Signals.spawn_async`` (a
    thread-safe one lets a thread other than the loop's call this)."""
    res_ref = node.make_ref()
    req = node.signals.spawn_async(
        conn, mb, ERPC, EXECUTE_CALL, execute_call_args(res_ref, module, function, args),
        group_leader=group_leader, send=send,
    )
    return req, res_ref


def erpc_answer(req: Reference) -> Callable[[Any], bool]:
    """A receive match for the answer to request ``req``: its 'DOWN' or its spawn error."""

    def answer(m: Any) -> bool:
        return type(m) is tuple and len(m) >= 3 and m[1] == req and (
            (m[0] == DOWN and len(m) == 5) or m[0] is SPAWN_ERROR
        )

    return answer


def erpc_value(peer: str, msg: Any, res_ref: Reference) -> Any:
    """The call's value from its answer; raises as erpc:call does."""
    if msg[0] is SPAWN_ERROR:
        raise spawn_failure(peer, msg[2])
    return _result(msg[4], res_ref)


async def erpc_give_up(node: Node, mb: Mailbox, req: Reference) -> None:
    """After a timeout: stop watching the call, as erpc:call abandons it (it may run on, and
    its answer, if it comes, is dropped); an answer that came meanwhile is dropped from ``mb``."""
    await node.signals.demonitor(mb, req)
    answer = erpc_answer(req)
    while True:
        try:
            mb.receive_nowait(answer)
        except anyio.WouldBlock:
            return


async def _rex_call(
    node: Node, peer: str, module: str, function: str, args: list[Any], timeout: float | None
) -> Any:
    """The legacy way (ei, JInterface): {Self, {call, M, F, A, GL}} to rex."""
    mb = node.mailbox()
    try:
        await mb.send((REX, peer), rex_request(mb.pid, module, function, args, node.group_leader))
        try:
            reply = await mb.receive(timeout=timeout, match=is_rex_reply)
        except TimeoutError:
            raise RpcTimeout(f"no answer from {peer} within {timeout} s") from None
    finally:
        mb.close()
    return rex_result(reply[1], peer)


async def cast(node: Node, peer: str, module: str, function: str, args: list[Any] | tuple[Any, ...] = ()) -> None:
    """erpc:cast/4: run ``module:function(*args)`` on ``peer``; no answer, no waiting."""
    conn = await node.connect(peer)
    if not conn.spawns:
        await node.send((REX, peer), (GEN_CAST, (CAST, Atom(module), Atom(function), list(args), node.group_leader)))
        return
    mb = node.mailbox()
    try:
        await node.signals.spawn_request(
            mb, peer, "erlang", "apply", [Atom(module), Atom(function), list(args)], reply=False
        )
    finally:
        mb.close()


async def multicall(
    node: Node,
    peers: list[str],
    module: str,
    function: str,
    args: list[Any] | tuple[Any, ...] = (),
    *,
    timeout: float | None = None,
) -> list[tuple[str, Any]]:
    """erpc:multicall: one ``('ok', value)`` or ``('error', exception)`` per peer, in order."""
    results: list[tuple[str, Any]] = [("error", RpcTimeout("no answer"))] * len(peers)

    async def one(i: int, peer: str) -> None:
        try:
            results[i] = ("ok", await rpc(node, peer, module, function, args, timeout=timeout))
        except RpcError as e:
            results[i] = ("error", e)

    async with anyio.create_task_group() as tg:
        for i, peer in enumerate(peers):
            tg.start_soon(one, i, peer)
    return results


# -- gen_server ------------------------------------------------------------------------------------


async def gen_call(node: Node, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
    """gen_server:call/3 to a pid, a local name, or (name, node); the reply comes to an alias
    as OTP 24+ servers send it (older servers reply to the pid, which works too)."""
    mb = node.mailbox()
    try:
        mref = await mb.monitor(dest)
        alias = mb.alias()
        tag = ImproperList([ALIAS], alias)
        try:
            await mb.send(dest, (GEN_CALL, (mb.pid, tag), request))
        except Exception as e:
            raise CallError(Atom("noproc")) from e

        try:
            reply = await mb.receive(timeout=timeout, match=gen_call_answer(tag, mref))
        except TimeoutError:
            raise RpcTimeout(f"gen_server call to {dest!r} timed out after {timeout} s") from None
        return gen_call_value(reply, dest)
    finally:
        mb.close()


def gen_call_answer(tag: Any, mref: Reference) -> Callable[[Any], bool]:
    """A receive match for a gen_server call's answer: the reply to ``tag``, or the 'DOWN'
    of monitor ``mref``."""

    def answer(m: Any) -> bool:
        return type(m) is tuple and (
            (len(m) == 2 and m[0] == tag) or (len(m) == 5 and m[0] == DOWN and m[1] == mref)
        )

    return answer


def gen_call_value(reply: Any, dest: Any) -> Any:
    """The reply's value; CallError when the answer is the server's 'DOWN'."""
    if len(reply) == 5:
        raise call_down_error(reply[4], dest)
    return reply[1]


async def gen_cast(node: Node, dest: Any, request: Any) -> None:
    """gen_server:cast/2."""
    try:
        await node.send(dest, (GEN_CAST, request))
    except Exception as e:  # cast never fails in Erlang
        log.debug("cast to %r dropped: %s", dest, e)


async def gen_reply(node: Node, from_: Any, reply: Any) -> None:
    """gen_server:reply/2 for a ``From`` tuple, to the alias when the caller used one."""
    pid, tag = from_
    if type(tag) is ImproperList and tag.items == (ALIAS,) and type(tag.tail) is Reference:
        await node.send(tag.tail, (tag, reply))
    else:
        await node.send(pid, (tag, reply))


class GenServer:
    """A Python gen_server: override ``handle_call`` / ``handle_cast`` / ``handle_info``.

    ``handle_call`` returns the reply (sync or async); raising ends the server, as a crash
    would in Erlang, and the caller sees the reason.
    """

    node: Node
    mailbox: Mailbox

    async def handle_call(self, request: Any, from_: tuple[Pid, Any]) -> Any:
        raise ErlangExit((Atom("bad_call"), request))

    async def handle_cast(self, request: Any) -> None:
        return None

    async def handle_info(self, message: Any) -> None:
        return None

    async def serve(self, node: Node, mailbox: Mailbox) -> None:
        """The receive loop; run it in a task (``node.start_server`` does)."""
        self.node = node
        self.mailbox = mailbox
        reason: Any = Atom("normal")
        try:
            async for msg in mailbox:
                if type(msg) is tuple and len(msg) == 3 and msg[0] == GEN_CALL and type(msg[1]) is tuple:
                    reply = await _maybe_await(self.handle_call(msg[2], msg[1]))
                    await gen_reply(node, msg[1], reply)
                elif type(msg) is tuple and len(msg) == 2 and msg[0] == GEN_CAST:
                    await _maybe_await(self.handle_cast(msg[1]))
                else:
                    await _maybe_await(self.handle_info(msg))
        except ErlangExit as e:
            reason = e.reason
        except Exception as e:
            log.exception("gen_server %r crashed", self)
            reason = _error_reason(e)
        mailbox.close(reason)


async def _maybe_await(x: Any) -> Any:
    if inspect.isawaitable(x):
        return await x
    return x


# -- serving calls in ------------------------------------------------------------------------------


def _python_stack(exc: BaseException) -> list[Any]:
    """The traceback as an Erlang stacktrace: [{Module, Function, Arity, [{file, F}, {line, L}]}]."""
    stack = []
    for fs in reversed(traceback.extract_tb(exc.__traceback__)):
        module = fs.filename.rsplit("/", 1)[-1].removesuffix(".py")
        stack.append(
            (Atom(module), Atom(fs.name), 0, [(Atom("file"), list(fs.filename.encode())), (Atom("line"), fs.lineno or 0)])
        )
    return stack


def _error_reason(exc: BaseException) -> Any:
    return (Atom("python_error"), type(exc).__name__.encode(), str(exc).encode("utf-8", "replace"))


def public_functions(pymodule: ModuleType) -> dict[str, Callable[..., Any]]:
    """The functions a module serves to erl: public, and defined in the module itself."""
    return {
        n: f
        for n, f in vars(pymodule).items()
        if not n.startswith("_") and inspect.isfunction(f) and f.__module__ == pymodule.__name__
    }


# results that are never awaitable: most of them, and inspect.isawaitable is not free
_PLAIN = frozenset({int, float, str, bytes, bool, type(None), tuple, list, dict, Atom, Pid, Reference})


class RpcServer:
    """Python functions served to Erlang under module/function names."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.functions: dict[tuple[Atom, Atom], Callable[..., Any]] = {}
        # per function: is it a coroutine function (inspect's answer costs more than the call)
        self._coroutine: dict[tuple[Atom, Atom], tuple[Callable[..., Any], bool]] = {}

    def register(self, module: str, function: str, fn: Callable[..., Any]) -> None:
        self.functions[(Atom(module), Atom(function))] = fn

    def register_module(self, pymodule: ModuleType, name: str | None = None) -> list[str]:
        """Serve every public function of ``pymodule`` (as module ``name``); their names."""
        mod = name or pymodule.__name__.rsplit(".", 1)[-1]
        served = public_functions(pymodule)
        for attr, fn in served.items():
            self.register(mod, attr, fn)
        return list(served)

    async def apply(self, module: Any, function: Any, args: list[Any]) -> tuple[Atom, Any, Any]:
        """Run a registered function: (return, Value, _) or (Class, Reason, Stack)."""
        outcome = self.apply_now(module, function, args)
        if type(outcome) is tuple:
            return outcome
        try:
            value = await outcome
        except Exception as e:
            return _failure(e, None, module, function, args)
        return RETURN, value, None

    def apply_now(self, module: Any, function: Any, args: list[Any]) -> Any:
        """Call a registered function at once: its outcome as ``apply`` gives it, or, when
        the function is asynchronous, the awaitable to await for it."""
        fn = self.functions.get((module, function)) if type(args) is list else None
        if fn is None:
            return ERROR, UNDEF, [(module, function, args, [])]
        try:
            value = fn(*args)
        except Exception as e:
            return _failure(e, fn, module, function, args)
        if type(value) not in _PLAIN and inspect.isawaitable(value):
            return value
        return RETURN, value, None

    async def execute_call(self, mb: Mailbox, ref: Any, module: Any, function: Any, args: Any) -> None:
        """erpc:execute_call/4 as a spawned process: its exit reason carries the result."""
        raise ProcessExit(_call_reason(ref, await self.apply(module, function, args)))

    def execute_call_now(self, ref: Any, module: Any, function: Any, args: Any) -> Any:
        """erpc:execute_call/4 without a task (nor a mailbox) when the function is
        synchronous: the exit reason; RUN_AS_TASK for a coroutine function (nothing was
        called then); Later when the function returned an awaitable."""
        key = (module, function)
        fn = self.functions.get(key)
        if fn is not None:
            known = self._coroutine.get(key)
            if known is None or known[0] is not fn:
                known = self._coroutine[key] = (fn, inspect.iscoroutinefunction(fn))
            if known[1]:
                return RUN_AS_TASK
        outcome = self.apply_now(module, function, args)
        if type(outcome) is not tuple:  # a sync function that returned an awaitable
            return Later(lambda: self._finish_call(ref, outcome, module, function, args))
        return _call_reason(ref, outcome)

    async def _finish_call(self, ref: Any, aw: Any, module: Any, function: Any, args: Any) -> Any:
        try:
            outcome = (RETURN, await aw, None)
        except Exception as e:
            outcome = _failure(e, None, module, function, args)
        return _call_reason(ref, outcome)

    def rex(self, conn: Connection, from_pid: Pid, message: Any) -> None:
        """rex: {From, {call, M, F, A, GL}}, $gen_call/$gen_cast forms, features_request."""
        node = self.node
        if type(message) is not tuple:
            return
        if len(message) == 2 and message[1] == Atom("features_request") and type(message[0]) is Pid:
            conn.send_nowait(C.Send(message[0]), (Atom("features_reply"), node.name, [ERPC]))
            return
        if len(message) == 2 and type(message[0]) is Pid and type(message[1]) is tuple:
            req = message[1]
            if len(req) == 5 and req[0] == CALL:
                node.start_soon(self._rex_call, message[0], None, req)
            return
        if len(message) == 3 and message[0] == GEN_CALL and type(message[1]) is tuple:
            req = message[2]
            if type(req) is tuple and len(req) == 5 and req[0] == CALL:
                node.start_soon(self._rex_call, None, message[1], req)
            return
        if len(message) == 2 and message[0] == GEN_CAST and type(message[1]) is tuple:
            req = message[1]
            if len(req) == 5 and req[0] == CAST:
                node.start_soon(self.apply, req[1], req[2], req[3])

    async def _rex_call(self, pid: Pid | None, from_: Any, req: tuple[Any, ...]) -> None:
        cls, value, stack = await self.apply(req[1], req[2], req[3])
        if cls == RETURN:
            result = value
        elif cls == THROW:
            result = value  # rpc:call returns a thrown term as the value
        elif cls == EXIT:
            result = (BADRPC, (Atom("EXIT"), value))
        else:
            result = (BADRPC, (Atom("EXIT"), (value, stack)))
        try:
            if pid is not None:
                await self.node.send(pid, (REX, result))
            else:
                await gen_reply(self.node, from_, result)
        except Exception as e:
            log.debug("rex reply dropped: %s", e)


def _failure(e: Exception, fn: Callable[..., Any] | None, module: Any, function: Any, args: Any) -> tuple[Atom, Any, Any]:
    """The (Class, Reason, Stack) of a Python exception raised by a served function."""
    if isinstance(e, ErlangThrow):
        return THROW, e.term, []
    if isinstance(e, ErlangExit):
        return EXIT, e.reason, []
    if isinstance(e, ErlangError):
        return ERROR, e.reason, _python_stack(e)
    if isinstance(e, TypeError) and fn is not None and _is_arity_error(e, fn):
        return ERROR, UNDEF, [(module, function, args, [])]
    return ERROR, _error_reason(e), _python_stack(e)


def _call_reason(ref: Any, outcome: tuple[Atom, Any, Any]) -> Any:
    """The exit reason of erpc:execute_call/4 that carries ``outcome`` to the caller."""
    cls, value, stack = outcome
    if cls == RETURN:
        return (ref, RETURN, value)
    if cls == ERROR:
        return (ref, ERROR, value, stack)
    return (ref, cls, value)


def _is_arity_error(e: TypeError, fn: Callable[..., Any]) -> bool:
    tb = e.__traceback__
    # raised by the call itself (no frame inside fn): wrong number of arguments
    return tb is not None and tb.tb_next is None and "argument" in str(e)
