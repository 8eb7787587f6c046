"""Run one fuzz target under atheris (libFuzzer for Python).

    .venv/bin/python fuzz/run.py TARGET [libFuzzer options, e.g. -runs=10000000 corpus/]
    .venv/bin/python fuzz/run.py --ccodec SO TARGET [libFuzzer options]

The targets are in fuzz/targets.py; any exception other than a target's documented errors
is a finding: libFuzzer writes the input to crash-*, which becomes a regression test.

With ``--ccodec`` the C twin built by ``fuzz/build_sanitized.py`` replaces the installed
one and the Python modules are not instrumented, so libFuzzer follows the C code's
coverage; run it with atheris' ASan runtime preloaded (benchmarks/FUZZING.md).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import atheris

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_C_NAME = "pynode.term._ccodec"


class _SanitizedTwin(importlib.abc.MetaPathFinder):
    """Finds pynode.term._ccodec at the sanitized build's path instead of the package's."""

    def __init__(self, path: str) -> None:
        self.path = path

    def find_spec(self, fullname: str, path: object = None, target: ModuleType | None = None):  # type: ignore[no-untyped-def]
        if fullname != _C_NAME:
            return None
        loader = importlib.machinery.ExtensionFileLoader(fullname, self.path)
        return importlib.util.spec_from_file_location(fullname, self.path, loader=loader)


def _load_targets(ccodec: str | None):  # type: ignore[no-untyped-def]
    if ccodec is not None:
        sys.meta_path.insert(0, _SanitizedTwin(os.path.abspath(ccodec)))
        from fuzz.targets import TARGETS
        from pynode.term import IMPLEMENTATIONS

        if getattr(IMPLEMENTATIONS.get("c"), "__file__", None) != os.path.abspath(ccodec):
            sys.exit(f"the C twin at {ccodec} did not load")
        return TARGETS
    with atheris.instrument_imports():
        import pynode.epmd.core  # noqa: F401
        import pynode.epmd.registry  # noqa: F401
        import pynode.protocol.framing  # noqa: F401
        import pynode.protocol.handshake  # noqa: F401
        import pynode.term._codec_py  # noqa: F401
        import pynode.term.syntax  # noqa: F401
        from fuzz.targets import TARGETS
    return TARGETS


def main() -> None:
    ccodec = None
    if len(sys.argv) > 2 and sys.argv[1] == "--ccodec":
        ccodec = sys.argv[2]
        del sys.argv[1:3]
    targets = _load_targets(ccodec)
    if len(sys.argv) < 2 or sys.argv[1] not in targets:
        sys.exit(f"usage: run.py [--ccodec SO] {{{','.join(targets)}}} [libFuzzer options]")
    target = targets[sys.argv.pop(1)]
    atheris.Setup(sys.argv, target)
    atheris.Fuzz()


if __name__ == "__main__":
    main()
