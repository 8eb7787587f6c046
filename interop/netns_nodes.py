"""Run inside a network namespace by interop/test_proxy_netns.py: two pynode nodes that
register with a partition proxy on another host (namespace) and report what they see.

argv: proxy_addr epmd_port own_addr cookie prefix [other,nodes]. Node a pings b and the
other nodes; prints JSON lines (a's node events); reads commands ("reconnect", "nodes",
"quit") from stdin. Exits when stdin closes (bounded by the test)."""

from __future__ import annotations

import json
import sys
import time

import anyio

from pynode.runtime.node import Node


def say(**kw: object) -> None:
    print(json.dumps(kw), flush=True)


async def main() -> None:
    proxy_addr, epmd_port, own_addr, cookie, prefix = sys.argv[1:6]
    others = [n for n in (sys.argv[6] if len(sys.argv) > 6 else "").split(",") if n]
    common = dict(
        hidden=False, epmd_host=proxy_addr, epmd_port=int(epmd_port), listen_host=own_addr,
        net_ticktime=4.0,
    )
    n1 = Node(f"{prefix}a@{proxy_addr}", cookie, **common)  # type: ignore[arg-type]
    n2 = Node(f"{prefix}b@{proxy_addr}", cookie, **common)  # type: ignore[arg-type]
    async with n1, n2, n1.node_events() as events:

        async def report() -> None:
            async for ev in events:
                say(event=str(ev[0]), node=str(ev[1]), t=time.monotonic())

        async with anyio.create_task_group() as tg:
            tg.start_soon(report)
            targets = [str(n2.name), *others]

            async def ping_all() -> bool:
                return all([await n1.ping(t, timeout=20) for t in targets])

            say(ready=True, pong=await ping_all())
            lines = anyio.wrap_file(sys.stdin)
            async for line in lines:
                if line.strip() == "reconnect":
                    say(pong=await ping_all())
                elif line.strip() == "nodes":
                    say(nodes=[str(n) for n in n1.nodes()])
                else:
                    break
            tg.cancel_scope.cancel()


if __name__ == "__main__":
    anyio.run(main)
