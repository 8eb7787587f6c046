#!/usr/bin/env python3
"""Receive-path micro benchmark: time per small message through DistConnection.

Run from the repository root::

    .venv/bin/python benchmarks/framing.py                 # both codecs, about a minute
    .venv/bin/python benchmarks/framing.py --quick         # smoke run, a few seconds
    .venv/bin/python benchmarks/framing.py --against /tmp/base   # before/after columns

``--against DIR`` times another checkout (say ``git archive <rev> | tar -x -C DIR`` and
``python setup.py build_ext --inplace`` there) in alternation with this one, child process
by child process, keeping the best of ``--rounds`` for each side: on a shared machine that
is fairer than comparing with figures saved earlier (``--save`` / ``--baseline``).

Each codec (the C twin and the pure-Python one, ``PYNODE_PURE_PYTHON=1``) runs in its own
child process, since the codec is chosen at import. The packets are what erl really sends
(tests/protocol/erl_packets.py: captured from OTP 25 and OTP 28 nodes talking to a pynode
node with the atom cache and fragments negotiated, pynode's defaults): the message
``{event, 12345, <<0:256>>, [1,2,3]}`` sent to a pid (erl uses SEND_SENDER ``{22, From, To}``) and to a registered name (REG_SEND
``{6, From, '', capbox}``), in the steady state where the atom cache header only refers to
entries set up by an earlier message. Two synthetic shapes complete the set: a header without
cache refs (``131 68 0``, what pynode itself sends: ``{2, '', Pid}``) and the pass-through
framing ``112`` (no DIST_HDR_ATOM_CACHE, no FRAGMENTS).

Rows, in nanoseconds per message (best of ``--repeat`` runs, gc off while timing):

* ``1x``: ``receive_data(packet)`` then ``next_event()``, one message per read (latency-ish);
* ``64x``: ``receive_data`` of 64 packets at once, then 64 ``next_event()`` calls and the
  NEED_DATA one (what the reader task sees under load);
* ``64x deliver``: the same batch into a mailbox of a node, through the framing's ``deliver``
  hook (Signals.deliver_send, then Mailbox._deliver: Python, per message);
* ``64x sink``: the same with the node's ``sinks``: the codec appends each message to the
  mailbox's queue itself (how a node delivers to a mailbox nobody waits on, 2026-12-04);
* ``send``: ``send_packets(Send(pid), msg)`` with header framing.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import runpy
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def _frame(body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + body


def _cases() -> list[tuple[str, Any, list[bytes], bytes]]:
    """(name, flags, priming packets, timed packet), packets framed."""
    from pynode.protocol import control as c
    from pynode.protocol.flags import default_flags
    from pynode.protocol.framing import DistConnection
    from pynode.term import Atom, Pid

    header = default_flags(atom_cache=True, fragments=True)
    plain = default_flags()
    to = Pid("bench@127.0.0.1", 85, 0, 0x5EED)
    msg = (Atom("event"), 12345, bytes(32), [1, 2, 3])
    no_refs = DistConnection(header).send(c.Send(to), msg)
    passthrough = DistConnection(plain).send(c.Send(to), msg)
    # by path: the tree under test (--root) may be an older checkout without this file
    packets = runpy.run_path(str(ROOT / "tests" / "protocol" / "erl_packets.py"))
    otp25 = [_frame(p) for p in packets["OTP25"]]
    otp28 = [_frame(p) for p in packets["OTP28"]]
    return [
        ("SEND_SENDER, cache refs (OTP 25)", header, otp25[:2], otp25[2]),
        ("REG_SEND, cache refs (OTP 28)", header, otp28[:5], otp28[5]),
        ("SEND, 131 68 0 (no refs)", header, [], no_refs),
        ("SEND, pass-through 112", plain, [], passthrough),
    ]


def _best(fn: Any, n: int, repeat: int) -> float:
    best = float("inf")
    gc.disable()
    try:
        for _ in range(repeat):
            t = time.perf_counter()
            fn(n)
            best = min(best, time.perf_counter() - t)
    finally:
        gc.enable()
    return best / n * 1e9


def _into_mailbox(name: str, conn: Any, control: Any, batch: bytes, n: int, repeat: int) -> dict[str, float]:
    """The 64-packet batch delivered into a mailbox of a (never started) node, as its
    connections do: through the ``deliver`` hook (Signals.deliver_send), and with the
    node's ``sinks`` (straight into the queue; an older tree has none and times the hook
    again). The mailbox has the packets' pid, or their name."""
    from pynode.protocol import NEED_DATA
    from pynode.runtime import Node

    to = getattr(control, "to_pid", None)
    node = Node(str(to.node) if to is not None else "bench@127.0.0.1", "c",
                creation=to.creation if to is not None else None)
    mb = node.mailbox_for(to) if to is not None else node.mailbox(str(control.to_name))
    queue = mb._queue
    receive, next_event = conn.receive_data, conn.next_event

    def delivered(k: int) -> None:
        for _ in range(k // 64):
            receive(batch)
            if next_event() is not NEED_DATA or len(queue) != 64:
                raise AssertionError("not every message went into the mailbox")
            queue.clear()

    out = {}
    conn.deliver = node.deliver
    out[f"{name} | 64x deliver"] = _best(delivered, n, repeat)
    conn.sinks = getattr(node, "sinks", None)
    out[f"{name} | 64x sink"] = _best(delivered, n, repeat)
    conn.sinks, conn.deliver = None, None
    return out


def _child(quick: bool, repeat: int) -> dict[str, Any]:
    import pynode.term as pt
    from pynode.protocol import NEED_DATA
    from pynode.protocol import control as c
    from pynode.protocol.flags import default_flags
    from pynode.protocol.framing import DistConnection, Message
    from pynode.term import Atom, Pid

    n = 2_000 if quick else 50_000
    results: dict[str, float] = {}
    for name, flags, prime, packet in _cases():
        conn = DistConnection(flags)
        for p in prime:
            conn.receive_data(p)
            assert type(conn.next_event()) is Message
        conn.receive_data(packet)
        ev = conn.next_event()
        assert type(ev) is Message and ev.payload[1] == 12345, ev
        receive, next_event = conn.receive_data, conn.next_event

        def one(
            k: int, receive: Any = receive, next_event: Any = next_event, p: bytes = packet
        ) -> None:
            for _ in range(k):
                receive(p)
                next_event()

        batch = packet * 64

        def many(
            k: int, receive: Any = receive, next_event: Any = next_event, batch: bytes = batch
        ) -> None:
            for _ in range(k // 64):
                receive(batch)
                for _ in range(64):
                    next_event()
                if next_event() is not NEED_DATA:
                    raise AssertionError("more events than packets")

        results[f"{name} | 1x"] = _best(one, n, repeat)
        results[f"{name} | 64x"] = _best(many, n, repeat)
        if "cache refs" in name:  # the runtime's path for a plain send, into a mailbox
            results.update(_into_mailbox(name, conn, ev.control, batch, n, repeat))

    tx = DistConnection(default_flags(atom_cache=True, fragments=True))
    to = Pid("bench@127.0.0.1", 85, 0, 0x5EED)
    msg = (Atom("event"), 12345, bytes(32), [1, 2, 3])
    send_packets, ctl = tx.send_packets, c.Send(to)

    def send(k: int) -> None:
        for _ in range(k):
            send_packets(ctl, msg)

    results["SEND, 131 68 0 | send"] = _best(send, n, repeat)
    return {"implementation": pt.implementation, "results": results}


def _run_child(root: Path, codec: str, quick: bool, repeat: int) -> dict[str, float] | None:
    env_value = "1" if codec == "python" else "0"
    out = subprocess.run(
        [sys.executable, __file__, "--child", "--root", str(root), "--repeat", str(repeat)]
        + (["--quick"] if quick else []),
        env={**os.environ, "PYNODE_PURE_PYTHON": env_value},
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    got = json.loads(out)
    if got["implementation"] != codec:
        return None
    return got["results"]  # type: ignore[no-any-return]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--repeat", type=int, default=5, help="timed runs per round (best kept)")
    ap.add_argument("--rounds", type=int, default=3, help="child processes per codec (and tree)")
    ap.add_argument("--save", help="write the figures to this JSON file")
    ap.add_argument("--baseline", help="a JSON file from --save to compare against")
    ap.add_argument(
        "--against",
        help="another checkout (with its C twin built) to time in alternation with this one; "
        "fairer than --baseline on a busy machine",
    )
    ap.add_argument("--codec", choices=["c", "python"], help="time only this codec")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--root", default=str(ROOT), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        sys.path.insert(0, args.root)
        print(json.dumps(_child(args.quick, args.repeat)))
        return

    load = os.getloadavg()
    trees = {"now": ROOT}
    if args.against:
        trees = {"before": Path(args.against).resolve(), "now": ROOT}
    # Rounds alternate between trees and codecs, and the best of all rounds is kept, so
    # that a busy spell of a shared machine does not land on one side only.
    runs: dict[str, dict[str, dict[str, float]]] = {tree: {} for tree in trees}
    for _ in range(1 if args.quick else args.rounds):
        for codec in [args.codec] if args.codec else ["c", "python"]:
            for tree, root in trees.items():
                got = _run_child(root, codec, args.quick, args.repeat)
                if got is None:
                    continue
                best = runs[tree].setdefault(codec, got)
                for key, value in got.items():
                    best[key] = min(best.get(key, value), value)
    now = runs["now"]
    base = runs.get("before", {})
    if args.baseline:
        base = json.loads(Path(args.baseline).read_text())["runs"]
    for codec in [args.codec] if args.codec else ["c", "python"]:
        if codec not in now:
            print(f"note: the {codec} codec is not available here", file=sys.stderr)
    end_load = os.getloadavg()
    print(
        f"# {platform.python_implementation()} {platform.python_version()}, load average "
        f"{load[0]:.2f} at the start, {end_load[0]:.2f} at the end; ns per message"
    )
    codecs = list(now)
    head = f"{'case':<36} {'mode':<5}"
    for codec in codecs:
        head += f" {codec:>7}" + (f" {'before':>7} {'ratio':>6}" if base.get(codec) else "")
    print(head)
    for key in now[codecs[0]]:
        case, mode = key.split(" | ")
        line = f"{case:<36} {mode:<5}"
        for codec in codecs:
            value = now[codec][key]
            line += f" {value:7.0f}"
            if base.get(codec):
                was = base[codec].get(key)
                line += f" {was:7.0f} {was / value:5.2f}x" if was else f" {'n/a':>7} {'':>6}"
        print(line)
    if base:
        print("# ratio = before / now (above 1: faster now)")
    if args.save:
        Path(args.save).write_text(json.dumps({"load": load, "runs": now}, indent=1))


if __name__ == "__main__":
    main()
