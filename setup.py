"""The optional compiled parts; everything else about the project is in pyproject.toml.

``pip install .`` (or ``-e .``) compiles ``pynode.term._ccodec`` (the C twin of the term codec)
and, on POSIX, ``pynode.runtime._spin`` (the busy wait's poll without the GIL) when a C
compiler, the Python headers and zlib are there, and quietly installs pure Python when they
are not: pynode.term falls back to ``_codec_py`` whenever ``_ccodec`` cannot be imported, the
busy wait to its Python loop. Set ``PYNODE_PURE_PYTHON=1`` at install time to skip the build
altogether (at run time the same variable makes installed compiled modules go unused).
"""

from __future__ import annotations

import os
import platform
import sys

from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext


class OptionalBuildExt(build_ext):
    """build_ext that reports a failed compile and goes on without the extension."""

    def build_extensions(self) -> None:
        if self.compiler.compiler_type == "unix":
            for ext in self.extensions:
                ext.extra_compile_args = ["-Wall", "-Wextra"]
        super().build_extensions()

    def run(self) -> None:
        try:
            super().run()
        except Exception as e:  # no compiler at all (DistutilsPlatformError and the like)
            self._skip(e)

    def build_extension(self, ext: Extension) -> None:
        try:
            super().build_extension(ext)
        except Exception as e:  # CCompilerError, missing headers or zlib, ...
            self._skip(e, ext.name)

    @staticmethod
    def _skip(e: Exception, name: str = "pynode.term._ccodec, pynode.runtime._spin") -> None:
        print(
            f"WARNING: {name} was not built ({type(e).__name__}: {e});"
            " pynode will use pure Python in its place.",
            file=sys.stderr,
        )


def _ext_modules() -> list[Extension]:
    if os.environ.get("PYNODE_PURE_PYTHON", "") not in ("", "0"):
        return []
    if platform.python_implementation() != "CPython":
        return []
    exts = [
        Extension(
            "pynode.term._ccodec",
            sources=["pynode/term/_ccodec.c"],
            libraries=["zlib" if sys.platform == "win32" else "z"],
        )
    ]
    if os.name == "posix":  # poll(2) and sched_yield(2)
        exts.append(Extension("pynode.runtime._spin", sources=["pynode/runtime/_spin.c"]))
    return exts


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
