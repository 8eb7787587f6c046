"""The magic cookie, found the way erl finds it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path


class CookieError(Exception):
    """The cookie file could not be read or created."""


def cookie_path() -> Path:
    return Path(os.environ.get("HOME") or Path.home()) / ".erlang.cookie"


def _log_warning(message: str) -> None:
    import logging  # here, not at the top: the command line starts faster without it

    logging.getLogger("pynode").warning(message)


def read_cookie(
    path: Path | None = None, *, create: bool = True, warn: Callable[[str], None] | None = None
) -> str:
    """Read ~/.erlang.cookie; create it (20 capital letters, mode 0400) if missing, as erl does.

    A cookie file others can read is a warning, as it is for erl (erl refuses it outright);
    it goes to ``warn`` (default: the "pynode" logger).
    """
    path = path or cookie_path()
    try:
        st = path.stat()
    except FileNotFoundError:
        if not create:
            raise CookieError(f"no cookie file at {path}") from None
        import secrets
        import string

        cookie = "".join(secrets.choice(string.ascii_uppercase) for _ in range(20))
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
            with os.fdopen(fd, "w") as f:
                f.write(cookie)
        except FileExistsError:
            return read_cookie(path, create=False, warn=warn)
        except OSError as e:
            raise CookieError(f"cannot create cookie file {path}: {e}") from None
        return cookie
    if st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        (warn or _log_warning)(f"cookie file {path} is accessible by others (mode {st.st_mode & 0o777:o})")
    try:
        text = path.read_text(encoding="latin-1")
    except OSError as e:
        raise CookieError(f"cannot read cookie file {path}: {e}") from None
    cookie = text.strip()
    if not cookie:
        raise CookieError(f"cookie file {path} is empty")
    return cookie
