#!/usr/bin/env python3
"""Python's own cost per rpc, both directions, with the socket taken out.

    .venv/bin/python benchmarks/rpc_python.py [--calls 20000] [--rounds 3]
    .venv/bin/python benchmarks/rpc_python.py --against /tmp/base   # before/after columns

A child process connects a pynode node to a private erl node, makes one real call each
way and keeps the bytes erl sent: the answer to ``node.rpc(erl, erlang, abs, [-1])``
(SPAWN_REPLY and the exit carrying the result) and erl's ``erpc:call`` to pynode's ``py:abs``
(a SPAWN_REQUEST). Then, with the transport's write made a no-op, it times:

* caller: ``node.rpc`` whose inline read is handed the captured answer, its refs rewritten
  to the call's own (the refs ``make_ref`` will give are made beforehand);
* server: the captured request handled as received (``_received``) (reply and exit written, to nowhere).

No system call, no erl, no scheduler is left in these loops: what remains is pynode's
Python (and its C codec), the part of a round trip that a change to pynode can move, which
``rpc.py`` measures only through the host's noise. Each figure is the best of ten blocks in
one child; with ``--against TREE`` a child runs from each tree in turn (TREE needs its C
extensions built: ``python setup.py build_ext --inplace``), best of ``--rounds`` kept.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def child(tree: str, erl_name: str, cookie: str, epmd_port: int, calls: int) -> dict[str, float]:
    sys.path.insert(0, tree)
    import anyio

    from pynode.runtime import Node
    from pynode.term import Atom

    async def run() -> dict[str, float]:
        async with Node(
            f"rpcpy{secrets.token_hex(3)}@127.0.0.1", cookie, epmd_port=epmd_port, listen_host="127.0.0.1"
        ) as node:
            node.expose("py", "abs")(abs)
            peer = Atom(erl_name)
            await node.rpc(peer, "erlang", "abs", [-1])  # connect
            conn: Any = node.connector.get(peer)
            ch, tr = conn.channel, conn.channel.transport
            received = ch._received  # (not data_received: no inline wait for the next bytes)
            got: list[bytes] = []
            made: list[Any] = []
            make_ref = node.make_ref

            def recording_ref() -> Any:
                made.append(make_ref())
                return made[-1]

            reading: list[bytes] = [b""]  # the bytes being handled
            on_data = ch._on_data  # the connection's: every path of received bytes ends there

            def recording(data: bytes) -> None:
                got.append(data)
                reading[0] = data
                on_data(data)

            requests: list[bytes] = []
            arrived = [anyio.Event()]

            @node.expose("py", "abs_seen")
            def abs_seen(x: int) -> int:  # served while its request's bytes are handled
                requests.append(reading[0])
                arrived[0].set()
                return abs(x)

            ch._on_data = recording
            ch.take_inline = lambda spin, enough: bytearray()  # the answer to the handlers, here
            node.make_ref = recording_ref  # type: ignore[method-assign]
            assert await node.rpc(peer, "erlang", "abs", [-1]) == 1
            answer, made0 = b"".join(got), list(made)  # the call's refs (one or two by tree)
            # erl's erpc:call back to this node, from a process of its own (spawned: the call
            # comes in a read of its own); the second one is timed (the first one's atom cache
            # entries are made)
            for x in (-2, -3):
                arrived[0] = anyio.Event()
                args = [node.name, Atom("py"), Atom("abs_seen"), [x]]
                await node.rpc(peer, "erlang", "spawn", [Atom("erpc"), Atom("call"), args])
                with anyio.fail_after(10):
                    await arrived[0].wait()
            request = requests[-1]
            node.expose("py", "abs_seen")(abs)
            ch._on_data = on_data
            node.make_ref = make_ref  # type: ignore[method-assign]

            def ids(r: Any) -> bytes:  # a ref's words as they are on the wire
                return struct.pack(f">{len(r.ids)}I", *r.ids)

            n, k = calls + 20, len(made0)
            refs = [make_ref() for _ in range(k * n)]

            def answer_for(i: int) -> bytes:  # the captured answer with call i's refs in it
                out = answer
                for j, r in enumerate(made0):
                    out = out.replace(ids(r), ids(refs[k * i + j]))
                return out

            answers = iter([answer_for(i) for i in range(n)])
            next_ref = iter(refs).__next__
            node.make_ref = next_ref  # type: ignore[method-assign]
            writes = [0]

            def write(data: bytes) -> None:
                writes[0] += 1

            tr.write = write
            # no write reaches the socket: with no descriptor of its own (as under uvloop or
            # TLS) the channel hands every write to the transport's (stubbed) write
            ch._fd = -1

            def inline(done: Any, spin: float) -> None:
                # calls in the same 20 us would be corked (joined by a later loop iteration,
                # which never comes here): erl's answer takes longer than that
                ch._last_write = 0
                received(next(answers))

            def take(spin: float, enough: Any) -> bytearray:
                # the calling task reads its answer itself (rpc._take_answer): as it would
                # read it from the socket, in one read
                ch._last_write = 0
                buf = bytearray(next(answers))
                enough(buf)
                return buf

            ch.read_inline = inline
            ch.take_inline = take
            clock = time.perf_counter_ns
            block = calls // 10
            rpc = node.rpc
            for _ in range(20):
                await rpc(peer, "erlang", "abs", [-1])
            caller = []
            for _ in range(10):
                t0 = clock()
                for _ in range(block):
                    await rpc(peer, "erlang", "abs", [-1])
                caller.append((clock() - t0) / block / 1e3)
            if writes[0] != 20 + 10 * block:
                raise RuntimeError(f"{20 + 10 * block} calls made {writes[0]} writes")
            writes[0] = 0
            for _ in range(20):
                received(request)
            if writes[0] != 20:  # each request answered by one write (reply and exit joined)
                raise RuntimeError(f"20 replayed requests made {writes[0]} writes")
            server = []
            for _ in range(10):
                t0 = clock()
                for _ in range(block):
                    received(request)
                server.append((clock() - t0) / block / 1e3)
            return {"caller": min(caller), "server": min(server)}

    return anyio.run(run)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calls", type=int, default=20000, help="calls timed per direction and child")
    ap.add_argument("--rounds", type=int, default=3, help="children per tree (best kept)")
    ap.add_argument("--against", metavar="TREE", help="another pynode tree, timed in alternation")
    ap.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    opts = ap.parse_args()
    if opts.calls < 10:
        ap.error("--calls: at least 10 (ten timed blocks)")
    if opts.child:
        tree, name, cookie, port = opts.child
        print(json.dumps(child(tree, name, cookie, int(port), opts.calls)))
        return
    sys.path.insert(0, str(ROOT))
    from hostload import load  # the steal it reports is counted from here

    from interop.erlnode import Epmd, ErlNode
    from interop.otp import otp25

    otp = otp25()
    cookie = secrets.token_hex(8)
    epmd = Epmd(otp)
    erl = None
    trees = {"this tree": str(ROOT)}
    if opts.against:
        trees["--against"] = str(Path(opts.against).resolve())
    best: dict[str, dict[str, float]] = {t: {} for t in trees}
    try:
        erl = ErlNode(otp, epmd, cookie=cookie)
        for _ in range(opts.rounds):
            for label, tree in trees.items():
                out = subprocess.run(
                    [sys.executable, __file__, "--calls", str(opts.calls), "--child", tree, erl.name, cookie,
                     str(epmd.port)],
                    capture_output=True, text=True, timeout=600, check=False,
                )
                if out.returncode:
                    raise SystemExit(f"child for {tree} failed:\n{out.stderr[-2000:]}")
                for k, v in json.loads(out.stdout.splitlines()[-1]).items():
                    best[label][k] = min(v, best[label].get(k, v))
    finally:
        if erl is not None:
            erl.kill()
            erl.close()
        epmd.kill()
    cols = list(trees)
    print(f"{'us per call (best of 10 blocks x ' + str(opts.rounds) + ' children)':<52} | "
          + " | ".join(f"{c:>10}" for c in cols) + (" |  ratio" if len(cols) == 2 else ""))
    print("-" * (64 + 13 * len(cols)))
    for key, what in (("caller", "caller: node.rpc, answer handed to its inline read"),
                      ("server", "server: erl's erpc:call, handled as received")):
        vals = [best[c][key] for c in cols]
        ratio = f" | {vals[0] / vals[1]:6.2f}" if len(vals) == 2 else ""
        print(f"{what:<52} | " + " | ".join(f"{v:>10.2f}" for v in vals) + ratio)
    print(f"({os.cpu_count()} cores; {load()}; "
          f"codec {'pure Python' if os.environ.get('PYNODE_PURE_PYTHON') not in (None, '', '0') else 'default'})")


if __name__ == "__main__":
    main()
