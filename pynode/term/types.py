"""Python types for the Erlang terms that have no native Python counterpart.

All of them are immutable and hashable, compare by value *and* type (a Pid never equals a
tuple), and round-trip exactly through the codec.
"""

from __future__ import annotations

# collections.abc's own module, loaded with the interpreter: importing collections.abc also
# imports the collections package, which costs the ``pynode`` command's start milliseconds
import struct
from _collections_abc import Mapping

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator
    from typing import Any


__all__ = [
    "Atom",
    "Pid",
    "Reference",
    "Port",
    "ImproperList",
    "BitString",
    "Fun",
    "ExportFun",
    "FrozenList",
    "FrozenMap",
    "Struct",
    "STRUCT_KEY",
    "ErlFloatKey",
    "freeze",
]


class Atom(str):
    """An Erlang atom. A ``str`` subclass, so it compares equal to the same text."""

    __slots__ = ()

    def __repr__(self) -> str:
        return f"Atom({str.__repr__(self)})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Atom, (str(self),))


class _Record:
    """Base of the small immutable value types: equality and hash include the type."""

    __slots__: tuple[str, ...] = ()

    def __init__(self, *args: Any) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def _key(self) -> tuple[Any, ...]:
        return tuple(getattr(self, f) for f in self.__slots__)

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __eq__(self, other: object) -> bool:
        if type(other) is not type(self):
            return NotImplemented
        return self._key() == other._key()  # type: ignore[attr-defined]

    def __ne__(self, other: object) -> bool:
        r = self.__eq__(other)
        return r if r is NotImplemented else not r

    def __hash__(self) -> int:
        return hash((type(self).__name__, self._key()))

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self.__slots__)
        return f"{type(self).__name__}({args})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (type(self), self._key())


_set = object.__setattr__


class Pid(_Record):
    """An Erlang process identifier: ``<node, id, serial, creation>``."""

    __slots__ = ("node", "id", "serial", "creation")
    node: Atom
    id: int
    serial: int
    creation: int

    def __init__(self, node: str, id: int, serial: int = 0, creation: int = 0) -> None:
        _set(self, "node", node if type(node) is Atom else Atom(node))
        _set(self, "id", id)
        _set(self, "serial", serial)
        _set(self, "creation", creation)

    # Pids and refs are the keys of the runtime's tables: spelled out, not the generic _key()
    def __eq__(self, other: object) -> bool:
        if type(other) is not Pid:
            return NotImplemented
        return (
            self.id == other.id
            and self.serial == other.serial
            and self.node == other.node
            and self.creation == other.creation
        )

    def __hash__(self) -> int:
        return hash(("Pid", (self.node, self.id, self.serial, self.creation)))


class Port(_Record):
    """An Erlang port identifier."""

    __slots__ = ("node", "id", "creation")
    node: Atom
    id: int
    creation: int

    def __init__(self, node: str, id: int, creation: int = 0) -> None:
        _set(self, "node", node if type(node) is Atom else Atom(node))
        _set(self, "id", id)
        _set(self, "creation", creation)


class Reference(_Record):
    """An Erlang reference; ``ids`` holds 1 to 5 32-bit words, least significant first."""

    __slots__ = ("node", "creation", "ids")
    node: Atom
    creation: int
    ids: tuple[int, ...]

    def __init__(self, node: str, creation: int, ids: Iterable[int]) -> None:
        _set(self, "node", node if type(node) is Atom else Atom(node))
        _set(self, "creation", creation)
        _set(self, "ids", tuple(ids))

    def __eq__(self, other: object) -> bool:
        if type(other) is not Reference:
            return NotImplemented
        return self.ids == other.ids and self.node == other.node and self.creation == other.creation

    def __hash__(self) -> int:
        # the ids alone: unique among one node's refs, and a ref is hashed several times per
        # call (the runtime's tables); __eq__ still compares node and creation
        return hash(self.ids)



# Pid(...) and Reference(...) less __init__'s checks and conversions, through the slots' own
# setters: the runtime makes a pid or two refs per rpc, always from an Atom it holds
_new = object.__new__
_pid_node, _pid_id, _pid_serial, _pid_creation = (
    Pid.__dict__[n].__set__ for n in ("node", "id", "serial", "creation")
)
_ref_node, _ref_creation, _ref_ids = (Reference.__dict__[n].__set__ for n in ("node", "creation", "ids"))


def fast_pid(node: Atom, id: int, serial: int, creation: int) -> Pid:
    """``Pid(node, id, serial, creation)`` for a ``node`` that is an Atom already."""
    pid = _new(Pid)
    _pid_node(pid, node)
    _pid_id(pid, id)
    _pid_serial(pid, serial)
    _pid_creation(pid, creation)
    return pid


def fast_ref(node: Atom, creation: int, ids: tuple[int, ...]) -> Reference:
    """``Reference(node, creation, ids)`` for a ``node`` that is an Atom already and ``ids``
    a tuple."""
    ref = _new(Reference)
    _ref_node(ref, node)
    _ref_creation(ref, creation)
    _ref_ids(ref, ids)
    return ref


class BitString(_Record):
    """A bitstring whose size is not a whole number of bytes.

    ``bits`` is how many high-order bits of the last byte of ``data`` belong to it (1..8),
    as in BIT_BINARY_EXT; the unused low bits are kept as zero.
    """

    __slots__ = ("data", "bits")
    data: bytes
    bits: int

    def __init__(self, data: bytes, bits: int) -> None:
        data = bytes(data)
        if not data:
            raise ValueError("BitString needs at least one byte")
        if not 1 <= bits <= 8:
            raise ValueError("BitString.bits must be 1..8")
        if bits != 8:
            data = data[:-1] + bytes([data[-1] & (0xFF << (8 - bits)) & 0xFF])
        _set(self, "data", data)
        _set(self, "bits", bits)

    @property
    def bit_size(self) -> int:
        return (len(self.data) - 1) * 8 + self.bits


class ImproperList(_Record):
    """A list whose tail is not ``[]``: ``[a, b | tail]``."""

    __slots__ = ("items", "tail")
    items: tuple[Any, ...]
    tail: Any

    def __init__(self, items: Iterable[Any], tail: Any) -> None:
        items = tuple(items)
        if not items:
            raise ValueError("ImproperList needs at least one element")
        _set(self, "items", items)
        _set(self, "tail", tail)


class Fun(_Record):
    """A local fun as NEW_FUN_EXT carries it; kept whole so it can be sent back."""

    __slots__ = ("module", "arity", "uniq", "index", "old_index", "old_uniq", "pid", "free_vars")
    module: Atom
    arity: int
    uniq: bytes
    index: int
    old_index: int
    old_uniq: int
    pid: Pid
    free_vars: tuple[Any, ...]

    def __init__(
        self,
        module: str,
        arity: int,
        uniq: bytes,
        index: int,
        old_index: int,
        old_uniq: int,
        pid: Pid,
        free_vars: Iterable[Any] = (),
    ) -> None:
        if len(uniq) != 16:
            raise ValueError("Fun.uniq must be 16 bytes")
        _set(self, "module", module if type(module) is Atom else Atom(module))
        _set(self, "arity", arity)
        _set(self, "uniq", bytes(uniq))
        _set(self, "index", index)
        _set(self, "old_index", old_index)
        _set(self, "old_uniq", old_uniq)
        _set(self, "pid", pid)
        _set(self, "free_vars", tuple(free_vars))


class ExportFun(_Record):
    """``fun Module:Function/Arity``."""

    __slots__ = ("module", "function", "arity")
    module: Atom
    function: Atom
    arity: int

    def __init__(self, module: str, function: str, arity: int) -> None:
        _set(self, "module", module if type(module) is Atom else Atom(module))
        _set(self, "function", function if type(function) is Atom else Atom(function))
        _set(self, "arity", arity)


class FrozenList(tuple):  # type: ignore[type-arg]
    """Hashable stand-in for a list used inside a map key; encodes back as a list.

    Equal to a ``list`` with the same items, never to a ``tuple``.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        if type(other) is FrozenList or type(other) is list:
            return tuple.__eq__(self, tuple(other))  # type: ignore[arg-type]
        return False

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("FrozenList", tuple(self)))

    def __repr__(self) -> str:
        return f"FrozenList({list(self)!r})"


class FrozenMap(Mapping["Any", "Any"]):  # strings: Any exists for the type checker only
    """Hashable stand-in for a map used inside a map key; encodes back as a map."""

    __slots__ = ("_d", "_h")
    _d: dict[Any, Any]
    _h: int | None

    def __init__(self, items: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = ()) -> None:
        object.__setattr__(self, "_d", dict(items))
        object.__setattr__(self, "_h", None)

    def __getitem__(self, key: Any) -> Any:
        return self._d[key]

    def __iter__(self) -> Iterator[Any]:
        return iter(self._d)

    def __len__(self) -> int:
        return len(self._d)

    def __hash__(self) -> int:
        h = self._h
        if h is None:
            h = hash(("FrozenMap", frozenset(self._d.items())))
            object.__setattr__(self, "_h", h)
        return h

    def __eq__(self, other: object) -> bool:
        if isinstance(other, (FrozenMap, dict)):
            return self._d == dict(other)
        return False

    def __setattr__(self, name: str, value: Any) -> None:
        raise AttributeError("FrozenMap is immutable")

    def __repr__(self) -> str:
        return f"FrozenMap({self._d!r})"


_pack_d = struct.Struct(">d").pack


class ErlFloatKey(float):
    """A float map key that never equals an integer, as in Erlang (``#{1 => a, 1.0 => b}``).

    Compared by bit pattern, since Erlang also keeps ``0.0`` and ``-0.0`` apart as keys.
    """

    __slots__ = ()

    def __eq__(self, other: object) -> bool:
        return type(other) is ErlFloatKey and _pack_d(self) == _pack_d(other)  # type: ignore[arg-type]

    def __ne__(self, other: object) -> bool:
        return not self.__eq__(other)

    def __hash__(self) -> int:
        return hash(("float", _pack_d(self)))

    def __repr__(self) -> str:
        return f"ErlFloatKey({float(self)!r})"


STRUCT_KEY = Atom("__struct__")
"""The map key that makes a map an Elixir struct; its value is the module atom."""

# erts keeps a map of up to 32 keys (MAP_SMALL_MAP_LIMIT in erl_map.h) as a flatmap sorted in
# term order, and encodes it in that order; bigger maps are hash maps in hash order.
_FLATMAP_MAX = 32


class Struct(FrozenMap):
    """An Elixir struct (``%URI{...}``): a map with an atom ``__struct__`` key.

    It is the whole map, ``__struct__`` included, so it equals the same ``dict`` and hashes
    as a ``FrozenMap`` would; immutable (Elixir updates make a new struct: :meth:`replace`)
    and usable as a map key (a ``Date`` often is). A decoded struct keeps erl's key order, so
    it encodes back to the bytes erl produced.
    """

    __slots__ = ()

    def __init__(
        self,
        module: str,
        fields: Mapping[Any, Any] | Iterable[tuple[Any, Any]] = (),
        /,
        **kw: Any,
    ) -> None:
        """``Struct("URI", {"host": b"a"})`` or ``Struct("Elixir.URI", host=b"a")``.

        An alias without the ``Elixir.`` prefix gets it when it starts with an uppercase letter
        (Elixir's rule for module aliases). Field names become atoms; with atom keys only and
        at most 32 of them the keys are sorted as erl sorts them, so the encoding is erl's.
        """
        d: dict[Any, Any] = {STRUCT_KEY: Atom(elixir_module(module))}
        for k, v in (*(fields.items() if isinstance(fields, Mapping) else fields), *kw.items()):
            if k == STRUCT_KEY:
                raise ValueError("give the struct's module as the first argument, not as __struct__")
            d[Atom(k) if type(k) is str else k] = v
        if len(d) <= _FLATMAP_MAX and all(type(k) is Atom for k in d):
            d = {k: d[k] for k in sorted(d)}  # atoms of one kind sort by their text
        object.__setattr__(self, "_d", d)
        object.__setattr__(self, "_h", None)

    @classmethod
    def _from_map(cls, d: dict[Any, Any]) -> Struct:
        """Wrap a decoded map (no copy, order kept): the decoders' constructor."""
        s = object.__new__(cls)
        object.__setattr__(s, "_d", d)
        object.__setattr__(s, "_h", None)
        return s

    @property
    def module(self) -> Atom:
        """The struct's module atom, e.g. ``Atom('Elixir.URI')``."""
        m: Atom = self._d[STRUCT_KEY]
        return m

    @property
    def alias(self) -> str:
        """The module as Elixir writes it: ``URI`` (``:mod`` style names stay as they are)."""
        m = str(self.module)
        return m[7:] if m.startswith("Elixir.") else m

    @property
    def fields(self) -> dict[Any, Any]:
        """The fields without ``__struct__`` (a new dict, in the struct's order)."""
        return {k: v for k, v in self._d.items() if k != STRUCT_KEY}

    def replace(self, **changes: Any) -> Struct:
        """A copy with some fields changed (``%{s | host: "b"}``); unknown fields are an error,
        as in Elixir's update syntax."""
        d = dict(self._d)
        for k, v in changes.items():
            if k == "__struct__" or k not in d:
                raise KeyError(f"{self.alias} has no field {k!r}")
            d[k] = v
        return Struct._from_map(d)

    def __repr__(self) -> str:
        return f"Struct({str(self.module)!r}, {self.fields!r})"

    def __reduce__(self) -> tuple[Any, ...]:
        return (Struct._from_map, (dict(self._d),))


def elixir_module(name: str) -> str:
    """``Enum`` -> ``Elixir.Enum``: an alias (uppercase first letter) gets Elixir's prefix."""
    if name[:1].isupper() and not name.startswith("Elixir."):
        return "Elixir." + name
    return name


def freeze(term: Any) -> Any:
    """Return a hashable equivalent of ``term`` (lists and maps become stand-ins)."""
    t = type(term)
    if t is list or t is FrozenList:
        return FrozenList(freeze(x) for x in term)
    if t is dict or t is FrozenMap:
        return FrozenMap((freeze(k), freeze(v)) for k, v in term.items())
    if t is Struct:
        return Struct._from_map({freeze(k): freeze(v) for k, v in term.items()})
    if t is tuple:
        return tuple(freeze(x) for x in term)
    if t is ImproperList:
        return ImproperList([freeze(x) for x in term.items], freeze(term.tail))
    if t is Fun:
        return Fun(
            term.module, term.arity, term.uniq, term.index, term.old_index, term.old_uniq,
            term.pid, [freeze(x) for x in term.free_vars],
        )
    return term
