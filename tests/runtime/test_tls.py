"""TLS distribution between pynodes on loopback (asyncio and trio), the TLS settings and their
errors, erl optfiles, and the test CA."""

from __future__ import annotations

import importlib.util
import logging
import os
import stat
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import pytest
from cryptography import x509

from interop.tls_pki import Pki, make_pki
from pynode.blocking import BlockingNode
from pynode.certs import erl_optfile, write_certs
from pynode.runtime import ConnectError, Node
from pynode.runtime.oneshot import OneShot
from pynode.runtime.tls import TlsConfig, TlsConfigError, TlsSides, from_options, read_optfile
from pynode.term import Atom

pytestmark = pytest.mark.anyio


BACKENDS: list[object] = ["asyncio", "trio"]
if importlib.util.find_spec("uvloop") is not None:  # accepts TLS through anyio's stream
    BACKENDS.append(pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"))


@pytest.fixture(params=BACKENDS)
def anyio_backend(request: pytest.FixtureRequest) -> object:
    return request.param


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("pki"))


def tls_node(name: str, tls: TlsConfig | TlsSides | None, **kw: object) -> Node:
    return Node(f"{name}@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1", tls=tls, **kw)  # type: ignore[arg-type]


@asynccontextmanager
async def pair(a_tls: TlsConfig | TlsSides | None, b_tls: TlsConfig | TlsSides | None) -> AsyncIterator[tuple[Node, Node]]:
    async with tls_node("a", a_tls) as a, tls_node("b", b_tls) as b:
        a.add_address(b.name, "127.0.0.1", b.port)
        b.add_address(a.name, "127.0.0.1", a.port)
        yield a, b


# -- pynode <-> pynode ----------------------------------------------------------------------


async def test_tls_both_ways(pki: Pki) -> None:
    good = pki.config("good")
    async with pair(good, good) as (a, b):
        assert await a.ping(b.name)
        conn = a.connection(b.name)
        assert conn is not None
        inbox = b.mailbox("inbox")
        for i in range(200):
            await a.send(("inbox", b.name), (i, b"x" * i))
        assert [await inbox.receive(timeout=10) for _ in range(200)] == [(i, b"x" * i) for i in range(200)]
        mb = a.mailbox()
        await b.send(mb.pid, "back")
        assert await mb.receive(timeout=10) == b"back"
        big = os.urandom(3_000_000)  # many TLS records, and fragments
        await a.send(("inbox", b.name), big)
        assert await inbox.receive(timeout=30) == big


async def test_the_accepting_side_sends_fragmented_messages(pki: Pki) -> None:
    """The side that accepted the connection (on asyncio: start_tls over the accepted
    socket) writes a big message's fragments through TLS too, never to the raw socket."""
    good = pki.config("good")
    async with pair(good, good) as (a, b):
        assert await a.ping(b.name)  # a dials, b accepts
        conn = b.connection(a.name)
        assert conn is not None and conn.channel.tls
        inbox = a.mailbox("inbox")
        big = os.urandom(300_000)  # fragments: the writev path
        await b.send(("inbox", a.name), big)
        await b.send(("inbox", a.name), b"after")
        assert await inbox.receive(timeout=30) == big
        assert await inbox.receive(timeout=30) == b"after"
        assert conn.alive and b.connection(a.name) is conn


def test_a_blocking_nodes_thread_sends_over_an_accepted_tls_connection(pki: Pki) -> None:
    """A thread's send on the accepting side of a TLS connection goes through TLS (it may
    write to the socket itself only where the socket carries plain bytes)."""
    good = pki.config("good")
    kw: dict[str, Any] = {"epmd": False, "listen_host": "127.0.0.1", "tls": good, "backend_options": {}}
    with BlockingNode("srv@127.0.0.1", "c", **kw) as srv, BlockingNode("cli@127.0.0.1", "c", **kw) as cli:
        assert srv.node is not None
        cli.connect(str(srv.name), address=("127.0.0.1", srv.node.port))
        assert cli.ping(str(srv.name))  # answered: srv has the connection too
        conn = srv.node.connector.connections[cli.name]
        assert conn.channel.tls
        inbox, out = cli.mailbox(), srv.mailbox()
        big = os.urandom(300_000)
        for message in (b"small", big, b"after"):
            out.send(inbox.pid, message)
        assert [inbox.receive(timeout=30) for _ in range(3)] == [b"small", big, b"after"]
        assert conn.alive and srv.node.connector.connections[cli.name] is conn


async def test_plain_node_cannot_talk_to_tls_node(pki: Pki) -> None:
    async with pair(pki.config("good"), None) as (tls, plain):
        with pytest.raises(ConnectError):
            await plain.connect(tls.name, timeout=15)
        with pytest.raises(ConnectError):
            await tls.connect(plain.name, timeout=15)
        assert tls.nodes() == [] and plain.nodes() == []


@pytest.mark.parametrize(
    ("cert", "logged"),
    [
        ("rogue", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        (None, "the peer presented no certificate"),
    ],
    ids=["wrong_ca", "expired", "no_cert"],
)
async def test_refused_client_and_the_server_keeps_serving(
    pki: Pki, cert: str | None, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pynode.node")
    good = pki.config("good")
    async with pair(good, good) as (server, friend):
        assert await friend.ping(server.name)
        async with tls_node("bad", TlsSides(good, pki.config(cert))) as bad:
            bad.add_address(server.name, "127.0.0.1", server.port)
            with pytest.raises(ConnectError, match="TLS"):
                await bad.connect(server.name, timeout=15)
        assert any(logged in r.getMessage() for r in caplog.records), [r.getMessage() for r in caplog.records]
        inbox = server.mailbox("inbox")
        await friend.send(("inbox", server.name), "still served")
        assert await inbox.receive(timeout=10) == b"still served"
        assert server.nodes() == [friend.name]


@pytest.mark.parametrize(
    ("cert", "words"),
    [
        ("rogue", "unable to get local issuer certificate"),
        ("expired", "certificate has expired"),
        ("otherhost", "not valid for '127.0.0.1'"),
    ],
    ids=["wrong_ca", "expired", "wrong_host"],
)
async def test_client_refuses_bad_server(pki: Pki, cert: str, words: str) -> None:
    async with pair(pki.config("good"), pki.config(cert)) as (a, b):
        with pytest.raises(ConnectError, match="TLS handshake") as info:
            await a.connect(b.name, timeout=15)
        assert words in str(info.value)


async def test_hostname_check_can_be_turned_off(pki: Pki) -> None:
    async with pair(pki.config("good", check_hostname=False), pki.config("otherhost")) as (a, b):
        assert await a.ping(b.name)


async def test_oneshot_client_over_tls(pki: Pki) -> None:
    async with tls_node("srv", pki.config("good")) as node:
        node.expose("py", "twice")(lambda x: x * 2)

        def call() -> object:
            with OneShot("c", str(node.name), tls=pki.config("good")) as c:
                c.connect(str(node.name), address=("127.0.0.1", node.port), timeout=20)
                return c.rpc(node.name, "py", "twice", [21], timeout=20)

        assert await anyio.to_thread.run_sync(call) == 42

        def refused() -> str:
            with OneShot("c", str(node.name), tls=pki.config("rogue")) as c:
                try:
                    c.connect(str(node.name), address=("127.0.0.1", node.port), timeout=20)
                except ConnectError as e:
                    return str(e)
            return "connected"

        assert "did it refuse our certificate" in await anyio.to_thread.run_sync(refused)


# -- settings -------------------------------------------------------------------------------


def test_config_errors(pki: Pki, tmp_path: Path) -> None:
    with pytest.raises(TlsConfigError, match="does not exist"):
        TlsConfig(certfile=str(tmp_path / "none.pem"), cafile=str(pki.ca)).client_context()
    with pytest.raises(TlsConfigError, match="cannot use certificate"):  # key of another cert
        TlsConfig(certfile=str(pki.cert("good")), keyfile=str(pki.key("rogue")), cafile=str(pki.ca)).client_context()
    with pytest.raises(TlsConfigError, match="CA file"):
        TlsConfig(certfile=str(pki.cert("good")), keyfile=str(pki.key("good")))
    with pytest.raises(TlsConfigError, match="needs a certificate"):
        TlsConfig(certfile=None, cafile=str(pki.ca)).server_context()
    bad_ca = tmp_path / "bad_ca.pem"
    bad_ca.write_text("not a certificate\n")
    with pytest.raises(TlsConfigError, match="CA certificates"):
        TlsConfig(certfile=str(pki.cert("good")), keyfile=str(pki.key("good")), cafile=str(bad_ca)).client_context()
    with pytest.raises(TlsConfigError, match="does not exist"):  # Node fails at once, not later
        Node("x@127.0.0.1", "c", tls=TlsConfig(certfile=str(tmp_path / "none.pem"), cafile=str(pki.ca)))


def test_read_optfile_of_certs(tmp_path: Path) -> None:
    made = write_certs(tmp_path, ["a@127.0.0.1"], days=3)
    sides = read_optfile(str(made.nodes[0].optfile))
    for side in sides:
        assert side.certfile == str(made.nodes[0].certfile)
        assert side.keyfile == str(made.nodes[0].keyfile)
        assert side.cafile == str(made.cafile)
        assert side.verify is True
    sides.server.server_context()
    sides.client.client_context()


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("[{server, [}].", "not an Erlang term"),
        ("{server, []}.", "expected"),
        ('[{server, [{certfile, "/x"}]}].', "no client options"),
        ('[{server, [{keyfile, "/x"}]}, {client, []}].', "server options have no certfile"),
        ('[{server, [{certfile, "/x"}, {verify, verify_peer}]}, {client, []}].', "fail_if_no_peer_cert"),
        ('[{server, [{certfile, "/x"}, {verify, maybe}]}, {client, []}].', "verify must be"),
        ('[{server, [{certfile, 42}]}, {client, []}].', "must be a string"),
        ('[{server, [certfile]}, {client, []}].', "not a {Key, Value} pair"),
    ],
)
def test_read_optfile_errors(tmp_path: Path, text: str, error: str) -> None:
    f = tmp_path / "opt.conf"
    f.write_text(text)
    with pytest.raises(TlsConfigError, match=error if "{" not in error else None) as info:
        read_optfile(str(f))
    assert error in str(info.value)


def test_read_optfile_missing() -> None:
    with pytest.raises(TlsConfigError, match="does not exist"):
        read_optfile("/nonexistent/ssl_dist.conf")


def test_from_options(pki: Pki, tmp_path: Path) -> None:
    assert from_options() is None
    sides = from_options(None, str(pki.cert("good")), str(pki.key("good")), str(pki.ca))
    assert sides is not None and sides.server == sides.client and sides.client.certfile == str(pki.cert("good"))
    with pytest.raises(TlsConfigError, match="--tls-ca"):
        from_options(None, str(pki.cert("good")))
    with pytest.raises(TlsConfigError, match="not both"):
        from_options(str(tmp_path / "x.conf"), str(pki.cert("good")))


def test_certs_files(tmp_path: Path) -> None:
    made = write_certs(tmp_path / "d", ["a@127.0.0.1", "b@host.example"], days=5)
    ca = x509.load_pem_x509_certificate(made.cafile.read_bytes())
    assert stat.S_IMODE(os.stat(made.cakeyfile).st_mode) == 0o600
    for files, host in zip(made.nodes, ["127.0.0.1", "host.example"], strict=True):
        cert = x509.load_pem_x509_certificate(files.certfile.read_bytes())
        cert.verify_directly_issued_by(ca)
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        assert host in alt.get_values_for_type(x509.DNSName)
        assert cert.subject.rfc4514_string() == f"CN={files.node}"
        assert stat.S_IMODE(os.stat(files.keyfile).st_mode) == 0o600
        after = getattr(cert, "not_valid_after_utc", None) or cert.not_valid_after  # cryptography < 42
        before = getattr(cert, "not_valid_before_utc", None) or cert.not_valid_before
        assert 4 <= (after - before).days <= 5
    ip_alt = x509.load_pem_x509_certificate(made.nodes[0].certfile.read_bytes()).extensions
    ips = ip_alt.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(x509.IPAddress)
    assert [str(i) for i in ips] == ["127.0.0.1"]
    with pytest.raises(ValueError, match="days"):
        write_certs(tmp_path / "e", ["a@h"], days=0)


def test_erl_optfile_quotes_paths() -> None:
    text = erl_optfile('/a "b"/c.pem', "/k\\ey", "/ca.pem")
    assert '{certfile, "/a \\"b\\"/c.pem"}' in text and '{keyfile, "/k\\\\ey"}' in text
    assert Atom("verify_peer") in text


async def test_idle_and_garbage_clients_are_dropped_while_others_are_served(
    pki: Pki, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="pynode.node")
    good = pki.config("good")
    async with tls_node("srv", good, setup_time=2.0) as server, tls_node("friend", good) as friend:
        friend.add_address(server.name, "127.0.0.1", server.port)
        idle = await anyio.connect_tcp("127.0.0.1", server.port)  # says nothing at all
        garbage = await anyio.connect_tcp("127.0.0.1", server.port)
        await garbage.send(b"\x00\x15N" + b"\x00" * 40)  # a plain-TCP handshake, not TLS
        try:
            assert await friend.ping(server.name)  # served while the two hang around
            with anyio.fail_after(20):  # setup_time bounds the TLS handshake
                for stream in (garbage, idle):
                    with pytest.raises((anyio.EndOfStream, anyio.BrokenResourceError, OSError)):
                        while await stream.receive():
                            pass
        finally:
            await idle.aclose()
            await garbage.aclose()
        messages = [r.getMessage() for r in caplog.records if "refused TLS connection" in r.getMessage()]
        assert len(messages) == 2, messages
        assert any("no TLS handshake in time" in m for m in messages), messages
        assert server.nodes() == [friend.name]


async def test_tls_on_tcp_endpoints_and_plain_unix_socket(pki: Pki, tmp_path: Path) -> None:
    good = pki.config("good")
    path = tmp_path / "m.sock"
    listen = ["tcp://127.0.0.1:0", f"unix:{path}"]
    async with Node("m@127.0.0.1", "c", epmd=False, listen=listen, tls=good) as m:
        tcp_port = m.listening[0].port
        async with tls_node("t", good) as t, tls_node("u", good) as u:
            await t.connect(m.name, address=("127.0.0.1", tcp_port), timeout=20)
            await u.connect(m.name, address=f"unix:{path}", timeout=20)
            conn_t, conn_u = m.connection(t.name), m.connection(u.name)
            assert conn_t is not None and conn_t.channel.tls  # TCP: TLS
            assert conn_u is not None and not conn_u.channel.tls  # the Unix socket stays plain
            inbox = m.mailbox("inbox")
            await t.send(("inbox", m.name), "over tls")
            await u.send(("inbox", m.name), "over unix")
            assert {await inbox.receive(timeout=10) for _ in range(2)} == {b"over tls", b"over unix"}
