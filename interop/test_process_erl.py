"""Process semantics against real erl: links, exits, monitors, spawn, aliases, fragments,
the atom cache, and what a lost connection fires."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from pynode.protocol.flags import DFlag
from pynode.runtime import MailboxClosed, Node
from pynode.term import Atom, Pid, Reference

from .erlnode import Epmd, ErlNode, unique

pytestmark = pytest.mark.anyio
StartErl = Callable[..., ErlNode]

EXIT = Atom("EXIT")
DOWN = Atom("DOWN")
PROCESS = Atom("process")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def py_node(epmd: Epmd, cookie: str, **kw: Any) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1", **kw)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


# An erl process that waits for {die, Reason} and exits with it; it reports what it
# receives (EXIT messages when trapping) to Report.
WAITER = """
spawn(fun() ->
    process_flag(trap_exit, Trap),
    Loop = fun L() ->
        receive
            {die, R} -> exit(R);
            {link, P} -> link(P), Report ! {linked, self()}, L();
            {unlink, P} -> unlink(P), Report ! {unlinked, self()}, L();
            {monitor, T} -> Report ! {monitoring, erlang:monitor(process, T)}, L();
            Other -> Report ! {self(), got, Other}, L()
        end
    end,
    Loop()
end).
"""


async def erl_waiter(erl: ErlNode, report: Pid, trap: bool = False) -> Pid:
    return await erl_run(erl, WAITER, Report=report, Trap=trap)


async def erl_alive(erl: ErlNode, pid: Pid) -> bool:
    return await erl_run(erl, "is_process_alive(P).", P=pid)


async def test_link_python_to_erl_and_erl_dies(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        trapper = node.mailbox()
        trapper.trap_exit = True
        p = await erl_waiter(erl, trapper.pid)
        await trapper.link(p)
        await trapper.send(p, (Atom("die"), Atom("boom")))
        assert await trapper.receive(timeout=10) == (EXIT, p, Atom("boom"))

        plain = node.mailbox()
        q = await erl_waiter(erl, plain.pid)
        await plain.link(q)
        await plain.send(q, (Atom("die"), Atom("crash")))
        with pytest.raises(MailboxClosed) as info:
            await plain.receive(timeout=10)
        assert info.value.reason == Atom("crash")


async def test_link_erl_to_python_and_python_dies(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        report = node.mailbox()
        # a trapping erl process sees our exit reason
        p = await erl_waiter(erl, report.pid, trap=True)
        victim = node.mailbox()
        await report.send(p, (Atom("link"), victim.pid))
        assert await report.receive(timeout=10) == (Atom("linked"), p)
        victim.close(Atom("bye"))
        assert await report.receive(timeout=10) == (p, Atom("got"), (EXIT, victim.pid, Atom("bye")))

        # a non-trapping one survives 'normal' and dies of anything else
        for reason, survives in ((Atom("normal"), True), (Atom("bad"), False)):
            q = await erl_waiter(erl, report.pid)
            mon = await report.monitor(q)
            mb = node.mailbox()
            await report.send(q, (Atom("link"), mb.pid))
            assert await report.receive(timeout=10) == (Atom("linked"), q)
            mb.close(reason)
            if survives:
                await report.send(q, Atom("ping"))
                assert await report.receive(timeout=10) == (q, Atom("got"), Atom("ping"))
            else:
                assert await report.receive(timeout=10) == (DOWN, mon, PROCESS, q, reason)


async def test_link_to_dead_erl_pid_gives_noproc(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        mb.trap_exit = True
        dead = await erl_run(erl, "P = spawn(fun() -> ok end), M = monitor(process, P), receive {'DOWN', M, _, _, _} -> P end.")
        await mb.link(dead)
        assert await mb.receive(timeout=10) == (EXIT, dead, Atom("noproc"))


async def test_unlink_stops_exit_signals(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        mb.trap_exit = True
        p = await erl_waiter(erl, mb.pid)
        await mb.link(p)
        # signals from one process to another keep their order: once p answers this message
        # it has taken our LINK (process_info below goes another way, through the oracle)
        await mb.send(p, Atom("sync"))
        assert await mb.receive(timeout=10) == (p, Atom("got"), Atom("sync"))
        assert await erl_run(erl, "{links, L} = process_info(P, links), L.", P=p) == [mb.pid]
        await mb.unlink(p)
        mon = await mb.monitor(p)
        await mb.send(p, (Atom("die"), Atom("boom")))
        assert await mb.receive(timeout=10) == (DOWN, mon, PROCESS, p, Atom("boom"))
        # no EXIT: a sentinel sent after p's death is the next message
        await erl_run(erl, "P ! sentinel, ok.", P=mb.pid)
        assert await mb.receive(timeout=10) == Atom("sentinel")

        # erl unlinks from us (UNLINK_ID): our side drops the link, its death is not ours
        q = await erl_waiter(erl, mb.pid)
        await mb.send(q, (Atom("link"), mb.pid))
        assert await mb.receive(timeout=10) == (Atom("linked"), q)
        assert q in mb.links
        await mb.send(q, (Atom("unlink"), mb.pid))
        assert await mb.receive(timeout=10) == (Atom("unlinked"), q)
        assert q not in mb.links
        mon = await mb.monitor(q)
        await mb.send(q, (Atom("die"), Atom("boom2")))
        assert await mb.receive(timeout=10) == (DOWN, mon, PROCESS, q, Atom("boom2"))
        await erl_run(erl, "P ! sentinel, ok.", P=mb.pid)
        assert await mb.receive(timeout=10) == Atom("sentinel")


async def test_exit_signals_both_ways(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        mb.trap_exit = True
        sender = await erl_run(erl, "self().")
        await erl_run(erl, "exit(P, hello), ok.", P=mb.pid)
        got = await mb.receive(timeout=10)
        assert got[0] == EXIT and got[2] == Atom("hello")
        # kill cannot be trapped
        await erl_run(erl, "exit(P, kill), ok.", P=mb.pid)
        with pytest.raises(MailboxClosed) as info:
            await mb.receive(timeout=10)
        assert info.value.reason == Atom("killed")
        # exit(normal) is ignored by a process that does not trap
        calm = node.mailbox()
        await erl_run(erl, "exit(P, normal), P ! still_here, ok.", P=calm.pid)
        assert await calm.receive(timeout=10) == Atom("still_here")
        # Python -> erl: exit/2 kills a non-trapping process
        p = await erl_waiter(erl, calm.pid)
        mon = await calm.monitor(p)
        await calm.exit(p, Atom("stop_now"))
        assert await calm.receive(timeout=10) == (DOWN, mon, PROCESS, p, Atom("stop_now"))
        assert isinstance(sender, Pid)


async def test_monitors_python_to_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        p = await erl_waiter(erl, mb.pid)
        ref = await mb.monitor(p)
        assert isinstance(ref, Reference)
        await mb.send(p, (Atom("die"), Atom("r1")))
        assert await mb.receive(timeout=10) == (DOWN, ref, PROCESS, p, Atom("r1"))

        # by name
        q = await erl_waiter(erl, mb.pid)
        await erl_run(erl, "register(named_waiter, Q), ok.", Q=q)
        ref = await mb.monitor((Atom("named_waiter"), erl.name))
        await mb.send(q, (Atom("die"), Atom("r2")))
        assert await mb.receive(timeout=10) == (DOWN, ref, PROCESS, (Atom("named_waiter"), erl.name), Atom("r2"))

        # noproc, by name and by pid
        ref = await mb.monitor((Atom("nobody_here"), erl.name))
        assert await mb.receive(timeout=10) == (DOWN, ref, PROCESS, (Atom("nobody_here"), erl.name), Atom("noproc"))
        ref = await mb.monitor(p)
        assert await mb.receive(timeout=10) == (DOWN, ref, PROCESS, p, Atom("noproc"))

        # demonitor: no DOWN afterwards
        r = await erl_waiter(erl, mb.pid)
        ref = await mb.monitor(r)
        assert await mb.demonitor(ref)
        # the DEMONITOR goes over the distribution connection, the check over erl's oracle
        # port: erl waits (bounded) for the signal to arrive
        assert await erl_run(
            erl,
            "F = fun Wait(0) -> still_monitored;"
            "        Wait(N) -> case process_info(R, monitored_by) of"
            "                       {monitored_by, []} -> none;"
            "                       _ -> receive after 20 -> Wait(N - 1) end end end,"
            "F(250).",
            R=r,
        ) == Atom("none")
        # erl waits for r's death, then sends a sentinel: it is the next message, no DOWN
        await erl_run(
            erl,
            "M = erlang:monitor(process, R), R ! {die, r3},"
            " receive {'DOWN', M, _, _, _} -> P ! sentinel end, ok.",
            R=r, P=mb.pid,
        )
        assert await mb.receive(timeout=10) == Atom("sentinel")


async def test_monitors_erl_to_python(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        report = node.mailbox()
        watcher = await erl_waiter(erl, report.pid)
        target = node.mailbox("watched")
        await report.send(watcher, (Atom("monitor"), target.pid))
        _, ref = await report.receive(timeout=10)
        target.close(Atom("gone"))
        assert await report.receive(timeout=10) == (watcher, Atom("got"), (DOWN, ref, PROCESS, target.pid, Atom("gone")))

        named = node.mailbox("watched_by_name")
        await report.send(watcher, (Atom("monitor"), (Atom("watched_by_name"), node.name)))
        _, ref = await report.receive(timeout=10)
        named.close(Atom("bye"))
        assert await report.receive(timeout=10) == (
            watcher, Atom("got"), (DOWN, ref, PROCESS, (Atom("watched_by_name"), node.name), Atom("bye"))
        )

        await report.send(watcher, (Atom("monitor"), target.pid))  # already dead
        _, ref = await report.receive(timeout=10)
        assert await report.receive(timeout=10) == (watcher, Atom("got"), (DOWN, ref, PROCESS, target.pid, Atom("noproc")))


async def test_connection_loss_fires_noconnection(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        mb.trap_exit = True
        p = await erl_waiter(erl, mb.pid)
        await mb.link(p)
        ref = await mb.monitor(p)
        watcher = node.mailbox()
        await watcher.monitor_node(erl.name)
        erl.kill()
        got = {await mb.receive(timeout=10), await mb.receive(timeout=10)}
        assert got == {(EXIT, p, Atom("noconnection")), (DOWN, ref, PROCESS, p, Atom("noconnection"))}
        assert await watcher.receive(timeout=10) == (Atom("nodedown"), erl.name)


async def test_spawn_on_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        output: list[str] = []
        node.io_output = output.append  # type: ignore[method-assign]
        mb = node.mailbox()
        pid = await mb.spawn(erl.name, "erlang", "send", [mb.pid, Atom("spawned_hello")])
        assert pid.node == erl.name
        assert await mb.receive(timeout=10) == Atom("spawned_hello")

        pid, ref = await mb.spawn_monitor(erl.name, "timer", "sleep", [10])
        assert await mb.receive(timeout=10) == (DOWN, ref, PROCESS, pid, Atom("normal"))

        mb.trap_exit = True
        pid = await mb.spawn(erl.name, "erlang", "exit", [Atom("spawned_boom")], link=True)
        assert await mb.receive(timeout=10) == (EXIT, pid, Atom("spawned_boom"))

        pid, ref = await mb.spawn_monitor(erl.name, "no_such_module", "f", [1])
        down = await mb.receive(timeout=10)
        assert down[:4] == (DOWN, ref, PROCESS, pid)
        assert down[4][0] == Atom("undef")

        # output of a process we spawned comes to our group leader
        pid, ref = await mb.spawn_monitor(erl.name, "io", "format", [list(b"printed ~p~n"), [42]])
        assert (await mb.receive(timeout=10))[:2] == (DOWN, ref)
        assert "".join(output) == "printed 42\n"


async def test_erl_spawns_on_python(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:

        async def echo(mb: Any, to: Pid, msg: Any) -> None:
            await mb.send(to, (Atom("echoed"), msg, mb.pid))

        node.spawn_handler("py", "echo", echo)
        result = await erl_run(
            erl,
            """
            Ref = spawn_request(N, py, echo, [self(), hi], [monitor]),
            receive {spawn_reply, Ref, ok, Pid} -> ok end,
            receive {echoed, hi, Pid} -> ok end,
            receive {'DOWN', Ref, process, Pid, Reason} -> {Pid, Reason} end.
            """,
            N=node.name,
        )
        assert result[0].node == node.name and result[1] == Atom("normal")

        undef = await erl_run(
            erl,
            """
            {Pid, Ref} = spawn_monitor(N, nomod, nofun, [1, 2]),
            receive {'DOWN', Ref, process, Pid, Reason} -> Reason after 5000 -> timeout end.
            """,
            N=node.name,
        )
        assert undef == (Atom("undef"), [(Atom("nomod"), Atom("nofun"), [1, 2], [])])


async def test_alias_send_from_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        alias = mb.alias()
        await erl_run(erl, "A ! {via_alias, 1}, ok.", A=alias)
        assert await mb.receive(timeout=10) == (Atom("via_alias"), 1)
        assert mb.unalias(alias)
        # from one sender, in order: the sentinel comes first when the alias send was dropped
        await erl_run(erl, "A ! {via_alias, 2}, P ! sentinel, ok.", A=alias, P=mb.pid)
        assert await mb.receive(timeout=10) == Atom("sentinel")


async def test_64_mib_binaries_both_ways(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox("big")
        conn = await node.connect(erl.name)
        assert conn.flags & DFlag.FRAGMENTS
        blob = bytes(range(256)) * (64 * 1024 * 1024 // 256)
        echo = await erl_run(
            erl,
            "spawn(fun() -> receive {From, B} -> From ! {byte_size(B), erlang:md5(B)}, "
            "From ! {back, crypto:strong_rand_bytes(64 * 1024 * 1024)} end end).",
        )
        await mb.send(echo, (mb.pid, blob))
        size, md5 = await mb.receive(timeout=60)
        assert size == len(blob) and md5 == hashlib.md5(blob).digest()
        back = await mb.receive(timeout=60)
        assert back[0] == Atom("back") and len(back[1]) == 64 * 1024 * 1024


async def test_atom_cache_from_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox("cache")
        conn = await node.connect(erl.name)
        assert conn.flags & DFlag.DIST_HDR_ATOM_CACHE
        long_atom = "atom_" + "x" * 250
        expected = [(Atom("alpha"), Atom("beta"), [Atom("gamma"), Atom(long_atom)], i) for i in range(50)]
        await erl_run(
            erl,
            "[{cache, N} ! {alpha, beta, [gamma, list_to_atom(L)], I} || I <- lists:seq(0, 49)], ok.",
            N=node.name,
            L=list(long_atom.encode()),
        )
        got = [await mb.receive(timeout=10) for _ in range(50)]
        assert got == expected


async def test_atom_cache_in_our_payloads_spine(epmd: Epmd, erl_node: StartErl) -> None:
    # our sends put the atoms (and pids', refs' and ports' nodes) on the payload's tuple spine
    # in the header's atom cache, as erl does with all of a message's atoms: erl reads each
    # message whole, the first time as new entries, then as references to them
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox()
        echo = await erl_run(
            erl, "spawn(fun L() -> receive {From, M} -> From ! {back, M, node(From)}, L() end end)."
        )
        assert isinstance(echo, Pid)
        ref = node.make_ref()
        long_atom = Atom("spine_" + "y" * 240)
        messages = [
            Atom("spine_alone"),
            (Atom("spine_tag"), mb.pid, echo, (Atom("spine_inner"), ref, (Atom("spine_deep"),)), long_atom),
            (Atom("spine_tag"), [Atom("spine_listed")], {Atom("spine_key"): Atom("spine_value")}, b"x" * 200_000),
        ]
        for _ in range(2):  # new entries, then references to them
            for m in messages:
                await mb.send(echo, (mb.pid, m))
                assert await mb.receive(timeout=10) == (Atom("back"), m, node.name)
