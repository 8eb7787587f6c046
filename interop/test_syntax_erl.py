"""The term printer and parser against erl's own: erl_parse:parse_term and io_lib ~p.

All literals of a run go to one ``erl -noshell -eval`` (per OTP release), which parses each
with erl_scan/erl_parse and reports ``~0p`` (``~p`` on one line; ``~0kp`` from OTP 26, whose
``~p`` no longer sorts map keys), ``~0tp``, ``term_to_binary`` and whether our encoding of
our parse is ``=:=`` to its term.
"""

from __future__ import annotations

import math
import random
import struct
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from pynode.term import Atom, ExportFun, Pid, Port, Reference, decode, encode
from pynode.term.syntax import TermSyntaxError, format_term, parse_term

from .otp import Otp

# Each literal's ~p output must equal format_term(parse_term(literal)). "tp" marks binaries
# with non-ASCII UTF-8, which we print as ~tp does under +pc unicode.
# fmt: off
PRINT_CASES: list[tuple[str, str]] = [
    ("0", "p"), ("42", "p"), ("-7", "p"), ("123456789012345678901234567890", "p"),
    ("-98765432109876543210", "p"), ("1.0", "p"), ("-1.5", "p"), ("0.1", "p"), ("-0.0", "p"),
    ("1.0e10", "p"), ("1.0e-5", "p"), ("123456789.0", "p"), ("1.0e22", "p"),
    ("1.5e300", "p"), ("0.0001", "p"), ("0.001", "p"), ("1000.0", "p"), ("100.0", "p"),
    ("9007199254740992.0", "p"), ("9007199254740990.0", "p"), ("5.0e-324", "p"),
    ("1.7976931348623157e308", "p"), ("2.2250738585072014e-308", "p"), ("0.3", "p"),
    ("atom", "p"), ("'Atom'", "p"), ("'hello world'", "p"), ("a@b", "p"), ("a_B9@x", "p"),
    ("''", "p"), ("'and'", "p"), ("'cond'", "p"), ("'let'", "p"), ("query", "p"),
    ("'_a'", "p"), ("'9a'", "p"), ("'a.b'", "p"), ("'a-b'", "p"), ("'\\n'", "p"),
    ("'\\x{7f}'", "p"), ("'\\\\'", "p"), ("'\\''", "p"), ("'\"'", "p"), ("'é'", "p"),
    ("'Été'", "p"), ("'aÀ'", "p"), ("'\\x{400}'", "p"), ("'h\\x{20AC}'", "p"),
    ("'\\x{80}x'", "p"), ("'\\x{9f}'", "p"), ("'\\x{a0}'", "p"), ("'÷'", "p"),
    ("'ß'", "p"), ("'a\\tb'", "p"), ("'\\e\\b\\f\\v\\r\\s'", "p"), ("'\\x{1}'", "p"),
    ("true", "p"), ("false", "p"), ("undefined", "p"), ("'nonode@nohost'", "p"),
    ("'foo@127.0.0.1'", "p"),
    ("\"\"", "p"), ("\"abc\"", "p"), ("\"a\\nb\\tc\\e\\\"\\\\\"", "p"), ("\"héllo\"", "p"),
    ("[104,8364]", "p"), ("[7,8,9]", "p"), ("[8]", "p"), ("[127]", "p"), ("[128]", "p"),
    ("[159]", "p"), ("[160,255]", "p"), ("[256]", "p"), ("[-1]", "p"), ("\"'\"", "p"),
    ("[$a|b]", "p"), ("[1,2|3]", "p"), ("[a,b|c]", "p"), ("[[]]", "p"), ("[[97]]", "p"),
    ("[\"ab\",\"cd\"]", "p"), ("[1,true,undefined]", "p"), ("[a|<<1>>]", "p"),
    ("{}", "p"), ("{a}", "p"), ("{a,1,\"s\",<<\"b\">>}", "p"), ("{{{}}}", "p"),
    ("[{}]", "p"), ("{[1|2]}", "p"),
    ("<<>>", "p"), ("<<\"abc\">>", "p"), ("<<1,2,3>>", "p"), ("<<0>>", "p"),
    ("<<\"a\\nb\">>", "p"), ("<<\"\\\"q\\\\\">>", "p"), ("<<127>>", "p"), ("<<97,127,98>>", "p"),
    ("<<200>>", "p"), ("<<128>>", "p"), ("<<239,191,190>>", "tp"), ("<<195,169,133>>", "tp"),
    ("<<1:3>>", "p"), ("<<1,2:3>>", "p"), ("<<255,1:1>>", "p"), ("<<\"ab\",5:4>>", "p"),
    ("<<\"héllo\"/utf8>>", "tp"), ("<<\"h€llo\"/utf8>>", "tp"), ("<<\"日本\"/utf8>>", "tp"),
    ("<<\"\\x{1F600}\"/utf8>>", "tp"), ("<<\"a\\x{85}\"/utf8>>", "tp"),
    ("<<\"é\\n\"/utf8>>", "tp"), ("{<<\"é\"/utf8>>,<<\"x\">>}", "tp"),
    ("#{}", "p"), ("#{a => 1}", "p"), ("#{b => 1,a => 2,1 => x,\"s\" => y,{t} => z}", "p"),
    ("#{1.5 => a,2 => b,0.5 => c,-1 => d,1 => e}", "p"),
    ("#{1 => a,1.0 => b,true => c,0.0 => e,0 => f}", "p"), ("#{[] => 1,[1] => 2,{} => 3}", "p"),
    ("#{<<1>> => 1,<<1:1>> => 2,<<>> => 3,<<0>> => 4}", "p"),
    ("#{#{} => 1,#{a => 1} => 2,#{a => 0} => 3,#{b => 0} => 4,{a} => 5}", "p"),
    ("#{[a|b] => 1,[a] => 2,[a,b] => 3,\"ab\" => 4,[b] => 5,a => 6}", "p"),
    ("#{a => #{b => #{c => []}}}", "p"), ("#{{1,2} => [3],{1} => x,{0,0,0} => y}", "p"),
    ("#{1 => a,100000000000000000000 => b,-100000000000000000000 => c,1.5e20 => d}", "p"),
    ("fun lists:map/2", "p"), ("fun 'Mod':'f g'/0", "p"), ("fun erlang:is_atom/1", "p"),
    ("[{ok,#{key => [<<\"v\">>,1.5,{}]}},{error,\"reason\"}]", "p"),
]
# fmt: on

PRINT_MODES = dict(PRINT_CASES)

# Literals erl reads; we must decode erl's term_to_binary to what we parse, and erl must find
# our encoding =:= its term.
# fmt: off
PARSE_CASES: list[str] = [
    "16#FF", "16#ff_ff", "2#101", "36#zz", "-16#10", "1_000_000", "001", "+5", "- 5",
    "$a", "$\\n", "$\\x{41}", "$\\101", "$\\^A", "$ ", "$\\s", "$\\d", "-$a",
    "$\\x{10FFFF}", "$é", "$€", "$\\\\", "$\\'", "$\"",
    "1.0", "2.5E-3", "1.5e+3", "1_0.5_0e1_0", "0.5e-0", "-1.0e-300",
    "\"a\" \"b\"", "\"\\x{41}\\101\\^b\\z\"", "\"\\1010\"", "\"\\8\"", "\"\\s\\d\\e\\a\"",
    "\"€\"", "\"\\x{1F600}\"", "\"a\\\nb\"",
    "'\\x41'", "'\\^['", "'a\\\"b'", "'\\101'",
    "<<\"x\"/utf8>>", "<<\"ab\"/utf16>>", "<<\"ab\"/utf16-little>>", "<<$a/utf32-little>>",
    "<<\"€\"/utf32>>", "<<16#1F600/utf8>>", "<<1:12/little>>", "<<16#ABC:12/little>>",
    "<<1:20/little>>", "<<16#1234:16/little>>", "<<-1:12>>", "<<-1:1/signed>>",
    "<<1:1/unit:3>>", "<<1:4/unit:8-little>>", "<<1:3,2:5/unit:2>>", "<<1.5/float>>",
    "<<1.5:32/float>>", "<<1.5:16/float>>", "<<1.5/float-little>>", "<<1/float>>",
    "<<\"ab\":16>>", "<<<<1,2>>/binary,3>>", "<<<<1,2>>:1/binary>>", "<<<<1,2>>:8/bits>>",
    "<<<<1:3>>/bits,1:5>>", "<<-1:8>>", "<<300>>", "<<256:16>>",
    "<<1:64/native>>", "<<1:8/signed-big-integer-unit:1>>", "<<\"a\",\"b\"/utf8,$c>>",
    "[1,2|[3]]", "[1|[2|[3|[]]]]", "[a|[b|c]]", "(1)", "{(a),[(b)]}",
    "#{a => 1, a => 2}", "#{[1] => x, #{} => y, {[2]} => z}", "#{1.0 => a, 1.0 => b}",
    "#{1 => a, 1.0 => b, true => c, [1] => d}", "#{1 => a, 1 => b}", "#{1.0 => a, 1 => b}",
    "#{#{a => [1]} => [#{}]}", "  {  a ,  b  }  % comment\n", "[\n1,\n2\n]",
    "'maybe'", "'else'", "'fun'",
]
# fmt: on

# Literals erl rejects; so must we.
# fmt: off
ERROR_CASES: list[str] = [
    "", "[", "]", "{a,b,}", "[a|b|c]", "[a|]", "#{a := 1}", "#{a}", "#{a =>}", "{a b}",
    "X", "_", "_x", "a.b", "'abc", "\"abc", "\"\\x4g\"", "\"\\x{}\"", "\"\\x{110000}\"",
    "\"\\x{D800}\"", "\"\\x{FFFE}\"", "1.0e400", "1e5", "1_000_", "2#102", "37#1", "1 2",
    "- -5", "-a", "<<1.5:32>>", "<<1.5>>", "<<<<1,2>>,3>>", "<<1/binary>>", "<<\"abc\"/binary>>", "<<1/big-signed-integer-unit:8>>",
    "<<a>>", "<<1:a>>", "<<1/foo>>", "<<$a/utf8:8>>", "<<1.5:8/float>>",
    "and", "fun", "fun a/1", "<0.85.0>", "#Ref<0.1.2.3>", "a..", "{a}}", "3#12.5",
    "'" + "a" * 256 + "'", "a" * 256, "$", "()",
]
# fmt: on


def _float_corpus() -> list[float]:
    """Boundary floats plus random ones (random bit patterns and short decimals)."""
    rng = random.Random(1234)
    # fmt: off
    values = [
        0.1, 0.2, 0.3, 1 / 3, 2 / 3, math.pi, math.e, 1e15, 1e16, 1e17, 1e21, 1e22, 1e23,
        123456.789, 2.0**53, 2.0**53 - 1, 2.0**53 + 2, 2.0**63, 2.0**-1074, 2.0**-1022,
        1.7976931348623157e308, 0.015, 0.0015, 1.5e-5, 1.23e-4, 9.999999999999999e22,
        4.35, 5e-324, 1e-10, 1234.5, 12345.5, 99999.9, 0.5, 0.25, 0.125,
    ]
    # fmt: on
    values += [-v for v in values]
    for _ in range(1500):
        f = struct.unpack(">d", rng.getrandbits(64).to_bytes(8, "big"))[0]
        if math.isfinite(f):
            values.append(f)
    for _ in range(1500):
        digits = rng.randint(1, 17)
        mant = rng.randrange(10 ** (digits - 1), 10**digits)
        values.append(float(f"{mant}e{rng.randint(-30, 30)}"))
    return values


FLOATS = _float_corpus()


@dataclass
class ErlResult:
    """What erl made of one literal (``ok`` False when erl_scan/erl_parse rejected it)."""

    ok: bool
    p: str = ""
    tp: str = ""
    t2b: bytes = b""
    same: str = "none"


_ERL_BATCH = r"""
{ok, [Cases]} = file:consult("%(cases)s"),
Hex = fun(B) -> [$x | binary_to_list(binary:encode_hex(B))] end,
%% OTP 26+ prints maps in internal order unless asked for term order with ~kp.
K = case list_to_integer(erlang:system_info(otp_release)) >= 26 of true -> "k"; false -> "" end,
Fmt = fun(F, T) -> Hex(unicode:characters_to_binary(io_lib:format("~0" ++ K ++ F, [T]))) end,
One = fun({Lit, Ours}) ->
    Parsed = case erl_scan:string(unicode:characters_to_list(Lit)) of
        {ok, Toks, _} -> catch erl_parse:parse_term(Toks ++ [{dot, 1}]);
        Err -> Err
    end,
    case Parsed of
        {ok, T} ->
            Same = case Ours of
                none -> none;
                _ -> try binary_to_term(Ours) =:= T catch _:_ -> false end
            end,
            io_lib:format("ok ~s ~s ~s ~p~n",
                          [Fmt("p", T), Fmt("tp", T), Hex(term_to_binary(T)), Same]);
        _ ->
            "error\n"
    end
end,
ok = file:write_file("%(out)s", [One(C) || C <- Cases]),
halt().
"""


def _erl_binary(data: bytes) -> str:
    return "<<" + ",".join(map(str, data)) + ">>"


def run_erl_batch(erl: str, literals: list[str]) -> list[ErlResult]:
    """Parse and print every literal in one erl run (with ``+pc unicode`` for ``~tp``)."""
    ours: list[bytes | None] = []
    for lit in literals:
        try:
            ours.append(encode(parse_term(lit)))
        except (TermSyntaxError, ValueError, TypeError):
            ours.append(None)
    with tempfile.TemporaryDirectory() as tmp:
        cases = Path(tmp) / "cases.txt"
        out = Path(tmp) / "out.txt"
        entries = [
            "{"
            + _erl_binary(lit.encode())
            + ","
            + (_erl_binary(o) if o is not None else "none")
            + "}"
            for lit, o in zip(literals, ours, strict=True)
        ]
        cases.write_text("[" + ",\n".join(entries) + "].\n", encoding="ascii")
        code = _ERL_BATCH % {"cases": cases, "out": out}
        proc = subprocess.run(
            [erl, "+pc", "unicode", "-noshell", "-noinput", "-start_epmd", "false", "-eval", code],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
        )
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"erl batch failed: {proc.stderr.decode(errors='replace')[-2000:]}")
        lines = out.read_text(encoding="latin-1").splitlines()
    assert len(lines) == len(literals)
    results = []
    for line in lines:
        if line == "error":
            results.append(ErlResult(False))
            continue
        _, p, tp, t2b, same = line.split(" ")
        results.append(
            ErlResult(
                True,
                bytes.fromhex(p[1:]).decode(),
                bytes.fromhex(tp[1:]).decode(),
                bytes.fromhex(t2b[1:]),
                same,
            )
        )
    return results


@pytest.fixture(scope="module")
def erl_results(otp: Otp) -> dict[str, ErlResult]:
    """Every literal of this module, run through one erl of the given release."""
    literals = [lit for lit, _ in PRINT_CASES] + PARSE_CASES + ERROR_CASES
    literals += [format_term(f) for f in FLOATS]
    unique = list(dict.fromkeys(literals))
    return dict(zip(unique, run_erl_batch(otp.erl, unique), strict=True))


def _mismatches(erl_results: dict[str, ErlResult], literals: list[str], check: Any) -> list[str]:
    bad = []
    for lit in literals:
        problem = check(lit, erl_results[lit])
        if problem:
            bad.append(f"{lit!r}: {problem}")
    return bad


def test_printer_matches_erl_p(erl_results: dict[str, ErlResult]) -> None:
    def check(lit: str, r: ErlResult) -> str | None:
        if not r.ok:
            return "erl rejected the literal"
        want = r.tp if PRINT_MODES[lit] == "tp" else r.p
        got = format_term(parse_term(lit))
        return None if got == want else f"erl {want!r}, ours {got!r}"

    bad = _mismatches(erl_results, [lit for lit, _ in PRINT_CASES], check)
    assert not bad, "\n".join(bad)


def test_floats_print_as_erl_does(erl_results: dict[str, ErlResult]) -> None:
    """Our shortest-digits layout equals io_lib_format:fwrite_g/1 and reads back exactly."""
    bad = []
    for f in FLOATS:
        lit = format_term(f)
        r = erl_results[lit]
        if not r.ok or r.p != lit or decode(r.t2b) != f or parse_term(lit) != f:
            bad.append(f"{f!r}: ours {lit!r}, erl {r.p!r}")
    assert not bad, "\n".join(bad[:50])


def test_parser_agrees_with_erl_parse(erl_results: dict[str, ErlResult]) -> None:
    """decode(term_to_binary(T)) == parse_term(L), and erl finds encode(parse_term(L)) =:= T."""

    def check(lit: str, r: ErlResult) -> str | None:
        if not r.ok:
            return "erl rejected the literal"
        ours = parse_term(lit)
        theirs = decode(r.t2b)
        # == alone equates 1, 1.0 and true; the printed forms tell them apart.
        if ours != theirs or format_term(ours) != format_term(theirs):
            return f"erl gives {theirs!r}, we parse {ours!r}"
        if r.same != "true":
            return f"erl says our encoding is not =:= its term ({r.same})"
        return None

    literals = [lit for lit, _ in PRINT_CASES] + PARSE_CASES
    bad = _mismatches(erl_results, literals, check)
    assert not bad, "\n".join(bad)


def test_parser_rejects_what_erl_rejects(erl_results: dict[str, ErlResult]) -> None:
    bad = []
    for lit in ERROR_CASES:
        if erl_results[lit].ok:
            bad.append(f"{lit!r}: erl accepts it (fix the corpus)")
            continue
        try:
            value = parse_term(lit)
        except TermSyntaxError:
            continue
        bad.append(f"{lit!r}: erl rejects it, we parse {value!r}")
    assert not bad, "\n".join(bad)


_IDENTIFIERS = r"""
Ts = [self(), make_ref(), hd(erlang:ports()), list_to_pid("<0.85.0>"), fun lists:map/2,
      {self(), [make_ref()]}],
Hex = fun(B) -> binary_to_list(binary:encode_hex(B)) end,
Lines = [io_lib:format("~s ~s~n", [Hex(term_to_binary(T)),
                                    Hex(unicode:characters_to_binary(io_lib:format("~0p", [T])))])
         || T <- Ts],
ok = file:write_file("%(out)s", Lines),
halt().
"""


def test_pids_refs_ports_round_trip_through_text(otp: Otp, oracle: Any) -> None:
    """Identifiers erl made: our text shows erl's numbers, reads back, and erl agrees."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ids.txt"
        subprocess.run(
            [
                otp.erl,
                "-noshell",
                "-noinput",
                "-start_epmd",
                "false",
                "-eval",
                _IDENTIFIERS % {"out": out},
            ],
            capture_output=True,
            timeout=60,
            stdin=subprocess.DEVNULL,
            check=True,
        )
        lines = out.read_text().splitlines()
    for line in lines:
        t2b_hex, p_hex = line.split(" ")
        erl_bytes = bytes.fromhex(t2b_hex)
        erl_text = bytes.fromhex(p_hex).decode()
        term = decode(erl_bytes)
        text = format_term(term)
        back = parse_term(text)
        assert back == term, (text, back, term)
        assert oracle.call((Atom("equal"), erl_bytes, encode(back))) is True, text
        # erl's local forms carry the same numbers: <0.85.0>, #Ref<0.A.B.C>, #Port<0.N>.
        expected = erl_text
        for x in term if isinstance(term, tuple) else [term]:
            for y in x if isinstance(x, list) else [x]:
                if isinstance(y, Pid):
                    local = f"<0.{y.id}.{y.serial}>"
                    assert local in expected, (local, erl_text)
                    expected = expected.replace(local, format_term(y), 1)
                elif isinstance(y, Reference):
                    local = "#Ref<0." + ".".join(map(str, reversed(y.ids))) + ">"
                    assert local in expected, (local, erl_text)
                    expected = expected.replace(local, format_term(y), 1)
                elif isinstance(y, Port):
                    local = f"#Port<0.{y.id}>"
                    assert local in expected, (local, erl_text)
                    expected = expected.replace(local, format_term(y), 1)
                else:
                    assert isinstance(y, ExportFun)
        assert text == expected, (text, erl_text)
