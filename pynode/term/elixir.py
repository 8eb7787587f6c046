"""Elixir's everyday shapes in Python: keyword lists, strings vs charlists, module aliases.

On the wire an Elixir string is a UTF-8 binary (a Python ``str`` encodes as one; it decodes
as ``bytes``: ``string(b)`` gives the text back); a charlist (``~c"abc"``, Erlang's
``"abc"``) is a list of integers (``charlist("abc")``). A keyword list (``[a: 1]``) is a list
of ``{atom, value}`` tuples, which ``keyword(a=1)`` builds and ``keyword_dict`` reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .types import Atom, Struct, elixir_module

__all__ = [
    "Struct",
    "charlist",
    "elixir_module",
    "is_keyword",
    "keyword",
    "keyword_dict",
    "string",
]


def keyword(pairs: Mapping[str, Any] | Iterable[tuple[str, Any]] = (), /, **kw: Any) -> list[tuple[Atom, Any]]:
    """``keyword(greeting="hi", times=2)`` -> ``[greeting: "hi", times: 2]``, order kept."""
    items = pairs.items() if isinstance(pairs, Mapping) else pairs
    return [(Atom(k), v) for k, v in (*items, *kw.items())]


def is_keyword(term: Any) -> bool:
    """True for a list of 2-tuples with atom keys (Elixir's ``Keyword.keyword?/1``)."""
    return type(term) is list and all(
        type(x) is tuple and len(x) == 2 and type(x[0]) is Atom for x in term
    )


def keyword_dict(term: Any) -> dict[Atom, Any]:
    """A keyword list as a dict; for a repeated key the first value wins, as ``Keyword.get``.

    Raises ValueError for anything that is not a keyword list.
    """
    if not is_keyword(term):
        raise ValueError(f"not a keyword list: {term!r:.80}")
    out: dict[Atom, Any] = {}
    for k, v in term:
        out.setdefault(k, v)
    return out


def string(data: bytes | bytearray | memoryview) -> str:
    """An Elixir string (a UTF-8 binary, decoded as ``bytes``) as ``str``; bad UTF-8 raises."""
    return bytes(data).decode("utf-8")


def charlist(text: str) -> list[int]:
    """``~c"abc"`` (Erlang's ``"abc"``): the code points as a list of integers."""
    return [ord(c) for c in text]
