"""Checks that more than one rpc client (async, blocking, one-shot) must pass against erl."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from pynode.runtime.errors import RemoteError
from pynode.term import Atom


def check_erpc_errors(rpc: Callable[[str, str, list[Any]], Any]) -> None:
    """``rpc(module, function, args)`` raises as erpc:call does: throw, exit and error with
    their reason, and undef with erl's stack naming the missing module."""
    for cls in ("throw", "exit", "error"):
        with pytest.raises(RemoteError) as info:
            rpc("erlang", cls, [Atom("ball")])
        assert (info.value.cls, info.value.reason) == (Atom(cls), Atom("ball"))
    with pytest.raises(RemoteError) as undef:
        rpc("no_such_mod", "f", [])
    assert undef.value.reason == Atom("undef") and undef.value.stack[0][0] == Atom("no_such_mod")


# erl's processes in timer:sleep/1 (a call pynode made and gave up on), and a bounded wait
# for them to end
SLEEPERS = (
    "length([P || P <- processes(),"
    " {current_function, {timer, sleep, 1}} =:= erlang:process_info(P, current_function)])."
)
SLEEPERS_GONE = (
    "F = fun Wait(0) -> still_sleeping;"
    "        Wait(N) -> case [P || P <- processes(),"
    "                   process_info(P, current_function) == {current_function, {timer, sleep, 1}}] of"
    "                       [] -> none; _ -> receive after 20 -> Wait(N - 1) end end end,"
    "F(500)."
)
