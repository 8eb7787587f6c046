"""The compiled codec against the pure-Python one: same bytes, same values, same failures.

tests/term/test_codec.py already runs every codec test against each implementation; these
tests compare the two directly, on generated terms and on damaged and random input.
"""

from __future__ import annotations

import gc
import math
import os
import random
import struct
import subprocess
import sys
import tracemalloc
import zlib
from collections import deque
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pynode.term as term
from pynode.term import (
    Atom,
    BitString,
    DecodeError,
    EncodeError,
    ErlFloatKey,
    Fun,
    ImproperList,
    Pid,
    Reference,
    freeze,
)
from pynode.term import _codec_py as P
from tests.strategies import terms

if "c" not in term.IMPLEMENTATIONS:  # pragma: no cover - depends on the build
    pytest.skip("pynode.term._ccodec is not built", allow_module_level=True)

C = term.IMPLEMENTATIONS["c"]


def _same(a: Any, b: Any) -> bool:
    """Equal *and* of the same types all the way down (True is not 1, 1.0 is not 1)."""
    if type(a) is not type(b):
        return False
    if type(a) in (list, tuple):
        return len(a) == len(b) and all(map(_same, a, b))
    if type(a) is dict:
        return len(a) == len(b) and all(
            _same(ka, kb) and _same(a[ka], b[kb]) for ka, kb in zip(a, b)  # noqa: B905
        )
    if type(a) is float:
        return struct.pack(">d", a) == struct.pack(">d", b)
    if type(a) is ImproperList:
        return _same(a.items, b.items) and _same(a.tail, b.tail)
    return bool(a == b)


def _outcome(f: Any, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    try:
        return ("ok", f(*args, **kwargs))
    except Exception as e:
        return ("error", type(e), e)


def _same_decode(data: bytes, *, values: bool = True, **kwargs: Any) -> None:
    """Both codecs decode ``data`` alike: equal values, or the same exception type."""
    p = _outcome(P.decode, data, **kwargs)
    c = _outcome(C.decode, data, **kwargs)
    assert p[0] == c[0], (data, p, c)
    if p[0] == "ok":
        if values:
            assert _same(p[1], c[1]), (data, p, c)
    else:
        assert p[1] is c[1], (data, p, c)
        if p[1] is DecodeError:
            assert c[2].offset is not None


# -- the module --------------------------------------------------------------------------------


def _fresh_python(code: str, **extra_env: str) -> str:
    """What ``code`` prints in a new interpreter, where nothing is imported yet (and the C
    twin is not turned off, unless ``extra_env`` says so)."""
    env = {k: v for k, v in os.environ.items() if k != "PYNODE_PURE_PYTHON"} | extra_env
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def test_the_twin_loads_without_the_pure_codec() -> None:
    """The C twin imports _codec_py only for a map with a duplicate key (its error message),
    so the pynode command starts without it; that first use still works."""
    code = (
        "import sys, pynode.term as t\n"
        "assert t.implementation == 'c'\n"
        "assert 'pynode.term._codec_py' not in sys.modules\n"
        "try:\n"
        "    t.decode(bytes([131, 116, 0, 0, 0, 2, 97, 1, 97, 1, 97, 1, 97, 2]))\n"
        "except t.DecodeError as e:\n"
        "    print(e)\n"
    )
    assert _fresh_python(code).strip() == "map with duplicate keys (at offset 14)"


@pytest.mark.parametrize("has", [(), ("ATOM_CACHE_SIZE",)], ids=["no constants", "no peek_dist_packets"])
def test_a_twin_built_from_older_sources_is_not_used(has: tuple[str, ...]) -> None:
    """One without ATOM_CACHE_SIZE (built before the twin defined its own constants), or
    without a function added since, would fail the package's import: the pure codec is used
    instead."""
    code = (
        "import sys, types\n"
        "m = types.ModuleType('pynode.term._ccodec')\n"
        f"for name in {has!r}: setattr(m, name, 2048)\n"
        "sys.modules['pynode.term._ccodec'] = m\n"
        "import pynode.term as t\n"
        "print(t.implementation, t.ATOM_CACHE_SIZE)\n"
    )
    assert _fresh_python(code).split() == ["python", "2048"]


def test_module_api() -> None:
    assert C.__name__ == "pynode.term._ccodec"
    assert C.ErlFloatKey is P.ErlFloatKey is ErlFloatKey
    assert C.DEFAULT_MAX_DEPTH == P.DEFAULT_MAX_DEPTH
    assert C.DEFAULT_MAX_UNCOMPRESSED == P.DEFAULT_MAX_UNCOMPRESSED
    assert C.ATOM_CACHE_SIZE == P.ATOM_CACHE_SIZE
    assert set(P.__all__) <= set(dir(C))
    with pytest.raises(TypeError):
        C.encode(1, True)  # keyword-only, like the Python signature
    with pytest.raises(TypeError):
        C.decode(b"\x83a\x01", None)
    with pytest.raises(TypeError):
        C.encode(1, bogus=1)
    assert C.encode(term=1) == P.encode(term=1)
    assert C.decode(data=b"\x83a\x01") == 1
    assert C.decode_from(b"\x83a\x01", offset=0) == (1, 3)


def test_selected_implementation() -> None:
    assert term.implementation in ("c", "python")
    assert term.encode is term.IMPLEMENTATIONS[term.implementation].encode


def test_same_classes() -> None:
    pid = Pid("n@h", 1, 2, 3)
    value = [
        pid, Reference("n@h", 1, (2, 3)), Atom("x"), BitString(b"\xe0", 3),
        Fun("m", 1, b"u" * 16, 1, 2, 3, pid, [ImproperList([1], 2)]),
        {freeze([1]): 1, freeze({2: 3}): 2},
    ]
    got = C.decode(C.encode(value))
    assert _same(got, P.decode(P.encode(value)))
    assert [type(x) for x in got] == [type(x) for x in value]
    assert type(got[0].node) is Atom and type(got[1].ids) is tuple
    # records decoded by C are ordinary instances: immutable, hashable, picklable
    with pytest.raises(AttributeError):
        got[0].id = 5
    assert hash(got[0]) == hash(pid) and got[0] == pid
    import pickle

    assert pickle.loads(pickle.dumps(got[:5])) == value[:5]


# -- generated terms ---------------------------------------------------------------------------


@settings(max_examples=500, deadline=None, suppress_health_check=list(HealthCheck))
@given(terms)
def test_same_bytes_and_values(value: Any) -> None:
    for kwargs in ({}, {"compressed": True}, {"versioned": False}):
        data = P.encode(value, **kwargs)
        assert C.encode(value, **kwargs) == data
        if kwargs.get("versioned") is False:
            p, c = P.decode_from(data, 0, versioned=False), C.decode_from(data, 0, versioned=False)
            assert p[1] == c[1] == len(data)
            assert _same(p[0], c[0])
        else:
            assert _same(P.decode(data), C.decode(data))
            assert _same(C.decode(data), C.decode(memoryview(bytearray(data))))


@settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
@given(terms, st.data())
def test_truncated_and_damaged(value: Any, data: st.DataObject) -> None:
    encoded = P.encode(value)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    _same_decode(encoded[:cut])
    i = data.draw(st.integers(1, len(encoded) - 1)) if len(encoded) > 1 else 0
    damaged = bytearray(encoded)
    damaged[i] = data.draw(st.integers(0, 255))
    # a damaged byte can make an ATOM_EXT (Latin-1) atom, which the Python codec's atom
    # cache may answer with the UTF-8 reading of the same bytes: compare outcomes only
    _same_decode(bytes(damaged), values=False)


@settings(max_examples=500, deadline=None)
@given(st.binary(max_size=64))
def test_garbage(data: bytes) -> None:
    _same_decode(b"\x83" + data, values=False)
    _same_decode(data, values=False)


def test_fuzz_mutations() -> None:
    """Random damage to encodings of many kinds of terms, a fixed number of rounds."""
    rng = random.Random(20240531)
    pid = Pid("n@h", 1, 2, 3)
    seeds = [
        [1, 256, 2**40, -(2**70), 1.5, Atom("ok"), b"bin", "str", (), [], {}],
        {Atom("k"): [1, 2, 3], b"b": (4, 5.0), 1: {2: 3}, (1,): [Atom("x")] * 9},
        (pid, Reference("n@h", 1, (1, 2, 3)), term.Port("n@h", 2**40, 1), term.ExportFun("m", "f", 2)),
        Fun("m", 1, b"u" * 16, 1, 2, 3, pid, [1, (2, Atom("v"))]),
        [ImproperList([1, 2], Atom("t")), BitString(b"\xa0", 3), [[[[]]]]],
        [b"x" * 300] * 30,
        list(range(300)),
    ]
    corpus = [P.encode(s) for s in seeds] + [P.encode(s, compressed=True) for s in seeds]
    for _ in range(4000):
        d = bytearray(rng.choice(corpus))
        for _ in range(rng.randint(1, 3)):
            if not d:
                d = bytearray(b"\x83")
            op = rng.randrange(4)
            if op == 0 and len(d) > 1:
                d[rng.randrange(1, len(d))] = rng.randrange(256)
            elif op == 1:
                i = rng.randrange(1, len(d) + 1)
                d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif op == 2 and len(d) > 1:
                del d[rng.randrange(1, len(d))]
            else:
                d = d[: rng.randrange(len(d) + 1)]
        _same_decode(bytes(d), values=False)


# -- particular behaviours ---------------------------------------------------------------------

EDGE_INPUTS: list[bytes] = [
    b"\x83l\x00\x00\x00\x01a\x01k\x00\x00",  # a tail that decodes to []: a proper list
    b"\x83l\x00\x00\x00\x01a\x01k\x00\x02ab",  # a tail that is a non-empty list
    b"\x83l\x00\x00\x00\x00l\x00\x00\x00\x00a\x05",
    b"\x83t\x00\x00\x00\x02a\x01a\x02a\x01a\x03",  # a key twice
    b"\x83t\x00\x00\x00\x02w\x04truea\x01w\x04truea\x02",
    b"\x83t\x00\x00\x00\x02k\x00\x01\x01a\x01k\x00\x01\x01a\x02",
    b"\x83c" + b" 1_0 ".ljust(31, b"\0"),
    b"\x83c" + b"nan".ljust(31, b"\0"),
    b"\x83c" + b"\xff".ljust(31, b"\0"),
    b"\x83n\x08\x01" + b"\xff" * 8,
    b"\x83n\x08\x01" + b"\x00" * 7 + b"\x80",
    b"\x83n\x00\x01",
    b"\x83qw\x01mw\x01fw\x01x",
    b"\x83P\x00\x00\x00\x02" + zlib.compress(b"a\x01") + b"junk",
    b"\x83P\x00\x00\x00\x02" + zlib.compress(b"a\x01")[:-1],
    b"\x83P\x00\x00\x00\x03" + zlib.compress(b"a\x01\x00"),
    b"\x83h\x02P\x00\x00\x00\x02" + zlib.compress(b"a\x01") + b"a\x02",
    b"\x83P\x00\x00\x00\x07" + zlib.compress(b"P\x00\x00\x00\x02" + zlib.compress(b"a\x01"))[:0],
]


@pytest.mark.parametrize("data", EDGE_INPUTS, ids=repr)
def test_edge_inputs(data: bytes) -> None:
    _same_decode(data)


def test_options_alike() -> None:
    data = P.encode([(1, [2, {3: (4,)}])] * 3)
    for depth in (0, 1, 2, 3, 4, 5, 100, -1, 2.5, math.inf, 10**30, -(10**30)):
        _same_decode(data, max_depth=depth)
    z = P.encode(b"\0" * 1000, compressed=True)
    for limit in (0, 999, 1000, 1001, 999.5, -1, math.inf, 10**30):
        _same_decode(z, max_uncompressed=limit)
    for caches in (None, [], [Atom("a")], ["b", "true", True, Atom("true"), 5, "x" * 300], ("a",)):
        for raw in (b"h\x02R\x00R\x01", b"R\x02", b"R\x03", b"R\x04", b"R\x05", b"XR\x00" + bytes(12)):
            p = _outcome(P.decode_from, raw, 0, versioned=False, atom_cache=caches)
            c = _outcome(C.decode_from, raw, 0, versioned=False, atom_cache=caches)
            assert p[0] == c[0] and (_same(p[1], c[1]) if p[0] == "ok" else p[1] is c[1])


def test_encode_errors_alike() -> None:
    import enum

    class Big(enum.IntEnum):
        X = 2**40

    pid = Pid("n@h", 1, 2, 3)
    values: list[Any] = [
        object(), {1, 2}, 1j, math.nan, [1.5] * 8 + [math.inf], Atom("a" * 256), Atom("\ud800"),
        Pid("n", 2**32, 0, 0), Pid("n", "x", 0, 0),  # type: ignore[arg-type]
        term.Port("n", -1, 0), Reference("n", 1, (1,) * 6),
        Reference("n", 2**32, (1,)), [[[[[object()]]]]], {1: {2: object()}}, (b"x" * 70_000, object()),
        Fun("m", 0, b"u" * 16, 0, 0, 0, pid, [b"x" * 70_000, object()]), ImproperList([1], object()),
        [Big.X], "\ud800", memoryview(b"abcdef")[::2],
    ]
    for v in values:
        p, c = _outcome(P.encode, v), _outcome(C.encode, v)
        assert p[0] == c[0], (v, p, c)
        if p[0] == "ok":
            assert p[1] == c[1]
        else:
            assert p[1] is c[1], (v, p, c)
    value: Any
    for depth in (0, 1, 2, 3):
        value = [(1, {2: [3]})]
        p, c = _outcome(P.encode, value, max_depth=depth), _outcome(C.encode, value, max_depth=depth)
        assert p[0] == c[0] and (p[1] == c[1] if p[0] == "ok" else p[1] is c[1] is EncodeError)
    levels: tuple[Any, ...] = (0, 1, 9, -1, True, 1.7)
    for level in levels:
        value = [b"abc" * 100, Atom("x")] * 10
        assert C.encode(value, compressed=level) == P.encode(value, compressed=level)
    with pytest.raises(zlib.error):
        C.encode(b"x" * 100, compressed=10)


def test_deep_nesting_never_overflows_the_c_stack() -> None:
    # Whatever the recursion limit, the C codec stops at its own cap with a clean error.
    depth = 100_000
    deep = b"\x83" + b"l\x00\x00\x00\x01" * depth + b"j" * (depth + 1)
    nested: Any = []
    for _ in range(depth):
        nested = [nested]
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(1_000_000)
    try:
        with pytest.raises(DecodeError, match="deep"):
            C.decode(deep, max_depth=10**9)
        with pytest.raises(EncodeError, match="deep"):
            C.encode(nested, max_depth=10**9)
    finally:
        sys.setrecursionlimit(old)
    with pytest.raises(DecodeError, match="deep"):
        C.decode(deep)


def test_no_leaks() -> None:
    """Encode and decode (good and bad input alike) many times: traced memory stays flat."""
    pid = Pid("n@h", 1, 2, 3)
    values = [
        [1, 2**70, 1.5, Atom("ok"), b"b", "s€", (), {1: [2]}, True, None],
        (pid, Reference("n@h", 1, (1, 2, 3)), term.ExportFun("m", "f", 2), BitString(b"\xa0", 3)),
        Fun("m", 1, b"u" * 16, 1, 2, 3, pid, [ImproperList([1], 2)]),
        {freeze([1]): 1, 1: 2, ErlFloatKey(1.0): 3, Atom("true"): 4},
        [b"x" * 300] * 20,
    ]
    good = [C.encode(v) for v in values] + [C.encode(v, compressed=True) for v in values]
    bad_in = [g[: len(g) // 2] for g in good] + [b"\x83\xff", b"\x83R\x00", b"\x83P\x00\x00\x00\x02xx"]
    bad_values = [object(), [1, math.nan], (b"x" * 70_000, object()), Pid("n", -1, 0, 0), Atom("a" * 256)]

    def rounds(n: int) -> None:
        for _ in range(n):
            for v in values:
                C.encode(v)
                C.encode(v, compressed=True)
            for g in good:
                C.decode(g)
                C.decode_from(memoryview(g), 0)
            for b in bad_in:
                with pytest.raises(DecodeError):
                    C.decode(b, atom_cache=[None])
            for v in bad_values:
                with pytest.raises(EncodeError):
                    C.encode(v)

    rounds(50)  # warm up caches and free lists
    gc.collect()
    tracemalloc.start()
    try:
        rounds(50)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(500)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # a leak of one small object per operation would be several hundred kB here
    assert after - before < 64 * 1024, after - before


# -- distribution packets ----------------------------------------------------------------------

MISSING = object()


def _dist_sequences() -> list[list[bytes]]:
    """Packet sequences that each share one connection's atom cache entries."""
    from tests.protocol import erl_packets

    pid = Pid("n@h", 1, 2, 3)
    values: list[Any] = [
        [1, 2**70, 1.5, Atom("ok"), b"bin", "str€", (), {1: [2]}, True, False, None],
        (pid, Reference("n@h", 1, (1, 2, 3)), term.ExportFun("m", "f", 2)),
        Fun("m", 1, b"u" * 16, 1, 2, 3, pid, [ImproperList([1], Atom("t"))]),
        [b"x" * 300] * 5,
    ]
    plain = [b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + P.encode(v, versioned=False) for v in values]
    passthrough = [b"p" + P.encode((2, Atom(""), pid)) + P.encode(v) for v in values]
    passthrough.append(b"p" + P.encode((6, pid, Atom(""), Atom("name")), compressed=True))
    long_atoms = [
        b"\x83D\x03\x88\x18\x01\x00\x04true\x02\x01\xf4" + "é".encode() * 250 + b"\x03\x00\x01x"
        + b"h\x03R\x00R\x01R\x02" + b"l\x00\x00\x00\x02R\x01R\x02j",
        b"\x83D\x03\x00\x00\x01\x02\x03h\x03R\x02R\x01R\x00",
    ]
    return [erl_packets.OTP25, erl_packets.OTP28, plain, passthrough, long_atoms]


def _same_dist(packet: bytes, ep: list[Any], ec: list[Any], **kw: Any) -> str:
    """Both codecs decode the packet alike, errors included, and leave the same entries."""
    p = _outcome(P.decode_dist_packet, packet, ep, MISSING, **kw)
    c = _outcome(C.decode_dist_packet, packet, ec, MISSING, **kw)
    assert p[0] == c[0], (packet, p, c)
    if p[0] == "ok":
        assert _same(p[1][0], c[1][0]), (packet, p, c)
        assert (p[1][1] is MISSING) == (c[1][1] is MISSING) and (
            p[1][1] is MISSING or _same(p[1][1], c[1][1])
        ), (packet, p, c)
    else:
        assert p[1] is c[1], (packet, p, c)
        assert str(p[2]) == str(c[2]), (packet, p, c)
    assert all(map(_same, ep, ec)), packet
    return p[0]


def test_dist_packets_alike() -> None:
    for seq in _dist_sequences():
        ep, ec = [None] * term.ATOM_CACHE_SIZE, [None] * term.ATOM_CACHE_SIZE
        for packet in seq:
            assert _same_dist(packet, ep, ec) == "ok"
            for cut in range(len(packet)):
                _same_dist(packet[:cut], ep[:], ec[:])


def test_dist_fuzz_mutations() -> None:
    """Random damage to real and synthetic packets, each after the packets before it."""
    rng = random.Random(20250611)
    sequences = _dist_sequences()
    outcomes: dict[str, int] = {}
    for _ in range(3000):
        seq = rng.choice(sequences)
        k = rng.randrange(len(seq))
        ep, ec = [None] * term.ATOM_CACHE_SIZE, [None] * term.ATOM_CACHE_SIZE
        for packet in seq[:k]:
            P.decode_dist_packet(packet, ep, MISSING)
            C.decode_dist_packet(packet, ec, MISSING)
        d = bytearray(seq[k])
        for _ in range(rng.randint(1, 3)):
            op = rng.randrange(5)
            if op == 0 and d:
                d[rng.randrange(len(d))] = rng.randrange(256)
            elif op == 1:
                i = rng.randrange(len(d) + 1)
                d[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 4)))
            elif op == 2 and d:
                del d[rng.randrange(len(d))]
            elif op == 3 and len(d) > 4:  # the header's count and flags bytes
                d[rng.randrange(2, 5)] = rng.randrange(256)
            else:
                d = d[: rng.randrange(len(d) + 1)]
        result = _same_dist(bytes(d), ep, ec)
        outcomes[result] = outcomes.get(result, 0) + 1
        # and in place, inside a larger buffer, as the framing layer calls it
        buf = bytearray(b"\x00\x00\x00\x00" + d + b"\x00")
        ep2, ec2 = ep[:], ec[:]
        _same_dist(buf, ep2, ec2, start=4, end=len(buf) - 1)
    assert outcomes.get("ok", 0) > 100 and outcomes.get("error", 0) > 1000, outcomes


@given(st.binary(max_size=48), st.sampled_from([b"\x83D", b"p\x83", b"\x83D\x00", b""]))
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_dist_garbage(data: bytes, prefix: bytes) -> None:
    entries = [None] * term.ATOM_CACHE_SIZE
    entries[0] = Atom("zero")
    entries[256 + 1] = True
    _same_dist(prefix + data, entries[:], entries[:])
    p = _outcome(P.decode_dist_header, data, entries[:])
    c = _outcome(C.decode_dist_header, data, entries[:])
    assert p[0] == c[0] and (p[1] == c[1] if p[0] == "ok" else p[1] is c[1]), (data, p, c)
    p = _outcome(P.decode_dist_body, data, [Atom("a"), False], MISSING)
    c = _outcome(C.decode_dist_body, data, [Atom("a"), False], MISSING)
    assert p[0] == c[0], (data, p, c)
    if p[0] == "error":
        assert p[1] is c[1] and str(p[2]) == str(c[2]), (data, p, c)


def test_dist_argument_errors_alike() -> None:
    good = b"\x83D\x00a\x01"
    calls: list[tuple[Any, ...]] = [
        (good, [None] * 2047, MISSING),
        (good, tuple([None] * 2048), MISSING),
        (good, type("L", (list,), {})([None] * 2048), MISSING),
        ("str", [None] * 2048, MISSING),
        (good, [None] * 2048, MISSING, -1),
        (good, [None] * 2048, MISSING, 2, 1),
        (good, [None] * 2048, MISSING, 0, 6),
        (good, [None] * 2048, MISSING, 2**70),
        (good, [None] * 2048, MISSING, "0"),
        (good, [None] * 2048),
    ]
    for args in calls:
        p, c = _outcome(P.decode_dist_packet, *args), _outcome(C.decode_dist_packet, *args)
        assert p[0] == c[0] == "error" and p[1] is c[1], (args, p, c)
    assert C.decode_dist_packet(good, [None] * 2048, MISSING, end=None) == (1, MISSING)


def test_dist_no_leaks() -> None:
    """The packet functions on good and bad input many times: traced memory stays flat."""
    sequences = _dist_sequences()
    bad = [s[-1][: len(s[-1]) // 2] for s in sequences] + [
        b"\x83D\x01\x00\x07R\x00", b"\x83D\x02\x88\x00\x01a", b"\x83D\x01\x08\x05\x02\xff\xfe",
        b"\x83D\x00a\x01a\x02a\x03", b"\x83E", b"p\x83a",
    ]
    body = b"h\x02R\x01R\x00R\x00"

    def rounds(n: int) -> None:
        for _ in range(n):
            for seq in sequences:
                entries = [None] * term.ATOM_CACHE_SIZE
                for packet in seq:
                    C.decode_dist_packet(packet, entries, MISSING)
                    C.decode_dist_packet(bytearray(packet), entries, MISSING, 0, len(packet))
                for b in bad:
                    with pytest.raises(DecodeError):
                        C.decode_dist_packet(b, entries, MISSING)
            refs, _ = C.decode_dist_header(b"\x02\x88\x00\x01\x01a\x02\x01b", entries)
            C.decode_dist_body(body, refs, MISSING)
            with pytest.raises(DecodeError):
                C.decode_dist_body(body + b"j", refs, MISSING)
            with pytest.raises(DecodeError):
                C.decode_dist_header(b"\x02\x88\x00\x01\x01a\x02\x01", entries)
            with pytest.raises(ValueError):
                C.decode_dist_packet(b"p", entries, MISSING, 2)
            for seq in sequences:
                stream = b"".join(struct.pack(">I", len(p)) + p for p in seq)
                assert C.decode_dist_sends(stream, entries, MISSING, 0, 1 << 20, lambda t, p: True)[0] > 0
                with pytest.raises(DecodeError):
                    C.decode_dist_sends(b"\x00\x00\x00\x02\x83D", entries, MISSING, 0, 1 << 20, lambda t, p: True)
                C.peek_dist_packets(stream, entries, MISSING, 0, 1 << 20)  # None, or the packets
                C.make_ref(Atom("n@h"), 1, 2**79 + len(stream))
                C.make_pid(Atom("n@h"), len(stream), 0, 1)
                with pytest.raises(TypeError):
                    C.make_ref(Atom("n@h"), 1, "x")
                for p in seq:  # a first packet is decoded, new cache entries and all
                    assert C.peek_dist_packets(struct.pack(">I", len(p)) + p, entries, MISSING, 0, 1 << 20)
                with pytest.raises(DecodeError):
                    C.peek_dist_packets(b"\x00\x00\x00\x02\x83D", entries, MISSING, 0, 1 << 20)

    rounds(30)  # warm up caches and free lists
    gc.collect()
    tracemalloc.start()
    try:
        rounds(30)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(300)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    # a leak of one small object per call would be several hundred kB here
    assert after - before < 64 * 1024, after - before


def _sends_stream(rng: random.Random) -> tuple[bytes, list[str]]:
    """A buffer of packets as a connection receives them, each kind the batch call meets,
    and what each packet is."""
    pid, other = Pid("n@h", 1, 2, 3), Pid("m@h", 4, 5, 6)
    kinds = [
        "send", "send_sender", "reg_send", "pass_send", "cached_reg_send", "link", "tick",
        "fragment", "no_payload_send", "bad_shape", "big",
    ]
    out: list[bytes] = []
    what: list[str] = []
    for _ in range(rng.randint(1, 12)):
        kind = rng.choice(kinds)
        pay = P.encode(rng.choice([1, b"x" * rng.randrange(40), (Atom("a"), [1.5])]), versioned=False)
        if kind == "send":
            body = b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + pay
        elif kind == "send_sender":
            body = b"\x83D\x00" + P.encode((22, other, pid), versioned=False) + pay
        elif kind == "reg_send":
            body = b"\x83D\x00" + P.encode((6, other, Atom(""), Atom("box")), versioned=False) + pay
        elif kind == "pass_send":
            body = b"p" + P.encode((2, Atom(""), pid)) + b"\x83" + pay
        elif kind == "cached_reg_send":  # a new cache entry 'box', then a reference to it
            body = (b"\x83D\x01\x08\x05\x03box" + P.encode((6, other, Atom(""), 0), versioned=False)[:-2]
                    + b"R\x00" + pay)
        elif kind == "link":
            body = b"\x83D\x00" + P.encode((1, other, pid), versioned=False)
        elif kind == "tick":
            body = b""
        elif kind == "fragment":
            body = b"\x83E" + bytes(17)
        elif kind == "no_payload_send":
            body = b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False)
        elif kind == "bad_shape":  # SEND_SENDER whose sender is not a pid
            body = b"\x83D\x00" + P.encode((22, Atom("x"), pid), versioned=False) + pay
        else:
            body = b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + P.encode(b"y" * 300, versioned=False)
        out.append(struct.pack(">I", len(body)) + body)
        what.append(kind)
    data = b"".join(out)
    if rng.random() < 0.3:  # the last packet only partly here
        data = data[: rng.randrange(len(data) + 1)]
    return data, what


def _run_sends(
    f: Any, data: bytes, deliver_rule: int, max_packet: int, signal_rule: int | None = None,
    sinks: dict[Any, Any] | None = None,
) -> list[Any]:
    """Drive ``f`` as the framing does: call again after each stop, skipping a packet it
    left alone by its length. Returns every result and delivery in order. With
    ``signal_rule`` a deliver_signal hook takes packets by that rule as well; with
    ``sinks``, plain sends go to its queues too (their contents end the log)."""
    entries: list[Any] = [None] * term.ATOM_CACHE_SIZE
    log: list[Any] = []
    buf = bytearray(data)
    k = [0]

    def deliver(to: Any, payload: Any) -> Any:
        k[0] += 1
        log.append(("deliver", to, payload))
        # truthy and falsy values that are not bools too
        return [True, 1, [0], False, 0, None][(k[0] * deliver_rule) % 6] if deliver_rule else True

    def signal(control: Any, payload: Any) -> Any:
        k[0] += 1
        log.append(("signal", control, payload is MISSING or payload))
        return [True, [1], False, (), 2, None][(k[0] * (signal_rule or 0)) % 6]

    hooks: tuple[Any, ...] = (deliver,) if signal_rule is None else (deliver, signal)
    if sinks is not None:
        hooks = (deliver, signal if signal_rule is not None else None, sinks)
    pos = 0
    for _ in range(100):
        r = _outcome(f, buf, entries, MISSING, pos, max_packet, *hooks)
        if r[0] == "error":
            log.append(("error", r[1], str(r[2])))
            break
        pos, n, control, payload = r[1]
        log.append(("result", pos, n, control, payload is MISSING or payload))
        if control is MISSING:
            if len(buf) - pos < 4:
                break
            (size,) = struct.unpack_from(">I", buf, pos)
            if pos + 4 + size > len(buf):
                break
            pos += 4 + size  # what the framing's slow path would take
    log.append(("entries", [e for e in entries if e is not None]))
    if sinks is not None:
        log.append(("sinks", [list(e[0]) if isinstance(e, tuple) and e else e for e in sinks.values()]))
    return log


def _sinks(rng: random.Random) -> dict[Any, Any]:
    """Queues for _sends_stream's recipients (pid <n@h.1.2> of creation 3, name 'box'), right
    and wrong: a node or creation not the pid's, short limits, malformed entries."""
    pid_entry: Any = (
        deque(), rng.randrange(6), Atom("n@h") if rng.random() < 0.8 else Atom("x@h"), rng.choice([3, 3, 3, 4]),
    )
    name_entry: Any = (deque(), rng.randrange(6))
    if rng.random() < 0.2:
        pid_entry = rng.choice([pid_entry[:2], [deque(), 5, Atom("n@h"), 3], (list(), 5, Atom("n@h"), 3)])
    if rng.random() < 0.2:
        name_entry = rng.choice([(deque(),), (deque(), "5"), (deque(), True), None])
    return {1 | (2 << 32): pid_entry, Atom("box"): name_entry, Atom("other"): (deque(), 9)}


def test_dist_sends_alike() -> None:
    rng = random.Random(20261202)
    seen: set[str] = set()
    delivered = 0
    for _ in range(400):
        data, what = _sends_stream(rng)
        seen.update(what)
        rule = rng.randrange(4)
        max_packet = rng.choice([1 << 20, 200])
        p = _run_sends(P.decode_dist_sends, data, rule, max_packet)
        c = _run_sends(C.decode_dist_sends, data, rule, max_packet)
        assert len(p) == len(c) and all(map(_same, p, c)), (data, rule, p, c)
        delivered += sum(1 for e in p if e[0] == "deliver")
    assert len(seen) == 11 and delivered > 500


def test_dist_sends_into_sinks_alike() -> None:
    """Plain sends whose recipient has a queue in ``sinks`` go there instead of to deliver,
    while the queue is under its limit, for the pid's node and creation only; both codecs
    alike, malformed entries included (the send then goes to deliver)."""
    rng = random.Random(20261205)
    sunk = delivered = 0
    for i in range(400):
        data, _ = _sends_stream(rng)
        rule, signal_rule = rng.randrange(4), rng.choice([None, rng.randrange(6)])
        max_packet = rng.choice([1 << 20, 200])
        p = _run_sends(P.decode_dist_sends, data, rule, max_packet, signal_rule, _sinks(random.Random(i)))
        c = _run_sends(C.decode_dist_sends, data, rule, max_packet, signal_rule, _sinks(random.Random(i)))
        assert len(p) == len(c) and all(map(_same, p, c)), (data, rule, p, c)
        sunk += sum(len(q) for q in p[-1][1] if isinstance(q, list))
        delivered += sum(1 for e in p if e[0] == "deliver")
    assert sunk > 300 and delivered > 300


def test_dist_sends_into_a_sink_by_name_and_by_pid() -> None:
    pid = Pid("n@h", 1, 2, 3)
    pay = P.encode(7, versioned=False)
    to_pid = b"\x83D\x00" + P.encode((22, Pid("m@h", 4, 5, 6), pid), versioned=False) + pay
    to_name = b"\x83D\x00" + P.encode((6, pid, Atom(""), Atom("box")), versioned=False) + pay
    data = b"".join(struct.pack(">I", len(b)) + b for b in (to_pid, to_name, to_pid, to_name, to_pid))
    for f in (P.decode_dist_sends, C.decode_dist_sends):
        by_pid, by_name, hooked = deque(), deque(), []
        sinks = {1 | (2 << 32): (by_pid, 2, Atom("n@h"), 3), Atom("box"): (by_name, 5)}
        r = f(data, [None] * 2048, MISSING, 0, 1 << 20, lambda t, p, h=hooked: h.append((t, p)) or True, None, sinks)
        assert r == (len(data), 5, MISSING, MISSING)
        assert list(by_pid) == [7, 7] and list(by_name) == [7, 7]
        assert hooked == [(pid, 7)]  # the pid's queue was at its limit
        # another creation of the node (a restarted one) is not this pid's: deliver decides
        sinks = {1 | (2 << 32): (deque(), 9, Atom("n@h"), 4)}
        hooked.clear()
        r = f(data, [None] * 2048, MISSING, 0, 1 << 20, lambda t, p, h=hooked: h.append(t) or True, None, sinks)
        assert r[:2] == (len(data), 5) and hooked == [pid, Atom("box"), pid, Atom("box"), pid]
        with pytest.raises(TypeError, match="sinks"):
            f(data, [None] * 2048, MISSING, 0, 1 << 20, lambda t, p: True, None, [by_pid])


def test_dist_sends_with_a_signal_hook_alike() -> None:
    """Every packet neither a tick nor a fragment that deliver does not take goes to
    deliver_signal; what it takes is counted and the call goes on."""
    rng = random.Random(20261203)
    signals = taken = 0
    for _ in range(400):
        data, _ = _sends_stream(rng)
        rule, signal_rule = rng.randrange(4), rng.randrange(6)
        max_packet = rng.choice([1 << 20, 200])
        p = _run_sends(P.decode_dist_sends, data, rule, max_packet, signal_rule)
        c = _run_sends(C.decode_dist_sends, data, rule, max_packet, signal_rule)
        assert len(p) == len(c) and all(map(_same, p, c)), (data, rule, signal_rule, p, c)
        signals += sum(1 for e in p if e[0] == "signal")
        taken += sum(e[2] for e in p if e[0] == "result")
    assert signals > 300 and taken > 500
    # None is no hook: a packet deliver declines is returned, as without the argument
    link = b"\x83D\x00" + P.encode((1, Pid("n@h", 1, 2, 3), Pid("n@h", 1, 2, 4)), versioned=False)
    data = struct.pack(">I", len(link)) + link
    for f in (P.decode_dist_sends, C.decode_dist_sends):
        pos, n, control, payload = f(data, [None] * 2048, MISSING, 0, 1 << 20, lambda t, p: True, None)
        assert (pos, n, control[0], payload) == (len(data), 0, 1, MISSING)


def _peek_outcome(f: Any, data: bytes, entries: list[Any], start: int, max_packet: int) -> tuple[Any, ...]:
    r = _outcome(f, data, entries, MISSING, start, max_packet)
    if r[0] == "ok" and r[1] is not None:  # (pos, [(control, payload or True), ...])
        return ("ok", (r[1][0], [(c, p is MISSING or p) for c, p in r[1][1]]))
    return r if r[0] == "ok" else (r[0], r[1], str(r[2]))


def test_dist_peek_alike() -> None:
    """Both codecs peek alike at every start of mixed streams: the same packets decoded,
    None for the same ones, the same errors and atom cache entries."""
    rng = random.Random(20261204)
    outcomes: dict[str, int] = {}
    for _ in range(300):
        data, _ = _sends_stream(rng)
        max_packet = rng.choice([1 << 20, 200])
        starts = [0]
        pos = 0
        while len(data) - pos >= 4:  # each packet's start
            pos += 4 + struct.unpack_from(">I", data, pos)[0]
            starts.append(min(pos, len(data)))
        for start in starts:
            ep, ec = [None] * term.ATOM_CACHE_SIZE, [None] * term.ATOM_CACHE_SIZE
            p = _peek_outcome(P.peek_dist_packets, data, ep, start, max_packet)
            c = _peek_outcome(C.peek_dist_packets, bytearray(data), ec, start, max_packet)
            assert _same(p, c), (data, start, p, c)
            assert all(map(_same, ep, ec)), (data, start)
            kind = "none" if p == ("ok", None) else p[0] if p[0] != "ok" else f"ok{min(len(p[1][1]), 2)}"
            outcomes[kind] = outcomes.get(kind, 0) + 1
    assert set(outcomes) == {"none", "ok0", "ok1", "ok2"}, outcomes  # (errors: the next test)


def test_dist_peek_rules() -> None:
    """What a peek leaves to the connection, in both codecs."""
    pid = Pid("n@h", 1, 2, 3)

    def packet(body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + body

    send = packet(b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + P.encode(1, versioned=False))
    link = packet(b"\x83D\x00" + P.encode((1, pid, pid), versioned=False))
    # a new cache entry 'box' (segment 0, index 5), then the control tuple names it
    cached = packet(b"\x83D\x01\x08\x05\x03box" + b"h\x02a\x02R\x00")
    tick, fragment = packet(b""), packet(b"\x83E" + bytes(17))
    for f in (P.peek_dist_packets, C.peek_dist_packets):
        def peek(data: bytes, start: int = 0, max_packet: int = 1 << 20, f: Any = f) -> Any:
            return f(data, [None] * term.ATOM_CACHE_SIZE, MISSING, start, max_packet)

        assert peek(b"") == (0, [])
        assert peek(send + link[:9]) == (len(send), [((2, Atom(""), pid), 1)])  # the rest later
        assert peek(send + link) == (len(send + link), [((2, Atom(""), pid), 1), ((1, pid, pid), MISSING)])
        assert peek(cached + send) == (len(cached + send), [((2, Atom("box")), MISSING), ((2, Atom(""), pid), 1)])
        assert peek(send + cached) is None  # a later packet's new entries: left undecoded
        assert peek(send + cached, len(send)) is None  # later in data, wherever the peek starts
        assert peek(send + tick) is None and peek(tick + send) is None
        assert peek(send + tick[:3]) == (len(send), [((2, Atom(""), pid), 1)])  # a tick's start
        assert peek(fragment) is None
        assert peek(send, 0, len(send) - 5) is None  # over max_packet
        assert peek(link + send[:6], 0, 10) is None  # so is the incomplete one's length
        with pytest.raises(DecodeError):
            peek(packet(b"\x83D\x00h\x02a"))


def test_a_signal_hook_error_consumes_its_packet_alike() -> None:
    """An exception from deliver_signal (or its answer's truth) says to go on after the
    failing packet: a signal is never handed twice."""
    pid = Pid("n@h", 1, 2, 3)
    send = b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + b"a\x01"
    link = b"\x83D\x00" + P.encode((1, pid, pid), versioned=False)
    data = b"".join(struct.pack(">I", len(b)) + b for b in (send, link, send))

    class Falsy:
        def __bool__(self) -> bool:
            raise ValueError("no truth")

    def boom(control: Any, payload: Any) -> bool:
        raise KeyError("signal")

    for hook, error in ((boom, KeyError), (lambda c, p: Falsy(), ValueError), ("not callable", TypeError)):
        got = []
        for f in (P.decode_dist_sends, C.decode_dist_sends):
            with pytest.raises(error) as info:
                f(data, [None] * 2048, MISSING, 0, 1 << 20, lambda t, p: True, hook)
            got.append((info.value.dist_pos, info.value.dist_delivered))  # type: ignore[attr-defined]
        assert got[0] == got[1] == (8 + len(send) + len(link), 1)


def test_dist_sends_errors_alike() -> None:
    pid = Pid("n@h", 1, 2, 3)
    good = b"\x83D\x00" + P.encode((2, Atom(""), pid), versioned=False) + b"a\x01"
    packet = struct.pack(">I", len(good)) + good
    bad = struct.pack(">I", 9) + b"\x83D\x00a\x01" + b"junk"  # bytes after the payload []
    broken = struct.pack(">I", 4) + b"\x83D\x00\x00"
    got: dict[str, list[Any]] = {"p": [], "c": []}

    def boom(to: Any, payload: Any) -> bool:
        raise KeyError("hook")

    class Falsy:
        def __bool__(self) -> bool:
            raise ValueError("no truth")

    for key, f in (("p", P.decode_dist_sends), ("c", C.decode_dist_sends)):
        def record(to: Any, payload: Any, key: str = key) -> bool:
            got[key].append(payload)
            return True

        entries: list[Any] = [None] * 2048
        calls: list[tuple[Any, ...]] = [
            (packet * 2 + broken + packet, entries, MISSING, 0, 1 << 20, record),
            (packet + bad, entries, MISSING, 0, 1 << 20, record),
            (packet, entries, MISSING, 0, 1 << 20, boom),
            (packet, entries, MISSING, 0, 1 << 20, lambda to, pay: Falsy()),
            (packet, entries, MISSING, 0, 1 << 20, "not callable"),
            (packet, [None] * 2047, MISSING, 0, 1 << 20, record),
            (packet, entries, MISSING, len(packet) + 1, 1 << 20, record),
            (packet, entries, MISSING, -1, 1 << 20, record),
            (packet, entries, MISSING, 0, "big", record),
            (packet, entries, MISSING, 0, 1 << 20),
        ]
        got[key + "out"] = [_outcome(f, *args) for args in calls]
    for a, b in zip(got["pout"], got["cout"]):  # noqa: B905
        assert a[0] == b[0] == "error" and a[1] is b[1], (a, b)
    assert str(got["pout"][2][2]) == str(got["cout"][2][2]) == "'hook'"
    assert [str(x[2]) for x in got["pout"][:2]] == [str(x[2]) for x in got["cout"][:2]]
    assert got["p"] == got["c"] == [1, 1, 1]  # delivered before the bad packet
    # a start at the very end is no error: nothing to do
    assert C.decode_dist_sends(packet, [None] * 2048, MISSING, len(packet), 9, boom) == (
        len(packet), 0, MISSING, MISSING)


def test_dist_sends_edge_cases_alike() -> None:
    """What a review found: a float op, a limit past ssize_t, a hook that empties the atom
    cache list between packets (C read past the list), and where to go on after a failure."""
    other = Pid("m@h", 4, 5, 6)
    ctl = P.encode((6, other, Atom(""), 0), versioned=False)[:-2]
    new = b"\x83D\x01\x08\x05\x03box" + ctl + b"R\x00" + P.encode(1, versioned=False)
    ref = b"\x83D\x01\x00\x05" + ctl + b"R\x00" + P.encode(2, versioned=False)
    float_op = b"\x83D\x00" + P.encode((22.0, other, other), versioned=False) + b"a\x01"

    def framed(*bodies: bytes) -> bytes:
        return b"".join(struct.pack(">I", len(b)) + b for b in bodies)

    def run(f: Any, data: bytes, deliver: Any, max_packet: int = 1 << 20) -> Any:
        entries: list[Any] = [None] * 2048
        try:
            return ("ok", f(data, entries, MISSING, 0, max_packet, lambda t, p: deliver(entries, t, p)))
        except Exception as e:  # where it says to go on, with the error
            return ("error", type(e), str(e), getattr(e, "dist_pos", None), getattr(e, "dist_delivered", None))

    def take(entries: Any, to: Any, payload: Any) -> bool:
        return True

    def clear(entries: Any, to: Any, payload: Any) -> bool:
        entries.clear()
        return True

    calls = {"p": 0, "c": 0}

    def second_fails(key: str) -> Any:
        def deliver(entries: Any, to: Any, payload: Any) -> bool:
            calls[key] += 1
            if calls[key] == 2:
                raise KeyError("second")
            return True
        return deliver

    cases: list[tuple[bytes, Any, Any, int]] = [
        (framed(float_op), take, take, 1 << 20),  # not a plain send for either: an event
        (framed(new, new), take, take, 2**64),  # a limit past ssize_t is no limit
        (framed(new, ref), clear, clear, 1 << 20),  # ValueError for both, no crash
        (framed(new, new, new), second_fails("p"), second_fails("c"), 1 << 20),
        (framed(new, ref[:-1] + b"\xff"), take, take, 1 << 20),  # a bad packet after one good
    ]
    for data, dp, dc, limit in cases:
        p, c = run(P.decode_dist_sends, data, dp, limit), run(C.decode_dist_sends, data, dc, limit)
        assert p[0] == c[0], (data, p, c)
        if p[0] == "ok":
            assert p[1][:2] == c[1][:2] and _same(p[1][2], c[1][2]), (data, p, c)
        else:
            assert p[1:] == c[1:] or (p[1] is c[1] and p[3:] == c[3:]), (data, p, c)
    assert run(C.decode_dist_sends, framed(float_op), take)[1][1] == 0
    assert run(C.decode_dist_sends, framed(new, ref), clear)[:2] == ("error", ValueError)
    calls["c"] = 0
    failed = run(C.decode_dist_sends, framed(new, new, new), second_fails("c"))
    assert failed[3:] == (len(framed(new)), 1)  # go on at the second packet, one delivered


def test_encode_dist_packet_alike() -> None:
    pid = Pid("n@h", 1, 2, 3)
    payloads: list[Any] = [
        MISSING, None, 1, [b"x" * 2000] * 3, {Atom("k"): (1.5, "s€")}, object(), [[[[object()]]]],
        BitString(b"\xe0", 3), Atom("a" * 256),
    ]
    for control in ((2, Atom(""), pid), (6, pid, Atom(""), Atom("rex")), (object(),)):
        for payload in payloads:
            for pass_through in (False, True):
                p = _outcome(P.encode_dist_packet, control, payload, MISSING, pass_through)
                c = _outcome(C.encode_dist_packet, control, payload, MISSING, pass_through)
                assert p[0] == c[0], (control, payload, p, c)
                if p[0] == "ok":
                    assert p[1] == c[1]
                else:
                    assert p[1] is c[1] and str(p[2]) == str(c[2]), (control, payload, p, c)


def test_encode_dist_packet_no_leaks() -> None:
    pid = Pid("n@h", 1, 2, 3)
    control = (2, Atom(""), pid)
    good = [MISSING, (Atom("event"), 12345, bytes(32), [1, 2, 3]), [b"x" * 2000] * 3]

    def rounds(n: int) -> None:
        for _ in range(n):
            for payload in good:
                C.encode_dist_packet(control, payload, MISSING)
                C.encode_dist_packet(control, payload, MISSING, True)
            with pytest.raises(EncodeError):
                C.encode_dist_packet(control, [b"x" * 2000, object()], MISSING)
            with pytest.raises(EncodeError):
                C.encode_dist_packet((object(),), 1, MISSING)

    rounds(100)
    gc.collect()
    tracemalloc.start()
    try:
        rounds(100)
        gc.collect()
        before = tracemalloc.get_traced_memory()[0]
        rounds(1000)
        gc.collect()
        after = tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()
    assert after - before < 64 * 1024, after - before


# -- Pid and Reference: hash and equality in C ---------------------------------------------

_pids = st.builds(
    Pid,
    st.sampled_from(["a@h", "b@h", "nonode@nohost", "ü@h"]),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
    st.integers(0, 2**32 - 1),
)
_refs = st.builds(
    Reference,
    st.sampled_from(["a@h", "b@h"]),
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=5),
)


@pytest.fixture
def type_slots() -> Any:
    """The twin's C hash and ==/!= on Pid and Reference, for one test (the pure-Python run
    keeps the classes' own methods elsewhere)."""
    was = C.type_slots(True)
    yield
    C.type_slots(was)


def test_type_slots_follow_the_codec_picked() -> None:
    """Only a process that picked the twin has them; turning them off gives the methods back."""
    code = (
        "import pynode.term as t\n"
        "from pynode.term import Pid\n"
        "on = t.IMPLEMENTATIONS['c'].type_slots(True)\n"
        "off = t.IMPLEMENTATIONS['c'].type_slots(False)\n"
        "print(t.implementation, on, off, t.IMPLEMENTATIONS['c'].type_slots(False))\n"
    )
    assert _fresh_python(code).split() == ["c", "True", "True", "False"]
    assert _fresh_python(code, PYNODE_PURE_PYTHON="1").split() == ["python", "False", "True", "False"]


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(st.one_of(_pids, _refs), st.one_of(_pids, _refs))
def test_pid_and_ref_slots_agree_with_their_methods(type_slots: None, a: Any, b: Any) -> None:
    """The twin gives Pid and Reference C hash and ==/!= (they key the runtime's tables):
    the values are those of the classes' Python methods, so a table filled before the twin
    was picked still finds its keys."""
    cls = type(a)
    assert hash(a) == cls.__dict__["__hash__"](a)
    assert (a == b) is (cls.__dict__["__eq__"](a, b) is True)
    assert (a != b) is not (a == b)
    twin = cls(*a._key())  # an equal value, another object
    assert a == twin and not a != twin and hash(a) == hash(twin)
    assert {a: 1}.get(twin) == 1


def test_pid_and_ref_slots_keep_python_semantics(type_slots: None) -> None:
    """Other types, empty slots, NaN fields and other operators behave as the Python
    methods do."""
    p, r = Pid("a@h", 1, 2, 3), Reference("a@h", 3, (1, 2, 3))
    assert p != (Atom("a@h"), 1, 2, 3) and not p == 1 and p != r and r != p
    assert r != (1, 2, 3) and not r == (1, 2, 3)
    assert Pid("a@h", 1, 2, 3) != Pid("b@h", 1, 2, 3) and Pid("a@h", 1, 2, 3) != Pid("a@h", 1, 2, 4)
    assert Reference("a@h", 3, (1,)) != Reference("a@h", 3, (1, 0))
    assert Reference("a@h", 3, (1,)) != Reference("a@h", 4, (1,))
    with pytest.raises(TypeError):
        p < p  # noqa: B015 - no order, as in Python
    with pytest.raises(TypeError):
        r >= r  # noqa: B015
    empty = object.__new__(Pid)  # no slot set: the Python method's error
    with pytest.raises(AttributeError):
        hash(empty)
    with pytest.raises(AttributeError):
        empty == p  # noqa: B015
    nan = Pid("a@h", float("nan"), 2, 3)  # type: ignore[arg-type]  # == without identity
    assert nan != nan and Pid.__dict__["__eq__"](nan, nan) is False
    assert p == C.decode(C.encode(p)) and r == C.decode(C.encode(r))
    assert hash(C.decode(C.encode(r))) == hash(r)


def test_make_pid_and_make_ref_alike() -> None:
    """The runtime's constructors: the same values from both codecs, the same refusals."""
    rng = random.Random(20261205)
    node = Atom("n@h")
    counters = [0, 1, 2**18 - 1, 2**18, 2**50, 2**64 - 1, 2**64, 2**80 - 1, 2**82 + 5]
    counters += [rng.getrandbits(80) for _ in range(200)]
    for n in counters:
        p, c = P.make_ref(node, 7, n), C.make_ref(node, 7, n)
        assert _same(p, c) and type(c) is Reference and c.ids == p.ids, n
        assert c.ids == (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, (n >> 50) & 0xFFFFFFFF)
        assert P.decode(P.encode(c)) == c  # a ref erl takes: 3 words, the first 18 bits
    for args in [(node, 1, 0, 3), (node, 2**15 - 1, 8191, 2**32 - 1)]:
        p, c = P.make_pid(*args), C.make_pid(*args)
        assert _same(p, c) and type(c) is Pid and c == Pid(*args)
    for f, args in [
        ("make_ref", ("n@h", 1, 2)), ("make_ref", (node, 1.0, 2)), ("make_ref", (node, 1, "2")),
        ("make_ref", (node, 1)), ("make_pid", ("n@h", 1, 0, 3)), ("make_pid", (node, 1, None, 3)),
        ("make_pid", (node, 1, 0)),
    ]:
        p, c = _outcome(getattr(P, f), *args), _outcome(getattr(C, f), *args)
        assert p[0] == c[0] == "error" and p[1] is c[1] is TypeError, (f, args, p, c)


def test_a_plain_sends_repeated_control_is_handed_out_again() -> None:
    # A stream from one process to one mailbox repeats its control bytes: the twin keeps the
    # last plain send's control message and gives that object again (no tuple and Pid made
    # and freed per message). Values are tests/term/test_dist_packet.py's; here, the reuse.
    from tests.term.test_dist_packet import MISSING, _reg_send, header, slots

    entries = slots()
    C.decode_dist_packet(_reg_send(header((0, 9, "capbox"), (0, 10, "a@host"))), entries, MISSING)
    again = _reg_send(header((0, 9, None), (0, 10, None)))
    one, _ = C.decode_dist_packet(again, entries, MISSING)
    two, _ = C.decode_dist_packet(again, entries, MISSING)
    assert two is one
    framed = struct.pack(">I", len(again)) + again  # declined by deliver: handed back
    assert C.decode_dist_sends(framed, entries, MISSING, 0, 1 << 20, lambda to, msg: False,
                               None, {})[2] is one
    C.decode_dist_packet(_reg_send(header((0, 9, "otherbox"), (0, 10, None))), entries, MISSING)
    three, _ = C.decode_dist_packet(again, entries, MISSING)
    assert three is not one and three[3] == Atom("otherbox")
    # what is kept is let go when another control is kept: the slot's reference, the kept
    # refs' and the kept control's
    C.decode_dist_packet(_reg_send(header((0, 9, "keptbox"), (0, 10, "kept@host"))), entries, MISSING)
    box = entries[9]
    held = sys.getrefcount(box)
    C.decode_dist_packet(_reg_send(header((0, 9, "nextbox"), (0, 10, "next@host"))), entries, MISSING)
    assert sys.getrefcount(box) == held - 3
    # other controls are decoded each time: a link, {1, From, To}
    link = b"\x83D" + header((0, 10, None)) + b"h\x03a\x01" + (b"XR\x00" + struct.pack(">III", 1, 0, 5)) * 2
    assert C.decode_dist_packet(link, entries, MISSING)[0] is not C.decode_dist_packet(link, entries, MISSING)[0]
