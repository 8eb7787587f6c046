"""Pinning a benchmark's pair alike for pynode and for erl (recv_place.py, echo_place.py).

erl node B is the peer; the other side is erl node A or pynode (this process). "apart" puts
B on CPU 0 and the other side on CPU 1 (needs 2 CPUs), "shared" puts all on CPU 0.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from dist import ErlSide, PySide, erl_run, unique
from pinning import pin

from interop.erlnode import Epmd, ErlNode
from pynode.runtime import Node
from pynode.term import Atom

# placement: CPUs of erl node B, of erl node A, of pynode
PLACEMENTS = {"apart": ({0}, {1}, {1}), "shared": ({0}, {0}, {0})}


def placements() -> dict[str, tuple[set[int], set[int], set[int]]]:
    """The placements this machine can take (apart needs two CPUs)."""
    return {k: v for k, v in PLACEMENTS.items() if k == "shared" or len(os.sched_getaffinity(0)) >= 2}


def place(a: ErlNode, b: ErlNode, cpus: tuple[set[int], set[int], set[int]]) -> None:
    """Pin B, A and this process's threads (pynode's loops, a BlockingNode's caller) as
    ``cpus`` says."""
    assert a.proc is not None and b.proc is not None
    pin(b.proc.pid, cpus[0])
    pin(a.proc.pid, cpus[1])
    pin(os.getpid(), cpus[2])


@asynccontextmanager
async def sides(prefix: str, a: ErlNode, b: ErlNode, epmd: Epmd) -> AsyncIterator[tuple[PySide, ErlSide]]:
    """A pynode node connected to B, and erl A connected to B: dist.py's two sides. This
    process's CPUs are given back afterwards."""
    own = os.sched_getaffinity(0)
    try:
        async with Node(unique(prefix) + "@127.0.0.1", b.cookie, listen_host="127.0.0.1",
                        epmd_port=epmd.port) as node:
            if not await node.ping(b.name):
                raise RuntimeError(f"pynode cannot reach {b.name}")
            if await erl_run(a, "net_adm:ping(B).", B=b.name) != Atom("pong"):
                raise RuntimeError(f"{a.name} cannot reach {b.name}")
            yield PySide(node, b), ErlSide(a, b)
    finally:
        pin(os.getpid(), own)
