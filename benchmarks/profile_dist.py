#!/usr/bin/env python3
"""Where pynode spends its time: workloads (b) erl->py messages and (c) echo, under cProfile.

Run from the repository root::

    .venv/bin/python benchmarks/profile_dist.py               # both workloads, top 25 by own time
    .venv/bin/python benchmarks/profile_dist.py --loop asyncio --top 40 --sort cumulative

It sets up the same private EPMD and erl nodes as ``dist.py`` (and uses its Erlang module and
message shapes), runs each workload once untimed and once under the profiler, and prints one
table per workload. Profiling slows Python code several times over, so read the tables for
proportions, not speed: the speed figures are ``dist.py``'s.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
import dist  # noqa: E402

from interop.erlnode import Epmd, ErlNode, unique  # noqa: E402
from pynode.runtime import Node  # noqa: E402


async def profile(b: ErlNode, epmd: Epmd, small: int, echo: int, top: int, sort: str) -> None:
    async with Node(
        unique("prof") + "@127.0.0.1", b.cookie, listen_host="127.0.0.1", epmd_port=epmd.port
    ) as node:
        if not await node.ping(b.name):
            raise RuntimeError(f"pynode cannot reach {b.name}")
        py = dist.PySide(node, b)
        work = [
            ("(b) small msgs erl->py", lambda: py.recv_small(small)),
            ("(c) echo round trips", lambda: py.echo(0, echo)),
        ]
        for title, run in work:
            await run()  # warm-up, not profiled
            prof = cProfile.Profile()
            prof.enable()
            await run()
            prof.disable()
            out = io.StringIO()
            pstats.Stats(prof, stream=out).strip_dirs().sort_stats(sort).print_stats(top)
            print(f"== {title} ==")
            print(out.getvalue().split("\n", 4)[-1].rstrip(), end="\n\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--small", type=int, default=50_000, help="messages for (b)")
    ap.add_argument("--echo", type=int, default=3_000, help="round trips for (c)")
    ap.add_argument("--top", type=int, default=25, help="rows per table")
    ap.add_argument("--sort", default="tottime", help="pstats sort key (tottime, cumulative...)")
    ap.add_argument("--loop", choices=["asyncio", "uvloop", "trio"], default="asyncio")
    args = ap.parse_args()
    backend = "trio" if args.loop == "trio" else "asyncio"
    options = {"use_uvloop": True} if args.loop == "uvloop" else {}
    with dist.erl_nodes(1, "pynode_profile") as (epmd, (b,)):
        anyio.run(
            profile, b, epmd, args.small, args.echo, args.top, args.sort,
            backend=backend, backend_options=options,
        )


if __name__ == "__main__":
    main()
