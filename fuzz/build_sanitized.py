"""Build the C twin for libFuzzer: clang, SanitizerCoverage, ASan and UBSan.

    .venv/bin/python fuzz/build_sanitized.py OUT_DIR

writes OUT_DIR/_ccodec<EXT_SUFFIX>, which ``fuzz/run.py --ccodec`` loads in place of the
installed twin. Run it with atheris' ASan runtime preloaded and ``PYTHONMALLOC=malloc``, or
ASan sees none of the small objects CPython allocates from its own arenas
(benchmarks/FUZZING.md has the command). Needs clang (Debian: ``clang``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SOURCE = os.path.join(HERE, "pynode", "term", "_ccodec.c")
FLAGS = [
    "-O1", "-g", "-fno-omit-frame-pointer", "-shared", "-fPIC",
    # coverage for libFuzzer (atheris' own runtime links the fuzzer itself), memory errors,
    # and undefined behaviour made fatal so libFuzzer records the input
    "-fsanitize=fuzzer-no-link,address,undefined", "-fno-sanitize-recover=undefined",
]


def build(out_dir: str, source: str = SOURCE) -> str:
    cc = shutil.which("clang")
    if cc is None:
        raise SystemExit("clang not found (Debian: apt-get install clang)")
    os.makedirs(out_dir, exist_ok=True)
    out = os.path.join(out_dir, "_ccodec" + sysconfig.get_config_var("EXT_SUFFIX"))
    cmd = [cc, *FLAGS, "-I", sysconfig.get_paths()["include"], source, "-lz", "-o", out]
    subprocess.run(cmd, check=True)
    return out


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    print(build(sys.argv[1]))
