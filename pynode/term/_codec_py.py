"""Pure-Python External Term Format codec.

This is the hot path of the node, so it trades a little elegance for speed: type dispatch by
exact type, precompiled structs, a single ``bytearray`` per encode, and an inlined tag switch
for the common tags when decoding. Lists and tuples whose elements are all of one fixed-size
kind (small ints, 32-bit ints, floats, equal-length binaries) are encoded and decoded in bulk,
a few C-level passes over the whole run instead of a Python step per element. The C twin
implements the same API.
"""

from __future__ import annotations

import struct
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from functools import lru_cache
from itertools import chain
from operator import countOf, itemgetter
from operator import index as _index

from .errors import DecodeError, EncodeError
from .types import STRUCT_KEY as _STRUCT_KEY
from .types import (
    Atom,
    BitString,
    ErlFloatKey,  # the codec's float map keys; re-exported
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
from .types import fast_pid as _fast_pid
from .types import fast_ref as _fast_ref

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Any


DEFAULT_MAX_DEPTH = 512
"""Deepest nesting decode accepts; deeper input is a DecodeError, never a RecursionError."""
DEFAULT_MAX_UNCOMPRESSED = 256 * 1024 * 1024
"""Largest uncompressed size a compressed term may claim."""

VERSION = 131

# tags
NEW_FLOAT_EXT = 70
BIT_BINARY_EXT = 77
COMPRESSED = 80
ATOM_CACHE_REF = 82
NEW_PID_EXT = 88
NEW_PORT_EXT = 89
NEWER_REFERENCE_EXT = 90
SMALL_INTEGER_EXT = 97
INTEGER_EXT = 98
FLOAT_EXT = 99
ATOM_EXT = 100
REFERENCE_EXT = 101
PORT_EXT = 102
PID_EXT = 103
SMALL_TUPLE_EXT = 104
LARGE_TUPLE_EXT = 105
NIL_EXT = 106
STRING_EXT = 107
LIST_EXT = 108
BINARY_EXT = 109
SMALL_BIG_EXT = 110
LARGE_BIG_EXT = 111
NEW_FUN_EXT = 112
EXPORT_EXT = 113
NEW_REFERENCE_EXT = 114
SMALL_ATOM_EXT = 115
MAP_EXT = 116
ATOM_UTF8_EXT = 118
SMALL_ATOM_UTF8_EXT = 119
V4_PORT_EXT = 120
LOCAL_EXT = 121

_S_B = struct.Struct(">B")
_S_H = struct.Struct(">H")
_S_I = struct.Struct(">I")
_S_i = struct.Struct(">i")
_S_d = struct.Struct(">d")
_S_BI = struct.Struct(">BI")
_S_Bi = struct.Struct(">Bi")
_S_Bd = struct.Struct(">Bd")
_S_BH = struct.Struct(">BH")
_S_BB = struct.Struct(">BB")
_S_II = struct.Struct(">II")
_S_III = struct.Struct(">III")
_S_QI = struct.Struct(">QI")
_S_BIB = struct.Struct(">BIB")
_S_BHB = struct.Struct(">BHB")

_pack_Bi = _S_Bi.pack
_pack_Bd = _S_Bd.pack
_pack_BI = _S_BI.pack
_pack_BH = _S_BH.pack
_pack_I = _S_I.pack
_unpack_H = _S_H.unpack_from
_unpack_I = _S_I.unpack_from
_unpack_i = _S_i.unpack_from
_unpack_d = _S_d.unpack_from
_unpack_II = _S_II.unpack_from
_unpack_III = _S_III.unpack_from

_SMALL_INTS = [bytes((SMALL_INTEGER_EXT, i)) for i in range(256)]
_NIL = bytes((NIL_EXT,))
_TRUE = b"\x77\x04true"
_FALSE = b"\x77\x05false"
_UNDEFINED = b"\x77\x09undefined"
_VERSION_BYTE = bytes((VERSION,))

# Runs: lists and tuples of at least _RUN_MIN elements of one fixed-size kind go in bulk.
_RUN_MIN = 8
_RUN_CHUNK = 256  # values per struct in a run, so that the compiled formats stay small
_REF_IDS = [struct.Struct(f">{n + 1}I").unpack_from for n in range(6)]  # creation + n ids


@lru_cache(maxsize=64)
def _run_struct(elem: str, k: int) -> struct.Struct:
    """``k`` elements of struct format ``elem`` in a row, e.g. ``>xixixi`` (x: the tag byte)."""
    return struct.Struct(">" + elem * k)


# ---------------------------------------------------------------------------------------------
# encoding

_atom_cache: dict[str, bytes] = {}
_ATOM_CACHE_MAX = 8192


def _atom_bytes(a: str) -> bytes:
    b = _atom_cache.get(a)
    if b is not None:
        return b
    raw = a.encode("utf-8")
    if len(a) > 255:
        raise EncodeError(f"atom too long ({len(a)} characters, the limit is 255): {a[:40]!r}...")
    n = len(raw)
    b = (bytes((SMALL_ATOM_UTF8_EXT, n)) if n < 256 else _pack_BH(ATOM_UTF8_EXT, n)) + raw
    if len(_atom_cache) >= _ATOM_CACHE_MAX:
        _atom_cache.clear()
    _atom_cache[a] = b
    return b


def _enc_int(x: int, out: bytearray) -> None:
    if 0 <= x < 256:
        out += _SMALL_INTS[x]
    elif -2147483648 <= x <= 2147483647:
        out += _pack_Bi(INTEGER_EXT, x)
    else:
        sign = 0
        if x < 0:
            sign = 1
            x = -x
        n = (x.bit_length() + 7) >> 3
        if n < 256:
            out += bytes((SMALL_BIG_EXT, n, sign))
        else:
            out += _pack_BI(LARGE_BIG_EXT, n)
            out.append(sign)
        out += x.to_bytes(n, "little")


def _enc_node(node: str, out: bytearray) -> None:
    out += _atom_bytes(node)


def _enc_pid(p: Pid, out: bytearray) -> None:
    out.append(NEW_PID_EXT)
    out += _atom_bytes(p.node)
    _pid_fields(p, out)


def _pid_fields(p: Pid, out: bytearray) -> None:
    try:
        out += _S_III.pack(p.id, p.serial, p.creation)
    except struct.error:
        raise EncodeError(f"pid fields out of range: {p!r}") from None


def _enc_port(p: Port, out: bytearray) -> None:
    # OTP 26+ always writes V4_PORT_EXT (64-bit ids); OTP 24+ reads it
    out.append(V4_PORT_EXT)
    out += _atom_bytes(p.node)
    _port_fields(p, out)


def _port_fields(p: Port, out: bytearray) -> None:
    try:
        out += _S_QI.pack(p.id, p.creation)
    except struct.error:
        raise EncodeError(f"port fields out of range: {p!r}") from None


def _enc_ref(r: Reference, out: bytearray) -> None:
    _ref_head(r, out)
    out += _atom_bytes(r.node)
    _ref_fields(r, out)


def _ref_head(r: Reference, out: bytearray) -> None:
    n = len(r.ids)
    if not 1 <= n <= 5:
        raise EncodeError(f"a reference has 1 to 5 ids, not {n}: {r!r}")
    out += _pack_BH(NEWER_REFERENCE_EXT, n)


def _ref_fields(r: Reference, out: bytearray) -> None:
    try:
        out += struct.pack(f">{len(r.ids) + 1}I", r.creation, *r.ids)
    except struct.error:
        raise EncodeError(f"reference fields out of range: {r!r}") from None


def _enc_float(x: float, out: bytearray) -> None:
    if x - x != 0.0:
        raise EncodeError(f"Erlang has no float {x!r}")
    out += _pack_Bd(NEW_FLOAT_EXT, x)


def _enc_binary(b: bytes | bytearray | memoryview, out: bytearray) -> None:
    if type(b) is memoryview:
        b = b.cast("B") if b.format != "B" or b.ndim != 1 else b
    out += _pack_BI(BINARY_EXT, len(b))
    out += b


# Large binaries are not copied into ``out`` (and then copied again by ``bytes(out)``): what
# ``out`` holds so far and the binary are set aside here under ``id(out)``, and the function
# that made ``out`` (encode, _enc_fun) joins the parts once at the end. It always pops its
# entry, on errors too, so an id is never found again after its buffer is gone.
_BIG_BINARY = 1 << 16
_spilled: dict[int, list[bytes]] = {}


def _spill(b: bytes, out: bytearray) -> None:
    parts = _spilled.get(id(out))
    if parts is None:
        parts = _spilled[id(out)] = []
    parts.append(bytes(out))
    parts.append(b)
    out.clear()


def _enc_list(lst: list[Any] | FrozenList, out: bytearray, depth: int) -> None:
    n = len(lst)
    if n == 0:
        out.append(NIL_EXT)
        return
    if n < 65536 and type(lst[0]) is int:
        try:
            raw = bytes(lst)
        except (TypeError, ValueError):
            pass
        else:
            # bytes() also takes bools and __index__ objects: only plain ints become a string
            if countOf(map(type, lst), int) == n:
                out += _pack_BH(STRING_EXT, n)
                out += raw
                return
    out += _pack_BI(LIST_EXT, n)
    if n < _RUN_MIN or not _enc_run(lst, n, out):
        _enc_items(lst, out, depth)
    out.append(NIL_EXT)


_SMALL_SET = frozenset(range(256))


def _enc_run(items: Sequence[Any], n: int, out: bytearray) -> bool:
    """Encode ``n`` elements that all have one type in bulk, if that type allows it.

    Returns False, having written nothing, when it does not: mixed types, a mix of small and
    large ints, a NaN or infinity (left for the element loop to reject), unequal binaries...
    """
    t = type(items[0])
    if t is not int and t is not float and t is not bytes and t is not Atom:
        return False
    if type(items[-1]) is not t:  # a cheap early no for records and other mixed tuples
        return False
    if t is int and not -2147483648 <= items[0] <= 2147483647:
        return False  # bignums: one by one
    # exact types only: a bool among ints is an atom, an IntEnum takes the general path
    if countOf(map(type, items), t) != n:
        return False
    if t is int:
        try:
            raw = bytes(items)
        except ValueError:
            pass
        else:  # all in 0..255: SMALL_INTEGER_EXT, value; interleaved by two slice stores
            chunk = bytearray(2 * n)
            chunk[0::2] = b"a" * n
            chunk[1::2] = raw
            out += chunk
            return True
        if not _SMALL_SET.isdisjoint(items):
            return False  # some small, some not: one tag each, left to the element loop
        try:
            out += _pack_run(items, n, "xi", 5, b"b")
        except struct.error:
            return False  # beyond 32 bits: bignums
        return True
    if t is float:
        s = sum(items)
        if s - s != 0.0:  # a NaN or an infinity among them (or just a sum that overflows)
            return False
        out += _pack_run(items, n, "xd", 9, b"F")
        return True
    if t is bytes:
        size = len(items[0])
        if size >= _BIG_BINARY or countOf(map(len, items), size) != n:
            return False
        head = _pack_BI(BINARY_EXT, size)  # the same header before each: a join
        out += head
        out += head.join(items)
        return True
    try:  # atoms: their cached encodings, when all are cached (else a None fails the join)
        out += b"".join(map(_atom_cache.get, items))  # type: ignore[arg-type]
    except TypeError:
        return False
    return True


def _pack_run(items: Sequence[Any], n: int, elem: str, step: int, tag: bytes) -> bytearray:
    """``n`` elements of struct format ``elem`` (``step`` bytes), then their ``tag`` bytes."""
    chunk = bytearray(step * n)
    for i in range(0, n, _RUN_CHUNK):
        part = items[i : i + _RUN_CHUNK]
        _run_struct(elem, len(part)).pack_into(chunk, i * step, *part)
    chunk[0::step] = tag * n
    return chunk


def _enc_items(items: Any, out: bytearray, depth: int) -> None:
    # The common types are inlined here, the rest go through _enc (same bytes either way).
    for x in items:
        t = type(x)
        if t is int:
            if 0 <= x < 256:
                out += _SMALL_INTS[x]
            elif -2147483648 <= x <= 2147483647:
                out += _pack_Bi(INTEGER_EXT, x)
            else:
                _enc_int(x, out)
        elif t is Atom:
            b = _atom_cache.get(x)
            out += b if b is not None else _atom_bytes(x)
        elif t is bytes:
            out += _pack_BI(BINARY_EXT, len(x))
            if len(x) < _BIG_BINARY:
                out += x
            else:
                _spill(x, out)
        elif t is str:
            b = x.encode("utf-8", "surrogatepass")
            out += _pack_BI(BINARY_EXT, len(b))
            if len(b) < _BIG_BINARY:
                out += b
            else:
                _spill(b, out)
        elif t is float:
            if x - x != 0.0:
                raise EncodeError(f"Erlang has no float {x!r}")
            out += _pack_Bd(NEW_FLOAT_EXT, x)
        elif t is list:
            if depth <= 0:
                raise EncodeError("term nested too deeply")
            _enc_list(x, out, depth - 1)
        else:
            _enc(x, out, depth)


def _enc(x: Any, out: bytearray, depth: int) -> None:
    t = type(x)
    if t is int:
        _enc_int(x, out)
    elif t is Atom:
        b = _atom_cache.get(x)
        out += b if b is not None else _atom_bytes(x)
    elif t is tuple:
        if depth <= 0:
            raise EncodeError("term nested too deeply")
        n = len(x)
        if n < 256:
            out.append(SMALL_TUPLE_EXT)
            out.append(n)
        else:
            out += _pack_BI(LARGE_TUPLE_EXT, n)
        if n < _RUN_MIN or not _enc_run(x, n, out):
            _enc_items(x, out, depth - 1)
    elif t is list:
        if depth <= 0:
            raise EncodeError("term nested too deeply")
        _enc_list(x, out, depth - 1)
    elif t is bytes:
        out += _pack_BI(BINARY_EXT, len(x))
        if len(x) < _BIG_BINARY:
            out += x
        else:
            _spill(x, out)
    elif t is str:
        b = x.encode("utf-8", "surrogatepass")
        out += _pack_BI(BINARY_EXT, len(b))
        if len(b) < _BIG_BINARY:
            out += b
        else:
            _spill(b, out)
    elif t is float:
        if x - x != 0.0:
            raise EncodeError(f"Erlang has no float {x!r}")
        out += _pack_Bd(NEW_FLOAT_EXT, x)
    elif t is dict:
        if depth <= 0:
            raise EncodeError("term nested too deeply")
        out += _pack_BI(MAP_EXT, len(x))
        # key, value, key, value...: through the element loop, with its inlined types
        _enc_items(_chain(x.items()), out, depth - 1)
    elif t is bool:
        out += _TRUE if x else _FALSE
    elif x is None:
        out += _UNDEFINED
    elif t is Pid:
        _enc_pid(x, out)
    elif t is Reference:
        _enc_ref(x, out)
    elif t is bytearray:
        out += _pack_BI(BINARY_EXT, len(x))
        out += x
    else:
        _enc_other(x, t, out, depth)


_chain = chain.from_iterable


def _enc_other(x: Any, t: type, out: bytearray, depth: int) -> None:
    if t is Port:
        _enc_port(x, out)
    elif t is ImproperList:
        if depth <= 0:
            raise EncodeError("term nested too deeply")
        out += _pack_BI(LIST_EXT, len(x.items))
        _enc_items(x.items, out, depth - 1)
        _enc(x.tail, out, depth - 1)
    elif t is BitString:
        out += _S_BIB.pack(BIT_BINARY_EXT, len(x.data), x.bits)
        out += x.data
    elif t is FrozenList:
        if depth <= 0:
            raise EncodeError("term nested too deeply")
        _enc_list(x, out, depth - 1)
    elif t is FrozenMap:
        _enc(dict(x.items()), out, depth)
    elif t is Struct:
        _enc(x._d, out, depth)  # its own order: a decoded struct encodes as erl encoded it
    elif t is ExportFun:
        out.append(EXPORT_EXT)
        out += _atom_bytes(x.module)
        out += _atom_bytes(x.function)
        _enc_int(x.arity, out)
    elif t is Fun:
        _enc_fun(x, out, depth)
    elif t is memoryview:
        _enc_binary(x, out)
    # subclasses of the builtins (IntEnum, str enums, NamedTuple, OrderedDict, ...)
    elif isinstance(x, bool):
        out += _TRUE if x else _FALSE
    elif isinstance(x, Atom):
        out += _atom_bytes(x)
    elif isinstance(x, int):
        _enc_int(int(x), out)
    elif isinstance(x, float):
        _enc_float(float(x), out)
    elif isinstance(x, str):
        _enc(str(x), out, depth)
    elif isinstance(x, (bytes, bytearray)):
        _enc_binary(bytes(x), out)
    elif isinstance(x, tuple):
        _enc(tuple(x), out, depth)
    elif isinstance(x, list):
        _enc(list(x), out, depth)
    elif isinstance(x, dict):
        _enc(dict(x), out, depth)
    else:
        raise EncodeError(f"cannot encode {t.__name__} object as an Erlang term: {x!r:.80}")


def _enc_fun(f: Fun, out: bytearray, depth: int) -> None:
    body = bytearray()
    body.append(f.arity)
    body += f.uniq
    body += _S_II.pack(f.index, len(f.free_vars))
    body += _atom_bytes(f.module)
    _enc_int(f.old_index, body)
    _enc_int(f.old_uniq, body)
    _enc_pid(f.pid, body)
    try:
        _enc_items(f.free_vars, body, depth - 1)
    finally:  # body is a buffer of its own: collect what was spilled from it
        spilled = _spilled.pop(id(body), None) if _spilled else None
    data = body if spilled is None else b"".join([*spilled, body])
    out.append(NEW_FUN_EXT)
    out += _pack_I(len(data) + 4)
    out += data


def _encode_parts(term: Any, versioned: bool, max_depth: int = 10_000) -> list[bytes]:
    """``term``'s encoding as parts whose concatenation it is: a binary of _BIG_BINARY bytes
    or more is a part of its own (not copied), between the bytes before and after it."""
    out = bytearray()
    if versioned:
        out.append(VERSION)
    try:
        _enc(term, out, max_depth)
    except RecursionError:
        raise EncodeError("term nested too deeply for the Python stack") from None
    finally:
        spilled = _spilled.pop(id(out), None) if _spilled else None
    if spilled is None:
        return [bytes(out)]
    if out:
        spilled.append(bytes(out))
    return spilled


def encode(
    term: Any, *, compressed: bool | int = False, versioned: bool = True, max_depth: int = 10_000
) -> bytes:
    """Encode ``term`` as external term format bytes (with the 131 version byte by default).

    ``compressed`` is True for zlib level 6 or a level 0-9, like term_to_binary's option;
    erl stores the compressed form only when it is smaller, and so do we.
    """
    parts = _encode_parts(term, versioned, max_depth)
    data = parts[0] if len(parts) == 1 else b"".join(parts)
    if compressed is not False:
        level = 6 if compressed is True else int(compressed)
        start = 1 if versioned else 0
        raw = memoryview(data)[start:]
        z = zlib.compress(raw, level)
        if len(z) + 5 < len(raw):
            head = _VERSION_BYTE if versioned else b""
            return head + _pack_BI(COMPRESSED, len(raw)) + z
    return data


# ---------------------------------------------------------------------------------------------
# decoding

_atoms: dict[bytes, Any] = {b"true": True, b"false": False}
_ATOMS_MAX = 65536


def _mk_atom(raw: bytes, pos: int, latin1: bool = False) -> Any:
    # the cache holds UTF-8 readings: a Latin-1 atom may use it only when it is ASCII
    a = _atoms.get(raw) if not latin1 or raw.isascii() else None
    if a is not None:
        return a
    try:
        text = raw.decode("latin-1") if latin1 else raw.decode("utf-8")
    except UnicodeDecodeError:
        raise DecodeError("atom is not valid UTF-8", pos) from None
    if len(text) > 255:
        raise DecodeError(f"atom longer than 255 characters ({len(text)})", pos)
    if text == "true":
        a = True
    elif text == "false":
        a = False
    else:
        a = Atom(text)
    if not latin1:
        if len(_atoms) >= _ATOMS_MAX:
            _atoms.clear()
            _atoms[b"true"] = True
            _atoms[b"false"] = False
        _atoms[raw] = a
    return a


class _Decoder:
    """Holds the per-call options; the recursion itself lives in ``dec``."""

    __slots__ = ("buf", "end", "atom_cache", "max_uncompressed")

    def __init__(self, buf: Any, atom_cache: Sequence[Any] | None, max_uncompressed: int) -> None:
        self.buf = buf
        self.end = len(buf)
        self.atom_cache = atom_cache
        self.max_uncompressed = max_uncompressed


def _truncated(pos: int) -> DecodeError:
    return DecodeError("unexpected end of input", pos)


_PID_CACHE_MAX = 4096
_pid_cache: dict[bytes, Pid] = {}
"""Decoded pids by their encoding: a node hears from the same few processes over and over."""


def _dec(d: _Decoder, pos: int, depth: int) -> tuple[Any, int]:
    buf = d.buf
    end = d.end
    if pos >= end:
        raise _truncated(pos)
    tag = buf[pos]
    pos += 1
    if tag == SMALL_INTEGER_EXT:
        if pos >= end:
            raise _truncated(pos)
        return buf[pos], pos + 1
    if tag == SMALL_ATOM_UTF8_EXT:
        if pos >= end:
            raise _truncated(pos)
        n = buf[pos]
        p2 = pos + 1 + n
        if p2 > end:
            raise _truncated(pos)
        raw = bytes(buf[pos + 1 : p2])
        a = _atoms.get(raw)
        if a is None:
            a = _mk_atom(raw, pos)
        return a, p2
    if tag == BINARY_EXT:
        if pos + 4 > end:
            raise _truncated(pos)
        (n,) = _unpack_I(buf, pos)
        p2 = pos + 4 + n
        if p2 > end:
            raise DecodeError(f"binary of {n} bytes is longer than the input", pos)
        return bytes(buf[pos + 4 : p2]), p2
    if tag == SMALL_TUPLE_EXT:
        if pos >= end:
            raise _truncated(pos)
        n = buf[pos]
        pos += 1
        if depth <= 0:
            raise DecodeError("term nested too deeply", pos)
        if n > end - pos:
            raise DecodeError(f"tuple of {n} elements is longer than the input", pos)
        depth -= 1
        if n >= _RUN_MIN:
            items, pos = _dec_items(d, pos, n, depth)
            return tuple(items), pos
        # the usual small tuple ({ok, X}, {'$gen_call', From, Req}): a lighter loop
        items = []
        append = items.append
        for _ in range(n):
            t = buf[pos] if pos < end else -1
            if t == SMALL_INTEGER_EXT:
                if pos + 1 < end:
                    append(buf[pos + 1])
                    pos += 2
                    continue
            elif t == SMALL_ATOM_UTF8_EXT:
                if pos + 1 < end:
                    p2 = pos + 2 + buf[pos + 1]
                    a = _atoms.get(bytes(buf[pos + 2 : p2])) if p2 <= end else None
                    if a is not None:
                        append(a)
                        pos = p2
                        continue
            v, pos = _dec(d, pos, depth)
            append(v)
        return tuple(items), pos
    if tag == NIL_EXT:
        return [], pos
    if tag == INTEGER_EXT:
        if pos + 4 > end:
            raise _truncated(pos)
        return _unpack_i(buf, pos)[0], pos + 4
    if tag == NEW_FLOAT_EXT:
        if pos + 8 > end:
            raise _truncated(pos)
        f = _unpack_d(buf, pos)[0]
        if f - f:  # NaN or an infinity: erts refuses them (binary_to_term badarg)
            raise DecodeError("NEW_FLOAT_EXT is not a finite float", pos)
        return f, pos + 8
    if tag == LIST_EXT:
        if pos + 4 > end:
            raise _truncated(pos)
        (n,) = _unpack_I(buf, pos)
        pos += 4
        if depth <= 0:
            raise DecodeError("term nested too deeply", pos)
        if n >= end - pos:
            raise DecodeError(f"list of {n} elements is longer than the input", pos)
        depth -= 1
        if n >= _RUN_MIN:
            items, pos = _dec_items(d, pos, n, depth)
        elif n == 1:  # [X] (and [[...]]) is common enough to skip the loop
            v, pos = _dec(d, pos, depth)
            items = [v]
        else:  # a short list: the same lighter loop as small tuples
            items = []
            append = items.append
            for _ in range(n):
                t = buf[pos] if pos < end else -1
                if t == SMALL_INTEGER_EXT:
                    if pos + 1 < end:
                        append(buf[pos + 1])
                        pos += 2
                        continue
                elif t == SMALL_ATOM_UTF8_EXT:
                    if pos + 1 < end:
                        p2 = pos + 2 + buf[pos + 1]
                        a = _atoms.get(bytes(buf[pos + 2 : p2])) if p2 <= end else None
                        if a is not None:
                            append(a)
                            pos = p2
                            continue
                v, pos = _dec(d, pos, depth)
                append(v)
        if pos < end and buf[pos] == NIL_EXT:
            return items, pos + 1
        tail, pos = _dec(d, pos, depth)
        if tail == [] and type(tail) is list:  # pragma: no cover - NIL handled above
            return items, pos
        if not items:  # a LIST_EXT of no elements: erts reads it as its tail alone
            return tail, pos
        return ImproperList(items, tail), pos
    if tag == STRING_EXT:
        if pos + 2 > end:
            raise _truncated(pos)
        (n,) = _unpack_H(buf, pos)
        p2 = pos + 2 + n
        if p2 > end:
            raise DecodeError(f"string of {n} bytes is longer than the input", pos)
        return list(buf[pos + 2 : p2]), p2
    if tag == MAP_EXT:
        if pos + 4 > end:
            raise _truncated(pos)
        (n,) = _unpack_I(buf, pos)
        pos += 4
        if depth <= 0:
            raise DecodeError("term nested too deeply", pos)
        if 2 * n > end - pos:
            raise DecodeError(f"map of {n} pairs is longer than the input", pos)
        # keys and values alternate: decode them as one sequence, then pair them up
        items, pos = _dec_items(d, pos, 2 * n, depth - 1)
        m = _map_of(items, n, pos)
        if _STRUCT_KEY in m and type(m[_STRUCT_KEY]) is Atom:  # an Elixir struct
            return _struct_of(m), pos
        return m, pos
    if tag == NEW_PID_EXT and pos + 1 < end and buf[pos] == SMALL_ATOM_UTF8_EXT:
        p2 = pos + 14 + buf[pos + 1]  # node atom (2 + length), then id, serial, creation
        if p2 <= end:
            key = bytes(buf[pos:p2])
            pid = _pid_cache.get(key)
            if pid is None:
                pid, p2 = _dec_rare(d, tag, pos, depth)
                if len(_pid_cache) >= _PID_CACHE_MAX:
                    _pid_cache.clear()
                _pid_cache[key] = pid
            return pid, p2
    if (
        tag == NEWER_REFERENCE_EXT
        and pos + 4 <= end
        and buf[pos] == 0
        and buf[pos + 2] == SMALL_ATOM_UTF8_EXT
    ):
        # the usual reference: 1 to 5 ids, a node atom already seen; else _dec_rare
        n = buf[pos + 1]
        p1 = pos + 4 + buf[pos + 3]
        p2 = p1 + 4 + 4 * n
        if 1 <= n <= 5 and p2 <= end:
            node = _atoms.get(bytes(buf[pos + 4 : p1]))
            if type(node) is Atom:
                vals = _REF_IDS[n](buf, p1)
                return Reference(node, vals[0], vals[1:]), p2
    if tag == ATOM_CACHE_REF:
        return _dec_cache_ref(d, pos)
    return _dec_rare(d, tag, pos, depth)


def _dec_items(d: _Decoder, pos: int, n: int, depth: int) -> tuple[list[Any], int]:
    """Decode ``n`` consecutive terms (list or tuple elements, or a map's keys and values)."""
    buf = d.buf
    end = d.end
    if n >= _RUN_MIN and pos < end:
        # A run of one fixed-size kind: one strided slice checks all the tags (and binary
        # lengths), then a few C-level calls decode the run. A run that breaks anywhere
        # falls through to the element loop, which starts over.
        t = buf[pos]
        if t == SMALL_INTEGER_EXT:
            p2 = pos + 2 * n
            if p2 <= end and buf[pos:p2:2] == b"a" * n:
                return list(buf[pos + 1 : p2 : 2]), p2
        elif t == INTEGER_EXT:
            p2 = pos + 5 * n
            if p2 <= end and buf[pos:p2:5] == b"b" * n:
                return _unpack_run(buf, pos, n, "xi", 5), p2
        elif t == NEW_FLOAT_EXT:
            p2 = pos + 9 * n
            if p2 <= end and buf[pos:p2:9] == b"F" * n:
                floats = _unpack_run(buf, pos, n, "xd", 9)
                if not any(f - f for f in floats):  # else the slow path says which is bad
                    return floats, p2
        elif t == BINARY_EXT and pos + 5 <= end:
            head = bytes(buf[pos : pos + 5])  # tag and length, the same in every element
            step = 5 + _unpack_I(head, 1)[0]
            p2 = pos + step * n
            if p2 <= end and all(
                buf[pos + k : p2 : step] == head[k : k + 1] * n for k in range(5)
            ):
                return _unpack_run(buf, pos, n, f"5x{step - 5}s", step), p2
    items: list[Any] = []
    append = items.append
    for _ in range(n):
        # the common tags inline; the rest, and any truncation, through _dec
        t = buf[pos] if pos < end else -1
        if t == SMALL_INTEGER_EXT:
            if pos + 1 < end:
                append(buf[pos + 1])
                pos += 2
                continue
        elif t == SMALL_ATOM_UTF8_EXT:
            if pos + 1 < end:
                p2 = pos + 2 + buf[pos + 1]
                a = _atoms.get(bytes(buf[pos + 2 : p2])) if p2 <= end else None
                if a is not None:
                    append(a)
                    pos = p2
                    continue
        elif t == INTEGER_EXT:
            if pos + 5 <= end:
                append(_unpack_i(buf, pos + 1)[0])
                pos += 5
                continue
        elif t == BINARY_EXT:
            if pos + 5 <= end:
                p2 = pos + 5 + _unpack_I(buf, pos + 1)[0]
                if p2 <= end:
                    append(bytes(buf[pos + 5 : p2]))
                    pos = p2
                    continue
        elif t == NEW_FLOAT_EXT:
            if pos + 9 <= end:
                f = _unpack_d(buf, pos + 1)[0]
                if not f - f:  # a non-finite float falls through to _dec's error
                    append(f)
                    pos += 9
                    continue
        v, pos = _dec(d, pos, depth)
        append(v)
    return items, pos


def _unpack_run(buf: Any, pos: int, n: int, elem: str, step: int) -> list[Any]:
    """The values of ``n`` elements of struct format ``elem`` (``step`` bytes each)."""
    values: list[Any] = []
    for i in range(0, n, _RUN_CHUNK):
        k = n - i if n - i < _RUN_CHUNK else _RUN_CHUNK
        values += _run_struct(elem, k).unpack_from(buf, pos + i * step)
    return values


def _map_of(items: list[Any], n: int, offset: int) -> dict[Any, Any]:
    """The map of the ``n`` keys and values that alternate in ``items``."""
    m: dict[Any, Any] = {}
    try:
        if n > 4:
            it = iter(items)
            m = dict(zip(it, it))  # noqa: B905 - one iterator over an even number of items
        else:  # dict(zip()) has a fixed cost that small maps notice
            for i in range(0, 2 * n, 2):
                m[items[i]] = items[i + 1]
    except TypeError:  # a list or map as a key: frozen
        items[0::2] = map(_hashable, items[0::2])
        it = iter(items)
        m = dict(zip(it, it))  # noqa: B905
    if len(m) == n:
        return m
    m = _distinct_map(items)
    if len(m) != n:
        _check_duplicate_keys(items, n, offset)
    return m


def _check_duplicate_keys(items: list[Any], n: int, offset: int) -> None:
    """Raise DecodeError when two keys are the same Erlang term (erts: badarg); keys Python
    still conflates ([1] and [1.0] inside keys) are told apart by their encoding."""
    if len({encode(k) for k in items[0::2]}) != n:
        raise DecodeError("map with duplicate keys", offset)


_struct_of = Struct._from_map


def _hashable(k: Any) -> Any:
    try:
        hash(k)
    except TypeError:
        return freeze(k)
    return k


def _distinct_map(items: list[Any]) -> dict[Any, Any]:
    """Keys Python treats as equal but Erlang does not (1, 1.0, true): keep them apart."""
    it = iter(items)
    return {_distinct_key(k): v for k, v in zip(it, it)}  # noqa: B905 - as in _map_of


def _distinct_key(k: Any) -> Any:
    if type(k) is bool:
        return Atom("true" if k else "false")
    if type(k) is float:
        return ErlFloatKey(k)
    try:
        hash(k)
    except TypeError:
        return freeze(k)
    return k


def _need(pos: int, n: int, end: int) -> None:
    if pos + n > end:
        raise _truncated(pos)


def _dec_atom_any(d: _Decoder, pos: int) -> tuple[Any, int]:
    """An atom in any of its encodings (node names, fun modules...)."""
    buf = d.buf
    end = d.end
    _need(pos, 1, end)
    tag = buf[pos]
    pos += 1
    if tag == SMALL_ATOM_UTF8_EXT or tag == SMALL_ATOM_EXT:
        _need(pos, 1, end)
        n = buf[pos]
        pos += 1
    elif tag == ATOM_UTF8_EXT or tag == ATOM_EXT:
        _need(pos, 2, end)
        (n,) = _unpack_H(buf, pos)
        pos += 2
    elif tag == ATOM_CACHE_REF:
        return _dec_cache_ref(d, pos)
    else:
        raise DecodeError(f"expected an atom, found tag {tag}", pos - 1)
    if pos + n > end:
        raise DecodeError(f"atom of {n} bytes is longer than the input", pos)
    a = _mk_atom(bytes(buf[pos : pos + n]), pos, tag in (SMALL_ATOM_EXT, ATOM_EXT))
    if a is True or a is False:
        a = Atom("true" if a else "false")
    return a, pos + n


def _dec_cache_ref(d: _Decoder, pos: int) -> tuple[Any, int]:
    _need(pos, 1, d.end)
    i = d.buf[pos]
    cache = d.atom_cache
    if cache is None:
        raise DecodeError("ATOM_CACHE_REF without an atom cache", pos - 1)
    if i >= len(cache) or cache[i] is None:
        raise DecodeError(f"ATOM_CACHE_REF {i} is not in the atom cache", pos - 1)
    a = cache[i]
    if type(a) is not Atom and type(a) is not bool:
        a = _mk_atom(str(a).encode("utf-8"), pos)
    return a, pos + 1


def _dec_int_any(d: _Decoder, pos: int, depth: int) -> tuple[int, int]:
    v, pos = _dec(d, pos, depth)
    if type(v) is not int:
        raise DecodeError("expected an integer", pos)
    return v, pos


def _dec_pid_tagged(d: _Decoder, pos: int, depth: int) -> tuple[Pid, int]:
    _need(pos, 1, d.end)
    tag = d.buf[pos]
    if tag != NEW_PID_EXT and tag != PID_EXT:
        raise DecodeError(f"expected a pid, found tag {tag}", pos)
    v, pos = _dec_rare(d, tag, pos + 1, depth)
    return v, pos


def _dec_rare(d: _Decoder, tag: int, pos: int, depth: int) -> tuple[Any, int]:
    buf = d.buf
    end = d.end
    if tag == ATOM_UTF8_EXT or tag == ATOM_EXT or tag == SMALL_ATOM_EXT:
        a, p2 = _dec_atom_any(d, pos - 1)
        if a == "true" or a == "false":
            return a == "true", p2
        return a, p2
    if tag == ATOM_CACHE_REF:
        return _dec_cache_ref(d, pos)
    if tag == SMALL_BIG_EXT or tag == LARGE_BIG_EXT:
        if tag == SMALL_BIG_EXT:
            _need(pos, 2, end)
            n = buf[pos]
            pos += 1
        else:
            _need(pos, 5, end)
            (n,) = _unpack_I(buf, pos)
            pos += 4
        sign = buf[pos]
        pos += 1
        if pos + n > end:
            raise DecodeError(f"bignum of {n} bytes is longer than the input", pos)
        v = int.from_bytes(buf[pos : pos + n], "little")
        return (-v if sign else v), pos + n
    if tag == LARGE_TUPLE_EXT:
        _need(pos, 4, end)
        (n,) = _unpack_I(buf, pos)
        pos += 4
        if depth <= 0:
            raise DecodeError("term nested too deeply", pos)
        if n > end - pos:
            raise DecodeError(f"tuple of {n} elements is longer than the input", pos)
        items, pos = _dec_items(d, pos, n, depth - 1)
        return tuple(items), pos
    if tag == NEW_PID_EXT or tag == PID_EXT:
        node, pos = _dec_atom_any(d, pos)
        if tag == NEW_PID_EXT:
            _need(pos, 12, end)
            i, s, c = _unpack_III(buf, pos)
            return Pid(node, i, s, c), pos + 12
        _need(pos, 9, end)
        i, s = _unpack_II(buf, pos)
        return Pid(node, i, s, buf[pos + 8]), pos + 9
    if tag == NEWER_REFERENCE_EXT or tag == NEW_REFERENCE_EXT:
        _need(pos, 2, end)
        (n,) = _unpack_H(buf, pos)
        if not 1 <= n <= 5:
            raise DecodeError(f"reference with {n} ids (1 to 5 allowed)", pos)
        node, pos = _dec_atom_any(d, pos + 2)
        if tag == NEWER_REFERENCE_EXT:
            _need(pos, 4 + 4 * n, end)
            vals = struct.unpack_from(f">{n + 1}I", buf, pos)
            return Reference(node, vals[0], vals[1:]), pos + 4 + 4 * n
        _need(pos, 1 + 4 * n, end)
        creation = buf[pos]
        ids = struct.unpack_from(f">{n}I", buf, pos + 1)
        return Reference(node, creation, ids), pos + 1 + 4 * n
    if tag == REFERENCE_EXT:
        node, pos = _dec_atom_any(d, pos)
        _need(pos, 5, end)
        (i,) = _unpack_I(buf, pos)
        return Reference(node, buf[pos + 4], (i,)), pos + 5
    if tag == NEW_PORT_EXT:
        node, pos = _dec_atom_any(d, pos)
        _need(pos, 8, end)
        i, c = _unpack_II(buf, pos)
        return Port(node, i, c), pos + 8
    if tag == V4_PORT_EXT:
        node, pos = _dec_atom_any(d, pos)
        _need(pos, 12, end)
        i, c = _S_QI.unpack_from(buf, pos)
        return Port(node, i, c), pos + 12
    if tag == PORT_EXT:
        node, pos = _dec_atom_any(d, pos)
        _need(pos, 5, end)
        (i,) = _unpack_I(buf, pos)
        return Port(node, i, buf[pos + 4]), pos + 5
    if tag == BIT_BINARY_EXT:
        _need(pos, 5, end)
        (n,) = _unpack_I(buf, pos)
        bits = buf[pos + 4]
        pos += 5
        if pos + n > end:
            raise DecodeError(f"bitstring of {n} bytes is longer than the input", pos)
        data = bytes(buf[pos : pos + n])
        if n == 0:
            if bits != 0 and bits != 8:
                raise DecodeError("empty bitstring with non-zero bit count", pos)
            return b"", pos
        if not 1 <= bits <= 8:
            raise DecodeError(f"bitstring with {bits} bits in its last byte", pos)
        if bits == 8:
            return data, pos + n
        return BitString(data, bits), pos + n
    if tag == FLOAT_EXT:
        _need(pos, 31, end)
        text = bytes(buf[pos : pos + 31]).split(b"\0", 1)[0]
        try:
            f = float(text.decode("ascii"))
        except (UnicodeDecodeError, ValueError):
            raise DecodeError(f"bad FLOAT_EXT text {text!r}", pos) from None
        if f - f:  # "nan", "inf": not a float erts would make or accept
            raise DecodeError(f"bad FLOAT_EXT text {text!r}", pos)
        return f, pos + 31
    if tag == EXPORT_EXT:
        m, pos = _dec_atom_any(d, pos)
        f, pos = _dec_atom_any(d, pos)
        a, pos = _dec_int_any(d, pos, depth)
        return ExportFun(m, f, a), pos
    if tag == NEW_FUN_EXT:
        start = pos
        _need(pos, 4 + 1 + 16 + 8, end)
        (size,) = _unpack_I(buf, pos)
        if size < 4 or start + size > end:
            raise DecodeError(f"fun of {size} bytes is longer than the input", pos)
        arity = buf[pos + 4]
        uniq = bytes(buf[pos + 5 : pos + 21])
        index, nfree = _unpack_II(buf, pos + 21)
        pos += 29
        if nfree > end - pos:
            raise DecodeError(f"fun with {nfree} free variables is longer than the input", pos)
        module, pos = _dec_atom_any(d, pos)
        old_index, pos = _dec_int_any(d, pos, depth)
        old_uniq, pos = _dec_int_any(d, pos, depth)
        pid, pos = _dec_pid_tagged(d, pos, depth)
        free = []
        for _ in range(nfree):
            v, pos = _dec(d, pos, depth - 1)
            free.append(v)
        if pos != start + size:
            raise DecodeError("fun size does not match its contents", start)
        return Fun(module, arity, uniq, index, old_index, old_uniq, pid, free), pos
    if tag == COMPRESSED:
        return _dec_compressed(d, pos, depth)
    if tag == LOCAL_EXT:
        raise DecodeError("LOCAL_EXT is node-local and cannot be decoded here", pos - 1)
    raise DecodeError(f"unknown tag {tag}", pos - 1)


def _dec_compressed(d: _Decoder, pos: int, depth: int) -> tuple[Any, int]:
    _need(pos, 4, d.end)
    (size,) = _unpack_I(d.buf, pos)
    if size > d.max_uncompressed:
        raise DecodeError(
            f"compressed term claims {size} bytes, over the limit of {d.max_uncompressed}", pos
        )
    z = zlib.decompressobj()
    try:
        raw = z.decompress(d.buf[pos + 4 : d.end], size + 1)
    except zlib.error as e:
        raise DecodeError(f"bad compressed data: {e}", pos) from None
    if len(raw) != size or not z.eof:
        raise DecodeError(
            f"compressed term is not the {size} bytes its header claims", pos
        )
    used = d.end - pos - 4 - len(z.unused_data)
    inner = _Decoder(raw, d.atom_cache, d.max_uncompressed)
    v, ipos = _dec(inner, 0, depth)
    if ipos != size:
        raise DecodeError("trailing bytes inside compressed term", pos)
    return v, pos + 4 + used


def decode_from(
    data: bytes | bytearray | memoryview,
    offset: int = 0,
    *,
    versioned: bool = True,
    atom_cache: Sequence[Any] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> tuple[Any, int]:
    """Decode one term starting at ``offset``; return it and the offset just past it.

    ``versioned`` expects the 131 version byte first (False for terms inside a dist header).
    ``atom_cache`` resolves ATOM_CACHE_REF indexes (the per-message list from the dist header).
    """
    buf = data if type(data) is bytes else memoryview(data).cast("B")
    d = _Decoder(buf, atom_cache, max_uncompressed)
    pos = offset
    if versioned:
        if pos >= d.end:
            raise _truncated(pos)
        if buf[pos] != VERSION:
            raise DecodeError(f"expected version byte 131, found {buf[pos]}", pos)
        pos += 1
    try:
        return _dec(d, pos, max_depth)
    except RecursionError:
        raise DecodeError("term nested too deeply for the Python stack", pos) from None
    except (IndexError, struct.error) as e:  # pragma: no cover - defensive
        raise DecodeError(f"malformed term: {e}", pos) from None


def decode(
    data: bytes | bytearray | memoryview,
    *,
    atom_cache: Sequence[Any] | None = None,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_uncompressed: int = DEFAULT_MAX_UNCOMPRESSED,
) -> Any:
    """Decode a whole buffer holding exactly one versioned term (binary_to_term/1)."""
    # decode_from(data, 0) inlined: a call with keywords costs as much as a small term
    buf = data if type(data) is bytes else memoryview(data).cast("B")
    n = len(buf)
    if n == 0:
        raise _truncated(0)
    if buf[0] != VERSION:
        raise DecodeError(f"expected version byte 131, found {buf[0]}", 0)
    try:
        v, pos = _dec(_Decoder(buf, atom_cache, max_uncompressed), 1, max_depth)
    except RecursionError:
        raise DecodeError("term nested too deeply for the Python stack", 1) from None
    except (IndexError, struct.error) as e:  # pragma: no cover - defensive
        raise DecodeError(f"malformed term: {e}", 1) from None
    if pos != n:
        raise DecodeError(f"{n - pos} trailing bytes after the term", pos)
    return v


# ---------------------------------------------------------------------------------------------
# distribution packets (erl_ext_dist.md "Distribution Header"; erts dist.c, external.c)

ATOM_CACHE_SIZE = 2048
"""Slots of a connection's atom cache (erts ERTS_ATOM_CACHE_SIZE: 8 segments of 256)."""

_PASS_THROUGH = 112
_DIST_HEADER = 68

# Headers without new entries, by their bytes: a getter of the cache slots they name, as a
# tuple. erl repeats the same header for messages of the same shape. What a header names
# depends on its bytes alone, so the memo is shared by all connections and never goes stale.
_header_keys: dict[bytes, Callable[[list[Any]], tuple[Any, ...]]] = {}
_HEADER_KEYS_MAX = 4096  # a bound like _ATOMS_MAX; a connection uses a few dozen shapes


def _check_entries(entries: Any) -> None:
    if type(entries) is not list:
        raise TypeError(f"cache_entries must be a list, not {type(entries).__name__}")
    if len(entries) != ATOM_CACHE_SIZE:
        raise ValueError(f"cache_entries must have {ATOM_CACHE_SIZE} slots, not {len(entries)}")


def _dist_input(data: Any, start: Any, end: Any) -> tuple[bytes, int, int, int]:
    """(buf, pos, end, shift) for ``data[start:end]``: offsets in buf are offsets in data
    minus shift (anything but bytes is copied, so no buffer export outlives the call)."""
    t = type(data)
    if t is bytes or t is bytearray:
        n = len(data)
    else:
        with memoryview(data) as m, m.cast("B") as view:
            n = len(view)
    if type(start) is not int:
        start = _index(start)
    if end is None:
        end = n
    elif type(end) is not int:
        end = _index(end)
    if start < 0 or start > end or end > n:
        raise ValueError(f"bounds {start}:{end} outside data of {n} bytes")
    if t is bytes:
        return data, start, end, 0
    if t is bytearray:
        return bytes(data[start:end]), 0, end - start, start
    with memoryview(data) as m, m.cast("B") as view:
        return bytes(view[start:end]), 0, end - start, start


def _shifted(e: DecodeError, shift: int) -> DecodeError:
    """The same error, its offset counted from the start of the caller's data."""
    if e.offset is None:
        return e
    message = str(e)[: -len(f" (at offset {e.offset})")]
    return DecodeError(message, e.offset + shift)


def _read_header(
    buf: bytes, pos: int, end: int, entries: list[Any]
) -> tuple[Sequence[Any] | None, int]:
    if pos >= end:
        raise DecodeError("distribution header truncated before the atom count", pos)
    count = buf[pos]
    start = pos
    pos += 1
    if count == 0:
        return None, pos
    flags_end = pos + count // 2 + 1
    plain_end = flags_end + count  # the header's end if no entry is new
    if plain_end <= end:
        getter = _header_keys.get(buf[start:plain_end])
        if getter is not None:
            refs = getter(entries)
            if None not in refs:
                return refs, plain_end
            # an empty slot: the full parse below says which
    if flags_end > end:
        raise DecodeError("distribution header truncated inside the atom cache flags", pos)
    flags = buf[pos:flags_end]
    pos = flags_end
    # The nibble after the last reference's carries LongAtoms in its low bit.
    long_atoms = (flags[count >> 1] >> ((count & 1) << 2)) & 1
    found: list[Any] = [None] * count
    keys = [0] * count
    new = False
    for i in range(count):
        nibble = flags[i >> 1] >> ((i & 1) << 2)
        if pos >= end:
            raise DecodeError("distribution header truncated inside the atom cache", pos)
        key = ((nibble & 7) << 8) | buf[pos]
        pos += 1
        if nibble & 8:  # NewCacheEntryFlag: the atom text follows
            if long_atoms:
                if end - pos < 2:
                    raise DecodeError("distribution header truncated inside the atom cache", pos)
                length = (buf[pos] << 8) | buf[pos + 1]
                pos += 2
            else:
                if pos >= end:
                    raise DecodeError("distribution header truncated inside the atom cache", pos)
                length = buf[pos]
                pos += 1
            if length > end - pos:
                raise DecodeError("distribution header truncated inside an atom", pos)
            atom = _mk_atom(buf[pos : pos + length], pos)
            pos += length
            entries[key] = atom
            new = True
        else:
            atom = entries[key]
            if atom is None:
                raise DecodeError(
                    f"atom cache reference to empty slot {key >> 8}:{key & 255}", pos - 1
                )
        found[i] = atom
        keys[i] = key
    if not new:
        if len(_header_keys) >= _HEADER_KEYS_MAX:
            _header_keys.clear()
        _header_keys[buf[start:pos]] = itemgetter(*keys) if count > 1 else _single(keys[0])
    return found, pos


def _single(key: int) -> Callable[[list[Any]], tuple[Any, ...]]:
    return lambda entries: (entries[key],)


def _dist_term(d: _Decoder, pos: int, versioned: bool) -> tuple[Any, int]:
    if versioned:
        if pos >= d.end:
            raise _truncated(pos)
        if d.buf[pos] != VERSION:
            raise DecodeError(f"expected version byte 131, found {d.buf[pos]}", pos)
        pos += 1
    try:
        return _dec(d, pos, DEFAULT_MAX_DEPTH)
    except RecursionError:
        raise DecodeError("term nested too deeply for the Python stack", pos) from None
    except (IndexError, struct.error) as e:  # pragma: no cover - defensive
        raise DecodeError(f"malformed term: {e}", pos) from None


def _dist_terms(
    buf: bytes, pos: int, end: int, refs: Any, versioned: bool, missing: Any
) -> tuple[Any, Any]:
    d = _Decoder(buf, refs, DEFAULT_MAX_UNCOMPRESSED)
    d.end = end
    control, pos = _dist_term(d, pos, versioned)
    if pos < end:
        payload, pos = _dist_term(d, pos, versioned)
        if pos != end:
            raise DecodeError(
                f"{end - pos} bytes after the payload of a distribution message", pos
            )
        return control, payload
    return control, missing


def _dist_packet(
    buf: bytes, pos: int, end: int, entries: list[Any], missing: Any
) -> tuple[Any, Any]:
    if pos >= end:
        raise _truncated(pos)
    first = buf[pos]
    if first == VERSION:
        if pos + 1 >= end:
            raise _truncated(pos + 1)
        if buf[pos + 1] != _DIST_HEADER:
            raise DecodeError(f"packet starts with 131 {buf[pos + 1]}, not 112 or 131 68", pos)
        refs, pos = _read_header(buf, pos + 2, end, entries)
        return _dist_terms(buf, pos, end, refs, False, missing)
    if first == _PASS_THROUGH:
        return _dist_terms(buf, pos + 1, end, None, True, missing)
    raise DecodeError(f"packet starts with {first}, not 112 or 131 68", pos)


def decode_dist_packet(
    data: bytes | bytearray | memoryview,
    cache_entries: list[Any],
    missing: Any,
    start: int = 0,
    end: int | None = None,
) -> tuple[Any, Any]:
    """Decode one distribution packet body ``data[start:end]`` (after the 4-byte length).

    The packet is ``112 | 131 Control | [131 Payload]`` (pass-through) or ``131 68 |
    AtomCacheHeader | Control | [Payload]``. New atom cache entries are stored in
    ``cache_entries`` (the connection's list of :data:`ATOM_CACHE_SIZE` slots, None for an
    empty one) and the terms' ATOM_CACHE_REFs resolved through the header. Returns
    ``(control, payload)``, ``missing`` as the payload when none follows. Raises DecodeError
    (offsets count from the start of ``data``) for anything else, trailing bytes included.
    """
    # Fast path, flattened (each Python call costs): a 131 68 packet in bytes or in place in
    # a bytearray, whose header has no new entries and is in the memo. Anything else, and
    # any error, takes the general path, which does the same and says what is wrong.
    t = type(data)
    if (
        (t is bytearray or t is bytes)
        and type(start) is int
        and type(cache_entries) is list
        and len(cache_entries) == ATOM_CACHE_SIZE
    ):
        n = len(data)
        stop = n if end is None else end
        if (
            type(stop) is int
            and 0 <= start
            and start + 3 <= stop <= n
            and data[start] == VERSION
            and data[start + 1] == _DIST_HEADER
        ):
            if t is bytes:
                buf, pos = data, start + 2
            else:
                buf, pos, stop = bytes(data[start:stop]), 2, stop - start
            count = buf[pos]
            refs: Any = None
            known = True
            if count:
                plain_end = pos + count // 2 + 2 + count
                getter = _header_keys.get(buf[pos:plain_end])  # type: ignore[arg-type]  # bytes here
                if getter is None:
                    known = False
                else:
                    refs = getter(cache_entries)
                    known = None not in refs
                pos = plain_end
            else:
                pos += 1
            if known and pos < stop:
                d = _Decoder(buf, refs, DEFAULT_MAX_UNCOMPRESSED)
                d.end = stop
                try:
                    control, pos = _dec(d, pos, DEFAULT_MAX_DEPTH)
                    if pos == stop:
                        return control, missing
                    payload, pos = _dec(d, pos, DEFAULT_MAX_DEPTH)
                    if pos == stop:
                        return control, payload
                except (DecodeError, RecursionError, IndexError, struct.error):
                    pass
    if type(cache_entries) is not list or len(cache_entries) != ATOM_CACHE_SIZE:
        _check_entries(cache_entries)
    buf, pos, stop, shift = _dist_input(data, start, end)
    if not shift:
        return _dist_packet(buf, pos, stop, cache_entries, missing)
    try:
        return _dist_packet(buf, pos, stop, cache_entries, missing)
    except DecodeError as e:
        raise _shifted(e, shift) from None


def _stream_input(data: Any, cache_entries: Any, start: int, max_packet: int) -> tuple[bytes | bytearray, int, int]:
    """The arguments of the functions that read a stream of packets, checked: the bytes,
    where to begin, the packet size limit."""
    if type(cache_entries) is not list or len(cache_entries) != ATOM_CACHE_SIZE:
        _check_entries(cache_entries)
    if type(data) is not bytes and type(data) is not bytearray:
        with memoryview(data) as m, m.cast("B") as view:
            data = bytes(view)
    pos = _index(start)
    if not 0 <= pos <= len(data):
        raise ValueError(f"bounds {pos}:{len(data)} outside data of {len(data)} bytes")
    return data, pos, _index(max_packet)


def decode_dist_sends(
    data: bytes | bytearray | memoryview,
    cache_entries: list[Any],
    missing: Any,
    start: int,
    max_packet: int,
    deliver: Callable[[Any, Any], Any],
    deliver_signal: Callable[[Any, Any], Any] | None = None,
    sinks: dict[Any, tuple[Any, ...]] | None = None,
) -> tuple[int, int, Any, Any]:
    """Decode whole packets (4-byte length, then a body as :func:`decode_dist_packet` takes)
    from ``data[start:]`` while each is a plain send (SEND, SEND_SENDER, REG_SEND) that
    ``deliver(to, payload)`` takes (returns true), or any other packet that
    ``deliver_signal(control, payload)`` takes, when given: one call for a whole read.

    A plain send whose recipient ``sinks`` has a queue for goes to that queue instead of
    ``deliver`` (a hook call per message is most of what delivery costs): a registered
    name's Atom maps to ``(deque, limit)``, a pid's ``id | serial << 32`` to ``(deque,
    limit, node, creation)``, taken for that node and creation only. The message is
    appended while ``len(deque) < limit``; else it goes to ``deliver``.

    Returns ``(pos, delivered, control, payload)``: it stops before a packet it leaves to the
    caller (incomplete, a tick, over ``max_packet``, a fragment), with ``control`` and
    ``payload`` both ``missing``, or after one it decoded but neither hook took, returned as
    ``control`` and ``payload``. ``pos`` is where the caller goes on. An exception (a bad
    packet, or from a hook) carries ``dist_pos`` and ``dist_delivered`` (packets taken before
    it): ``dist_pos`` is the failing packet's start, or its end when ``deliver_signal`` raised
    (the packet is consumed: a signal is never handed twice)."""
    data, pos, max_packet = _stream_input(data, cache_entries, start, max_packet)
    if sinks is not None and type(sinks) is not dict:
        raise TypeError("decode_dist_sends: sinks must be a dict or None")
    n = len(data)
    count = 0
    unpack = _S_I.unpack_from
    try:
        while n - pos > 4:
            (size,) = unpack(data, pos)
            end = pos + 4 + size
            if not (0 < size <= max_packet and end <= n):
                break
            first = data[pos + 4]
            if not (first == _PASS_THROUGH or (
                first == VERSION and size > 1 and data[pos + 5] == _DIST_HEADER
            )):
                break
            control, payload = decode_dist_packet(data, cache_entries, missing, pos + 4, end)
            # a plain send, shaped as the framing's from_term checks it: {2, _, To},
            # {22, From, To}, {6, From, _, ToName}
            to: Any = None
            if payload is not missing and type(control) is tuple:
                k = len(control)
                op = control[0] if k else None
                if type(op) is not int:
                    pass
                elif k == 3 and (op == 22 or op == 2) and type(control[2]) is Pid:
                    if op == 2 or type(control[1]) is Pid:
                        to = control[2]
                elif k == 4 and op == 6 and type(control[1]) is Pid and type(control[3]) is Atom:
                    to = control[3]
            if to is not None and sinks:
                queue = _sink_for(sinks, to)
                if queue is not None:
                    queue.append(payload)
                    count += 1
                    pos = end
                    continue
            if to is None or not deliver(to, payload):
                if deliver_signal is None:
                    return end, count, control, payload
                pos = end  # consumed, whatever the hook does
                if not deliver_signal(control, payload):
                    return end, count, control, payload
            count += 1
            pos = end
    except BaseException as e:  # where the caller goes on: no message is delivered twice
        try:
            e.dist_pos, e.dist_delivered = pos, count  # type: ignore[attr-defined]
        except AttributeError:  # an exception that takes no attributes
            pass
        raise
    return pos, count, missing, missing


def _sink_for(sinks: dict[Any, tuple[Any, ...]], to: Any) -> Any:
    """The deque ``sinks`` has for ``to`` while it takes one more message, else None."""
    if type(to) is Pid:
        i, serial = to.id, to.serial
        if not (type(i) is int and type(serial) is int and 0 <= i <= 0xFFFFFFFF and 0 <= serial <= 0xFFFFFFFF):
            return None
        entry = sinks.get(i | (serial << 32))
        if type(entry) is not tuple or len(entry) != 4:
            return None
        if entry[2] != to.node or entry[3] != to.creation:
            return None
    else:
        entry = sinks.get(to)
        if type(entry) is not tuple or len(entry) != 2:
            return None
    queue, limit = entry[0], entry[1]
    if type(queue) is not deque or type(limit) is not int or len(queue) >= limit:
        return None
    return queue


def make_pid(node: Atom, id: int, serial: int, creation: int) -> Pid:
    """A pid of the node's own, in one call (the runtime makes one per process, and per rpc
    it serves): ``node`` an Atom, the rest ints, not range-checked (encode checks them)."""
    if type(node) is not Atom:
        raise TypeError("make_pid: node must be an Atom")
    if not (isinstance(id, int) and isinstance(serial, int) and isinstance(creation, int)):
        raise TypeError("make_pid: id, serial and creation must be ints")
    return _fast_pid(node, id, serial, creation)


def make_ref(node: Atom, creation: int, counter: int) -> Reference:
    """A ref of the node's own from a counter, in erts' layout (18 bits, then 32, then 32):
    the runtime makes two per rpc."""
    if type(node) is not Atom:
        raise TypeError("make_ref: node must be an Atom")
    if not (isinstance(creation, int) and isinstance(counter, int)):
        raise TypeError("make_ref: creation and counter must be ints")
    return _fast_ref(
        node, creation, (counter & 0x3FFFF, (counter >> 18) & 0xFFFFFFFF, (counter >> 50) & 0xFFFFFFFF)
    )


# NewCacheEntryFlag is bit 3 of each half byte of a dist header's flags (the closing half
# byte, LongAtoms in bit 0, leaves it clear): 0x88 in every flags byte, for 1 to 129 bytes
_NEW_ENTRY_MASKS = [int.from_bytes(b"\x88" * n, "little") for n in range(130)]


def peek_dist_packets(
    data: bytes | bytearray | memoryview, cache_entries: list[Any], missing: Any, start: int, max_packet: int
) -> tuple[int, list[tuple[Any, Any]]] | None:
    """Decode the whole packets in ``data[start:]`` (4-byte length, then a body as
    :func:`decode_dist_packet` takes) without handing them anywhere: ``(pos, [(control,
    payload), ...])``, ``pos`` where an incomplete packet at the end (left out) begins, and
    ``payload`` ``missing`` where a packet has none. For a reader that recognises an answer
    it waits for and otherwise feeds the same bytes to the connection, which decodes them
    again: None when they hold a tick, a packet over ``max_packet``, one that is not 112 or
    131 68 (a fragment), or, after ``data``'s first packet, one whose header brings new atom
    cache entries, which could overwrite an entry an earlier packet reads (undecoded). A bad
    packet raises, as in :func:`decode_dist_packet`."""
    data, pos, max_packet = _stream_input(data, cache_entries, start, max_packet)
    n = len(data)
    got: list[tuple[Any, Any]] = []
    unpack = _S_I.unpack_from
    while n - pos >= 4:
        (size,) = unpack(data, pos)
        if size == 0 or size > max_packet:
            return None
        end = pos + 4 + size
        if end > n:
            break
        body = pos + 4
        first = data[body]
        if first == VERSION and size > 1 and data[body + 1] == _DIST_HEADER:
            if pos and size > 2 and data[body + 2]:  # a later packet's new entries?
                flags = body + 3 + data[body + 2] // 2 + 1
                if flags <= end and int.from_bytes(data[body + 3 : flags], "little") & _NEW_ENTRY_MASKS[flags - body - 3]:
                    return None
        elif first != _PASS_THROUGH:
            return None
        got.append(decode_dist_packet(data, cache_entries, missing, body, end))
        pos = end
    return pos, got


def peek_spawn_answer(
    cache_entries: list[Any], missing: Any, max_packet: int, req: Any, box: Any, found: list[Any],
    data: bytes | bytearray | memoryview,
) -> bool:
    """Whether ``data``, bytes read from a connection since everything fed to it, holds the
    answer to spawn request ``req`` from process ``box`` as erpc:call waits for it, or
    something else: the SPAWN_REPLY (31) with the monitor flag (2) and the new process's pid,
    then that monitor's exit, PAYLOAD_MONITOR_P_EXIT (28, the reason as payload) or
    MONITOR_P_EXIT (21); or a SPAWN_REPLY whose last element is an atom, the reason the spawn
    failed. True once it is known: ``found`` then gets ``(pos, pid, reason)`` for the answer
    (``pid`` None for a failed spawn, ``pos`` where the packets after it begin) or None for
    anything else: a packet that is not the answer's, one after it, or what
    :func:`peek_dist_packets` answers None for or raises on (the connection reads the bytes
    again and reports that). False while ``data`` holds the answer's beginning only. The
    data's packets are decoded from its start at each call (data is read a little at a
    time; the state is the bytes). A task that waits for its call's answer recognises it so
    without the connection's receive path, in one codec call per read."""
    if type(found) is not list:
        raise TypeError("peek_spawn_answer: found must be a list")
    _check_entries(cache_entries)
    max_packet = _index(max_packet)
    memoryview(data)  # (a TypeError for what is no bytes, as the C twin's)
    try:  # a bad packet is the connection's to report: it decodes the bytes again
        got = peek_dist_packets(data, cache_entries, missing, 0, max_packet)
    except Exception:
        got = None
    outcome: Any = None
    if got is not None:
        pos, packets = got
        pid: Any = None
        answer: Any = None
        for ctl, payload in packets:
            if answer is not None or type(ctl) is not tuple:
                answer = None
                break
            n = len(ctl)
            if pid is None:
                if n != 5 or ctl[0] != 31 or type(ctl[0]) is not int or payload is not missing:
                    break
                if ctl[1] != req or ctl[2] != box:
                    break
                if type(ctl[4]) is Atom:
                    answer = (pos, None, ctl[4])
                elif type(ctl[4]) is Pid and ctl[3] == 2 and type(ctl[3]) is int:
                    pid = ctl[4]
                else:
                    break
                continue
            if n == 4 and ctl[0] == 28 and type(ctl[0]) is int and payload is not missing:
                reason = payload
            elif n == 5 and ctl[0] == 21 and type(ctl[0]) is int and payload is missing:
                reason = ctl[4]
            else:
                break
            if ctl[1] != pid or ctl[2] != box or ctl[3] != req:
                break
            answer = (pos, pid, reason)
        else:
            if answer is None:
                return False  # its beginning, or nothing yet
        outcome = answer
    found.append(outcome)
    return True


def decode_dist_header(
    data: bytes | bytearray | memoryview, cache_entries: list[Any], offset: int = 0
) -> tuple[list[Any] | None, int]:
    """Parse ``NumberOfAtomCacheRefs | Flags | AtomCacheRefs`` at ``offset``.

    New entries are stored in ``cache_entries``; returns the list of atoms the message's
    ATOM_CACHE_REFs index (None when it has none) and the offset after the header.
    """
    _check_entries(cache_entries)
    buf, pos, stop, shift = _dist_input(data, offset, None)
    try:
        refs, pos = _read_header(buf, pos, stop, cache_entries)
    except DecodeError as e:
        raise _shifted(e, shift) from None
    return (None if refs is None else list(refs)), pos + shift


def decode_dist_body(
    data: bytes | bytearray | memoryview,
    refs: Sequence[Any] | None,
    missing: Any,
    start: int = 0,
    end: int | None = None,
) -> tuple[Any, Any]:
    """Decode ``Control | [Payload]`` (no version bytes) in ``data[start:end]``, resolving
    ATOM_CACHE_REFs through ``refs`` (from :func:`decode_dist_header`); the final step of a
    fragmented message. Returns ``(control, payload)`` like :func:`decode_dist_packet`."""
    buf, pos, stop, shift = _dist_input(data, start, end)
    try:
        return _dist_terms(buf, pos, stop, refs, False, missing)
    except DecodeError as e:
        raise _shifted(e, shift) from None


def encode_dist_packet(
    control: Any,
    payload: Any,
    missing: Any,
    pass_through: bool = False,
    atom_cache: list[Any] | None = None,
    parts: bool = False,
) -> bytes | list[bytes]:
    """One whole distribution packet, its 4-byte length included: ``131 68 0 | Control |
    [Payload]`` (a header without atom cache refs), or ``112 | 131 Control | [131 Payload]``
    with ``pass_through``; no payload when ``payload`` is ``missing``. With ``atom_cache``
    (the connection's 2048 outgoing slots) the control message's own atoms and the nodes of
    its own pids, refs and ports become refs in the header, and so do those on the payload's
    tuple spine (the payload, and two tuples down); the slots are set. With ``parts``, a
    packet that holds a binary of 64 KiB or more may be a list of parts, that binary one of
    them (not copied), the length in the first: their concatenation (which big binaries are
    kept apart, and so whether a list comes back, differs between the twins: this one also
    keeps a big str's UTF-8 apart)."""
    if atom_cache is not None:
        if pass_through:
            raise ValueError("a pass-through packet has no atom cache refs")
        return _encode_dist_cached(control, payload, missing, atom_cache, parts)
    body = _encode_parts(control, pass_through)
    apart = len(body) > 1
    if payload is not missing:
        pay = _encode_parts(payload, pass_through)
        apart = apart or len(pay) > 1
        body += pay
    head = _PASS_HEAD if pass_through else _DIST_HEAD
    return _dist_packet_out(head, body, parts and apart)


def _dist_packet_out(head: bytes | bytearray, body: list[bytes], parts: bool) -> bytes | list[bytes]:
    """``Length:4 | head | body...`` as one bytes object, or with ``parts`` as a list (the
    body has big binaries apart: the first part then carries the length and the head)."""
    size = len(head) + sum(map(len, body))
    if size > 0xFFFFFFFF:
        raise EncodeError(
            f"distribution packet of {size} bytes is too long for its 4-byte length"
        )
    if parts:
        return [b"".join((_pack_I(size), head, body[0])), *body[1:]]
    return b"".join((_pack_I(size), head, *body))


def _encode_dist_cached(
    control: Any, payload: Any, missing: Any, cache: list[Any], parts: bool
) -> bytes | list[bytes]:
    """encode_dist_packet with an atom cache (the C twin's encode_dist_packet_cached)."""
    if type(cache) is not list or len(cache) != ATOM_CACHE_SIZE:
        raise TypeError(f"atom_cache must be a list of {ATOM_CACHE_SIZE} slots")
    out = bytearray()
    refs: list[tuple[int, Any, bool]] = []  # (slot, atom, new) in ref order
    try:
        if type(control) is tuple and len(control) < 256:
            out.append(SMALL_TUPLE_EXT)
            out.append(len(control))
            for x in control:
                _enc_spine(x, out, refs, cache, 0, 9999)
        else:
            _enc(control, out, 10_000)
        if payload is not missing:
            _enc_spine(payload, out, refs, cache, _PAYLOAD_SPINE, 10_000)
    except RecursionError:
        raise EncodeError("term nested too deeply for the Python stack") from None
    finally:
        spilled = _spilled.pop(id(out), None) if _spilled else None
    head = bytearray((VERSION, _DIST_HEADER, len(refs)))
    if refs:
        flags = bytearray(len(refs) // 2 + 1)  # LongAtoms 0: every text here is under 256 bytes
        texts = bytearray()
        for i, (slot, atom, new) in enumerate(refs):
            half = (8 if new else 0) | slot >> 8
            flags[i // 2] |= half << 4 if i % 2 else half
            texts.append(slot & 0xFF)
            if new:
                raw = _atom_bytes(atom)[2:]
                texts.append(len(raw))
                texts += raw
        head += flags
        head += texts
    body = [bytes(out)] if spilled is None else [*spilled, bytes(out)] if out else spilled
    packet = _dist_packet_out(head, body, parts and spilled is not None)
    for slot, atom, new in refs:
        if new:
            cache[slot] = atom
    return packet


# the payload's tuples whose atoms go through the atom cache: ``{Pid, {tag, ...}}`` (_enc_spine)
_PAYLOAD_SPINE = 2


def _enc_spine(
    x: Any, out: bytearray, refs: list[tuple[int, Any, bool]], cache: list[Any], levels: int, depth: int
) -> None:
    """``x`` with its atoms, and the nodes of its pids, refs and ports, as refs where they
    stand on its tuple spine: ``x`` itself, and down ``levels`` tuples of at most 255
    elements; what else it nests is inline. The control message's elements take levels 0,
    the payload 2, as erl puts all of a message's atoms in the cache (the C twin's
    enc_spine)."""
    t = type(x)
    if t is Atom:
        _enc_atom_ref(x, out, refs, cache)
    elif t is Pid:
        out.append(NEW_PID_EXT)
        _enc_atom_ref(x.node, out, refs, cache)
        _pid_fields(x, out)
    elif t is Reference:
        _ref_head(x, out)
        _enc_atom_ref(x.node, out, refs, cache)
        _ref_fields(x, out)
    elif t is Port:
        out.append(V4_PORT_EXT)
        _enc_atom_ref(x.node, out, refs, cache)
        _port_fields(x, out)
    elif t is tuple and levels > 0 and len(x) < 256:
        out.append(SMALL_TUPLE_EXT)
        out.append(len(x))
        for y in x:
            _enc_spine(y, out, refs, cache, levels - 1, depth - 1)
    else:
        _enc(x, out, depth)


def _enc_atom_ref(a: Any, out: bytearray, refs: list[tuple[int, Any, bool]], cache: list[Any]) -> None:
    """``a`` as ATOM_CACHE_REF to one of this message's refs, or inline when its UTF-8 is
    256 bytes or more, its slot is another atom's in this message, or there are 255 refs."""
    inline = _atom_bytes(a)  # checks it, as encoding it inline would
    if inline[0] == SMALL_ATOM_UTF8_EXT:
        slot = hash(a) & (ATOM_CACHE_SIZE - 1)
        for i, (s, b, _) in enumerate(refs):
            if s == slot:
                if b == a:
                    out.append(ATOM_CACHE_REF)
                    out.append(i)
                    return
                break
        else:
            if len(refs) < _MAX_CACHE_REFS:
                cur = cache[slot]
                refs.append((slot, a, cur is None or cur != a))
                out.append(ATOM_CACHE_REF)
                out.append(len(refs) - 1)
                return
    out += inline


_MAX_CACHE_REFS = 255  # NumberOfAtomCacheRefs is one byte (ERTS_MAX_INTERNAL_ATOM_CACHE_ENTRIES)
_PASS_HEAD = bytes((_PASS_THROUGH,))
_DIST_HEAD = bytes((VERSION, _DIST_HEADER, 0))


__all__ = [
    "encode",
    "decode",
    "decode_from",
    "decode_dist_packet",
    "decode_dist_sends",
    "peek_dist_packets",
    "peek_spawn_answer",
    "make_pid",
    "make_ref",
    "decode_dist_header",
    "decode_dist_body",
    "encode_dist_packet",
    "ErlFloatKey",
]
