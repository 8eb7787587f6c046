#!/usr/bin/env python3
"""dist.py's echo (c), pynode -> erl node B -> pynode beside erl A -> B -> A, each pair pinned.

    .venv/bin/python benchmarks/echo_place.py [--count 5000] [--repeat 5]

In dist.py the kernel places the processes, and erl->erl's echo swings with it: 79-89 us p50
when A and B run on two CPUs, 13.7-23.5 us when the kernel puts them on one (2026-12-04,
2-core VM), while pynode's caller stays on the other CPU. Here the callee (erl node B) and the
caller (pynode, or erl node A) are pinned the same way for both: on two CPUs ("apart",
needs 2) or on one ("shared"). Each placement warms both sides up, then alternates
``--repeat`` series of ``--count`` round trips each; p50 and p99 of the pooled samples are
printed with their ratios (<= 1: pynode is as fast as erl). dist.py's (e), the same echo
from a plain thread through a BlockingNode (its loop thread and the caller pinned with
pynode), takes its turn in each series: its p50 is printed against the async one's.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dist import blocking_echo, erl_nodes, percentile, start_blocking  # noqa: E402
from hostload import load  # noqa: E402
from placement import place, placements, sides  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=5_000, help="round trips per timed series")
    ap.add_argument("--repeat", type=int, default=5, help="timed series of each side per placement")
    opts = ap.parse_args()
    rows: list[tuple[str, list[int], list[int], list[int]]] = []
    with erl_nodes(2, "echo_place") as (epmd, (a, b)):
        blocking = start_blocking(b, epmd.port)

        async def run() -> None:
            async with sides("echoplace", a, b, epmd) as (py, er):
                warm = max(1, opts.count // 10)
                for name, cpus in placements().items():
                    place(a, b, cpus)
                    samples: dict[str, list[int]] = {"py": [], "erl": [], "blocking": []}
                    for _ in range(opts.repeat):  # alternating: a burst of load hits both
                        samples["py"] += await py.echo(warm, opts.count)
                        samples["erl"] += await er.echo(warm, opts.count)
                        samples["blocking"] += await anyio.to_thread.run_sync(
                            blocking_echo, blocking, b, warm, opts.count
                        )
                    rows.append((name, samples["py"], samples["erl"], samples["blocking"]))

        try:
            anyio.run(run)
        finally:
            blocking.stop()
    print(f"{'echo round trip (us)':<32} | {'pynode p50/p99':>15} | {'erl->erl p50/p99':>16} | "
          f"{'ratio p50, p99':>14} | {'BlockingNode p50/p99':>20} | blocking/async p50   "
          f"({opts.count:,} x {opts.repeat} per side; {os.cpu_count()} cores; {load()})")
    print("-" * 128)
    for where, p, e, bl in rows:
        label = "apart: B on CPU 0, caller on 1" if where == "apart" else "shared: all on CPU 0"
        p50, p99 = percentile(p, 50) / 1e3, percentile(p, 99) / 1e3
        e50, e99 = percentile(e, 50) / 1e3, percentile(e, 99) / 1e3
        b50, b99 = percentile(bl, 50) / 1e3, percentile(bl, 99) / 1e3
        print(f"{label:<32} | {p50:6.1f} / {p99:6.1f} | {e50:7.1f} / {e99:6.1f} | "
              f"{p50 / e50:.3f}, {p99 / e99:.3f}   | {b50:9.1f} / {b99:8.1f} | {b50 / p50:.3f}")


if __name__ == "__main__":
    main()
