"""TLS distribution against real erl -proto_dist inet_tls nodes (OTP 25; OTP 28 with OTP 25's
ssl application on its code path): both directions, and every refusal on both sides while the
node keeps serving a good peer."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from pynode.runtime import ConnectError, Node
from pynode.runtime.tls import TlsConfig, TlsSides
from pynode.term import Atom

from .erlnode import Epmd, ErlNode, unique
from .otp import Otp
from .tls_pki import Pki, erl_tls_args, make_pki

pytestmark = pytest.mark.anyio

StartErl = Callable[..., ErlNode]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_erl(erl_node: StartErl, otp: Otp, optfile: Path, **kw: Any) -> ErlNode:
    return erl_node(args=erl_tls_args(otp, optfile), **kw)


def py_node(epmd: Epmd, cookie: str, tls: TlsConfig, **kw: Any) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1", tls=tls, **kw)


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings))


async def roundtrip(node: Node, erl: ErlNode, tag: str) -> None:
    """A message erl -> a pynode mailbox, and pynode -> an erl process -> back."""
    mb = node.mailbox()
    await erl_run(erl, "P ! {hello, T}, ok.", P=mb.pid, T=Atom(tag))
    assert await mb.receive(timeout=30) == (Atom("hello"), Atom(tag))
    echo = await erl_run(erl, "spawn(fun() -> receive {From, X} -> From ! {back, X} after 30000 -> ok end end).")
    await node.send(echo, (mb.pid, Atom(tag)))
    assert await mb.receive(timeout=30) == (Atom("back"), Atom(tag))


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_pynode_dials_erl_over_tls(
    pki: Pki, otp: Otp, epmd: Epmd, erl_node: StartErl, anyio_backend: str
) -> None:
    erl = tls_erl(erl_node, otp, pki.optfile("good"))
    release = await erl_run(erl, "erlang:system_info(otp_release).")
    assert "".join(map(chr, release)) == otp.name.removeprefix("otp")  # OTP 28 is really 28
    async with py_node(epmd, erl.cookie, pki.config("good")) as node:
        assert await node.rpc(erl.name, "erlang", "node", []) == erl.name
        # the connection erl holds is a TLS one (inet_tls_dist's ssl socket)
        info = await erl_run(erl, "{ok, I} = net_kernel:node_info(N), proplists:get_value(address, I).", N=node.name)
        assert info[3] == Atom("tls")  # #net_address{protocol = tls}
        await roundtrip(node, erl, "dialled")
        assert await node.rpc(erl.name, "lists", "reverse", [[1, 2, 3]]) == [3, 2, 1]


@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_erl_dials_pynode_over_tls(
    pki: Pki, otp: Otp, epmd: Epmd, erl_node: StartErl, anyio_backend: str
) -> None:
    erl = tls_erl(erl_node, otp, pki.optfile("good"))
    async with py_node(epmd, erl.cookie, pki.config("good")) as node:
        node.expose("py", "twice")(lambda x: x * 2)
        assert await erl_run(erl, "net_adm:ping(N).", N=node.name) == Atom("pong")
        info = await erl_run(erl, "{ok, I} = net_kernel:node_info(N), proplists:get_value(address, I).", N=node.name)
        assert info[3] == Atom("tls")
        await roundtrip(node, erl, "accepted")
        # erl's rpc into the Python node runs over the same TLS connection
        assert await erl_run(erl, "rpc:call(N, py, twice, [21]).", N=node.name) == 42


# -- refusals: pynode is the server -------------------------------------------------------

SERVER_REFUSALS = {
    # erl's client certificate         what our log says
    "rogue": "failed verification: unable to get local issuer certificate",  # another CA
    "expired": "failed verification: certificate has expired",
    None: "the peer presented no certificate",
}


@pytest.mark.parametrize("client_cert", list(SERVER_REFUSALS), ids=["wrong_ca", "expired", "no_cert"])
async def test_pynode_refuses_bad_client_and_keeps_serving(
    pki: Pki, otp: Otp, epmd: Epmd, erl_node: StartErl, client_cert: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    cookie = unique("c")
    good = tls_erl(erl_node, otp, pki.optfile("good"), cookie=cookie)
    bad = tls_erl(erl_node, otp, pki.optfile("good", client_cert, tag=unique("-")), cookie=cookie)
    caplog.set_level(logging.WARNING, logger="pynode.node")
    async with py_node(epmd, cookie, pki.config("good")) as node:
        assert await erl_run(good, "net_adm:ping(N).", N=node.name) == Atom("pong")
        assert await erl_run(bad, "net_adm:ping(N).", N=node.name) == Atom("pang")
        assert bad.name not in node.nodes()
        refusals = [r.getMessage() for r in caplog.records if "refused TLS connection" in r.getMessage()]
        assert refusals, "the refusal was not logged"
        assert SERVER_REFUSALS[client_cert] in refusals[0]
        # the good peer's connection lives on, and new good connections are taken
        await roundtrip(node, good, "still_here")
        assert node.is_connected(good.name)
        assert await node.rpc(good.name, "erlang", "node", []) == good.name


# -- refusals: pynode is the client -------------------------------------------------------

CLIENT_REFUSALS = [
    # (erl server cert, our cert, words in our ConnectError)
    ("rogue", "good", "failed verification: unable to get local issuer certificate"),  # other CA
    ("expired", "good", "failed verification: certificate has expired"),
    ("otherhost", "good", "not valid for '127.0.0.1'"),  # valid, but for another host
    ("good", "rogue", "refused our certificate"),  # erl: unknown CA (TLS 1.2 alert)
    ("good", "expired", "refused our certificate: expired"),
    ("good", None, "peer refused the handshake|requires a certificate"),  # TLS 1.2 | 1.3
]


@pytest.mark.parametrize(
    ("erl_cert", "our_cert", "words"),
    CLIENT_REFUSALS,
    ids=["erl_wrong_ca", "erl_expired", "erl_wrong_host", "our_wrong_ca", "our_expired", "our_no_cert"],
)
async def test_pynode_client_refusals_and_keeps_serving(
    pki: Pki, otp: Otp, epmd: Epmd, erl_node: StartErl, erl_cert: str, our_cert: str | None, words: str
) -> None:
    cookie = unique("c")
    good = tls_erl(erl_node, otp, pki.optfile("good"), cookie=cookie)
    bad = tls_erl(erl_node, otp, pki.optfile(erl_cert, "good", tag=unique("-")), cookie=cookie)
    server, client = pki.config("good"), pki.config(our_cert)
    async with py_node(epmd, cookie, TlsSides(server, client) if our_cert != "good" else server) as node:
        if our_cert == "good":
            assert await node.ping(good.name) is True
        else:  # our client side is the bad one: the good peer dials us instead
            assert await erl_run(good, "net_adm:ping(N).", N=node.name) == Atom("pong")
        with pytest.raises(ConnectError) as info:
            await node.connect(bad.name, timeout=30)
        assert re.search(words, str(info.value)), info.value
        assert "TLS" in str(info.value)
        assert bad.name not in node.nodes()
        await roundtrip(node, good, "still_here")
        assert node.is_connected(good.name)
