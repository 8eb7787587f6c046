"""What the hardening work refuses, refused by erl too (OTP 25 and 28): the fuzzers'
findings in the decoder, and the cookie file rule."""

from __future__ import annotations

import os
import struct
import subprocess
from pathlib import Path

import pytest

from pynode.runtime.cookie import CookieError, read_cookie
from pynode.term import IMPLEMENTATIONS, DecodeError

from .erlnode import Epmd, unique
from .oracle import ErlOracle, OracleError
from .otp import Otp

F = b"F" + struct.pack(">d", 2.0)
REFUSED = [
    b"\x83F" + struct.pack(">d", float("nan")),  # NEW_FLOAT_EXT NaN
    b"\x83F" + struct.pack(">d", float("inf")),
    b"\x83l\x00\x00\x00\x01F" + struct.pack(">d", float("-inf")) + b"j",
    b"\x83t\x00\x00\x00\x02a\x01a\x01a\x01a\x02",  # the same key twice
    b"\x83t\x00\x00\x00\x02" + F + b"a\x01" + F + b"a\x02",
]


@pytest.mark.parametrize("data", REFUSED, ids=lambda d: d.hex()[:24])
def test_refused_by_erl_and_by_both_codecs(oracle: ErlOracle, data: bytes) -> None:
    with pytest.raises(OracleError, match="badarg"):
        oracle.reencode(data)
    for impl in IMPLEMENTATIONS.values():
        with pytest.raises(DecodeError):
            impl.decode(data)


def test_kept_apart_by_erl_and_by_us(oracle: ErlOracle) -> None:
    data = b"\x83t\x00\x00\x00\x02" + F + b"a\x01a\x02a\x02"  # #{2.0 => 1, 2 => 2}
    assert oracle.equal(data, oracle.reencode(data))
    for impl in IMPLEMENTATIONS.values():
        assert len(impl.decode(data)) == 2


@pytest.mark.parametrize(("mode", "accepted"), [(0o400, True), (0o600, True), (0o640, False), (0o604, False)])
def test_cookie_file_mode_rule_is_erls(
    otp: Otp, epmd: Epmd, tmp_path: Path, mode: int, accepted: bool
) -> None:
    """erl -sname with only HOME's cookie file: erl starts distribution exactly when
    read_cookie accepts the file."""
    cookie = tmp_path / ".erlang.cookie"
    cookie.write_text("HARDENINGCOOKIE")
    cookie.chmod(mode)
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERL_")}
    env["HOME"] = str(tmp_path)
    env["ERL_EPMD_PORT"] = str(epmd.port)  # this test's own epmd: none may run on 4369 (CI)
    p = subprocess.run(
        [otp.erl, "-noshell", "-name", f"{unique('ck')}@127.0.0.1", "-start_epmd", "false",
         "-epmd_module", "erl_epmd", "-eval",
         "io:format(\"~p~n\", [erlang:get_cookie()]), halt()."],
        capture_output=True, text=True, timeout=120, env=env, cwd=tmp_path,  # its crash dump
    )
    erl_ok = "'HARDENINGCOOKIE'" in p.stdout
    try:
        ours = read_cookie(cookie, create=False) == "HARDENINGCOOKIE"
    except CookieError as e:
        ours = False
        assert "must be accessible by owner only" in str(e)
    assert erl_ok == accepted, (p.stdout, p.stderr)
    assert ours == accepted
    if not accepted:
        assert "must be accessible by owner only" in p.stdout + p.stderr
