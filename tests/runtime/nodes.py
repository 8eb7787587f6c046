"""Two pynodes on loopback, connected, for runtime tests (no EPMD, no erl)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio

from pynode.runtime import Node


@asynccontextmanager
async def two_nodes() -> AsyncIterator[tuple[Node, Node]]:
    """Nodes a and b that know each other's address, connected (a pinged b)."""
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            a.add_address(b.name, "127.0.0.1", b.port)
            b.add_address(a.name, "127.0.0.1", a.port)
            with anyio.fail_after(60):
                assert await a.ping(b.name)
                yield a, b
