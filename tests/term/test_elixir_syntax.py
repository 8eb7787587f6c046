"""The Elixir-syntax printer and the Elixir helpers (interop/test_elixir_erl.py has Elixir read
the output back)."""

from __future__ import annotations

from typing import Any

import pytest

from pynode.term import Atom, BitString, ExportFun, Fun, ImproperList, Pid, Port, Reference, Struct
from pynode.term.elixir import charlist, elixir_module, is_keyword, keyword, keyword_dict, string
from pynode.term.elixir_syntax import format_atom, format_elixir

ISO = Atom("Elixir.Calendar.ISO")


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (Atom("ok"), ":ok"),
        (Atom("Elixir.Enum"), "Enum"),
        (Atom("Elixir.Foo.Bar"), "Foo.Bar"),
        (Atom("Elixir.foo"), ':"Elixir.foo"'),
        (Atom("nil"), "nil"),
        (True, "true"),
        (None, ":undefined"),
        (Atom("a b"), ':"a b"'),
        (Atom("valid?"), ":valid?"),
        (Atom("é"), ":é"),
        (b"hi", '"hi"'),
        ("x\ny", '"x\\ny"'),
        (b'say "#{x}"', '"say \\"\\#{x}\\""'),
        (b"\xff\x00", "<<255, 0>>"),
        (BitString(b"\x01\xa0", 3), "<<1, 5::size(3)>>"),
        (list(b"abc"), '~c"abc"'),
        ([1, 2, 300], "[1, 2, 300]"),
        ([], "[]"),
        ([(Atom("a"), 1), (Atom("b c"), 2)], '[a: 1, "b c": 2]'),
        ([(Atom("Elixir.Enum"), 1)], "[{Enum, 1}]"),
        ((1, 2.5, Atom("x")), "{1, 2.5, :x}"),
        ({}, "%{}"),
        ({Atom("b"): 1, Atom("a"): 2}, "%{a: 2, b: 1}"),
        ({b"a": 1, Atom("b"): 2}, '%{:b => 2, "a" => 1}'),
        (ImproperList([1, 2], 3), "[1, 2 | 3]"),
        (Struct("URI", host=b"x", port=80), '%URI{host: "x", port: 80}'),
        (Struct("Date", year=2024, month=2, day=9, calendar=ISO), "~D[2024-02-09]"),
        (Struct("mod", a=1), "%{__struct__: :mod, a: 1}"),
        (Pid("a@h", 1, 2, 3), "#PID<a@h.1.2>"),
        (Port("a@h", 5, 1), "#Port<a@h.5>"),
        (Reference("a@h", 1, (1, 2, 3)), "#Reference<a@h.3.2.1>"),
        (ExportFun("lists", "map", 2), "&:lists.map/2"),
        (ExportFun("Elixir.Enum", "map", 2), "&Enum.map/2"),
        (Fun("erl_eval", 1, bytes(16), 7, 7, 99, Pid("a@h", 1, 2, 3)), "#Function<7.99/1 in :erl_eval>"),
    ],
)
def test_format_elixir(value: Any, text: str) -> None:
    assert format_elixir(value) == text


def test_deep_nesting_does_not_recurse() -> None:
    deep: Any = []
    for _ in range(5000):
        deep = [deep, 1]
    assert format_elixir(deep).startswith("[[[[")


def test_format_atom_and_module_alias() -> None:
    assert format_atom("Elixir") == "Elixir"
    assert elixir_module("Enum") == "Elixir.Enum"
    assert elixir_module("Elixir.Enum") == "Elixir.Enum"
    assert elixir_module("lists") == "lists"


def test_keyword_helpers() -> None:
    kw = keyword({"a": 1}, b="x")
    assert kw == [(Atom("a"), 1), (Atom("b"), "x")] and all(type(k) is Atom for k, _ in kw)
    assert is_keyword(kw) and is_keyword([]) and not is_keyword([(b"a", 1)]) and not is_keyword((1,))
    assert keyword_dict([(Atom("a"), 1), (Atom("a"), 2)]) == {"a": 1}  # first wins, as Keyword.get
    with pytest.raises(ValueError):
        keyword_dict([1, 2])
    assert string(b"h\xc3\xa9") == "hé"
    with pytest.raises(UnicodeDecodeError):
        string(b"\xff")
    assert charlist("hé") == [104, 233]
