"""The blocking facade, used from plain threads."""

from __future__ import annotations

import threading

import pytest

from pynode.blocking import BlockingNode
from pynode.term import Atom


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_blocking_nodes_talk(backend: str) -> None:
    with BlockingNode("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as a:
        with BlockingNode("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", backend=backend) as b:
            assert b.node is not None
            a.connect(b.name, address=("127.0.0.1", b.node.port))
            assert a.ping(b.name)
            inbox = b.mailbox("inbox")
            out = a.mailbox()
            errors: list[BaseException] = []

            def sender() -> None:
                try:
                    for i in range(50):
                        out.send(("inbox", b.name), (i, out.pid))
                except BaseException as e:  # pragma: no cover - reported below
                    errors.append(e)

            t = threading.Thread(target=sender)
            t.start()
            got = [inbox.receive(timeout=10) for _ in range(50)]
            t.join(10)
            assert not errors
            assert [g[0] for g in got] == list(range(50))
            inbox.send(got[0][1], Atom("thanks"))
            assert out.receive(timeout=5) == Atom("thanks")
            with pytest.raises(TimeoutError):
                out.receive(timeout=0.05)
            assert a.nodes() == [b.name]
