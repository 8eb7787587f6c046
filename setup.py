"""The optional C twin of the term codec; everything else about the project is in pyproject.toml.

``pip install .`` (or ``-e .``) compiles ``pynode.term._ccodec`` when a C compiler, the Python
headers and zlib are there, and quietly installs pure Python when they are not: pynode.term
falls back to ``_codec_py`` whenever ``_ccodec`` cannot be imported. Set
``PYNODE_PURE_PYTHON=1`` at install time to skip the build altogether (at run time the same
variable makes an installed C twin go unused).
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
            self._skip(e)

    @staticmethod
    def _skip(e: Exception) -> None:
        print(
            f"WARNING: the C codec (pynode.term._ccodec) was not built ({type(e).__name__}: {e});"
            " pynode will use its pure-Python codec.",
            file=sys.stderr,
        )


def _ext_modules() -> list[Extension]:
    if os.environ.get("PYNODE_PURE_PYTHON", "") not in ("", "0"):
        return []
    if platform.python_implementation() != "CPython":
        return []
    return [
        Extension(
            "pynode.term._ccodec",
            sources=["pynode/term/_ccodec.c"],
            libraries=["zlib" if sys.platform == "win32" else "z"],
        )
    ]


setup(ext_modules=_ext_modules(), cmdclass={"build_ext": OptionalBuildExt})
