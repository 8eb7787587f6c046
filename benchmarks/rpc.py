"""RPC round trips and CLI cold start, pynode beside erl, in one run.

    .venv/bin/python benchmarks/rpc.py [--quick] [--cold-only]

Prints one table: rpc round-trip p50/p99 (pynode -> erl, erl -> pynode, erl -> erl) and the
cold start of one call from a shell, each a fresh process, median wall clock: the floor
(`python -c pass`), `python -c "import pynode.cli"`, `pynode rpc NODE erlang:node/0` (the
console script, and `python -m pynode`), `erl_call -a 'erlang node'` and `erl -noshell
-eval` doing the same rpc, with each one's ratio to erl_call. The cold runs go round-robin
(a busy machine slows every command alike) after one untimed run each, so Python's bytecode
caches exist as they do after an install (PYTHONDONTWRITEBYTECODE is dropped for them).

``--place apart`` or ``--place shared`` pins each series' callee to CPU 0 and its caller to
CPU 1, or to CPU 0 as well (``pinning.py``): pynode -> erl calls erl node A placed as erl
node B is for A's erl -> erl calls, and A's calls to pynode place pynode as B. By default the
kernel places them (the cold starts always run unpinned).
"""

from __future__ import annotations

import argparse
import glob
import os
import secrets
import statistics
import subprocess
import sys
import time
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hostload import load  # noqa: E402
from pinning import ROLES, can_place, pin  # noqa: E402

from interop.erlnode import Epmd, ErlNode  # noqa: E402
from interop.otp import otp25  # noqa: E402
from pynode.blocking import BlockingNode  # noqa: E402
from pynode.runtime import Node  # noqa: E402
from pynode.term import Atom  # noqa: E402

ROUNDS = 10  # the three round-trip series are measured in this many turns
# rest before each series, as dist.py's ECHO_SETTLE_S: in the kernel's placement a series
# keeps the placement it starts in, and that depends on what ran just before it
SETTLE_S = 0.05


class Placer:
    """Pins a series' callee and caller under --place (``None``: leaves them to the kernel)."""

    def __init__(self, place: str | None, a: ErlNode, b: ErlNode) -> None:
        self.roles = ROLES[place] if place is not None else None
        self.pids = {"a": a.proc.pid if a.proc else 0, "b": b.proc.pid if b.proc else 0, "py": os.getpid()}
        self.own = os.sched_getaffinity(0)

    def __call__(self, callee: str, caller: str) -> None:
        if self.roles is not None:
            pin(self.pids[callee], self.roles[0])
            pin(self.pids[caller], self.roles[1])

    def release(self) -> None:
        """This process's CPUs given back (the cold starts run unpinned)."""
        if self.roles is not None:
            pin(os.getpid(), self.own)


def pct(values: list[float], p: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(len(values) * p))]


async def py_to_erl(node: Node, erl: ErlNode, n: int) -> list[float]:
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        await node.rpc(erl.name, "erlang", "abs", [-1])
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def blocking_to_erl(node: BlockingNode, erl: ErlNode, n: int) -> list[float]:
    """The same calls from a plain thread through the blocking API."""
    times = []
    for _ in range(n):
        t0 = time.perf_counter()
        node.rpc(erl.name, "erlang", "abs", [-1])
        times.append((time.perf_counter() - t0) * 1e6)
    return times


def erl_rtt(erl: ErlNode, target: str, module: str, fn: str, n: int) -> list[float]:
    """Round trips timed inside erl: erpc:call to ``target``."""
    us = erl.run(
        """
        [begin T0 = erlang:monotonic_time(microsecond),
               _ = erpc:call(Target, M, F, [-1]),
               erlang:monotonic_time(microsecond) - T0 end || _ <- lists:seq(1, N)].
        """,
        Target=Atom(target),
        M=Atom(module),
        F=Atom(fn),
        N=n,
    )
    return [float(x) for x in us]


def cold(cmds: dict[str, list[str]], env: dict[str, str], runs: int) -> dict[str, float]:
    """Median ms of each command as a fresh process; round-robin, after one untimed run."""
    times: dict[str, list[float]] = {name: [] for name in cmds}
    for i in range(runs + 1):
        for name, cmd in cmds.items():
            t0 = time.perf_counter()
            r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=60)
            elapsed = (time.perf_counter() - t0) * 1000
            if r.returncode != 0:
                raise RuntimeError(f"{name} failed: {r.stderr.strip()[:300]}")
            if i:
                times[name].append(elapsed)
    return {name: statistics.median(t) for name, t in times.items()}




def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="few iterations (a smoke run)")
    ap.add_argument("--cold-only", action="store_true", help="only the cold starts from a shell")
    ap.add_argument(
        "--loop", choices=["asyncio", "uvloop"], default="asyncio", help="event loop of the pynode node"
    )
    ap.add_argument("--busy-wait", type=float, metavar="SECONDS",
                    help="the pynode node's busy_wait (default: pynode's, 300 us on asyncio; 0: off)")
    ap.add_argument("--place", choices=["kernel", *ROLES], default="kernel",
                    help="pin each series' callee to CPU 0 and its caller to CPU 1 (apart) or 0 "
                    "(shared), both sides alike; default: the kernel places them")
    opts = ap.parse_args()
    if opts.place != "kernel" and not can_place(opts.place):
        ap.error(f"--place {opts.place} needs CPUs {sorted(set().union(*ROLES[opts.place]))}")
    busy = {} if opts.busy_wait is None else {"busy_wait": opts.busy_wait}
    n = 200 if opts.quick else 3000
    runs = 3 if opts.quick else 21
    otp = otp25()
    epmd = Epmd(otp)
    cookie = secrets.token_hex(8)
    erl_a = ErlNode(otp, epmd, cookie=cookie)
    erl_b = ErlNode(otp, epmd, cookie=cookie)
    rows: list[tuple[str, str, str]] = []
    placer = Placer(None if opts.place == "kernel" else opts.place, erl_a, erl_b)
    try:

        async def run() -> None:
            async with Node(
                "bench_rpc@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1", **busy
            ) as node:
                node.expose("py", "abs")(abs)
                await node.rpc(erl_a.name, "erlang", "abs", [-1])  # connect, warm up
                # erl_a's connection to erl_b is made here, not inside the timed calls
                await anyio.to_thread.run_sync(lambda: erl_rtt(erl_a, erl_b.name, "erlang", "abs", 10))
                out: list[float] = []
                inn: list[float] = []
                ee: list[float] = []
                bl: list[float] = []
                step = max(1, n // ROUNDS)
                blocking = BlockingNode(
                    "bench_rpc_blocking@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1",
                    backend_options={"use_uvloop": True} if opts.loop == "uvloop" else {}, **busy,
                )
                await anyio.to_thread.run_sync(blocking.start)
                try:
                    await anyio.to_thread.run_sync(lambda: blocking_to_erl(blocking, erl_a, 10))  # connect
                    for _ in range(ROUNDS):  # in turns: a burst of load on the machine hits all
                        placer("a", "py")
                        await anyio.sleep(SETTLE_S)
                        out += await py_to_erl(node, erl_a, step)
                        placer("py", "a")
                        await anyio.sleep(SETTLE_S)
                        inn += await anyio.to_thread.run_sync(lambda: erl_rtt(erl_a, node.name, "py", "abs", step))
                        placer("b", "a")
                        await anyio.sleep(SETTLE_S)
                        ee += await anyio.to_thread.run_sync(lambda: erl_rtt(erl_a, erl_b.name, "erlang", "abs", step))
                        placer("a", "py")
                        await anyio.sleep(SETTLE_S)
                        bl += await anyio.to_thread.run_sync(lambda: blocking_to_erl(blocking, erl_a, step))
                finally:
                    placer.release()
                    await anyio.to_thread.run_sync(blocking.stop)
                base50, base99 = pct(ee, .5), pct(ee, .99)
                for label, ts in (
                    (f"rpc pynode -> erl, {opts.loop} (us)", out),
                    (f"rpc erl -> pynode, {opts.loop} (us)", inn),
                    (f"rpc pynode -> erl, BlockingNode, {opts.loop} (us)", bl),
                ):
                    p50, p99 = pct(ts, .5), pct(ts, .99)
                    rows.append((label, f"{p50:.0f} / {p99:.0f}", f"p50 / p99; {p50 / base50:.2f}x / {p99 / base99:.2f}x erl->erl"))
                rows.append(("rpc erl -> erl (us)", f"{base50:.0f} / {base99:.0f}", "p50 / p99"))
                rows.append(("pynode busy_wait (s)", str(node.busy_wait), "Node(busy_wait=...)"))
                rows.append(("placement", opts.place, "--place (kernel: unpinned)"))

        if not opts.cold_only:
            anyio.run(run, backend_options={"use_uvloop": True} if opts.loop == "uvloop" else {})
        env = {**os.environ, "ERL_EPMD_PORT": str(epmd.port)}
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        args = ["rpc", erl_a.name, "erlang:node/0", "--cookie", cookie, "--epmd-port", str(epmd.port)]
        script = str(Path(sys.executable).with_name("pynode"))
        erl_call = (glob.glob("/usr/lib/erlang/lib/erl_interface-*/bin/erl_call") or ["erl_call"])[0]
        cmds = {
            "floor: python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import pynode.cli'": [sys.executable, "-c", "import pynode.cli"],
            "pynode rpc NODE erlang:node/0": [script, *args],
            "python -m pynode rpc ...": [sys.executable, "-m", "pynode", *args],
            # the same through main() and a normal interpreter exit (no os._exit shortcut)
            "... via main(), full teardown": [
                sys.executable, "-c", "import sys; from pynode.cli import main; sys.exit(main())", *args,
            ],
            "erl_call -a 'erlang node'": [erl_call, "-n", erl_a.name, "-c", cookie, "-a", "erlang node"],
            "erl -noshell -eval erpc:call": [
                otp.erl, "-noshell", "-name", f"b{secrets.token_hex(3)}@127.0.0.1", "-setcookie", cookie,
                "-hidden", "-eval", f"io:format(\"~p~n\", [erpc:call('{erl_a.name}', erlang, node, [])]), halt().",
            ],
        }
        medians = cold(cmds, env, runs)
        base = medians["erl_call -a 'erlang node'"]
        for name, ms in medians.items():
            rows.append((f"cold: {name} (ms)", f"{ms:.1f}", f"median; {ms / base:.1f}x erl_call"))
    finally:
        for e in (erl_a, erl_b):
            e.kill()
            e.close()
        epmd.kill()
    w = max(len(r[0]) for r in rows)
    print(f"{'workload':<{w}} | {'value':>12} | measure   (n={n} calls, {runs} cold runs; "
          f"{os.cpu_count()} cores; {load()})")
    print("-" * (w + 30))
    for name, value, what in rows:
        print(f"{name:<{w}} | {value:>12} | {what}")


if __name__ == "__main__":
    main()
