#!/usr/bin/env python3
"""dist.py's (b), small messages erl -> pynode beside erl -> erl, with each pair pinned.

    .venv/bin/python benchmarks/recv_place.py [--msgs 100000] [--repeat 5]

In dist.py the kernel places the processes, and erl->erl's rate swings with it (131-380k
msgs/s on the 2-core VM, 2026-12-03): when it puts the sending erl node and the receiving
one on one CPU, their hand-overs cost no wake-up across CPUs. Here the sender (erl node B)
and the receiver (pynode, or erl node A) are pinned the same way for both: on two CPUs
("apart", needs 2) or on one ("shared"). Each placement warms both sides up, then alternates
``--repeat`` timed runs of each; the medians are printed with their ratio (>= 1: pynode
receives as fast as erl), and the CPU each run took per message in the sender B and in the
receiver (pynode's process, or erl node A): on one CPU the rate is one over their sum.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dist import erl_nodes  # noqa: E402
from hostload import load  # noqa: E402
from placement import place, placements, sides  # noqa: E402
from recv_wire import cpu_ns  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msgs", type=int, default=100_000, help="messages per timed run")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs of each side per placement")
    opts = ap.parse_args()
    rows: list[tuple[str, float, float, dict[str, float]]] = []
    with erl_nodes(2, "recv_place") as (epmd, (a, b)):
        assert a.proc is not None and b.proc is not None
        b_pid, a_pid = b.proc.pid, a.proc.pid

        async def run() -> None:
            async with sides("recvplace", a, b, epmd) as (py, er):
                warm = max(1, opts.msgs // 5)
                for name, cpus in placements().items():
                    place(a, b, cpus)
                    await py.recv_small(warm)
                    await er.recv_small(warm)
                    got: dict[str, list[float]] = {"py": [], "erl": []}
                    cpu: dict[str, list[float]] = {k: [] for k in ("B py", "B erl", "py", "erl")}
                    for _ in range(opts.repeat):  # alternating: a burst of load hits both
                        for side, run, receiver in (("py", py, os.getpid()), ("erl", er, a_pid)):
                            b0, r0 = cpu_ns(b_pid), cpu_ns(receiver)
                            got[side].append(await run.recv_small(opts.msgs))
                            cpu["B " + side].append((cpu_ns(b_pid) - b0) / opts.msgs / 1e3)
                            cpu[side].append((cpu_ns(receiver) - r0) / opts.msgs / 1e3)
                    rows.append((name, statistics.median(got["py"]), statistics.median(got["erl"]),
                                 {k: statistics.median(v) for k, v in cpu.items()}))

        anyio.run(run)
    print(f"{'(b) erl -> receiver (msgs/s)':<30} | {'pynode':>9} | {'erl->erl':>9} | pynode/erl | "
          f"CPU us/msg: B, pynode | B, erl A   "
          f"({opts.msgs:,} msgs x {opts.repeat}, medians; {os.cpu_count()} cores; {load()})")
    print("-" * 97)
    for where, p, e, c in rows:
        label = "apart: B on CPU 0, receiver 1" if where == "apart" else "shared: all on CPU 0"
        print(f"{label:<30} | {p:9,.0f} | {e:9,.0f} | {p / e:10.3f} | "
              f"{c['B py']:10.2f}, {c['py']:6.2f} | {c['B erl']:4.2f}, {c['erl']:5.2f}")


if __name__ == "__main__":
    main()
