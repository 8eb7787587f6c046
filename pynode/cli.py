"""The ``pynode`` command: talk to Erlang nodes from a shell (erl_call's jobs, and more).

::

    pynode rpc NODE M:F/A [ARG ...]     pynode rpc NODE 'M:F(Arg, ...)'    pynode rpc NODE M F [ARG ...]
    pynode eval NODE 'X = 1 + 2, X * 2.'
    pynode ping NODE                    pynode names [HOST]
    pynode send NODE NAME TERM          pynode call NODE NAME TERM
    pynode serve MODULE [--name NAME]

Results print in Erlang syntax (or JSON with ``--json``); failures print one line on stderr
and exit with a code that says what kind of failure it was (see ``EXIT_CODES``).

The one-shot commands run on :class:`~pynode.runtime.oneshot.OneShot` (a blocking socket,
no event loop), so a call from a shell costs little more than starting Python; only
``serve`` imports the anyio Node. Heavy modules are imported where they are needed.
"""

from __future__ import annotations

import gc
import os
import sys

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    import argparse
    from collections.abc import Callable, Mapping, Sequence
    from types import ModuleType
    from typing import Any, NoReturn

    from .runtime.oneshot import OneShot


# No cyclic garbage collection while this module's imports run: they allocate tens of
# thousands of long-lived objects, and the collections that triggers (which find nothing to
# free) cost milliseconds of every start of the command. Restored right after the imports.
_gc_was_enabled = gc.isenabled()
gc.disable()

from .protocol._common import Frozen  # noqa: E402
from .runtime.cookie import CookieError, read_cookie  # noqa: E402
from .runtime.errors import (  # noqa: E402
    CallError,
    ConnectError,
    EpmdError,
    NoConnection,
    NodeError,
    RemoteError,
    RpcError,
    RpcTimeout,
)
from .runtime.naming import default_epmd_port, make_node_name  # noqa: E402
from .term import (  # noqa: E402
    Atom,
    BitString,
    ExportFun,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    Struct,
)
from .term.syntax import TermSyntaxError, format_term, parse_term  # noqa: E402
from .term.types import elixir_module  # noqa: E402

if _gc_was_enabled:
    gc.enable()


__all__ = [
    "EXIT_CONNECT",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_REMOTE",
    "EXIT_USAGE",
    "Call",
    "CliError",
    "ConnectFailure",
    "RemoteFailure",
    "UsageError",
    "build_parser",
    "client_node",
    "console",
    "describe_failure",
    "main",
    "parse_address",
    "parse_call",
    "parse_literal",
    "peer_name",
    "resolve_cookie",
    "to_json",
]

EXIT_OK = 0
EXIT_REMOTE = 1
EXIT_USAGE = 2
EXIT_CONNECT = 3
EXIT_INTERRUPTED = 130

DEFAULT_TIMEOUT = 10.0

EXIT_CODES = """\
exit codes:
  0    success (ping: pong)
  1    the remote side failed: the call raised (error/exit/throw, undef, badrpc), a
       gen_server call failed (noproc, the server crashed), eval could not scan/parse the
       expressions, or the remote call/gen_server call did not answer within --timeout
  2    usage: bad arguments, an unparsable term literal (the message gives line and
       column), an arity mismatch, no cookie found, a Python module that cannot be imported
  3    connection: EPMD unreachable or does not know the node, the node is unreachable or
       refused us (wrong cookie), connecting took longer than --timeout, the connection was
       lost, ping answered pang; serve could not listen or register its name with EPMD
  130  interrupted (Ctrl-C)"""

JSON_MAPPING = """\
--json prints one JSON document on stdout; Erlang terms map to JSON as:
  integer, float                  number
  true, false                     true, false
  other atoms                     string                       ok -> "ok"
  binary                          string if valid UTF-8        <<"hi">> -> "hi"
                                  else {"binary_base64": B64}
  list (Erlang strings too)       array                        "ab" -> [97, 98]
  tuple                           {"tuple": [...]}             {ok, 1} -> {"tuple": ["ok", 1]}
  map                             object when every key is an atom or a UTF-8 binary
                                  (and the keys stay distinct), else {"map": [[K, V], ...]}
  improper list                   {"improper_list": [...], "tail": T}
  pid, port, ref, fun, bitstring  string in Erlang syntax      "#Pid<a@h.85.0.1>"
A map whose keys would spell one of the tagged forms above is written as {"map": [...]},
so every JSON value reads back to one Erlang term except that atoms and UTF-8 binaries
both become strings. rpc/eval with --capture-output print {"output": TEXT, "result": R}."""

NAMES_HELP = """\
node names: NODE is name@host, or just name for name@<this host's short name> (as erl
-sname). Unless --name/--sname gives one, our own node asks NODE for a name when it
connects (like erl_call -R); it never registers with EPMD. --name without @host adds this
host's full name (or 127.0.0.1), --sname its short name.

cookie: --cookie, else $PYNODE_COOKIE, else ~/.erlang.cookie.
EPMD port: --epmd-port, else $ERL_EPMD_PORT, else 4369."""


# -- failures ---------------------------------------------------------------------------------


class CliError(Exception):
    """A failure the command reports with one line on stderr and exit code ``code``."""

    code = EXIT_REMOTE

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code


class UsageError(CliError):
    """Bad arguments (exit 2)."""

    code = EXIT_USAGE


class RemoteFailure(CliError):
    """The remote side answered with a failure or did not answer in time (exit 1)."""

    code = EXIT_REMOTE


class ConnectFailure(CliError):
    """No connection: EPMD, TCP, handshake or cookie trouble, or a lost connection (exit 3)."""

    code = EXIT_CONNECT


def describe_failure(exc: BaseException) -> tuple[int, str]:
    """The exit code and the one-line message for any exception a command can end with."""
    if isinstance(exc, CliError):
        return exc.code, str(exc)
    if isinstance(exc, TermSyntaxError):
        return EXIT_USAGE, f"bad term: {exc}"
    if isinstance(exc, CookieError):
        return EXIT_USAGE, f"no cookie: {exc} (pass --cookie or set PYNODE_COOKIE)"
    if isinstance(exc, RpcTimeout):  # before RpcError and TimeoutError: a call timeout
        return EXIT_REMOTE, f"timeout: {exc}"
    if isinstance(exc, NoConnection):
        return EXIT_CONNECT, f"no connection: {exc}"
    if isinstance(exc, RemoteError):
        return EXIT_REMOTE, f"remote call raised {_class_reason(exc)}"
    if isinstance(exc, CallError):
        if _is_nodedown(exc.reason):
            return EXIT_CONNECT, f"gen_server call failed: {format_term(exc.reason)}"
        return EXIT_REMOTE, f"gen_server call failed: {format_term(exc.reason)}"
    if isinstance(exc, RpcError):
        return EXIT_REMOTE, str(exc)
    if isinstance(exc, ConnectError):
        return EXIT_CONNECT, _connect_message(str(exc))
    if isinstance(exc, EpmdError):
        return EXIT_CONNECT, str(exc)
    if isinstance(exc, NodeError):
        return EXIT_CONNECT, str(exc)
    if isinstance(exc, TimeoutError):  # only connecting can time out outside RpcTimeout
        return EXIT_CONNECT, f"timed out: {exc}" if str(exc) else "timed out while connecting"
    if isinstance(exc, OSError):
        return EXIT_CONNECT, str(exc)
    return EXIT_REMOTE, f"unexpected error: {type(exc).__name__}: {exc} (--debug shows where)"


def _connect_message(message: str) -> str:
    if "cookie" in message.lower() and "--cookie" not in message:
        return f"{message}; check --cookie, PYNODE_COOKIE or ~/.erlang.cookie"
    return message


def _is_nodedown(reason: Any) -> bool:
    return type(reason) is tuple and len(reason) == 2 and reason[0] == Atom("nodedown")


def _class_reason(exc: RemoteError) -> str:
    text = f"{exc.cls}:{format_term(exc.reason)}"
    if exc.reason == Atom("undef") and exc.cls == Atom("error"):
        top = exc.stack[0] if isinstance(exc.stack, list) and exc.stack else None
        if type(top) is tuple and len(top) >= 3:
            m, f, a = top[0], top[1], top[2]
            arity = len(a) if isinstance(a, list) else a
            text += f" (undefined function {format_term(m)}:{format_term(f)}/{arity})"
    return text


def _unwrap(exc: BaseException) -> BaseException:
    """The one meaningful exception inside (nested) exception groups (serve's anyio tasks)."""
    while isinstance(getattr(exc, "exceptions", None), tuple) and exc.exceptions:  # type: ignore[attr-defined]
        anyio = sys.modules.get("anyio")
        cancelled = anyio.get_cancelled_exc_class() if anyio is not None else ()
        inner = [e for e in exc.exceptions if not isinstance(e, cancelled)]  # type: ignore[attr-defined]
        exc = (inner or list(exc.exceptions))[0]  # type: ignore[attr-defined]
    return exc


# -- arguments --------------------------------------------------------------------------------


def parse_literal(text: str, what: str = "term") -> Any:
    """An Erlang term literal from the command line; a usage error says where it is wrong."""
    try:
        return parse_term(text)
    except TermSyntaxError as e:
        raise UsageError(f"cannot parse {what} {text!r}: {e}") from None
    except UnicodeError as e:  # pragma: no cover - argv is already text
        raise UsageError(f"cannot parse {what} {text!r}: {e}") from None


_ATOM_CHARS = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_@." + "".join(map(chr, range(0xC0, 0x100)))
)  # erl's unquoted atom characters, plus '.' (Elixir.Mod)


def _take_atom(text: str, pos: int, what: str) -> tuple[Atom, int]:
    """Read a quoted or unquoted atom at ``pos`` (unquoted allows Elixir.Mod style dots)."""
    if pos < len(text) and text[pos] == "'":
        i = pos + 1
        while i < len(text) and text[i] != "'":
            i += 2 if text[i] == "\\" else 1
        if i >= len(text):
            raise UsageError(f"bad {what} in {text!r}: unterminated quoted atom at column {pos + 1}")
        value = parse_literal(text[pos : i + 1], what)
        return Atom(str(value).lower() if isinstance(value, bool) else value), i + 1
    end = pos
    while end < len(text) and text[end] in _ATOM_CHARS:
        end += 1
    if end == pos:
        raise UsageError(f"bad {what} in {text!r}: expected an atom at column {pos + 1}")
    return Atom(text[pos:end]), end


class Call(Frozen):
    """A parsed ``M:F(Args)``: what ``pynode rpc`` calls (immutable, like the frozen
    dataclass it was; a plain class because dataclasses cost milliseconds to import)."""

    __slots__ = ("module", "function", "args")
    module: Atom
    function: Atom
    args: list[Any]

    def __init__(self, module: Atom, function: Atom, args: list[Any]) -> None:
        object.__setattr__(self, "module", module)
        object.__setattr__(self, "function", function)
        object.__setattr__(self, "args", args)

    @property
    def label(self) -> str:
        """``M:F/A`` in Erlang syntax, for messages."""
        return f"{format_term(self.module)}:{format_term(self.function)}/{len(self.args)}"


def parse_call(spec: str, extra: Sequence[str] = ()) -> Call:
    """Parse ``M:F/A`` (+ A literals), ``M:F(Args)``, ``M:F`` (+ literals) or ``M`` ``F`` ...

    Raises :class:`UsageError` for an arity mismatch or an unparsable literal.
    """
    text = spec.strip()
    if text.endswith("."):  # erl_call style 'm:f(1).'; a quoted atom would end in a quote
        text = text[:-1].rstrip()
    if not text:
        raise UsageError("missing M:F/A or M:F(Args)")
    head = _elixir_head(text)
    if head is not None:
        module, function, pos = head
        return _call_rest(spec, text, module, function, pos, extra)
    module, pos = _take_atom(text, 0, "module")
    if pos >= len(text) or text[pos] != ":":
        if pos < len(text):
            raise UsageError(f"bad call {spec!r}: expected ':' at column {pos + 1} (M:F/A or M:F(Args))")
        # "M F [ARG ...]"
        if not extra:
            raise UsageError(f"bad call {spec!r}: give M:F/A, M:F(Args), or M F [ARG ...]")
        function, end = _take_atom(extra[0], 0, "function")
        if end != len(extra[0]):
            raise UsageError(f"bad function name {extra[0]!r}")
        args = [parse_literal(a, f"argument {i + 1}") for i, a in enumerate(extra[1:])]
        return Call(module, function, args)
    function, pos = _take_atom(text, pos + 1, "function")
    return _call_rest(spec, text, module, function, pos, extra)


def _elixir_head(text: str) -> tuple[Atom, Atom, int] | None:
    """Elixir's spelling of a call: ``Enum.sum`` (module ``Elixir.Enum``: an alias starts
    with an uppercase letter) or ``:lists.seq``; (module, function, end) or None."""
    erl = text.startswith(":")
    start = 1 if erl else 0
    if not erl and not text[:1].isupper():
        return None
    end = start
    while end < len(text) and (text[end].isalnum() or text[end] in "_.@"):
        end += 1
    if end < len(text) and text[end] in "?!":  # Date.new!/3, Keyword.keyword?/1
        end += 1
    if end < len(text) and text[end] == ":":  # Elixir.Enum:sum/1 is Erlang's spelling
        return None
    mod, dot, fun = text[start:end].rpartition(".")
    if not dot or not mod or not fun:
        return None
    return Atom(mod if erl else elixir_module(mod)), Atom(fun), end


def _call_rest(spec: str, text: str, module: Atom, function: Atom, pos: int, extra: Sequence[str]) -> Call:
    """The arity or arguments after ``M:F`` (at ``pos`` in ``text``)."""
    while pos < len(text) and text[pos].isspace():
        pos += 1
    rest = text[pos:]
    if not rest:
        args = [parse_literal(a, f"argument {i + 1}") for i, a in enumerate(extra)]
        return Call(module, function, args)
    if rest[0] == "/":
        digits = rest[1:].strip()
        if not digits.isdecimal():
            raise UsageError(f"bad arity in {spec!r}: expected M:F/A with A a number")
        arity = int(digits)
        if arity != len(extra):
            raise UsageError(
                f"{format_term(module)}:{format_term(function)}/{arity} takes {arity} "
                f"argument{'s' if arity != 1 else ''}, {len(extra)} given"
            )
        args = [parse_literal(a, f"argument {i + 1}") for i, a in enumerate(extra)]
        return Call(module, function, args)
    if rest[0] == "(":
        if extra:
            raise UsageError(f"{spec!r} already has its arguments; extra arguments {list(extra)!r}")
        body = rest
        if not body.endswith(")"):
            raise UsageError(f"bad call {spec!r}: missing ')' at the end")
        inner = body[1:-1]
        start = len(spec) - len(spec.lstrip()) + pos + 1  # where ``inner`` starts in ``spec``
        try:
            args = parse_term("[" + inner + "]")
        except TermSyntaxError as e:
            at = TermSyntaxError(e.msg, spec, min(max(start + e.offset - 1, 0), len(spec)))
            raise UsageError(f"cannot parse the arguments of {spec!r}: {at}") from None
        return Call(module, function, list(args))
    raise UsageError(f"bad call {spec!r}: expected /A or (Args) after the function at column {pos + 1}")


def peer_name(text: str) -> Atom:
    """A node name from the command line: ``name@host`` as is, ``name`` as name@shorthost."""
    text = text.strip()
    if not text or text.startswith("@") or text.endswith("@"):
        raise UsageError(f"bad node name {text!r}: expected name@host or name")
    try:
        return Atom(make_node_name(text, longnames=False))
    except NodeError as e:
        raise UsageError(str(e)) from None


def own_name(opts: argparse.Namespace, peer: str | None) -> str | None:
    """Our node name from --name/--sname (None: a fresh one is made for us)."""
    name = getattr(opts, "name", None)
    sname = getattr(opts, "sname", None)
    if name and sname:
        raise UsageError("give --name or --sname, not both")
    try:
        if name:
            return make_node_name(name, longnames=True)
        if sname:
            return make_node_name(sname, longnames=False)
    except NodeError as e:
        raise UsageError(str(e)) from None
    return None


def parse_address(text: str, default_host: str) -> tuple[str, int]:
    """``host:port``, ``[v6addr]:port`` or ``port`` (on ``default_host``)."""
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = default_host, text
    elif host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    elif not host:
        host = default_host
    try:
        port = int(port_text)
    except ValueError:
        raise UsageError(f"bad --address {text!r}: expected host:port") from None
    if not 0 < port < 65536:
        raise UsageError(f"bad --address {text!r}: port out of range")
    return host, port


def resolve_cookie(explicit: str | None, environ: Mapping[str, str] | None = None) -> str:
    """--cookie, else $PYNODE_COOKIE, else ~/.erlang.cookie (not created when missing)."""
    if explicit is not None:
        if not explicit:
            raise UsageError("--cookie is empty")
        return explicit
    env = os.environ if environ is None else environ
    value = env.get("PYNODE_COOKIE")
    if value:
        return value
    try:
        return read_cookie(create=False, warn=_warn)
    except CookieError as e:
        raise UsageError(f"no cookie: {e} (pass --cookie or set PYNODE_COOKIE)") from None


def _epmd_port(opts: argparse.Namespace) -> int:
    if opts.epmd_port is not None:
        return int(opts.epmd_port)
    try:
        return default_epmd_port()
    except EpmdError as e:
        raise UsageError(str(e)) from None


def _bad_value(message: str) -> Exception:
    from argparse import ArgumentTypeError  # only for a bad value: argparse reports it

    return ArgumentTypeError(message)


def _timeout(text: str) -> float | None:
    if text.lower() in ("infinity", "inf", "none"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise _bad_value(f"not a number of seconds: {text!r}") from None
    if not value > 0:
        raise _bad_value("must be more than 0 seconds")
    return value


def _format(text: str) -> str:
    if text not in ("erlang", "elixir"):
        raise _bad_value(f"--format is erlang or elixir, not {text!r}")
    return text


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise _bad_value(f"not a port number: {text!r}") from None
    if not 0 < value < 65536:
        raise _bad_value(f"port out of range: {value}")
    return value


def _dest(text: str) -> Any:
    """NAME (a registered name, quoted or not) or a pid literal ``#Pid<...>``."""
    if text.lstrip().startswith("#"):
        value = parse_literal(text, "destination")
        if type(value) is not Pid:
            raise UsageError(f"destination {text!r} is not a registered name or a pid")
        return value
    name, end = _take_atom(text.strip(), 0, "registered name")
    if end != len(text.strip()):
        raise UsageError(f"bad registered name {text!r}")
    return name


# -- JSON -------------------------------------------------------------------------------------

_TAG_KEYSETS = ({"tuple"}, {"map"}, {"binary_base64"}, {"improper_list", "tail"})


def _key_text(key: Any) -> str | None:
    if isinstance(key, bool):
        return "true" if key else "false"
    if type(key) is Atom:
        return str(key)
    if type(key) is bytes:
        try:
            return key.decode("utf-8")
        except UnicodeDecodeError:
            return None
    return None


def to_json(term: Any) -> Any:
    """A term as JSON-ready Python values (the mapping is ``JSON_MAPPING``)."""
    if term is True or term is False:
        return term
    t = type(term)
    if t is Atom or isinstance(term, str):
        return str(term)
    if isinstance(term, int):
        return int(term)
    if isinstance(term, float):
        return float(term)
    if t is bytes or t is bytearray:
        try:
            return bytes(term).decode("utf-8")
        except UnicodeDecodeError:
            import base64

            return {"binary_base64": base64.b64encode(bytes(term)).decode("ascii")}
    if t is list or t is FrozenList:
        return [to_json(x) for x in term]
    if t is tuple:
        return {"tuple": [to_json(x) for x in term]}
    if t is dict or t is FrozenMap or t is Struct:
        keys = [_key_text(k) for k in term]
        if all(k is not None for k in keys) and len(set(keys)) == len(keys) and set(keys) not in _TAG_KEYSETS:
            return {k: to_json(v) for k, v in zip(keys, term.values(), strict=True)}
        return {"map": [[to_json(k), to_json(v)] for k, v in term.items()]}
    if t is ImproperList:
        return {"improper_list": [to_json(x) for x in term.items], "tail": to_json(term.tail)}
    if t in (Pid, Port, Reference, Fun, ExportFun, BitString):
        return format_term(term)
    if term is None:
        return "undefined"
    return format_term(term)


# -- output -----------------------------------------------------------------------------------


def _emit(opts: argparse.Namespace, value: Any, output: str | None = None) -> None:
    if opts.json:
        import json

        doc = to_json(value) if output is None else {"output": output, "result": to_json(value)}
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        if output:
            sys.stdout.write(output if output.endswith("\n") else output + "\n")
        sys.stdout.write(format_value(opts, value) + "\n")
    sys.stdout.flush()


def format_value(opts: argparse.Namespace, value: Any) -> str:
    """A result as --format asks: Erlang syntax (default) or Elixir syntax."""
    if getattr(opts, "format", "erlang") == "elixir":
        from .term.elixir_syntax import format_elixir

        return format_elixir(value)
    return format_term(value)


def _emit_text(opts: argparse.Namespace, text: str, json_value: Any = None) -> None:
    if opts.json:
        import json

        sys.stdout.write(json.dumps(text if json_value is None else json_value, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


# -- the node we talk from --------------------------------------------------------------------


def client_node(
    cookie: str,
    peer: str,
    *,
    name: str | None = None,
    hidden: bool = True,
    epmd_port: int | None = None,
    io_output: Callable[[str], None] | None = None,
    tls: Any = None,
) -> OneShot:
    """The client a command talks from: one blocking connection, never registered with EPMD.

    Without ``name`` the peer names it when it connects (NAME_ME, like erl_call -R), on a
    host of the peer's kind (short or long names).
    """
    from .runtime.oneshot import OneShot

    return OneShot(cookie, peer, name=name, hidden=hidden, epmd_port=epmd_port, io_output=io_output, tls=tls)


def _tls(opts: argparse.Namespace) -> Any:
    """The TLS setting of the --ssl-dist-optfile / --tls-* options (TlsSides or None)."""
    if not (opts.ssl_dist_optfile or opts.tls_cert or opts.tls_key or opts.tls_ca):
        return None
    from .runtime.tls import TlsConfigError, from_options

    try:
        tls = from_options(opts.ssl_dist_optfile, opts.tls_cert, opts.tls_key, opts.tls_ca)
        assert tls is not None
        tls.client.client_context()  # a missing or bad file is a usage error, said now
        if opts.command == "serve":
            tls.server.server_context()
        return tls
    except TlsConfigError as e:
        raise UsageError(str(e)) from None


def _output_sink(opts: argparse.Namespace) -> Callable[[str], None]:
    """Where text printed by remote calls goes when not captured (stderr under --json)."""
    stream = sys.stderr if opts.json else sys.stdout

    def write(text: str) -> None:
        stream.write(text)
        stream.flush()

    return write


def _session(opts: argparse.Namespace, peer: Atom) -> OneShot:
    """A client connected to ``peer`` (connection trouble: ConnectFailure); use it in ``with``."""
    cookie = resolve_cookie(opts.cookie)
    address = parse_address(opts.address, peer.partition("@")[2]) if opts.address else None
    node = client_node(
        cookie, peer, name=own_name(opts, peer), hidden=opts.hidden, epmd_port=_epmd_port(opts),
        io_output=_output_sink(opts), tls=None if (tls := _tls(opts)) is None else tls.client,
    )
    try:
        _connect(node, peer, address, opts.timeout)
    except BaseException:
        node.close()
        raise
    return node


def _connect(node: OneShot, peer: Atom, address: tuple[str, int] | None, timeout: float | None) -> None:
    where = f" at {address[0]}:{address[1]}" if address else ""
    try:
        node.connect(peer, address=address, timeout=timeout)
    except ConnectError as e:
        msg = str(e)
        if not msg.startswith("cannot connect"):
            msg = f"cannot connect to {peer}{where}: {msg}"
        raise ConnectFailure(_connect_message(msg)) from e
    except TimeoutError as e:
        raise ConnectFailure(f"cannot connect to {peer}{where}: no connection within {timeout} s") from e
    except EpmdError as e:
        raise ConnectFailure(f"cannot connect to {peer}: {e}") from e


def _no_address(opts: argparse.Namespace, command: str) -> None:
    if opts.address:
        raise UsageError(f"{command} does not take --address")


# -- commands ---------------------------------------------------------------------------------


def _rpc(
    node: OneShot, peer: Atom, call: Call, opts: argparse.Namespace, capture: bool, label: str | None = None
) -> Any:
    label = label or call.label
    try:
        return node.rpc(
            peer, call.module, call.function, call.args, timeout=opts.timeout, capture_output=capture
        )
    except RemoteError as e:
        if opts.debug and e.stack:
            sys.stderr.write(f"pynode: stack: {format_term(e.stack)}\n")
        raise RemoteFailure(f"{label} on {peer} raised {_class_reason(e)}") from e
    except RpcTimeout as e:
        raise RemoteFailure(f"{label} on {peer}: no answer within {opts.timeout} s") from e
    except NoConnection as e:
        raise ConnectFailure(f"{label} on {peer}: connection lost: {e}") from e


def cmd_rpc(opts: argparse.Namespace) -> int:
    """pynode rpc NODE M:F/A [ARG ...] | 'M:F(Args)' | M F [ARG ...]."""
    call = parse_call(opts.mfa, opts.args)
    peer = peer_name(opts.node)
    with _session(opts, peer) as node:
        result = _rpc(node, peer, call, opts, opts.capture_output)
    if opts.capture_output:
        value, text = result
        _emit(opts, value, text)
    else:
        _emit(opts, result)
    return EXIT_OK


_ERL_SCAN = Atom("erl_scan")
_ERL_PARSE = Atom("erl_parse")
_ERL_EVAL = Atom("erl_eval")
_OK = Atom("ok")
_ERROR = Atom("error")
_DOT = Atom("dot")


def _error_text(node: OneShot, peer: Atom, info: Any, opts: argparse.Namespace) -> str:
    """An erl ErrorInfo ``{Location, Module, Descriptor}`` as 'line L, column C: text'."""
    from .runtime.iofmt import chars_to_text

    if not (type(info) is tuple and len(info) == 3):
        return format_term(info)
    loc, mod, desc = info
    try:
        text = chars_to_text(node.rpc(peer, mod, "format_error", [desc], timeout=opts.timeout))
    except RpcError:
        text = format_term(desc)
    if type(loc) is tuple and len(loc) == 2:
        return f"line {loc[0]}, column {loc[1]}: {text}"
    if isinstance(loc, int):
        return f"line {loc}: {text}"
    return text


def cmd_eval(opts: argparse.Namespace) -> int:
    """pynode eval NODE 'Exprs.': erl_scan, erl_parse and erl_eval on the remote node."""
    peer = peer_name(opts.node)
    text = opts.exprs
    if not text.strip():
        raise UsageError("nothing to evaluate")
    chars = [ord(c) for c in text]
    with _session(opts, peer) as node:
        scanned = _rpc(node, peer, Call(_ERL_SCAN, Atom("string"), [chars, (1, 1)]), opts, False)
        if type(scanned) is tuple and scanned and scanned[0] == _ERROR:
            raise RemoteFailure(f"cannot scan the expressions: {_error_text(node, peer, scanned[1], opts)}")
        tokens = scanned[1]
        if not tokens:
            raise UsageError("nothing to evaluate (only comments or blanks)")
        last = tokens[-1]
        if not (type(last) is tuple and last and last[0] == _DOT):
            anno = last[1] if type(last) is tuple and len(last) > 1 else 1
            tokens = [*tokens, (_DOT, anno)]
        parsed = _rpc(node, peer, Call(_ERL_PARSE, Atom("parse_exprs"), [tokens]), opts, False)
        if type(parsed) is tuple and parsed and parsed[0] == _ERROR:
            raise RemoteFailure(f"cannot parse the expressions: {_error_text(node, peer, parsed[1], opts)}")
        exprs = parsed[1]
        result = _rpc(
            node, peer, Call(_ERL_EVAL, Atom("exprs"), [exprs, []]), opts, opts.capture_output, label="eval"
        )
    output = None
    if opts.capture_output:
        result, output = result
    value = result[1] if type(result) is tuple and len(result) == 3 else result
    _emit(opts, value, output)
    return EXIT_OK


def cmd_ping(opts: argparse.Namespace) -> int:
    """pynode ping NODE: pong (exit 0) or pang (exit 3)."""
    peer = peer_name(opts.node)
    try:
        with _session(opts, peer) as node:
            ok = node.ping(peer, timeout=opts.timeout if opts.timeout is not None else 3600.0)
    except ConnectFailure:
        _emit_text(opts, "pang")
        raise
    _emit_text(opts, "pong" if ok else "pang")
    if not ok:
        raise ConnectFailure(f"{peer} did not answer the ping")
    return EXIT_OK


def cmd_names(opts: argparse.Namespace) -> int:
    """pynode names [HOST]: the nodes registered with EPMD on HOST."""
    from .runtime.oneshot import names

    _no_address(opts, "names")
    host = opts.host or "localhost"
    port = _epmd_port(opts)
    try:
        entries = names(host, port, timeout=opts.timeout if opts.timeout is not None else 3600.0)
    except EpmdError as e:
        raise ConnectFailure(str(e)) from e
    if opts.json:
        _emit_text(opts, "", [{"name": n, "port": p} for n, p in entries])
    else:
        for n, p in entries:
            sys.stdout.write(f"name {n} at port {p}\n")
        sys.stdout.flush()
    return EXIT_OK


def cmd_send(opts: argparse.Namespace) -> int:
    """pynode send NODE NAME TERM: {NAME, NODE} ! TERM, checked and delivered before exit."""
    peer = peer_name(opts.node)
    dest = _dest(opts.dest)
    term = parse_literal(opts.term, "message")
    with _session(opts, peer) as node:
        if type(dest) is Atom:
            try:
                where = node.rpc(peer, "erlang", "whereis", [dest], timeout=opts.timeout)
            except (RemoteError, RpcTimeout):
                where = None  # a peer that cannot tell (a C node): send anyway, as ! does
            except NoConnection as e:
                raise ConnectFailure(f"connection to {peer} lost: {e}") from e
            if where == Atom("undefined"):
                raise RemoteFailure(f"no process is registered as {format_term(dest)} on {peer}")
            node.send((dest, peer), term)
        else:
            node.send(dest, term)
        # a round trip on the same connection: erl has delivered the message once it answers
        if not node.ping(peer, timeout=opts.timeout if opts.timeout is not None else 3600.0):
            raise ConnectFailure(f"connection to {peer} lost after sending")
    _emit_text(opts, "ok")
    return EXIT_OK


def cmd_call(opts: argparse.Namespace) -> int:
    """pynode call NODE NAME TERM: gen_server:call({NAME, NODE}, TERM, Timeout)."""
    peer = peer_name(opts.node)
    dest = _dest(opts.dest)
    request = parse_literal(opts.term, "request")
    target = dest if type(dest) is Pid else (dest, peer)
    label = format_term(dest) if type(dest) is Pid else f"{{{format_term(dest)},{format_term(peer)}}}"
    with _session(opts, peer) as node:
        try:
            reply = node.call(target, request, opts.timeout)
        except CallError as e:
            cls = ConnectFailure if _is_nodedown(e.reason) else RemoteFailure
            raise cls(f"gen_server:call to {label} failed: {format_term(e.reason)}") from e
        except RpcTimeout as e:
            raise RemoteFailure(f"gen_server:call to {label}: no reply within {opts.timeout} s") from e
    _emit(opts, reply)
    return EXIT_OK


def cmd_status(opts: argparse.Namespace) -> int:
    """pynode status NODE: the connections and counters of a running pynode node."""
    from .status_cli import run_status

    return run_status(opts)


def cmd_shell(opts: argparse.Namespace) -> int:
    """pynode shell NODE: an interactive prompt connected to NODE."""
    from .shell import run_shell

    return run_shell(opts)


def load_module(spec: str) -> ModuleType:
    """Import a module by dotted name (from the current directory too) or by file path."""
    import importlib
    import importlib.util
    from pathlib import Path

    path = Path(spec)
    if spec.endswith(".py") or os.sep in spec or "/" in spec:
        if not path.is_file():
            raise UsageError(f"no Python file {spec!r}")
        name = path.stem
        mspec = importlib.util.spec_from_file_location(name, path)
        if mspec is None or mspec.loader is None:
            raise UsageError(f"cannot import {spec!r}")
        module = importlib.util.module_from_spec(mspec)
        sys.modules[name] = module
        try:
            mspec.loader.exec_module(module)
        except Exception as e:
            sys.modules.pop(name, None)
            raise UsageError(f"cannot import {spec!r}: {type(e).__name__}: {e}") from e
        return module
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(spec)
    except Exception as e:
        raise UsageError(f"cannot import {spec!r}: {type(e).__name__}: {e}") from e


def arity_text(fn: Callable[..., Any]) -> str:
    """``N``, ``N..M`` (defaults) or ``N+`` (``*args``) for a Python function."""
    import inspect

    try:
        params = inspect.signature(fn).parameters.values()
    except (TypeError, ValueError):  # pragma: no cover
        return "?"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = sum(1 for p in positional if p.default is p.empty)
    if any(p.kind == p.VAR_POSITIONAL for p in params):
        return f"{required}+"
    return str(required) if required == len(positional) else f"{required}..{len(positional)}"


def public_functions(pymodule: ModuleType) -> dict[str, Callable[..., Any]]:
    """The functions ``serve`` serves: public, and defined in the module itself."""
    from .runtime.rpc import public_functions

    return public_functions(pymodule)


async def cmd_serve(opts: argparse.Namespace) -> int:
    """pynode serve MODULE: serve a Python module's functions to erl until SIGINT/SIGTERM."""
    import logging
    import signal

    import anyio

    from .runtime.node import Node

    log = logging.getLogger("pynode.cli")
    _no_address(opts, "serve")
    module = load_module(opts.module)
    erl_module = opts.module_name or module.__name__.rsplit(".", 1)[-1]
    functions = public_functions(module)
    if not functions:
        raise UsageError(f"module {opts.module!r} has no public functions to serve")
    cookie = resolve_cookie(opts.cookie)
    name = own_name(opts, None) or make_node_name(erl_module, longnames=False)
    epmd_port = _epmd_port(opts)
    node = Node(
        name,
        cookie,
        hidden=opts.hidden,
        epmd=not opts.no_epmd,
        epmd_port=epmd_port,
        listen_host=opts.listen_host,
        port=opts.port or 0,
        tls=_tls(opts),
    )
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with node:
            served = node.expose_module(module, erl_module)
            listing = [f"{f}/{arity_text(functions[f])}" for f in served if f in functions]
            if opts.json:
                _emit_text(opts, "", {
                    "node": str(node.name), "port": node.port, "module": erl_module,
                    "functions": listing, "epmd_port": None if opts.no_epmd else epmd_port,
                })
            else:
                _emit_text(
                    opts,
                    f"serving {format_term(Atom(erl_module))} on {node.name} (port {node.port}): "
                    + ", ".join(listing),
                )
            async for signum in signals:
                log.info("stopping on %s", signal.Signals(signum).name)
                break
    return EXIT_OK


def cmd_proxy(opts: argparse.Namespace) -> int:
    """pynode proxy ACTION: the partition proxy (implemented in pynode.proxy_cli)."""
    from .proxy_cli import run

    return run(opts, _epmd_port(opts))


def cmd_discover(opts: argparse.Namespace) -> int:
    """pynode discover: find nodes, connect, print them (or their joins and leaves with --watch)."""
    gc.enable()  # --watch is a long-lived node (console() turned the collector off)
    import anyio

    from .discover_cli import run
    from .runtime.transport import default_backend_options

    code: int = anyio.run(run, opts, backend_options=default_backend_options("asyncio"))
    return code


def cmd_certs(opts: argparse.Namespace) -> int:
    """pynode certs DIR [--nodes NODE ...] [--days N] (in pynode.certs_cli)."""
    from .certs_cli import cmd_certs as run

    return run(opts)


COMMANDS: dict[str, Callable[[argparse.Namespace], Any]] = {
    "rpc": cmd_rpc,
    "eval": cmd_eval,
    "ping": cmd_ping,
    "names": cmd_names,
    "send": cmd_send,
    "call": cmd_call,
    "serve": cmd_serve,
    "status": cmd_status,
    "shell": cmd_shell,
    "discover": cmd_discover,
    "certs": cmd_certs,
    "proxy": cmd_proxy,
}


# -- the parser -------------------------------------------------------------------------------


def _add_common(p: argparse.ArgumentParser, *, sub: bool) -> None:
    """Options every command takes (accepted before or after the command name)."""
    import argparse

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if sub else value

    g = p.add_argument_group("common options")
    g.add_argument("--cookie", default=d(None), help="the magic cookie (else $PYNODE_COOKIE, else ~/.erlang.cookie)")
    g.add_argument("--name", default=d(None), metavar="NAME", help="our node name, long names (NAME or NAME@HOST)")
    g.add_argument("--sname", default=d(None), metavar="NAME", help="our node name, short names (NAME or NAME@HOST)")
    g.add_argument("--epmd-port", type=_port, default=d(None), metavar="PORT",
                   help="EPMD port (else $ERL_EPMD_PORT, else 4369)")
    g.add_argument("--address", default=d(None), metavar="[HOST:]PORT",
                   help="reach NODE at this address, without EPMD (HOST defaults to NODE's host)")
    g.add_argument("--timeout", type=_timeout, default=d(DEFAULT_TIMEOUT), metavar="SECONDS",
                   help=f"give up connecting (exit 3) or waiting for the answer (exit 1) after this "
                        f"long; 'infinity' waits forever (default {DEFAULT_TIMEOUT:g})")
    g.add_argument("--json", action="store_true", default=d(False),
                   help="print results as JSON (mapping in `pynode --help`)")
    g.add_argument("--format", type=_format, default=d("erlang"), metavar="{erlang,elixir}",
                   help="print results in Erlang (default) or Elixir syntax")
    g.add_argument("--hidden", dest="hidden", action="store_true", default=d(True),
                   help="connect as a hidden node (default)")
    g.add_argument("--visible", dest="hidden", action="store_false", default=d(True),
                   help="connect as a visible node (erl's nodes() lists it)")
    g.add_argument("--ssl-dist-optfile", default=d(None), metavar="FILE",
                   help="TLS distribution with erl's -ssl_dist_optfile FILE (see `pynode certs`)")
    g.add_argument("--tls-cert", default=d(None), metavar="PEM", help="TLS distribution: our certificate")
    g.add_argument("--tls-key", default=d(None), metavar="PEM", help="TLS distribution: our private key")
    g.add_argument("--tls-ca", default=d(None), metavar="PEM", help="TLS distribution: the CA to trust")
    g.add_argument("-v", "--verbose", action="store_true", default=d(False), help="log what happens")
    g.add_argument("--debug", action="store_true", default=d(False),
                   help="debug logging and tracebacks on failure")


def _help_width() -> int:
    """What argparse's help would use: $COLUMNS or the terminal's width (else 80), minus 2."""
    try:
        columns = int(os.environ.get("COLUMNS", ""))
    except ValueError:
        columns = 0
    if columns <= 0:
        try:
            columns = os.get_terminal_size(sys.__stdout__.fileno()).columns  # type: ignore[union-attr]
        except (AttributeError, ValueError, OSError):
            columns = 0
    return (columns or 80) - 2


class _Retry(Exception):
    """A parser built for one command met something else: build the whole parser."""


class _Skip:
    """Stands in for the sub-parsers of the commands a one-command parser leaves out."""

    def add_argument(self, *args: Any, **kwargs: Any) -> None:
        return None


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The argparse parser of the ``pynode`` command.

    With ``only``, the parser knows that one command (building all of them costs several
    milliseconds of every start) and raises _Retry instead of reporting an error, so that
    the whole parser reports it (see :func:`main`).
    """
    import argparse

    class OneCommand(argparse.ArgumentParser):
        def error(self, message: str) -> NoReturn:
            raise _Retry(message)

    class Version(argparse.Action):
        """--version, looked up only when asked (importlib.metadata is slow to import)."""

        def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kw: Any) -> None:
            super().__init__(option_strings, dest, default=argparse.SUPPRESS, nargs=0, **kw)

        def __call__(self, parser: argparse.ArgumentParser, *args: Any) -> None:
            sys.stdout.write(f"{parser.prog} {_version()}\n")
            parser.exit()

    class Formatter(argparse.RawDescriptionHelpFormatter):
        """Knows the terminal width without shutil (argparse makes a formatter for every
        argument it adds, and shutil costs milliseconds to import)."""

        def __init__(self, prog: str, **kw: Any) -> None:
            kw.setdefault("width", _help_width())
            super().__init__(prog, **kw)

    fmt = Formatter
    parser = (argparse.ArgumentParser if only is None else OneCommand)(
        prog="pynode",
        description="Talk to Erlang nodes: RPC, eval, ping, EPMD names, send, gen_server calls, "
        "and serve Python functions to erl.",
        epilog=f"{NAMES_HELP}\n\n{EXIT_CODES}\n\n{JSON_MAPPING}",
        formatter_class=fmt,
    )
    _add_common(parser, sub=False)
    parser.add_argument("--version", action=Version, help="show the version and exit")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help: str, description: str, epilog: str = "") -> Any:
        if only is not None and name != only:
            return _Skip()
        p = sub.add_parser(name, help=help, description=description, formatter_class=fmt,
                           epilog=(epilog + "\n\n" if epilog else "") + EXIT_CODES)
        _add_common(p, sub=True)
        return p

    p = add(
        "rpc", "call M:F(Args) on a node and print the result",
        "Call a function on NODE (erpc:call) and print its value in Erlang syntax.",
        "examples:\n"
        "  pynode rpc node@host erlang:node/0\n"
        "  pynode rpc node@host lists:seq/2 1 10\n"
        "  pynode rpc node@host 'lists:seq(1, 10)'\n"
        "  pynode rpc node@host lists reverse '[1,2,3]'\n"
        "Each ARG is one Erlang term literal: atoms, numbers, \"strings\" (lists), <<\"binaries\">>,\n"
        "tuples, lists, maps. Text the call prints goes to stdout as it arrives (to stderr\n"
        "under --json); --capture-output collects it and prints it before the result.",
    )
    p.add_argument("node", metavar="NODE")
    p.add_argument("mfa", metavar="M:F/A | 'M:F(Args)' | M")
    p.add_argument("args", nargs="*", metavar="ARG", help="argument literals (with M:F/A: exactly A of them)")
    p.add_argument("--capture-output", action="store_true",
                   help="print what the call printed (its group leader output) before the result")

    p = add(
        "eval", "evaluate Erlang expressions on a node",
        "Scan, parse and evaluate Erlang expressions on NODE (erl_scan, erl_parse, erl_eval) and "
        "print the value of the last one. The final '.' is optional.",
        "example:\n  pynode eval node@host 'X = 1 + 2, X * 2.'      # prints 6",
    )
    p.add_argument("node", metavar="NODE")
    p.add_argument("exprs", metavar="EXPRS")
    p.add_argument("--capture-output", action="store_true",
                   help="print what the expressions printed before the result")

    p = add("ping", "net_adm:ping a node: pong (exit 0) or pang (exit 3)",
            "Connect to NODE and ping it; prints pong or pang.")
    p.add_argument("node", metavar="NODE")

    p = add("names", "list the nodes registered with EPMD on a host",
            "Ask EPMD on HOST (default localhost) which nodes it knows, like epmd -names.")
    p.add_argument("host", nargs="?", metavar="HOST")

    p = add("send", "send a term to a registered process (or pid) on a node",
            "{NAME, NODE} ! TERM. Checks that NAME is registered there (erlang:whereis) and waits "
            "until NODE has taken the message before exiting; prints ok.")
    p.add_argument("node", metavar="NODE")
    p.add_argument("dest", metavar="NAME", help="registered name, or a pid literal #Pid<node@host.Id.Serial.Creation>")
    p.add_argument("term", metavar="TERM")

    p = add("call", "gen_server:call a registered server on a node",
            "gen_server:call({NAME, NODE}, TERM, Timeout) and print the reply.",
            "example:\n  pynode call node@host kernel_sup which_children")
    p.add_argument("node", metavar="NODE")
    p.add_argument("dest", metavar="NAME", help="registered name, or a pid literal")
    p.add_argument("term", metavar="TERM")

    p = add(
        "serve", "serve a Python module's functions to erl",
        "Import MODULE (a dotted name, or a path to a .py file), serve its public functions as "
        "the Erlang module of the same name (rpc:call(Node, Module, Function, Args) / erpc:call "
        "from erl), register with EPMD and run until SIGINT or SIGTERM (exit 0). Prints one "
        "line: the node name, its port and the functions served.",
        "example:\n  pynode serve ./mathy.py --name mathy@127.0.0.1\n"
        "  erl> rpc:call('mathy@127.0.0.1', mathy, add, [1, 2]).\n"
        "The default node name is the module name on this host's short name.",
    )
    p.add_argument("module", metavar="MODULE")
    p.add_argument("--as", dest="module_name", metavar="ERLMODULE",
                   help="serve under this Erlang module name instead")
    p.add_argument("--port", type=_port, default=0, help="listen on this port (default: any free port)")
    p.add_argument("--listen-host", default=None, metavar="HOST", help="listen on this address (default: all)")
    p.add_argument("--no-epmd", action="store_true", help="do not register with EPMD (peers need our address)")

    p = add("status", "show a running pynode node's connections and counters",
            "Ask NODE's pynode_status process (every pynode node has one) for its connections: "
            "messages, bytes and ticks in and out, reconnects, and the last disconnect of each "
            "peer with its reason. --json prints the whole reply.",
            "example:\n  pynode status py@127.0.0.1\n"
            "  erl> gen_server:call({pynode_status, 'py@127.0.0.1'}, status).")
    p.add_argument("node", metavar="NODE")

    p = add("shell", "an interactive prompt on a connected node",
            "Connect to NODE and read commands: an Erlang expression is evaluated on NODE; "
            "rpc M:F(Args), send DEST TERM, receive [TIMEOUT], help, quit. Line editing and "
            "history (~/.pynode_history) when readline is there.")
    p.add_argument("node", metavar="NODE")
    p.add_argument("--history", metavar="FILE", default=None,
                   help="history file (default ~/.pynode_history; '' for none)")

    p = add(
        "discover", "find nodes (EPMD, host lists, DNS), connect, print them; --watch stays up",
        "Ask the sources which nodes exist, connect to those the filters let through, and print "
        "the list of connected nodes (exit 3 if some could not be connected). With --watch, keep "
        "looking every --interval seconds, reconnect lost nodes with back-off, and print "
        "{join, Node} and {leave, Node, Reason} lines until SIGINT/SIGTERM.",
        "examples:\n  pynode discover --name d@127.0.0.1 --include 'app*'\n"
        "  pynode discover --host 10.0.0.2 --host 10.0.0.3:4370 --watch --json\n"
        "  pynode discover --srv _erlang._tcp.example.org --visible --watch",
    )
    if not isinstance(p, _Skip):
        from .discover_cli import add_arguments

        add_arguments(p)

    p = add(
        "certs", "make a test CA and TLS certificates for nodes",
        "Make a CA and a certificate, key and erl -ssl_dist_optfile for each node in DIR (EC "
        "P-256 keys, made with the cryptography package), then print the erl and pynode flags "
        "that use them for TLS distribution (erl -proto_dist inet_tls). For tests and "
        "development: the CA key is written beside the certificates.",
        "example:\n  pynode certs ./certs --nodes erl@127.0.0.1 py@127.0.0.1",
    )
    p.add_argument("dir", metavar="DIR")
    p.add_argument("--nodes", nargs="+", metavar="NODE", default=["erl@127.0.0.1", "py@127.0.0.1"],
                   help="node names (name@host) to make certificates for (default: erl@127.0.0.1 py@127.0.0.1)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")

    p = add("proxy", "the partition proxy: serve it, or cut/heal/shape/status a running one",
            "An EPMD stand-in whose look-ups lead through forwarders that can cut, delay or "
            "throttle traffic between named nodes (see README, 'Partition proxy').",
            "examples:\n  pynode proxy serve --epmd-port 4400      # control port 4401\n"
            "  pynode proxy status --epmd-port 4400 --json\n"
            "  pynode proxy cut a,b c,d,e --epmd-port 4400\n  pynode proxy heal --epmd-port 4400")
    if not isinstance(p, _Skip):
        from .proxy_cli import add_arguments

        add_arguments(p)
    return parser


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("pynode-erlang")
    except Exception:  # pragma: no cover - not installed
        return "unknown"


# -- main -------------------------------------------------------------------------------------


_quiet = False  # a client command without -v/--debug: pynode logs nothing


def _warn(message: str) -> None:
    """A warning for the log (cookie file permissions), dropped when the command is quiet."""
    if _quiet:
        return
    import logging

    logging.getLogger("pynode").warning(message)


def _setup_logging(opts: argparse.Namespace) -> Callable[[], None]:
    """Send pynode's log to stderr as ``pynode: ...`` lines; returns a function that undoes it.

    Client commands log nothing unless -v/--debug (their failure is the one line main
    prints); serve logs warnings (refused connections and the like). A quiet client
    command does not even import logging (it costs milliseconds of start-up).
    """
    global _quiet
    if not (opts.debug or opts.verbose or opts.command == "serve") and "logging" not in sys.modules:
        _quiet = True

        def unquiet() -> None:
            global _quiet
            _quiet = False

        return unquiet
    import logging

    if opts.debug:
        level = logging.DEBUG
    elif opts.verbose:
        level = logging.INFO
    else:
        level = logging.WARNING if opts.command == "serve" else logging.CRITICAL + 1
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("pynode: %(name)s %(levelname)s: %(message)s" if opts.debug else "pynode: %(message)s")
    )
    logger = logging.getLogger("pynode")
    saved = (logger.handlers[:], logger.level, logger.propagate)
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False

    def restore() -> None:
        logger.handlers[:], logger.level, logger.propagate = saved[0], saved[1], saved[2]

    return restore


_VALUE_OPTIONS: dict[str, tuple[str, Callable[[str], Any] | None]] = {
    "--cookie": ("cookie", None),
    "--name": ("name", None),
    "--sname": ("sname", None),
    "--epmd-port": ("epmd_port", _port),
    "--address": ("address", None),
    "--timeout": ("timeout", _timeout),
    "--ssl-dist-optfile": ("ssl_dist_optfile", None),
    "--tls-cert": ("tls_cert", None),
    "--tls-key": ("tls_key", None),
    "--tls-ca": ("tls_ca", None),
    "--format": ("format", _format),
}
_FLAG_OPTIONS: dict[str, tuple[str, bool]] = {
    "--json": ("json", True),
    "--hidden": ("hidden", True),
    "--visible": ("hidden", False),
    "-v": ("verbose", True),
    "--verbose": ("verbose", True),
    "--debug": ("debug", True),
}
# the positionals of each one-shot command: (names, how many ARGs may follow them)
_POSITIONALS: dict[str, tuple[tuple[str, ...], int]] = {
    "rpc": (("node", "mfa"), -1),
    "eval": (("node", "exprs"), 0),
    "ping": (("node",), 0),
    "names": ((), 1),
    "send": (("node", "dest", "term"), 0),
    "call": (("node", "dest", "term"), 0),
}


class _Options:
    """The options _fast_parse read, as attributes (argparse.Namespace's shape; importing
    types for SimpleNamespace costs the command's start a few hundred microseconds)."""

    def __init__(self, options: dict[str, Any]) -> None:
        self.__dict__.update(options)


def _fast_parse(args: Sequence[str]) -> Any:
    """The options of the plain command lines (``pynode rpc NODE M:F/A [ARG ...] --cookie C``
    and the like) exactly as the argparse parser would read them, without argparse (it costs
    a few milliseconds of every start); None for anything else (help, errors, abbreviated
    or unknown options, negative-number arguments, serve...), which argparse then reads."""
    ns: dict[str, Any] = {
        "cookie": None, "name": None, "sname": None, "epmd_port": None, "address": None,
        "timeout": DEFAULT_TIMEOUT, "json": False, "hidden": True, "verbose": False, "debug": False,
        "ssl_dist_optfile": None, "tls_cert": None, "tls_key": None, "tls_ca": None,
        "format": "erlang",
    }
    command: str | None = None
    positionals: list[str] = []
    runs = 0  # blocks of positionals after the command (argparse splits '*' at options)
    last_was_positional = False
    i = 0
    while i < len(args):
        a = args[i]
        i += 1
        if a.startswith("-"):
            last_was_positional = False
            key, eq, value = a.partition("=")
            if key in _VALUE_OPTIONS:
                if not eq:
                    if i >= len(args) or args[i].startswith("-"):
                        return None
                    value = args[i]
                    i += 1
                dest, convert = _VALUE_OPTIONS[key]
                if convert is not None:
                    try:
                        value = convert(value)
                    except Exception:
                        return None
                ns[dest] = value
            elif a in _FLAG_OPTIONS:
                dest, flag = _FLAG_OPTIONS[a]
                ns[dest] = flag
            elif a == "--capture-output" and command in ("rpc", "eval"):
                ns["capture_output"] = True
            else:
                return None
        elif command is None:
            if a not in _POSITIONALS:
                return None
            command = a
        else:
            if not last_was_positional:
                runs += 1
            last_was_positional = True
            positionals.append(a)
    if command is None or runs > 1:
        return None
    names, extra = _POSITIONALS[command]
    if len(positionals) < len(names) or (extra >= 0 and len(positionals) > len(names) + extra):
        return None
    ns.update(zip(names, positionals, strict=False))
    rest = positionals[len(names):]
    if command == "rpc":
        ns["args"] = rest
    elif command == "names":
        ns["host"] = rest[0] if rest else None
    if command in ("rpc", "eval"):
        ns.setdefault("capture_output", False)
    ns["command"] = command
    return _Options(ns)


def _one_command(args: Sequence[str]) -> str | None:
    """The command ``args`` most likely name, when a parser for it alone can parse them: not
    for the top-level --help/--version (they list every command), not for no command."""
    for a in args:
        if a == "--":
            return None
        if a.startswith("--") and a.startswith(("--h", "--vers")):
            return None
        if a.startswith("-") and not a.startswith("--") and "h" in a:
            return None
    return next((a for a in args if a in COMMANDS), None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``pynode`` command; returns the exit code (see ``EXIT_CODES``)."""
    args = sys.argv[1:] if argv is None else list(argv)
    try:
        opts = _fast_parse(args)
        only = _one_command(args) if opts is None else None
        try:
            if opts is None and only is not None:
                opts = build_parser(only).parse_args(args)
        except _Retry:
            opts = None
        if opts is None:  # the whole parser: every command, help, and argparse's messages
            opts = build_parser().parse_args(args)
    except SystemExit as e:  # --help, --version, or a usage error argparse reported
        return e.code if isinstance(e.code, int) else (EXIT_OK if e.code is None else EXIT_USAGE)
    restore_logging = _setup_logging(opts)
    try:
        return _run(opts)
    finally:
        restore_logging()


_one_shot_done = False  # a one-shot command ran: nothing left that needs a clean shutdown


def console() -> None:
    """The ``pynode`` console script (and ``python -m pynode``): :func:`main`, then exit.

    After a one-shot command (everything but serve) the process ends with ``os._exit``
    once stdout and stderr are flushed: tearing the interpreter down (module and object
    finalisation) would cost milliseconds of every call, and such a command leaves nothing
    that needs it (its socket is closed, it started no thread and registered no atexit).
    For the same reason the cyclic garbage collector stays off while a one-shot command
    runs (a call allocates little and ends in milliseconds); serve turns it back on."""
    gc.disable()
    code = main()
    if not _one_shot_done:
        sys.exit(code)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:
            _silence_stdout()
        except (OSError, ValueError):
            pass
    os._exit(code)


def _run(opts: argparse.Namespace) -> int:
    global _one_shot_done
    try:
        command = COMMANDS[opts.command]
        if opts.command == "serve":
            gc.enable()  # a long-lived node (console() turned the collector off)
            import anyio

            from .runtime.transport import default_backend_options

            code: int = anyio.run(command, opts, backend_options=default_backend_options("asyncio"))
        else:
            code = command(opts)
            _one_shot_done = True
        return code
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_REMOTE
    except BaseException as e:
        exc = _unwrap(e)
        if isinstance(exc, KeyboardInterrupt):
            return EXIT_INTERRUPTED
        if isinstance(exc, SystemExit):
            raise
        if isinstance(exc, BrokenPipeError):
            _silence_stdout()
            return EXIT_REMOTE
        code, message = describe_failure(exc)
        if opts.debug:
            import traceback

            traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stderr)
        sys.stderr.write(f"pynode: {message}\n")
        sys.stderr.flush()
        return code


def _silence_stdout() -> None:
    """After a broken pipe, point stdout at /dev/null so the interpreter exits quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # pragma: no cover
        pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
