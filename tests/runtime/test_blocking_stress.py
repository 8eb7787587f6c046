"""Randomized: threads' sends that write to the socket themselves, mixed with the loop's own
sends (awaited, and bursts that cork), big fragmented and small messages, traffic the other
way, and a receiver whose loop stalls at random (the socket fills: partial writes, the
backlog, pause_writing). Every message must arrive whole, in its sender's order, on the one
connection, and the counters of both ends must agree."""

from __future__ import annotations

import os
import random
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from pynode.blocking import BlockingNode

THREADS = 4  # senders on threads (BlockingMailbox.send)
LOOP_SENDERS = 2  # async senders in the loop (await Mailbox.send)
PER_SENDER = 150
STALLS = 60  # bound on the receiver's stalls
RUNS = int(os.environ.get("PYNODE_STRESS_RUNS", "3"))  # more for a campaign: seeds 1..RUNS


def _payload(seed: int, sid: int, seq: int) -> bytes:
    """Sender ``sid``'s message ``seq``: mostly small, some a few KiB, some fragmented."""
    rng = random.Random(seed * 1_000_003 + sid * 10_007 + seq)
    r = rng.random()
    if r < 0.6:
        n = rng.randint(1, 300)
    elif r < 0.85:
        n = rng.randint(2_000, 20_000)
    else:
        n = rng.randint(66_000, 200_000)  # 64 KiB fragments: the writev path
    block = bytes(rng.getrandbits(8) for _ in range(min(n, 251)))
    return (block * (n // len(block) + 1))[:n]


@pytest.fixture
def busy_gil() -> Iterator[None]:
    """Switch threads every 10 us (the default is 5 ms): many more interleavings per run."""
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-5)
    try:
        yield
    finally:
        sys.setswitchinterval(old)


@pytest.mark.parametrize("seed", range(1, RUNS + 1))
def test_thread_and_loop_sends_arrive_whole_and_in_order(seed: int, busy_gil: None) -> None:
    kw: dict[str, Any] = {"epmd": False, "listen_host": "127.0.0.1", "backend_options": {}}
    with BlockingNode("a@127.0.0.1", "c", **kw) as a, BlockingNode("b@127.0.0.1", "c", **kw) as b:
        assert a.node is not None and b.node is not None
        a.connect(b.name, address=("127.0.0.1", b.node.port))
        assert b.ping(str(a.name))  # answered: both ends have the connection
        conn = a.node.connector.connections[b.name]
        back_conn = b.node.connector.connections[a.name]
        channel: Any = conn.channel
        assert channel._fd >= 0  # asyncio's own transport: threads write to the socket
        inbox, back = b.mailbox(), a.mailbox()
        senders = THREADS + LOOP_SENDERS + 1
        errors: list[str] = []
        stop = threading.Event()
        seen = {"backlog": 0}

        def thread_sender(sid: int) -> None:
            out = a.mailbox()
            try:
                for seq in range(PER_SENDER):
                    out.send(inbox.pid, (sid, seq, _payload(seed, sid, seq)))
                    seen["backlog"] += bool(channel._backlog)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(f"thread sender {sid}: {e!r}")

        def loop_sender(sid: int) -> None:
            mb = a.mailbox().async_mailbox

            async def go() -> None:
                for seq in range(PER_SENDER):
                    await mb.send(inbox.pid, (sid, seq, _payload(seed, sid, seq)))

            try:
                a.run(go)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(f"loop sender {sid}: {e!r}")

        def burst_sender(sid: int) -> None:
            """Bursts of send_nowait in one loop callback: the writes after the first cork."""
            pid = a.mailbox().pid
            node = a.node
            assert node is not None
            rng = random.Random(seed + 7)
            seq = 0
            try:
                while seq < PER_SENDER:
                    k = min(rng.randint(1, 8), PER_SENDER - seq)

                    def burst(first: int = seq, k: int = k) -> None:
                        for s in range(first, first + k):
                            node.send_nowait(inbox.pid, (sid, s, _payload(seed, sid, s)), sender=pid)

                    a.run(burst)
                    seq += k
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(f"burst sender: {e!r}")

        def other_way() -> None:
            """b -> a: a's loop is often in data_received (its writes are held meanwhile)."""
            out = b.mailbox()
            for n in range(5_000):
                if stop.is_set():
                    break
                out.send(back.pid, n)
                if n % 64 == 63:  # keep a's mailbox small (this traffic is only load)
                    for _ in range(64):
                        try:
                            back.receive(timeout=0)
                        except TimeoutError:
                            break

        def staller() -> None:
            """b's loop reads nothing for a while: a's socket fills."""
            rng = random.Random(seed + 13)
            for _ in range(STALLS):
                if stop.is_set():
                    break
                b.run(time.sleep, rng.choice((0.0005, 0.002, 0.01)))  # load, not a wait
                stop.wait(rng.uniform(0, 0.01))

        workers = [threading.Thread(target=thread_sender, args=(i,)) for i in range(THREADS)]
        workers += [threading.Thread(target=loop_sender, args=(THREADS + i,)) for i in range(LOOP_SENDERS)]
        workers.append(threading.Thread(target=burst_sender, args=(senders - 1,)))
        aux = [threading.Thread(target=other_way), threading.Thread(target=staller)]
        random.Random(seed).shuffle(workers)
        for t in aux + workers:
            t.start()
        nxt = dict.fromkeys(range(senders), 0)
        try:
            for _ in range(senders * PER_SENDER):
                sid, seq, body = inbox.receive(timeout=30)
                assert seq == nxt[sid], f"sender {sid}: message {seq} came before {nxt[sid]}"
                assert body == _payload(seed, sid, seq), f"sender {sid}: message {seq} differs"
                nxt[sid] = seq + 1
        finally:
            stop.set()
            for t in workers + aux:
                t.join(30)
        assert not errors
        assert conn.alive and a.node.connector.connections.get(b.name) is conn
        # a counts a message once written, b once read: they agree when a's last count is in
        deadline = time.monotonic() + 10
        while True:
            out, got = conn.counters(), back_conn.counters()
            if (out["messages_out"], out["bytes_out"]) == (got["messages_in"], got["bytes_in"]):
                break
            assert time.monotonic() < deadline, (out, got)
            time.sleep(0.001)
