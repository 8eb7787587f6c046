"""pynode's EPMD server with real erl nodes and OTP's own ``epmd`` client tool.

The server runs in a background thread with its own event loop (an anyio blocking portal),
on a free loopback port; erl is told to use it (ERL_EPMD_PORT, -start_epmd false).
"""

from __future__ import annotations

import os
import secrets
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from anyio.from_thread import BlockingPortal, start_blocking_portal

from pynode.epmd import EpmdServer
from pynode.runtime import Node
from pynode.term import Atom

from .erlnode import ErlNode, free_port, stop_nodes, unique
from .otp import Otp

WAIT = 20.0  # seconds: bound of every wait on erl


class PyEpmd:
    """Our EPMD in a thread; quacks like erlnode.Epmd (``.port``, ``.env``) for ErlNode."""

    def __init__(self, port: int | None = None, **options: Any) -> None:
        self.port = port or free_port()
        self.options = options
        self._portal_cm: Any = None
        self._server_cm: Any = None
        self.portal: BlockingPortal | None = None
        self.server: EpmdServer | None = None
        self.start()

    def start(self) -> None:
        self._portal_cm = start_blocking_portal("asyncio")
        self.portal = self._portal_cm.__enter__()
        try:
            self._server_cm = self.portal.wrap_async_context_manager(
                EpmdServer("127.0.0.1", self.port, **self.options)
            )
            self.server = self._server_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self.portal = None
            raise

    def stop(self) -> None:
        try:
            if self._server_cm is not None:
                self._server_cm.__exit__(None, None, None)
        finally:
            self._server_cm = self.server = None
            if self._portal_cm is not None:
                self._portal_cm.__exit__(None, None, None)
            self._portal_cm = self.portal = None

    def call(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run a (sync) server method on the server's event loop."""
        assert self.portal is not None
        return self.portal.call(fn, *args)

    def names(self) -> dict[str, int]:
        assert self.server is not None
        return dict(self.call(self.server.names))

    def wait_names(self, check: Callable[[dict[str, int]], bool], what: str) -> dict[str, int]:
        deadline = time.monotonic() + WAIT
        while True:
            names = self.names()
            if check(names):
                return names
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} within {WAIT} s; EPMD has {names}")
            time.sleep(0.05)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ERL_EPMD_PORT": str(self.port)}


@pytest.fixture
def py_epmd() -> Iterator[PyEpmd]:
    e = PyEpmd(relaxed_command_check=True)
    try:
        yield e
    finally:
        e.stop()


StartErl = Callable[..., ErlNode]


@pytest.fixture
def start_erl(otp: Otp, py_epmd: PyEpmd) -> Iterator[StartErl]:
    """erl nodes registered with our EPMD (never starting OTP's); all stopped at the end."""
    started: list[ErlNode] = []

    def start(**kwargs: Any) -> ErlNode:
        args = ["-start_epmd", "false", *kwargs.pop("args", [])]
        node = ErlNode(otp, py_epmd, args=args, **kwargs)  # type: ignore[arg-type]
        started.append(node)
        return node

    try:
        yield start
    finally:
        stop_nodes(started)


def epmd_tool(otp: Otp, port: int, *args: str) -> str:
    """OTP's own ``epmd`` program as a client of our server."""
    out = subprocess.run(
        [otp.tool("epmd"), "-port", str(port), *args],
        capture_output=True,
        timeout=WAIT,
        env={k: v for k, v in os.environ.items() if not k.startswith("ERL_EPMD")},
    )
    return (out.stdout + out.stderr).decode("utf-8", "replace")


def erl_names(erl: ErlNode) -> dict[str, int]:
    got = erl.run("{ok, L} = net_adm:names(), [{list_to_binary(N), P} || {N, P} <- L].")
    return {n.decode(): p for n, p in got}


def test_erl_registers_and_epmd_tool_lists_it(
    start_erl: StartErl, py_epmd: PyEpmd, otp: Otp
) -> None:
    erl = start_erl()
    names = py_epmd.wait_names(lambda n: erl.alive in n, "erl did not register")
    dist_port = erl.run(
        "{port, P, _} = erl_epmd:port_please(binary_to_list(A), {127, 0, 0, 1}), P.", A=erl.alive
    )
    assert names[erl.alive] == dist_port
    # erl's creation is the one we handed out (32-bit, ALIVE2_X_RESP)
    assert py_epmd.server is not None
    assert erl.run("erlang:system_info(creation).") == py_epmd.call(
        py_epmd.server.creation, erl.alive
    )
    # erl's own NAMES client accepts our reply
    assert erl_names(erl) == names
    # and so does OTP's epmd program
    text = epmd_tool(otp, py_epmd.port, "-names")
    assert f"up and running on port {py_epmd.port}" in text
    assert f"name {erl.alive} at port {dist_port}" in text
    assert f"<{erl.alive}> at port {dist_port}" in epmd_tool(otp, py_epmd.port, "-dump")


def test_two_erl_nodes_find_each_other(start_erl: StartErl, py_epmd: PyEpmd) -> None:
    a = start_erl()
    b = start_erl(cookie=a.cookie)
    py_epmd.wait_names(lambda n: a.alive in n and b.alive in n, "erl nodes did not register")
    assert a.run("net_adm:ping(B).", B=b.name) == Atom("pong")
    assert a.name in b.run("nodes().")
    stranger = start_erl()  # another cookie
    assert a.run("net_adm:ping(S).", S=stranger.name) == Atom("pang")


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_pynode_registers_and_erl_pings_it(start_erl: StartErl, py_epmd: PyEpmd) -> None:
    erl = start_erl()
    name = unique("py") + "@127.0.0.1"
    async with Node(name, erl.cookie, epmd_port=py_epmd.port, listen_host="127.0.0.1") as node:
        alive = name.split("@")[0]
        assert alive in py_epmd.names()
        pong = await anyio.to_thread.run_sync(lambda: erl.run("net_adm:ping(N).", N=node.name))
        assert pong == Atom("pong")
        assert await node.ping(erl.name) is True  # and the other way, looked up through us
    assert alive not in py_epmd.wait_names(lambda n: alive not in n, "pynode did not unregister")


def test_killed_erl_frees_its_name(start_erl: StartErl, py_epmd: PyEpmd, otp: Otp) -> None:
    erl = start_erl()
    py_epmd.wait_names(lambda n: erl.alive in n, "erl did not register")
    creation = erl.run("erlang:system_info(creation).")
    erl.kill()
    py_epmd.wait_names(lambda n: erl.alive not in n, "the killed node's name was not freed")
    again = start_erl(name=erl.alive, cookie=erl.cookie)
    py_epmd.wait_names(lambda n: again.alive in n, "the name could not be registered again")
    assert again.run("erlang:system_info(creation).") == (creation + 1) & 0xFFFFFFFF


def test_name_in_use_is_refused_to_erl(py_epmd: PyEpmd, otp: Otp) -> None:
    alive = unique("taken")
    assert py_epmd.server is not None
    py_epmd.call(lambda: py_epmd.server.register(alive, 1))  # type: ignore[union-attr]
    out = subprocess.run(
        [
            otp.erl,
            "-noshell",
            "-start_epmd",
            "false",
            "-name",
            f"{alive}@127.0.0.1",
            "-setcookie",
            secrets.token_hex(8),
            "-eval",
            "halt(0).",
        ],
        capture_output=True,
        timeout=60,
        env=py_epmd.env,
    )
    assert out.returncode != 0
    assert b"in use" in out.stdout + out.stderr


def test_erl_reregisters_after_server_restart(start_erl: StartErl, py_epmd: PyEpmd) -> None:
    a = start_erl()
    b = start_erl(cookie=a.cookie)
    py_epmd.wait_names(lambda n: a.alive in n and b.alive in n, "erl nodes did not register")
    py_epmd.stop()
    py_epmd.start()  # same port, empty tables; OTP 23+ nodes register again every 2 s
    py_epmd.wait_names(lambda n: a.alive in n and b.alive in n, "erl nodes did not re-register")
    assert a.run("net_adm:ping(B).", B=b.name) == Atom("pong")


def test_epmd_tool_stop_and_kill(start_erl: StartErl, py_epmd: PyEpmd, otp: Otp) -> None:
    erl = start_erl()
    py_epmd.wait_names(lambda n: erl.alive in n, "erl did not register")
    # -stop (we run with relaxed_command_check): the name goes; erl notices and comes back
    assert "STOPPED" in epmd_tool(otp, py_epmd.port, "-stop", erl.alive)
    assert "NOEXIST" in epmd_tool(otp, py_epmd.port, "-stop", unique("nobody"))
    py_epmd.wait_names(lambda n: erl.alive in n, "erl did not register again after -stop")
    # -kill: relaxed, so the server stops even with erl registered
    assert "Killed" in epmd_tool(otp, py_epmd.port, "-kill")
    assert py_epmd.server is not None
    deadline = time.monotonic() + WAIT
    while not py_epmd.server.stopped:
        assert time.monotonic() < deadline, "KILL_REQ did not stop the server"
        time.sleep(0.05)
