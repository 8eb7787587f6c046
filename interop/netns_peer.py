"""The pynode side of the two-host TLS test, run inside a network namespace by
interop/test_tls_netns.py: ``python -m interop.netns_peer NAME COOKIE ERL_NODE EPMD_PORT OPTFILE``.

It dials erl over TLS (rpc, and a message to erl's echo process and back), drops the
connection, then waits for erl to dial it back and send a message; prints one JSON line."""

from __future__ import annotations

import json
import sys

import anyio

from pynode.runtime import NoConnection, Node, read_optfile
from pynode.term import Atom


async def main(name: str, cookie: str, erl: str, epmd_port: int, optfile: str) -> dict[str, object]:
    out: dict[str, object] = {}
    async with Node(name, cookie, epmd_port=epmd_port, tls=read_optfile(optfile)) as node:
        inbox = node.mailbox("py_inbox")
        peer = Atom(erl)
        with anyio.fail_after(90):
            out["rpc_node"] = str(await node.rpc(peer, "erlang", "node", [], timeout=30))
            _ok, info = await node.rpc(peer, "net_kernel", "node_info", [node.name], timeout=30)
            out["erl_sees_protocol"] = str(dict(info)[Atom("address")][3])  # #net_address.protocol
            await node.send(("echo", peer), (inbox.pid, Atom("first")))
            echoed = await inbox.receive(timeout=30)
            out["echoed"] = [str(x) for x in echoed]
            conn = node.connection(peer)
            assert conn is not None
            conn.close("test: let erl dial us")
            hello = await inbox.receive(timeout=60)  # erl noticed nodedown and dialled us
            out["hello"] = [str(x) for x in hello]
            out["inbound_peer"] = str(node.connection(peer).channel.peer_address[0])  # type: ignore[union-attr]
            # stop erl's script; the rpc's answer says the message arrived, unless erl's halt
            # took the connection down before the answer left (erl's exit status 0 says it did)
            try:
                out["stop"] = str(await node.rpc(peer, "erlang", "send", [Atom("echo"), Atom("stop")], timeout=30))
            except NoConnection:
                out["stop"] = "halted first"
    return out


if __name__ == "__main__":
    name, cookie, erl, port, optfile = sys.argv[1:6]
    result = anyio.run(main, name, cookie, erl, int(port), optfile)
    print(json.dumps(result), flush=True)
