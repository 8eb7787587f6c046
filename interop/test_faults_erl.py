"""The fault table against real erl (OTP 25 and 28): each row one test. The rows already
covered elsewhere are listed in README.md's fault table with their tests."""

from __future__ import annotations

import gc
import os
import resource
import signal
import socket
import subprocess
import sys
import textwrap
import time
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pynode.protocol.flags import default_flags
from pynode.protocol.handshake import Initiator
from pynode.runtime import Node
from pynode.term import Atom, Pid

from .erlnode import Epmd, ErlNode, unique

pytestmark = pytest.mark.anyio

StartErl = Callable[..., ErlNode]
EXIT = Atom("EXIT")
DOWN = Atom("DOWN")


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def py_node(epmd: Epmd, cookie: str, **kw: Any) -> Node:
    kw.setdefault("listen_host", "127.0.0.1")
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, **kw)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


HOLDER = "spawn(fun() -> receive stop -> ok end end)."


async def test_peer_killed_mid_fragmented_message(epmd: Epmd, erl_node: StartErl) -> None:
    """kill -9 of erl while a 200 MB message is half received: the link and the monitor
    fire (noconnection), the connection and its partial buffers are released."""
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        mb = node.mailbox("sink")
        mb.trap_exit = True
        holder: Pid = await erl_run(erl, HOLDER)
        await mb.link(holder)
        ref = await mb.monitor(holder)
        conn = node.connection(erl.name)
        assert conn is not None and conn.dist.flags & default_flags(fragments=True)
        await erl_run(
            erl,
            "spawn(fun() -> {sink, N} ! binary:copy(<<7>>, 200000000) end), ok.",
            N=node.name,
        )
        with anyio.fail_after(60):  # wait until a fragmented message is partly in
            while conn.dist.pending_fragments == 0:
                await anyio.sleep(0.001)
        erl.kill()
        got = {await mb.receive(timeout=30), await mb.receive(timeout=30)}
        assert got == {
            (EXIT, holder, Atom("noconnection")),
            (DOWN, ref, Atom("process"), holder, Atom("noconnection")),
        }
        assert not conn.alive and node.connection(erl.name) is None
        dead = weakref.ref(conn.dist)
        del conn
        with anyio.fail_after(30):
            while dead() is not None:  # the reader task lets go of it as it ends
                gc.collect()
                await anyio.sleep(0.01)


async def test_wrong_cookie_storm_does_not_hurt_a_good_peer(epmd: Epmd, erl_node: StartErl) -> None:
    """200 handshakes with a wrong cookie, 20 at a time from 8 other loopback addresses,
    while erl (at 127.0.0.1) keeps calling us: every bad one is refused, every good call
    answered. The digest compare is constant-time. (From erl's own address a flood could
    push erl's handshake out: the per-address cap cannot tell them apart.)"""
    from pynode.protocol import handshake

    assert handshake.compare_digest.__module__ in ("_operator", "hmac", "operator")
    erl = erl_node()
    async with py_node(epmd, erl.cookie) as node:
        node.expose("calc", "echo")(lambda x: x)
        refused = 0

        async def bad_handshake(i: int) -> None:
            nonlocal refused
            hs = Initiator(this_node=f"bad{i}@127.0.0.1", peer_node=node.name, cookie="wrong",
                           flags=default_flags(hidden=True), creation=1)
            src = f"127.0.0.{2 + i % 8}"  # the storm comes from elsewhere than erl
            async with await anyio.connect_tcp("127.0.0.1", node.port, local_host=src) as s:
                await s.send(hs.data_to_send())
                try:
                    while True:
                        ev = hs.next_event()
                        if type(ev).__name__ == "NeedData":
                            out = hs.data_to_send()
                            if out:
                                await s.send(out)
                            try:
                                hs.receive_data(await s.receive())
                            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                                hs.receive_eof()
                            continue
                        if type(ev).__name__ == "HandshakeFailed":
                            assert ev.reason in ("bad_cookie", "closed"), ev.message
                            refused += 1
                            return
                        if type(ev).__name__ == "StatusReceived":
                            continue
                        raise AssertionError(f"a wrong cookie got as far as {ev!r}")
                except (anyio.BrokenResourceError, OSError):  # reset by the node: refused too
                    refused += 1

        good = 0

        async def good_peer() -> None:
            nonlocal good
            for i in range(40):
                assert await erl_run(erl, "erpc:call(N, calc, echo, [I]).", N=node.name, I=i) == i
                good += 1

        with anyio.fail_after(240):
            async with anyio.create_task_group() as tg:
                tg.start_soon(good_peer)
                for batch in range(10):
                    async with anyio.create_task_group() as storm:
                        for i in range(20):
                            storm.start_soon(bad_handshake, batch * 20 + i)
        assert refused == 200 and good == 40


async def test_slow_consumer_bounds_memory_and_spares_other_peers(epmd: Epmd, erl_node: StartErl) -> None:
    """An erl that stops reading (SIGSTOP): our sends to it block once the buffer is full
    (bounded memory), while another erl keeps getting messages; after SIGCONT everything
    arrives, in order."""
    from pynode.runtime.transport import HIGH_WATER

    slow = erl_node()
    other = erl_node(cookie=slow.cookie)
    async with py_node(epmd, slow.cookie) as node:
        sink = "spawn(fun() -> register(sink, self()), L = fun F(N) -> receive {n, N} -> F(N + 1); {n, N, _} -> F(N + 1); {count, P} -> P ! {count, N}, F(N) end end, L(0) end), ok."
        await erl_run(slow, sink)
        await erl_run(other, sink)
        assert await node.ping(slow.name) and await node.ping(other.name)
        chunk = b"x" * 100_000
        sent = 0
        peak = 0
        os.kill(slow.proc.pid, signal.SIGSTOP)
        try:
            conn = node.connection(slow.name)
            assert conn is not None
            with anyio.move_on_after(5):  # sends block once the peer stops taking bytes
                while sent < 2000:  # 200 MB if nothing pushed back
                    await node.send(("sink", slow.name), (Atom("n"), sent, chunk))
                    sent += 1
                    peak = max(peak, conn.channel.buffered())
            assert sent < 2000, "nothing pushed back on a peer that reads nothing"
            # what we hold for it: the high-water mark plus one message, whatever the kernel took
            assert peak <= HIGH_WATER + 2 * len(chunk), peak
            for i in range(100):  # the other peer is unaffected meanwhile
                await node.send(("sink", other.name), (Atom("n"), i))
            mb = node.mailbox()
            await node.send(("sink", other.name), (Atom("count"), mb.pid))
            assert await mb.receive(timeout=30) == (Atom("count"), 100)
        finally:
            os.kill(slow.proc.pid, signal.SIGCONT)
        mb = node.mailbox()
        with anyio.fail_after(60):
            while True:  # the slow one catches up: every message, in order (the sink
                # counts only the next number, so a lost or reordered one stalls it)
                await node.send(("sink", slow.name), (Atom("count"), mb.pid))
                (_, n) = await mb.receive(timeout=30)
                if n >= sent:  # sent + 1 when the timeout hit after the last write
                    assert n <= sent + 1
                    break
                await anyio.sleep(0.1)


NODE_SCRIPT = """
import sys, anyio
from pynode.runtime import Node

async def main():
    async with Node(sys.argv[1], sys.argv[2], epmd_port=int(sys.argv[3]),
                    listen_host="127.0.0.1", net_ticktime=float(sys.argv[4])) as node:
        node.expose("calc", "echo")(lambda x: x)
        print(node.port, flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


@pytest.fixture
def py_process(epmd: Epmd, tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen[str], str, int, Path]]]:
    """Factory of pynodes in their own process (to stop, or starve of fds); all killed."""
    procs: list[subprocess.Popen[str]] = []
    script = tmp_path / "node.py"
    script.write_text(textwrap.dedent(NODE_SCRIPT))

    def start(cookie: str, ticktime: float = 60, nofile: int | None = None) -> tuple[subprocess.Popen[str], str, int, Path]:
        name = unique("pyp") + "@127.0.0.1"

        def limit() -> None:
            if nofile is not None:
                resource.setrlimit(resource.RLIMIT_NOFILE, (nofile, nofile))

        log = tmp_path / f"{name}.log"  # a file, not a pipe nobody reads: logging never blocks
        with open(log, "w") as err:
            p = subprocess.Popen([sys.executable, str(script), name, cookie, str(epmd.port), str(ticktime)],
                                 stdout=subprocess.PIPE, stderr=err, text=True,
                                 preexec_fn=limit, cwd=Path(__file__).resolve().parents[1])
        procs.append(p)
        assert p.stdout is not None
        line = p.stdout.readline()
        if not line:
            raise RuntimeError(f"the node process died: {log.read_text()}")
        return p, name, int(line), log

    yield start
    for p in procs:
        if p.poll() is None:
            os.kill(p.pid, signal.SIGCONT)
            p.kill()
        p.wait(timeout=10)


async def test_sigstop_sigcont_of_our_process(erl_node: StartErl, py_process: Any) -> None:
    """Stopped shorter than net_ticktime: the connection survives. Stopped longer: erl
    declares us down, and after SIGCONT erl reaches us again."""
    erl = erl_node(args=["-kernel", "net_ticktime", "4"])
    proc, name, _, _ = py_process(erl.cookie, ticktime=4)
    assert await erl_run(erl, "erpc:call(N, calc, echo, [1]).", N=Atom(name)) == 1
    await erl_run(erl, "monitor_node(N, true).", N=Atom(name))
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        # 1 s is well under a tick period (1 s of 4 / 4): not declared down
        assert await erl_run(erl, "receive {nodedown, N} -> down after 1000 -> up end.", N=Atom(name)) == Atom("up")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    assert await erl_run(erl, "erpc:call(N, calc, echo, [2]).", N=Atom(name)) == 2
    os.kill(proc.pid, signal.SIGSTOP)
    try:
        got = await erl_run(erl, "receive {nodedown, N} -> down after 30000 -> up end.", N=Atom(name))
        assert got == Atom("down")
    finally:
        os.kill(proc.pid, signal.SIGCONT)
    with anyio.fail_after(60):
        while await erl_run(erl, "net_adm:ping(N).", N=Atom(name)) != Atom("pong"):
            await anyio.sleep(0.2)
    assert await erl_run(erl, "erpc:call(N, calc, echo, [3]).", N=Atom(name)) == 3
    assert proc.poll() is None


async def test_fd_exhaustion_the_node_survives_and_recovers(erl_node: StartErl, py_process: Any) -> None:
    """A node with 64 fds; connections from many loopback addresses take them all (the
    per-address cap alone would stop one address): the node lives on, and once they close
    erl connects and calls it."""
    erl = erl_node()
    proc, name, port, log = py_process(erl.cookie, nofile=64)
    socks: list[socket.socket] = []
    try:
        for i in range(200):  # 8 addresses x 25: beyond 64 fds
            s = socket.socket()
            s.bind((f"127.0.0.{2 + i % 8}", 0))
            try:
                s.connect(("127.0.0.1", port))
            except OSError:
                s.close()
                break
            socks.append(s)
        assert len(socks) > 64 - 10  # the backlog and the node's fds are full
        with anyio.fail_after(60):  # the node ran out of fds (asyncio logs it, then retries)
            while "Too many open files" not in log.read_text():
                await anyio.sleep(0.1)
        assert proc.poll() is None
    finally:
        for s in socks:
            s.close()
    with anyio.fail_after(60):
        while await erl_run(erl, "net_adm:ping(N).", N=Atom(name)) != Atom("pong"):
            await anyio.sleep(0.5)
    assert await erl_run(erl, "erpc:call(N, calc, echo, [7]).", N=Atom(name)) == 7
    assert proc.poll() is None


NETNS_SCRIPT = """
import sys, time, anyio
from pynode.runtime import Node

async def main():
    me, erl, erl_host, erl_port, cookie = sys.argv[1:6]
    async with Node(me, cookie, epmd=False, net_ticktime=4) as node:
        node.add_address(erl, erl_host, int(erl_port))
        async with node.node_events() as events:
            with anyio.fail_after(60):
                while not await node.ping(erl):
                    await anyio.sleep(0.2)
            print("up", flush=True)
            ev = await events.receive()  # nodeup
            cut = float(await anyio.to_thread.run_sync(sys.stdin.readline))  # the link is cut
            ev = await events.receive()
            print("down", ev[0], round(time.time() - cut, 1), flush=True)
            await anyio.to_thread.run_sync(sys.stdin.readline)  # the link is back
            with anyio.fail_after(60):
                while not await node.ping(erl):
                    await anyio.sleep(0.5)
            seen = await node.rpc(erl, "erlang", "nodes", [__import__("pynode").term.Atom("hidden")])
            print("reconnected", node.name in seen, flush=True)

anyio.run(main)
"""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def netns_pair() -> Iterator[tuple[str, str, str, str, str]]:
    """Two network namespaces joined by a veth pair (10.251.X.1 <-> 10.251.X.2); deleted at
    the end. Yields (ns_py, ns_erl, py_addr, erl_addr, erl_side_link)."""
    tag = os.urandom(3).hex()
    ns_py, ns_erl = f"pynode-py-{tag}", f"pynode-erl-{tag}"
    veth_py, veth_erl = f"pyv{tag}", f"erv{tag}"
    sub = f"10.251.{int(tag[:2], 16)}"
    made: list[str] = []
    try:
        for ns in (ns_py, ns_erl):
            _ip("netns", "add", ns)
            made.append(ns)
            _ip("-n", ns, "link", "set", "lo", "up")
        _ip("link", "add", veth_py, "netns", ns_py, "type", "veth", "peer", "name", veth_erl, "netns", ns_erl)
        _ip("-n", ns_py, "addr", "add", f"{sub}.1/30", "dev", veth_py)
        _ip("-n", ns_erl, "addr", "add", f"{sub}.2/30", "dev", veth_erl)
        _ip("-n", ns_py, "link", "set", veth_py, "up")
        _ip("-n", ns_erl, "link", "set", veth_erl, "up")
        yield ns_py, ns_erl, f"{sub}.1", f"{sub}.2", veth_erl
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and the pair
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


def test_link_cut_in_a_network_namespace(otp: Any, netns_pair: Any, tmp_path: Path) -> None:
    """The link between us and erl goes down (the veth in erl's namespace): nodedown within
    net_ticktime (4 s here; erl and we tick at a quarter of it), then the link comes back
    and the nodes reconnect, each seeing the other."""
    ns_py, ns_erl, py_addr, erl_addr, link = netns_pair
    cookie = unique("c")
    erl_name = f"{unique('erl')}@{erl_addr}"
    port = 4370 + int.from_bytes(os.urandom(2), "big") % 20000
    env = {k: v for k, v in os.environ.items() if k != "ERL_EPMD_PORT"}
    # erl's own epmd, alone in its namespace on the standard port
    epmd = subprocess.Popen(["ip", "netns", "exec", ns_erl, otp.tool("epmd")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    erl = py = None
    try:
        erl = subprocess.Popen(
            ["ip", "netns", "exec", ns_erl, otp.erl, "-noshell", "-name", erl_name, "-setcookie", cookie,
             "-start_epmd", "false", "-kernel", "net_ticktime", "4",
             "-kernel", "inet_dist_listen_min", str(port), "-kernel", "inet_dist_listen_max", str(port)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
        )
        script = tmp_path / "ns_node.py"
        script.write_text(textwrap.dedent(NETNS_SCRIPT))
        py = subprocess.Popen(
            ["ip", "netns", "exec", ns_py, sys.executable, str(script), f"py{unique('')}@{py_addr}",
             erl_name, erl_addr, str(port), cookie],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert py.stdin is not None and py.stdout is not None
        assert py.stdout.readline().strip() == "up"
        _ip("-n", ns_erl, "link", "set", link, "down")
        py.stdin.write(f"{time.time()}\n")
        py.stdin.flush()
        kind, event, after = py.stdout.readline().split()
        assert (kind, event) == ("down", "nodedown")
        assert float(after) <= 4 * 1.25 + 2, after  # net_ticktime plus a tick's slack and load
        _ip("-n", ns_erl, "link", "set", link, "up")
        py.stdin.write("\n")
        py.stdin.flush()
        assert py.stdout.readline().split() == ["reconnected", "True"]
    finally:
        for p in (py, erl, epmd):
            if p is not None and p.poll() is None:
                p.kill()
            if p is not None:
                p.wait(timeout=10)
