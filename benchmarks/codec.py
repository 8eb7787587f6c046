#!/usr/bin/env python3
"""Term codec benchmark: pynode against erlang-py, erlpack and erl's own term_to_binary.

Run from the repository root::

    python3 benchmarks/codec.py            # full run, under two minutes
    python3 benchmarks/codec.py --quick    # CI smoke run, a few seconds

The peers are optional (``pip install erlang-py erlpack``, or ``pip install -e '.[bench]'``);
a peer that is missing, or that cannot handle a case, shows ``n/a``. So does erl when
``escript`` is not on PATH.

It prints one table: microseconds per operation for encode and decode, per library, then the
ratios erlang-py/pynode (above 1: pynode is faster) and pynode/erl (how far behind the VM's
own C codec), and a geometric-mean row of those ratios over the spec corpus.

How the corpus is mapped, so that every library handles the same Erlang term:

* The corpus is built once as pynode terms; ``pynode.encode`` of it is the *canonical
  bytes* of each case.
* Every library decodes those same canonical bytes.
* Every peer encodes its *own native value* for the term: whatever its decoder returns for
  the canonical bytes (erlang-py: ``OtpErlangAtom``, ``OtpErlangBinary``, ``OtpErlangPid``,
  ``OtpErlangReference``, ``bytes`` for a STRING_EXT; erlpack: ``Atom``, ``bytes``, lists).
  The script checks that what the peer encodes decodes (with pynode) to the same term as the
  canonical bytes, and shows ``n/a`` where it cannot encode the term or encodes another one
  (erlpack has no bignums above 64 bits and no NEW_PID_EXT / NEWER_REFERENCE_EXT).
  For the unicode case erlang-py therefore encodes ready-made ``OtpErlangBinary`` values
  (it would turn a ``str`` into a STRING_EXT of UTF-8 bytes, another term), while pynode
  encodes the ``str`` itself, UTF-8 encoding included.
* erl reads the canonical bytes with binary_to_term and then times term_to_binary of that
  term and binary_to_term of the canonical bytes (an escript compiled with ``-mode(compile)``,
  timer:tc, best of the same number of runs). So erl's corpus is exactly the same term, not a
  look-alike rebuilt in Erlang. The footnote says for which cases erl's own bytes differ
  from pynode's (OTP 25 writes latin-1 atoms as ATOM_EXT, large maps come out in hash order).

"1000 small ints" is a *list* of 1000 ints in 0..255, the term erl builds for ``[...]`` of
small ints: erl, pynode and erlang-py all write it as one STRING_EXT (erlpack writes a LIST_EXT
of SMALL_INTEGER_EXTs, the same term). Since that row measures the STRING_EXT fast path
rather than per-integer work, an extra row (not in the geometric mean) times the same 1000
ints as a tuple, one SMALL_INTEGER_EXT each.

Timing follows timeit: the garbage collector is off while timing, each measurement runs
enough calls to last about ``--time`` seconds (0.2 s), and the best of ``--repeat`` (4)
measurements is kept. Within a case the Python libraries are measured in turns, round after
round, so that a slow spell of a shared machine hits them alike and the ratios stay fair.
"""

from __future__ import annotations

import argparse
import gc
import itertools
import math
import os
import platform
import random
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import pynode.term as pt  # noqa: E402
from pynode.term import Atom, Pid, Reference  # noqa: E402

# ---------------------------------------------------------------------------------------------
# corpus


@dataclass
class Case:
    name: str
    term: Any
    extra: bool = False  # shown, but left out of the geometric mean
    canonical: bytes = b""
    decodable: set[str] = field(default_factory=set)  # the libraries that decode it
    native: dict[str, Any] = field(default_factory=dict)  # per library: its value to encode
    notes: dict[str, str] = field(default_factory=dict)


def build_corpus() -> list[Case]:
    r = random.Random(20240531)
    small = [r.randrange(256) for _ in range(1000)]

    names = [f"name_{i:02d}" for i in range(50)]

    alphabet = "abcdefghijklmnopqrstuvwxyzéèüößçñжщыдвлюбов日本語中文한국어ελληνικά😀🚀"

    def ustr() -> str:
        return "".join(r.choice(alphabet) for _ in range(r.randint(4, 16)))

    pid = Pid(Atom("client@host.example"), 91234, 0, 1715012345)
    ref = Reference(Atom("server@host.example"), 1715000001, (178034, 2631929859, 3092361510))
    rpc = (
        Atom("$gen_call"),
        (pid, ref),
        (Atom("call"), Atom("lists"), Atom("seq"), [1, 10], pid),
    )

    nested: Any = []
    for _ in range(100):
        nested = [nested]

    return [
        Case("1000 small ints (list)", small),
        Case("1000 ints in +-2^31", [r.randint(-(2**31), 2**31 - 1) for _ in range(1000)]),
        Case("100 ints near 2^100", [2**100 + r.randint(-(2**40), 2**40) for _ in range(100)]),
        Case("1000 floats", [r.uniform(-1e6, 1e6) for _ in range(1000)]),
        Case("1000 atoms (50 names)", [Atom(r.choice(names)) for _ in range(1000)]),
        Case("1000 binaries of 32 B", [r.randbytes(32) for _ in range(1000)]),
        Case("one 1 MiB binary", r.randbytes(1 << 20)),
        Case("rpc message ($gen_call)", rpc),
        Case("map of 1000 binary keys", {f"key_{i:05d}".encode(): i for i in range(1000)}),
        Case("nested lists, depth 100", nested),
        Case("1000 unicode strings", [ustr() for _ in range(1000)]),
        Case("1000 small ints (tuple)", tuple(small), extra=True),
    ]


# ---------------------------------------------------------------------------------------------
# libraries


@dataclass
class Lib:
    name: str
    encode: Callable[[Any], bytes] | None
    decode: Callable[[bytes], Any] | None
    version: str
    missing: str = ""


def load_libs() -> list[Lib]:
    libs = [Lib("pynode", pt.encode, pt.decode, f"implementation={pt.implementation}")]
    try:
        import erlang  # erlang-py

        libs.append(
            Lib("erlang-py", erlang.term_to_binary, erlang.binary_to_term, _version("erlang-py"))
        )
    except Exception as e:  # pragma: no cover - depends on the environment
        libs.append(Lib("erlang-py", None, None, "", f"missing ({type(e).__name__}: {e})"))
    try:
        import erlpack

        libs.append(Lib("erlpack", erlpack.pack, erlpack.unpack, _version("erlpack")))
    except Exception as e:  # pragma: no cover - depends on the environment
        libs.append(Lib("erlpack", None, None, "", f"missing ({type(e).__name__}: {e})"))
    return libs


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def prepare(cases: list[Case], libs: list[Lib]) -> None:
    """Canonical bytes per case, and each peer's native value (checked to be the same term)."""
    for c in cases:
        c.canonical = pt.encode(c.term)
        want = pt.decode(c.canonical)
        for lib in libs:
            if lib.encode is None or lib.decode is None:
                continue
            try:
                value = lib.decode(c.canonical)
            except Exception as e:
                c.notes[lib.name] = f"cannot decode: {type(e).__name__}: {e}"[:100]
                continue
            c.decodable.add(lib.name)
            if lib.name == "pynode":
                value = c.term
            try:
                got = pt.decode(lib.encode(value))
            except Exception as e:
                c.notes[lib.name] = f"cannot encode: {type(e).__name__}: {e}"[:100]
                continue
            if got != want:
                c.notes[lib.name] = "encodes another term"
                continue
            c.native[lib.name] = value


# ---------------------------------------------------------------------------------------------
# timing


def _run(f: Callable[[Any], Any], x: Any, n: int) -> float:
    clock = time.perf_counter
    t0 = clock()
    for _ in itertools.repeat(None, n):
        f(x)
    return clock() - t0


def time_calls(
    jobs: dict[str, tuple[Callable[[Any], Any], Any]], target: float, repeat: int
) -> dict[str, float]:
    """Microseconds per call of each job's ``f(x)``: best of ``repeat`` runs of ~``target`` s.

    The runs of the jobs are interleaved (round after round), so that a slow spell of a busy
    machine hits every library alike instead of whichever happened to be running.
    """
    gc_was_on = gc.isenabled()
    gc.disable()
    try:
        counts: dict[str, int] = {}
        for key, (f, x) in jobs.items():
            n = 1
            while (dt := _run(f, x, n)) < target / 10:
                n *= 10
            counts[key] = max(1, round(n * target / dt))
        best = dict.fromkeys(jobs, math.inf)
        for _ in range(repeat):
            for key, (f, x) in jobs.items():
                best[key] = min(best[key], _run(f, x, counts[key]))
    finally:
        if gc_was_on:
            gc.enable()
    return {key: best[key] / counts[key] * 1e6 for key in jobs}


ESCRIPT = r"""#!/usr/bin/env escript
%% Times term_to_binary/binary_to_term on the terms in DIR/<i>.etf (written by codec.py).
-mode(compile).

main([Dir, TargetUs, Reps, Count]) ->
    io:format("OTP ~s ~s~n", [erlang:system_info(otp_release), erlang:system_info(version)]),
    T = list_to_integer(TargetUs),
    R = list_to_integer(Reps),
    lists:foreach(fun(I) -> run(Dir, I, T, R) end, lists:seq(0, list_to_integer(Count) - 1)).

run(Dir, I, Target, Reps) ->
    {ok, B} = file:read_file(filename:join(Dir, integer_to_list(I) ++ ".etf")),
    Term = binary_to_term(B),
    Same = case term_to_binary(Term) of B -> same; _ -> differs end,
    E = bench(fun erlang:term_to_binary/1, Term, Target, Reps),
    D = bench(fun erlang:binary_to_term/1, B, Target, Reps),
    io:format("R ~b ~.6f ~.6f ~s~n", [I, E, D, Same]).

bench(F, X, Target, Reps) ->
    N = calibrate(F, X, 1, Target),
    Ts = [element(1, timer:tc(fun() -> loop(N, F, X) end)) || _ <- lists:seq(1, Reps)],
    lists:min(Ts) / N.

calibrate(F, X, N, Target) ->
    {T, _} = timer:tc(fun() -> loop(N, F, X) end),
    case T >= Target div 10 of
        true -> max(1, round(N * Target / max(T, 1)));
        false -> calibrate(F, X, N * 10, Target)
    end.

loop(0, _, _) -> ok;
loop(N, F, X) -> _ = F(X), loop(N - 1, F, X).
"""


def time_erl(
    cases: list[Case], target: float, repeat: int
) -> tuple[str, dict[int, tuple[float, float, str]]]:
    """Run the escript; return (OTP version or why it is missing, {case index: results})."""
    escript = shutil.which("escript")
    if escript is None:
        return "missing (no escript on PATH)", {}
    with tempfile.TemporaryDirectory(prefix="pynode-bench-") as tmp:
        for i, c in enumerate(cases):
            Path(tmp, f"{i}.etf").write_bytes(c.canonical)
        script = Path(tmp, "bench.escript")
        script.write_text(ESCRIPT)
        try:
            proc = subprocess.run(
                [escript, str(script), tmp, str(int(target * 1e6)), str(repeat), str(len(cases))],
                capture_output=True,
                text=True,
                timeout=600,
            )
        except (OSError, subprocess.TimeoutExpired) as e:
            return f"failed ({type(e).__name__}: {e})", {}
    if proc.returncode != 0:
        return f"failed (exit {proc.returncode}: {proc.stderr.strip()[:200]})", {}
    version = "?"
    results: dict[int, tuple[float, float, str]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if parts[:1] == ["OTP"]:
            version = " ".join(parts[1:])
        elif parts[:1] == ["R"] and len(parts) == 5:
            results[int(parts[1])] = (float(parts[2]), float(parts[3]), parts[4])
    return version, results


# ---------------------------------------------------------------------------------------------
# report


def fmt_us(v: float | None) -> str:
    if v is None:
        return "n/a"
    if v >= 1000:
        return f"{v:,.0f}"
    if v >= 10:
        return f"{v:.1f}"
    return f"{v:.2f}"


def fmt_ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def geomean(values: list[float | None]) -> float | None:
    vals = [v for v in values if v is not None and v > 0]
    if not vals:
        return None
    return math.exp(sum(math.log(v) for v in vals) / len(vals))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="short runs, for a CI smoke test")
    ap.add_argument("--time", type=float, help="seconds per measurement (default 0.2)")
    ap.add_argument("--repeat", type=int, help="measurements per number, best kept (4)")
    ap.add_argument("--no-erl", action="store_true", help="skip timing erl")
    args = ap.parse_args()
    target = args.time if args.time is not None else (0.01 if args.quick else 0.2)
    repeat = args.repeat if args.repeat is not None else (1 if args.quick else 4)

    started = time.perf_counter()
    libs = load_libs()
    cases = build_corpus()
    prepare(cases, libs)

    print(
        f"Python {platform.python_version()} ({platform.python_implementation()}), "
        f"{platform.machine()}; {target:g} s per measurement, best of {repeat}"
    )
    print(f"pynode.term.implementation = {pt.implementation!r}")
    for lib in libs[1:]:
        print(f"{lib.name}: {lib.missing or lib.version}")
    load = os.getloadavg()[0]
    if load > 0.5:
        print(
            f"warning: load average {load:.2f} before the start: other work on this machine "
            "makes the numbers noisy (the libraries are timed in turns, so ratios suffer less)"
        )

    # us[lib][case index] = (encode, decode)
    us: dict[str, dict[int, tuple[float | None, float | None]]] = {lib.name: {} for lib in libs}
    progress = sys.stderr.isatty()
    for i, c in enumerate(cases):
        if progress:
            print(f"\rtiming {i + 1}/{len(cases)}: {c.name:<30}", end="", file=sys.stderr)
        jobs: dict[str, tuple[Callable[[Any], Any], Any]] = {}
        for lib in libs:
            if lib.name in c.decodable:
                jobs[f"{lib.name} decode"] = (lib.decode, c.canonical)
            if lib.name in c.native:
                jobs[f"{lib.name} encode"] = (lib.encode, c.native[lib.name])
        got = time_calls(jobs, target, repeat)
        for lib in libs:
            us[lib.name][i] = (got.get(f"{lib.name} encode"), got.get(f"{lib.name} decode"))

    if progress:
        print(f"\rtiming erl{'':<40}", end="\r", file=sys.stderr)
    if args.no_erl:
        erl_version, erl = "skipped (--no-erl)", {}
    else:
        erl_version, erl = time_erl(cases, target, repeat)
    print(f"erl: {erl_version}")
    us["erl"] = {i: (erl[i][0], erl[i][1]) if i in erl else (None, None) for i in range(len(cases))}

    # the table
    groups = ["pynode", "erlang-py", "erlpack", "erl"]
    w0, w = 26, 9
    head1 = f"{'':<{w0}}" + "".join(f" | {g + ' us/op':^{2 * w + 1}}" for g in groups)
    head1 += f" | {'erlang-py/pynode':^{2 * w + 1}} | {'pynode/erl':^{2 * w + 1}}"
    head2 = f"{'case':<{w0}}" + (f" | {'encode':>{w}} {'decode':>{w}}") * (len(groups) + 2)
    print()
    print(head1)
    print(head2)
    print("-" * len(head2))
    r_py: list[tuple[float | None, float | None]] = []
    r_erl: list[tuple[float | None, float | None]] = []
    for i, c in enumerate(cases):
        if c.extra and i > 0 and not cases[i - 1].extra:
            print("-" * len(head2))
        row = f"{c.name + (' *' if c.extra else ''):<{w0}}"
        for g in groups:
            e, d = us[g][i]
            row += f" | {fmt_us(e):>{w}} {fmt_us(d):>{w}}"
        pe, pd = us["pynode"][i]
        xe, xd = us["erlang-py"][i]
        ee, ed = us["erl"][i]
        rp = (ratio(xe, pe), ratio(xd, pd))
        re_ = (ratio(pe, ee), ratio(pd, ed))
        if not c.extra:
            r_py.append(rp)
            r_erl.append(re_)
        row += f" | {fmt_ratio(rp[0]):>{w}} {fmt_ratio(rp[1]):>{w}}"
        row += f" | {fmt_ratio(re_[0]):>{w}} {fmt_ratio(re_[1]):>{w}}"
        print(row)
    print("-" * len(head2))
    gp = (geomean([a for a, _ in r_py]), geomean([b for _, b in r_py]))
    ge = (geomean([a for a, _ in r_erl]), geomean([b for _, b in r_erl]))
    row = f"{'geometric mean':<{w0}}" + f" | {'':>{w}} {'':>{w}}" * len(groups)
    row += f" | {fmt_ratio(gp[0]):>{w}} {fmt_ratio(gp[1]):>{w}}"
    row += f" | {fmt_ratio(ge[0]):>{w}} {fmt_ratio(ge[1]):>{w}}"
    print(row)

    print()
    print("erlang-py/pynode above 1: pynode is faster (project target: >= 2x, both directions).")
    print("pynode/erl: how many times slower than erl's own C codec.")
    print("* not in the geometric mean (the list row above is the spec's case).")
    for c in cases:
        for lib, note in sorted(c.notes.items()):
            print(f"n/a: {lib} on {c.name!r}: {note}")
    differ = [c.name for i, c in enumerate(cases) if i in erl and erl[i][2] != "same"]
    if erl:
        print(
            f"erl's term_to_binary bytes differ from pynode's (same term) for: "
            f"{', '.join(differ) if differ else 'none'}"
        )
    print(f"total {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
