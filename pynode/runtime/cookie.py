"""The magic cookie, found the way erl finds it."""

from __future__ import annotations

import os
import stat

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms
if TYPE_CHECKING:
    from collections.abc import Callable


class CookieError(Exception):
    """The cookie file could not be read or created."""


def cookie_path() -> str:
    # os.path, not pathlib: pathlib costs the CLI's cold start some 6 ms of imports
    return os.path.join(os.environ.get("HOME") or os.path.expanduser("~"), ".erlang.cookie")


def read_cookie(
    path: str | os.PathLike[str] | None = None, *, create: bool = True, warn: Callable[[str], None] | None = None
) -> str:
    """Read ~/.erlang.cookie; create it (20 capital letters, mode 0400) if missing, as erl does.

    Refused as erl's auth.erl refuses them (CookieError): a file that is not a regular file,
    one the group or others may access at all (mode & 077, on Unix), a cookie with characters
    outside printable ASCII (trailing newlines and spaces aside), an empty one. ``warn`` is
    kept for callers; nothing is only a warning any more.
    """
    path = path or cookie_path()
    try:
        st = os.stat(path)
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
    if not stat.S_ISREG(st.st_mode):
        raise CookieError(f"cookie file {path} is not a regular file")
    if os.name == "posix" and st.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise CookieError(
            f"cookie file {path} must be accessible by owner only (mode {st.st_mode & 0o777:o}; "
            f"erl refuses it too: chmod 400 {path})"
        )
    try:
        with open(path, encoding="latin-1") as f:
            text = f.read()
    except OSError as e:
        raise CookieError(f"cannot read cookie file {path}: {e}") from None
    cookie = text.strip(" \r\n")
    if not cookie:
        raise CookieError(f"cookie file {path} is empty")
    if not all(" " <= ch <= "~" for ch in cookie):
        raise CookieError(f"bad characters in cookie file {path} (printable ASCII only, as erl)")
    return cookie
