"""Discovery against real erl nodes (OTP 25 and 28), hidden and visible: found without being
named, connected, lost, found again; filters keep nodes out; a visible pynode joins a cluster
as erl does. The second host is a pair of network namespaces the test makes and deletes."""

from __future__ import annotations

import json
import os
import secrets
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import anyio
import pytest

from pynode.runtime import Node
from pynode.runtime.discovery import Backoff, Discovery, Join, Leave
from pynode.runtime.discovery_sources import Nodes
from pynode.term import Atom
from pynode.testing.cluster import wait_for

from .erlnode import Epmd, ErlNode, stop_nodes, unique
from .otp import Otp

StartErl = Callable[..., ErlNode]
WAIT = 60.0  # the machine is shared and loaded: generous bounds, nothing slept
FAST: dict[str, Any] = {"interval": 0.5, "backoff": Backoff(initial=0.1, cap=1.0)}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(params=["hidden", "visible"])
def hidden(request: pytest.FixtureRequest) -> bool:
    return bool(request.param == "hidden")


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    """Evaluate in erl from a thread, so the Python node keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


async def start_erl(erl_node: StartErl, **kw: Any) -> ErlNode:
    return await anyio.to_thread.run_sync(lambda: erl_node(**kw))


async def events_until(d: Discovery, want: set[Any], timeout: float = WAIT) -> list[Any]:
    """Events until every one in ``want`` was seen (bounded in time)."""
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while not want <= set(seen):
            seen.append(await d.__aiter__().receive())
    return seen


def py_node(epmd: Epmd, cookie: str, hidden: bool) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, hidden=hidden, epmd_port=epmd.port, listen_host="127.0.0.1")


async def erl_lists(erl: ErlNode, query: str, name: Atom) -> bool:
    """Whether ``query`` (a nodes/1 call) on ``erl`` lists ``name``, once erl has marked the
    connection up: dist_util sends its handshake ack before mark_nodeup, so our side can
    report a join before erl's nodes() shows it. Polled within WAIT."""
    with anyio.fail_after(WAIT):
        while name not in await erl_run(erl, query):
            await anyio.sleep(0.05)
    return True


@pytest.mark.anyio
async def test_finds_connects_loses_and_finds_again(epmd: Epmd, erl_node: StartErl, hidden: bool) -> None:
    cookie = secrets.token_hex(8)
    keep1 = await start_erl(erl_node, name=unique("keep"), cookie=cookie)
    keep2 = await start_erl(erl_node, name=unique("keep"), cookie=cookie)
    skip = await start_erl(erl_node, name=unique("skip"), cookie=cookie)
    seen_by_erl = "nodes(hidden)." if hidden else "nodes()."
    async with py_node(epmd, cookie, hidden) as node, node.discover(include=["keep*"], **FAST) as disc:
        await events_until(disc, {Join(keep1.name), Join(keep2.name)})
        for erl in (keep1, keep2):
            assert await erl_lists(erl, seen_by_erl, node.name)
            assert (node.name in await erl_run(erl, "nodes().")) is not hidden
        # erl drops us while it stays registered: we notice and dial it again
        assert await erl_run(keep1, "erlang:disconnect_node(P).", P=node.name) is True
        seen = await events_until(disc, {Join(keep1.name)})
        assert [e.node for e in seen if isinstance(e, Leave)] == [keep1.name]
        assert await erl_lists(keep1, seen_by_erl, node.name)
        await anyio.to_thread.run_sync(keep2.kill)
        seen = []
        with anyio.fail_after(WAIT):
            while not any(isinstance(e, Leave) and e.node == keep2.name for e in seen):
                seen.append(await disc.__aiter__().receive())
        assert keep2.name not in node.nodes()
        again = await start_erl(erl_node, name=keep2.alive, cookie=cookie)  # same name, new port
        await events_until(disc, {Join(again.name)})
        assert await erl_lists(again, seen_by_erl, node.name)
        await disc.settled(disc.rounds + 2)
        assert not node.is_connected(skip.name)
        assert node.name not in await erl_run(skip, "nodes(connected).")
        assert disc.members == {keep1.name, again.name}


@pytest.mark.anyio
async def test_a_visible_node_joins_the_cluster_as_erl_does(epmd: Epmd, erl_node: StartErl, hidden: bool) -> None:
    cookie = secrets.token_hex(8)
    a = await start_erl(erl_node, cookie=cookie)
    b = await start_erl(erl_node, cookie=cookie)
    c = await start_erl(erl_node, cookie=cookie)  # registered, but in nobody's cluster
    assert await erl_run(a, "net_adm:ping(B).", B=b.name) == Atom("pong")
    # what erl does: a node that connects to a sees b too (global's transitive connects)
    joiner = await start_erl(erl_node, cookie=cookie)
    erl_view = await erl_run(
        joiner,
        "ok = net_kernel:monitor_nodes(true), pong = net_adm:ping(A),"
        " W = fun W() -> case lists:member(B, nodes()) of true -> ok;"
        " false -> receive {nodeup, _} -> W() after 30000 -> timeout end end end,"
        " ok = W(), lists:sort(nodes()).",
        A=a.name, B=b.name,
    )
    assert erl_view == sorted([a.name, b.name])
    async with py_node(epmd, cookie, hidden) as node, node.discover(Nodes([a.name]), **FAST) as disc:
        # hidden: only what it was asked to find; visible: a's whole cluster, as erl
        want = {a.name} if hidden else {a.name, b.name, joiner.name}
        await events_until(disc, {Join(n) for n in want})
        await disc.settled(disc.rounds + 2)
        assert disc.members == want and set(node.nodes()) == want
        assert not node.is_connected(c.name)
        if not hidden:
            assert sorted(n for n in node.nodes() if n != joiner.name) == erl_view


@pytest.mark.anyio
async def test_a_hidden_node_follows_the_cluster_when_asked(epmd: Epmd, erl_node: StartErl) -> None:
    cookie = secrets.token_hex(8)
    a = await start_erl(erl_node, cookie=cookie)
    b = await start_erl(erl_node, cookie=cookie)
    assert await erl_run(a, "net_adm:ping(B).", B=b.name) == Atom("pong")
    async with py_node(epmd, cookie, hidden=True) as node:
        async with node.discover(Nodes([a.name]), transitive=True, **FAST) as disc:
            await events_until(disc, {Join(a.name), Join(b.name)})
            assert await erl_lists(b, "nodes(hidden).", node.name)
            assert node.name not in await erl_run(b, "nodes().")


@pytest.mark.anyio
async def test_the_filter_holds_against_transitive_connects(epmd: Epmd, erl_node: StartErl) -> None:
    cookie = secrets.token_hex(8)
    a = await start_erl(erl_node, name=unique("keep"), cookie=cookie)
    b = await start_erl(erl_node, name=unique("skip"), cookie=cookie)
    assert await erl_run(a, "net_adm:ping(B).", B=b.name) == Atom("pong")
    async with py_node(epmd, cookie, hidden=False) as node:
        async with node.discover(exclude=["skip*"], **FAST) as disc:
            await events_until(disc, {Join(a.name)})
            await disc.settled(disc.rounds + 3)
            assert b.name in await erl_run(a, "nodes().")  # a offers it...
            assert not node.is_connected(b.name)  # ...but the filter excludes it
            assert node.name not in await erl_run(b, "nodes(connected).")


# -- the command ----------------------------------------------------------------------------
def pynode_cmd(*args: str, prefix: tuple[str, ...] = ()) -> list[str]:
    return [*prefix, sys.executable, "-m", "pynode", *args]


def test_cli_one_round(epmd: Epmd, erl_node: StartErl) -> None:
    cookie = secrets.token_hex(8)
    keep = [erl_node(name=unique("keep"), cookie=cookie) for _ in range(2)]
    erl_node(name=unique("skip"), cookie=cookie)
    base = ["--epmd-port", str(epmd.port), "--cookie", cookie, "--name", unique("d") + "@127.0.0.1"]
    p = subprocess.run(pynode_cmd("discover", "--include", "keep*", *base), capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stderr) == (0, "")
    assert p.stdout == "[" + ",".join(f"'{n}'" for n in sorted(e.name for e in keep)) + "]\n"
    p = subprocess.run(pynode_cmd("discover", "--json", "--prefix", "keep", *base), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert json.loads(p.stdout) == [{"node": str(n), "connected": True} for n in sorted(e.name for e in keep)]
    # a node that refuses us (another cookie) is reported, exit 3
    bad = erl_node(name=unique("keep"), cookie="another" + cookie)
    p = subprocess.run(pynode_cmd("discover", "--include", "keep*", *base), capture_output=True, text=True, timeout=120)
    assert p.returncode == 3 and str(bad.name) in p.stderr and p.stderr.count("\n") == 1
    p = subprocess.run(pynode_cmd("discover", "--no-connect", "--exclude", "skip*", *base), capture_output=True, text=True, timeout=120)
    assert p.returncode == 0
    assert p.stdout == "[" + ",".join(f"'{n}'" for n in sorted([*(e.name for e in keep), bad.name])) + "]\n"
    p = subprocess.run(pynode_cmd("discover", "--interval", "0", *base), capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "interval" in p.stderr


def test_cli_one_round_joins_the_cluster_when_visible(epmd: Epmd, erl_node: StartErl) -> None:
    cookie = secrets.token_hex(8)
    a, b = erl_node(cookie=cookie), erl_node(cookie=cookie)
    assert a.run("net_adm:ping(B).", B=b.name) == Atom("pong")
    base = ["--epmd-port", str(epmd.port), "--cookie", cookie, "--name", unique("d") + "@127.0.0.1",
            "--seed", str(a.name)]
    p = subprocess.run(pynode_cmd("discover", "--visible", *base), capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (0, "[" + ",".join(f"'{n}'" for n in sorted([a.name, b.name])) + "]\n")
    p = subprocess.run(pynode_cmd("discover", "--hidden", *base), capture_output=True, text=True, timeout=120)
    assert (p.returncode, p.stdout) == (0, f"['{a.name}']\n")


# -- a second host: network namespaces ------------------------------------------------------
def ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@dataclass
class Namespaces:
    """Two namespaces joined by a veth pair on a private /30: ``erl_ns`` at ``erl_ip``,
    ``py_ns`` at ``py_ip``."""

    erl_ns: str
    py_ns: str
    erl_ip: str
    py_ip: str


@pytest.fixture
def namespaces() -> Iterator[Namespaces]:
    tag = secrets.token_hex(3)
    third, fourth = secrets.randbelow(256), secrets.randbelow(64) * 4
    ns = Namespaces(f"pyde{tag}", f"pydp{tag}", f"10.251.{third}.{fourth + 1}", f"10.251.{third}.{fourth + 2}")
    made: list[str] = []
    try:
        for name in (ns.erl_ns, ns.py_ns):
            ip("netns", "add", name)
            made.append(name)
        ip("link", "add", f"ve{tag}", "netns", ns.erl_ns, "type", "veth", "peer", "name", f"vp{tag}", "netns", ns.py_ns)
        for name, dev, addr in ((ns.erl_ns, f"ve{tag}", ns.erl_ip), (ns.py_ns, f"vp{tag}", ns.py_ip)):
            ip("-n", name, "addr", "add", f"{addr}/30", "dev", dev)
            ip("-n", name, "link", "set", dev, "up")
            ip("-n", name, "link", "set", "lo", "up")
        yield ns
    finally:
        for name in made:
            subprocess.run(["ip", "netns", "del", name], capture_output=True, timeout=30)


class NsEpmd:
    """epmd inside a namespace, listening on its address there (a child we kill)."""

    def __init__(self, otp: Otp, netns: str, address: str) -> None:
        self.port = 4369 + 1 + secrets.randbelow(20000)
        self.netns = netns
        exe = otp.tool("epmd")
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", netns, exe, "-port", str(self.port), "-address", address],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:  # bounded: ready when `epmd -names` there answers
            r = subprocess.run(["ip", "netns", "exec", netns, exe, "-port", str(self.port), "-names"],
                               capture_output=True, timeout=30)
            if r.returncode == 0:
                return
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"epmd in {netns} did not start: {r.stderr!r}")
            time.sleep(0.05)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "ERL_EPMD_PORT": str(self.port)}

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)


def ns_otp(otp: Otp, netns: str, tmp_path: Path) -> Otp:
    """``otp`` whose erl runs inside ``netns``."""
    wrapper = tmp_path / f"erl-{netns}"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {netns} {otp.erl} "$@"\n')
    wrapper.chmod(0o755)
    return replace(otp, erl=str(wrapper))


class Lines:
    """JSON lines of a subprocess's stdout, read with a deadline."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.buf = b""

    def next(self, timeout: float = WAIT) -> Any:
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no line from pynode discover within {timeout} s")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if not chunk:
                    raise EOFError(f"pynode discover exited with {self.proc.wait(timeout=10)}")
                self.buf += chunk
        line, _, self.buf = self.buf.partition(b"\n")
        return json.loads(line)


def test_second_host_in_a_namespace(otp: Otp, namespaces: Namespaces, hidden: bool, tmp_path: Path) -> None:
    ns = namespaces
    epmd = NsEpmd(otp, ns.erl_ns, ns.erl_ip)
    started: list[ErlNode] = []
    watcher: subprocess.Popen[bytes] | None = None
    in_ns = ns_otp(otp, ns.erl_ns, tmp_path)
    cookie = secrets.token_hex(8)

    def start(alive: str) -> ErlNode:
        node = ErlNode(in_ns, epmd, name=alive, cookie=cookie, host=ns.erl_ip,  # type: ignore[arg-type]
                       args=["-start_epmd", "false"])
        started.append(node)
        return node

    try:
        keep, skip = start(unique("keep")), start(unique("skip"))
        me = f"{unique('d')}@{ns.py_ip}"
        watcher = subprocess.Popen(
            pynode_cmd("discover", "--host", f"{ns.erl_ip}:{epmd.port}", "--watch", "--json",
                       "--interval", "0.5", "--include", "keep*", "--name", me, "--cookie", cookie,
                       "--epmd-port", str(epmd.port), "--hidden" if hidden else "--visible",
                       prefix=("ip", "netns", "exec", ns.py_ns)),
            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        )
        lines = Lines(watcher)
        assert lines.next() == {"event": "join", "node": str(keep.name)}
        seen_by_erl = "nodes(hidden)." if hidden else "nodes()."
        # erl acks the handshake before it marks the node up (see erl_lists)
        wait_for(lambda: Atom(me) in keep.run(seen_by_erl), WAIT, f"{keep.name} to list {me}")
        assert Atom(me) not in skip.run("nodes(connected).")
        keep.kill()
        ev = lines.next()
        assert (ev["event"], ev["node"]) == ("leave", str(keep.name))
        again = start(keep.alive)
        assert lines.next() == {"event": "join", "node": str(again.name)}
        wait_for(lambda: Atom(me) in again.run(seen_by_erl), WAIT, f"{again.name} to list {me}")
        assert Atom(me) not in skip.run("nodes(connected).")
        watcher.send_signal(signal.SIGTERM)
        assert watcher.wait(timeout=30) == 0
    finally:
        if watcher is not None and watcher.poll() is None:
            watcher.kill()
            watcher.wait(timeout=10)
        stop_nodes(started)
        epmd.kill()
