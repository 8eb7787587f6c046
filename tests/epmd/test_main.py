"""``python -m pynode.epmd`` as a process: serves, answers, stops on SIGTERM/SIGINT."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import anyio
import pytest

from pynode.epmd.__main__ import build_parser, make_server
from pynode.runtime.epmd import names, register


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError(f"EPMD exited with {proc.returncode}") from None
            if time.monotonic() > deadline:
                raise TimeoutError(f"EPMD not listening on {port}") from None
            time.sleep(0.02)


def start(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ERL_EPMD")}
    return subprocess.Popen(
        [sys.executable, "-m", "pynode.epmd", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


@pytest.fixture
def epmd_proc() -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    proc = start("--port", str(port), "--address", "127.0.0.1", "-d")
    try:
        wait_for_port(port, proc)
        yield proc, port
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
        assert proc.stderr is not None
        proc.stderr.close()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serves_until_signal(epmd_proc: tuple[subprocess.Popen[bytes], int], sig: int) -> None:
    proc, port = epmd_proc

    async def check() -> None:
        reg = await register("clinode", 5555, port=port)
        assert await names("127.0.0.1", port) == [("clinode", 5555)]
        await reg.stream.aclose()

    anyio.run(check)
    proc.send_signal(sig)
    assert proc.wait(timeout=10) == 0
    assert proc.stderr is not None
    assert b"registering 'clinode'" in proc.stderr.read()


def test_second_instance_exits_zero(epmd_proc: tuple[subprocess.Popen[bytes], int]) -> None:
    _, port = epmd_proc
    other = start("-port", str(port), "-address", "127.0.0.1")
    try:
        assert other.wait(timeout=15) == 0  # as epmd: one is already running there
        assert other.stderr is not None
        assert b"already" in other.stderr.read()
    finally:
        if other.poll() is None:
            other.kill()
            other.wait(timeout=10)
        assert other.stderr is not None
        other.stderr.close()


def test_options_like_epmd(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ERL_EPMD_ADDRESS", raising=False)
    monkeypatch.delenv("ERL_EPMD_RELAXED_COMMAND_CHECK", raising=False)
    monkeypatch.setenv("ERL_EPMD_PORT", "4444")
    args = build_parser().parse_args(["-relaxed_command_check", "-dd", "-packet_timeout", "5"])
    server = make_server(args)
    assert server._requested_port == 4444
    assert server.relaxed_command_check and server.packet_timeout == 5.0 and args.debug == 2
    assert server._hosts == ["0.0.0.0"] and server._optional_hosts == ["::"]
    args = build_parser().parse_args(["--port", "0", "--address", "192.0.2.1, ::1"])
    server = make_server(args)
    assert server._hosts == ["192.0.2.1", "::1"] and server._optional_hosts == ["127.0.0.1"]
    assert not server.relaxed_command_check
    monkeypatch.setenv("ERL_EPMD_RELAXED_COMMAND_CHECK", "1")
    monkeypatch.setenv("ERL_EPMD_ADDRESS", "127.0.0.1")
    server = make_server(build_parser().parse_args([]))
    assert server.relaxed_command_check and server._hosts == ["127.0.0.1"]
