"""erpc:call's result from the exit reason of erpc:execute_call/4, mapped as erpc.erl's
result/4 maps it (OTP 25-28): a value, or the exception erpc:call would raise."""

from __future__ import annotations

import pytest

from pynode.runtime.erpc import erpc_result
from pynode.runtime.errors import NoConnection, RemoteError
from pynode.term import Atom, Reference

RES = Reference("py@host", 5, (1, 2, 3))
OTHER = Reference("py@host", 5, (4, 5, 6))
ERPC = Atom("erpc")


def raised(reason: object) -> RemoteError:
    with pytest.raises(RemoteError) as info:
        erpc_result(reason, RES)
    return info.value


def test_return_is_the_value() -> None:
    assert erpc_result((RES, Atom("return"), [1, 2]), RES) == [1, 2]


def test_throw_exit_and_error_with_its_stack() -> None:
    e = raised((RES, Atom("throw"), Atom("t")))
    assert (e.cls, e.reason, e.stack) == (Atom("throw"), Atom("t"), [])
    e = raised((RES, Atom("exit"), Atom("x")))
    assert (e.cls, e.reason) == (Atom("exit"), Atom("x"))
    stack = [(Atom("m"), Atom("f"), 1, [])]
    e = raised((RES, Atom("error"), Atom("badarith"), stack))
    assert (e.cls, e.reason, e.stack) == (Atom("error"), Atom("badarith"), stack)


def test_execute_calls_own_badarg_is_an_erpc_error() -> None:
    """{Res, error, {erpc, R}}: erpc:call raises error({erpc, R}), no stack."""
    e = raised((RES, Atom("error"), (ERPC, Atom("badarg"))))
    assert (e.cls, e.reason, e.stack) == (Atom("error"), (ERPC, Atom("badarg")), [])


def test_anything_else_is_the_process_exit() -> None:
    """Another tag, another ref, or a 3-tuple error that is no erpc error: exit({signal, R})."""
    for reason in (
        Atom("killed"),
        (OTHER, Atom("return"), 1),
        (RES, Atom("error"), Atom("badarg")),
        (RES, Atom("error"), (Atom("other"), 1)),
    ):
        e = raised(reason)
        assert (e.cls, e.reason) == (Atom("exit"), reason)


def test_noconnection() -> None:
    with pytest.raises(NoConnection):
        erpc_result(Atom("noconnection"), RES)
