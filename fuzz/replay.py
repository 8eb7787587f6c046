"""Replay corpus files (and random mutations of each) through a fuzz target, without atheris.

    python fuzz/replay.py TARGET DIR_OR_FILE... [--mutations N] [--seed S]

For runs where libFuzzer's coverage cannot work, such as the C twin built with
-fsanitize=address,undefined and the sanitizer runtime preloaded (benchmarks/FUZZING.md):
the corpora of the coverage-guided runs carry the depth, the mutations add breadth.
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from fuzz.targets import TARGETS  # noqa: E402


def mutate(rng: random.Random, data: bytes) -> bytes:
    """A few byte-level edits: set, insert, delete, duplicate a run, an interesting byte."""
    b = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(5)
        if op == 0 and b:
            b[rng.randrange(len(b))] = rng.randrange(256)
        elif op == 1:
            b.insert(rng.randint(0, len(b)), rng.randrange(256))
        elif op == 2 and b:
            del b[rng.randrange(len(b))]
        elif op == 3 and b:
            i = rng.randrange(len(b))
            b[i:i] = b[i : i + rng.randint(1, 8)]
        elif b:
            b[rng.randrange(len(b))] = rng.choice((0, 0xFF, 0x7F, 0x80, 1))
    return bytes(b)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("target", choices=sorted(TARGETS))
    ap.add_argument("paths", nargs="+")
    ap.add_argument("--mutations", type=int, default=0, help="random mutations per file")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    files: list[Path] = []
    for p in map(Path, args.paths):
        files += sorted(f for f in p.iterdir() if f.is_file()) if p.is_dir() else [p]
    rng = random.Random(args.seed)
    fn = TARGETS[args.target]
    runs = 0
    t0 = time.monotonic()
    for f in files:
        try:
            data = f.read_bytes()
        except FileNotFoundError:  # a live fuzzer replaced it meanwhile
            continue
        for i in range(args.mutations + 1):
            inp = data if i == 0 else mutate(rng, data)
            try:
                fn(inp)
            except Exception:
                print(f"FINDING in {f} (mutation {i}): {inp!r}", file=sys.stderr)
                raise
            runs += 1
    print(f"{args.target}: {runs} executions of {len(files)} files in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
