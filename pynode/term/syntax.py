"""Erlang term syntax: a printer shaped like ``io_lib:format("~p", [T])`` and a literal parser.

``format_term`` writes a term the way an Erlang engineer expects to read it, and
``parse_term`` reads Erlang term literals back (no evaluation: a tokenizer and a parser), so
a CLI can take arguments and show results in Erlang's own notation.

Printing follows OTP 25's ``~p`` (``io_lib_pretty`` with latin1 encoding) with these
deliberate choices, each made so that the output reads back to the same term:

* Binaries that are valid UTF-8 with printable non-ASCII characters print as
  ``<<"héllo"/utf8>>`` (what ``~tp`` prints with ``+pc unicode``); lists still print as
  strings only when all elements are printable latin1, as ``~p`` does.
* Pids, ports and references carry their node name, in forms erl does not print but that
  this parser reads: ``#Pid<node@host.Id.Serial.Creation>``, ``#Port<node@host.Id.Creation>``,
  ``#Ref<node@host.Creation.W1.W2.W3>`` (reference words most significant first, as erl
  shows them). Local funs print as ``#Fun<Module.Index.OldUniq>``, which cannot be read back.
* Map keys are always sorted in Erlang's map-key order (erl only sorts maps of up to 32
  keys); atoms ``maybe`` and ``else`` are quoted (they are keywords from OTP 27); in
  ``fun M:F/A`` reserved words are quoted (erl prints ``fun erlang:and/2``).
* By default everything is on one line (``width=None``); with a width the printer breaks
  long containers roughly like ``~p`` does, without promising the same line breaks.
* Integers too long for Python's ``int``/``str`` conversion limit are still written in
  decimal.
"""

from __future__ import annotations

import math
import struct
import sys
from _collections_abc import Mapping  # collections.abc without the collections package (types.py)

from .types import (
    STRUCT_KEY,
    Atom,
    BitString,
    ErlFloatKey,
    ExportFun,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    Struct,
    freeze,
)

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Any


__all__ = ["DEFAULT_MAX_DEPTH", "TermSyntaxError", "format_term", "parse_term"]

DEFAULT_MAX_DEPTH = 512
"""How deeply ``parse_term`` lets containers nest; the codec's default limit too."""


class _LazyRe:
    """A module-level regex compiled on first use (compiling them all costs milliseconds on
    every start of the ``pynode`` command, which mostly needs none or two). The first use
    rebinds the module global to the compiled pattern, so later uses pay nothing extra."""

    __slots__ = ("_name", "_args")

    def __init__(self, name: str, *args: Any) -> None:
        self._name = name
        self._args = args

    def __getattr__(self, attr: str) -> Any:
        import re  # here: re's import costs the command a few ms when no pattern is used

        compiled = re.compile(*self._args)
        globals()[self._name] = compiled
        return getattr(compiled, attr)


class TermSyntaxError(ValueError):
    """Text that is not an Erlang term literal; says where (1-based line/column) and why."""

    def __init__(self, message: str, text: str = "", offset: int = 0) -> None:
        self.msg = message
        self.offset = offset
        self.line = text.count("\n", 0, offset) + 1
        self.column = offset - (text.rfind("\n", 0, offset) + 1) + 1
        super().__init__(f"line {self.line}, column {self.column}: {message}")


# --------------------------------------------------------------------------------------------
# Shared lexical rules (erl_scan)
# --------------------------------------------------------------------------------------------

# Unquoted atoms: a lowercase latin1 letter, then latin1 letters, digits, '_' and '@'.
_NAME_START = "a-z\u00df-\u00f6\u00f8-\u00ff"
_NAME_CHARS = "a-zA-Z0-9_@\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_UNQUOTED_ATOM_RE = _LazyRe("_UNQUOTED_ATOM_RE", f"[{_NAME_START}][{_NAME_CHARS}]*")

# erl_scan:reserved_word/1 on OTP 25, plus the OTP 27 keywords 'maybe' and 'else'.
_RESERVED = frozenset(
    "after and andalso band begin bnot bor bsl bsr bxor case catch cond div end fun if let "
    "not of or orelse receive rem try when xor maybe else".split()
)
# Accepted unquoted when parsing: OTP 25 erl prints them that way.
_SOFT_KEYWORDS = frozenset(("maybe", "else"))

_MAX_ATOM_CHARS = 255

# A binary literal's integer segments may pad it to at most 16 MiB. erl builds whatever
# fits in memory; here a few characters (<<0:99999999999>>) must not claim gigabytes.
_MAX_LITERAL_BITS = 8 * 16 * 1024 * 1024


def _is_char(c: int) -> bool:
    """True for the code points erl_scan accepts in escapes (Unicode scalars minus FFFE/FFFF)."""
    return 0 <= c < 0xD800 or 0xDFFF < c < 0xFFFE or 0xFFFF < c <= 0x10FFFF


# --------------------------------------------------------------------------------------------
# Printer
# --------------------------------------------------------------------------------------------


class _Raw(str):
    """Literal output text on the printer's work stack (distinct from str terms)."""

    __slots__ = ()


_COMMA = _Raw(",")
_RBRACKET = _Raw("]")
_RBRACE = _Raw("}")
_BAR = _Raw("|")
_ARROW = _Raw(" => ")

# io_lib:string_char/4: the escapes shared by quoted atoms and strings.
_ESCAPES: dict[int, str] = {}
for _c in range(0x100):
    if 0x20 <= _c <= 0x7E or 0xA0 <= _c:
        continue
    _ESCAPES[_c] = f"\\{_c >> 6}{(_c >> 3) & 7}{_c & 7}"
_ESCAPES.update(
    {10: "\\n", 13: "\\r", 9: "\\t", 11: "\\v", 8: "\\b", 12: "\\f", 27: "\\e", 127: "\\d"}
)
_ESCAPES[ord("\\")] = "\\\\"
_STRING_ESCAPES = dict(_ESCAPES)
_STRING_ESCAPES[ord('"')] = '\\"'
_ATOM_ESCAPES = dict(_ESCAPES)
_ATOM_ESCAPES[ord("'")] = "\\'"

# What the writer checks text against, as latin-1 bytes: bytes.translate tells at C speed
# whether a text holds only these, and the ``pynode`` command need not import re to print.
_SPACING = b"\n\r\t\x0b\x08\x0c\x1b"  # what io_lib's printable ranges add to the visible
_VISIBLE_ASCII = bytes(range(0x20, 0x7F))
_VISIBLE_LATIN1 = _VISIBLE_ASCII + bytes(range(0xA0, 0x100))
_PLAIN = _VISIBLE_LATIN1.translate(None, b"\\\"'")  # quoted as they are
_PRINTABLE_LATIN1 = _VISIBLE_LATIN1 + _SPACING
_PRINTABLE_ASCII = _VISIBLE_ASCII + _SPACING
_ATOM_START = bytes(range(0x61, 0x7B)) + bytes(range(0xDF, 0xF7)) + bytes(range(0xF8, 0x100))
_ATOM_CHARS = (
    b"_@0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    + bytes(range(0xC0, 0xD7))
    + bytes(range(0xD8, 0xF7))
    + _ATOM_START
)


def _only(data: bytes, allowed: bytes) -> bool:
    """Whether every byte of ``data`` is one of ``allowed``."""
    return not data.translate(None, allowed)


def _latin1(text: str) -> bytes | None:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:
        return None
_PRINTABLE_UNICODE_RE = _LazyRe(
    "_PRINTABLE_UNICODE_RE",
    "[\x20-\x7e\n\r\t\x0b\x08\x0c\x1b\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*"
)


def _quote(text: str, escapes: dict[int, str], quote: str, latin1: bool) -> str:
    """Quote ``text`` with io_lib's escapes; ``latin1`` also escapes code points above 255."""
    raw = _latin1(text)
    if raw is not None and _only(raw, _PLAIN):
        return quote + text + quote
    body = text.translate(escapes)
    if latin1 and raw is None:
        body = "".join(c if ord(c) < 0x100 else f"\\x{{{ord(c):X}}}" for c in body)
    return quote + body + quote


def _write_atom(text: str) -> str:
    """Write an atom, quoted only when erl needs the quotes (io_lib:write_atom_as_latin1)."""
    raw = _latin1(text)
    if raw and raw[0] in _ATOM_START and _only(raw, _ATOM_CHARS) and text not in _RESERVED:
        return text
    return _quote(text, _ATOM_ESCAPES, "'", True)


def _write_int(value: int) -> str:
    """Decimal digits, also for integers beyond Python's int-to-str digit limit."""
    try:
        return str(value)
    except ValueError:
        pass
    if value < 0:
        return "-" + _write_int(-value)
    half = max(1, (value.bit_length() * 3 // 10) // 2)
    high, low = divmod(value, 10**half)
    return _write_int(high) + _write_int(low).rjust(half, "0")


def _write_float(value: float) -> str:
    """Shortest round-tripping form, laid out as OTP 25's io_lib_format:fwrite_g/1 does."""
    if not math.isfinite(value):
        raise ValueError(f"Erlang has no float {value!r}")
    if value == 0.0:
        return "-0.0" if math.copysign(1.0, value) < 0 else "0.0"
    text = repr(abs(value))
    mantissa, _, exp = text.partition("e")
    whole, _, frac = mantissa.partition(".")
    digits = whole + frac
    place = len(whole) + (int(exp) if exp else 0)
    stripped = digits.lstrip("0")
    place -= len(digits) - len(stripped)
    digits = stripped.rstrip("0")
    sign = "-" if value < 0 else ""
    if place == 0:
        return sign + "0." + digits
    n = len(digits)
    if 0 < place < n:
        return sign + digits[:place] + "." + digits[place:]
    exp_text = str(place - 1)
    exp_cost = len(exp_text) + 1 + (2 if n == 1 else 1)
    if place < 0:
        if 2 - place <= exp_cost:
            return sign + "0." + "0" * -place + digits
    elif place - n + 2 <= exp_cost and abs(value) < 9007199254740992.0:
        return sign + digits + "0" * (place - n) + ".0"
    if n == 1:
        return sign + digits + ".0e" + exp_text
    return sign + digits[0] + "." + digits[1:] + "e" + exp_text


def _write_binary(data: bytes) -> str:
    """``<<"text">>`` / ``<<"text"/utf8>>`` when printable, else ``<<1,2,3>>``."""
    if not data:
        return "<<>>"
    if _only(data, _PRINTABLE_ASCII):
        return "<<" + _quote(data.decode("ascii"), _STRING_ESCAPES, '"', False) + ">>"
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        if _only(data, _PRINTABLE_LATIN1):
            return "<<" + _quote(data.decode("latin-1"), _STRING_ESCAPES, '"', False) + ">>"
    else:
        if _PRINTABLE_UNICODE_RE.fullmatch(text) is not None:
            return "<<" + _quote(text, _STRING_ESCAPES, '"', False) + "/utf8>>"
    return "<<" + ",".join(map(str, data)) + ">>"


def _write_bitstring(value: BitString) -> str:
    data, bits = value.data, value.bits
    if bits == 8:
        return _write_binary(data)
    last = f"{data[-1] >> (8 - bits)}:{bits}"
    if len(data) == 1:
        return "<<" + last + ">>"
    return "<<" + ",".join(map(str, data[:-1])) + "," + last + ">>"


def _write_pid(p: Pid) -> str:
    return f"#Pid<{_write_atom(p.node)}.{p.id}.{p.serial}.{p.creation}>"


def _write_port(p: Port) -> str:
    return f"#Port<{_write_atom(p.node)}.{p.id}.{p.creation}>"


def _write_ref(r: Reference) -> str:
    words = ".".join(str(w) for w in reversed(r.ids))
    return f"#Ref<{_write_atom(r.node)}.{r.creation}.{words}>"


def _write_fun(f: Fun) -> str:
    return f"#Fun<{_write_atom(f.module)}.{f.index}.{f.old_uniq}>"


def _write_export(f: ExportFun) -> str:
    return f"fun {_write_atom(f.module)}:{_write_atom(f.function)}/{f.arity}"


_SCALARS: dict[type, Any] = {
    bool: lambda b: "true" if b else "false",
    int: _write_int,
    float: _write_float,
    type(None): lambda _: "undefined",
    Atom: _write_atom,
    str: lambda s: _write_binary(s.encode("utf-8")),
    bytes: _write_binary,
    bytearray: lambda b: _write_binary(bytes(b)),
    memoryview: lambda b: _write_binary(b.tobytes()),
    BitString: _write_bitstring,
    Pid: _write_pid,
    Port: _write_port,
    Reference: _write_ref,
    Fun: _write_fun,
    ExportFun: _write_export,
}


def _as_string(items: Any) -> str | None:
    """The ``"..."`` form of a list when io_lib:printable_latin1_list/1 holds, else None."""
    for c in items:
        if type(c) is not int:
            return None
    try:
        raw = bytes(items)  # code points above 255 are no latin1 text
    except (ValueError, OverflowError):
        return None
    if not _only(raw, _PRINTABLE_LATIN1):
        return None
    return _quote(raw.decode("latin-1"), _STRING_ESCAPES, '"', False)


def _flatten_improper(t: ImproperList) -> tuple[list[Any], Any]:
    """Items and final tail of ``[a, b | Tail]``, merging tails that are themselves lists."""
    items = list(t.items)
    tail = t.tail
    while True:
        tt = type(tail)
        if tt is ImproperList:
            items.extend(tail.items)
            tail = tail.tail
        elif tt is list or tt is FrozenList:
            items.extend(tail)
            return items, []
        else:
            return items, tail


def _normalize(t: Any) -> Any:
    """Map Python stand-ins (subclasses, other mappings) onto the types the printer knows."""
    if isinstance(t, bool):
        return bool(t)
    if isinstance(t, int):
        return int(t)
    if isinstance(t, float):
        return float(t)
    if isinstance(t, Atom):
        return Atom(t)
    if isinstance(t, str):
        return str(t)
    if isinstance(t, (bytes, bytearray, memoryview)):
        return bytes(t)
    if isinstance(t, tuple):
        return tuple(t)
    if isinstance(t, list):
        return list(t)
    if isinstance(t, Mapping):
        return dict(t)
    raise TypeError(f"{type(t).__name__} has no Erlang term form")


def _sorted_items(m: Any) -> list[tuple[Any, Any]]:
    return sorted(m.items(), key=_MAP_KEY_ORDER)


def _write(term: Any, out: list[str]) -> None:
    """Append the one-line form of ``term`` to ``out``; iterative, so any depth works."""
    stack: list[Any] = [term]
    push = stack.append
    pop = stack.pop
    scalars = _SCALARS
    while stack:
        t = pop()
        tt = type(t)
        if tt is _Raw:
            out.append(t)
            continue
        writer = scalars.get(tt)
        if writer is not None:
            out.append(writer(t))
            continue
        if tt is list or tt is FrozenList:
            if not t:
                out.append("[]")
                continue
            s = _as_string(t)
            if s is not None:
                out.append(s)
                continue
            out.append("[")
            push(_RBRACKET)
            for i in range(len(t) - 1, 0, -1):
                push(t[i])
                push(_COMMA)
            push(t[0])
        elif tt is tuple:
            if not t:
                out.append("{}")
                continue
            out.append("{")
            push(_RBRACE)
            for i in range(len(t) - 1, 0, -1):
                push(t[i])
                push(_COMMA)
            push(t[0])
        elif tt is dict or tt is FrozenMap or tt is Struct:
            if not t:
                out.append("#{}")
                continue
            out.append("#{")
            push(_RBRACE)
            items = _sorted_items(t)
            for i in range(len(items) - 1, -1, -1):
                k, v = items[i]
                push(v)
                push(_ARROW)
                push(k)
                if i:
                    push(_COMMA)
        elif tt is ImproperList:
            items, tail = _flatten_improper(t)
            if type(tail) is list:
                push(items)
                continue
            out.append("[")
            push(_RBRACKET)
            push(tail)
            push(_BAR)
            for i in range(len(items) - 1, 0, -1):
                push(items[i])
                push(_COMMA)
            push(items[0])
        else:
            push(_normalize(t))


def _oneline(term: Any) -> str:
    out: list[str] = []
    _write(term, out)
    return "".join(out)


_PP_MAX_DEPTH = 100


def _last_line_len(s: str) -> int:
    i = s.rfind("\n")
    return len(s) if i < 0 else len(s) - i - 1


def _is_leaf(s: str) -> bool:
    """Like ~p: atomic things share a line; containers and <<1,2>> get lines of their own."""
    if "\n" in s or s in ("[]", "{}", "#{}", "<<>>"):
        return "\n" not in s
    if s[0] in "[{" or s.startswith("#{"):
        return False
    return not (s.startswith("<<") and '"' not in s)


def _pretty(term: Any, col: int, width: int, depth: int) -> str:
    """Break containers that do not fit in ``width`` (counted from column 0)."""
    one = _oneline(term)
    if col + len(one) <= width or depth >= _PP_MAX_DEPTH:
        return one
    t = term
    tt = type(t)
    if tt not in (list, FrozenList, tuple, dict, FrozenMap, Struct, ImproperList):
        if tt in _SCALARS or tt is _Raw:
            return one
        return _pretty(_normalize(t), col, width, depth)
    tail: Any = []
    pairs = False
    if tt is tuple:
        opener, closer, elems = "{", "}", list(t)
    elif tt is dict or tt is FrozenMap or tt is Struct:
        opener, closer, elems, pairs = "#{", "}", _sorted_items(t), True
    elif tt is ImproperList:
        elems, tail = _flatten_improper(t)
        opener, closer = "[", "]"
    else:
        if one[0] != "[":  # printed as a string
            return one
        opener, closer, elems = "[", "]", list(t)
    inner = col + len(opener)
    indent = "\n" + " " * inner
    parts = [opener]
    cur = inner
    prev_leaf = False
    last = len(elems) - 1
    for i, e in enumerate(elems):
        if pairs:
            k, v = e
            ks = _pretty(k, inner, width, depth + 1)
            vcol = inner + _last_line_len(ks) + 4
            vs = _pretty(v, vcol, width, depth + 1)
            if "\n" in vs and vcol > inner + 4:
                vs = _pretty(v, inner + 4, width, depth + 1)
                s = ks + " =>\n" + " " * (inner + 4) + vs
            else:
                s = ks + " => " + vs
            leaf = _is_leaf(ks) and _is_leaf(vs)
        else:
            s = _pretty(e, inner, width, depth + 1)
            leaf = _is_leaf(s)
        end = len(closer) if i == last and type(tail) is list else 1
        if i == 0:
            parts.append(s)
            cur = inner + _last_line_len(s) if "\n" in s else cur + len(s)
        elif leaf and prev_leaf and cur + 1 + len(s) + end <= width:
            parts.append(",")
            parts.append(s)
            cur += 1 + len(s)
        else:
            parts.append(",")
            parts.append(indent)
            parts.append(s)
            cur = inner + _last_line_len(s)
        prev_leaf = leaf
    if type(tail) is not list:
        ts = _pretty(tail, cur + 1, width, depth + 1)
        if cur + 1 + len(ts) + 1 <= width or "\n" in ts:
            parts.append("|" + ts)
        else:
            parts.append(indent + "|" + _pretty(tail, inner + 1, width, depth + 1))
    parts.append(closer)
    return "".join(parts)


def format_term(term: Any, *, width: int | None = None) -> str:
    """Write ``term`` in Erlang syntax, as ``io_lib:format("~p", [Term])`` would.

    The result reads back with :func:`parse_term` (except local funs) and, for terms
    without pids, ports, references and funs, with ``erl_parse:parse_term/1``.
    ``width=None`` (the default) writes one line; an integer breaks long containers over
    several lines, indented like ``~p`` (line breaks are not guaranteed to match erl's).
    """
    if width is None:
        return _oneline(term)
    return _pretty(term, 0, width, 0)


# --------------------------------------------------------------------------------------------
# Erlang term order (used to sort map keys as erl does)
# --------------------------------------------------------------------------------------------

# number < atom < reference < fun < port < pid < tuple < map < nil < list < bitstring
_RANK: dict[type, int] = {
    int: 0,
    float: 0,
    bool: 1,
    type(None): 1,
    Atom: 1,
    Reference: 2,
    Fun: 3,
    ExportFun: 3,
    Port: 4,
    Pid: 5,
    tuple: 6,
    dict: 7,
    FrozenMap: 7,
    Struct: 7,
    list: 9,
    FrozenList: 9,
    ImproperList: 9,
    str: 10,
    bytes: 10,
    bytearray: 10,
    memoryview: 10,
    BitString: 10,
}


def _rank(t: Any) -> int:
    r = _RANK.get(type(t))
    if r is None:
        return _rank(_normalize(t))
    if r == 9 and type(t) is not ImproperList and not t:
        return 8
    return r


def _atom_text(t: Any) -> str:
    if t is None:
        return "undefined"
    if t is True:
        return "true"
    if t is False:
        return "false"
    return str(t)


def _bits(t: Any) -> tuple[bytes, int]:
    tt = type(t)
    if tt is BitString:
        return t.data, t.bit_size
    if tt is str:
        b = t.encode("utf-8")
    else:
        b = bytes(t)
    return b, len(b) * 8


def _cmp_bits(a: Any, b: Any) -> int:
    da, na = _bits(a)
    db, nb = _bits(b)
    if na % 8 == 0 and nb % 8 == 0:
        return (da > db) - (da < db)
    n = min(na, nb)
    ia = int.from_bytes(da, "big") >> (len(da) * 8 - n)
    ib = int.from_bytes(db, "big") >> (len(db) * 8 - n)
    if ia != ib:
        return -1 if ia < ib else 1
    return (na > nb) - (na < nb)


def _list_parts(t: Any) -> tuple[list[Any], Any]:
    if type(t) is ImproperList:
        return _flatten_improper(t)
    return list(t), []


def _cmp(a: Any, b: Any, exact: bool) -> int:
    """Compare two terms in Erlang term order; ``exact`` is map-key order (integers first)."""
    ra, rb = _rank(a), _rank(b)
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 0:
        if exact:
            ia, ib = isinstance(a, int), isinstance(b, int)
            if ia != ib:
                return -1 if ia else 1
        return (a > b) - (a < b)
    if ra == 1:
        x, y = _atom_text(a), _atom_text(b)
        return (x > y) - (x < y)
    if ra == 6:
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        for x, y in zip(a, b, strict=True):
            c = _cmp(x, y, exact)
            if c:
                return c
        return 0
    if ra == 7:
        if len(a) != len(b):
            return -1 if len(a) < len(b) else 1
        items_a, items_b = _sorted_items(a), _sorted_items(b)
        for (ka, _), (kb, _) in zip(items_a, items_b, strict=True):
            c = _cmp(ka, kb, True)
            if c:
                return c
        for (_, va), (_, vb) in zip(items_a, items_b, strict=True):
            c = _cmp(va, vb, exact)
            if c:
                return c
        return 0
    if ra == 8:
        return 0
    if ra == 9:
        xa, ta = _list_parts(a)
        xb, tb = _list_parts(b)
        for x, y in zip(xa, xb, strict=False):
            c = _cmp(x, y, exact)
            if c:
                return c
        n = min(len(xa), len(xb))
        rest_a = _rebuild(xa[n:], ta)
        rest_b = _rebuild(xb[n:], tb)
        return _cmp(rest_a, rest_b, exact)
    if ra == 10:
        return _cmp_bits(a, b)
    ka, kb = _identity_key(a), _identity_key(b)
    return (ka > kb) - (ka < kb)


def _rebuild(items: list[Any], tail: Any) -> Any:
    if not items:
        return tail
    if type(tail) is list and not tail:
        return items
    return ImproperList(items, tail)


def _identity_key(t: Any) -> tuple[Any, ...]:
    tt = type(t)
    if tt is Pid:
        return (str(t.node), t.id, t.serial, t.creation)
    if tt is Port:
        return (str(t.node), t.id, t.creation)
    if tt is Reference:
        return (str(t.node), t.creation, tuple(reversed(t.ids)))
    if tt is ExportFun:
        return (1, str(t.module), str(t.function), t.arity)
    return (0, str(t.module), t.index, t.uniq, t.old_uniq)


class _MAP_KEY_ORDER:
    """A map item's sort key, erl's key order (functools.cmp_to_key's job, but importing
    functools costs the ``pynode`` command milliseconds)."""

    __slots__ = ("key",)

    def __init__(self, item: tuple[Any, Any]) -> None:
        self.key = item[0]

    def __lt__(self, other: _MAP_KEY_ORDER) -> bool:
        return _cmp(self.key, other.key, True) < 0


# --------------------------------------------------------------------------------------------
# Tokenizer
# --------------------------------------------------------------------------------------------

_DIGITS = r"[0-9]+(?:_[0-9]+)*"
_TOKEN_RE = _LazyRe(
    "_TOKEN_RE",
    rf"""(?xs)
    (?P<ws>(?:\s+|%[^\n]*)+)
  | (?P<float>{_DIGITS}\.{_DIGITS}(?:[eE][+-]?{_DIGITS})?)
  | (?P<based>{_DIGITS}\#[0-9a-zA-Z]+(?:_[0-9a-zA-Z]+)*)
  | (?P<int>{_DIGITS})
  | (?P<char>\$(?:\\(?:x\{{[0-9a-fA-F]*\}}|x[0-9a-fA-F]{{0,2}}|[0-7]{{1,3}}|\^.|.)|.))
  | (?P<atom>[{_NAME_START}][{_NAME_CHARS}]*)
  | (?P<var>[A-Z_\u00c0-\u00d6\u00d8-\u00de][{_NAME_CHARS}]*)
  | (?P<qatom>'[^'\\]*(?:\\.[^'\\]*)*')
  | (?P<string>"[^"\\]*(?:\\.[^"\\]*)*")
  | (?P<ext>\#(?:Pid|Port|Ref|Fun)<(?:'[^'\\]*(?:\\.[^'\\]*)*'|[^'>\s])*>)
  | (?P<punct><<|>>|=>|:=|[\[\]{{}}(),|:/\#<>.+\-=])
    """,
)

_ESCAPE_RE = _LazyRe(
    "_ESCAPE_RE",
    r"(?s)\\(?:x\{([0-9a-fA-F]*)\}|x([0-9a-fA-F]{0,2})|([0-7]{1,3})|\^(.)|(.))"
)
_SIMPLE_ESCAPES = {
    "b": 8,
    "d": 127,
    "e": 27,
    "f": 12,
    "n": 10,
    "r": 13,
    "s": 32,
    "t": 9,
    "v": 11,
}


def _unescape(body: str, text: str, offset: int) -> list[int]:
    """Code points of a quoted body, with erl_scan's escapes; ``offset`` locates errors."""
    if "\\" not in body:
        return [ord(c) for c in body]
    out: list[int] = []
    pos = 0
    for m in _ESCAPE_RE.finditer(body):
        out.extend(ord(c) for c in body[pos : m.start()])
        pos = m.end()
        braced, hex2, octal, ctrl, other = m.groups()
        if braced is not None:
            if not braced:
                raise TermSyntaxError("empty \\x{} escape", text, offset + m.start())
            code = int(braced, 16)
        elif hex2 is not None:
            if len(hex2) != 2:
                raise TermSyntaxError(
                    "\\x needs two hex digits or \\x{...}", text, offset + m.start()
                )
            code = int(hex2, 16)
        elif octal is not None:
            code = int(octal, 8)
        elif ctrl is not None:
            code = 127 if ctrl == "?" else ord(ctrl) & 31  # \^? is DEL, as on OTP 26+
        else:
            code = _SIMPLE_ESCAPES.get(other, ord(other))
        if not _is_char(code):
            raise TermSyntaxError(
                f"escape gives {code:#x}, which is not a character", text, offset + m.start()
            )
        out.append(code)
    out.extend(ord(c) for c in body[pos:])
    return out


def _parse_digits(digits: str, base: int) -> int:
    """``int(digits, base)`` without Python's digit-count limit for long literals."""
    try:
        return int(digits, base)
    except ValueError:
        if len(digits) < 2000:
            raise
    mid = len(digits) // 2
    return _parse_digits(digits[:mid], base) * base ** (len(digits) - mid) + _parse_digits(
        digits[mid:], base
    )


_EXT_SHAPES = {
    "Pid": "#Pid<Node.Id.Serial.Creation>",
    "Port": "#Port<Node.Id.Creation>",
    "Ref": "#Ref<Node.Creation.Word...>",
}
_EXT_BODY_RE = _LazyRe("_EXT_BODY_RE", r"""(?s)('[^'\\]*(?:\\.[^'\\]*)*'|[^.']+)((?:\.[0-9]+)*)""")

# --------------------------------------------------------------------------------------------
# Bit syntax
# --------------------------------------------------------------------------------------------

_TYPES = frozenset(
    ("integer", "float", "binary", "bytes", "bitstring", "bits", "utf8", "utf16", "utf32")
)
_SIGNS = frozenset(("signed", "unsigned"))
_ENDIANS = frozenset(("big", "little", "native"))
_MAX_BIN_NESTING = 64


class _BitWriter:
    """Collects segments bit by bit; whole bytes go straight into a bytearray."""

    __slots__ = ("buf", "acc", "nacc")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.acc = 0
        self.nacc = 0

    def add_bits(self, value: int, nbits: int) -> None:
        if nbits <= 0:
            return
        value &= (1 << nbits) - 1
        if self.nacc == 0 and nbits % 8 == 0:
            self.buf += value.to_bytes(nbits // 8, "big")
            return
        acc = (self.acc << nbits) | value
        total = self.nacc + nbits
        rem = total % 8
        if total >= 8:
            self.buf += (acc >> rem).to_bytes(total // 8, "big")
        self.acc = acc & ((1 << rem) - 1)
        self.nacc = rem

    def add_bytes(self, data: bytes, bits: int) -> None:
        """Append the first ``bits`` bits of ``data``."""
        whole, rem = divmod(bits, 8)
        if self.nacc == 0:
            self.buf += data[:whole]
        else:
            self.add_bits(int.from_bytes(data[:whole], "big"), whole * 8)
        if rem:
            self.add_bits(data[whole] >> (8 - rem), rem)

    def result(self) -> bytes | BitString:
        if self.nacc == 0:
            return bytes(self.buf)
        last = (self.acc << (8 - self.nacc)) & 0xFF
        return BitString(bytes(self.buf) + bytes((last,)), self.nacc)


def _bits_of(value: bytes | BitString) -> tuple[bytes, int]:
    if isinstance(value, BitString):
        return value.data, value.bit_size
    return value, len(value) * 8


# --------------------------------------------------------------------------------------------
# Parser
# --------------------------------------------------------------------------------------------


class _Parser:
    """Recursive-descent in shape, but containers use an explicit stack (no RecursionError)."""

    def __init__(self, text: str, max_depth: int) -> None:
        self.text = text
        self.max_depth = max_depth
        self.toks = self._tokenize(text)
        self.i = 0

    # -- tokens ------------------------------------------------------------------------------

    @staticmethod
    def _tokenize(text: str) -> list[tuple[str, str, int]]:
        toks: list[tuple[str, str, int]] = []
        append = toks.append
        match = _TOKEN_RE.match
        pos = 0
        n = len(text)
        while pos < n:
            m = match(text, pos)
            if m is None:
                ch = text[pos]
                if ch in "'\"":
                    what = "quoted atom" if ch == "'" else "string"
                    raise TermSyntaxError(f"unterminated {what}", text, pos)
                if ch == "$":
                    raise TermSyntaxError("'$' needs a character after it", text, pos)
                raise TermSyntaxError(f"unexpected character {ch!r}", text, pos)
            kind = m.lastgroup
            assert kind is not None
            if kind != "ws":
                s = m.group()
                append((s if kind == "punct" else kind, s, pos))
            pos = m.end()
        append(("eof", "", n))
        return toks

    def error(self, message: str, tok: tuple[str, str, int] | None = None) -> TermSyntaxError:
        if tok is None:
            tok = self.toks[self.i]
        return TermSyntaxError(message, self.text, tok[2])

    def next(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        if tok[0] != "eof":
            self.i += 1
        return tok

    def peek(self) -> str:
        return self.toks[self.i][0]

    def expect(self, kind: str, what: str) -> tuple[str, str, int]:
        tok = self.next()
        if tok[0] != kind:
            raise self.error(f"expected {what}, found {_describe(tok)}", tok)
        return tok

    # -- scalars -----------------------------------------------------------------------------

    def number(self, tok: tuple[str, str, int]) -> int | float:
        kind, s, pos = tok
        if kind == "int":
            return _parse_digits(s.replace("_", ""), 10)
        if kind == "float":
            value = float(s.replace("_", ""))
            if not math.isfinite(value):
                raise self.error("float out of range", tok)
            return value
        if kind == "based":
            base_s, _, digits = s.partition("#")
            base = int(base_s.replace("_", ""))
            if not 2 <= base <= 36:
                raise self.error(f"integer base {base} is not in 2..36", tok)
            digits = digits.replace("_", "")
            for j, d in enumerate(digits):
                if int(d, 36) >= base:
                    raise TermSyntaxError(
                        f"digit {d!r} is not valid in base {base}",
                        self.text,
                        pos + len(base_s) + 1 + j,
                    )
            return _parse_digits(digits, base)
        # char literal
        body = s[1:]
        if not body:
            raise self.error("character literal '$' needs a character", tok)
        codes = _unescape(body, self.text, pos + 1)
        if len(codes) != 1:  # pragma: no cover - the token regex allows one character
            raise self.error("bad character literal", tok)
        return codes[0]

    def string(self, tok: tuple[str, str, int]) -> list[int]:
        codes = _unescape(tok[1][1:-1], self.text, tok[2] + 1)
        while self.peek() == "string":  # "a" "b" is "ab", as in erl_parse
            t = self.next()
            codes.extend(_unescape(t[1][1:-1], self.text, t[2] + 1))
        return codes

    def quoted_atom(self, tok: tuple[str, str, int]) -> str:
        codes = _unescape(tok[1][1:-1], self.text, tok[2] + 1)
        return self._atom_text(codes, tok)

    def _atom_text(self, codes: list[int], tok: tuple[str, str, int]) -> str:
        if len(codes) > _MAX_ATOM_CHARS:
            raise self.error(f"atom longer than {_MAX_ATOM_CHARS} characters", tok)
        return "".join(map(chr, codes))

    def ext(self, tok: tuple[str, str, int]) -> Any:
        """``#Pid<...>``, ``#Port<...>``, ``#Ref<...>`` (and the unreadable ``#Fun<...>``)."""
        s, pos = tok[1], tok[2]
        kind = s[1 : s.index("<")]
        body_at = len(kind) + 2
        body = s[body_at:-1]
        if kind == "Fun":
            raise self.error(
                "#Fun<...> is a printed local fun; funs cannot be built from text", tok
            )
        shape = _EXT_SHAPES[kind]
        m = _EXT_BODY_RE.fullmatch(body)
        if m is None:
            raise self.error(f"expected {shape} (quote node names that contain '.')", tok)
        node_s, nums_s = m.groups()
        if node_s.startswith("'"):
            node = self._atom_text(_unescape(node_s[1:-1], self.text, pos + body_at + 1), tok)
        elif _UNQUOTED_ATOM_RE.fullmatch(node_s):
            node = node_s
        elif node_s.isdigit():
            raise self.error(
                f"#{kind}<{body}> is erl's local notation, without a node name; write {shape}",
                tok,
            )
        else:
            raise self.error(f"node name {node_s!r} in #{kind}<...> must be quoted", tok)
        nums = [int(x) for x in nums_s.split(".")[1:]]
        if kind == "Pid":
            if len(nums) != 3:
                raise self.error(f"expected {shape}: three numbers after the node", tok)
            return Pid(node, *nums)
        if kind == "Port":
            if len(nums) != 2:
                raise self.error(f"expected {shape}: two numbers after the node", tok)
            return Port(node, *nums)
        if not 2 <= len(nums) <= 6:
            raise self.error(f"expected {shape}: a creation and 1 to 5 words", tok)
        return Reference(node, nums[0], reversed(nums[1:]))

    def export_fun(self) -> ExportFun:
        names = []
        for what in ("module", "function"):
            tok = self.next()
            if tok[0] == "atom":  # reserved words too: erl prints fun erlang:and/2
                names.append(tok[1])
            elif tok[0] == "qatom":
                names.append(self.quoted_atom(tok))
            else:
                raise self.error(f"expected a {what} name (atom) after 'fun'", tok)
            if what == "module":
                self.expect(":", "':' in fun Module:Function/Arity")
        self.expect("/", "'/' in fun Module:Function/Arity")
        tok = self.expect("int", "an arity")
        return ExportFun(names[0], names[1], int(tok[1].replace("_", "")))

    # -- binaries ----------------------------------------------------------------------------

    def binary(self, nesting: int) -> bytes | BitString:
        """Parse after ``<<`` up to and including ``>>``."""
        if nesting > _MAX_BIN_NESTING:
            raise self.error("binaries nested too deeply")
        if self.peek() == ">>":
            self.next()
            return b""
        w = _BitWriter()
        while True:
            self.segment(w, nesting)
            tok = self.next()
            if tok[0] == ">>":
                return w.result()
            if tok[0] != ",":
                raise self.error(f"expected ',' or '>>' in binary, found {_describe(tok)}", tok)

    def segment(self, w: _BitWriter, nesting: int) -> None:
        start = self.toks[self.i]
        tok = self.next()
        kind = tok[0]
        value: Any
        if kind == "string":
            value = self.string(tok)
        elif kind in ("int", "float", "based", "char"):
            value = self.number(tok)
        elif kind in ("-", "+"):
            num = self.next()
            if num[0] not in ("int", "float", "based", "char"):
                raise self.error(f"expected a number after '{kind}'", num)
            value = self.number(num)
            if kind == "-":
                value = -value
        elif kind == "<<":
            value = self.binary(nesting + 1)
        else:
            raise self.error(f"expected a literal in a binary segment, found {_describe(tok)}", tok)
        size: int | None = None
        if self.peek() == ":":
            self.next()
            st = self.next()
            if st[0] not in ("int", "based"):
                raise self.error("expected an integer segment size", st)
            size = int(self.number(st))
        typ = endian = None
        unit: int | None = None
        if self.peek() == "/":
            self.next()
            while True:
                t = self.next()
                name = t[1]
                if t[0] != "atom":
                    raise self.error(f"expected a type specifier, found {_describe(t)}", t)
                if name == "unit":
                    self.expect(":", "':' after unit")
                    ut = self.expect("int", "a unit (1..256)")
                    unit = int(ut[1].replace("_", ""))
                    if not 1 <= unit <= 256:
                        raise self.error("unit must be 1..256", ut)
                elif name in _TYPES:
                    typ = name
                elif name in _SIGNS:
                    pass  # signedness does not change how a literal is stored
                elif name in _ENDIANS:
                    endian = name
                else:
                    raise self.error(f"unknown type specifier {name!r}", t)
                if self.peek() != "-":
                    break
                self.next()
        if type(value) is list:
            if typ in ("binary", "bytes", "bitstring", "bits"):
                raise self.error("a string segment cannot have a binary type", start)
            if typ in (None, "integer") and size in (None, 8) and unit in (None, 1):
                data = bytes([c & 0xFF for c in value])  # <<"text">>: one byte per char
                w.add_bytes(data, len(data) * 8)
                return
            for code in value:
                self._put(w, code, typ, size, unit, endian, start)
        else:
            self._put(w, value, typ, size, unit, endian, start)

    def _put(
        self,
        w: _BitWriter,
        value: Any,
        typ: str | None,
        size: int | None,
        unit: int | None,
        endian: str | None,
        tok: tuple[str, str, int],
    ) -> None:
        little = endian == "little" or (endian == "native" and sys.byteorder == "little")
        is_bits = type(value) is bytes or type(value) is BitString
        if typ is None:
            typ = "integer"  # erl's default, whatever the value is
        if typ in ("utf8", "utf16", "utf32"):
            if size is not None or unit is not None:
                raise self.error(f"{typ} segments take no size or unit", tok)
            if type(value) is not int or not (0 <= value < 0xD800 or 0xDFFF < value <= 0x10FFFF):
                raise self.error(f"{typ} segment value must be a Unicode code point", tok)
            codec = {"utf8": "utf-8", "utf16": "utf-16", "utf32": "utf-32"}[typ]
            codec += "" if typ == "utf8" else ("-le" if little else "-be")
            data = chr(value).encode(codec, "surrogatepass")
            w.add_bytes(data, len(data) * 8)
            return
        if typ in ("binary", "bytes", "bitstring", "bits"):
            if not is_bits:
                raise self.error(f"a {typ} segment needs a binary value", tok)
            data, nbits = _bits_of(value)
            u = unit if unit is not None else (8 if typ in ("binary", "bytes") else 1)
            if size is None:
                if nbits % u:
                    raise self.error(f"binary of {nbits} bits is not a multiple of unit {u}", tok)
                take = nbits
            else:
                take = size * u
                if take > nbits:
                    raise self.error(f"binary has {nbits} bits, segment wants {take}", tok)
            w.add_bytes(data, take)
            return
        if is_bits:
            raise self.error(f"a binary value needs a binary type, not {typ}", tok)
        if typ == "float":
            nbits = (64 if size is None else size) * (unit or 1)
            fmt = {16: "e", 32: "f", 64: "d"}.get(nbits)
            if fmt is None:
                raise self.error("float segments are 16, 32 or 64 bits", tok)
            try:
                data = struct.pack(("<" if little else ">") + fmt, float(value))
            except OverflowError:
                raise self.error(f"{value} does not fit a {nbits}-bit float", tok) from None
            w.add_bytes(data, nbits)
            return
        if type(value) is not int:
            raise self.error("an integer segment needs an integer value", tok)
        nbits = (8 if size is None else size) * (unit or 1)
        if size is None and unit is not None:
            raise self.error("a unit needs an explicit size", tok)
        if nbits + len(w.buf) * 8 > _MAX_LITERAL_BITS:
            raise self.error(
                f"an integer segment of {nbits} bits would make a binary over "
                f"{_MAX_LITERAL_BITS // 8} bytes", tok
            )
        value &= (1 << nbits) - 1
        if little and nbits > 8:
            whole, rem = divmod(nbits, 8)
            w.add_bytes(value.to_bytes(whole + (1 if rem else 0), "little")[:whole], whole * 8)
            w.add_bits(value >> (whole * 8), rem)
        else:
            w.add_bits(value, nbits)

    # -- terms -------------------------------------------------------------------------------

    def parse(self) -> Any:
        stack: list[list[Any]] = []  # frames: [kind, items, extra]
        max_depth = self.max_depth
        while True:
            # Read the start of a value; containers push a frame and loop for their first item.
            tok = self.next()
            kind = tok[0]
            value: Any
            if kind == "atom":
                s = tok[1]
                if len(s) > _MAX_ATOM_CHARS:
                    raise self.error(f"atom longer than {_MAX_ATOM_CHARS} characters", tok)
                if s in _RESERVED and s not in _SOFT_KEYWORDS:
                    if s == "fun":
                        value = self.export_fun()
                    else:
                        raise self.error(f"reserved word '{s}' must be quoted to be an atom", tok)
                else:
                    value = True if s == "true" else False if s == "false" else Atom(s)
            elif kind in ("int", "float", "based", "char"):
                value = self.number(tok)
            elif kind == "string":
                value = self.string(tok)
            elif kind == "qatom":
                s = self.quoted_atom(tok)
                value = True if s == "true" else False if s == "false" else Atom(s)
            elif kind in ("[", "{", "#", "("):
                if kind == "#":
                    nxt = self.toks[self.i]
                    if nxt[0] == "var" and nxt[1] in ("Pid", "Port", "Ref", "Fun"):
                        shape = _EXT_SHAPES.get(nxt[1], "#Fun<...>")
                        raise self.error(f"malformed #{nxt[1]}<...>: expected {shape}", tok)
                    self.expect("{", "'{' after '#' (maps are #{...})")
                    kind = "#{"
                if len(stack) >= max_depth:
                    raise self.error(f"term nested deeper than {max_depth} levels", tok)
                closer = {"[": "]", "{": "}", "#{": "}", "(": ")"}[kind]
                if kind != "(" and self.peek() == closer:
                    self.next()
                    value = [] if kind == "[" else () if kind == "{" else {}
                else:
                    stack.append([kind, [] if kind != "#{" else {}, None, False])
                    continue
            elif kind == "<<":
                value = self.binary(1)
            elif kind in ("-", "+"):
                num = self.next()
                if num[0] not in ("int", "float", "based", "char"):
                    raise self.error(f"expected a number after '{kind}'", num)
                value = self.number(num)
                if kind == "-":
                    value = -value
            elif kind == "ext":
                value = self.ext(tok)
            elif kind == "<":
                raise self.error(
                    "erl's local pid notation <A.B.C> has no node name; "
                    "write #Pid<Node.Id.Serial.Creation>",
                    tok,
                )
            elif kind == "var":
                raise self.error(f"variables ({tok[1]}) are not allowed in a term", tok)
            else:
                raise self.error(f"expected a term, found {_describe(tok)}", tok)

            # Hand the value to the enclosing containers, closing the ones that end here.
            while True:
                if not stack:
                    end = self.next()
                    if end[0] == ".":
                        end = self.next()
                    if end[0] != "eof":
                        raise self.error(f"expected end of input, found {_describe(end)}", end)
                    return value
                frame = stack[-1]
                fk = frame[0]
                if fk == "[":
                    frame[1].append(value)
                    tok = self.next()
                    if tok[0] == ",":
                        break
                    if tok[0] == "|":
                        frame[0] = "|"
                        break
                    if tok[0] == "]":
                        stack.pop()
                        value = frame[1]
                        continue
                    raise self.error(f"expected ',', '|' or ']', found {_describe(tok)}", tok)
                if fk == "{":
                    frame[1].append(value)
                    tok = self.next()
                    if tok[0] == ",":
                        break
                    if tok[0] == "}":
                        stack.pop()
                        value = tuple(frame[1])
                        continue
                    raise self.error(f"expected ',' or '}}', found {_describe(tok)}", tok)
                if fk == "#{":
                    frame[2] = value
                    tok = self.next()
                    if tok[0] == "=>":
                        frame[0] = "=>"
                        break
                    if tok[0] == ":=":
                        raise self.error("':=' only updates maps; a map literal uses '=>'", tok)
                    raise self.error(f"expected '=>', found {_describe(tok)}", tok)
                if fk == "=>":
                    key = frame[2]
                    m = frame[1]
                    if frame[3]:
                        key = _distinct_key(key)
                    else:
                        try:
                            collides = key in m
                        except TypeError:
                            key = freeze(key)
                            collides = key in m
                        if collides and not _same_term(key, next(k for k in m if k == key)):
                            # 1 and 1.0 (or true and 1) are one key to Python, two to Erlang.
                            m = frame[1] = {_distinct_key(k): v for k, v in m.items()}
                            frame[3] = True
                            key = _distinct_key(key)
                    m[key] = value
                    tok = self.next()
                    if tok[0] == ",":
                        frame[0] = "#{"
                        break
                    if tok[0] == "}":
                        stack.pop()
                        value = frame[1]
                        if type(value.get(STRUCT_KEY)) is Atom:  # an Elixir struct, as decode gives
                            value = Struct._from_map(value)
                        continue
                    raise self.error(f"expected ',' or '}}', found {_describe(tok)}", tok)
                if fk == "|":
                    self.expect("]", "']' after the tail of a list")
                    stack.pop()
                    value = _cons(frame[1], value)
                    continue
                # "("
                self.expect(")", "')'")
                stack.pop()


def _same_term(a: Any, b: Any) -> bool:
    """Equal as Erlang terms (Python's ``==`` also equates 1, 1.0 and true)."""
    return a == b and _oneline(a) == _oneline(b)


def _distinct_key(key: Any) -> Any:
    """The codec's representation of a map key that Python would merge with another."""
    if type(key) is bool:
        return Atom("true" if key else "false")
    if type(key) is float:
        return ErlFloatKey(key)
    try:
        hash(key)
    except TypeError:
        return freeze(key)
    return key


def _cons(items: list[Any], tail: Any) -> Any:
    """``[items... | tail]``, a proper list when the tail is one."""
    tt = type(tail)
    if tt is list:
        items.extend(tail)
        return items
    if tt is ImproperList:
        return ImproperList(items + list(tail.items), tail.tail)
    return ImproperList(items, tail)


def _describe(tok: tuple[str, str, int]) -> str:
    kind, s, _ = tok
    if kind == "eof":
        return "end of input"
    if len(s) > 20:
        s = s[:17] + "..."
    return repr(s)


def parse_term(text: str | bytes, *, max_depth: int = DEFAULT_MAX_DEPTH) -> Any:
    """Read one Erlang term literal (the trailing ``.`` is optional) into Python values.

    Accepts what ``erl_parse:parse_term/1`` accepts for literals, plus the ``#Pid<...>``,
    ``#Port<...>`` and ``#Ref<...>`` forms :func:`format_term` writes. Strings become lists
    of code points, binaries ``bytes`` (or ``BitString``), ``true``/``false`` ``bool`` and
    other atoms ``Atom``. Raises :class:`TermSyntaxError` with a line and column.
    """
    if isinstance(text, (bytes, bytearray)):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as e:
            raise TermSyntaxError(f"the text is not UTF-8: {e.reason} at byte {e.start}") from None
    return _Parser(text, max_depth).parse()
