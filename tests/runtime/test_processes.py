"""The process table: pid allocation."""

from __future__ import annotations

from typing import Any

from pynode.runtime.processes import _MAX_ID, _MAX_SERIAL, ProcessTable
from pynode.term import Atom, Pid


class _Proc:
    """What the table keeps of a process here: its pid (a Mailbox needs a running node)."""

    def __init__(self, pid: Pid) -> None:
        self.pid = pid
        self.name: Any = None
        self.aliases: set[Any] = set()

    def _sink(self) -> None:  # a mailbox's say in ProcessTable.sinks: none here
        pass


def test_new_pid_never_hands_out_the_pid_of_a_live_process() -> None:
    """After every pid was handed out once the numbers wrap, as erts' do; a process still
    alive keeps its pid (erts skips it): else erl's signals to a new pid (an erpc process
    that ran at once) would reach the old process."""
    table = ProcessTable(Atom("a@127.0.0.1"), 7)
    live = _Proc(table.new_pid())
    table.add(live)  # type: ignore[arg-type]
    table._next_id, table._serial = _MAX_ID, _MAX_SERIAL
    pids = [table.new_pid() for _ in range(3)]
    assert live.pid == Pid(table.name, 1, 0, 7)
    assert live.pid not in pids
    assert len(set(pids)) == 3 and pids[1:] == [Pid(table.name, 2, 0, 7), Pid(table.name, 3, 0, 7)]
    assert table.local(live.pid) is live
