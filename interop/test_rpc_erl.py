"""RPC both ways and gen_server calls against real erl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import pytest

from pynode.runtime import (
    CallError,
    ErlangError,
    ErlangExit,
    ErlangThrow,
    GenServer,
    NoConnection,
    Node,
    RemoteError,
    RpcTimeout,
    busywait,
)
from pynode.term import Atom, Pid

from .erlnode import Epmd, ErlNode, unique

pytestmark = pytest.mark.anyio
StartErl = Callable[..., ErlNode]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def py_node(epmd: Epmd, cookie: str, **kw: Any) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1", **kw)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


async def test_rpc_out_values_and_errors(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        assert await node.rpc(erl.name, "erlang", "node") == erl.name
        assert await node.rpc(erl.name, "lists", "seq", [1, 5]) == [1, 2, 3, 4, 5]
        assert await node.rpc(erl.name, "erlang", "list_to_binary", [[104, 105]]) == b"hi"

        with pytest.raises(RemoteError) as info:
            await node.rpc(erl.name, "erlang", "throw", [Atom("ball")])
        assert (info.value.cls, info.value.reason) == (Atom("throw"), Atom("ball"))

        with pytest.raises(RemoteError) as info:
            await node.rpc(erl.name, "erlang", "exit", [Atom("bye")])
        assert (info.value.cls, info.value.reason) == (Atom("exit"), Atom("bye"))

        with pytest.raises(RemoteError) as info:
            await node.rpc(erl.name, "erlang", "error", [Atom("oops")])
        assert (info.value.cls, info.value.reason) == (Atom("error"), Atom("oops"))
        assert isinstance(info.value.stack, list) and info.value.stack

        with pytest.raises(RemoteError) as info:
            await node.rpc(erl.name, "no_such_mod", "f", [])
        assert info.value.reason == Atom("undef")

        with pytest.raises(RpcTimeout):
            await node.rpc(erl.name, "timer", "sleep", [5000], timeout=0.3)

        value, out = await node.rpc(
            erl.name, "io", "format", [list(b"hello ~s and ~p~n"), [list(b"world"), 42]], capture_output=True
        )
        assert value == Atom("ok") and out == "hello world and 42\n"


async def test_rpc_out_answer_read_by_the_calling_task(epmd: Epmd, erl_node: StartErl) -> None:
    """A call's answer read on the calling task (compiled spin) skips the connection's
    handlers; one with anything else among its packets (a message the call sends, the call
    still running when the spin ends) is handed to them, and answered all the same."""
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        assert await node.rpc(erl.name, "erlang", "node") == erl.name  # connected
        conn = node.connector.get(Atom(erl.name))
        assert conn is not None
        node.busy_wait = 0.5  # the calls' spins only (the loop's own stays as it was)
        hook = conn.dist.deliver_signal
        assert hook is not None
        handled: list[Any] = []

        def counting(control: Any, payload: Any) -> bool:
            handled.append(control[0])
            return hook(control, payload)

        conn.dist.deliver_signal = counting
        before = conn.counters()["messages_in"]
        for i in range(20):
            assert await node.rpc(erl.name, "erlang", "abs", [-i]) == i
        assert conn.counters()["messages_in"] - before == 40  # counted either way
        if busywait.C_SPIN:
            assert handled.count(31) < 20  # some SPAWN_REPLYs never reached the handlers
        else:  # no inline reads without the compiled spin
            assert handled.count(31) == 20
        mb = node.mailbox()
        handled.clear()
        between = Atom("between")
        assert await node.rpc(erl.name, "erlang", "send", [mb.pid, between]) == between
        assert await mb.receive(timeout=10) == between
        assert handled.count(31) == 1  # the SEND among them: all went to the connection
        node.busy_wait = 0.001
        assert await node.rpc(erl.name, "timer", "sleep", [50]) == Atom("ok")
        box = node.call_box()
        assert not box._calls and not box.monitors and not node.signals._spawn_waits


async def test_rpc_out_noconnection(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        with pytest.raises(NoConnection):
            await node.rpc("nobody@127.0.0.1", "erlang", "node")
        assert await node.ping(erl.name)

        async def kill_soon() -> None:
            await anyio.sleep(0.3)
            erl.kill()

        async with anyio.create_task_group() as tg:
            tg.start_soon(kill_soon)
            with pytest.raises(NoConnection):
                await node.rpc(erl.name, "timer", "sleep", [10000], timeout=20)


async def test_cast_and_multicall(epmd: Epmd, erl_node: StartErl) -> None:
    erl1 = erl_node()
    async with py_node(epmd, erl1.cookie) as node:
        mb = node.mailbox("castbox")
        await node.cast(erl1.name, "erlang", "send", [(Atom("castbox"), node.name), Atom("casted")])
        assert await mb.receive(timeout=10) == Atom("casted")
        results = await node.multicall([erl1.name, "nobody@127.0.0.1"], "erlang", "node", timeout=5)
        assert results[0] == ("ok", erl1.name)
        assert results[1][0] == "error" and isinstance(results[1][1], NoConnection)


def mathy(a: int, b: int) -> int:
    return a * b + 1


async def test_rpc_in_from_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:

        @node.expose("py", "add")
        def add(a: int, b: int) -> int:
            return a + b

        @node.expose("py", "slow")
        async def slow(seconds: float) -> Atom:
            await anyio.sleep(seconds)
            return Atom("done")

        @node.expose("py", "fail")
        def fail(kind: Atom) -> None:
            if kind == "throw":
                raise ErlangThrow(Atom("thrown"))
            if kind == "exit":
                raise ErlangExit(Atom("exited"))
            if kind == "error":
                raise ErlangError(Atom("custom"))
            raise ValueError("python says no")

        assert await erl_run(erl, "rpc:call(N, py, add, [2, 3]).", N=node.name) == 5
        assert await erl_run(erl, "erpc:call(N, py, add, [2, 3]).", N=node.name) == 5
        assert await erl_run(erl, "erpc:call(N, py, slow, [0.05]).", N=node.name) == Atom("done")
        # errors as erl reports them
        assert await erl_run(erl, "try erpc:call(N, py, fail, [throw]) catch C:R -> {C, R} end.", N=node.name) == (
            Atom("throw"), Atom("thrown"))
        assert await erl_run(erl, "try erpc:call(N, py, fail, [exit]) catch C:R -> {C, R} end.", N=node.name) == (
            Atom("exit"), (Atom("exception"), Atom("exited")))
        err = await erl_run(erl, "try erpc:call(N, py, fail, [error]) catch C:R -> {C, R} end.", N=node.name)
        assert err[0] == Atom("error") and err[1][:2] == (Atom("exception"), Atom("custom"))
        err = await erl_run(erl, "try erpc:call(N, py, fail, [other]) catch C:R -> {C, R} end.", N=node.name)
        assert err[0] == Atom("error")
        assert err[1][:2] == (Atom("exception"), (Atom("python_error"), b"ValueError", b"python says no"))
        assert any(frame[1] == Atom("fail") for frame in err[1][2])  # the Python traceback as the stack
        undef = await erl_run(erl, "try erpc:call(N, py, nope, []) catch C:R -> {C, R} end.", N=node.name)
        assert undef == (Atom("error"), (Atom("exception"), Atom("undef"), [(Atom("py"), Atom("nope"), [], [])]))
        assert await erl_run(erl, "rpc:call(N, py, nope, []).", N=node.name) == (
            Atom("badrpc"), (Atom("EXIT"), (Atom("undef"), [(Atom("py"), Atom("nope"), [], [])])))
        # timeout on the erl side
        assert await erl_run(erl, "try erpc:call(N, py, slow, [5], 200) catch C:R -> {C, R} end.", N=node.name) == (
            Atom("error"), (Atom("erpc"), Atom("timeout")))
        # a whole module
        import sys

        node.expose_module(sys.modules[__name__], "interop_mod")
        assert await erl_run(erl, "erpc:call(N, interop_mod, mathy, [6, 7]).", N=node.name) == 43


async def test_erpc_spawn_options_from_erl(epmd: Epmd, erl_node: StartErl) -> None:
    """erpc:execute_call spawned by erl with each link/monitor choice: a call done at once
    has no mailbox on our side, yet erl sees a process that ran, exited and is gone."""
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        node.expose("py", "add")(lambda a, b: a + b)

        async def later(x: int) -> int:
            await anyio.sleep(0)
            return x

        node.expose("py", "deferred")(lambda x: later(x))  # sync, hands back an awaitable
        got = await erl_run(
            erl,
            """
            process_flag(trap_exit, true),
            Res = make_ref(),
            Spawn = fun(F, A, Opts) ->
                R = spawn_request(N, erpc, execute_call, [Res, py, F, A], Opts),
                receive {spawn_reply, R, ok, P} -> {R, P} after 5000 -> error(no_reply) end
            end,
            Exit = fun(P) -> receive {'EXIT', P, Why} -> Why after 5000 -> no_exit end end,
            Down = fun(R, P) -> receive {'DOWN', R, process, P, Why} -> Why after 5000 -> no_down end end,
            Gone = fun(P) -> M = monitor(process, P), Down(M, P) end,
            {R1, P1} = Spawn(add, [2, 3], [link, monitor]),
            D1 = Down(R1, P1), E1 = Exit(P1),
            {_, P2} = Spawn(add, [4, 5], [link]),
            E2 = Exit(P2),
            {R3, P3} = Spawn(add, [1, 1], [monitor]),
            D3 = Down(R3, P3),
            {_, P4} = Spawn(add, [1, 2], []),
            {R5, P5} = Spawn(deferred, [7], [link, monitor]),
            D5 = Down(R5, P5), E5 = Exit(P5),
            Stray = receive M -> M after 200 -> none end,
            {{D1, E1}, E2, D3, Gone(P4), {D5, E5}, Stray, [node(P) || P <- [P1, P2, P3, P4, P5]]}.
            """,
            N=node.name,
        )
        ret = Atom("return")
        (d1, e1), e2, d3, gone4, (d5, e5), stray, nodes = got
        assert d1 == e1 and d1[1:] == (ret, 5)
        assert e2[1:] == (ret, 9)
        assert d3[1:] == (ret, 2)
        assert gone4 == Atom("noproc")  # ran and ended, though nobody watched it
        assert d5 == e5 and d5[1:] == (ret, 7)
        assert stray == Atom("none") and set(nodes) == {node.name}
        assert len(node.processes.mailboxes()) == 1 and not node.processes.monitored


async def test_erpc_of_a_value_with_no_erlang_form(epmd: Epmd, erl_node: StartErl) -> None:
    """A served function whose value cannot be encoded fails that erpc:call on erl's side
    with a readable reason; the connection and the node stay up (it was dropped, and a
    coroutine function's took the whole node down)."""
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        async def odd_async() -> object:
            return object()

        node.expose("py", "odd")(lambda: object())
        node.expose("py", "odd_async")(odd_async)
        node.expose("py", "add")(lambda a, b: a + b)
        got = await erl_run(
            erl,
            """
            Try = fun(F) -> try erpc:call(N, py, F, [], 5000) catch C:R -> {C, R} end end,
            {Try(odd), Try(odd_async), erpc:call(N, py, add, [1, 2]), lists:member(N, nodes(hidden))}.
            """,
            N=node.name,
        )
        odd, odd_async, alive, connected = got
        for r in (odd, odd_async):
            assert r[0] == Atom("exit") and r[1][0] == Atom("signal")
            assert r[1][1][:2] == (Atom("python_error"), b"EncodeError")
        assert alive == 3 and connected is True


async def test_rex_protocol_in(epmd: Epmd, erl_node: StartErl) -> None:
    """The legacy rex request that ei and JInterface send, and gen_server:call to rex."""
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        node.expose("py", "echo")(lambda x: x)
        got = await erl_run(
            erl, "{rex, N} ! {self(), {call, py, echo, [hi], group_leader()}}, receive {rex, R} -> R after 5000 -> timeout end.",
            N=node.name)
        assert got == Atom("hi")
        got = await erl_run(erl, "gen_server:call({rex, N}, {call, py, echo, [there], group_leader()}).", N=node.name)
        assert got == Atom("there")


async def test_rex_fallback_out(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        from pynode.runtime import rpc as rpc_mod

        assert await rpc_mod._rex_call(node, erl.name, "lists", "reverse", [[1, 2, 3]], 10) == [3, 2, 1]
        with pytest.raises(RemoteError):
            await rpc_mod._rex_call(node, erl.name, "erlang", "error", [Atom("x")], 10)


class Counter(GenServer):
    def __init__(self) -> None:
        self.count = 0

    async def handle_call(self, request: Any, from_: Any) -> Any:
        if request == Atom("get"):
            return self.count
        if request == Atom("crash"):
            raise ErlangExit(Atom("asked_to_crash"))
        return (Atom("unknown"), request)

    async def handle_cast(self, request: Any) -> None:
        if type(request) is tuple and request[0] == Atom("add"):
            self.count += request[1]


async def test_gen_server_erl_calls_python(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        node.start_server(Counter(), "counter")
        assert await erl_run(erl, "gen_server:call({counter, N}, get).", N=node.name) == 0
        await erl_run(erl, "gen_server:cast({counter, N}, {add, 5}), ok.", N=node.name)
        assert await erl_run(erl, "gen_server:call({counter, N}, get).", N=node.name) == 5
        crash = await erl_run(erl, "catch gen_server:call({counter, N}, crash).", N=node.name)
        assert crash[0] == Atom("EXIT") and crash[1][0] == Atom("asked_to_crash")
        noproc = await erl_run(erl, "catch gen_server:call({counter, N}, get, 1000).", N=node.name)
        assert noproc[1][0] == Atom("noproc")


async def test_gen_server_python_calls_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        # a real gen_server in erl: the global name server's gen_server, and a one-off server
        # built with gen_server:start over an anonymous callback isn't possible without a
        # module, so use proc_lib + gen_server:reply semantics via an erl_eval loop.
        server = await erl_run(
            erl,
            """
            Loop = fun L(State) ->
                receive
                    {'$gen_call', From, get} -> gen_server:reply(From, State), L(State);
                    {'$gen_call', From, {put, V}} -> gen_server:reply(From, ok), L(V);
                    {'$gen_call', _From, die} -> exit(dying);
                    {'$gen_cast', {put, V}} -> L(V)
                end
            end,
            P = spawn(fun() -> Loop(initial) end), register(erl_server, P), P.
            """,
        )
        assert isinstance(server, Pid)
        assert await node.call((Atom("erl_server"), erl.name), Atom("get")) == Atom("initial")
        assert await node.call(server, (Atom("put"), 42)) == Atom("ok")
        assert await node.call(server, Atom("get")) == 42
        await node.gen_cast(server, (Atom("put"), 7))
        assert await node.call(server, Atom("get")) == 7
        # real OTP gen_servers answer through the alias too
        assert isinstance(await node.call((Atom("kernel_sup"), erl.name), Atom("which_children")), list)
        with pytest.raises(CallError) as info:
            await node.call(server, Atom("die"))
        assert info.value.reason == Atom("dying")
        with pytest.raises(CallError) as info:
            await node.call((Atom("not_registered"), erl.name), Atom("get"))
        assert info.value.reason == Atom("noproc")
