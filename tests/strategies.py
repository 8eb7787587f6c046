"""Hypothesis strategies for Erlang terms as pynode maps them (shared by unit and interop tests)."""

from __future__ import annotations

from typing import Any

from hypothesis import strategies as st

from pynode.term import (
    Atom,
    BitString,
    ExportFun,
    ImproperList,
    Pid,
    Port,
    Reference,
    Struct,
    freeze,
)

# Atom texts: a bounded alphabet keeps erl's (never collected) atom table small.
atom_text = st.text(
    alphabet=st.sampled_from("abcxyzAZ_@ 09é€ü'\"\\\n"), min_size=0, max_size=12
) | st.sampled_from(["ok", "error", "undefined", "nil", "", "a" * 255, "ü" * 255])
atoms = atom_text.filter(lambda s: s not in ("true", "false")).map(Atom)
node_names = st.sampled_from(["a@localhost", "py@127.0.0.1", "erl@host", "ü@h"]).map(Atom)

small_ints = st.integers(min_value=0, max_value=255)
ints = st.one_of(
    small_ints,
    st.integers(min_value=-(2**31), max_value=2**31 - 1),
    st.tuples(st.integers(0, 2100), st.integers(-5, 5), st.booleans()).map(
        lambda t: (2 ** t[0] + t[1]) * (-1 if t[2] else 1)
    ),
)
floats = st.floats(allow_nan=False, allow_infinity=False)
binaries = st.binary(max_size=64)
bitstrings = st.builds(BitString, st.binary(min_size=1, max_size=8), st.integers(1, 7))
pids = st.builds(
    Pid, node_names, st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1), st.integers(0, 2**32 - 1)
)
ports = st.builds(Port, node_names, st.integers(0, 2**64 - 1), st.integers(0, 2**32 - 1))
refs = st.builds(
    Reference,
    node_names,
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 2**32 - 1), min_size=3, max_size=5).map(tuple),
)
exports = st.builds(ExportFun, atoms, atoms, st.integers(0, 255))

scalars = st.one_of(
    ints, floats, atoms, binaries, bitstrings, st.booleans(), pids, ports, refs, exports
)


def _containers(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.one_of(
        st.lists(children, max_size=6),
        st.lists(small_ints, max_size=20),
        st.lists(children, max_size=4).map(tuple),
        st.builds(ImproperList, st.lists(children, min_size=1, max_size=4), scalars),
        st.dictionaries(children.map(freeze), children, max_size=5),
        st.builds(
            Struct,
            st.sampled_from(["URI", "Date", "Elixir.My.Struct", "erlmod"]),
            st.dictionaries(atoms.filter(lambda a: a != "__struct__"), children, max_size=4),
        ),
    )


terms = st.recursive(scalars, _containers, max_leaves=30)


