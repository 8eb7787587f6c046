"""The ``pynode`` command against real erl nodes, run as a subprocess with its exit codes."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pynode.term import Atom

from .erlnode import Epmd, ErlNode, free_port, unique

StartErl = Callable[..., ErlNode]
CLI_TIMEOUT = 60  # a bound for any one CLI run; they take well under a second


def pynode(*args: str, env: dict[str, str] | None = None, timeout: float = CLI_TIMEOUT) -> subprocess.CompletedProcess[str]:
    """Run ``python -m pynode ARGS`` and wait for it (bounded)."""
    return subprocess.run(
        [sys.executable, "-m", "pynode", *args],
        capture_output=True, text=True, timeout=timeout, env=env,
    )


def opts(epmd: Epmd, erl: ErlNode) -> list[str]:
    return ["--epmd-port", str(epmd.port), "--cookie", erl.cookie]


def one_error_line(p: subprocess.CompletedProcess[str]) -> str:
    """The failure's single stderr line (no traceback)."""
    assert p.stderr.startswith("pynode: ") and p.stderr.count("\n") == 1, p.stderr
    assert "Traceback" not in p.stderr
    return p.stderr


def test_rpc_both_forms_and_json(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    o = opts(epmd, erl)
    p = pynode("rpc", erl.name, "erlang:node/0", *o)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"'{erl.name}'\n", "")
    assert pynode("rpc", erl.name, "lists:seq/2", "1", "5", *o).stdout == "[1,2,3,4,5]\n"
    assert pynode("rpc", erl.name, "lists:seq(1, 5)", *o).stdout == "[1,2,3,4,5]\n"
    assert pynode("rpc", erl.name, "lists", "reverse", "[a, {b, \"c\"}]", *o).stdout == '[{b,"c"},a]\n'
    p = pynode("rpc", erl.name, 'erlang:list_to_binary("hi")', *o)
    assert (p.returncode, p.stdout) == (0, '<<"hi">>\n')
    p = pynode("rpc", "--json", erl.name, "erlang:list_to_tuple([ok, 1, <<\"x\">>, #{a => [1.5]}])", *o)
    assert p.returncode == 0
    assert json.loads(p.stdout) == {"tuple": ["ok", 1, "x", {"a": [1.5]}]}
    p = pynode("rpc", erl.name, 'io:format("hello ~p~n", [42])', "--capture-output", *o)
    assert (p.returncode, p.stdout) == (0, "hello 42\nok\n")


def test_rpc_errors(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    o = opts(epmd, erl)
    p = pynode("rpc", erl.name, "erlang:error(oops)", *o)
    assert (p.returncode, p.stdout) == (1, "")
    assert "erlang:error/1" in one_error_line(p) and "error:oops" in p.stderr
    p = pynode("rpc", erl.name, "erlang:throw/1", "ball", *o)
    assert p.returncode == 1 and "throw:ball" in one_error_line(p)
    p = pynode("rpc", erl.name, "no_such_mod:f/0", *o)
    assert p.returncode == 1
    assert "error:undef (undefined function no_such_mod:f/0)" in one_error_line(p)
    p = pynode("rpc", erl.name, "lists:seq/2", "1", *o)
    assert p.returncode == 2 and "takes 2 arguments, 1 given" in one_error_line(p)
    p = pynode("rpc", erl.name, "lists:seq/2", "1", "{2", *o)
    assert p.returncode == 2 and "line 1, column 3" in one_error_line(p)


def test_rpc_timeout_is_quick(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    t0 = time.monotonic()
    p = pynode("rpc", erl.name, "timer:sleep/1", "20000", "--timeout", "0.5", *opts(epmd, erl))
    assert p.returncode == 1 and "no answer within 0.5 s" in one_error_line(p)
    assert time.monotonic() - t0 < 10


def test_ping(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    p = pynode("ping", erl.name, *opts(epmd, erl))
    assert (p.returncode, p.stdout, p.stderr) == (0, "pong\n", "")
    p = pynode("ping", unique("nobody") + "@127.0.0.1", *opts(epmd, erl))
    assert (p.returncode, p.stdout) == (3, "pang\n")
    assert "does not know" in one_error_line(p)


def test_wrong_cookie(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    for args in (["ping", erl.name], ["rpc", erl.name, "erlang:node/0"]):
        p = pynode(*args, "--epmd-port", str(epmd.port), "--cookie", "not-" + erl.cookie)
        assert p.returncode == 3, p.stderr
        assert "cookie" in one_error_line(p)


def test_names(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    p = pynode("names", "--epmd-port", str(epmd.port))
    assert p.returncode == 0
    assert any(line.startswith(f"name {erl.alive} at port ") for line in p.stdout.splitlines())
    p = pynode("names", "127.0.0.1", "--json", "--epmd-port", str(epmd.port))
    assert erl.alive in [e["name"] for e in json.loads(p.stdout)]
    p = pynode("names", "--epmd-port", str(free_port()))
    assert p.returncode == 3 and "EPMD" in one_error_line(p)


def test_eval(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    o = opts(epmd, erl)
    p = pynode("eval", erl.name, "X = 1 + 2, X * 2.", *o)
    assert (p.returncode, p.stdout, p.stderr) == (0, "6\n", "")
    p = pynode("eval", erl.name, "lists:sum([1, 2, 3])  % no final dot", *o)
    assert (p.returncode, p.stdout) == (0, "6\n")
    p = pynode("eval", erl.name, "node()", "--json", *o)
    assert json.loads(p.stdout) == erl.name
    p = pynode("eval", erl.name, "X = 1 +, X.", *o)
    assert p.returncode == 1
    assert "cannot parse the expressions: line 1, column 8: syntax error before: ','" in one_error_line(p)
    p = pynode("eval", erl.name, 'X = "abc', *o)
    assert p.returncode == 1  # the column is 5 on OTP 25, 6 on OTP 28
    assert re.search(r"cannot scan the expressions: line 1, column \d+: unterminated string", one_error_line(p))
    p = pynode("eval", erl.name, "X = 1, X = 2.", *o)
    assert p.returncode == 1 and "{badmatch,2}" in one_error_line(p)


def test_send(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    name = unique("sink")
    erl.run(
        "P = spawn(fun() -> receive M -> receive {From, get} -> From ! {got, M} end end end),"
        "true = register(Name, P), ok.",
        Name=Atom(name),
    )
    p = pynode("send", erl.name, name, '{hello, [1, 2], <<"x">>, "str"}', *opts(epmd, erl))
    assert (p.returncode, p.stdout, p.stderr) == (0, "ok\n", "")
    got = erl.run("Name ! {self(), get}, receive {got, M} -> M after 5000 -> timeout end.", Name=Atom(name))
    assert got == (Atom("hello"), [1, 2], b"x", list(b"str"))
    p = pynode("send", erl.name, unique("nobody"), "x", *opts(epmd, erl))
    assert p.returncode == 1 and "no process is registered" in one_error_line(p)


def test_call(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    o = opts(epmd, erl)
    p = pynode("call", erl.name, "kernel_sup", "which_children", *o)
    assert p.returncode == 0 and "kernel_safe_sup" in p.stdout, p.stderr
    name = unique("adder")
    erl.run(
        "P = spawn(fun Loop() -> receive"
        "  {'$gen_call', From, {add, A, B}} -> gen_server:reply(From, A + B), Loop();"
        "  {'$gen_call', _From, ignore} -> Loop()"
        " end end), true = register(Name, P), ok.",
        Name=Atom(name),
    )
    p = pynode("call", erl.name, name, "{add, 2, 3}", *o)
    assert (p.returncode, p.stdout, p.stderr) == (0, "5\n", "")
    t0 = time.monotonic()
    p = pynode("call", erl.name, name, "ignore", "--timeout", "0.5", *o)
    assert p.returncode == 1 and "no reply within 0.5 s" in one_error_line(p)
    assert time.monotonic() - t0 < 10
    p = pynode("call", erl.name, unique("nobody"), "x", *o)
    assert p.returncode == 1 and "noproc" in one_error_line(p)


def test_address_without_epmd(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    port = erl.dist_port()
    dead_epmd = str(free_port())  # nothing listens there: EPMD is not asked
    p = pynode("rpc", erl.name, "erlang:node/0", "--address", f"127.0.0.1:{port}",
               "--epmd-port", dead_epmd, "--cookie", erl.cookie)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"'{erl.name}'\n", "")
    p = pynode("ping", erl.name, "--address", str(port), "--epmd-port", dead_epmd, "--cookie", erl.cookie)
    assert (p.returncode, p.stdout) == (0, "pong\n")
    p = pynode("ping", erl.name, "--epmd-port", dead_epmd, "--cookie", erl.cookie)
    assert p.returncode == 3 and "EPMD" in one_error_line(p)


def test_clean_shell(epmd: Epmd, erl_node: StartErl, tmp_path: Path) -> None:
    """The console script with only HOME's cookie file and ERL_EPMD_PORT, as a user has."""
    erl = erl_node()
    cookie = tmp_path / ".erlang.cookie"
    cookie.write_text(erl.cookie)
    cookie.chmod(0o400)
    env = {k: v for k, v in epmd.env.items() if k != "PYNODE_COOKIE"}
    env["HOME"] = str(tmp_path)
    script = os.path.join(os.path.dirname(sys.executable), "pynode")
    assert os.access(script, os.X_OK), "the pynode console script is not installed in the venv"
    p = subprocess.run([script, "rpc", erl.name, "erlang:node/0"], capture_output=True, text=True,
                       timeout=CLI_TIMEOUT, env=env, cwd=tmp_path)
    assert (p.returncode, p.stdout, p.stderr) == (0, f"'{erl.name}'\n", "")


SERVED = '''
"""Functions served to erl by pynode serve."""

def add(a, b):
    return a + b

def greet(name):
    return b"hello " + bytes(name)

def fail():
    raise ValueError("nope")

def _private():
    return 1
'''


def read_line(proc: subprocess.Popen[bytes], timeout: float) -> str:
    """One line of the process's stdout, waiting at most ``timeout`` seconds."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no line from the process within {timeout} s (got {buf!r})")
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 4096)
            if not chunk:
                raise RuntimeError(f"process ended (exit {proc.poll()}) after {buf!r}")
            buf += chunk
    return buf.decode()


def test_serve(epmd: Epmd, erl_node: StartErl, tmp_path: Path) -> None:
    erl = erl_node()
    mod = tmp_path / "pyserved.py"
    mod.write_text(SERVED)
    py_name = unique("pyserve") + "@127.0.0.1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynode", "serve", str(mod), "--name", py_name, "--json", *opts(epmd, erl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        banner = json.loads(read_line(proc, 30))
        assert banner["node"] == py_name and banner["module"] == "pyserved"
        assert sorted(banner["functions"]) == ["add/2", "fail/0", "greet/1"]
        node = Atom(py_name)
        assert erl.run("rpc:call(N, pyserved, add, [1, 2]).", N=node) == 3
        assert erl.run('erpc:call(N, pyserved, greet, ["erl"]).', N=node) == b"hello erl"
        bad = erl.run("rpc:call(N, pyserved, fail, []).", N=node)
        assert bad[0] == Atom("badrpc")
        assert erl.run("rpc:call(N, pyserved, nope, []).", N=node)[0] == Atom("badrpc")
        # the CLI reaches its own kind too
        p = pynode("rpc", py_name, "pyserved:add/2", "40", "2", *opts(epmd, erl))
        assert (p.returncode, p.stdout) == (0, "42\n")
        p = pynode("names", "--epmd-port", str(epmd.port))
        assert f"name {py_name.partition('@')[0]} at port {banner['port']}" in p.stdout
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert proc.stderr is not None and b"Traceback" not in proc.stderr.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def test_serve_sigint_and_name_taken(epmd: Epmd, erl_node: StartErl, tmp_path: Path) -> None:
    erl = erl_node()
    mod = tmp_path / "pyserved2.py"
    mod.write_text(SERVED)
    base = [sys.executable, "-m", "pynode", "serve", str(mod), "--name", erl.name, *opts(epmd, erl)]
    p = subprocess.run(base, capture_output=True, text=True, timeout=CLI_TIMEOUT)
    assert p.returncode == 3 and "refused the name" in one_error_line(p)  # erl has that name
    py_name = unique("pyserve") + "@127.0.0.1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynode", "serve", str(mod), "--name", py_name, *opts(epmd, erl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        line = read_line(proc, 30)
        assert line.startswith(f"serving pyserved2 on {py_name} (port ") and "add/2" in line
        assert erl.run("rpc:call(N, pyserved2, add, [2, 2]).", N=Atom(py_name)) == 4
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        for f in (proc.stdout, proc.stderr):
            if f is not None:
                f.close()


def test_ctrl_c_exits_130_quietly(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynode", "rpc", erl.name, "timer:sleep/1", "60000", "--timeout", "120",
         *opts(epmd, erl)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
    )
    try:
        sleeping = "[P || P <- processes(), erlang:process_info(P, current_function) == {current_function, {timer, sleep, 1}}]."
        deadline = time.monotonic() + 30
        while not erl.run(sleeping):  # the call is running on erl now
            assert time.monotonic() < deadline, "the rpc never reached erl"
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.05)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=20)
        assert (proc.returncode, out, err) == (130, b"", b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_own_node_name(epmd: Epmd, erl_node: StartErl) -> None:
    """By default erl names our node (NAME_ME, as erl_call -R); --name picks it."""
    erl = erl_node()
    p = pynode("eval", erl.name, "[atom_to_list(N) || N <- nodes(hidden)].", "--json", *opts(epmd, erl))
    assert p.returncode == 0, p.stderr
    (ours,) = [bytes(n).decode() for n in json.loads(p.stdout)]
    assert ours.endswith("@127.0.0.1") and not ours.startswith("undefined@")
    me = unique("me") + "@127.0.0.1"
    p = pynode("rpc", erl.name, "erlang:nodes/1", "[hidden, visible]", "--name", me, "--visible", *opts(epmd, erl))
    assert (p.returncode, p.stdout) == (0, f"['{me}']\n"), p.stderr
