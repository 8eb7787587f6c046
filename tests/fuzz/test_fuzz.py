"""The fuzz targets in CI: past findings replayed, then a bounded run of each target.

Each target (fuzz/targets.py) raises only its documented errors; an AssertionError or any
other exception here is a finding. Long runs are atheris' job (benchmarks/FUZZING.md).
"""

from __future__ import annotations

import importlib.util
import os
import random
import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fuzz.replay import mutate
from fuzz.targets import TARGETS
from pynode.term import IMPLEMENTATIONS, DecodeError, Pid, encode

ROOT = Path(__file__).resolve().parents[2]

# Every input a fuzzer found that broke a target, with what was wrong. Each must now pass.
REGRESSIONS = [
    # parse_term(bytes) raised UnicodeDecodeError, not TermSyntaxError, on bad UTF-8
    ("syntax", b"\xf8"),
    # NEW_FLOAT_EXT with NaN bits decoded to nan (erts: badarg), which we then cannot encode
    ("decode", bytes.fromhex("8346ffff000000000069")),
    ("decode", b"\x83F" + struct.pack(">d", float("inf"))),
    ("decode", b"\x83l\x00\x00\x00\x01F" + struct.pack(">d", float("-inf")) + b"j"),
    ("decode", b"\x83c" + b"nan".ljust(31, b"\0")),
    ("dist_packet", b"\x83D\x00\x83F" + struct.pack(">d", float("nan"))),
    # a map with the same key twice decoded (the last won) where erts says badarg; nested
    # maps as keys then did not survive a round trip
    ("decode", b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02"),
    (
        "decode",
        bytes.fromhex(
            "8374000000037700618b6100618374000000037700618b74000000037700618b610861837400000003770061"
            "8b61616161618b6100618374000000037700618b74000000036162618b6100618374000000037700618b7400"
            "0000017700618b6100618374000000077700618b6161616161037700618b618374000000037700618b740000"
            "000377007700618b6100618374000000037700618b6161616161037700618b618374000000037700618b7400"
            "0000037700616161616161614646464646464646464646464646464646464646464646464646464646464646"
            "4646464646464646464646464646464646464646464646464646464646464646616161616161616161616161"
            "61616161616e"
        ),
    ),
    # a bit-syntax size of 10**100 bits: OverflowError (and a 16 GB binary for 10**11 bits)
    ("syntax", b'<<<<<<4,"78:73,378,78\x00":7' + b"9" * 103 + b"5,"),
    ("syntax", b"<<0:99999999999>>"),
    # legal, 16 MiB: the harness's print-and-reparse took minutes (no longer round-tripped)
    ("syntax", b"<<0:134217728>>"),
    # a NAME_ME peer (the harness's own bug: it named the peer on the wrong host)
    ("handshake_acceptor", bytes.fromhex("00114e0000ffffffffff7b7b7b7b0100027b7b7b")),
]


@pytest.mark.parametrize(("target", "data"), REGRESSIONS)
def test_regression(target: str, data: bytes) -> None:
    TARGETS[target](data)


@pytest.mark.parametrize("codec", sorted(IMPLEMENTATIONS))
def test_duplicate_map_keys_are_refused_like_erts(codec: str) -> None:
    impl = IMPLEMENTATIONS[codec]
    f = b"F" + struct.pack(">d", 2.0)
    with pytest.raises(DecodeError, match="duplicate keys"):
        impl.decode(b"\x83t\x00\x00\x00\x02" + f + b"a\x01" + f + b"a\x02")
    # 2.0 and 2 are different keys in Erlang: kept apart, as erl does
    assert len(impl.decode(b"\x83t\x00\x00\x00\x02" + f + b"a\x01a\x02a\x02")) == 2


@pytest.mark.parametrize("codec", sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")])
def test_non_finite_floats_are_refused_like_erts(codec: str, value: float) -> None:
    impl = IMPLEMENTATIONS[codec]
    with pytest.raises(DecodeError, match="finite"):
        impl.decode(b"\x83F" + struct.pack(">d", value))
    run = b"\x83l\x00\x00\x00\x03" + (b"F" + struct.pack(">d", 1.5)) * 2
    with pytest.raises(DecodeError, match="finite"):  # the float-run fast path too
        impl.decode(run + b"F" + struct.pack(">d", value) + b"j")
    assert impl.decode(run + b"F" + struct.pack(">d", 2.0) + b"j") == [1.5, 1.5, 2.0]


def _seeds() -> dict[str, list[bytes]]:
    """Valid inputs to mutate, so a short run reaches past the first length check."""
    terms = [1, -(2**70), 1.5, "x", b"bin", [1, [2]], (1, "a"), {"k": [1.0]}, "\u00e9"]
    name = b"p@host"
    pid = Pid("p@host", 1, 0, 1)
    send = b"p" + encode((22, pid, pid)) + encode(1)
    return {
        "decode": [encode(t) for t in terms],
        "dist_packet": [
            b"\x83D\x00" + encode((2, "", "x"))[1:].join([b"\x83", b""]) + encode(1),
            # a stream of length-prefixed packets, for the batch call (decode_dist_sends)
            (struct.pack(">I", len(send)) + send) * 4 + struct.pack(">I", 0),
        ],
        "syntax": [b"{a, [1, 2.5, <<\"x\">>], #{k => \"s\"}, 'q a', $c, 16#ff}.", b"[1|2]"],
        "framing": [
            b"\x03" + struct.pack(">I", 0),
            b"\x00" + struct.pack(">I", 5) + b"p\x83h\x00" + b"\x00",
            # with the deliver hook (first byte 4): a pass-through SEND_SENDER to a pid
            b"\x04" + struct.pack(">I", len(send)) + send,
        ],
        "handshake_acceptor": [
            b"\x01" + bytes(12),
            struct.pack(">H", 15 + len(name)) + b"N" + struct.pack(">QIH", 0xFFFF, 1, len(name)) + name,
        ],
        "handshake_initiator": [b"\x01" + bytes(8), struct.pack(">H", 3) + b"sok"],
        "epmd_request": [b"\x00\x01n", b"\x00\x03z\x00a", b"\x00\x01\x78"],
    }


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bounded_mutation_run(target: str) -> None:
    """3000 mutated inputs per target, seeded for a reproducible CI run."""
    rng = random.Random(f"pynode-{target}")
    seeds = _seeds()[target]
    fn = TARGETS[target]
    for s in seeds:
        fn(s)
    ran = 0
    for _ in range(3000):
        data = mutate(rng, rng.choice(seeds))
        try:
            fn(data)
        except Exception as e:  # report the input, as atheris would
            raise AssertionError(f"{target} failed on {data!r}: {e!r}") from e
        ran += 1
    assert ran == 3000


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@pytest.mark.parametrize("target", sorted(TARGETS))
def test_bounded_atheris_run(target: str, tmp_path: Path) -> None:
    """A short coverage-guided run of each target (libFuzzer exits non-zero on a finding)."""
    proc = subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), target, "-runs=20000", "-seed=1",
         f"-artifact_prefix={tmp_path}/"],
        capture_output=True, text=True, timeout=600, cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _runs_done(proc.stderr) >= 20000


def _runs_done(stderr: str) -> int:
    """The run count of libFuzzer's closing line, which can end a few runs past -runs
    (a CI run of 20000 read "Done 20003 runs")."""
    done = re.findall(r"^Done (\d+) runs", stderr, re.MULTILINE)
    assert done, stderr[-3000:]
    return int(done[-1])


def _sanitized_env() -> dict[str, str]:
    """atheris' libFuzzer with the ASan runtime, and every CPython allocation through malloc
    (else ASan does not see the small objects pymalloc carves from its arenas)."""
    import shutil

    if importlib.util.find_spec("atheris") is None or shutil.which("clang") is None:
        if os.environ.get("CI"):
            pytest.fail("CI needs atheris and clang (.ci/setup installs them)")
        pytest.skip("needs atheris and clang")
    import atheris  # type: ignore[import-not-found]

    return {
        **os.environ,
        "LD_PRELOAD": str(Path(atheris.path()) / "asan_with_fuzzer.so"),
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": "detect_leaks=0",  # CPython's own allocations are not ours to chase
        "UBSAN_OPTIONS": "print_stacktrace=1",
    }


def _run_sanitized(so: str, target: str, runs: int, tmp_path: Path, env: dict[str, str]) -> Any:
    corpus = tmp_path / "corpus"
    corpus.mkdir(exist_ok=True)
    for i, seed in enumerate(_seeds()[target]):
        (corpus / f"seed{i}").write_bytes(seed)
    return subprocess.run(
        [sys.executable, str(ROOT / "fuzz" / "run.py"), "--ccodec", so, target, f"-runs={runs}",
         "-seed=1", f"-artifact_prefix={tmp_path}/", str(corpus)],
        capture_output=True, text=True, timeout=600, cwd=ROOT, env=env,
    )


@pytest.mark.parametrize("target", ["decode", "dist_packet"])
def test_c_twin_under_libfuzzer_asan_ubsan(target: str, tmp_path: Path) -> None:
    """The C twin built with clang's SanitizerCoverage, ASan and UBSan, fuzzed through the
    target (both codecs compared) with libFuzzer following the C code's coverage."""
    env = _sanitized_env()
    from fuzz.build_sanitized import build

    proc = _run_sanitized(build(str(tmp_path / "build")), target, 20000, tmp_path, env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _runs_done(proc.stderr) >= 20000
    assert "ERROR: AddressSanitizer" not in proc.stderr and "runtime error:" not in proc.stderr


def test_the_sanitized_build_catches_a_read_past_the_input(tmp_path: Path) -> None:
    """The set-up above finds a planted bug: an out-of-bounds read when SMALL_INTEGER_EXT
    holds 77 (proof that ASan sees CPython's objects and libFuzzer reaches the code)."""
    env = _sanitized_env()
    from fuzz.build_sanitized import SOURCE, build

    text = Path(SOURCE).read_text()
    line = "        return PyLong_FromLong(buf[pos]);\n"
    assert text.count(line) == 1, "the SMALL_INTEGER_EXT line moved: update this test"
    planted = tmp_path / "_ccodec.c"
    planted.write_text(text.replace(
        line, "        if (buf[pos] == 77) { volatile unsigned char x = buf[end + 200]; (void)x; }\n" + line
    ))
    proc = _run_sanitized(build(str(tmp_path / "build"), str(planted)), "decode", 2_000_000, tmp_path, env)
    assert proc.returncode != 0
    # 200 bytes past a small object lands in a redzone or in freed memory: either report,
    # as long as it points at the planted line
    summary = [ln for ln in proc.stderr.splitlines() if ln.startswith("SUMMARY: AddressSanitizer:")]
    assert summary, proc.stderr[-3000:]
    assert f"{planted}:" in summary[0] and summary[0].endswith(" in dec"), summary[0]
