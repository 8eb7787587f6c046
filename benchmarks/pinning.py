"""Pinning processes to CPUs, so that pynode and erl are compared in like placements.

On the 2-core VM a wake-up across CPUs costs tens of microseconds, and the kernel puts erl's
two nodes on one CPU in some runs and not in others, while pynode's spinning caller stays on
the other: a pair's placement moves its latency by up to 6x. A benchmark that pins the
callee of each workload to one CPU and its caller to another ("apart") or both to CPU 0
("shared") gives erl->erl and pynode the same one.
"""

from __future__ import annotations

import os

# placement: (the callee's CPUs, the caller's CPUs); the callee is the side that answers or
# receives (erl node B for pynode's and erl A's calls; pynode for erl A's calls to pynode)
ROLES: dict[str, tuple[set[int], set[int]]] = {"apart": ({0}, {1}), "shared": ({0}, {0})}


def pin(pid: int, to: set[int]) -> None:
    """Pin every thread of process ``pid`` (erl's schedulers, poll thread, ...) to ``to``;
    threads started later inherit their creator's CPUs."""
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            os.sched_setaffinity(int(task), to)
        except ProcessLookupError:  # a thread that ended since the listing (a worker's)
            pass


def can_place(name: str) -> bool:
    """Whether this machine can take placement ``name`` (apart needs two CPUs)."""
    callee, caller = ROLES[name]
    return (callee | caller) <= os.sched_getaffinity(0)
