#!/usr/bin/env python3
"""Where an rpc round trip pynode -> erl spends its time, beside erl -> erl, in one run.

    .venv/bin/python benchmarks/rpc_phases.py [--calls N] [--erl-cpus 1] [--py-cpus 0]

Each call of ``node.rpc(erl, erlang, abs, [-1])`` is cut where its request goes to the
socket (the channel's ``os.write``, or ``os.writev``) and where the answer's last bytes come in (the inline read:
``take_into`` asks whether the bytes hold the answer; or ``data_received`` when the loop reads
them) into four phases: Python
before the send, the send system call (on loopback it also delivers the bytes and wakes
erl), erl's turnaround as pynode sees it (from the end of the send to the answer's last
read), and what follows until ``rpc`` returns (matching the answer, the call's return).
erl->erl is a second erl node's ``erpc:call`` to the same erl node, timed in erl.

``--erl-cpus`` pins every thread of both erl nodes and ``--py-cpus`` this process
(``os.sched_setaffinity``): on a virtual machine a wake-up across CPUs costs tens of
microseconds, and which CPUs the processes share moves erl->erl between about 65 and 170 us.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pinning import pin  # noqa: E402
from rpc import erl_rtt, load, pct  # noqa: E402

from interop.erlnode import Epmd, ErlNode  # noqa: E402
from interop.otp import otp25  # noqa: E402
from pynode.runtime import Node, transport  # noqa: E402
from pynode.term import Atom  # noqa: E402

PHASES = ("before the send", "send syscall", "erl turnaround", "after the answer", "total")


@contextlib.contextmanager
def erl_pair() -> Iterator[tuple[Epmd, str, ErlNode, ErlNode]]:
    """An EPMD and two erl nodes sharing a cookie (a callee, and a caller for erl->erl),
    killed on the way out."""
    otp = otp25()
    epmd = Epmd(otp)
    cookie = secrets.token_hex(8)
    callee = ErlNode(otp, epmd, cookie=cookie)
    caller = ErlNode(otp, epmd, cookie=cookie)
    try:
        assert callee.proc is not None and caller.proc is not None
        yield epmd, cookie, callee, caller
    finally:
        for e in (callee, caller):
            e.kill()
            e.close()
        epmd.kill()


def cpus(text: str) -> set[int]:
    return {int(c) for c in text.split(",")}


async def phases(node: Node, erl: ErlNode, n: int) -> dict[str, list[float]]:
    peer = Atom(erl.name)
    await node.rpc(peer, "erlang", "abs", [-1])  # connect, warm up
    conn = node.connector.get(peer)
    assert conn is not None
    proto: Any = conn.channel
    now = time.perf_counter_ns
    marks: dict[str, int] = {}
    received, read, take = proto.data_received, transport._read_ready, transport._take_into

    def timed(write: Any) -> Any:
        def timed_write(fd: int, data: Any) -> int:
            marks["s0"] = now()
            try:
                return int(write(fd, data))
            finally:
                marks["s1"] = now()

        return staticmethod(timed_write)

    class TimedOs:
        """transport's ``os``, its writes timed: the send system call (in Channel.write's
        frame, or _put's, or _writev's)."""

        write = timed(os.write)
        writev = timed(os.writev)

        def __getattr__(self, name: str) -> Any:
            return getattr(os, name)

    def timed_received(data: bytes) -> None:
        marks["r0"] = now()
        received(data)

    def timed_read(epfd: int, fd: int, seconds: float, size: int) -> Any:
        data = read(epfd, fd, seconds, size)  # type: ignore[misc]  # (set when read is)
        if data:
            marks["r0"] = now()
        return data

    def timed_take(buf: bytearray, epfd: int, fd: int, seconds: float, size: int, enough: Any, reads: int) -> Any:
        def timed_enough(data: bytearray) -> bool:  # asked after each read
            marks["r0"] = now()
            return bool(enough(data))

        return take(buf, epfd, fd, seconds, size, timed_enough, reads)  # type: ignore[misc]

    proto.data_received = timed_received
    transport.os = TimedOs()  # type: ignore[assignment]
    if read is not None:  # without the compiled busy wait the loop reads every answer
        transport._read_ready = timed_read
        transport._take_into = timed_take
    out: dict[str, list[float]] = {p: [] for p in PHASES}
    try:
        for _ in range(n):
            marks.clear()
            t0 = now()
            await node.rpc(peer, "erlang", "abs", [-1])
            t1 = now()
            m = marks
            for p, ns in zip(PHASES, (m["s0"] - t0, m["s1"] - m["s0"], m["r0"] - m["s1"],
                                      t1 - m["r0"], t1 - t0), strict=True):
                out[p].append(ns / 1e3)
    finally:
        del proto.data_received
        transport.os = os
        transport._read_ready, transport._take_into = read, take
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000, help="round trips of each side")
    ap.add_argument("--erl-cpus", help="CPUs for both erl nodes, e.g. 1 or 0,1")
    ap.add_argument("--py-cpus", help="CPU list for this process, e.g. 0 or 0,1")
    opts = ap.parse_args()
    if opts.py_cpus:
        os.sched_setaffinity(0, cpus(opts.py_cpus))
    with erl_pair() as (epmd, cookie, erl, other):
        if opts.erl_cpus:
            for e in (erl, other):
                assert e.proc is not None
                pin(e.proc.pid, cpus(opts.erl_cpus))

        async def run() -> dict[str, list[float]]:
            async with Node("phases@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1") as node:
                return await phases(node, erl, opts.calls)

        got = anyio.run(run)
        erl_rtt(other, erl.name, "erlang", "abs", 100)  # connect, warm up
        ee = erl_rtt(other, erl.name, "erlang", "abs", opts.calls)
    print(f"{'rpc pynode -> erl (us)':<24} | {'p50':>7} | {'p90':>7} | {'mean':>7}   "
          f"(n={opts.calls}; erl CPUs {opts.erl_cpus or 'any'}, pynode CPUs {opts.py_cpus or 'any'}; "
          f"{os.cpu_count()} cores; {load()})")
    print("-" * 55)
    for p in PHASES:
        v = got[p]
        print(f"{p:<24} | {pct(v, .5):7.1f} | {pct(v, .9):7.1f} | {sum(v) / len(v):7.1f}")
    print(f"{'erl -> erl, total':<24} | {pct(ee, .5):7.1f} | {pct(ee, .9):7.1f} | {sum(ee) / len(ee):7.1f}")
    print(f"pynode/erl p50: {pct(got['total'], .5) / pct(ee, .5):.2f}")


if __name__ == "__main__":
    main()
