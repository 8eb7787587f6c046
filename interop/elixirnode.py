"""Real Elixir nodes for interop tests: an ``erl`` with Elixir's code paths and the elixir
application started, driven like any ErlNode, plus ``elixir(code)`` to evaluate Elixir.

Debian's ``elixir`` package (1.14) is built for Debian's OTP 25 (erlang-nox); the OTP 28
runtime of the matrix has no compiler application, which Elixir needs, so Elixir interop runs
on OTP 25 only. Starting ``erl -pa .../elixir/ebin`` is what the ``elixir`` script itself does
(``elixir --sname`` adds a shell script layer and its own argument parsing); this keeps one
harness for erl and Elixir nodes.
"""

from __future__ import annotations

import glob
import os
import shutil
from typing import Any

from pynode.term import Atom

from .erlnode import Epmd, ErlNode
from .otp import Otp, otp25

ELIXIR_LIB = os.environ.get("PYNODE_ELIXIR_LIB", "/usr/lib/elixir/lib")


def elixir_ebins() -> list[str]:
    """The ebin folders of Elixir's applications (elixir, logger, eex, ...)."""
    ebins = sorted(glob.glob(os.path.join(ELIXIR_LIB, "*", "ebin")))
    if not any(os.path.exists(os.path.join(e, "elixir.app")) for e in ebins):
        raise RuntimeError(
            f"Elixir not found under {ELIXIR_LIB}: install it (Debian: apt-get install -y elixir; "
            ".ci/setup does)"
        )
    return ebins


def elixir_otp() -> Otp:
    """The OTP that Debian's Elixir runs on: Debian's own (OTP 25)."""
    if shutil.which("elixir") is None:
        raise RuntimeError("elixir not found on PATH: apt-get install -y elixir (.ci/setup does)")
    return otp25()


class ElixirNode(ErlNode):
    """A distributed node running Elixir: ``node.elixir('Enum.sum([1, 2])')``."""

    def __init__(self, otp: Otp, epmd: Epmd, **kwargs: Any) -> None:
        start = "{ok, _} = application:ensure_all_started(elixir)"
        extra = ["-pa", *elixir_ebins(), "-eval", start, *kwargs.pop("args", [])]
        kwargs.setdefault("name", None)
        super().__init__(otp, epmd, args=extra, **kwargs)

    def elixir(self, code: str, **bindings: Any) -> Any:
        """Evaluate Elixir code (``Code.eval_string``) and return its decoded value.

        ``bindings`` become Elixir variables (``node.elixir("x + 1", x=1)``).
        """
        binding = [(Atom(k), v) for k, v in bindings.items()]
        return self.run("element(1, 'Elixir.Code':eval_string(C, B)).", C=code.encode(), B=binding)

    def elixir_bytes(self, code: str, **bindings: Any) -> bytes:
        """``:erlang.term_to_binary(value, minor_version: 2)`` of an Elixir expression: the
        bytes erts writes for it (UTF-8 atoms, as on the wire)."""
        binding = [(Atom(k), v) for k, v in bindings.items()]
        out: bytes = self.run(
            "term_to_binary(element(1, 'Elixir.Code':eval_string(C, B)), [{minor_version, 2}]).",
            C=code.encode(),
            B=binding,
        )
        return out
