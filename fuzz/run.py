"""Run one fuzz target under atheris (libFuzzer for Python).

    .venv/bin/python fuzz/run.py TARGET [libFuzzer options, e.g. -runs=10000000 corpus/]

The targets are in fuzz/targets.py; any exception other than a target's documented errors
is a finding: libFuzzer writes the input to crash-*, which becomes a regression test.
"""

from __future__ import annotations

import os
import sys

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

with atheris.instrument_imports():
    import pynode.epmd.core  # noqa: F401
    import pynode.epmd.registry  # noqa: F401
    import pynode.protocol.framing  # noqa: F401
    import pynode.protocol.handshake  # noqa: F401
    import pynode.term._codec_py  # noqa: F401
    import pynode.term.syntax  # noqa: F401
    from fuzz.targets import TARGETS


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in TARGETS:
        sys.exit(f"usage: run.py {{{','.join(TARGETS)}}} [libFuzzer options]")
    target = TARGETS[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
