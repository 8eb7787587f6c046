"""Soak: mixed traffic between a pynode and a real erl for a while; RSS, loss and reorder.

    .venv/bin/python benchmarks/soak.py              # 10 minutes
    .venv/bin/python benchmarks/soak.py --minutes 1  # shorter

Traffic, all at once: numbered messages both ways (each side checks it sees 0, 1, 2, ...
with nothing missing or out of order), rpc both ways (erpc from Python to erl and from erl
to a function Python exposes), links to erl processes that then die (each EXIT must come),
and mailboxes made and closed (10,000 over a 10-minute run, in proportion for shorter ones).
Every 30 s (and at the end) it prints one row: RSS of this process, what was done so far,
lost and reordered counts. RSS should level off after the first minutes: Python keeps
freed memory in its pools, so "flat" means no steady climb.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402

from interop.erlnode import Epmd, ErlNode, unique  # noqa: E402
from interop.otp import otp25, otp28  # noqa: E402
from pynode.runtime import Node  # noqa: E402
from pynode.term import Atom  # noqa: E402

N = Atom("n")

# erl side: a sink that accepts only the next number (anything else is counted as out of
# order), and a source that sends numbered messages to Python's "soak" mailbox.
ERL_SETUP = """
Sink = spawn(fun() ->
    L = fun F(Next, Bad) ->
        receive
            {n, Next} -> F(Next + 1, Bad);
            {n, _} -> F(Next + 1, Bad + 1);
            {count, P} -> P ! {count, Next, Bad}, F(Next, Bad)
        end
    end,
    L(0, 0)
end),
register(sink, Sink),
Src = spawn(fun() ->
    L = fun F(I) ->
        receive {stop, P} -> P ! {src_sent, I}
        after 0 ->
            {soak, Py} ! {n, I},
            case I rem 50 of 49 -> receive {stop, P} -> P ! {src_sent, I + 1} after 20 -> F(I + 1) end; _ -> F(I + 1) end
        end
    end,
    L(0)
end),
register(src, Src),
Caller = spawn(fun() ->
    L = fun F(I) ->
        receive {stop, P} -> P ! {calls, I}
        after 50 ->
            I = erpc:call(Py, soak, echo, [I]),
            F(I + 1)
        end
    end,
    L(0)
end),
register(caller, Caller),
ok.
"""


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class Stats:
    def __init__(self) -> None:
        self.sent = self.received = self.reordered = 0
        self.rpcs = self.links = self.exits = self.mailboxes = 0


async def run(minutes: float, otp_name: str) -> int:
    otp = otp25() if otp_name == "otp25" else otp28()
    epmd = Epmd(otp)
    erl = ErlNode(otp, epmd, hidden=True)
    stats = Stats()
    deadline = time.monotonic() + minutes * 60
    mailbox_goal = int(10_000 * minutes / 10)
    try:
        async with Node(unique("soak") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port,
                        listen_host="127.0.0.1") as node:
            node.expose("soak", "echo")(lambda x: x)
            inbox = node.mailbox("soak")
            assert await node.ping(erl.name)
            await anyio.to_thread.run_sync(lambda: erl.run(ERL_SETUP, Py=node.name))

            async def send_numbers() -> None:
                while time.monotonic() < deadline:
                    for _ in range(50):
                        await node.send(("sink", erl.name), (N, stats.sent))
                        stats.sent += 1
                    await anyio.sleep(0.02)

            async def receive_numbers() -> None:
                while time.monotonic() < deadline:
                    try:
                        msg = await inbox.receive(timeout=1)
                    except TimeoutError:
                        continue
                    stats.reordered += msg[1] != stats.received
                    stats.received += 1

            async def rpcs() -> None:
                while time.monotonic() < deadline:
                    assert await node.rpc(erl.name, "erlang", "abs", [-stats.rpcs]) == stats.rpcs
                    stats.rpcs += 1
                    await anyio.sleep(0.01)

            async def links() -> None:
                while time.monotonic() < deadline:
                    mb = node.mailbox()
                    mb.trap_exit = True
                    pid = await node.rpc(erl.name, "erlang", "spawn", [Atom("timer"), Atom("sleep"), [10]])
                    await mb.link(pid)
                    msg = await mb.receive(timeout=30)
                    assert msg[0] == Atom("EXIT") and msg[1] == pid, msg
                    stats.links += 1
                    stats.exits += 1
                    mb.close()
                    await anyio.sleep(0.05)

            async def mailboxes() -> None:
                period = minutes * 60 / max(mailbox_goal, 1)
                next_at = time.monotonic()
                while stats.mailboxes < mailbox_goal and time.monotonic() < deadline:
                    mb = node.mailbox()
                    await node.send(mb.pid, stats.mailboxes)
                    assert await mb.receive(timeout=10) == stats.mailboxes
                    mb.close()
                    stats.mailboxes += 1
                    next_at += period
                    await anyio.sleep(max(0.0, next_at - time.monotonic()))

            async def report() -> None:
                print(f"soak against {otp_name} for {minutes} min; load {os.getloadavg()[0]:.2f}")
                print(f"{'t(s)':>6} {'RSS MB':>7} {'py->erl':>9} {'erl->py':>9} {'rpc':>6} "
                      f"{'links':>6} {'mboxes':>7} {'reord':>6}", flush=True)
                t0 = time.monotonic()
                while time.monotonic() < deadline:
                    print(f"{time.monotonic() - t0:6.0f} {rss_mb():7.1f} {stats.sent:9d} "
                          f"{stats.received:9d} {stats.rpcs:6d} {stats.links:6d} "
                          f"{stats.mailboxes:7d} {stats.reordered:6d}", flush=True)
                    await anyio.sleep(min(30, max(deadline - time.monotonic(), 0.1)))

            async with anyio.create_task_group() as tg:
                for fn in (send_numbers, receive_numbers, rpcs, links, mailboxes, report):
                    tg.start_soon(fn)

            mb = node.mailbox()
            await node.send(("src", erl.name), (Atom("stop"), mb.pid))
            (_, src_sent) = await mb.receive(timeout=60)
            await node.send(("caller", erl.name), (Atom("stop"), mb.pid))
            (_, erl_rpcs) = await mb.receive(timeout=60)
            await node.send(("sink", erl.name), (Atom("count"), mb.pid))
            _, erl_got, erl_bad = await mb.receive(timeout=60)
            lost_to_erl = stats.sent - erl_got
            with anyio.move_on_after(60):  # what is still in flight erl -> Python
                while stats.received < src_sent:
                    msg = await inbox.receive(timeout=60)
                    stats.reordered += msg[1] != stats.received
                    stats.received += 1
            lost_to_py = src_sent - stats.received
            print(f"end    {rss_mb():7.1f} {stats.sent:9d} {stats.received:9d} {stats.rpcs:6d} "
                  f"{stats.links:6d} {stats.mailboxes:7d} {stats.reordered:6d}")
            print(f"py->erl: sent {stats.sent}, erl counted {erl_got} in order, "
                  f"{erl_bad} out of order, lost {lost_to_erl}")
            print(f"erl->py: erl sent {src_sent}, received {stats.received}, out of order "
                  f"{stats.reordered}, lost {lost_to_py}")
            print(f"links: {stats.links}, EXITs received: {stats.exits}; erl rpc echo: {erl_rpcs}")
            ok = lost_to_erl == 0 and erl_bad == 0 and stats.reordered == 0 and lost_to_py == 0
            print("RESULT:", "ok" if ok else "LOSS OR REORDER")
            return 0 if ok else 1
    finally:
        erl.kill()
        erl.close()
        epmd.kill()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=10.0)
    ap.add_argument("--otp", choices=["otp25", "otp28"], default="otp25")
    args = ap.parse_args(argv)
    result: list[int] = []

    async def go() -> None:
        result.append(await run(args.minutes, args.otp))

    anyio.run(go)
    return result[0]


if __name__ == "__main__":
    sys.exit(main())
