"""The benchmarks run: each script, with a few iterations, against real erl nodes where it
uses them, ends well and prints its table. (Two of them had failed for days unnoticed,
after changes to the paths they hook: rpc_python.py and rpc_phases.py.) No figure is
checked: speed is for the scripts' own full runs, never for a unit test."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
_NUMBER = r"[0-9][0-9,]*(?:\.[0-9]+)?"

# script and arguments, then a line its output must have (a regular expression)
RUNS = {
    "rpc": (["rpc.py", "--quick"], rf"^rpc pynode -> erl, asyncio \(us\)\s+\|\s+{_NUMBER} / {_NUMBER} \|"),
    "rpc_phases": (["rpc_phases.py", "--calls", "30"], rf"^pynode/erl p50: {_NUMBER}$"),
    "rpc_floor": (["rpc_floor.py", "--calls", "30", "--gaps", "0"], rf"^erl -> pynode\s+\|\s+{_NUMBER} \|"),
    "rpc_python": (["rpc_python.py", "--calls", "200", "--rounds", "1"], rf"^caller: node\.rpc.*\|\s+{_NUMBER}$"),
    "dist": (
        ["dist.py", "--small", "2000", "--echo", "50", "--big", "5"],
        rf"^\(b\) small msgs erl->py \(msgs/s\)\s+\|\s+{_NUMBER} \|",
    ),
    "dist_placed": (  # every workload's callee and caller pinned alike (shared: any machine)
        ["dist.py", "--small", "2000", "--echo", "50", "--big", "5", "--place", "shared"],
        rf"^\(f\) echo erl->py->erl p50 \(us\)\s+\|\s+{_NUMBER} \|(?s:.*)placement: shared;",
    ),
    "rpc_placed": (
        ["rpc.py", "--quick", "--place", "shared"],
        rf"^rpc erl -> pynode, asyncio \(us\)\s+\|\s+{_NUMBER} / {_NUMBER} \|(?s:.*)^placement\s+\|\s+shared \|",
    ),
    "recv_place": (["recv_place.py", "--msgs", "2000", "--repeat", "1"], rf"^shared: all on CPU 0\s+\|\s+{_NUMBER} \|"),
    "echo_place": (
        ["echo_place.py", "--count", "50", "--repeat", "1"],
        # (and the BlockingNode's columns at the end)
        rf"^shared: all on CPU 0\s+\|\s+{_NUMBER} /\s+{_NUMBER} \|.*\|\s+{_NUMBER} /\s+{_NUMBER} \| {_NUMBER}$",
    ),
    "idle_cpu": (["idle_cpu.py", "--seconds", "0.3", "--gaps", "1"], rf"^1\s+\|\s+\d+ \|\s+{_NUMBER} \|"),
    "framing": (["framing.py", "--quick"], r"^SEND, 131 68 0\s+send\s+\d+"),
    "codec": (["codec.py", "--quick", "--no-erl"], r"pynode/erl"),
}


@pytest.mark.parametrize("name", sorted(RUNS))
def test_the_benchmark_runs(name: str) -> None:
    if name == "rpc_floor" and len(os.sched_getaffinity(0)) < 2:
        pytest.skip("rpc_floor.py pins its processes to CPUs 0 and 1")
    args, line = RUNS[name]
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / args[0]), *args[1:]],
        capture_output=True, text=True, timeout=300, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    assert re.search(line, proc.stdout, re.MULTILINE), proc.stdout[-3000:]
