"""A connection replaced by a new one to the same node name goes down first, as in erts:
its links and monitors fire with noconnection and nodedown comes before the nodeup."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from pynode.runtime import Node
from pynode.term import Atom

NOCONNECTION = Atom("noconnection")


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_a_restarted_peer_takes_the_old_connection_down_first(anyio_backend: str) -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        watcher = a.mailbox()
        watcher.trap_exit = True
        async with a.node_events() as events:
            async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b1:
                a.add_address(b1.name, "127.0.0.1", b1.port)
                with anyio.fail_after(30):
                    assert await a.ping(b1.name)
                    assert await events.receive() == ("nodeup", b1.name)
                monitored, linked = b1.mailbox(), b1.mailbox()
                ref = await watcher.monitor(monitored.pid)
                await watcher.link(linked.pid)
                with anyio.fail_after(30):  # a round trip on the same connection: b1 has the link
                    assert await a.ping(b1.name)
                assert watcher.pid in linked.links
                # b1 goes on running: its successor (same name, new creation) dials a, which
                # answers "alive"; the successor says it is a new incarnation: a drops b1
                async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b2:
                    assert b2.creation != b1.creation
                    b2.add_address(a.name, "127.0.0.1", a.port)
                    with anyio.fail_after(30):
                        assert await b2.ping(a.name)
                        got = {await watcher.receive(), await watcher.receive()}
                        assert got == {
                            (Atom("DOWN"), ref, Atom("process"), monitored.pid, NOCONNECTION),
                            (Atom("EXIT"), linked.pid, NOCONNECTION),
                        }
                        down = await events.receive()
                        assert down[:2] == ("nodedown", b1.name)
                        assert await events.receive() == ("nodeup", b2.name)
                    conn = a.connector.get(b2.name)
                    assert conn is not None and conn.peer_creation == b2.creation


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_connection_down_already_keeps_its_reason(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old connection went down on its own (its peer stopped) and is still closing its
    socket when the successor connects: nodedown carries the real reason, once."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with a.node_events() as events:
            closing, gate = anyio.Event(), anyio.Event()
            async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b1:
                a.add_address(b1.name, "127.0.0.1", b1.port)
                with anyio.fail_after(30):
                    assert await a.ping(b1.name)
                    assert await events.receive() == ("nodeup", b1.name)
                old = a.connector.get(b1.name)
                assert old is not None
                cls = type(old.channel)
                real_aclose = cls.aclose

                async def held_aclose(self: Any) -> None:
                    if self is old.channel:  # a's end of the old connection closes slowly
                        closing.set()
                        with anyio.CancelScope(shield=True):
                            await gate.wait()
                    await real_aclose(self)

                monkeypatch.setattr(cls, "aclose", held_aclose)
            with anyio.fail_after(30):
                await closing.wait()  # b1 stopped: a's old connection is down, not yet reported
            assert not old.alive and old.down_reason is not None
            real_reason = old.down_reason
            try:
                async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b2:
                    b2.add_address(a.name, "127.0.0.1", a.port)
                    with anyio.fail_after(30):
                        assert await b2.ping(a.name)
                        assert await events.receive() == ("nodedown", b1.name, real_reason)
                        gate.set()
                        assert await events.receive() == ("nodeup", b2.name)
            finally:
                gate.set()  # a failed check must not leave the old socket's close waiting


@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_a_processs_repeated_sends_follow_the_replacing_connection(
    anyio_backend: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A mailbox keeps the route of its last remote send (Mailbox.send). A connection that a
    new one replaced is out of the node's table before its task ends and it is down: a send
    in between goes over the new connection, not into the old socket."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        mb = a.mailbox()
        async with a.node_events() as events:
            async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b1:
                a.add_address(b1.name, "127.0.0.1", b1.port)
                inbox1 = b1.mailbox("inbox")
                dest = ("inbox", b1.name)
                await mb.send(dest, Atom("one"))  # connects first
                await mb.send(dest, Atom("one"))  # the route is kept
                with anyio.fail_after(30):
                    assert [await inbox1.receive() for _ in range(2)] == [Atom("one")] * 2
                    assert await events.receive() == ("nodeup", b1.name)
                old = a.connector.get(b1.name)
                assert old is not None
                # the old connection's task is slow to end: it stays up, out of the table
                monkeypatch.setattr(old, "close", lambda reason=None: None)
                async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b2:
                    inbox2 = b2.mailbox("inbox")
                    b2.add_address(a.name, "127.0.0.1", a.port)
                    with anyio.fail_after(30):
                        assert await b2.ping(a.name)
                        assert (await events.receive())[:2] == ("nodedown", b1.name)
                        assert await events.receive() == ("nodeup", b2.name)
                    assert old.alive and a.connector.get(b2.name) is not old
                    await mb.send(dest, Atom("two"))
                    with anyio.fail_after(30):
                        assert await inbox2.receive() == Atom("two")
                    assert len(inbox1) == 0
