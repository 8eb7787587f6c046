"""``pynode shell NODE``: an interactive prompt on a connection to NODE, like a remote erl
shell: Erlang expressions evaluated there (variables kept between lines), and the commands
``rpc``, ``send``, ``receive``, ``pid``, ``help``, ``quit``.

The shell is a hidden node of its own (a BlockingNode: its event loop answers ticks while
the prompt waits), with one mailbox whose pid erl can send to; ``receive`` takes what came.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TextIO

from .term import Atom, Pid

if TYPE_CHECKING:  # pragma: no cover
    import argparse

    from .blocking import BlockingMailbox, BlockingNode

# readline keeps this many lines (erl's shell keeps up to 512 KiB of history by default:
# kernel's shell_history_file_bytes; a thousand lines of input is well below that)
HISTORY_LINES = 1000
DEFAULT_RECEIVE_TIMEOUT = 5.0
# a pending expression longer than this is dropped with an error (a paste gone wrong must
# not grow without bound; erl_scan has no limit, this is ours)
MAX_PENDING_CHARS = 1 << 20

HELP = """\
commands:
  EXPRS.                   evaluate Erlang expressions on the node (end with '.'; bindings
                           are kept: X = 1. then X + 1.); f(). forgets them
  rpc M:F(Args)            erpc:call, printed (also M:F/A ARG..., Enum.sum([1]), :lists.seq(1,2))
  send DEST TERM           DEST ! TERM from our pid: DEST a registered name on the node or a pid
  receive [SECONDS]        the next message sent to our pid (default wait 5 s)
  pid                      our pid, for erl to send to
  help                     this text
  quit (or q(). or Ctrl-D) leave"""


class Shell:
    """Runs the commands of one line at a time; ``out`` gets every result and error."""

    def __init__(
        self,
        node: BlockingNode,
        peer: Atom,
        box: BlockingMailbox,
        out: Callable[[str], None],
        fmt: Callable[[Any], str],
        timeout: float | None,
    ) -> None:
        self.node = node
        self.peer = peer
        self.box = box
        self.out = out
        self.fmt = fmt
        self.timeout = timeout
        self.bindings: Any = []  # erl_eval's bindings, as the node returned them
        self.pending = ""  # an expression not yet ended with '.'
        self.count = 1

    @property
    def prompt(self) -> str:
        return f"({self.peer}){self.count}> " if not self.pending else "   .. "

    def execute(self, line: str) -> bool:
        """Run one input line; False when the user asked to quit."""
        from .runtime.errors import NoConnection, RemoteError, RpcTimeout

        stripped = line.strip()
        if not self.pending:
            word, _, rest = stripped.partition(" ")
            if stripped in ("quit", "exit", "q().", "q"):
                return False
            if not stripped:
                return True
            command = {"rpc": self._rpc, "send": self._send, "receive": self._receive,
                       "pid": self._pid, "help": self._help}.get(word)
            if command is not None:
                try:
                    command(rest.strip())
                except RemoteError as e:
                    self.out(f"** exception {e.cls}: {self.fmt(e.reason)}")
                except (RpcTimeout, NoConnection, TimeoutError) as e:
                    self.out(f"** {type(e).__name__}: {e}")
                except ShellError as e:
                    self.out(f"** {e}")
                self.count += 1
                return True
        self.pending = (self.pending + "\n" + line) if self.pending else line
        if len(self.pending) > MAX_PENDING_CHARS:
            self.pending = ""
            self.out(f"** input longer than {MAX_PENDING_CHARS} characters without a final '.': dropped")
            return True
        if not self.pending.rstrip().endswith("."):
            return True
        text, self.pending = self.pending, ""
        try:
            self._eval(text)
        except RemoteError as e:
            self.out(f"** exception {e.cls}: {self.fmt(e.reason)}")
        except (RpcTimeout, NoConnection, TimeoutError) as e:
            self.out(f"** {type(e).__name__}: {e}")
        except ShellError as e:
            self.out(f"** {e}")
        self.count += 1
        return True

    # -- the commands ---------------------------------------------------------------------
    def _call(self, module: str, function: str, args: list[Any], capture: bool = False) -> Any:
        n = self.node.node
        assert n is not None
        return self.node.run(
            lambda: n.rpc(self.peer, module, function, args, timeout=self.timeout, capture_output=capture)
        )

    def _eval(self, text: str) -> None:
        if text.strip() == "f().":
            self.bindings = []
            self.out("ok")
            return
        scanned = self._call("erl_scan", "string", [[ord(c) for c in text], (1, 1)])
        if type(scanned) is not tuple or scanned[0] != Atom("ok"):
            raise ShellError(f"syntax error: {self._error_text(scanned)}")
        parsed = self._call("erl_parse", "parse_exprs", [scanned[1]])
        if type(parsed) is not tuple or parsed[0] != Atom("ok"):
            raise ShellError(f"syntax error: {self._error_text(parsed)}")
        result, output = self._call("erl_eval", "exprs", [parsed[1], self.bindings], capture=True)
        if output:
            self.out(output.rstrip("\n"))
        if type(result) is tuple and len(result) == 3 and result[0] == Atom("value"):
            self.bindings = result[2]
            self.out(self.fmt(result[1]))
        else:  # pragma: no cover - erl_eval:exprs always answers {value, V, Bs}
            self.out(self.fmt(result))

    def _error_text(self, reply: Any) -> str:
        from .runtime.iofmt import chars_to_text

        info = reply[1] if type(reply) is tuple and len(reply) >= 2 else reply
        if type(info) is tuple and len(info) == 3:
            loc, mod, desc = info
            try:
                text = chars_to_text(self._call(mod, "format_error", [desc]))
            except Exception:
                text = self.fmt(desc)
            where = f"line {loc[0]}, column {loc[1]}: " if type(loc) is tuple and len(loc) == 2 else ""
            return where + text
        return self.fmt(info)

    def _rpc(self, rest: str) -> None:
        from .cli import UsageError, parse_call

        if not rest:
            raise ShellError("rpc M:F(Args) or rpc M:F/A ARG ...")
        spec, extra = rest, []
        first = rest.split(None, 1)
        if "(" not in first[0] and len(first) > 1:
            spec, extra = first[0], first[1].split()
        try:
            call = parse_call(spec, extra)
        except UsageError as e:
            raise ShellError(str(e)) from None
        value, output = self._call(call.module, call.function, call.args, capture=True)
        if output:
            self.out(output.rstrip("\n"))
        self.out(self.fmt(value))

    def _send(self, rest: str) -> None:
        from .cli import UsageError, _dest, parse_literal

        parts = rest.split(None, 1)
        if len(parts) != 2:
            raise ShellError("send DEST TERM")
        try:
            dest = _dest(parts[0])
            term = parse_literal(parts[1].rstrip().removesuffix("."), "message")
        except (UsageError, ValueError) as e:
            raise ShellError(str(e)) from None
        self.box.send(dest if type(dest) is Pid else (dest, self.peer), term)
        self.out("ok")

    def _receive(self, rest: str) -> None:
        try:
            timeout = float(rest) if rest else DEFAULT_RECEIVE_TIMEOUT
        except ValueError:
            raise ShellError(f"receive [SECONDS]: not a number: {rest!r}") from None
        if not 0 <= timeout < float("inf"):
            raise ShellError(f"receive [SECONDS]: SECONDS must be 0 or more, not {rest!r}")
        try:
            msg = self.box.receive(timeout=timeout)
        except TimeoutError:
            self.out(f"no message within {timeout:g} s")
            return
        self.out(self.fmt(msg))

    def _pid(self, rest: str) -> None:
        self.out(self.fmt(self.box.pid))

    def _help(self, rest: str) -> None:
        self.out(HELP)


class ShellError(Exception):
    """A command the shell could not run (bad input); printed, the shell goes on."""


def _setup_readline(path: str) -> Callable[[], None]:
    """Line editing and history when readline exists; returns what saves the history."""
    try:
        import readline
    except ImportError:  # pragma: no cover - Windows, or Python built without it
        return lambda: None
    readline.set_history_length(HISTORY_LINES)
    if path:
        try:
            readline.read_history_file(path)
        except (FileNotFoundError, PermissionError, OSError):
            pass

    def save() -> None:
        if path:
            try:
                readline.write_history_file(path)
            except OSError as e:
                sys.stderr.write(f"pynode: cannot save the history to {path}: {e}\n")

    return save


def run_shell(opts: argparse.Namespace, stdin: TextIO | None = None) -> int:
    """The ``pynode shell`` command (see cli.build_parser)."""
    import secrets

    from . import cli
    from .blocking import BlockingNode
    from .runtime.errors import ConnectError

    peer = cli.peer_name(opts.node)
    cookie = cli.resolve_cookie(opts.cookie)
    host = peer.partition("@")[2]
    name = cli.own_name(opts, peer) or f"pynode_shell_{secrets.token_hex(4)}@{host}"
    node = BlockingNode(name, cookie, epmd=False, hidden=opts.hidden, epmd_port=cli._epmd_port(opts),
                        listen_host="127.0.0.1" if host in ("127.0.0.1", "localhost") else None)
    try:
        node.start()
    except OSError as e:
        raise cli.ConnectFailure(f"cannot start the shell's node: {e}") from e
    try:
        if opts.address:
            h, p = cli.parse_address(opts.address, host)
            assert node.node is not None
            node.node.add_address(peer, h, p)
        try:
            node.connect(peer)
        except (ConnectError, TimeoutError, OSError) as e:
            raise cli.ConnectFailure(f"cannot connect to {peer}: {e}") from e
        box = node.mailbox()
        history = opts.history if opts.history is not None else os.path.expanduser("~/.pynode_history")
        interactive = stdin is None and sys.stdin.isatty()
        save = _setup_readline(history) if interactive else (lambda: None)

        def out(text: str) -> None:
            sys.stdout.write(text + "\n")
            sys.stdout.flush()

        shell = Shell(node, peer, box, out, lambda v: cli.format_value(opts, v), opts.timeout)
        out(f"pynode shell connected to {peer} as {node.name}; our pid is {cli.format_term(box.pid)}; "
            "'help' for commands")
        try:
            while True:
                try:
                    if stdin is not None:
                        line = stdin.readline()
                        if not line:
                            break
                        line = line.rstrip("\n")
                    else:
                        line = input(shell.prompt)
                except EOFError:
                    out("")
                    break
                except KeyboardInterrupt:
                    out("^C")
                    shell.pending = ""
                    continue
                try:
                    if not shell.execute(line):
                        break
                except KeyboardInterrupt:
                    out("** interrupted")
        finally:
            save()
    finally:
        node.stop()
    return cli.EXIT_OK
