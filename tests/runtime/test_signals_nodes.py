"""Links, monitors, exits and spawn between two pynodes (no erl): the same signals the
interop tests check against erl, here without it, on asyncio and trio."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pynode.runtime import Node
from pynode.term import Atom, Pid

from .nodes import two_nodes

pytestmark = pytest.mark.anyio

EXIT, DOWN, PROCESS = Atom("EXIT"), Atom("DOWN"), Atom("process")
SENTINEL = Atom("sentinel")


async def test_link_exit_crosses_nodes_and_unlink_stops_it() -> None:
    async with two_nodes() as (a, b):
        watcher = a.mailbox()
        watcher.trap_exit = True
        remote = b.mailbox()
        await watcher.link(remote.pid)
        with anyio.fail_after(30):
            while watcher.pid not in remote.links:  # the LINK signal arrived
                await anyio.sleep(0.01)
        remote.close(Atom("boom"))
        assert await watcher.receive(timeout=30) == (EXIT, remote.pid, Atom("boom"))

        other = b.mailbox()
        await watcher.link(other.pid)
        await watcher.unlink(other.pid)
        # the unlink is done when b has dropped it; then other's death is not ours
        with anyio.fail_after(30):
            while watcher.pid in other.links:
                await anyio.sleep(0.01)
        other.close(Atom("boom2"))
        sender = b.mailbox()
        await sender.send(watcher.pid, SENTINEL)  # after other's exit, on the same connection
        assert await watcher.receive(timeout=30) == SENTINEL


async def test_untrapped_exit_kills_the_linked_mailbox() -> None:
    async with two_nodes() as (a, b):
        victim = a.mailbox()
        remote = b.mailbox()
        await victim.link(remote.pid)
        with anyio.fail_after(30):
            while victim.pid not in remote.links:
                await anyio.sleep(0.01)
        remote.close(Atom("crash"))
        with anyio.fail_after(30):
            while not victim.closed:
                await anyio.sleep(0.01)
        # a 'normal' exit does not kill a linked, non-trapping process
        survivor = a.mailbox()
        calm = b.mailbox()
        await survivor.link(calm.pid)
        with anyio.fail_after(30):
            while survivor.pid not in calm.links:
                await anyio.sleep(0.01)
        calm.close()
        await b.mailbox().send(survivor.pid, SENTINEL)
        assert await survivor.receive(timeout=30) == SENTINEL and not survivor.closed


async def test_monitor_and_demonitor_across_nodes() -> None:
    async with two_nodes() as (a, b):
        mb = a.mailbox()
        target = b.mailbox()
        ref = await mb.monitor(target.pid)
        with anyio.fail_after(30):  # the MONITOR signal arrived (else the DOWN says noproc)
            while not target.monitored_by:
                await anyio.sleep(0.01)
        target.close(Atom("bye"))
        assert await mb.receive(timeout=30) == (DOWN, ref, PROCESS, target.pid, Atom("bye"))

        t2 = b.mailbox()
        ref2 = await mb.monitor(t2.pid)
        with anyio.fail_after(30):
            while not t2.monitored_by:
                await anyio.sleep(0.01)
        assert await mb.demonitor(ref2)
        with anyio.fail_after(30):
            while t2.monitored_by:  # b has dropped the monitor
                await anyio.sleep(0.01)
        t2.close(Atom("gone"))
        await b.mailbox().send(mb.pid, SENTINEL)
        assert await mb.receive(timeout=30) == SENTINEL

        # a monitor of a name; a dead pid gives noproc
        named = b.mailbox("named_one")
        ref3 = await mb.monitor((Atom("named_one"), b.name))
        with anyio.fail_after(30):
            while not named.monitored_by:
                await anyio.sleep(0.01)
        named.close(Atom("x"))
        got = await mb.receive(timeout=30)
        assert got[:2] == (DOWN, ref3) and got[4] == Atom("x")
        ref4 = await mb.monitor(target.pid)
        assert await mb.receive(timeout=30) == (DOWN, ref4, PROCESS, target.pid, Atom("noproc"))


async def test_node_loss_fires_links_and_monitors_with_noconnection() -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        mb = a.mailbox()
        mb.trap_exit = True
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            a.add_address(b.name, "127.0.0.1", b.port)
            remote = b.mailbox()
            await mb.link(remote.pid)
            ref = await mb.monitor(remote.pid)
            with anyio.fail_after(30):
                while not remote.links or not remote.monitored_by:
                    await anyio.sleep(0.01)
            pid = remote.pid
        got = {await mb.receive(timeout=30), await mb.receive(timeout=30)}
        assert got == {(EXIT, pid, Atom("noconnection")), (DOWN, ref, PROCESS, pid, Atom("noconnection"))}


async def test_spawn_across_nodes_with_link_and_monitor() -> None:
    async with two_nodes() as (a, b):

        async def echo(mb: Any, to: Pid, msg: Any) -> None:
            await mb.send(to, (Atom("echoed"), msg, mb.pid))
            if msg == Atom("die"):
                raise RuntimeError("asked to")

        b.spawn_handler("py", "echo", echo)
        mb = a.mailbox()
        mb.trap_exit = True
        pid, ref = await mb.spawn_monitor(b.name, "py", "echo", [mb.pid, Atom("hi")])
        assert pid.node == b.name
        assert await mb.receive(timeout=30) == (Atom("echoed"), Atom("hi"), pid)
        assert await mb.receive(timeout=30) == (DOWN, ref, PROCESS, pid, Atom("normal"))

        pid2 = await mb.spawn(b.name, "py", "echo", [mb.pid, Atom("die")], link=True)
        assert await mb.receive(timeout=30) == (Atom("echoed"), Atom("die"), pid2)
        exit_msg = await mb.receive(timeout=30)
        assert exit_msg[:2] == (EXIT, pid2) and exit_msg[2] != Atom("normal")

        # an unknown function: the process starts and dies with undef, as in erl
        pid3, ref3 = await mb.spawn_monitor(b.name, "nomod", "nofun", [])
        down = await mb.receive(timeout=30)
        assert down[:4] == (DOWN, ref3, PROCESS, pid3) and "undef" in repr(down[4])
