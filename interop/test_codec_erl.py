"""The codec against erts itself, on every OTP release of the matrix."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings

from pynode.term import (
    Atom,
    BitString,
    ExportFun,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    decode,
    encode,
    freeze,
)
from tests.strategies import terms

from .oracle import ErlOracle

# Erlang literal -> the Python value pynode must decode it to.
LITERALS: list[tuple[str, Any]] = [
    ("0", 0), ("255", 255), ("256", 256), ("-1", -1), ("2147483647", 2147483647),
    ("-2147483648", -2147483648), ("2147483648", 2147483648), ("-2147483649", -2147483649),
    ("16#FFFFFFFFFFFFFFFFFFFF", 0xFFFFFFFFFFFFFFFFFFFF), ("-(1 bsl 2100)", -(1 << 2100)),
    ("1 bsl 2040", 1 << 2040),
    ("1.5", 1.5), ("-0.0", -0.0), ("1.0e300", 1e300), ("5.0e-324", 5e-324),
    ("ok", Atom("ok")), ("''", Atom("")), ("'hello world'", Atom("hello world")),
    ("'ünï€'", Atom("ünï€")), ("true", True), ("false", False), ("undefined", Atom("undefined")),
    ("list_to_atom(lists:duplicate(255, $x))", Atom("x" * 255)),
    ("list_to_atom(lists:duplicate(255, 16#20AC))", Atom("€" * 255)),
    ("<<>>", b""), ("<<\"abc\">>", b"abc"), ("<<1:3>>", BitString(b"\x20", 3)),
    ("<<255, 1:1>>", BitString(b"\xff\x80", 1)), ("{}", ()), ("{1, a}", (1, Atom("a"))),
    ("list_to_tuple(lists:seq(1, 300))", tuple(range(1, 301))), ("[]", []),
    ("\"abc\"", [97, 98, 99]), ("[1, 256]", [1, 256]), ("[a | b]", ImproperList([Atom("a")], Atom("b"))),
    ("[1, 2 | <<\"t\">>]", ImproperList([1, 2], b"t")), ("lists:seq(1, 70000)", list(range(1, 70001))),
    ("#{}", {}), ("#{a => 1, <<\"b\">> => [2]}", {Atom("a"): 1, b"b": [2]}),
    ("#{[1] => x, #{} => y, {[2]} => z}", {freeze([1]): Atom("x"), freeze({}): Atom("y"), freeze(([2],)): Atom("z")}),
    ("maps:from_list([{I, I} || I <- lists:seq(1, 100)])", {i: i for i in range(1, 101)}),
    ("fun lists:map/2", ExportFun("lists", "map", 2)),
    ("[{unicode:characters_to_binary(\"héllo\"), 'é'}]", [("héllo".encode(), Atom("é"))]),
]


@pytest.mark.parametrize("literal,value", LITERALS, ids=[x for x, _ in LITERALS])
def test_erl_to_python(oracle: ErlOracle, literal: str, value: Any) -> None:
    erl_bytes = oracle.eval(literal + ".")
    got = decode(erl_bytes)
    assert got == value
    assert type(got) is type(value)
    # and what we send back is the same term in erl
    assert oracle.equal(encode(got), erl_bytes)


@pytest.mark.parametrize("literal,value", LITERALS, ids=[x for x, _ in LITERALS])
def test_python_to_erl(oracle: ErlOracle, literal: str, value: Any) -> None:
    ours = encode(value)
    assert oracle.equal(ours, oracle.eval(literal + "."))
    # byte-exact with erl's own encoding (maps: erl orders keys its own way)
    if not isinstance(value, dict):
        assert oracle.reencode(ours) == ours


@pytest.mark.parametrize(
    "expr",
    [
        "self()", "make_ref()", "hd(erlang:ports())", "fun(X) -> X + 1 end",
        "begin Y = {1, [a]}, fun(X) -> {X, Y} end end", "erlang:alias()",
        "list_to_pid(\"<0.32767.8191>\")",
        "{self(), make_ref(), fun lists:seq/2, <<7:5>>, #{self() => make_ref()}}",
    ],
)
def test_erl_made_terms_round_trip(oracle: ErlOracle, expr: str) -> None:
    erl_bytes = oracle.eval(expr + ".")
    value = decode(erl_bytes)
    assert type(value) in (Pid, Reference, Port, Fun, tuple), value
    assert oracle.equal(encode(value), erl_bytes)
    assert decode(encode(value)) == value


def test_python_made_identifiers(oracle: ErlOracle) -> None:
    for value in (
        Pid("py@127.0.0.1", 17, 3, 0xDEADBEEF),
        Port("py@127.0.0.1", 2**40 + 5, 77),
        Reference("py@127.0.0.1", 9, (1, 2, 3, 4, 5)),
    ):
        ours = encode(value)
        assert decode(oracle.reencode(ours)) == value


def test_compressed_both_ways(oracle: ErlOracle) -> None:
    value = [b"x" * 100] * 100
    erl_bytes = oracle.reencode(encode(value), [Atom("compressed")])
    assert erl_bytes[1] == 80
    assert decode(erl_bytes) == value
    assert oracle.equal(encode(value, compressed=True), encode(value))


def test_legacy_encodings_from_erl(oracle: ErlOracle) -> None:
    # minor_version 0 makes erl write FLOAT_EXT and Latin-1 ATOM_EXT
    erl_bytes = oracle.reencode(encode((1.5, Atom("ok"), Atom("é"))), [(Atom("minor_version"), 0)])
    assert erl_bytes[3] == 99
    assert decode(erl_bytes) == (1.5, Atom("ok"), Atom("é"))


@settings(max_examples=1500, deadline=None, suppress_health_check=list(HealthCheck))
@given(value=terms)
def test_hypothesis_terms_against_erl(oracle: ErlOracle, value: Any) -> None:
    ours = encode(value)
    back = oracle.reencode(ours)
    assert decode(back) == value
    assert oracle.equal(back, ours)


def test_printer_matches_erl_for_simple_terms(oracle: ErlOracle) -> None:
    assert oracle.print(encode((1, Atom("a b"), [104, 105], b"x"))) == '{1,\'a b\',"hi",<<"x">>}'
