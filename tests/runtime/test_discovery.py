"""Discovery between pynodes over pynode's EPMD server (and a fake DNS server), on loopback,
on asyncio and trio: joins, leaves, reconnects, filters, every source."""

from __future__ import annotations

import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest

from pynode.epmd import EpmdServer
from pynode.protocol.dns import SRV, SrvRecord, _read_name, encode_response
from pynode.runtime import Node
from pynode.runtime.discovery import MAX_FOUND, Backoff, Discovery, Join, Leave
from pynode.runtime.discovery_sources import Dns, EpmdPrefix, Hosts, LocalEpmd, Nodes, SourceContext
from pynode.runtime.dns import resolve_srv
from pynode.term import Atom

pytestmark = pytest.mark.anyio
WAIT = 30.0  # the machine is shared and loaded: generous, never slept


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return request.param


def pynode(name: str, server: EpmdServer, **kw: Any) -> Node:
    return Node(f"{name}@127.0.0.1", "disc", epmd_port=server.port, listen_host="127.0.0.1", **kw)


async def next_event(d: Discovery, timeout: float = WAIT) -> Join | Leave:
    with anyio.fail_after(timeout):
        return await d.__aiter__().receive()


async def events_until(d: Discovery, want: set[Any], timeout: float = WAIT) -> list[Any]:
    """Events until every one in ``want`` was seen (bounded in time; nothing is slept)."""
    seen: list[Any] = []
    with anyio.fail_after(timeout):
        while not want <= set(seen):
            seen.append(await d.__aiter__().receive())
    return seen


FAST = {"interval": 0.3, "backoff": Backoff(initial=0.05, cap=0.5)}


async def test_local_epmd_joins_leaves_rejoins_and_filters() -> None:
    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d:
        async with pynode("app1", epmd) as app1, pynode("other", epmd) as other:
            async with d.discover(include=["app*"], **FAST) as disc:
                assert await next_event(disc) == Join(app1.name)
                assert d.is_connected(app1.name) and not d.is_connected(other.name)
                async with pynode("app2", epmd) as app2:
                    assert await next_event(disc) == Join(app2.name)
                    assert disc.members == {app1.name, app2.name}
                ev = await next_event(disc)
                assert isinstance(ev, Leave) and ev.node == Atom("app2@127.0.0.1")
                async with pynode("app2", epmd) as app2:  # back, on another port
                    assert await next_event(disc) == Join(app2.name)
                    assert d.is_connected(app2.name)
                await disc.settled(disc.rounds + 2)
                assert not d.is_connected(other.name) and d.name not in other.nodes()
                assert other.name not in disc.found


async def test_lost_connection_to_a_listed_node_is_redialled() -> None:
    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d, pynode("app", epmd) as app:
        async with d.discover(**FAST) as disc:
            assert await next_event(disc) == Join(app.name)
            for _ in range(3):  # each loss is seen and repaired, without the node restarting
                conn = app.connection(d.name)
                assert conn is not None
                conn.close("cut by the test")
                assert isinstance(await next_event(disc), Leave)
                assert await next_event(disc) == Join(app.name)
            assert d.is_connected(app.name)


async def test_failed_dials_back_off() -> None:
    # a node EPMD lists but that refuses us (another cookie): dialled again and again,
    # each time later, and never reported as joined
    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d:
        async with Node("bad@127.0.0.1", "other-cookie", epmd_port=epmd.port, listen_host="127.0.0.1"):
            async with d.discover(interval=0.2, backoff=Backoff(initial=0.05, factor=2.0, cap=0.4)) as disc:
                with anyio.fail_after(WAIT):
                    while disc.tracker.failures.get(Atom("bad@127.0.0.1"), 0) < 4:
                        await disc.settled(disc.rounds + 1)
                assert disc.members == set() and not d.is_connected("bad@127.0.0.1")


@pytest.mark.parametrize("extensions", [True, False])
async def test_prefix_lookup_with_and_without_the_extension(extensions: bool) -> None:
    async with EpmdServer(port=0, extensions=extensions) as epmd, pynode("d", epmd) as d:
        async with pynode("svc_a", epmd) as a, pynode("svc_b", epmd) as b, pynode("misc", epmd):
            source = EpmdPrefix("svc_")
            async with d.discover(source, **FAST) as disc:
                seen = await events_until(disc, {Join(a.name), Join(b.name)})
                await disc.settled(disc.rounds + 1)
                assert set(disc.found) == {a.name, b.name}
                assert Join(Atom("misc@127.0.0.1")) not in seen
            assert source.supported is extensions


async def test_hosts_with_their_own_epmd_ports_and_one_dead_host() -> None:
    async with EpmdServer(port=0) as dead:
        dead_port = dead.port  # nothing listens there any more
    async with EpmdServer(port=0) as e1, EpmdServer(port=0) as e2, pynode("d", e1, epmd=False) as d:
        async with pynode("n1", e1) as n1, pynode("n2", e2) as n2:
            hosts = Hosts([("127.0.0.1", e1.port), ("127.0.0.1", e2.port), ("127.0.0.1", dead_port)])
            async with d.discover(hosts, **FAST) as disc:
                await events_until(disc, {Join(n1.name), Join(n2.name)})
                assert set(d.nodes()) == {n1.name, n2.name}


@asynccontextmanager
async def fake_dns(records: dict[str, list[SrvRecord]]) -> AsyncIterator[tuple[str, int]]:
    """A DNS server on 127.0.0.1 answering SRV questions from ``records`` (else NXDOMAIN)."""
    async with await anyio.create_udp_socket(local_host="127.0.0.1") as udp, anyio.create_task_group() as tg:

        async def serve() -> None:
            async for data, addr in udp:
                ident = struct.unpack_from(">H", data)[0]
                name, pos = _read_name(data, 12)
                qtype = struct.unpack_from(">H", data, pos)[0]
                answers = records.get(name) if qtype == SRV else None
                reply = encode_response(ident, name, qtype, list(answers or []), rcode=0 if answers is not None else 3)
                await udp.sendto(reply, *addr)

        tg.start_soon(serve)
        yield udp.extra(anyio.abc.SocketAttribute.local_address)[:2]
        tg.cancel_scope.cancel()


async def test_dns_srv_source() -> None:
    async with EpmdServer(port=0) as epmd, pynode("d", epmd, epmd=False) as d:
        records = {"_erlang._tcp.test.invalid": [SrvRecord(0, 0, epmd.port, "127.0.0.1")]}
        async with fake_dns(records) as server, pynode("s1", epmd) as s1, pynode("s2", epmd) as s2:
            assert await resolve_srv("_erlang._tcp.test.invalid", [server]) == records["_erlang._tcp.test.invalid"]
            assert await resolve_srv("_nothing._tcp.test.invalid", [server]) == []
            source = Dns("_erlang._tcp.test.invalid", "SRV", servers=[server])
            async with d.discover(source, exclude=["s2@*"], **FAST) as disc:
                assert await next_event(disc) == Join(s1.name)
                await disc.settled(disc.rounds + 1)
                assert set(d.nodes()) == {s1.name} and not d.is_connected(s2.name)
            named = Dns("_erlang._tcp.test.invalid", "SRV", servers=[server], basename="s2")
            ctx = SourceContext(node_host="127.0.0.1", epmd_port=epmd.port, timeout=5.0)
            assert await named.find(ctx) == {s2.name: None}


async def test_dns_a_source_uses_getaddrinfo() -> None:
    async with EpmdServer(port=0) as epmd, pynode("d", epmd, epmd=False) as d, pynode("web", epmd) as web:
        ctx = SourceContext(node_host="127.0.0.1", epmd_port=epmd.port, timeout=5.0)
        found = await Dns("localhost", "A").find(ctx)
        assert found.get(web.name) == ("127.0.0.1", web.port)
        async with d.discover(Dns("localhost", basename="web"), include=["*@127.0.0.1"], **FAST) as disc:
            assert await next_event(disc) == Join(web.name)
    with pytest.raises(ValueError, match="kind"):
        Dns("x", "MX")


async def test_list_only_mode_and_a_broken_source() -> None:
    class Broken:
        async def find(self, ctx: SourceContext) -> Any:
            raise RuntimeError("this source is broken")

    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d:
        sources = (Broken(), LocalEpmd(), Nodes(["seed@127.0.0.1"]))
        async with d.discover(*sources, connect=False, **FAST) as disc:
            async with pynode("a", epmd) as a:
                seen = await events_until(disc, {Join(a.name), Join(Atom("seed@127.0.0.1"))})
                assert Join(d.name) not in seen  # never ourselves
                assert not d.is_connected(a.name)
            ev = await next_event(disc)
            assert ev == Leave(a.name)  # gone from EPMD
            assert d.nodes() == []
            assert a.name not in d.connector.addresses  # its old port is forgotten


async def test_a_round_lists_at_most_max_found_nodes() -> None:
    class Flood:
        async def find(self, ctx: SourceContext) -> Any:
            return {Atom(f"n{i}@127.0.0.1"): None for i in range(MAX_FOUND + 500)}

    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d:
        async with d.discover(Flood(), connect=False, max_events=10, **FAST) as disc:
            await disc.settled()
            assert len(disc.found) == MAX_FOUND


async def test_bad_options() -> None:
    async with EpmdServer(port=0) as epmd, pynode("d", epmd) as d:
        with pytest.raises(ValueError):
            d.discover(interval=0)
        with pytest.raises(ValueError):
            d.discover(jitter=1.5)
        with pytest.raises(ValueError):
            d.discover(include=["("], regex=True)
