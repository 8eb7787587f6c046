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
    """200 handshakes with a wrong cookie, 20 at a time, while erl keeps calling us: every
    bad one is refused, every good call answered. The digest compare is constant-time."""
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
            async with await anyio.connect_tcp("127.0.0.1", node.port) as s:
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
                except anyio.BrokenResourceError:
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
