#!/usr/bin/env python3
"""The rpc round trip of a caller that does no work, beside pynode and erl->erl, per placement.

    .venv/bin/python benchmarks/rpc_floor.py [--calls 3000] [--gaps 0,5,8,20]

pynode's rpc to an erl node is replayed without pynode: the bytes of one captured call
(its SPAWN_REQUEST) are written again on the same socket, and the answer's two packets read
back, in a plain loop (non-blocking reads, yielding the CPU between them, as pynode's busy
wait does). That is the round trip of an out-of-process caller whose own work costs nothing:
what is left is erl's work, the kernel and the wake-ups. ``--gaps`` waits that many
microseconds (spinning) before each replayed call: an erl scheduler spins only a short while
after its last work before it sleeps, and a caller that takes longer between calls than that
finds it asleep and pays its wake-up (on the 2-core VM a gap of 8 us already did, in 3 runs
of 4). pynode's own gap (the answer's handling, the task's resumption and the next request)
is 30-50 us.

Each placement pins the callee erl node to one CPU and both callers (pynode and a second erl
node, which times erl->erl) to another, or all of them to the same CPU: erl->erl swings in
``rpc.py`` with where the kernel puts the two erl nodes, and here each one is measured in
both. Needs 2 CPUs for the "apart" placement. In the shared placement, erl's caller also
calls pynode (``erl -> pynode``: pynode's work is the answer).
"""

from __future__ import annotations

import argparse
import os
import secrets
import socket
import struct
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from pinning import pin  # noqa: E402
from rpc import erl_rtt, load, pct  # noqa: E402
from rpc_phases import erl_pair  # noqa: E402

from interop.erlnode import ErlNode  # noqa: E402
from pynode.runtime import Node  # noqa: E402
from pynode.term import Atom  # noqa: E402

ANSWER_PACKETS = 2  # SPAWN_REPLY, then the exit (MONITOR_P_EXIT) carrying the result
SPIN_LIMIT = 5.0  # seconds a replayed call may wait for its answer before the run fails


def read_packets(sock: socket.socket, buf: bytearray, count: int) -> None:
    """Read until ``count`` non-empty distribution packets are in (ticks are empty)."""
    got = 0
    deadline = time.monotonic() + SPIN_LIMIT
    while True:
        while len(buf) >= 4:
            (size,) = struct.unpack_from(">I", buf)
            if len(buf) < 4 + size:
                break
            del buf[: 4 + size]
            if size:
                got += 1
                if got == count:
                    return
        while True:
            try:
                data = sock.recv(65536, socket.MSG_DONTWAIT)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise TimeoutError("no answer from erl to a replayed call") from None
                os.sched_yield()
        if not data:
            raise EOFError("erl closed the connection")
        buf += data


def spin_for(ns: int) -> None:
    end = time.perf_counter_ns() + ns
    while time.perf_counter_ns() < end:
        pass


async def captured_writes(transport: Any, act: Callable[[], Awaitable[Any]]) -> list[bytes]:
    """The bytes that ``act()`` writes on ``transport``'s socket (through the transport, or
    straight to the socket as a lone packet goes), each write's; they go out as usual."""
    fd = transport.get_extra_info("socket").fileno()
    sent: list[bytes] = []
    write, os_write = transport.write, os.write

    def capture(data: Any) -> None:
        sent.append(bytes(data))
        write(data)

    def capture_os(to: int, data: Any) -> int:
        if to == fd:
            sent.append(bytes(data))
        return os_write(to, data)

    transport.write = capture
    os.write = capture_os
    try:
        await act()
    finally:
        del transport.write
        os.write = os_write
    return sent


async def pynode_and_floor(node: Node, erl: ErlNode, n: int, gaps: list[int]) -> dict[str, list[float]]:
    peer = Atom(erl.name)
    now = time.perf_counter_ns
    for _ in range(300):  # connect, warm up
        await node.rpc(peer, "erlang", "abs", [-1])
    out: dict[str, list[float]] = {"pynode": []}
    for _ in range(n):
        t0 = now()
        await node.rpc(peer, "erlang", "abs", [-1])
        out["pynode"].append((now() - t0) / 1e3)
    conn = node.connector.get(peer)
    assert conn is not None
    transport: Any = conn.channel.transport
    sent = await captured_writes(transport, lambda: node.rpc(peer, "erlang", "abs", [-1]))
    assert len(sent) == 1, "one write per call expected"
    request = sent[0]
    transport.pause_reading()  # the loop is blocked below anyway; nothing else reads
    sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
    try:
        buf = bytearray()
        for gap in gaps:
            times = out[f"floor, gap {gap} us"] = []
            for i in range(n + 300):
                spin_for(gap * 1000)
                t0 = now()
                sock.sendall(request)
                read_packets(sock, buf, ANSWER_PACKETS)
                if i >= 300:
                    times.append((now() - t0) / 1e3)
        assert not buf, "bytes left over: the replay lost step with erl"
    finally:
        sock.close()  # the dup only: the transport's socket stays open
        transport.resume_reading()
    return out


def measure(callee_cpu: int, caller_cpu: int, n: int, gaps: list[int]) -> dict[str, list[float]]:
    os.sched_setaffinity(0, {caller_cpu})
    with erl_pair() as (epmd, cookie, callee, caller):
        assert callee.proc is not None and caller.proc is not None
        pin(callee.proc.pid, {callee_cpu})
        pin(caller.proc.pid, {caller_cpu})

        async def run() -> dict[str, list[float]]:
            async with Node(
                f"floor{secrets.token_hex(3)}@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1"
            ) as node:
                got = await pynode_and_floor(node, callee, n, gaps)
                if callee_cpu == caller_cpu:  # all on one CPU: the other way too, erl's caller
                    node.expose("py", "abs")(abs)  # calling pynode (its answer is pynode's work)
                    me = str(node.name)
                    await anyio.to_thread.run_sync(erl_rtt, caller, me, "py", "abs", 300)
                    got["erl -> pynode"] = await anyio.to_thread.run_sync(erl_rtt, caller, me, "py", "abs", n)
                return got

        got = anyio.run(run)
        erl_rtt(caller, callee.name, "erlang", "abs", 300)  # connect, warm up
        got["erl -> erl"] = erl_rtt(caller, callee.name, "erlang", "abs", n)
        return got


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=3000, help="round trips of each series")
    ap.add_argument("--gaps", default="0,5,8,20", help="microseconds before each replayed call")
    opts = ap.parse_args()
    gaps = [int(g) for g in opts.gaps.split(",")]
    placements = [("shared: all on CPU 0", 0, 0)]
    if (os.cpu_count() or 1) >= 2:
        placements.insert(0, ("apart: erl CPU 0, callers CPU 1", 0, 1))
    print(f"rpc round trips (us), n={opts.calls} each; {os.cpu_count()} cores; {load()}")
    for title, callee_cpu, caller_cpu in placements:
        got = measure(callee_cpu, caller_cpu, opts.calls, gaps)
        ee = pct(got["erl -> erl"], 0.5)
        print(f"\n{title:<32} |     p50 |     p99 | p50 / erl->erl")
        print("-" * 66)
        for name, v in got.items():
            print(f"{name:<32} | {pct(v, .5):7.1f} | {pct(v, .99):7.1f} | {pct(v, .5) / ee:6.2f}")
    print(f"\nafter: {load()}")


if __name__ == "__main__":
    main()
