#!/usr/bin/env python3
"""Workload (b) seen from the sender: what erl node B spends per message sent to pynode and
to erl node A, and how many TCP segments the messages take on the way.

Run from the repository root::

    .venv/bin/python benchmarks/recv_wire.py              # 6 turns of each side, ~20 s
    .venv/bin/python benchmarks/recv_wire.py --small 50000 --turns 3

It sets up dist.py's nodes (a private EPMD, erl nodes A and B, a hidden pynode node) and runs
dist.py's (b) in turns: B's sender sends N small messages to pynode, then to A. Around each
run it reads, for B's OS process, the CPU time of all its threads (``/proc/PID/task/*/
schedstat``) and their context switches, and for B's socket to the receiver the segments
it sent and received (``ss -ti``: data out, mostly ACKs in). Each row is one run; per 1000
messages unless said otherwise.

Why: in (b) the sender, not the receiver, sets the rate (B is at a whole core), and what B
pays per message depends on how the receiver reads: a receiver that empties its socket at
each read makes the kernel ACK every small segment, and B then sends each message in a
segment of its own (see ``READ_MIN`` in pynode/runtime/connection.py).
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
import dist  # noqa: E402
from pinning import pin  # noqa: E402

from interop.erlnode import Epmd, ErlNode, unique  # noqa: E402
from pynode.runtime import Node  # noqa: E402


def cpu_ns(pid: int) -> int:
    """Nanoseconds on CPU of every thread of ``pid`` so far."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            total += int(Path(f"/proc/{pid}/task/{t}/schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):  # a thread that just ended
            pass
    return total


def switches(pid: int) -> int:
    """Voluntary and involuntary context switches of every thread of ``pid`` so far."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            text = Path(f"/proc/{pid}/task/{t}/status").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        total += sum(int(n) for n in re.findall(r"^(?:non)?voluntary_ctxt_switches:\s+(\d+)", text, re.M))
    return total


def segments(port: int) -> dict[int, dict[str, int]]:
    """Established TCP connections with local port ``port``: peer port -> their counters
    (``ss -ti``): ``out`` and ``in`` segments, ``busy`` and ``rwnd`` (ms sending, and of those
    held back by the receiver's window), and ``cwnd`` now (segments)."""
    out = subprocess.run(
        ["ss", "-tinH", "state", "established", f"( sport = :{port} )"],
        capture_output=True, text=True, check=True,
    ).stdout
    res: dict[int, dict[str, int]] = {}
    peer = None
    for line in out.splitlines():
        if not line[:1].isspace():
            fields = line.split()
            peer = int(fields[-1].rpartition(":")[2]) if len(fields) >= 2 else None
            continue
        so, si = re.search(r"segs_out:(\d+)", line), re.search(r"segs_in:(\d+)", line)
        if peer is not None and so and si:
            found = {k: re.search(rf"\b{k}:(\d+)", line) for k in ("busy", "rwnd_limited", "cwnd")}
            res[peer] = {
                "out": int(so.group(1)),
                "in": int(si.group(1)),
                **{k.partition("_")[0]: int(m.group(1)) if m else 0 for k, m in found.items()},
            }
    return res


_NONE = {"out": 0, "in": 0, "busy": 0, "rwnd": 0, "cwnd": 0}


async def turns(
    a: ErlNode, b: ErlNode, epmd: Epmd, n: int, count: int, cpus: set[int] | None
) -> list[tuple[str, dict[str, float]]]:
    assert a.proc is not None and b.proc is not None
    bpid = b.proc.pid
    async with Node(
        unique("wire") + "@127.0.0.1", b.cookie, listen_host="127.0.0.1", epmd_port=epmd.port
    ) as node:
        if not await node.ping(b.name):
            raise RuntimeError(f"pynode cannot reach {b.name}")
        py, er = dist.PySide(node, b), dist.ErlSide(a, b)
        if cpus:  # after the nodes' start (their threads all exist), before the warm-up
            for pid in (a.proc.pid, b.proc.pid):
                pin(pid, cpus)
            os.sched_setaffinity(0, cpus)
        await py.recv_small(n)  # warm-up; A connects to B here too
        await er.recv_small(n)
        conn = node.connector.connections[b.name]
        sock: Any = conn.channel.peer_address
        bport = int(sock[1])
        mine = int(conn.channel.transport.get_extra_info("sockname")[1])  # type: ignore[attr-defined]
        rows: list[tuple[str, dict[str, float]]] = []
        for _ in range(count):
            for side, run in (("pynode", py), ("erl A", er)):
                s0, c0, x0 = segments(bport), cpu_ns(bpid), switches(bpid)
                rate = await run.recv_small(n)
                s1, c1, x1 = segments(bport), cpu_ns(bpid), switches(bpid)
                others = [p for p in s1 if p != mine]
                peer = mine if side == "pynode" else max(others, key=lambda p: s1[p]["out"] - s0.get(p, _NONE)["out"])
                d = {k: s1[peer][k] - s0.get(peer, _NONE)[k] for k in ("out", "in", "busy", "rwnd")}
                rows.append((side, {
                    "rate": rate,
                    "cpu_us": (c1 - c0) / n / 1e3,
                    "segs": d["out"] / n * 1000,
                    "acks": d["in"] / n * 1000,
                    "cs": (x1 - x0) / n * 1000,
                    "rwnd": 100 * d["rwnd"] / d["busy"] if d["busy"] > 0 else 0.0,
                    "cwnd": s1[peer]["cwnd"],
                }))
        return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=100_000, help="messages per run")
    ap.add_argument("--turns", type=int, default=6, help="runs of each side, alternating")
    ap.add_argument("--pin", metavar="CPUS", help="pin both erl nodes and pynode to these CPUs (e.g. 0); "
                    "default: where the kernel puts them")
    args = ap.parse_args()
    cpus = {int(c) for c in args.pin.split(",")} if args.pin else None
    placed = f"all pinned to CPU {args.pin}, " if cpus else ""
    with dist.erl_nodes(2, "pynode_recv_wire") as (epmd, (a, b)):
        rows = anyio.run(turns, a, b, epmd, args.small, args.turns, cpus)
    head = (f"{'receiver':<8} | {'msgs/s':>9} | {'B CPU us/msg':>12} | {'B segs out':>10} | {'B segs in':>9} | "
            f"{'B switches':>10} | {'rwnd-limited':>12} | {'B cwnd':>6}")
    print(f"# (b): B sends {args.small:,} small messages per run; per 1000 messages but rate, CPU, the "
          f"share of B's sending time held back by the receiver's window (%) and B's cwnd at the end "
          f"(segments); {os.cpu_count()} cores, {placed}load average {os.getloadavg()[0]:.2f}")
    print(head)
    print("-" * len(head))

    def line(label: str, r: dict[str, float]) -> str:
        return (f"{label:<8} | {r['rate']:>9,.0f} | {r['cpu_us']:>12.2f} | {r['segs']:>10.0f} | "
                f"{r['acks']:>9.0f} | {r['cs']:>10.1f} | {r['rwnd']:>11.0f}% | {r['cwnd']:>6.0f}")

    for side, r in rows:
        print(line(side, r))
    print("-" * len(head))
    for side in ("pynode", "erl A"):
        rs = [r for s, r in rows if s == side]
        print(line("median " + side, {k: statistics.median(r[k] for r in rs) for k in rs[0]}))


if __name__ == "__main__":
    main()
