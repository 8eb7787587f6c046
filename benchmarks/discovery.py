"""Finding and connecting a host's nodes: pynode's discovery round beside erl's
``net_adm:world_list/1``, in one run.

N erl nodes register with a private EPMD on 127.0.0.1. erl: a joiner node runs
``net_adm:world_list(['127.0.0.1'])`` (EPMD NAMES, then a ping per node, one after another)
and reports its time (timer:tc); then it disconnects them all, and again. pynode: a fresh node
runs one discovery round (``node.discover(LocalEpmd())`` until ``settled()``: EPMD NAMES, then
every dial, in parallel). Hidden and visible joiners on both sides. Best of R.

    .venv/bin/python benchmarks/discovery.py              # ~30 s
    .venv/bin/python benchmarks/discovery.py --quick      # N=4, R=2
"""

from __future__ import annotations

import argparse
import os
import secrets
import sys
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from interop.erlnode import Epmd, ErlNode, stop_nodes, unique  # noqa: E402
from interop.otp import otp25, otp28  # noqa: E402
from pynode.runtime import Node  # noqa: E402
from pynode.runtime.discovery_sources import LocalEpmd  # noqa: E402


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"load {one:.2f} (1 min) {five:.2f} (5 min) on {os.cpu_count()} cores"


ERL_ROUND = (
    "{T, Found} = timer:tc(fun() -> net_adm:world_list(['127.0.0.1']) end),"
    " Peers = [N || N <- nodes(connected), lists:prefix(\"bench\", atom_to_list(N))],"
    " [erlang:disconnect_node(N) || N <- nodes(connected)],"
    " {T, length(Found), length(Peers)}."
)


def erl_best(joiner: ErlNode, n: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        micros, found, connected = joiner.run(ERL_ROUND)
        # world_list also lists the joiner itself (it is registered with the same EPMD)
        if connected != n or found != n + 1:
            raise RuntimeError(f"erl world_list connected {connected}/{n} (found {found})")
        best = min(best, micros / 1e6)
    return best


async def pynode_best(epmd: Epmd, cookie: str, n: int, repeat: int, hidden: bool) -> float:
    best = float("inf")
    for _ in range(repeat):
        async with Node(unique("py") + "@127.0.0.1", cookie, hidden=hidden, epmd=False,
                        epmd_port=epmd.port, listen_host="127.0.0.1") as node:
            t0 = time.perf_counter()
            async with node.discover(LocalEpmd(), include=["bench*"], transitive=False) as d:
                with anyio.fail_after(120):
                    await d.settled()
                elapsed = time.perf_counter() - t0
                if len(d.members) != n:
                    raise RuntimeError(f"pynode connected {len(d.members)}/{n}")
        best = min(best, elapsed)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--nodes", type=int, default=8)
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--otp", choices=["otp25", "otp28"], default="otp25")
    ap.add_argument("--quick", action="store_true")
    a = ap.parse_args()
    n, repeat = (4, 2) if a.quick else (a.nodes, a.repeat)
    otp = otp25() if a.otp == "otp25" else otp28()
    print(f"discovery of {n} erl nodes on 127.0.0.1 ({otp.name}), best of {repeat}; {load()}")
    epmd = Epmd(otp)
    cookie = secrets.token_hex(8)
    started: list[ErlNode] = []
    try:
        for _ in range(n):
            started.append(ErlNode(otp, epmd, name=unique("bench"), cookie=cookie))
        rows = []
        for hidden in (True, False):
            joiner = ErlNode(otp, epmd, name=unique("joiner"), cookie=cookie, hidden=hidden)
            started.append(joiner)
            erl_t = erl_best(joiner, n, repeat)
            joiner.kill()
            py_t = anyio.run(pynode_best, epmd, cookie, n, repeat, hidden)
            rows.append(("hidden" if hidden else "visible", erl_t, py_t))
        print(f"{'joiner':8} {'erl world_list ms':>18} {'pynode round ms':>16} {'erl/pynode':>11}")
        for mode, erl_t, py_t in rows:
            print(f"{mode:8} {erl_t * 1e3:18.1f} {py_t * 1e3:16.1f} {erl_t / py_t:11.2f}")
        print(f"end: {load()}")
    finally:
        stop_nodes(started)
        epmd.kill()


if __name__ == "__main__":
    main()
