"""The Erlang-syntax printer and parser (pynode.term.syntax), without erl.

What erl itself prints and parses is checked in interop/test_syntax_erl.py; the expected
strings here were confirmed there against OTP 25 and OTP 28.
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pynode.term import (
    Atom,
    BitString,
    ExportFun,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    decode,
    encode,
    freeze,
)
from pynode.term.syntax import DEFAULT_MAX_DEPTH, TermSyntaxError, format_term, parse_term
from tests.strategies import terms

PID = Pid("node@host", 85, 0, 3)
FUN = Fun("erl_eval", 1, bytes(range(16)), 42, 7, 3316493, PID, (Atom("x"), [1]))


def same(a: Any, b: Any) -> bool:
    """Equal as Erlang terms: ``==`` plus the printed form (``==`` equates 1, 1.0, true)."""
    return a == b and format_term(a) == format_term(b)


# Terms that must come back from text unchanged.
# fmt: off
ROUND_TRIP: list[Any] = [
    0, 1, -1, 255, 256, -(2**31), 2**31, 2**64, -(2**64) - 1, 10**40, -(10**40),
    0.0, -0.0, 1.0, -1.5, 0.1, 1e10, 1e-5, 123456789.0, 1e22, 1.5e300, 5e-324,
    1.7976931348623157e308, 2.0**53, 9007199254740990.0, math.pi, -math.e,
    True, False, Atom("ok"), Atom(""), Atom("hello world"), Atom("Caps"), Atom("_x"),
    Atom("a@b"), Atom("and"), Atom("maybe"), Atom("else"), Atom("fun"), Atom("undefined"),
    Atom("é"), Atom("Été"), Atom("h€"), Atom("日本"), Atom("'"), Atom('"'), Atom("\\"),
    Atom("\n\t\x00\x7f\x80\x9f\xa0"), Atom("a" * 255), Atom("€" * 255), Atom("true "),
    b"", b"abc", b"\x00\x01\xff", "héllo".encode(), "日本".encode(), b"\xef\xbf\xbe",
    b'a"b\\c\'d\n', bytes(range(256)), b"\xc3\xa9\x85",
    BitString(b"\x80", 1), BitString(b"\x01\x40", 3), BitString(b"abc\xfe", 7),
    (), (1,), (Atom("ok"), 1), ((((),),),), tuple(range(300)),
    [], [1], [97, 98, 99], [10, 13, 9, 11, 8, 12, 27, 34, 92, 39], [104, 233, 8364],
    [0], [127], [128], [159], [160, 255], [256], [-1], [1.0], [True], [[]], [[97]],
    [Atom("a"), [Atom("b"), [Atom("c")]]], list(range(1000)),
    ImproperList([1], 2), ImproperList([Atom("a"), Atom("b")], Atom("c")),
    ImproperList([1, 2], b"tail"), ImproperList([[]], ()), ImproperList([97], 98),
    {}, {Atom("a"): 1}, {1: Atom("x"), Atom("a"): 2, b"k": [3], (1,): {}},
    {freeze([1]): 1, freeze({Atom("k"): [2]}): 2, freeze(([3],)): 3},
    {Atom("nested"): {Atom("deeper"): {Atom("deepest"): []}}},
    PID, Pid("foo@127.0.0.1", 0, 0, 0), Pid("ü@h", 2**32 - 1, 2**32 - 1, 2**32 - 1),
    Port("node@host", 5, 3), Port("a-b@c", 2**64 - 1, 7),
    Reference("node@host", 3, (1, 2, 3)), Reference("x@y", 0, (7,)),
    Reference("'q'@h", 2**32 - 1, (1, 2, 3, 4, 5)),
    ExportFun("lists", "map", 2), ExportFun("Mod", "f g", 0), ExportFun("erlang", "and", 2),
    [{Atom("ok"): (PID, [Reference("n@h", 1, (1, 2, 3))], Port("n@h", 1, 2))}],
]
# fmt: on


@pytest.mark.parametrize("term", ROUND_TRIP, ids=lambda t: format_term(t)[:40])
def test_round_trip(term: Any) -> None:
    text = format_term(term)
    assert "\n" not in text
    back = parse_term(text)
    assert same(back, term), (text, back)


# fmt: off
@pytest.mark.parametrize(
    "term, text",
    [
        (1.0e10, "1.0e10"), (1.0e-5, "1.0e-5"), (123456789.0, "123456789.0"), (0.1, "0.1"),
        (1.0e22, "1.0e22"), (1.5e300, "1.5e300"), (1e15, "1.0e15"), (1e-4, "0.0001"),
        (0.001, "0.001"), (1000.0, "1.0e3"), (100.0, "100.0"), (0.0015, "0.0015"),
        (1.5e-5, "1.5e-5"), (1.23e-4, "1.23e-4"), (2.0**53, "9.007199254740992e15"),
        (9007199254740990.0, "9007199254740990.0"), (-0.0, "-0.0"), (5e-324, "5.0e-324"),
        (12345.678, "12345.678"), (1.05e11, "1.05e11"),
        (Atom("A"), "'A'"), (Atom("and"), "'and'"), (Atom("a b"), "'a b'"), (Atom("a@b"), "a@b"),
        (Atom("\n"), "'\\n'"), (Atom("\x7f"), "'\\d'"), (Atom("\\"), "'\\\\'"),
        (Atom("'"), "'\\''"), (Atom("é"), "é"), (Atom("\u0400"), "'\\x{400}'"),
        (Atom("_a"), "'_a'"), (Atom("a_B9"), "a_B9"), (Atom("maybe"), "'maybe'"),
        (Atom("query"), "query"), (Atom("cond"), "'cond'"), (Atom(""), "''"),
        (Atom("\x80"), "'\\200'"), (Atom("a.b"), "'a.b'"), (Atom("true"), "true"),
        (None, "undefined"), (True, "true"), (False, "false"),
        ("héllo", '<<"héllo"/utf8>>'), ("plain", '<<"plain">>'),
        ("h€llo".encode(), '<<"h€llo"/utf8>>'), (b"h\xe9llo", '<<"héllo">>'),
        (b"a\x7fb", "<<97,127,98>>"), (b"\xef\xbf\xbe", "<<239,191,190>>"),
        (b'abc\n\t\x1b"\\', '<<"abc\\n\\t\\e\\"\\\\">>'), (b"", "<<>>"),
        (bytearray(b"ab"), '<<"ab">>'), (memoryview(b"ab"), '<<"ab">>'),
        (BitString(b"\x01\x40", 3), "<<1,2:3>>"), (BitString(b"\x80", 1), "<<1:1>>"),
        (BitString(b"ab", 8), '<<"ab">>'),
        ([104, 233, 108], '"hél"'), ([104, 8364], "[104,8364]"), ([7, 8, 9], "[7,8,9]"),
        ([8], '"\\b"'), ([127], "[127]"), ([], "[]"), ([True], "[true]"),
        (FrozenList([104, 105]), '"hi"'),
        (ImproperList([Atom("a")], Atom("b")), "[a|b]"), (ImproperList([1, 2], [3]), "[1,2,3]"),
        (ImproperList([1], ImproperList([2], 3)), "[1,2|3]"), (ImproperList([104], [105]), '"hi"'),
        ({Atom("b"): 1, Atom("a"): 2, 1: Atom("x"), freeze([115]): Atom("y"), (Atom("t"),): 3},
         '#{1 => x,a => 2,b => 1,{t} => 3,"s" => y}'),
        ({1.5: 1, 2: 2, 0.5: 3, -1: 4}, "#{-1 => 4,2 => 2,0.5 => 3,1.5 => 1}"),
        (FrozenMap({Atom("k"): 1}), "#{k => 1}"),
        (PID, "#Pid<node@host.85.0.3>"), (Pid("a@127.0.0.1", 1, 2, 3), "#Pid<'a@127.0.0.1'.1.2.3>"),
        (Port("n@h", 5, 3), "#Port<n@h.5.3>"),
        (Reference("n@h", 3, (36361, 1250689026, 1100039049)),
         "#Ref<n@h.3.1100039049.1250689026.36361>"),
        (FUN, "#Fun<erl_eval.42.3316493>"), (ExportFun("lists", "map", 2), "fun lists:map/2"),
        (ExportFun("Mod", "and", 1), "fun 'Mod':'and'/1"),
        ((1, [2, (3,)], {}), "{1,[2,{3}],#{}}"),
    ],
)
# fmt: on
def test_format(term: Any, text: str) -> None:
    assert format_term(term) == text


def test_format_subclasses_and_other_mappings() -> None:
    import enum
    from collections import OrderedDict, namedtuple

    class Color(enum.IntEnum):
        RED = 1

    pair = namedtuple("pair", "a b")
    assert format_term([Color.RED, pair(1, 2), OrderedDict([(Atom("k"), 1)])]) == "[1,{1,2},#{k => 1}]"


def test_format_rejects_what_erlang_cannot_hold() -> None:
    with pytest.raises(TypeError):
        format_term(object())
    with pytest.raises(TypeError):
        format_term({1, 2})
    for bad in (math.inf, -math.inf, math.nan):
        with pytest.raises(ValueError):
            format_term([bad])


def test_huge_integers_beyond_str_limit() -> None:
    for n in (10**5000 + 12345, -(7**9000), 2**40000):
        text = format_term(n)
        assert text == ("-" if n < 0 else "") + _decimal(abs(n))
        assert parse_term(text) == n
    assert parse_term("16#" + "F" * 5000) == 16**5000 - 1


def _decimal(n: int) -> str:
    digits = []
    while n:
        n, r = divmod(n, 10**1000)
        digits.append(str(r).rjust(1000, "0"))
    return "".join(reversed(digits)).lstrip("0") or "0"


def test_fun_prints_but_does_not_parse() -> None:
    text = format_term(FUN)
    with pytest.raises(TermSyntaxError, match="funs cannot be built from text"):
        parse_term(text)


# Erlang literal -> Python value (cases erl agrees with in interop/test_syntax_erl.py).
# fmt: off
PARSE: list[tuple[str, Any]] = [
    ("ok", Atom("ok")), ("ok.", Atom("ok")), ("  ok .  ", Atom("ok")), ("'ok'", Atom("ok")),
    ("true", True), ("'true'", True), ("false", False), ("undefined", Atom("undefined")),
    ("'maybe'", Atom("maybe")), ("maybe", Atom("maybe")), ("else", Atom("else")),
    ("'a\\x{20AC}'", Atom("a€")), ("'\\x41\\101\\^a'", Atom("AA\x01")), ("é", Atom("é")),
    ("aÀb", Atom("aÀb")), ("ß", Atom("ß")),
    ("42", 42), ("-42", -42), ("+42", 42), ("- 42", -42), ("1_000_000", 1000000),
    ("16#FF", 255), ("16#ff_ff", 65535), ("-16#10", -16), ("2#101", 5), ("36#zz", 1295),
    ("001", 1), ("$a", 97), ("$\\n", 10), ("$\\x{41}", 65), ("$\\101", 65), ("$\\^A", 1),
    ("$\\^?", 127), ("$ ", 32), ("$\\s", 32), ("$\\d", 127), ("-$a", -97), ("$€", 8364),
    ("$\\\\", 92), ("$\\'", 39), ("$\"", 34), ("$\n", 10),
    ("1.0", 1.0), ("-1.5", -1.5), ("2.5E-3", 0.0025), ("1.5e+3", 1500.0),
    ("1_0.5_0e1_0", 1.05e11), ("0.5e-0", 0.5),
    ('"abc"', [97, 98, 99]), ('""', []), ('"a" "b"', [97, 98]), ('"a"\n  "b" "c"', [97, 98, 99]),
    ('"\\x{41}\\101\\^b\\z"', [65, 65, 2, 122]), ('"\\1010"', [65, 48]), ('"\\8"', [56]),
    ('"\\s\\d\\e\\a"', [32, 127, 27, 97]), ('"€"', [8364]), ('"\\x{1F600}"', [0x1F600]),
    ('"a\\\nb"', [97, 10, 98]), ('"tab\\there"', list(b"tab\there")),
    ("<<>>", b""), ('<<"x">>', b"x"), ("<<1,2,3>>", b"\x01\x02\x03"), ('<<"é"/utf8>>', "é".encode()),
    ('<<"ab"/utf16>>', b"\x00a\x00b"), ('<<"ab"/utf16-little>>', b"a\x00b\x00"),
    ("<<$a/utf32-little>>", b"a\x00\x00\x00"), ("<<16#1F600/utf8>>", "\U0001f600".encode()),
    ("<<1:3>>", BitString(b"\x20", 3)), ("<<1,2:3>>", BitString(b"\x01\x40", 3)),
    ("<<1:12/little>>", BitString(b"\x01\x00", 4)), ("<<16#ABC:12/little>>", BitString(b"\xbc\xa0", 4)),
    ("<<16#1234:16/little>>", b"\x34\x12"), ("<<-1:12>>", BitString(b"\xff\xf0", 4)),
    ("<<1:1/unit:3>>", BitString(b"\x20", 3)), ("<<1:4/unit:8-little>>", b"\x01\x00\x00\x00"),
    ("<<1.5/float>>", b"?\xf8\x00\x00\x00\x00\x00\x00"), ("<<1.5:32/float>>", b"?\xc0\x00\x00"),
    ("<<1.5:16/float>>", b">\x00"), ("<<1/float>>", b"?\xf0\x00\x00\x00\x00\x00\x00"),
    ('<<"ab":16>>', b"\x00a\x00b"), ("<<<<1,2>>/binary,3>>", b"\x01\x02\x03"),
    ("<<<<1,2>>:1/binary>>", b"\x01"), ("<<<<1:3>>/bits,1:5>>", b"\x21"), ("<<300>>", b"\x2c"),
    ("<<-1:1/signed>>", BitString(b"\x80", 1)), ('<<"a","b"/utf8,$c>>', b"abc"),
    ("[]", []), ("[1]", [1]), ("[1,2|[3]]", [1, 2, 3]), ("[1|[2|[3|[]]]]", [1, 2, 3]),
    ("[a|b]", ImproperList([Atom("a")], Atom("b"))),
    ("[a|[b|c]]", ImproperList([Atom("a"), Atom("b")], Atom("c"))),
    ("{}", ()), ("{a}", (Atom("a"),)), ("{a,{b,{}}}", (Atom("a"), (Atom("b"), ()))),
    ("(1)", 1), ("{(a),[(b)]}", (Atom("a"), [Atom("b")])),
    ("#{}", {}), ("#{a => 1, a => 2}", {Atom("a"): 2}),
    ("#{[1] => x, #{} => y, {[2]} => z}",
     {freeze([1]): Atom("x"), freeze({}): Atom("y"), freeze(([2],)): Atom("z")}),
    ("  {  a ,  b  }  % comment\n", (Atom("a"), Atom("b"))), ("% c\n[\n1, % one\n2\n]", [1, 2]),
    ("fun lists:map/2", ExportFun("lists", "map", 2)), ("fun 'M':'f g'/0", ExportFun("M", "f g", 0)),
    ("fun erlang:and/2", ExportFun("erlang", "and", 2)),
    ("#Pid<node@host.85.0.3>", PID), ("#Pid<'a.b@c'.1.2.3>", Pid("a.b@c", 1, 2, 3)),
    ("#Port<n@h.5.3>", Port("n@h", 5, 3)),
    ("#Ref<n@h.3.1100039049.1250689026.36361>", Reference("n@h", 3, (36361, 1250689026, 1100039049))),
    (b'<<"bytes input">>', b"bytes input"),
]
# fmt: on


@pytest.mark.parametrize("text, value", PARSE, ids=[repr(t)[:40] for t, _ in PARSE])
def test_parse(text: str, value: Any) -> None:
    assert same(parse_term(text), value)


def test_parse_keeps_keys_erlang_tells_apart() -> None:
    """1, 1.0 and true are one dict key to Python, three map keys to Erlang (as in the codec)."""
    m = parse_term("#{1 => a, 1.0 => b, true => c, x => d}")
    assert len(m) == 4
    assert format_term(m) == "#{1 => a,1.0 => b,true => c,x => d}"
    assert parse_term("#{1.0 => a, 1.0 => b}") == {1.0: Atom("b")}
    assert type(next(iter(parse_term("#{1.0 => a, 1.0 => b}")))) is float


# fmt: off
ERRORS: list[tuple[str, str, int, int]] = [
    ("", "expected a term, found end of input", 1, 1),
    ("[1,\n 2,\n 3 x]", "expected ',', '|' or ']', found 'x'", 3, 4),
    ("{a,b,}", "expected a term, found '}'", 1, 6),
    ("[a|b|c]", "expected ']' after the tail of a list", 1, 5),
    ('"abc', "unterminated string", 1, 1),
    ("'abc", "unterminated quoted atom", 1, 1),
    ("Foo", "variables (Foo) are not allowed", 1, 1),
    ("_", "variables (_) are not allowed", 1, 1),
    ("#{a := 1}", "':=' only updates maps", 1, 5),
    ("#{a}", "expected '=>', found '}'", 1, 4),
    ("<0.85.0>", "has no node name", 1, 1),
    ("#Ref<0.1.2.3>", "erl's local notation", 1, 1),
    ("#Pid<a@b.1.2>", "three numbers", 1, 1),
    ("#Pid<a.b@c.1.2.3>", "quote node names", 1, 1),
    ("#Pid<a@b.1.2.3", "malformed #Pid<...>", 1, 1),
    ("1e5", "expected end of input, found 'e5'", 1, 2),
    ("2#102", "digit '2' is not valid in base 2", 1, 5),
    ("37#1", "base 37 is not in 2..36", 1, 1),
    ("1.0e400", "float out of range", 1, 1),
    ('"\\x4g"', "\\x needs two hex digits", 1, 2),
    ('"\\x{}"', "empty \\x{} escape", 1, 2),
    ('"ok\\x{110000}"', "not a character", 1, 4),
    ('"\\x{D800}"', "not a character", 1, 2),
    ("and", "reserved word 'and' must be quoted", 1, 1),
    ("- a", "expected a number after '-'", 1, 3),
    ("- -5", "expected a number after '-'", 1, 3),
    ("#{a => 1", "expected ',' or '}', found end of input", 1, 9),
    ("<<1", "expected ',' or '>>' in binary", 1, 4),
    ('<<"a"/binary>>', "a string segment cannot have a binary type", 1, 3),
    ("<<1.5:32>>", "an integer segment needs an integer value", 1, 3),
    ("<<1.5>>", "an integer segment needs an integer value", 1, 3),
    ("<<<<1>>>>", "a binary value needs a binary type", 1, 3),
    ("<<1:3/utf8>>", "utf8 segments take no size or unit", 1, 3),
    ("<<1/foo>>", "unknown type specifier 'foo'", 1, 5),
    ("<<1/unit:8>>", "a unit needs an explicit size", 1, 3),
    ("<<1.5:8/float>>", "float segments are 16, 32 or 64 bits", 1, 3),
    ("<<<<1>>:2/binary>>", "binary has 8 bits, segment wants 16", 1, 3),
    ("<<a>>", "expected a literal in a binary segment", 1, 3),
    ("fun a/1", "expected ':'", 1, 6),
    ("'" + "a" * 256 + "'", "atom longer than 255 characters", 1, 1),
    ("a" * 256, "atom longer than 255 characters", 1, 1),
    ("$", "'$' needs a character", 1, 1),
    ("()", "expected a term, found ')'", 1, 2),
    ("a..", "expected end of input, found '.'", 1, 3),
    ("{a}}", "expected end of input, found '}'", 1, 4),
    ("a ; b", "unexpected character ';'", 1, 3),
    ("#Fun<m.1.2>", "funs cannot be built from text", 1, 1),
]
# fmt: on


@pytest.mark.parametrize("text, message, line, column", ERRORS, ids=[e[0][:30] for e in ERRORS])
def test_parse_errors(text: str, message: str, line: int, column: int) -> None:
    with pytest.raises(TermSyntaxError) as info:
        parse_term(text)
    err = info.value
    assert isinstance(err, ValueError)
    assert message in str(err)
    assert (err.line, err.column) == (line, column), str(err)
    assert str(err).startswith(f"line {line}, column {column}: ")


def test_depth_is_limited_without_recursion_error() -> None:
    for opener in ("[", "{", "#{a => ", "[a|", "("):
        with pytest.raises(TermSyntaxError, match="nested deeper than"):
            parse_term(opener * 100_000)
    deep = "[" * DEFAULT_MAX_DEPTH + "]" * DEFAULT_MAX_DEPTH
    value = parse_term(deep)
    for _ in range(DEFAULT_MAX_DEPTH - 1):
        assert len(value) == 1
        value = value[0]
    assert value == []
    assert parse_term("{" * 10 + "}" * 10, max_depth=10) is not None
    with pytest.raises(TermSyntaxError):
        parse_term("{" * 11 + "}" * 11, max_depth=10)
    with pytest.raises(TermSyntaxError, match="binaries nested too deeply"):
        parse_term("<<" * 10_000)


def test_printer_handles_any_depth() -> None:
    term: Any = []
    for _ in range(100_000):
        term = [term]
    text = format_term(term)
    assert text == "[" * 100_000 + "[]" + "]" * 100_000
    shallower: Any = (1,)
    for _ in range(5_000):
        shallower = [shallower, 2]
    pretty = format_term(shallower, width=80)
    assert pretty.replace("\n", "").replace(" ", "") == format_term(shallower)


def test_width_breaks_long_containers_like_p() -> None:
    term = [
        Atom("alpha"),
        list(range(40)),
        {Atom("key"): b"value", Atom("other"): (1, 2)},
        "x" * 10,
    ]
    assert format_term(term, width=None) == format_term(term)
    text = format_term(term, width=40)
    assert text == (
        "[alpha,\n"
        " [0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,\n"
        "  16,17,18,19,20,21,22,23,24,25,26,27,\n"
        "  28,29,30,31,32,33,34,35,36,37,38,39],\n"
        ' #{key => <<"value">>,other => {1,2}},\n'
        ' <<"xxxxxxxxxx">>]'
    )
    assert same(parse_term(text), parse_term(format_term(term)))
    assert format_term([1, 2, 3], width=80) == "[1,2,3]"


def test_parse_is_fast_enough_for_big_inputs() -> None:
    big = list(range(200_000))
    assert parse_term(format_term(big)) == big
    blob = bytes(range(256)) * 1000
    assert parse_term(format_term(blob)) == blob
    text = "x" * 100_000
    assert parse_term(format_term(text)) == text.encode()


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(terms, st.sampled_from([None, 20, 80]))
def test_round_trip_property(term: Any, width: int | None) -> None:
    text = format_term(term, width=width)
    back = parse_term(text)
    assert same(back, term), (text, back)
    assert decode(encode(back)) == back


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=40))
def test_parser_never_crashes_on_junk(text: str) -> None:
    try:
        value = parse_term(text)
    except TermSyntaxError as e:  # says where: within the text
        assert e.line >= 1 and e.column >= 1 and 0 <= e.offset <= len(text)
        return
    assert parse_term(format_term(value)) == value or value != value
