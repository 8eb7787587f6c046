"""The ``pynode`` command without a network: parsing, JSON, cookies, exit codes (fake node)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import pynode.term as term
from pynode import cli
from pynode.runtime import (
    CallError,
    ConnectError,
    CookieError,
    EpmdError,
    NoConnection,
    RemoteError,
    RpcError,
    RpcTimeout,
)
from pynode.term import Atom, BitString, ImproperList, Pid, Reference
from pynode.term.syntax import TermSyntaxError

SHORT_HOST = socket.gethostname().split(".")[0]
PEER = Atom("erl@127.0.0.1")


# -- parsing M:F/A and friends ----------------------------------------------------------------


def test_mfa_forms() -> None:
    c = cli.parse_call("erlang:node/0")
    assert (c.module, c.function, c.args) == ("erlang", "node", [])
    assert type(c.module) is Atom and type(c.function) is Atom
    assert cli.parse_call("lists:seq/2", ["1", "5"]).args == [1, 5]
    assert cli.parse_call("lists:seq(1, 5)").args == [1, 5]
    assert cli.parse_call("lists:seq(1, 5).").args == [1, 5]
    assert cli.parse_call("  erlang:node()  ").args == []
    assert cli.parse_call("lists:reverse([1, {a, \"b\"}, <<\"c\">>])").args == [[1, (Atom("a"), [98]), b"c"]]
    assert cli.parse_call("lists:seq", ["1", "3"]).args == [1, 3]
    c = cli.parse_call("lists", ["reverse", "[1,2]"])
    assert (c.module, c.function, c.args) == ("lists", "reverse", [[1, 2]])
    c = cli.parse_call("'Elixir.Enum':sum([1,2])")
    assert (c.module, c.function, c.args) == ("Elixir.Enum", "sum", [[1, 2]])
    c = cli.parse_call("'my mod':'f-1'/1", ["x"])
    assert (c.module, c.function, c.args) == ("my mod", "f-1", [Atom("x")])
    assert c.label == "'my mod':'f-1'/1"
    assert cli.parse_call("m:f(#{a => [1|2]}, -3, 2.5, $a)").args == [
        {Atom("a"): ImproperList([1], 2)}, -3, 2.5, 97,
    ]


def test_mfa_arity_mismatch() -> None:
    with pytest.raises(cli.UsageError, match=r"lists:seq/2 takes 2 arguments, 1 given") as info:
        cli.parse_call("lists:seq/2", ["1"])
    assert info.value.code == 2
    with pytest.raises(cli.UsageError, match="takes 0 arguments, 1 given"):
        cli.parse_call("erlang:node/0", ["x"])


def test_bad_literal_reports_position() -> None:
    with pytest.raises(cli.UsageError, match=r"argument 2 '\{a,': line 1, column 4: ") as info:
        cli.parse_call("erlang:setelement/3", ["1", "{a,", "b"])
    assert info.value.code == 2
    # in M:F(Args) the position is counted in the whole argument as typed
    with pytest.raises(cli.UsageError, match=r"line 1, column 13: expected a term, found ','"):
        cli.parse_call("lists:seq(1,,3)")
    with pytest.raises(cli.UsageError, match=r"column 15"):
        cli.parse_call("  lists:seq(1,,3)")
    with pytest.raises(cli.UsageError, match="variables"):
        cli.parse_call("m:f(X)")


@pytest.mark.parametrize(
    ("spec", "extra", "message"),
    [
        ("", [], "missing"),
        ("erlang:node/x", [], "bad arity"),
        ("erlang:node(", [], r"missing '\)'"),
        ("m:f(1)", ["2"], "already has its arguments"),
        ("m", [], "give M:F/A"),
        ("m:f!", [], "expected /A or"),
        ("'m:f/0", [], "unterminated"),
        ("m;f/0", [], "expected ':'"),
    ],
)
def test_bad_calls(spec: str, extra: list[str], message: str) -> None:
    with pytest.raises(cli.UsageError, match=message):
        cli.parse_call(spec, extra)


def test_node_names_and_addresses() -> None:
    assert cli.peer_name("foo") == f"foo@{SHORT_HOST}"
    assert cli.peer_name("foo@bar.example") == "foo@bar.example"
    for bad in ("", "@host", "foo@"):
        with pytest.raises(cli.UsageError):
            cli.peer_name(bad)
    assert cli.parse_address("10.0.0.1:4370", "h") == ("10.0.0.1", 4370)
    assert cli.parse_address("4370", "h") == ("h", 4370)
    assert cli.parse_address(":4370", "h") == ("h", 4370)
    assert cli.parse_address("[::1]:4370", "h") == ("::1", 4370)
    for bad in ("h:x", "h:0", "h:70000"):
        with pytest.raises(cli.UsageError):
            cli.parse_address(bad, "h")


# -- JSON ---------------------------------------------------------------------------------------


def test_json_mapping() -> None:
    pid = Pid("a@h", 85, 0, 1)
    term = (
        Atom("ok"), True, False, 42, 2**70, 1.5, b"h\xc3\xa9", b"\xff\x00", [104, 105], [],
        {Atom("k"): 1, b"s": [2]}, {1: Atom("one")}, {Atom("a"): 1, b"a": 2}, {Atom("tuple"): [1]},
        ImproperList([1], Atom("t")), pid, BitString(b"\x80", 1),
    )
    doc = cli.to_json(term)
    assert json.loads(json.dumps(doc)) == doc
    assert doc == {
        "tuple": [
            "ok", True, False, 42, 2**70, 1.5, "hé", {"binary_base64": "/wA="}, [104, 105], [],
            {"k": 1, "s": [2]},
            {"map": [[1, "one"]]},
            {"map": [["a", 1], ["a", 2]]},  # keys that would merge stay pairs
            {"map": [["tuple", [1]]]},  # would read back as a tuple: stays pairs
            {"improper_list": [1], "tail": "t"},
            "#Pid<a@h.85.0.1>",
            "<<1:1>>",
        ]
    }
    assert cli.to_json(Reference("a@h", 1, (1, 2, 3))).startswith("#Ref<")
    assert cli.to_json({True: 1}) == {"true": 1}


# -- cookies --------------------------------------------------------------------------------------


def test_cookie_resolution_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.delenv("PYNODE_COOKIE", raising=False)
    with pytest.raises(cli.UsageError, match="no cookie") as info:
        cli.resolve_cookie(None)
    assert info.value.code == 2
    assert not (tmp_path / ".erlang.cookie").exists()  # never created behind the user's back
    f = tmp_path / ".erlang.cookie"
    f.write_text("FROMFILE\n")
    f.chmod(0o400)
    assert cli.resolve_cookie(None) == "FROMFILE"
    monkeypatch.setenv("PYNODE_COOKIE", "FROMENV")
    assert cli.resolve_cookie(None) == "FROMENV"
    assert cli.resolve_cookie("FROMARG") == "FROMARG"
    assert cli.resolve_cookie(None, {}) == "FROMFILE"
    with pytest.raises(cli.UsageError):
        cli.resolve_cookie("")


# -- exit codes -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (cli.UsageError("x"), 2),
        (cli.RemoteFailure("x"), 1),
        (cli.ConnectFailure("x"), 3),
        (TermSyntaxError("bad", "{", 1), 2),
        (CookieError("none"), 2),
        (RemoteError(Atom("error"), Atom("undef")), 1),
        (RemoteError(Atom("throw"), Atom("ball")), 1),
        (RpcTimeout("slow"), 1),
        (CallError(Atom("noproc")), 1),
        (CallError((Atom("nodedown"), Atom("n@h"))), 3),
        (RpcError("badrpc"), 1),
        (NoConnection("gone"), 3),
        (ConnectError("cannot connect to n@h: it did not accept our cookie"), 3),
        (EpmdError("cannot reach EPMD"), 3),
        (TimeoutError(), 3),
        (ConnectionRefusedError("refused"), 3),
        (ValueError("bug"), 1),
    ],
)
def test_exit_code_mapping(exc: BaseException, code: int) -> None:
    got, message = cli.describe_failure(exc)
    assert got == code
    assert message and "\n" not in message


def test_cookie_hint() -> None:
    _, message = cli.describe_failure(ConnectError("cannot connect to n@h: wrong cookie?"))
    assert "--cookie" in message


# -- the command with a fake node -----------------------------------------------------------------


class FakeNode:
    """Stands in for the command's client (OneShot): answers rpc/call/ping from a table;
    records what was asked."""

    def __init__(self) -> None:
        self.name = Atom("fake@127.0.0.1")
        self.port = 1
        self.asked: list[tuple[Any, ...]] = []
        self.connect_error: BaseException | None = None
        self.answers: dict[tuple[str, str], Any] = {}
        self.call_answer: Any = Atom("ok")
        self.pong = True
        self.sent: list[tuple[Any, Any]] = []
        self.io_output: Callable[[str], None] = lambda text: None

    def __enter__(self) -> FakeNode:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def close(self) -> None:
        return None

    def connect(self, peer: str, *, address: Any = None, timeout: Any = None) -> None:
        self.asked.append(("connect", peer, address, timeout))
        if self.connect_error is not None:
            raise self.connect_error

    def _answer(self, answer: Any, *args: Any) -> Any:
        if isinstance(answer, BaseException):
            raise answer
        return answer(*args) if callable(answer) else answer

    def rpc(self, peer: str, m: str, f: str, args: Any = (), *, timeout: Any = None,
                  capture_output: bool = False) -> Any:
        self.asked.append(("rpc", peer, m, f, list(args), timeout, capture_output))
        value = self._answer(self.answers.get((m, f), Atom("ok")), *args)
        return (value, "printed\n") if capture_output else value

    def call(self, dest: Any, request: Any, timeout: Any) -> Any:
        self.asked.append(("call", dest, request, timeout))
        return self._answer(self.call_answer, request)

    def send(self, dest: Any, term: Any) -> None:
        self.sent.append((dest, term))

    def ping(self, peer: str, timeout: float = 10.0) -> bool:
        self.asked.append(("ping", peer))
        return self.pong


@pytest.fixture
def fake(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[FakeNode]:
    node = FakeNode()
    made: list[dict[str, Any]] = []

    def client_node(cookie: str, peer: str, **kw: Any) -> FakeNode:
        made.append({"cookie": cookie, "peer": peer, **kw})
        return node

    monkeypatch.setattr(cli, "client_node", client_node)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("PYNODE_COOKIE", "envcookie")
    node.made = made  # type: ignore[attr-defined]
    yield node


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_rpc_prints_erlang_syntax(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answers[("erlang", "node")] = PEER
    assert run(capsys, "rpc", "erl@127.0.0.1", "erlang:node/0") == (0, "'erl@127.0.0.1'\n", "")
    fake.answers[("lists", "seq")] = lambda a, b: list(range(a, b + 1))
    assert run(capsys, "rpc", "erl@127.0.0.1", "lists:seq(1, 3)")[1] == "[1,2,3]\n"
    assert run(capsys, "--json", "rpc", "erl@127.0.0.1", "lists:seq/2", "1", "2")[1] == "[1, 2]\n"
    assert run(capsys, "rpc", "--json", "erl@127.0.0.1", "lists:seq/2", "1", "2")[1] == "[1, 2]\n"
    made = fake.made  # type: ignore[attr-defined]
    assert made[0]["cookie"] == "envcookie" and made[0]["peer"] == "erl@127.0.0.1"
    assert made[0]["name"] is None and made[0]["hidden"] is True
    assert fake.asked[0] == ("connect", "erl@127.0.0.1", None, 10.0)


def test_common_options(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, _ = run(
        capsys, "rpc", "erl", "erlang:node/0", "--cookie", "c", "--sname", "me", "--visible",
        "--address", "4370", "--timeout", "2.5", "--epmd-port", "4400",
    )
    assert code == 0
    kw = fake.made[-1]  # type: ignore[attr-defined]
    assert kw["cookie"] == "c" and kw["name"] == f"me@{SHORT_HOST}" and kw["hidden"] is False
    assert kw["epmd_port"] == 4400
    assert fake.asked[0] == ("connect", f"erl@{SHORT_HOST}", (SHORT_HOST, 4370), 2.5)
    assert fake.asked[1][5] == 2.5
    run(capsys, "--timeout", "infinity", "rpc", "erl@h", "erlang:node/0")
    assert fake.asked[-1][5] is None
    assert run(capsys, "rpc", "erl@h", "erlang:node/0", "--name", "a", "--sname", "b")[0] == 2
    assert run(capsys, "rpc", "erl@h", "erlang:node/0", "--timeout", "0")[0] == 2


def test_capture_output(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "rpc", "n@h", "io:format/1", '"x"', "--capture-output")[1] == "printed\nok\n"
    out = run(capsys, "rpc", "n@h", "io:format/1", '"x"', "--capture-output", "--json")[1]
    assert json.loads(out) == {"output": "printed\n", "result": "ok"}


def test_usage_errors_touch_no_node(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "rpc", "n@h", "lists:seq/2", "1")
    assert (code, out) == (2, "")
    assert err == "pynode: lists:seq/2 takes 2 arguments, 1 given\n"
    code, _, err = run(capsys, "rpc", "n@h", "lists:seq/2", "1", "{a,")
    assert code == 2 and "argument 2" in err and "line 1, column 4" in err and err.count("\n") == 1
    code, _, err = run(capsys, "send", "n@h", "box", "[1,")
    assert code == 2 and "message" in err
    assert run(capsys, "names", "--address", "h:1")[0] == 2
    assert run(capsys, "rpc")[0] == 2  # argparse
    assert run(capsys, "bogus")[0] == 2
    assert fake.asked == []


def test_help_everywhere(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--help"]) == 0
    text = capsys.readouterr().out
    assert "exit codes" in text and '{"tuple": [...]}' in text
    for command in cli.COMMANDS:
        assert cli.main([command, "--help"]) == 0
        assert "--cookie" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("exc", "code", "needle"),
    [
        (RemoteError(Atom("error"), Atom("undef"), [(Atom("m"), Atom("f"), [], [])]), 1, "error:undef (undefined function m:f/0)"),
        (RemoteError(Atom("throw"), Atom("ball")), 1, "throw:ball"),
        (RemoteError(Atom("exit"), Atom("bye")), 1, "exit:bye"),
        (RpcTimeout("slow"), 1, "no answer within"),
        (NoConnection("went down"), 3, "connection lost"),
        (RpcError("badrpc"), 1, "badrpc"),
    ],
)
def test_rpc_failures(
    fake: FakeNode, capsys: pytest.CaptureFixture[str], exc: BaseException, code: int, needle: str
) -> None:
    fake.answers[("m", "f")] = exc
    got, out, err = run(capsys, "rpc", "n@h", "m:f/0")
    assert (got, out) == (code, "")
    assert needle in err and err.startswith("pynode: ") and err.count("\n") == 1


@pytest.mark.parametrize(
    ("exc", "needle"),
    [
        (ConnectError("cannot connect to n@h: EPMD on h does not know 'n'"), "does not know"),
        (ConnectError("cannot connect to n@h: it did not accept our cookie"), "--cookie"),
        (TimeoutError(), "no connection within"),
        (EpmdError("cannot reach EPMD at h:4369"), "cannot reach EPMD"),
    ],
)
def test_connect_failures(
    fake: FakeNode, capsys: pytest.CaptureFixture[str], exc: BaseException, needle: str
) -> None:
    fake.connect_error = exc
    code, out, err = run(capsys, "rpc", "n@h", "erlang:node/0")
    assert (code, out) == (3, "")
    assert needle in err and err.count("\n") == 1
    code, out, err = run(capsys, "ping", "n@h")
    assert (code, out) == (3, "pang\n") and needle in err


def test_ping(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "ping", "n@h") == (0, "pong\n", "")
    fake.pong = False
    code, out, err = run(capsys, "ping", "n@h", "--json")
    assert (code, out) == (3, '"pang"\n') and "did not answer" in err


def test_eval(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    toks = [(Atom("integer"), (1, 1), 6)]
    fake.answers[("erl_scan", "string")] = lambda chars, loc: (Atom("ok"), toks, (1, 2))
    fake.answers[("erl_parse", "parse_exprs")] = lambda t: (Atom("ok"), [Atom("expr")])
    fake.answers[("erl_eval", "exprs")] = lambda e, b: (Atom("value"), 6, [])
    assert run(capsys, "eval", "n@h", "6") == (0, "6\n", "")
    scan = next(a for a in fake.asked if a[0] == "rpc" and a[2] == "erl_scan")
    assert scan[4] == [[ord("6")], (1, 1)]  # the text travels as an Erlang string
    parse = next(a for a in fake.asked if a[0] == "rpc" and a[2] == "erl_parse")
    assert parse[4] == [[*toks, (Atom("dot"), (1, 1))]]  # the final '.' is optional

    fake.answers[("erl_parse", "parse_exprs")] = lambda t: (
        Atom("error"), ((1, 5), Atom("erl_parse"), ["syntax error before: ", "','"]))
    fake.answers[("erl_parse", "format_error")] = lambda d: [list(b"syntax error before: "), list(b"','")]
    code, out, err = run(capsys, "eval", "n@h", "X=1+,2.")
    assert (code, out) == (1, "")
    assert err == "pynode: cannot parse the expressions: line 1, column 5: syntax error before: ','\n"

    fake.answers[("erl_scan", "string")] = lambda chars, loc: (
        Atom("error"), ((1, 3), Atom("erl_scan"), (Atom("string"), 34, [])), (1, 9))
    fake.answers[("erl_scan", "format_error")] = RemoteError(Atom("error"), Atom("undef"))
    code, _, err = run(capsys, "eval", "n@h", 'a "b')
    assert code == 1 and err.startswith("pynode: cannot scan the expressions: line 1, column 3: ")

    assert run(capsys, "eval", "n@h", "  ")[0] == 2


def test_send_and_call(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answers[("erlang", "whereis")] = Pid("n@h", 1, 0, 1)
    assert run(capsys, "send", "n@h", "box", "{hi, 1}") == (0, "ok\n", "")
    assert fake.sent == [((Atom("box"), Atom("n@h")), (Atom("hi"), 1))]
    fake.answers[("erlang", "whereis")] = Atom("undefined")
    code, _, err = run(capsys, "send", "n@h", "nobody", "x")
    assert code == 1 and "no process is registered as nobody" in err and len(fake.sent) == 1

    fake.call_answer = lambda req: (Atom("reply"), req)
    assert run(capsys, "call", "n@h", "srv", "ping") == (0, "{reply,ping}\n", "")
    assert fake.asked[-1] == ("call", (Atom("srv"), Atom("n@h")), Atom("ping"), 10.0)
    fake.call_answer = CallError(Atom("noproc"))
    code, _, err = run(capsys, "call", "n@h", "srv", "ping")
    assert code == 1 and "noproc" in err
    fake.call_answer = CallError((Atom("nodedown"), Atom("n@h")))
    assert run(capsys, "call", "n@h", "srv", "ping")[0] == 3
    fake.call_answer = RpcTimeout("slow")
    code, _, err = run(capsys, "call", "n@h", "srv", "ping", "--timeout", "1")
    assert code == 1 and "no reply within 1.0 s" in err


def test_interrupt_exits_130_quietly(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answers[("timer", "sleep")] = KeyboardInterrupt()
    assert run(capsys, "rpc", "n@h", "timer:sleep/1", "100") == (130, "", "")


def test_unexpected_error_is_one_line(fake: FakeNode, capsys: pytest.CaptureFixture[str]) -> None:
    fake.answers[("m", "f")] = ValueError("boom")
    code, _, err = run(capsys, "rpc", "n@h", "m:f/0")
    assert code == 1 and err == "pynode: unexpected error: ValueError: boom (--debug shows where)\n"
    code, _, err = run(capsys, "rpc", "n@h", "m:f/0", "--debug")
    assert code == 1 and "Traceback" in err


# -- serve helpers ---------------------------------------------------------------------------------


def test_load_module_and_functions(tmp_path: Path) -> None:
    f = tmp_path / "cli_served_mod.py"
    f.write_text(
        "import os\n"
        "def add(a, b):\n    return a + b\n"
        "def opt(a, b=1):\n    return a\n"
        "def var(a, *rest):\n    return a\n"
        "def _hidden():\n    pass\n"
        "path = os.path\n"
    )
    mod = cli.load_module(str(f))
    funcs = cli.public_functions(mod)
    assert sorted(funcs) == ["add", "opt", "var"]
    assert [cli.arity_text(funcs[n]) for n in ("add", "opt", "var")] == ["2", "1..2", "1+"]
    with pytest.raises(cli.UsageError, match="no Python file"):
        cli.load_module(str(tmp_path / "missing.py"))
    bad = tmp_path / "cli_bad_mod.py"
    bad.write_text("raise RuntimeError('nope')\n")
    with pytest.raises(cli.UsageError, match="RuntimeError: nope"):
        cli.load_module(str(bad))
    with pytest.raises(cli.UsageError, match="cannot import"):
        cli.load_module("no_such_module_for_pynode_cli")


def test_serve_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "cli_empty_mod.py"
    empty.write_text("X = 1\n")
    code, _, err = run(capsys, "serve", str(empty), "--cookie", "c")
    assert code == 2 and "no public functions" in err
    assert run(capsys, "serve", str(empty), "--address", "h:1")[0] == 2


def test_main_module_runs_the_cli() -> None:
    import subprocess
    import sys

    env = {**os.environ, "PYNODE_COOKIE": "c"}
    p = subprocess.run(
        [sys.executable, "-m", "pynode", "rpc", "n@h", "lists:seq/2", "1"],
        capture_output=True, text=True, timeout=60, env=env,
    )
    assert p.returncode == 2 and p.stderr == "pynode: lists:seq/2 takes 2 arguments, 1 given\n"


# -- the argument fast path reads what argparse reads ------------------------------------------

FAST_LINES = [
    ["rpc", "erl@h", "erlang:node/0"],
    ["rpc", "erl@h", "lists:seq/2", "1", "5", "--cookie", "c", "--timeout", "2.5"],
    ["--json", "rpc", "erl@h", "m:f(1)", "--capture-output", "--epmd-port=4400"],
    ["--cookie", "a", "rpc", "--cookie", "b", "n@h", "m", "f", "[1,2]", "--visible", "--hidden", "-v"],
    ["--timeout", "infinity", "eval", "n@h", "X = 1.", "--debug", "--capture-output"],
    ["ping", "n@h", "--address", "127.0.0.1:4370", "--name", "me", "--sname", "you"],
    ["names"], ["names", "localhost", "--json"],
    ["send", "n@h", "box", "{hi, 1}"], ["call", "n@h", "srv", "ping", "--timeout=3"],
    ["--cookie=", "rpc", "n@h", "erlang:node/0"],
]
SLOW_LINES = [  # argparse reads these (help, errors, abbreviations, split positionals...)
    ["--help"], ["rpc", "--help"], ["-vh"], ["--version"], ["bogus"], ["rpc"], ["rpc", "n@h"],
    ["rpc", "n@h", "m:f/1", "-5"], ["rpc", "n@h", "--json", "m:f/0", "x"], ["--cook", "c", "ping", "n@h"],
    ["--capture-output", "rpc", "n@h", "m:f/0"], ["ping", "n@h", "extra"], ["--timeout", "0", "ping", "n@h"],
    ["--epmd-port", "x", "ping", "n@h"], ["--json=1", "ping", "n@h"], ["serve", "mod"], ["ping", "--", "n@h"],
    ["--cookie", "--json", "ping", "n@h"], ["send", "n@h", "box"],
]


@pytest.mark.parametrize("argv", FAST_LINES, ids=" ".join)
def test_fast_path_reads_as_argparse(argv: list[str]) -> None:
    fast = cli._fast_parse(argv)
    assert fast is not None
    assert vars(fast) == vars(cli.build_parser().parse_args(argv))
    assert vars(fast) == vars(cli.build_parser(cli._one_command(argv)).parse_args(argv))


@pytest.mark.parametrize("argv", SLOW_LINES, ids=" ".join)
def test_other_lines_go_to_argparse(argv: list[str]) -> None:
    assert cli._fast_parse(argv) is None


def test_discover_options_make_sources() -> None:
    from pynode.cli import build_parser
    from pynode.discover_cli import _sources
    from pynode.runtime.discovery_sources import Dns, EpmdPrefix, Hosts, LocalEpmd, Nodes

    opts = build_parser().parse_args([
        "discover", "--epmd", "--host", "h1", "--host", "h2:4370", "--host", "[::1]:4371",
        "--srv", "_e._tcp.x", "--dns-server", "127.0.0.1:5353", "--dns", "x", "--basename", "app",
        "--prefix", "svc", "--seed", "a@b", "--node-host", "nh", "--include", "app*", "--watch",
    ])
    assert _sources(opts) == [
        LocalEpmd(node_host="nh"),
        Hosts(["h1", ("h2", 4370), ("::1", 4371)]),
        Dns("x", "A", basename="app"),
        Dns("_e._tcp.x", "SRV", basename="app", servers=[("127.0.0.1", 5353)]),
        EpmdPrefix("svc", node_host="nh"),
        Nodes(["a@b"]),
    ]
    assert opts.include == ["app*"] and opts.watch and opts.connect
    assert _sources(build_parser().parse_args(["discover"])) == [LocalEpmd()]
    from pynode.cli import main

    assert main(["discover", "--host", "h:99999"]) == 2


def test_discover_prints_events(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from pynode.discover_cli import _print_event
    from pynode.runtime.discovery import Join, Leave

    class Odd:
        def __str__(self) -> str:
            return "odd reason"

    node = Atom("a@h")
    for as_json in (False, True):
        opts = argparse.Namespace(json=as_json)
        _print_event(opts, Join(node))
        _print_event(opts, Leave(node, "a@h closed the connection"))
        _print_event(opts, Leave(node, Atom("gone")))
        _print_event(opts, Leave(node, Odd()))
    assert capsys.readouterr().out.splitlines() == [
        "{join,a@h}",
        "{leave,a@h,<<\"a@h closed the connection\">>}",
        "{leave,a@h,gone}",
        "{leave,a@h,<<\"odd reason\">>}",
        '{"event": "join", "node": "a@h"}',
        '{"event": "leave", "node": "a@h", "reason": "a@h closed the connection"}',
        '{"event": "leave", "node": "a@h", "reason": "gone"}',
        '{"event": "leave", "node": "a@h", "reason": "odd reason"}',
    ]


def test_the_command_imports_nothing_heavy() -> None:
    """What ``pynode rpc`` loads before it connects: none of these (each costs the cold start
    milliseconds; anyio and asyncio tens of them)."""
    heavy = [
        "anyio", "asyncio", "typing", "re", "contextlib", "argparse", "socket", "dataclasses",
        "ssl", "enum",
    ]
    if term.implementation == "c":  # the twin needs the pure codec (and what it imports) for errors only
        heavy += ["pynode.term._codec_py", "collections", "functools", "types"]
    code = (
        "import sys, pynode.cli, pynode.runtime.oneshot\n"
        "from pynode.term import Atom, Pid\n"
        "from pynode.term.syntax import format_term\n"
        # printing a reply: quoted and unquoted atoms, a binary, a string, a map, a pid
        "format_term([Atom('a@b.c'), Atom('ok'), b'bin', [104, 105], {Atom('k'): 1.5},"
        " Pid(Atom('n@h'), 1, 2, 3)])\n"
        f"print(' '.join(m for m in {heavy!r} if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == []
