"""Observability against real erl: per-connection counters read from Python, the
pynode_status process answering erl, reconnect history, and ``pynode status``."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import anyio
import pytest

from pynode.runtime import Node
from pynode.runtime.status import node_status
from pynode.term import Atom

from .erlnode import Epmd, ErlNode, unique

pytestmark = pytest.mark.anyio
StartErl = Callable[..., ErlNode]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def py_node(epmd: Epmd, cookie: str) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1")


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


def conn_entry(status: dict[Atom, Any], peer: Atom) -> dict[Atom, Any]:
    found = [c for c in status[Atom("connections")] if c[Atom("peer")] == peer]
    assert len(found) == 1, status
    return found[0]


async def wait_until(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    with anyio.fail_after(timeout):
        while not pred():
            await anyio.sleep(0.05)


async def test_counters_from_python_and_from_erl(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node(args=["-kernel", "net_ticktime", "4"])  # erl ticks every second
    async with py_node(epmd, erl.cookie) as node:
        box = node.mailbox("sink")
        await node.connect(erl.name)
        conn = node.connection(erl.name)
        assert conn is not None
        n = 25
        # Python -> erl: n messages of 100 bytes each, to a process that counts them
        await erl_run(erl, "register(counter, spawn(fun L() -> receive {count, P} -> P ! {n, "
                      "erlang:process_info(self(), message_queue_len)}, L() after 60000 -> ok end end)), ok.")
        out0, bout0 = conn.messages_out, conn.bytes_out
        for _ in range(n):
            await box.send((Atom("counter"), erl.name), b"x" * 100)
        assert conn.messages_out - out0 == n
        assert conn.bytes_out - bout0 >= n * 100
        # erl -> Python: n messages
        in0 = conn.messages_in
        await erl_run(erl, "[{sink, N} ! {m, I} || I <- lists:seq(1, 25)], ok.", N=node.name)
        for _ in range(n):
            await box.receive(timeout=10)
        assert conn.messages_in - in0 >= n  # plus the rpc traffic erl_run may cause: none here
        # ticks: erl's net_ticktime 4 s sends one each second; we answer or tick ourselves
        await wait_until(lambda: conn.ticks_in >= 1 and conn.ticks_out >= 1)

        st = node_status(node)
        assert st[Atom("node")] == node.name and st[Atom("port")] == node.port
        e = conn_entry(st, erl.name)
        assert e[Atom("messages_out")] == conn.messages_out and e[Atom("connects")] == 1
        assert e[Atom("reconnects")] == 0 and e[Atom("alive")] is True

        # from erl: gen_server:call and the plain {status, From} request
        got = await erl_run(erl, "gen_server:call({pynode_status, N}, status, 10000).", N=node.name)
        mine = conn_entry(got, erl.name)
        assert mine[Atom("messages_in")] >= n and mine[Atom("bytes_in")] > 0 and mine[Atom("ticks_in")] >= 1
        got = await erl_run(erl, "{pynode_status, N} ! {status, self()}, receive {pynode_status, N, S} -> "
                            "maps:get(node, S) after 10000 -> timeout end.", N=node.name)
        assert got == node.name
        bad = await erl_run(erl, "gen_server:call({pynode_status, N}, what, 10000).", N=node.name)
        assert bad == (Atom("error"), Atom("unknown_request"))


async def test_reconnects_and_down_reasons(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        await node.connect(erl.name)
        assert await erl_run(erl, "erlang:disconnect_node(N).", N=node.name) is True
        await wait_until(lambda: node.connection(erl.name) is None)
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pong")
        await wait_until(lambda: node.connection(erl.name) is not None)
        st = node_status(node)
        e = conn_entry(st, erl.name)
        assert (e[Atom("connects")], e[Atom("reconnects")]) == (2, 1)
        (h,) = [h for h in st[Atom("history")] if h[Atom("peer")] == erl.name]
        assert h[Atom("connects")] == 2 and b"closed" in h[Atom("down_reason")]
        assert abs(h[Atom("down_ms")] / 1000 - time.time()) < 120


def test_history_is_bounded() -> None:
    from pynode.runtime import status

    h = status.PeerHistory()
    for i in range(status.MAX_HISTORY + 50):
        h.connected(Atom(f"p{i}@h"))
        h.disconnected(Atom(f"p{i}@h"), "gone")
    items = h.items()
    assert len(items) == status.MAX_HISTORY
    assert items[0][Atom("peer")] == Atom("p50@h")


async def test_pynode_status_command(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        await node.connect(erl.name)
        o = ["--epmd-port", str(epmd.port), "--cookie", erl.cookie]

        def cli(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run([sys.executable, "-m", "pynode", *args], capture_output=True, text=True, timeout=60)

        p = await anyio.to_thread.run_sync(lambda: cli("status", node.name, *o))
        assert p.returncode == 0, p.stderr
        lines = p.stdout.splitlines()
        assert lines[0].startswith(f"node {node.name}  creation ")
        row = next(line for line in lines if line.startswith(str(erl.name)))
        assert row.split()[1] == "up"
        p = await anyio.to_thread.run_sync(lambda: cli("status", "--json", node.name, *o))
        doc = json.loads(p.stdout)
        assert doc["node"] == node.name and any(c["peer"] == erl.name for c in doc["connections"])
        # an erl node has no pynode_status: a clear error, exit 1
        p = await anyio.to_thread.run_sync(lambda: cli("status", erl.name, *o))
        assert p.returncode == 1 and "no pynode_status process" in p.stderr


async def test_observations_for_metrics_exporters(epmd: Epmd, erl_node: StartErl) -> None:
    from pynode.runtime.status import observations

    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        assert observations(node) == []
        assert await node.rpc(erl.name, "erlang", "node") == erl.name
        obs = {name: (value, attrs) for name, value, attrs in observations(node)}
        value, attrs = obs["pynode.connection.messages_out"]
        assert value >= 1 and attrs == {"peer": str(erl.name), "node": str(node.name)}
        assert obs["pynode.connection.bytes_in"][0] > 0
        assert obs["pynode.connection.reconnects"][0] == 0
        assert set(obs) == {f"pynode.connection.{n}" for n in (
            "messages_in", "messages_out", "bytes_in", "bytes_out", "ticks_in", "ticks_out", "reconnects")}
