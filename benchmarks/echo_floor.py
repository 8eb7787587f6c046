#!/usr/bin/env python3
"""dist.py's echo (c) beside erl->erl and beside a caller that does no work, per placement.

    .venv/bin/python benchmarks/echo_floor.py [--count 3000] [--repeat 4]

The floor replays pynode's own echo request: the bytes of one captured send are written again
on the same socket and the answer read back, in a plain loop (non-blocking reads, yielding the
CPU between them, as pynode's busy wait does). What is left is erl node B's work, the kernel
and the wake-ups: the round trip of any out-of-process caller in that placement, before any
work of its own. Placements: the kernel's (nothing pinned), "apart" (B on CPU 0, the callers
on CPU 1) and "shared" (all on CPU 0). Each series starts after dist.py's ECHO_SETTLE_S of
rest, as dist.py's do: in the kernel's placement a series keeps the placement it starts in.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dist import ECHO_SETTLE_S, SMALL_MSG, ErlSide, PySide, erl_nodes, erl_run, percentile  # noqa: E402
from hostload import load  # noqa: E402
from pinning import pin  # noqa: E402
from placement import sides  # noqa: E402
from rpc_floor import captured_writes, read_packets, spin_for  # noqa: E402

from pynode.term import Atom  # noqa: E402

GAPS = (0, 5)  # us the floor waits (spinning) before each call: B's scheduler sleeps after ~5-8


class Floor:
    """pynode's echo request to one echo process on B, replayed on a duplicate of the socket."""

    def __init__(self, py: PySide) -> None:
        self.py = py
        self.request = b""
        self.echo: Any = None

    async def capture(self) -> None:
        py = self.py
        self.echo = await erl_run(py.b, "pynode_dist_bench:echo().")
        out = (py.mb.pid, SMALL_MSG)
        for _ in range(100):  # the route and the atom cache settle first
            await py.mb.send(self.echo, out)
            await py.mb.receive()
        conn = py.node.connector.get(Atom(py.b.name))
        assert conn is not None
        sent = await captured_writes(conn.channel.transport, lambda: py.mb.send(self.echo, out))
        assert await py.mb.receive() == SMALL_MSG
        assert len(sent) == 1, "one write per send expected"
        self.request = sent[0]

    def run(self, warm: int, count: int, gap_us: int) -> list[int]:
        """Round trips in ns; the loop is blocked meanwhile, and nothing else reads."""
        conn = self.py.node.connector.get(Atom(self.py.b.name))
        assert conn is not None
        transport: Any = conn.channel.transport
        transport.pause_reading()
        sock = socket.socket(fileno=os.dup(transport.get_extra_info("socket").fileno()))
        times: list[int] = []
        clock = time.perf_counter_ns
        try:
            buf = bytearray()
            for i in range(warm + count):
                spin_for(gap_us * 1000)
                t0 = clock()
                sock.sendall(self.request)
                read_packets(sock, buf, 1)
                if i >= warm:
                    times.append(clock() - t0)
            assert not buf, "bytes left over: the replay lost step with erl"
        finally:
            sock.close()  # the duplicate only
            transport.resume_reading()
        return times


async def series(
    py: PySide, er: ErlSide, floor: Floor, warm: int, count: int, samples: dict[str, list[int]]
) -> None:
    """One series of each side, each after ECHO_SETTLE_S of rest."""
    await anyio.sleep(ECHO_SETTLE_S)
    samples["erl->erl"] += await er.echo(warm, count)
    await anyio.sleep(ECHO_SETTLE_S)
    samples["pynode"] += await py.echo(warm, count)
    for gap in GAPS:
        await anyio.sleep(ECHO_SETTLE_S)
        samples[f"floor, gap {gap} us"] += floor.run(warm, count, gap)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=3_000, help="round trips per timed series")
    ap.add_argument("--repeat", type=int, default=4, help="timed series of each side per placement")
    opts = ap.parse_args()
    two = len(os.sched_getaffinity(0)) >= 2
    every = os.sched_getaffinity(0)
    rows: list[tuple[str, dict[str, list[int]]]] = []
    with erl_nodes(2, "echo_floor") as (epmd, (a, b)):
        assert a.proc is not None and b.proc is not None

        def place(cpus_b: set[int], cpus_a: set[int], cpus_py: set[int]) -> None:
            pin(b.proc.pid, cpus_b)  # type: ignore[union-attr]
            pin(a.proc.pid, cpus_a)  # type: ignore[union-attr]
            pin(os.getpid(), cpus_py)

        async def run() -> None:
            async with sides("echofloor", a, b, epmd) as (py, er):
                floor = Floor(py)
                await floor.capture()
                warm = max(1, opts.count // 10)
                plan: list[tuple[str, tuple[set[int], set[int], set[int]]]] = [("kernel", (every,) * 3)]
                if two:
                    plan.append(("apart", ({0}, {1}, {1})))
                plan.append(("shared", ({0}, {0}, {0})))
                for name, cpus in plan:
                    samples: dict[str, list[int]] = {
                        key: [] for key in ("erl->erl", "pynode", *(f"floor, gap {g} us" for g in GAPS))
                    }
                    place(*cpus)
                    for _ in range(opts.repeat):
                        await series(py, er, floor, warm, opts.count, samples)
                    rows.append((name, samples))
                place(every, every, every)

        anyio.run(run)
    print(f"echo round trip p50 / p99 in us, ratio to erl->erl's p50 ({opts.count:,} x {opts.repeat} "
          f"per side; {os.cpu_count()} cores; {load()})")
    for name, samples in rows:
        e50 = percentile(samples["erl->erl"], 50) / 1e3
        print(f"\n{name}")
        for key, ts in samples.items():
            p50, p99 = percentile(ts, 50) / 1e3, percentile(ts, 99) / 1e3
            print(f"  {key:<18} {p50:7.1f} / {p99:7.1f}   {p50 / e50:5.2f}x")


if __name__ == "__main__":
    main()
