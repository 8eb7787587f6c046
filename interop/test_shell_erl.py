"""``pynode shell`` driven through a pseudo-terminal against a real erl: Erlang-syntax input,
kept bindings, rpc/send/receive, errors that leave the shell running, and readline history."""

from __future__ import annotations

import os
import re
import select
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from .erlnode import Epmd, ErlNode

StartErl = Callable[..., ErlNode]
WAIT = 30.0  # bound on any one expected output (the machine is shared and loaded)


class Pty:
    """A child process on a pseudo-terminal; ``expect`` waits (bounded) for a pattern."""

    def __init__(self, argv: list[str], env: dict[str, str]) -> None:
        self.master, slave = os.openpty()
        self.proc = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, env=env,
                                     close_fds=True, start_new_session=True)
        os.close(slave)
        self.buf = ""

    def expect(self, pattern: str, timeout: float = WAIT) -> re.Match[str]:
        rx = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            m = rx.search(self.buf)
            if m:
                self.buf = self.buf[m.end():]
                return m
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {pattern!r} within {timeout} s; got {self.buf[-2000:]!r}")
            r, _, _ = select.select([self.master], [], [], left)
            if r:
                try:
                    data = os.read(self.master, 65536)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    m = rx.search(self.buf)
                    if m:
                        self.buf = self.buf[m.end():]
                        return m
                    raise AssertionError(f"terminal closed before {pattern!r}; got {self.buf[-2000:]!r}")
                self.buf += data.decode("utf-8", "replace")

    def send(self, text: str) -> None:
        os.write(self.master, text.encode())

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=10)
        os.close(self.master)


@pytest.fixture
def shell_pty(tmp_path: Path) -> Iterator[Callable[..., Pty]]:
    started: list[Pty] = []

    def start(*args: str) -> Pty:
        env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb", "INPUTRC": "/dev/null", "COLUMNS": "200"}
        p = Pty([sys.executable, "-m", "pynode", "shell", *args], env)
        started.append(p)
        return p

    try:
        yield start
    finally:
        for p in started:
            p.close()


def test_shell_through_a_pty(epmd: Epmd, erl_node: StartErl, shell_pty: Callable[..., Pty], tmp_path: Path) -> None:
    erl = erl_node()
    erl.run("register(echo, spawn(fun L() -> receive {From, M} -> From ! {echoed, M}, L() end end)), ok.")
    history = tmp_path / "hist"
    sh = shell_pty(str(erl.name), "--cookie", erl.cookie, "--epmd-port", str(epmd.port), "--history", str(history))
    pid = sh.expect(r"our pid is (#Pid<[^>]+>)").group(1)
    prompt = re.escape(f"({erl.name})")
    sh.expect(prompt + r"1> ")
    sh.send("X = 6.\r")
    sh.expect(r"\r\n6\r\n")
    sh.send("X * 7.\r")  # bindings are kept between lines
    sh.expect(r"\r\n42\r\n")
    sh.send("lists:seq(1,\r")  # an expression over two lines
    sh.expect(r"\.\. ")
    sh.send("3).\r")
    sh.expect(r"\[1,2,3\]")
    sh.send("rpc erlang:node()\r")
    sh.expect(re.escape(f"'{erl.name}'"))
    sh.send("rpc lists:reverse/1 [a,b]\r")
    sh.expect(r"\[b,a\]")
    sh.send(f"send echo {{{pid}, {{hi, <<\"there\">>}}}}\r")
    sh.expect(r"\r\nok\r\n")
    sh.send("receive 10\r")
    sh.expect(r'\{echoed,\{hi,<<"there">>\}\}')
    sh.send("receive 0.2\r")
    sh.expect(r"no message within 0.2 s")
    sh.send("receive nan\r")
    sh.expect(r"\*\* receive \[SECONDS\]: SECONDS must be 0 or more")
    # errors are printed and the shell goes on
    sh.send("foo(.\r")
    sh.expect(r"\*\* syntax error: line 1")
    sh.send("rpc no_such:thing()\r")
    sh.expect(r"\*\* exception error: undef")
    sh.send("1/0.\r")
    sh.expect(r"\*\* exception error: badarith")
    sh.send("send echo {unclosed\r")
    sh.expect(r"\*\* cannot parse message")
    # history: Ctrl-P brings back the previous line (readline's previous-history)
    sh.send("X + 100.\r")
    sh.expect(r"\r\n106\r\n")
    sh.send("\x10\r")
    sh.expect(r"\r\n106\r\n")
    sh.send("quit\r")
    assert sh.proc.wait(timeout=WAIT) == 0
    saved = history.read_text()
    assert "X * 7." in saved and "rpc lists:reverse/1 [a,b]" in saved

    # a second session reads the history back: Ctrl-P recalls the last line of the first
    sh2 = shell_pty(str(erl.name), "--cookie", erl.cookie, "--epmd-port", str(epmd.port), "--history", str(history))
    sh2.expect(prompt + r"1> ")
    sh2.send("X = 1.\r")
    sh2.expect(r"\r\n1\r\n")
    sh2.send("\x10\x10\x10\r")  # back over 'X = 1.' and session one's 'quit' to 'X + 100.'
    sh2.expect(r"\r\n101\r\n")
    sh2.expect(prompt + r"3> ")  # readline reads again (a Ctrl-D typed before is a race)
    sh2.send("\x04")  # Ctrl-D leaves
    assert sh2.proc.wait(timeout=WAIT) == 0


def test_shell_connection_failure_is_one_line(epmd: Epmd, shell_pty: Callable[..., Pty]) -> None:
    sh = shell_pty("nobody@127.0.0.1", "--cookie", "x", "--epmd-port", str(epmd.port), "--history", "")
    sh.expect(r"pynode: cannot connect to nobody@127\.0\.0\.1")
    assert sh.proc.wait(timeout=WAIT) == 3
