"""Real erl nodes for distribution tests: each with a unique name and cookie, on loopback,
registered with its own EPMD, and always stopped."""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import time
from collections.abc import Iterable
from typing import Any

from pynode.term import Atom

from .oracle import ErlOracle
from .otp import Otp


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port: int, timeout: float = 10.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait until something accepts on 127.0.0.1:port (bounded in time)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc is not None and proc.poll() is not None:
                raise RuntimeError(f"process exited with {proc.returncode} before listening") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port} after {timeout} s") from None
            time.sleep(0.02)


class Epmd:
    """A private epmd on a free loopback port."""

    def __init__(self, otp: Otp, port: int | None = None, address: str = "127.0.0.1") -> None:
        self.port = port or free_port()
        self.address = address  # epmd's -address: a comma-separated list ("127.0.0.1,::1")
        self.exe = otp.tool("epmd")
        self.proc: subprocess.Popen[bytes] | None = None
        for attempt in range(3):
            try:
                self.start()
                return
            except (RuntimeError, TimeoutError):  # the free port was taken before epmd bound it
                if port is not None or attempt == 2:
                    raise
                self.port = free_port()

    def start(self) -> None:
        self.proc = subprocess.Popen(
            [self.exe, "-port", str(self.port), "-address", self.address, "-relaxed_command_check"],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_for_port(self.port, proc=self.proc)
            self._check_it_answers()
        except BaseException:
            self.kill()  # never left running behind a failed start
            raise

    def _check_it_answers(self) -> None:
        """What listens is an epmd (NAMES_REQ is answered with its port number) and ours is
        still running: another program that took the free port first fails this."""
        head = b""
        deadline = time.monotonic() + 5.0
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                s.sendall(b"\x00\x01n")
                s.settimeout(0.05)
                while len(head) < 4 and time.monotonic() < deadline:
                    if self.proc is not None and self.proc.poll() is not None:
                        break  # ours exited (it could not bind): no need to wait for an answer
                    try:
                        chunk = s.recv(4 - len(head))
                    except TimeoutError:
                        continue
                    if not chunk:
                        break
                    head += chunk
        except OSError:
            pass
        ours = self.proc is not None and self.proc.poll() is None and _listens(self.proc.pid, self.port)
        if head != self.port.to_bytes(4, "big") or not ours:
            raise RuntimeError(f"what listens on 127.0.0.1:{self.port} is not this epmd")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ERL_EPMD_PORT": str(self.port)}


def _listens(pid: int, port: int) -> bool:
    """Whether process ``pid`` holds a socket listening on TCP ``port`` (Linux: /proc);
    True where /proc cannot tell. Another epmd that had the port first answers NAMES with
    the same port number, while ours, which could not bind it, has not exited yet."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            with open(table) as f:
                rows = f.read().splitlines()[1:]
        except OSError:
            continue
        for row in rows:
            cols = row.split()
            # local address hex IP:PORT, state 0A = LISTEN, inode in column 9
            if len(cols) > 9 and cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(cols[9])
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return True  # no /proc here: the NAMES answer and the live process must do
    for fd in fds:
        try:
            link = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if link.startswith("socket:[") and link[8:-1] in inodes:
            return True
    return False


def unique(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(4)}"


class ErlNode(ErlOracle):
    """A distributed erl node driven over a private port: ``node.run("nodes(hidden).")``."""

    def __init__(
        self,
        otp: Otp,
        epmd: Epmd,
        *,
        name: str | None = None,
        cookie: str | None = None,
        hidden: bool = False,
        args: list[str] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.alive = name or unique("erl")
        self.name = Atom(f"{self.alive}@{host}")
        self.cookie = cookie or secrets.token_hex(8)
        erl_args = ["-name", self.name, "-setcookie", self.cookie, *(["-hidden"] if hidden else []), *(args or [])]
        super().__init__(otp, args=erl_args, env=epmd.env)

    def kill(self) -> None:
        """kill -9: the node vanishes without closing its connections cleanly."""
        self.proc.kill()
        self.proc.wait(timeout=10)

    def run(self, text: str, **bindings: Any) -> Any:
        return super().run(text, **bindings)

    def dist_port(self) -> int:
        """The port erl's distribution listens on, as its EPMD has it.

        Tests that connect without EPMD read it here rather than pin erl to a port picked
        beforehand: another socket can take that port before erl binds it.
        """
        answer = self.run('erl_epmd:port_please(binary_to_list(Alive), "127.0.0.1").', Alive=self.alive)
        if not (isinstance(answer, tuple) and answer[0] == Atom("port")):
            raise RuntimeError(f"{self.name} is not registered with its EPMD: {answer!r}")
        return int(answer[1])


def stop_nodes(nodes: Iterable[ErlNode]) -> None:
    """Stop every node (kill -9, then close its oracle pipe), even when one of them fails:
    the finalizer of a fixture that started several."""
    for node in nodes:
        try:
            node.kill()
        except Exception:
            pass
        node.close()
