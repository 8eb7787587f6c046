"""Distribution over IPv6 (``-proto_dist inet6_tcp``, ``name@::1``) both ways, against OTP 25
and 28."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anyio
import pytest

from pynode.runtime import Node
from pynode.term import Atom

from .erlnode import Epmd, ErlNode, unique
from .otp import Otp

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def epmd6(otp: Otp) -> Iterator[Epmd]:
    """A private EPMD on both loopbacks: an inet6_tcp erl registers over ::1."""
    e = Epmd(otp, address="127.0.0.1,::1")
    try:
        yield e
    finally:
        e.kill()


@pytest.fixture
def erl6(otp: Otp, epmd6: Epmd) -> Iterator[ErlNode]:
    node = ErlNode(otp, epmd6, host="::1", args=["-proto_dist", "inet6_tcp"])
    try:
        yield node
    finally:
        try:
            node.kill()
        finally:
            node.close()


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


async def test_ipv6_both_ways(epmd6: Epmd, erl6: ErlNode) -> None:
    async with Node(
        unique("py6") + "@::1", erl6.cookie, listen_host="::1", epmd_port=epmd6.port
    ) as node:
        node.expose("py6", "where")(lambda: Atom("python"))
        # pynode dials erl (EPMD look-up on ::1, then an IPv6 connection)
        assert await node.ping(erl6.name) is True
        conn = node.connection(erl6.name)
        assert conn is not None and conn.channel.peer_address[0] == "::1"
        assert await node.rpc(erl6.name, "erlang", "node", [], timeout=10) == erl6.name
        box = node.mailbox("inbox6")
        await erl_run(erl6, "{inbox6, N} ! {hello, node()}, ok.", N=node.name)
        assert await box.receive(timeout=10) == (Atom("hello"), erl6.name)

    async with Node(
        unique("py6") + "@::1", erl6.cookie, listen_host="::1", epmd_port=epmd6.port
    ) as node:
        node.expose("py6", "where")(lambda: Atom("python"))
        # erl dials pynode: its inet6_tcp finds us through EPMD and connects over ::1
        assert await erl_run(erl6, "net_adm:ping(N).", N=node.name) == Atom("pong")
        assert await erl_run(erl6, "rpc:call(N, py6, where, []).", N=node.name) == Atom("python")
        conn = node.connection(erl6.name)
        assert conn is not None and conn.channel.peer_address[0] == "::1"
