"""What the partition proxy costs erl->erl traffic: the same two erl nodes' echo round trips
and 1 MiB echo throughput, direct (a plain EPMD) and through the proxy, in one run.

    .venv/bin/python benchmarks/proxy.py [--quick] [--otp otp25|otp28]

Timed inside erl (erlang:monotonic_time), so Python only relays when traffic goes through the
proxy. Prints one table with the ratio proxy/direct, and the load average.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pynode.term import Atom  # noqa: E402
from pynode.testing import Cluster  # noqa: E402
from pynode.testing.otp import otp25, otp28  # noqa: E402

ECHO = "register(pxecho, spawn(fun Loop() -> receive {From, M} -> From ! {pxecho, M}, Loop() end end))."

RTT = """
[begin T0 = erlang:monotonic_time(microsecond),
       {pxecho, Peer} ! {self(), I},
       receive {pxecho, I} -> ok end,
       erlang:monotonic_time(microsecond) - T0 end || I <- lists:seq(1, N)].
"""

BULK = """
Bin = binary:copy(<<7>>, 1048576),
T0 = erlang:monotonic_time(microsecond),
[begin {pxecho, Peer} ! {self(), Bin}, receive {pxecho, _} -> ok end end || _ <- lists:seq(1, N)],
erlang:monotonic_time(microsecond) - T0.
"""


def measure(proxy: bool, otp_name: str, n_rtt: int, n_bulk: int, rounds: int) -> dict[str, float]:
    otp = otp25() if otp_name == "otp25" else otp28()
    with Cluster(erl=2, otp=otp, proxy=proxy) as c:
        e1, e2 = c.erl_nodes
        c.wait_full_mesh(timeout=30)
        e2.run(ECHO)
        best_p50 = best_p99 = best_mibs = None
        for _ in range(rounds):
            times = sorted(e1.run(RTT, Peer=Atom(str(e2.name)), N=n_rtt))
            p50 = statistics.median(times)
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            us = e1.run(BULK, Peer=Atom(str(e2.name)), N=n_bulk)
            mibs = 2 * n_bulk / (us / 1e6)  # each MiB goes there and back
            best_p50 = p50 if best_p50 is None else min(best_p50, p50)
            best_p99 = p99 if best_p99 is None else min(best_p99, p99)
            best_mibs = mibs if best_mibs is None else max(best_mibs, mibs)
        if proxy:
            (link,) = c.status()["links"]
            assert link["bytes_to_acceptor"] > n_bulk * 1048576  # it did go through the proxy
        return {"p50": best_p50, "p99": best_p99, "mibs": best_mibs}  # type: ignore[dict-item]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--otp", default="otp25", choices=["otp25", "otp28"])
    args = ap.parse_args()
    n_rtt, n_bulk, rounds = (200, 10, 1) if args.quick else (2000, 50, 3)
    load = os.getloadavg()
    direct = measure(False, args.otp, n_rtt, n_bulk, rounds)
    proxied = measure(True, args.otp, n_rtt, n_bulk, rounds)
    print(f"erl->erl through the partition proxy ({args.otp}; {n_rtt} round trips, "
          f"{n_bulk} x 1 MiB echoed; best of {rounds})")
    print(f"{'':28}{'direct':>12}{'proxy':>12}{'proxy/direct':>14}")
    for key, label, unit in (("p50", "echo round trip p50", "us"), ("p99", "echo round trip p99", "us"),
                             ("mibs", "1 MiB echo throughput", "MiB/s")):
        d, p = direct[key], proxied[key]
        print(f"{label + ' (' + unit + ')':28}{d:12.1f}{p:12.1f}{p / d:14.2f}")
    print(f"load average at start: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (2 cores)")


if __name__ == "__main__":
    main()
