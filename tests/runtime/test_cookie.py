"""The cookie file is read with erl's rules (lib/kernel/src/auth.erl), refusals included."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from pynode.runtime.cookie import CookieError, read_cookie


def _cookie(tmp_path: Path, text: str, mode: int = 0o400) -> Path:
    p = tmp_path / ".erlang.cookie"
    p.write_text(text, encoding="latin-1")
    p.chmod(mode)
    return p


@pytest.mark.parametrize("mode", [0o400, 0o600, 0o700])
def test_owner_only_modes_are_read(tmp_path: Path, mode: int) -> None:
    assert read_cookie(_cookie(tmp_path, "SECRET\n", mode)) == "SECRET"


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o644, 0o440, 0o410, 0o401, 0o666])
def test_any_group_or_other_bit_is_refused_as_erl_does(tmp_path: Path, mode: int) -> None:
    with pytest.raises(CookieError, match="must be accessible by owner only"):
        read_cookie(_cookie(tmp_path, "SECRET", mode))


def test_not_a_regular_file(tmp_path: Path) -> None:
    d = tmp_path / ".erlang.cookie"
    d.mkdir(mode=0o700)
    with pytest.raises(CookieError, match="not a regular file"):
        read_cookie(d)


@pytest.mark.parametrize(("text", "error"), [
    ("", "empty"), ("\n\n", "empty"), ("AB\tC", "bad characters"), ("AB\nCD", "bad characters"),
    ("AB\x00", "bad characters"), ("caf\xe9", "bad characters"),
])
def test_bad_contents(tmp_path: Path, text: str, error: str) -> None:
    with pytest.raises(CookieError, match=error):
        read_cookie(_cookie(tmp_path, text))


def test_trailing_newlines_and_inner_spaces(tmp_path: Path) -> None:
    assert read_cookie(_cookie(tmp_path, "A B~C\r\n")) == "A B~C"


def test_created_owner_only_when_missing(tmp_path: Path) -> None:
    p = tmp_path / ".erlang.cookie"
    cookie = read_cookie(p)
    assert len(cookie) == 20 and cookie.isalpha() and cookie.isupper()
    assert stat.S_IMODE(os.stat(p).st_mode) == 0o400
    assert read_cookie(p) == cookie
    with pytest.raises(CookieError, match="no cookie file"):
        read_cookie(tmp_path / "other", create=False)
