"""The harness itself: a private epmd whose free port something else took first."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from pynode.testing import erlnode

from .erlnode import Epmd
from .otp import Otp


@pytest.fixture
def squatter() -> Iterator[int]:
    """A loopback port where a plain socket (not an epmd) listens."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        yield s.getsockname()[1]


def epmds_on(port: int) -> list[int]:
    """Pids of epmd processes started with ``-port <port>``."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                args = f.read().split(b"\0")
        except OSError:
            continue
        if args and args[0].endswith(b"epmd") and b"-port" in args:
            i = args.index(b"-port")
            if i + 1 < len(args) and args[i + 1] == str(port).encode():
                found.append(int(pid))
    return found


def test_a_taken_port_given_is_an_error_and_leaves_no_epmd(otp: Otp, squatter: int) -> None:
    with pytest.raises(RuntimeError, match=f"{squatter}"):
        Epmd(otp, port=squatter)
    assert epmds_on(squatter) == []


def test_a_free_port_taken_meanwhile_is_retried_elsewhere(
    otp: Otp, squatter: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    picks = iter([squatter])
    real = erlnode.free_port
    monkeypatch.setattr(erlnode, "free_port", lambda: next(picks, None) or real())
    e = Epmd(otp)
    try:
        assert e.port != squatter and e.proc is not None and e.proc.poll() is None
        assert epmds_on(squatter) == []
        assert epmds_on(e.port) == [e.proc.pid]
    finally:
        e.kill()


def test_another_epmd_on_the_port_is_not_taken_for_ours(otp: Otp) -> None:
    """It answers NAMES with the right port number while ours, which could not bind the
    port, has not exited yet: the listening socket must be our process's."""
    other = Epmd(otp)
    try:
        for _ in range(5):  # the race goes either way: each round must be refused
            with pytest.raises(RuntimeError, match=f"{other.port}"):
                Epmd(otp, port=other.port)
        assert epmds_on(other.port) == [other.proc.pid]  # type: ignore[union-attr]
    finally:
        other.kill()
