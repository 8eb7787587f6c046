"""Just enough of io_lib:format to print what remote processes send to our group leader."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from ..term import Atom, Pid
from ..term.syntax import format_term

_DIRECTIVE = re.compile(r"~(-?\d+|\*)?(?:\.(-?\d+|\*)?)?(?:\.(.))?([tlk]*)([~ncfegswpWPBXx#bi+])")


def chars_to_text(chars: Any) -> str:
    """io chardata (binary, nested lists of chars and binaries) as text."""
    if isinstance(chars, bytes):
        return chars.decode("utf-8", "replace")
    if isinstance(chars, list):
        return "".join(chr(c) if isinstance(c, int) else chars_to_text(c) for c in chars)
    if isinstance(chars, int):
        return chr(chars)
    if isinstance(chars, str):
        return str(chars)
    return format_term(chars)


def _text_arg(arg: Any) -> str:
    if isinstance(arg, Atom):
        return str(arg)
    return chars_to_text(arg)


def io_lib_format(fmt: Any, args: Any) -> str:
    """Format like io_lib:format/2 for the common directives (~p ~w ~s ~n ~~ ~b ~e ~f ~g
    ~c ~i and field widths); anything else is shown with its arguments, never dropped."""
    text = chars_to_text(fmt)
    args = list(args) if isinstance(args, list) else [args]
    out: list[str] = []
    pos = 0
    try:
        for m in _DIRECTIVE.finditer(text):
            out.append(text[pos : m.start()])
            pos = m.end()
            width = m.group(1)
            if width == "*":
                width = str(args.pop(0))
            prec = m.group(2)
            if prec == "*":
                prec = str(args.pop(0))
            d = m.group(5)
            if d == "~":
                s = "~"
            elif d == "n":
                s = "\n"
            elif d in "pPwW":
                arg = args.pop(0)
                if d in "PW":
                    args.pop(0)
                s = format_term(arg)
            elif d == "s":
                s = _text_arg(args.pop(0))
            elif d == "c":
                s = chr(args.pop(0)) * (int(prec) if prec else 1)
            elif d in "bBxX#+":
                n = args.pop(0)
                base = int(prec) if prec else 10
                s = _int_base(n, base, d in "bx")
                if d in "xX":
                    s = chars_to_text(args.pop(0)) + s
            elif d == "i":
                args.pop(0)
                s = ""
            elif d in "feg":
                x = float(args.pop(0))
                p = int(prec) if prec else 6
                s = f"{x:.{p}{d}}"
            else:  # pragma: no cover - the regex admits nothing else
                s = m.group(0)
            if width and width.lstrip("-").isdigit():
                w = int(width)
                s = s.ljust(-w) if w < 0 else s.rjust(w)
            out.append(s)
        out.append(text[pos:])
    except (IndexError, ValueError, TypeError):
        return f"{text} {format_term(args)}"
    return "".join(out)


def _int_base(n: int, base: int, lower: bool) -> str:
    if not 2 <= base <= 36:
        return str(n)
    digits = "0123456789abcdefghijklmnopqrstuvwxyz" if lower else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    if n == 0:
        return "0"
    sign = "-" if n < 0 else ""
    n = abs(n)
    out = []
    while n:
        n, r = divmod(n, base)
        out.append(digits[r])
    return sign + "".join(reversed(out))


# -- the io protocol, as a group leader answers it ---------------------------------------------

_IO_REQUEST = Atom("io_request")
_IO_REPLY = Atom("io_reply")
_OK = Atom("ok")
_PUT_CHARS = Atom("put_chars")
_IO_LIB = Atom("io_lib")
_FORMAT = Atom("format")
_ENOTSUP = (Atom("error"), Atom("enotsup"))


def io_reply(request: Any, output: Callable[[str], None]) -> Any:
    """Carry out one io request (io:format, io:put_chars...) by writing its text to
    ``output``, and return the reply term; input requests get eof (a remote process must
    never block on our group leader)."""
    if type(request) is tuple and request:
        tag = request[0]
        if tag == _PUT_CHARS:
            if len(request) in (4, 5) and request[-3] == _IO_LIB and request[-2] == _FORMAT:
                # {put_chars, [Enc,] io_lib, format, [Format, Args]}: format it here
                fa = request[-1]
                if type(fa) is list and len(fa) == 2:
                    output(io_lib_format(fa[0], fa[1]))
                    return _OK
                return _ENOTSUP
            if len(request) in (4, 5):  # another M:F:A we cannot apply here
                return _ENOTSUP
            output(chars_to_text(request[-1]))
            return _OK
        if tag == Atom("requests"):
            for r in request[1]:
                res = io_reply(r, output)
                if res != _OK:
                    return res
            return _OK
        if tag in (Atom("get_chars"), Atom("get_line"), Atom("get_until")):
            return Atom("eof")
        if tag == Atom("getopts"):
            return []
        if tag == Atom("setopts"):
            return _OK
    return (Atom("error"), Atom("request"))


def serve_io_request(message: Any, output: Callable[[str], None]) -> tuple[Pid, Any] | None:
    """For a message to a group leader: ``(requester, io_reply message)`` when it is an io
    request (its text already written to ``output``), else None."""
    if type(message) is tuple and len(message) == 4 and message[0] == _IO_REQUEST:
        _, from_pid, reply_as, request = message
        reply = io_reply(request, output)
        if type(from_pid) is Pid:
            return from_pid, (_IO_REPLY, reply_as, reply)
    return None
