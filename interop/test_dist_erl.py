"""Distribution core against real erl nodes: ping, messages, cookies, ticks, EPMD loss."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from pynode.runtime import ConnectError, Node, names
from pynode.term import Atom, Pid

from .erlnode import Epmd, ErlNode, unique
from .rpc_checks import SLEEPERS, SLEEPERS_GONE, check_erpc_errors

pytestmark = pytest.mark.anyio

StartErl = Callable[..., ErlNode]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def py_node(epmd: Epmd, cookie: str, **kw: Any) -> Node:
    kw.setdefault("listen_host", "127.0.0.1")
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, **kw)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    """Evaluate in erl from a thread, so the Python node keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


async def test_ping_both_ways_hidden(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pong")
        assert node.name in await erl_run(erl, "nodes(hidden).")
        assert node.name not in await erl_run(erl, "nodes().")
        assert await node.ping(erl.name) is True
        assert erl.name in node.nodes()


async def test_visible_node_is_in_nodes(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie, hidden=False) as node:
        assert await node.ping(erl.name) is True
        assert await erl_run(erl, "lists:member(N, nodes()).", N=node.name) is True
        # global and rex talk to a visible node; the connection must survive them
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pong")
        assert node.is_connected(erl.name)


async def test_messages_both_ways_in_order(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    count = 10_000
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox("inbox")
        # erl -> registered Python mailbox
        await erl_run(
            erl,
            "[{inbox, N} ! {seq, I} || I <- lists:seq(1, C)], ok.",
            N=node.name,
            C=count,
        )
        got = [await mb.receive(timeout=30) for _ in range(count)]
        assert got == [(Atom("seq"), i) for i in range(1, count + 1)]
        # erl -> a Python pid it was given
        await erl_run(erl, "[P ! {pid, I} || I <- lists:seq(1, C)], ok.", P=mb.pid, C=count)
        got = [await mb.receive(timeout=30) for _ in range(count)]
        assert got == [(Atom("pid"), i) for i in range(1, count + 1)]

        # Python -> registered erl process and -> erl pid
        collector = await erl_run(
            erl,
            """
            Loop = fun L(N, Ok) ->
                receive
                    {seq, I} -> L(N + 1, Ok andalso I =:= N + 1);
                    {done, From} -> From ! {got, N, Ok}, L(0, true)
                end
            end,
            Pid = spawn(fun() -> Loop(0, true) end),
            register(collector, Pid),
            Pid.
            """,
        )
        assert isinstance(collector, Pid)
        for i in range(1, count + 1):
            await mb.send((Atom("collector"), erl.name), (Atom("seq"), i))
        await mb.send((Atom("collector"), erl.name), (Atom("done"), mb.pid))
        assert await mb.receive(timeout=30) == (Atom("got"), count, True)
        for i in range(1, count + 1):
            await mb.send(collector, (Atom("seq"), i))
        await mb.send(collector, (Atom("done"), mb.pid))
        assert await mb.receive(timeout=30) == (Atom("got"), count, True)


async def test_atom_cache_slots_turn_over_without_a_lost_atom(epmd: Epmd, erl_node: StartErl) -> None:
    # the loop's sends put the control message's atoms in the header's atom cache: 3,000
    # names monitored by name (MONITOR_P's ToProc is the name) overwrite the 2,048 slots
    # again and again; erl answers each with its name, and messages sent between them to a
    # registered process (some of them in fragments) go on arriving whole and in order
    erl = erl_node()
    count = 3_000
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        collector = await erl_run(
            erl,
            """
            Loop = fun L(Acc) ->
                receive
                    {done, From} -> From ! {got, lists:reverse(Acc)}, L([]);
                    M -> L([M | Acc])
                end
            end,
            Pid = spawn(fun() -> Loop([]) end),
            register(cache_collector, Pid),
            Pid.
            """,
        )
        assert isinstance(collector, Pid)
        names = [Atom(f"absent_{i}") for i in range(count)]
        big = bytes(range(256)) * 1024  # 256 KiB: four 64 KiB fragments and a bit
        refs = {}
        for round_ in range(2):  # the second round refers to slots the first one left
            for i, name in enumerate(names):
                refs[await mb.monitor((name, erl.name))] = name
                if i % 100 == 0:
                    await mb.send((Atom("cache_collector"), erl.name), (name, round_, i))
                if i % 1000 == 500:  # fragments: the refs travel in the first one
                    await mb.send((Atom("cache_collector"), erl.name), (name, round_, i, big))
            with anyio.fail_after(60):
                downs = [await mb.receive() for _ in range(count)]
            assert {d[1] for d in downs} == set(refs)
            assert all(d[3] == (refs[d[1]], erl.name) and d[4] == Atom("noproc") for d in downs)
            refs.clear()
        await mb.send((Atom("cache_collector"), erl.name), (Atom("done"), mb.pid))
        with anyio.fail_after(60):
            got = await mb.receive()
        expected = [
            m
            for r in range(2)
            for i in range(count)
            for m in ([(names[i], r, i)] if i % 100 == 0 else []) + ([(names[i], r, i, big)] if i % 1000 == 500 else [])
        ]
        assert got == (Atom("got"), expected)
        assert node.is_connected(erl.name)


async def test_wrong_cookie_refused_both_ways(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, "not-" + erl.cookie) as node:
        # erl -> pynode: refused
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pang")
        # pynode -> erl: refused with a clear error
        with pytest.raises(ConnectError, match="cookie"):
            await node.connect(erl.name)
        assert await node.ping(erl.name) is False
        assert node.nodes() == []
        # and the node still serves a peer with the right cookie
        good = erl_node(cookie="not-" + erl.cookie)
        assert await erl_run(good, "net_adm:ping(N).", N=node.name) == Atom("pong")
        assert await node.ping(good.name) is True


async def test_kill_9_gives_nodedown(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie, net_ticktime=2) as node:
        async with node.node_events() as events:
            assert await node.ping(erl.name)
            assert (await events.receive())[:2] == ("nodeup", erl.name)
            erl.kill()
            with anyio.fail_after(5):
                ev = await events.receive()
            assert ev[:2] == ("nodedown", erl.name)
            assert erl.name not in node.nodes()


async def test_silent_peer_declared_down_by_ticks(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie, net_ticktime=2) as node:
        async with node.node_events() as events:
            assert await node.ping(erl.name)
            assert (await events.receive())[:2] == ("nodeup", erl.name)
            os.kill(erl.proc.pid, signal.SIGSTOP)  # socket open, no ticks
            try:
                with anyio.fail_after(6):
                    ev = await events.receive()
                assert ev[:2] == ("nodedown", erl.name)
                assert "net_ticktime" in str(ev[2])
            finally:
                os.kill(erl.proc.pid, signal.SIGCONT)


async def test_ticks_keep_an_idle_connection_up(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node(args=["-kernel", "net_ticktime", "2"])
    async with py_node(epmd, erl.cookie, net_ticktime=2) as node:
        async with node.node_events() as events:
            assert await node.ping(erl.name)
            assert (await events.receive())[:2] == ("nodeup", erl.name)
            # idle for 3 tick periods: both sides must tick to stay up
            with anyio.move_on_after(6):
                ev = await events.receive()
                pytest.fail(f"connection went down while idle: {ev}")
        assert node.is_connected(erl.name)
        assert await erl_run(erl, "lists:member(N, nodes(hidden)).", N=node.name) is True


async def test_reregisters_after_epmd_restart(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        alive = node.name.split("@")[0]
        assert alive in dict(await names("127.0.0.1", epmd.port))
        epmd.kill()
        epmd.start()
        with anyio.fail_after(20):
            while alive not in dict(await names("127.0.0.1", epmd.port)):
                await anyio.sleep(0.2)
        # erl re-registers too (OTP 23+); then it reaches us through EPMD again
        with anyio.fail_after(20):
            while erl.alive not in dict(await names("127.0.0.1", epmd.port)):
                await anyio.sleep(0.2)
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pong")


async def test_connect_without_epmd(otp: Any, epmd: Epmd) -> None:
    erl = ErlNode(otp, epmd)
    try:
        port = erl.dist_port()
        async with Node(unique("py") + "@127.0.0.1", erl.cookie, epmd=False, listen_host="127.0.0.1") as node:
            conn = await node.connect(erl.name, address=("127.0.0.1", port))
            assert conn.alive
            assert await node.ping(erl.name)
            assert node.name in await erl_run(erl, "nodes(hidden).")
    finally:
        erl.kill()
        erl.close()


async def test_dynamic_name_from_erl(otp: Any, epmd: Epmd) -> None:
    """erl started with -name undefined asks us (NAME_ME) for its name."""
    cookie = unique("c")
    async with py_node(epmd, cookie) as node:
        erl = ErlNode.__new__(ErlNode)
        erl.alive = "undefined"
        erl.name = Atom("undefined@127.0.0.1")
        erl.cookie = cookie
        from .oracle import ErlOracle

        ErlOracle.__init__(erl, otp, args=["-name", "undefined@127.0.0.1", "-setcookie", cookie], env=epmd.env)
        try:
            assert await erl_run(erl, "net_kernel:connect_node(N).", N=node.name) is True
            assigned = await erl_run(erl, "node().")
            assert assigned.endswith("@127.0.0.1") and assigned != "undefined@127.0.0.1"
            assert assigned in node.nodes()
        finally:
            erl.kill()
            erl.close()


@pytest.mark.parametrize("anyio_backend", ["trio"])
async def test_trio_smoke(epmd: Epmd, erl_node: StartErl, anyio_backend: str) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        assert await node.ping(erl.name)
        mb = node.mailbox("trio_box")
        await erl_run(erl, "{trio_box, N} ! hello_trio, ok.", N=node.name)
        assert await mb.receive(timeout=10) == Atom("hello_trio")


def test_epmd_names_cli_tool(epmd: Epmd, erl_node: StartErl) -> None:
    """Our registration looks right to OTP's own epmd client tool."""
    erl = erl_node()

    async def main() -> str:
        async with py_node(epmd, erl.cookie) as node:
            out = await anyio.to_thread.run_sync(
                lambda: subprocess.run(
                    [epmd.exe, "-port", str(epmd.port), "-names"],
                    capture_output=True, text=True, timeout=30,
                ).stdout
            )
            assert f"name {node.name.split('@')[0]} at port {node.port}" in out
            return out

    anyio.run(main)


async def test_dynamic_name_from_erl_for_us(epmd: Epmd, erl_node: StartErl) -> None:
    """We ask erl (NAME_ME) for our name, as erl_call -R does."""
    erl = erl_node()
    async with Node(None, erl.cookie, dynamic=True, host="127.0.0.1", epmd_port=epmd.port, listen_host="127.0.0.1") as node:
        assert not node.has_name
        assert await node.ping(erl.name)
        assert node.has_name and node.name.endswith("@127.0.0.1") and not node.name.startswith("undefined")
        assert node.name in await erl_run(erl, "nodes(hidden).")
        assert await node.rpc(erl.name, "erlang", "node", []) == erl.name
        sender = await erl_run(erl, "self().")
        assert isinstance(sender, Pid)


def test_blocking_api_against_erl(epmd: Epmd, erl_node: StartErl) -> None:
    from pynode.blocking import BlockingNode

    erl = erl_node()
    with BlockingNode(unique("py") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port, listen_host="127.0.0.1") as node:
        assert node.ping(erl.name)
        assert node.rpc(erl.name, "lists", "seq", [1, 3]) == [1, 2, 3]
        box = node.mailbox("blocking_box")
        erl.run("{blocking_box, N} ! hello_blocking, ok.", N=node.name)
        assert box.receive(timeout=10) == Atom("hello_blocking")


def test_blocking_rpc_from_threads_against_erl(epmd: Epmd, erl_node: StartErl) -> None:
    """BlockingNode.rpc over a live connection: sent from the calling thread, answered into
    one shared mailbox; values, errors, a timeout (the call abandoned, as erpc:call abandons
    it) and calls from several threads at once."""
    import threading

    from pynode.blocking import BlockingNode
    from pynode.runtime import RpcTimeout

    erl = erl_node()
    with BlockingNode(unique("py") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port, listen_host="127.0.0.1") as node:
        assert node.rpc(erl.name, "erlang", "node") == erl.name  # connects through the loop
        assert node.node is not None
        conn = node.node.connector.connections[erl.name]
        # a thread's first send on a connection goes through the loop too (it then lets
        # threads write to the socket themselves)
        assert node.rpc(erl.name, "lists", "seq", [1, 3]) == [1, 2, 3]
        by_loop = conn.messages_out
        assert node.rpc(erl.name, "lists", "seq", [1, 4]) == [1, 2, 3, 4]
        check_erpc_errors(lambda m, f, a: node.rpc(erl.name, m, f, a))
        assert conn.messages_out == by_loop  # every request went out from this thread

        # a call that times out is abandoned (it runs on in erl), and its answer never shows up
        erl.run("register(blocking_rpc_test, self()), ok.")
        with pytest.raises(RpcTimeout):
            node.rpc(erl.name, "timer", "sleep", [2000], timeout=0.2)
        box = node._rpc_box
        assert box is not None
        assert erl.run(SLEEPERS) == 1  # nothing stopped it
        assert erl.run(SLEEPERS_GONE) == Atom("none")  # it ended (waited for in erl, bounded)
        assert node.rpc(erl.name, "erlang", "abs", [-7]) == 7  # a round trip after its end
        assert box.async_mailbox.monitors == {} and len(box.async_mailbox) == 0

        results: dict[int, list[Any]] = {}
        errors: list[BaseException] = []

        def caller(k: int) -> None:
            try:
                results[k] = [node.rpc(erl.name, "erlang", "+", [k, i]) for i in range(50)]
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=caller, args=(k * 1000,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert results == {k * 1000: [k * 1000 + i for i in range(50)] for k in range(8)}
        assert len(box.async_mailbox) == 0


def test_blocking_gen_call_from_threads_against_erl(epmd: Epmd, erl_node: StartErl) -> None:
    """BlockingNode.gen_call to erl's gen_servers from the calling thread: a reply (to an
    alias), a missing server ('DOWN' noproc), a silent one (timeout, its late reply dropped)
    and calls from several threads at once; nothing is left behind."""
    import threading

    from pynode.blocking import BlockingNode
    from pynode.runtime import CallError, RpcTimeout

    erl = erl_node()
    with BlockingNode(unique("py") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port, listen_host="127.0.0.1") as node:
        assert node.ping(erl.name)
        assert node.node is not None
        conn = node.node.connector.connections[erl.name]
        # a thread's first sends on a connection go through the loop (see the rpc test above)
        apps = node.gen_call(("application_controller", erl.name), Atom("which_applications"))
        assert Atom("kernel") in [a[0] for a in apps]
        by_loop = conn.messages_out
        assert node.gen_call(("application_controller", erl.name), Atom("which_applications")) == apps
        with pytest.raises(CallError) as down:
            node.gen_call(("no_such_server", erl.name), Atom("hello"))
        assert down.value.reason == Atom("noproc")
        assert conn.messages_out == by_loop  # monitors, requests, demonitors: all from here

        # a server that answers only when told to: the first call times out, and its reply,
        # sent later, must not show up anywhere
        erl.run(
            "register(slow_server, spawn(fun Loop() -> receive"
            "  {'$gen_call', From, {late, Tag}} -> receive go -> gen_server:reply(From, Tag) end, Loop();"
            "  {'$gen_call', From, Req} -> gen_server:reply(From, {echo, Req}), Loop() end end)), ok."
        )
        with pytest.raises(RpcTimeout):
            node.gen_call(("slow_server", erl.name), (Atom("late"), 1), timeout=0.2)
        erl.run("slow_server ! go, ok.")
        assert node.gen_call(("slow_server", erl.name), 2) == (Atom("echo"), 2)  # after the late one
        box = node._rpc_box
        assert box is not None
        mb = box.async_mailbox
        assert len(mb) == 0 and mb.monitors == {} and mb.aliases == set()

        results: dict[int, list[Any]] = {}
        errors: list[BaseException] = []

        def caller(k: int) -> None:
            try:
                results[k] = [node.gen_call(("slow_server", erl.name), (k, i)) for i in range(30)]
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)

        threads = [threading.Thread(target=caller, args=(k,)) for k in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        assert not errors
        assert results == {k: [(Atom("echo"), (k, i)) for i in range(30)] for k in range(6)}
        assert len(mb) == 0 and mb.monitors == {} and mb.aliases == set()
