"""A connection replaced by a new one to the same node name goes down first, as in erts:
its links and monitors fire with noconnection and nodedown comes before the nodeup."""

from __future__ import annotations

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
