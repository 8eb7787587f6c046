"""Request handling without sockets: epmd_srv.c's checks, replies and refusals."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pynode.epmd.core import MAX_BODY, EpmdCore, RequestFramer
from pynode.epmd.registry import Registry
from pynode.epmd.server import is_local_peer
from pynode.protocol._common import NEED_DATA
from pynode.protocol.epmd import (
    Alive2Request,
    DumpRequest,
    KillRequest,
    NamesRequest,
    NodeEntry,
    PortPlease2Request,
    StopRequest,
    parse_alive2_response,
    parse_dump_response,
    parse_names_response,
    parse_port2_response,
)
from pynode.protocol.epmd_ext import (
    AddTransportRequest,
    PrefixRequest,
    TransportsRequest,
    parse_nodes_reply,
)
from pynode.protocol.errors import EpmdProtocolError


def body(frame: bytes) -> bytes:
    return frame[2:]


def alive2_body(name: bytes, port: int = 5000, high: int = 6, extra: bytes = b"") -> bytes:
    return (
        struct.pack(">BHBBHHH", 120, port, 77, 0, high, 5, len(name))
        + name
        + struct.pack(">H", len(extra))
        + extra
    )


@pytest.fixture
def core() -> EpmdCore:
    return EpmdCore(Registry(clock=lambda: 1000.0), epmd_port=4369)


# -- framing -------------------------------------------------------------------------------
def test_framer_trickle() -> None:
    data = NamesRequest().encode()
    f = RequestFramer()
    for b in data[:-1]:
        f.receive_data(bytes([b]))
        assert f.next_body() is NEED_DATA
    f.receive_data(data[-1:])
    assert f.next_body() == b"n"
    with pytest.raises(EpmdProtocolError):
        f.next_body()  # one request per connection


@pytest.mark.parametrize(
    "data",
    [b"\x00\x00", struct.pack(">H", MAX_BODY + 1), b"\x00\x01nX"],
    ids=["zero", "too-large", "bytes-after-request"],
)
def test_framer_refuses(data: bytes) -> None:
    f = RequestFramer()
    f.receive_data(data)
    with pytest.raises(EpmdProtocolError):
        f.next_body()


def test_framer_largest_request() -> None:
    f = RequestFramer()
    f.receive_data(struct.pack(">H", MAX_BODY) + b"n" * MAX_BODY)
    assert f.next_body() == b"n" * MAX_BODY
    assert MAX_BODY == 3057  # epmd: length + 2 >= INBUF_SIZE (3060) is refused


# -- requests ------------------------------------------------------------------------------
def test_register_lookup_names(core: EpmdCore) -> None:
    out = core.handle(body(Alive2Request("a", 5000).encode()), local=True, owner="c1")
    assert out.keep and not out.note
    reply = parse_alive2_response(out.reply)
    assert reply.ok and reply.extended and reply.creation == 1001
    out = core.handle(body(PortPlease2Request("a").encode()), local=False, owner="c2")
    found = parse_port2_response(out.reply)
    assert found.node == NodeEntry("a", 5000)
    assert not out.keep
    out = core.handle(body(PortPlease2Request("b").encode()), local=True, owner="c3")
    assert out.reply == b"\x77\x01"
    names = parse_names_response(core.handle(b"n", local=False, owner="c4").reply)
    assert names.epmd_port == 4369 and names.nodes == (("a", 5000),)


def test_duplicate_gets_result_1_creation_99(core: EpmdCore) -> None:
    core.handle(alive2_body(b"a"), local=True, owner="c1")
    out = core.handle(alive2_body(b"a"), local=True, owner="c2")
    assert out.reply == b"\x76\x01\x00\x00\x00\x63" and not out.keep
    out = core.handle(alive2_body(b"a", high=5), local=True, owner="c3")
    assert out.reply == b"\x79\x01\x00\x63"


def test_old_nodes_get_alive2_resp(core: EpmdCore) -> None:
    out = core.handle(alive2_body(b"old", high=5), local=True, owner="c1")
    reply = parse_alive2_response(out.reply)
    assert not reply.extended and reply.ok and reply.creation in (1, 2, 3)


def test_stale_holder_is_replaced() -> None:
    gone: set[str] = set()
    core = EpmdCore(Registry(clock=lambda: 1000.0), is_gone=lambda o: o in gone)
    core.handle(alive2_body(b"a"), local=True, owner="c1")
    assert not parse_alive2_response(
        core.handle(alive2_body(b"a"), local=True, owner="c2").reply
    ).ok
    gone.add("c1")
    out = core.handle(alive2_body(b"a"), local=True, owner="c3")
    reply = parse_alive2_response(out.reply)
    assert reply.ok and reply.creation == 1002
    assert [r.owner for r in out.dropped] == ["c1"]
    assert core.registry.owned_by("c3") is not None


def test_non_local_refusals(core: EpmdCore) -> None:
    for req in (
        alive2_body(b"a"),
        b"d",
        b"k",
        b"sa",
        body(AddTransportRequest("a", 1, 1).encode()),
    ):
        out = core.handle(req, local=False, owner="c")
        assert out.reply == b"" and "non local" in out.note
    assert len(core.registry) == 0


@pytest.mark.parametrize(
    "bad",
    [
        alive2_body(b"a\x00b"),  # NUL in the name
        alive2_body(b"abc")[:12],  # too short
        struct.pack(">BHBBHHH", 120, 1, 77, 0, 6, 5, 40) + b"abc\x00\x00",  # name overruns
        alive2_body(b"abc")[:-2] + b"\x00\x09",  # extra overruns
    ],
    ids=["nul", "short", "name-size", "extra-size"],
)
def test_malformed_alive2_closes_without_reply(core: EpmdCore, bad: bytes) -> None:
    out = core.handle(bad, local=True, owner="c")
    assert out.reply == b"" and not out.keep and out.note


@pytest.mark.parametrize(
    "name", [b"\xff\xfe", b"x" * 256, "é".encode() * 256], ids=["utf8", "256", "256u"]
)
def test_bad_names_get_result_1(core: EpmdCore, name: bytes) -> None:
    out = core.handle(alive2_body(name), local=True, owner="c")
    assert parse_alive2_response(out.reply).result == 1 and not out.keep


def test_extra_too_long_gets_result_1(core: EpmdCore) -> None:
    out = core.handle(alive2_body(b"a", extra=b"x" * 1021), local=True, owner="c")
    assert parse_alive2_response(out.reply).result == 1
    out = core.handle(alive2_body(b"a", extra=b"x" * 1020), local=True, owner="c")
    assert parse_alive2_response(out.reply).ok


def test_unicode_name_of_255_characters(core: EpmdCore) -> None:
    name = "ñ日" * 127 + "ü"
    assert len(name) == 255
    out = core.handle(body(Alive2Request(name, 1).encode()), local=True, owner="c")
    assert parse_alive2_response(out.reply).ok
    out = core.handle(body(PortPlease2Request(name).encode()), local=True, owner="d")
    node = parse_port2_response(out.reply).node
    assert node is not None and node.name == name


@pytest.mark.parametrize(
    "req", [b"z", b"za\x00b", b"z\xff", b"z" + b"x" * 256], ids=["empty", "nul", "utf8", "long"]
)
def test_bad_port_please_closes_without_reply(core: EpmdCore, req: bytes) -> None:
    out = core.handle(req, local=True, owner="c")
    assert out.reply == b"" and out.note


def test_port_please_skips_one_trailing_nul(core: EpmdCore) -> None:
    core.handle(alive2_body(b"a"), local=True, owner="c")
    assert parse_port2_response(core.handle(b"za\x00", local=True, owner="d").reply).found


def test_unknown_request(core: EpmdCore) -> None:
    out = core.handle(b"?abc", local=True, owner="c")
    assert out.reply == b"" and "garbage" in out.note


def test_kill(core: EpmdCore) -> None:
    out = core.handle(body(KillRequest().encode()), local=True, owner="c")
    assert out.reply == b"OK" and out.kill
    core.handle(alive2_body(b"a"), local=True, owner="r")
    out = core.handle(b"k", local=True, owner="c")
    assert out.reply == b"NO" and not out.kill
    core.relaxed_command_check = True
    out = core.handle(b"k", local=True, owner="c")
    assert out.reply == b"OK" and out.kill


def test_stop(core: EpmdCore) -> None:
    core.handle(alive2_body(b"a"), local=True, owner="r")
    out = core.handle(body(StopRequest("a").encode()), local=True, owner="c")
    assert out.reply == b"" and "relaxed" in out.note
    assert "a" in core.registry
    core.relaxed_command_check = True
    out = core.handle(body(StopRequest("a").encode()), local=True, owner="c")
    assert out.reply == b"STOPPED" and [r.owner for r in out.dropped] == ["r"]
    assert "a" not in core.registry
    out = core.handle(body(StopRequest("a").encode()), local=True, owner="c")
    assert out.reply == b"NOEXIST"
    assert core.handle(b"s", local=True, owner="c").reply == b""


def test_dump(core: EpmdCore) -> None:
    core.handle(alive2_body(b"a", port=7), local=True, owner="r", fd=12)
    core.handle(alive2_body(b"b", port=8), local=True, owner="s", fd=13)
    core.connection_lost("s")
    dump = parse_dump_response(
        core.handle(body(DumpRequest().encode()), local=True, owner="c").reply
    )
    assert dump.epmd_port == 4369
    assert dump.lines == (
        "active name     <a> at port 7, fd = 12",
        "old/unused name <b>, port = 8, fd = 13 ",
    )


def test_connection_lost_frees_name_and_transports(core: EpmdCore) -> None:
    core.handle(alive2_body(b"a"), local=True, owner="r")
    out = core.handle(body(AddTransportRequest("a", 6000, 1).encode()), local=True, owner="t")
    assert out.reply == b"R\x00" and out.keep
    assert len(core.registry.transports("a")) == 2
    assert core.connection_lost("t") == []
    assert len(core.registry.transports("a")) == 1
    core.handle(body(AddTransportRequest("a", 6000, 1).encode()), local=True, owner="t2")
    dropped = core.connection_lost("r")
    assert [r.name for r in dropped] == ["a"] and dropped[0].transports[0].owner == "t2"
    assert core.registry.names() == []


def test_extensions(core: EpmdCore) -> None:
    for name, port in (("web1", 1), ("web2", 2), ("db", 3)):
        core.handle(alive2_body(name.encode(), port=port), local=True, owner=name)
    out = core.handle(body(PrefixRequest("web").encode()), local=False, owner="c")
    assert [e.name for e in parse_nodes_reply(out.reply)] == ["web1", "web2"]
    out = core.handle(body(AddTransportRequest("db", 9, 2).encode()), local=True, owner="t")
    assert out.reply == b"R\x00"
    out = core.handle(body(AddTransportRequest("db", 9, 2).encode()), local=True, owner="t")
    assert out.reply == b"R\x02" and not out.keep
    out = core.handle(body(AddTransportRequest("zz", 9, 2).encode()), local=True, owner="t")
    assert out.reply == b"R\x01" and not out.keep
    out = core.handle(body(TransportsRequest("db").encode()), local=False, owner="c")
    assert [(e.protocol, e.port) for e in parse_nodes_reply(out.reply)] == [(0, 3), (2, 9)]
    out = core.handle(body(TransportsRequest("nope").encode()), local=False, owner="c")
    assert parse_nodes_reply(out.reply) == []
    core.extensions = False
    out = core.handle(body(PrefixRequest("").encode()), local=True, owner="c")
    assert out.reply == b"" and "garbage" in out.note


def test_is_local_peer() -> None:
    assert is_local_peer("127.0.0.1", "127.0.0.1")
    assert is_local_peer("127.3.2.1", "127.0.0.1")
    assert is_local_peer("::1", "::1")
    assert is_local_peer("::ffff:127.0.0.1", "::ffff:127.0.0.1")
    assert is_local_peer("192.0.2.2", "192.0.2.2")  # our own address
    assert is_local_peer("fe80::1%eth0", "fe80::1%eth0")
    assert not is_local_peer("192.0.2.7", "192.0.2.2")
    assert not is_local_peer("fd00::7", "fd00::2")
    assert not is_local_peer("::ffff:10.0.0.1", "::ffff:127.0.0.1")
    assert not is_local_peer("garbage", "127.0.0.1")


_TAGS = st.sampled_from([120, 122, 110, 100, 107, 115, 80, 76, 84, 0, 255])


@settings(max_examples=500, deadline=None)
@given(tag=_TAGS, rest=st.binary(max_size=64), local=st.booleans(), relaxed=st.booleans())
def test_handle_never_raises(tag: int, rest: bytes, local: bool, relaxed: bool) -> None:
    core = EpmdCore(Registry(), relaxed_command_check=relaxed)
    core.handle(alive2_body(b"known"), local=True, owner="k")
    out = core.handle(bytes([tag]) + rest, local=local, owner="c")
    assert isinstance(out.reply, bytes)
    core.connection_lost("c")
    core.connection_lost("k")


@settings(max_examples=300, deadline=None)
@given(st.lists(st.binary(max_size=8), max_size=8))
def test_framer_never_raises_anything_else(chunks: list[bytes]) -> None:
    f = RequestFramer()
    data = b""
    for chunk in chunks:
        f.receive_data(chunk)
        data += chunk
        try:
            body = f.next_body()
        except EpmdProtocolError:
            break
        if isinstance(body, bytes):  # exactly the declared length, after the 2-byte size
            assert body == data[2:] and len(body) == int.from_bytes(data[:2], "big")
            break
        assert len(data) < 2 or len(data) < 2 + int.from_bytes(data[:2], "big")
