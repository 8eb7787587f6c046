"""`pynode proxy`: usage errors, an unreachable proxy, and the status text (no erl needed)."""

from __future__ import annotations

import socket

import pytest

from pynode.cli import EXIT_CONNECT, EXIT_USAGE, main
from pynode.proxy_cli import format_status


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    "args",
    [["proxy", "cut", "a"], ["proxy", "cut", "a", "b", "c"], ["proxy", "status", "x"],
     ["proxy", "heal", "a"], ["proxy", "explode"], ["proxy", "cut", ",", "b"]],
)
def test_usage_errors(args: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    assert main([*args, "--control-port", str(free_port())]) == EXIT_USAGE


def test_no_proxy_there(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    assert main(["proxy", "status", "--control-port", str(port)]) == EXIT_CONNECT
    assert f"cannot reach the proxy control port 127.0.0.1:{port}" in capsys.readouterr().err


def test_status_text() -> None:
    text = format_status({
        "epmd_port": 4400, "control_port": 4401, "nodes": [{"name": "a", "port": 1}],
        "links": [{"id": 3, "dialer": "a@h", "acceptor": "b@h", "state": "cut",
                   "bytes_to_acceptor": 10, "bytes_to_dialer": 20, "age": 1.5}],
        "cuts": [["a", "b"]], "shapes": [{"from": "a", "to": "b", "latency": 0.1, "jitter": 0.0,
                                         "bandwidth": 0.0}],
        "pending": [], "expired_lookups": 2, "refused_lookups": 0,
    })
    assert "EPMD port 4400, control port 4401; 1 nodes, 1 links" in text
    assert "(2 expired, 0 refused)" in text
    assert "cut a -> b" in text and "bandwidth unlimited" in text
    assert "link 3: a@h -> b@h: cut, 10 B -> / 20 B <-" in text
