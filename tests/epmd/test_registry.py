"""The EPMD tables without sockets: creation rules, unused names, linger, prefix, transports."""

from __future__ import annotations

from pynode.epmd.registry import (
    ADD_DUPLICATE,
    ADD_NOT_REGISTERED,
    ADD_OK,
    Registry,
    creation_for,
    next_creation_counter,
)
from pynode.protocol.epmd import NodeEntry


class Clock:
    def __init__(self, now: float = 0.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def entry(name: str, port: int = 1000, **kw: int) -> NodeEntry:
    return NodeEntry(name, port, **kw)  # type: ignore[arg-type]


def test_creation_counter_like_epmd() -> None:
    assert next_creation_counter(100) == 101
    assert next_creation_counter(0xFFFFFFFF) == 4  # wraps, skipping 0..3
    assert next_creation_counter(0) == 4
    assert next_creation_counter(3) == 4
    assert creation_for(1234, 6) == 1234
    assert creation_for(1234, 5) == 1234 % 3 + 1
    assert {creation_for(n, 5) for n in range(4, 20)} == {1, 2, 3}


def test_first_creation_is_seeded_from_the_clock() -> None:
    reg = Registry(clock=Clock(1_700_000_000.7))
    rec = reg.register(entry("a"))
    assert rec is not None and rec.creation == 1_700_000_001
    # another name seeded separately
    rec_b = reg.register(entry("b"))
    assert rec_b is not None and rec_b.creation == 1_700_000_001


def test_reregistration_bumps_the_creation() -> None:
    wall = Clock(5000)
    reg = Registry(clock=wall)
    first = reg.register(entry("a"), owner="c1")
    assert first is not None
    assert reg.register(entry("a"), owner="c2") is None  # name taken
    assert reg.unregister("a") is first
    wall.now = 9999  # the clock is not used again for a known name
    second = reg.register(entry("a"), owner="c3")
    assert second is not None and second.creation == first.creation + 1
    reg.unregister("a")
    third = reg.register(entry("a"))
    assert third is not None and third.creation == first.creation + 2


def test_unused_table_is_bounded() -> None:
    wall = Clock(100)
    reg = Registry(clock=wall, max_unregistered=2)
    for name in ("a", "b", "c"):
        reg.register(entry(name))
        reg.unregister(name)
    active, unused = reg.dump()
    assert active == [] and [u[0] for u in unused] == ["b", "c"]
    wall.now = 500
    rec = reg.register(entry("a"))  # forgotten: seeded again from the clock
    assert rec is not None and rec.creation == 501


def test_names_newest_first_and_owner() -> None:
    reg = Registry()
    reg.register(entry("a", 1), owner="x")
    reg.register(entry("b", 2), owner="y")
    assert reg.names() == [("b", 2), ("a", 1)]
    rec = reg.owned_by("y")
    assert rec is not None and rec.name == "b"
    assert reg.owned_by("z") is None
    assert len(reg) == 2 and "a" in reg and "c" not in reg


def test_linger_answers_lookups_only_for_a_while() -> None:
    mono = Clock(10.0)
    reg = Registry(linger=5.0, monotonic=mono)
    reg.register(entry("a", 77))
    reg.unregister("a", linger=True)
    assert reg.lookup("a") == entry("a", 77)
    assert reg.names() == []  # never listed
    mono.now = 14.9
    assert reg.lookup("a") is not None
    mono.now = 15.1
    assert reg.lookup("a") is None
    # an explicit unregister does not linger
    reg.register(entry("b"))
    reg.unregister("b")
    assert reg.lookup("b") is None


def test_linger_never_blocks_the_name() -> None:
    reg = Registry(linger=60.0, clock=Clock(50))
    first = reg.register(entry("a", 1))
    reg.unregister("a", linger=True)
    second = reg.register(entry("a", 2))
    assert first is not None and second is not None
    assert second.creation == first.creation + 1
    assert reg.lookup("a") == entry("a", 2)


def test_no_linger_by_default() -> None:
    reg = Registry()
    reg.register(entry("a"))
    reg.unregister("a", linger=True)
    assert reg.lookup("a") is None


def test_prefix_lookup() -> None:
    reg = Registry()
    for name in ("web2", "db1", "web1", "webby", "w"):
        reg.register(entry(name))
    assert [e.name for e in reg.lookup_prefix("web")] == ["web1", "web2", "webby"]
    assert [e.name for e in reg.lookup_prefix("")] == ["db1", "w", "web1", "web2", "webby"]
    assert reg.lookup_prefix("x") == []


def test_transports() -> None:
    reg = Registry()
    assert reg.add_transport(entry("a", 2000, protocol=1)) == ADD_NOT_REGISTERED
    reg.register(entry("a", 1000), owner="main")
    assert reg.add_transport(entry("a", 1000)) == ADD_DUPLICATE  # the primary itself
    assert reg.add_transport(entry("a", 1000, protocol=1), owner="t1") == ADD_OK
    assert reg.add_transport(entry("a", 2000, protocol=1), owner="t2") == ADD_OK
    assert reg.add_transport(entry("a", 2000, protocol=1)) == ADD_DUPLICATE
    assert [(e.protocol, e.port) for e in reg.transports("a")] == [(0, 1000), (1, 1000), (1, 2000)]
    assert reg.lookup("a") == entry("a", 1000)  # PORT_PLEASE2 answers the primary
    assert reg.remove_transports_of("t1") == 1
    removed = reg.remove_transport("a", 1, 2000)
    assert removed is not None and removed.owner == "t2"
    assert reg.remove_transport("a", 1, 2000) is None
    assert reg.transports("a") == [entry("a", 1000)]
    assert reg.transports("nope") == []
