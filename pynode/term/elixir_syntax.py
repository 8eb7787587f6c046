"""Terms printed in Elixir syntax (``pynode rpc --format elixir``), as ``inspect/1`` shows them.

The output is valid Elixir for every term Elixir can write literally: ``:ok``, ``Enum``,
``"text"``, ``~c"text"``, ``[a: 1]``, ``%{"k" => 1}``, ``%URI{host: "x"}``, ``~D[2024-02-29]``,
``{1, 2}``, ``[1 | 2]``, ``<<1, 2::size(3)>>``, ``&Enum.map/2``. Pids, ports, references and
local funs have no literal; they print as ``#PID<node@host.ID.SERIAL>`` (Elixir shows a node
number where we show the node's name), ``#Port<node@host.ID>``, ``#Reference<node@host.A.B.C>``
and ``#Function<INDEX.UNIQ/ARITY in :module>``.

Charlists print as ``~c"abc"``: the form Elixir 1.15 and later print, which every Elixir
(1.14 included, which itself prints ``'abc'``) reads back as the same list.
"""

from __future__ import annotations

import re
from typing import Any

from .syntax import _sorted_items, _write_float, _write_int
from .types import (
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
    Struct,
)

__all__ = ["format_elixir", "format_atom"]

# Elixir's unquoted atoms and keyword keys (the Latin-1 subset of its Unicode identifiers:
# other atoms are quoted, which Elixir always reads)
_L = "a-zA-Z_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u00ff"
_IDENT_RE = re.compile(f"[{_L}][{_L}0-9@]*[?!]?")
_ALIAS_RE = re.compile(r"Elixir(\.[A-Z][a-zA-Z0-9_]*)*")
_BARE = frozenset(("nil", "true", "false"))

# String escapes (Elixir's Inspect: Code.Identifier.escape); #{ would start interpolation.
_ESCAPES = {
    ord("\\"): "\\\\", ord('"'): '\\"', 7: "\\a", 8: "\\b", 9: "\\t", 10: "\\n", 11: "\\v",
    12: "\\f", 13: "\\r", 27: "\\e",
}
# String.printable?/1: what inspect shows as a string rather than <<...>>
_PRINTABLE_RE = re.compile(
    "[\x20-\x7e\x07-\x0d\x1b\u00a0-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]*"
)
# List.ascii_printable?/1: what inspect shows as a charlist
_ASCII_PRINTABLE = frozenset([*range(0x20, 0x7F), 7, 8, 9, 10, 11, 12, 13, 27])


class _Raw(str):
    """Literal output text on the work stack (distinct from str terms)."""

    __slots__ = ()


_SEP = _Raw(", ")
_CLOSE_LIST = _Raw("]")
_CLOSE_BRACE = _Raw("}")
_BAR = _Raw(" | ")
_ARROW = _Raw(" => ")


def _quote(text: str) -> str:
    return '"' + text.translate(_ESCAPES).replace("#{", "\\#{") + '"'


def format_atom(a: str) -> str:
    """``:ok``, ``nil``, ``Enum`` (an ``Elixir.``-prefixed alias), ``:"with space"``."""
    text = str(a)
    if text in _BARE:
        return text
    if _ALIAS_RE.fullmatch(text):
        return text[7:] if text != "Elixir" else text
    if _IDENT_RE.fullmatch(text):
        return ":" + text
    return ":" + _quote(text)


def _key(a: Any) -> str | None:
    """The ``key:`` form of a keyword/map key, or None when the key has no such form."""
    if a is True or a is False or a is None:
        return None  # True/False/None print as true/false/:undefined; keep them as values
    if type(a) is not Atom or a.startswith("Elixir."):
        return None  # Elixir's inspect never writes aliases as keys
    return (a if _IDENT_RE.fullmatch(a) else _quote(a)) + ": "


def _binary(data: bytes) -> str:
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    else:
        if _PRINTABLE_RE.fullmatch(text):
            return _quote(text)
    return "<<" + ", ".join(map(str, data)) + ">>"


def _bitstring(b: BitString) -> str:
    if b.bits == 8:
        return _binary(b.data)
    parts = [str(x) for x in b.data[:-1]]
    parts.append(f"{b.data[-1] >> (8 - b.bits)}::size({b.bits})")
    return "<<" + ", ".join(parts) + ">>"


def _charlist(items: Any) -> str | None:
    if not items:
        return None
    for c in items:
        if type(c) is not int or c not in _ASCII_PRINTABLE:
            return None
    return "~c" + _quote("".join(map(chr, items)))


def _date(s: Struct) -> str | None:
    """``~D[2024-02-29]`` for an ISO-calendar Date, as Elixir's Inspect for Date."""
    f = s.fields
    if set(f) != {"calendar", "year", "month", "day"} or f["calendar"] != "Elixir.Calendar.ISO":
        return None
    y, m, d = f["year"], f["month"], f["day"]
    if not all(type(x) is int for x in (y, m, d)) or not (0 <= y <= 9999):
        return None
    return f"~D[{y:04d}-{m:02d}-{d:02d}]"


def _scalar(t: Any) -> str | None:
    tt = type(t)
    if tt is Atom:
        return format_atom(t)
    if tt is int:
        return _write_int(t)
    if tt is bytes:
        return _binary(t)
    if tt is str:
        return _binary(t.encode("utf-8", "surrogatepass"))
    if tt is bool:
        return "true" if t else "false"
    if tt is float:
        return _write_float(t)
    if t is None:
        return ":undefined"  # what None encodes as
    if tt is bytearray or tt is memoryview:
        return _binary(bytes(t))
    if tt is BitString:
        return _bitstring(t)
    if tt is Pid:
        return f"#PID<{t.node}.{t.id}.{t.serial}>"
    if tt is Port:
        return f"#Port<{t.node}.{t.id}>"
    if tt is Reference:
        return f"#Reference<{t.node}." + ".".join(str(w) for w in reversed(t.ids)) + ">"
    if tt is ExportFun:
        return _export(t)
    if tt is Fun:
        return f"#Function<{t.index}.{t.old_uniq}/{t.arity} in {format_atom(t.module)}>"
    return None


def _fun_name(f: str) -> str:
    return f if _IDENT_RE.fullmatch(f) and f not in _BARE else _quote(f)


def _export(f: ExportFun) -> str:
    mod = format_atom(f.module)  # :lists or Enum
    return f"&{mod}.{_fun_name(f.function)}/{f.arity}"


def _push_items(push: Any, items: list[Any], key_style: bool) -> None:
    """Push ``items`` (terms, or (key, value) pairs) in reverse with separators."""
    for i in range(len(items) - 1, -1, -1):
        item = items[i]
        if key_style:
            k, v = item
            push(v)
            kt = _key(k)
            if kt is not None:
                push(_Raw(kt))
            else:
                push(_ARROW)
                push(k)
        else:
            push(item)
        if i:
            push(_SEP)


def _is_keyword(items: Any) -> bool:
    return bool(items) and all(
        type(x) is tuple and len(x) == 2 and _key(x[0]) is not None for x in items
    )


def format_elixir(term: Any) -> str:
    """One line of Elixir syntax for ``term``; iterative, so any depth works."""
    out: list[str] = []
    stack: list[Any] = [term]
    push = stack.append
    while stack:
        t = stack.pop()
        tt = type(t)
        if tt is _Raw:
            out.append(t)
            continue
        s = _scalar(t)
        if s is not None:
            out.append(s)
            continue
        if tt is list or tt is FrozenList:
            cl = _charlist(t)
            if cl is not None:
                out.append(cl)
                continue
            out.append("[")
            push(_CLOSE_LIST)
            if _is_keyword(t):
                _push_items(push, [(k, v) for k, v in t], True)
            else:
                _push_items(push, list(t), False)
        elif tt is tuple:
            out.append("{")
            push(_CLOSE_BRACE)
            _push_items(push, list(t), False)
        elif tt is Struct:
            d = _date(t)
            if d is not None:
                out.append(d)
                continue
            fields = t.fields
            if not _ALIAS_RE.fullmatch(t.module) or not all(_key(k) is not None for k in fields):
                push(dict(t))  # not a struct Elixir could write: show the map it is
                continue
            out.append("%" + format_atom(t.module) + "{")
            push(_CLOSE_BRACE)
            _push_items(push, _sorted_items(fields), True)
        elif tt is dict or tt is FrozenMap:
            out.append("%{")
            push(_CLOSE_BRACE)
            items = _sorted_items(t)
            if all(_key(k) is not None for k, _ in items):
                _push_items(push, items, True)
            else:
                for i in range(len(items) - 1, -1, -1):
                    push(items[i][1])
                    push(_ARROW)
                    push(items[i][0])
                    if i:
                        push(_SEP)
        elif tt is ImproperList:
            out.append("[")
            push(_CLOSE_LIST)
            push(t.tail)
            push(_BAR)
            _push_items(push, list(t.items), False)
        else:
            from .syntax import _normalize

            push(_normalize(t))
    return "".join(out)
