"""The host's load as the benchmark tables quote it: load averages, and the share of CPU time
the hypervisor gave to others (steal) since the script started. On a virtual machine a run
with steal is a run in which every figure, erl's too, may be slower for reasons of its own.
Also the host's TCP congestion control: erl's sender batches small messages into segments,
or not, by it (benchmarks/README.md, recv_place.py)."""

from __future__ import annotations

import os
import time


def _steal_seconds() -> float | None:
    """CPU seconds stolen so far, all CPUs (None where /proc/stat has no steal column)."""
    try:
        with open("/proc/stat") as f:
            fields = f.readline().split()
        return int(fields[8]) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


_START = (time.monotonic(), _steal_seconds())


def congestion_control() -> str | None:
    """The congestion control new TCP sockets get (Linux), or None where it cannot be read."""
    try:
        with open("/proc/sys/net/ipv4/tcp_congestion_control") as f:
            return f.read().strip() or None
    except OSError:
        return None


def load() -> str:
    """``load average 1.02, 0.80, 0.61; steal 0.4% of CPU time; tcp bbr`` (steal: since this
    module was imported; tcp: the congestion control)."""
    one, five, fifteen = os.getloadavg()
    text = f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"
    t0, s0 = _START
    s1 = _steal_seconds()
    elapsed = (time.monotonic() - t0) * (os.cpu_count() or 1)
    if s0 is not None and s1 is not None and elapsed > 0:
        text += f"; steal {100 * (s1 - s0) / elapsed:.1f}% of CPU time"
    cc = congestion_control()
    if cc is not None:
        text += f"; tcp {cc}"
    return text
