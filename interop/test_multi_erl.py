"""Several transports per pynode with real erl (OTP 25 and 28): erl still reaches a node that
listens on TCP and a Unix socket, through a plain epmd (which ignores the extension: only TCP is
advertised) and through pynode's EPMD (which advertises both: pynodes then pick the Unix socket
between themselves while erl keeps TCP); and erl itself over Unix sockets with the example
carrier interop/erl/pynode_uds_dist.erl (``-proto_dist pynode_uds``)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from pynode.protocol.epmd_ext import ExtensionUnsupported
from pynode.protocol.transports import PROTO_TCP, PROTO_UNIX
from pynode.runtime import Node
from pynode.runtime import epmd as epmd_client
from pynode.runtime.listeners import channel_family
from pynode.term import Atom

from .erlnode import Epmd, ErlNode, stop_nodes, unique
from .otp import Otp, otp25
from .test_epmd_erl import PyEpmd

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def sockdir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="pyn", dir="/tmp")  # short: sun_path holds 107 bytes
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def py_epmd() -> Iterator[PyEpmd]:
    e = PyEpmd(relaxed_command_check=True)
    try:
        yield e
    finally:
        e.stop()


@pytest.fixture
def start_erl_ours(otp: Otp, py_epmd: PyEpmd) -> Iterator[Callable[..., ErlNode]]:
    """erl nodes registered with pynode's EPMD; all stopped at the end."""
    started: list[ErlNode] = []

    def start(**kwargs: Any) -> ErlNode:
        node = ErlNode(otp, py_epmd, args=["-start_epmd", "false"], **kwargs)  # type: ignore[arg-type]
        started.append(node)
        return node

    try:
        yield start
    finally:
        stop_nodes(started)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


def family(node: Node, peer: str) -> socket.AddressFamily | None:
    conn = node.connection(Atom(peer))
    assert conn is not None, f"{node.name} is not connected to {peer}"
    return channel_family(conn.channel)


def where(node: Node) -> None:
    node.expose("multi", "where")(lambda: node.name)


async def test_plain_epmd_multi_listener_is_plain_tcp(
    epmd: Epmd, erl_node: Callable[..., ErlNode], sockdir: str
) -> None:
    erl = erl_node()
    path = f"{sockdir}/m.sock"
    listen = ["tcp://127.0.0.1:0", f"unix:{path}"]
    async with Node(unique("pym") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port, listen=listen) as m:
        where(m)
        assert m.advertised == 1  # ALIVE2 only: epmd closed on ADD_TRANSPORT_REQ
        with pytest.raises(ExtensionUnsupported):
            await epmd_client.transports(m.name.partition("@")[0], "127.0.0.1", epmd.port)
        # erl finds the node through epmd and reaches it over TCP, both ways
        assert await erl_run(erl, "net_adm:ping(N).", N=m.name) == Atom("pong")
        assert await erl_run(erl, "rpc:call(N, multi, where, []).", N=m.name) == m.name
        assert family(m, erl.name) == socket.AF_INET
        box = m.mailbox("inbox")
        await erl_run(erl, "{inbox, N} ! {hello, node()}, ok.", N=m.name)
        assert await box.receive(timeout=10) == (Atom("hello"), erl.name)
        # a pynode with the default policy falls back to PORT_PLEASE2: TCP
        async with Node(unique("pyp") + "@127.0.0.1", erl.cookie, epmd_port=epmd.port) as p:
            assert await p.ping(m.name)
            assert family(p, m.name) == socket.AF_INET
            assert await p.ping(erl.name)
        # the Unix listener serves all the same, given its path
        async with Node(unique("pyu") + "@127.0.0.1", erl.cookie, epmd=False) as u:
            await u.connect(m.name, address=f"unix:{path}", timeout=20)
            assert family(u, m.name) == socket.AF_UNIX
            assert await u.rpc(m.name, "multi", "where", [], timeout=10) == m.name


async def test_erl_and_two_pynodes_on_unix_with_our_epmd(
    py_epmd: PyEpmd, start_erl_ours: Callable[..., ErlNode], sockdir: str
) -> None:
    erl = start_erl_ours()
    cookie, ep = erl.cookie, py_epmd.port
    a_name, b_name = unique("pya") + "@127.0.0.1", unique("pyb") + "@127.0.0.1"
    pa, pb = f"{sockdir}/a.sock", f"{sockdir}/b.sock"
    async with Node(a_name, cookie, epmd_port=ep, listen=["tcp://127.0.0.1:0", f"unix:{pa}"]) as a, Node(
        b_name, cookie, epmd_port=ep, listen=["tcp://127.0.0.1:0", f"unix:{pb}"]
    ) as b:
        where(a)
        where(b)
        assert a.advertised == 2 and b.advertised == 2
        entries = await epmd_client.transports(a_name.partition("@")[0], "127.0.0.1", ep)
        assert [(e.protocol, e.port) for e in entries] == [(PROTO_TCP, a.port), (PROTO_UNIX, 1)]
        # the pynodes find each other's Unix socket through EPMD
        assert await a.ping(b.name)
        assert family(a, b.name) == socket.AF_UNIX and family(b, a.name) == socket.AF_UNIX
        # erl reaches both over TCP (PORT_PLEASE2 answers the primary) and is reached back
        for n in (a, b):
            assert await erl_run(erl, "net_adm:ping(N).", N=n.name) == Atom("pong")
            assert family(n, erl.name) == socket.AF_INET
        assert await a.rpc(erl.name, "erlang", "node", [], timeout=10) == erl.name
        # erl -> a (TCP) -> b (Unix) -> erl (TCP): a message relayed across both transports
        relay, sink, done = a.mailbox("relay"), b.mailbox("sink"), a.mailbox("done")
        await erl_run(
            erl,
            """spawn(fun() ->
                   {relay, A} ! {ping, self()},
                   receive {pong, X} -> {done, A} ! {erl_got, X}
                   after 10000 -> {done, A} ! timeout end
               end), ok.""",
            A=a.name,
        )
        msg = await relay.receive(timeout=10)
        await relay.send(("sink", b.name), msg)  # a -> b over the Unix socket
        tag, erl_pid = await sink.receive(timeout=10)
        assert tag == Atom("ping") and erl_pid.node == erl.name
        await sink.send(erl_pid, (Atom("pong"), b.name))  # b -> erl over TCP
        assert await done.receive(timeout=15) == (Atom("erl_got"), b.name)
        hidden = await erl_run(erl, "lists:sort(nodes(hidden)).")
        assert hidden == sorted([a.name, b.name])


# -- erl over Unix sockets: interop/erl/pynode_uds_dist.erl -------------------------------------

UDS_SOURCE = os.path.join(os.path.dirname(__file__), "erl", "pynode_uds_dist.erl")


@pytest.fixture(scope="module")
def uds_ebin() -> Iterator[str]:
    """pynode_uds_dist.beam, compiled by OTP 25's erlc (OTP 28 here has no compiler and loads
    OTP 25 beams)."""
    d = tempfile.mkdtemp(prefix="pynuds")
    try:
        subprocess.run(
            [otp25().tool("erlc"), "-o", d, UDS_SOURCE], check=True, capture_output=True, timeout=120
        )
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


class UdsEnv:
    """Quacks like erlnode.Epmd for ErlNode: no EPMD, just the socket directory."""

    def __init__(self, directory: str) -> None:
        self.port = 0
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("ERL_EPMD")},
            "PYNODE_UDS_DIR": directory,
        }


@pytest.fixture
def uds_erl(otp: Otp, uds_ebin: str, sockdir: str) -> Iterator[ErlNode]:
    args = ["-pa", uds_ebin, "-proto_dist", "pynode_uds", "-no_epmd", "-start_epmd", "false"]
    node = ErlNode(otp, UdsEnv(sockdir), args=args)  # type: ignore[arg-type]
    try:
        yield node
    finally:
        try:
            node.kill()
        finally:
            node.close()


async def test_erl_over_unix_sockets_both_ways(uds_erl: ErlNode, sockdir: str) -> None:
    erl = uds_erl
    assert os.path.exists(f"{sockdir}/{erl.alive}.sock")
    # erl dials pynode: its carrier connects to <dir>/<alive>.sock
    alive = unique("pyx")
    async with Node(f"{alive}@127.0.0.1", erl.cookie, epmd=False, listen=[f"unix:{sockdir}/{alive}.sock"]) as py:
        where(py)
        assert await erl_run(erl, "net_adm:ping(N).", N=py.name) == Atom("pong")
        assert family(py, erl.name) == socket.AF_UNIX
        assert await erl_run(erl, "rpc:call(N, multi, where, []).", N=py.name) == py.name
        box = py.mailbox("inbox")
        await erl_run(erl, "{inbox, N} ! {hello, node()}, ok.", N=py.name)
        assert await box.receive(timeout=10) == (Atom("hello"), erl.name)
        assert await py.rpc(erl.name, "erlang", "node", [], timeout=10) == erl.name
    # pynode dials erl at its socket (no EPMD: the endpoint is given)
    async with Node(unique("pyy") + "@127.0.0.1", erl.cookie, epmd=False, listen_host="127.0.0.1") as py2:
        py2.add_endpoint(erl.name, f"unix:{sockdir}/{erl.alive}.sock")
        assert await py2.ping(erl.name)
        assert family(py2, erl.name) == socket.AF_UNIX
        assert await py2.rpc(erl.name, "erlang", "node", [], timeout=10) == erl.name
        assert py2.name in await erl_run(erl, "nodes(hidden).")
