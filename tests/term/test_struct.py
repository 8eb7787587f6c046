"""Elixir structs: a map with an atom ``__struct__`` decodes to ``Struct`` in every codec and
encodes back to the same bytes."""

from __future__ import annotations

import pickle
import struct as pystruct
from types import ModuleType
from typing import Any

import pytest

import pynode.term as term
from pynode.term import Atom, FrozenMap, Struct, freeze
from pynode.term.syntax import format_term


@pytest.fixture(params=sorted(term.IMPLEMENTATIONS))
def codec(request: pytest.FixtureRequest) -> ModuleType:
    return term.IMPLEMENTATIONS[request.param]


def atom(text: str) -> bytes:
    b = text.encode()
    return bytes([119, len(b)]) + b


def binary(data: bytes) -> bytes:
    return bytes([109]) + pystruct.pack(">I", len(data)) + data


def map_ext(*pairs: tuple[bytes, bytes]) -> bytes:
    return bytes([116]) + pystruct.pack(">I", len(pairs)) + b"".join(k + v for k, v in pairs)


# %URI{host: "x", port: 80, ...} as OTP 26+ term_to_binary (and the distribution) writes it:
# a flatmap, keys in term order, so __struct__ comes first.
URI_BYTES = b"\x83" + map_ext(
    (atom("__struct__"), atom("Elixir.URI")),
    (atom("host"), binary(b"x")),
    (atom("port"), bytes([97, 80])),
    (atom("scheme"), binary(b"http")),
)


def test_decode_gives_struct_that_encodes_back_byte_for_byte(codec: ModuleType) -> None:
    s = codec.decode(URI_BYTES)
    assert type(s) is Struct
    assert s.module == Atom("Elixir.URI") and type(s.module) is Atom
    assert s.alias == "URI"
    assert s.fields == {"host": b"x", "port": 80, "scheme": b"http"}
    assert s["host"] == b"x" and s[Atom("__struct__")] == "Elixir.URI"
    assert len(s) == 4
    assert codec.encode(s) == URI_BYTES


def test_key_order_is_kept_even_when_struct_key_is_not_first(codec: ModuleType) -> None:
    # an uppercase field sorts before __struct__; a hash map (> 32 keys) has any order
    data = b"\x83" + map_ext(
        (atom("Zed"), bytes([97, 1])), (atom("__struct__"), atom("Elixir.M")), (atom("a"), bytes([97, 2]))
    )
    s = codec.decode(data)
    assert type(s) is Struct and list(s) == ["Zed", "__struct__", "a"]
    assert codec.encode(s) == data


def test_not_a_struct_unless_the_module_is_an_atom(codec: ModuleType) -> None:
    data = b"\x83" + map_ext((atom("__struct__"), binary(b"URI")), (atom("a"), bytes([97, 1])))
    m = codec.decode(data)
    assert type(m) is dict and m == {"__struct__": b"URI", "a": 1}
    bin_key = b"\x83" + map_ext((binary(b"__struct__"), atom("Elixir.URI")))
    assert type(codec.decode(bin_key)) is dict
    assert type(codec.decode(b"\x83" + map_ext((atom("a"), atom("b"))))) is dict


def test_struct_as_map_key_and_inside_containers(codec: ModuleType) -> None:
    date = Struct("Date", year=2024, month=2, day=29, calendar=Atom("Elixir.Calendar.ISO"))
    with_list = freeze(Struct("Elixir.Tagged", tags=[1, 2]))
    value = {date: [date], with_list: (date,)}
    data = codec.encode(value)
    back = codec.decode(data)
    assert back == value
    assert all(type(k) is Struct for k in back)
    assert codec.encode(back) == data


def test_constructor_sorts_atom_keys_as_erl_does(codec: ModuleType) -> None:
    s = Struct("URI", {"scheme": b"http", "port": 80}, host=b"x")
    assert list(s) == ["__struct__", "host", "port", "scheme"]
    assert codec.encode(s) == URI_BYTES
    assert Struct("Elixir.URI", s.fields) == s
    assert Struct("erlmod").module == Atom("erlmod")  # a lowercase name is an Erlang module


def test_struct_is_an_immutable_hashable_map() -> None:
    s = Struct("URI", host=b"x", port=80)
    as_dict = {Atom("__struct__"): Atom("Elixir.URI"), Atom("host"): b"x", Atom("port"): 80}
    assert s == as_dict and as_dict == s
    assert s == FrozenMap(as_dict) and hash(s) == hash(FrozenMap(as_dict))
    assert s != Struct("URI", host=b"y", port=80)
    with pytest.raises(AttributeError):
        s.x = 1  # type: ignore[attr-defined]
    with pytest.raises(TypeError):
        s["host"] = b"y"  # type: ignore[index]
    t = s.replace(host=b"y")
    assert t["host"] == b"y" and s["host"] == b"x" and list(t) == list(s)
    with pytest.raises(KeyError):
        s.replace(nope=1)
    with pytest.raises(KeyError):
        s.replace(__struct__=Atom("Elixir.Other"))
    assert pickle.loads(pickle.dumps(s)) == s
    assert type(pickle.loads(pickle.dumps(s))) is Struct
    assert repr(s) == "Struct('Elixir.URI', {Atom('host'): b'x', Atom('port'): 80})"


def test_erlang_printer_shows_a_struct_as_the_map_it_is() -> None:
    s = Struct("URI", host=b"x")
    assert format_term(s) == "#{'__struct__' => 'Elixir.URI',host => <<\"x\">>}"


@pytest.mark.parametrize("value", [Struct("A"), Struct("A", a=Struct("B", b=[1, {2: 3}]))])
def test_codecs_agree(value: Any) -> None:
    encoded = {name: c.encode(value) for name, c in term.IMPLEMENTATIONS.items()}
    assert len(set(encoded.values())) == 1
    for c in term.IMPLEMENTATIONS.values():
        back = c.decode(next(iter(encoded.values())))
        assert back == value and type(back) is Struct


def test_parser_gives_struct_as_decode_does() -> None:
    from pynode.term.syntax import parse_term

    s = parse_term("#{'__struct__' => 'Elixir.URI', host => <<\"x\">>, port => 80}.")
    assert type(s) is Struct and s == Struct("URI", host=b"x", port=80)
    assert type(parse_term("#{'__struct__' => <<\"URI\">>}")) is dict
    key = next(iter(parse_term("#{#{'__struct__' => d, a => [1]} => 1}")))
    assert type(key) is Struct and key["a"] == [1]
    assert parse_term(format_term(s)) == s


def test_module_given_as_a_field_is_refused() -> None:
    with pytest.raises(ValueError):
        Struct("URI", {"__struct__": Atom("Elixir.Other")})
    with pytest.raises(ValueError):
        Struct("URI", __struct__=Atom("Elixir.Other"))
