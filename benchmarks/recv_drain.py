#!/usr/bin/env python3
"""dist.py's (b) with a backlog: erl node B queues N small messages to a receiver that is not
reading, then the receiver (pynode, or erl node A) drains them; its rate and CPU per message.

    .venv/bin/python benchmarks/recv_drain.py [--msgs 40000] [--repeat 5] [--off-heap]

Why: in (b) the sender and the receiver take turns, and on one CPU (recv_place.py's shared
placement) the rate is one over their summed CPU per message, so that figure mixes the
receive path with how the two interleave. Here the receive path runs alone, with its socket
full: B is pinned to CPU 0, the receiver to CPU 1. pynode's receiver stops reading by
blocking its own event loop; erl A's by SIGSTOP of its OS process. Either waits, with its
peer B sending, until its socket's receive queue (``/proc/net/tcp``) stops growing (B's
dist queue is then over its busy limit and B's sender suspended), then drains: the rate
counts from the first message to the last; the CPU is the receiver process's, from the
moment it may read again. The erl receiver is a plain ``receive _`` loop, as in dist.py;
``--off-heap`` gives it ``{message_queue_data, off_heap}``, so its garbage collections do
not copy the long queue the backlog makes.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from dist import SMALL_MSG, PySide, erl_nodes, erl_run, unique  # noqa: E402
from hostload import load  # noqa: E402
from pinning import pin  # noqa: E402
from recv_wire import cpu_ns  # noqa: E402

from interop.erlnode import ErlNode  # noqa: E402
from pynode.runtime import Mailbox, Node  # noqa: E402
from pynode.term import Atom  # noqa: E402

SETTLE_POLL = 0.02  # seconds between looks at the receive queue
SETTLE_SAME = 3  # looks without growth that make it settled
SETTLE_MAX = 5.0  # seconds: a queue that never settles is an error

# On node A: a receiver registered as pynode_drain_inbox that times its N messages from the
# first, and tells Owner {drained, Nanoseconds}.
ERL_RECEIVER = """
Owner = O,
spawn_opt(fun() ->
    register(pynode_drain_inbox, self()), Owner ! ready,
    receive _ -> ok end,
    T0 = erlang:monotonic_time(),
    Loop = fun L(0) -> ok; L(K) -> receive _ -> L(K - 1) end end,
    Loop(NN - 1),
    T1 = erlang:monotonic_time(),
    unregister(pynode_drain_inbox),
    Owner ! {drained, erlang:convert_time_unit(T1 - T0, native, nanosecond)}
end, [{message_queue_data, MQD}]),
ok.
"""


def socket_inodes(pid: int) -> set[int]:
    found = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:  # closed meanwhile
            continue
        if link.startswith("socket:["):
            found.add(int(link[8:-1]))
    return found


def receive_queue(pid: int, peer_port: int) -> int:
    """Bytes waiting in ``pid``'s TCP sockets to ``peer_port`` (IPv4: the nodes use 127.0.0.1)."""
    inodes = socket_inodes(pid)
    total = 0
    with open("/proc/net/tcp") as f:
        next(f)
        for line in f:
            fields = line.split()
            if int(fields[2].split(":")[1], 16) == peer_port and int(fields[9]) in inodes:
                total += int(fields[4].split(":")[1], 16)
    return total


def settle(pid: int, peer_port: int) -> int:
    """Wait (blocking this thread) until the receive queue has stopped growing; its size."""
    last, same = -1, 0
    deadline = time.monotonic() + SETTLE_MAX
    while time.monotonic() < deadline:
        queued = receive_queue(pid, peer_port)
        same = same + 1 if queued == last and queued > 0 else 0
        if same >= SETTLE_SAME:
            return queued
        last = queued
        time.sleep(SETTLE_POLL)
    raise RuntimeError(f"the receive queue of {pid} did not settle in {SETTLE_MAX} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--msgs", type=int, default=40_000, help="messages per drain")
    ap.add_argument("--repeat", type=int, default=5, help="drains of each receiver, in turns")
    ap.add_argument("--off-heap", action="store_true", help="erl's receiver keeps its queue off heap")
    opts = ap.parse_args()
    if opts.msgs < 2:
        ap.error("--msgs must be at least 2")
    two = len(os.sched_getaffinity(0)) >= 2
    own = os.sched_getaffinity(0)
    got: dict[str, list[tuple[float, float, int]]] = {"pynode": [], "erl A": []}
    with erl_nodes(2, "recv_drain") as (epmd, (a, b)):
        assert a.proc is not None and b.proc is not None

        async def run() -> None:
            async with Node(unique("recvdrain") + "@127.0.0.1", b.cookie, listen_host="127.0.0.1",
                            epmd_port=epmd.port) as node:
                peer = Atom(b.name)
                if not await node.ping(peer):
                    raise RuntimeError(f"pynode cannot reach {b.name}")
                if await erl_run(a, "net_adm:ping(B).", B=b.name) != Atom("pong"):
                    raise RuntimeError(f"{a.name} cannot reach {b.name}")
                conn = node.connection(peer)
                assert conn is not None
                b_port = conn.channel.transport.get_extra_info("peername")[1]  # type: ignore[attr-defined]
                py = PySide(node, b)
                ctl = node.mailbox()
                if two:
                    pin(b.proc.pid, {0})
                    pin(a.proc.pid, {1})
                    os.sched_setaffinity(0, {1})
                await py.recv_small(opts.msgs)  # warm-up
                for _ in range(opts.repeat):
                    got["pynode"].append(await drain_pynode(node, py, b_port, opts.msgs))
                    got["erl A"].append(await drain_erl(a, b, ctl, b_port, opts.msgs, opts.off_heap))
                os.sched_setaffinity(0, own)

        anyio.run(run)
    where = "B on CPU 0, receiver on CPU 1" if two else "unpinned (one CPU)"
    heap = "off_heap" if opts.off_heap else "on_heap"
    print(f"(b) drained, {opts.msgs:,} msgs x {opts.repeat} in turns; {where}; erl receiver's "
          f"message_queue_data {heap}; {os.cpu_count()} cores; {load()}")
    print(f"{'receiver':<8} | {'msgs/s (median, range)':>26} | {'CPU us/msg (median, range)':>26} | queued KB")
    print("-" * 82)
    for side, rows in got.items():
        cpu = [c for c, _, _ in rows]
        rate = [r for _, r, _ in rows]
        queued = [q for _, _, q in rows]
        print(f"{side:<8} | {statistics.median(rate):9,.0f} ({min(rate):,.0f}-{max(rate):,.0f}) | "
              f"{statistics.median(cpu):9.2f} ({min(cpu):.2f}-{max(cpu):.2f}) | "
              f"{min(queued) // 1000}-{max(queued) // 1000}")
    p, e = (statistics.median(r for _, r, _ in got[k]) for k in ("pynode", "erl A"))
    print(f"pynode/erl rate: {p / e:.2f}")


async def drain_pynode(node: Node, py: PySide, b_port: int, n: int) -> tuple[float, float, int]:
    mb = py.mb
    sender = await erl_run(py.b, "pynode_dist_bench:sender(Dest, N, Msg).",
                           Dest=(mb.name, node.name), N=n, Msg=SMALL_MSG)
    await mb.send(sender, Atom("go"))
    queued = settle(os.getpid(), b_port)  # this blocks the event loop: nothing reads meanwhile
    c0 = time.process_time()
    receive = mb.receive
    await receive()
    t0 = time.perf_counter()
    for _ in range(n - 1):
        await receive()
    t1 = time.perf_counter()
    cpu = time.process_time() - c0
    return cpu / n * 1e6, (n - 1) / (t1 - t0), queued


async def drain_erl(
    a: ErlNode, b: ErlNode, ctl: Mailbox, b_port: int, n: int, off_heap: bool
) -> tuple[float, float, int]:
    assert a.proc is not None
    await erl_run(a, ERL_RECEIVER, O=ctl.pid, NN=n, MQD=Atom("off_heap" if off_heap else "on_heap"))
    if await ctl.receive(timeout=10) != Atom("ready"):
        raise RuntimeError("erl A's receiver did not start")
    sender = await erl_run(b, "pynode_dist_bench:sender(Dest, N, Msg).",
                           Dest=(Atom("pynode_drain_inbox"), Atom(a.name)), N=n, Msg=SMALL_MSG)
    os.kill(a.proc.pid, signal.SIGSTOP)
    try:
        await ctl.send(sender, Atom("go"))
        queued = await anyio.to_thread.run_sync(settle, a.proc.pid, b_port)
    finally:
        c0 = cpu_ns(a.proc.pid)
        os.kill(a.proc.pid, signal.SIGCONT)
    reply = await ctl.receive(timeout=60)
    cpu = cpu_ns(a.proc.pid) - c0
    if not (isinstance(reply, tuple) and reply[0] == Atom("drained")):
        raise RuntimeError(f"erl A's receiver answered {reply!r}")
    return cpu / n / 1e3, (n - 1) / (reply[1] / 1e9), queued


if __name__ == "__main__":
    main()
