#!/usr/bin/env python3
"""CPU a node spends per message when messages come one at a time, pynode beside erl.

    .venv/bin/python benchmarks/idle_cpu.py [--seconds 2] [--gaps 1,2,5]

An erl node A sends a small message every GAP ms (``receive after GAP``: whole
milliseconds, erl's timer's step) for SECONDS, first to a mailbox of a pynode node in this process, then to a
process on a second erl node B. Each receiver is idle between messages, which is when a
busy wait (``pynode/runtime/busywait.py``; erl's ``+sbwt``) burns CPU without anything to
show for it. The table gives each receiver's CPU time per message (all of its threads, from
``/proc/PID/task/*/schedstat``) and pynode/erl; pynode's also holds this process's driving of
erl A (a thread waiting on a pipe, a few wake-ups per gap). Linux only.
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
from pathlib import Path
from typing import Any

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from hostload import load  # noqa: E402

from interop.erlnode import Epmd, ErlNode  # noqa: E402
from interop.otp import otp25  # noqa: E402
from pynode.runtime import Node  # noqa: E402
from pynode.term import Atom  # noqa: E402

SENDER = """
Send = fun Loop(0) -> ok; Loop(K) -> Dest ! {tick, K}, receive after Gap -> ok end, Loop(K - 1) end,
Send(N).
"""
SINK = """
register(idle_cpu_sink, spawn(fun Loop() -> receive stop -> ok; _ -> Loop() end end)), ok.
"""


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of process ``pid`` so far, in nanoseconds."""
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError, IndexError):  # a thread that ended meanwhile
            continue
    return total


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings), abandon_on_cancel=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=2.0, help="how long each stream lasts")
    ap.add_argument("--gaps", default="1,2,5", help="whole ms between messages, comma-separated")
    ap.add_argument("--busy-wait", type=float, metavar="SECONDS",
                    help="the pynode node's busy_wait (default: pynode's; 0: off)")
    opts = ap.parse_args()
    busy = {} if opts.busy_wait is None else {"busy_wait": opts.busy_wait}
    try:
        gaps = [int(g) for g in opts.gaps.split(",")]
    except ValueError:
        ap.error("--gaps: whole milliseconds, e.g. 1,2,5")
    if min(gaps) < 1 or opts.seconds <= 0:
        ap.error("--gaps: at least 1 ms; --seconds: positive")
    otp = otp25()
    epmd = Epmd(otp)
    cookie = secrets.token_hex(8)
    a = ErlNode(otp, epmd, cookie=cookie)
    b = ErlNode(otp, epmd, cookie=cookie)
    rows: list[tuple[int, int, float, float]] = []
    try:

        async def run() -> None:
            async with Node(
                "idle_cpu@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1", **busy
            ) as node:
                mb = node.mailbox()
                await erl_run(a, "net_adm:ping(B).", B=Atom(b.name))  # connected before timing
                await erl_run(b, SINK)
                await node.rpc(a.name, "erlang", "node", [])
                me, erl_b = os.getpid(), b.proc.pid

                async def send_to(dest: Any, gap: int, n: int) -> None:
                    await erl_run(a, SENDER, Dest=dest, Gap=gap, N=n)

                # untimed: the spin gates learn the traffic (about 25 waits) before the first
                # timed gap, so that the gaps' order does not matter
                await send_to(mb.pid, gaps[0], 50)
                for _ in range(50):
                    await mb.receive()
                for gap in gaps:
                    n = max(10, int(opts.seconds * 1000 / gap))
                    t0 = cpu_ns(me)
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(send_to, mb.pid, gap, n)
                        with anyio.fail_after(opts.seconds * 20 + 60):
                            for _ in range(n):
                                await mb.receive()
                    py = (cpu_ns(me) - t0) / n / 1e3
                    t0 = cpu_ns(erl_b)
                    await erl_run(a, SENDER, Dest=(Atom("idle_cpu_sink"), Atom(b.name)), Gap=gap, N=n)
                    # the last message is in B's mailbox before a ping from A comes back
                    await erl_run(a, "net_adm:ping(B).", B=Atom(b.name))
                    er = (cpu_ns(erl_b) - t0) / n / 1e3
                    rows.append((gap, n, py, er))

        anyio.run(run)
    finally:
        for erl in (a, b):
            erl.kill()
            erl.close()
        epmd.kill()
    print(f"pynode busy_wait: {opts.busy_wait if opts.busy_wait is not None else 'default'}")
    print(f"{'gap between messages (ms)':<28} | {'msgs':>6} | {'pynode us/msg':>13} | {'erl us/msg':>10} | pynode/erl"
          f"   ({load()})")
    print("-" * 82)
    for gap, n, py, er in rows:
        print(f"{gap:<28} | {n:>6} | {py:>13.1f} | {er:>10.1f} | {py / er:>10.2f}")


if __name__ == "__main__":
    main()
