"""Discovery's rules without sockets or sleeps: name filters, back-off, the scheduling
tracker (time is passed in), .hosts.erlang parsing and its search order."""

from __future__ import annotations

from pathlib import Path

import pytest

from pynode.runtime.discovery import Backoff, NameFilter, Tracker
from pynode.runtime.discovery_sources import host_file, parse_host_file
from pynode.term import Atom

A, B, C = Atom("a@h"), Atom("b@h"), Atom("c@h")


def test_glob_filter() -> None:
    f = NameFilter(include=("app*@127.0.0.1", "db?@*"), exclude=("app_test*",))
    assert f("app1@127.0.0.1") and f("db1@x")
    assert not f("app1@10.0.0.1")  # the host part counts
    assert not f("db12@x") and not f("web@127.0.0.1")
    assert not f("app_test1@127.0.0.1")
    assert not NameFilter(include=("App*",))("app1@h")  # case-sensitive, as atoms
    assert NameFilter()("anything@h")
    assert not NameFilter(exclude=("*",))("anything@h")


def test_regex_filter() -> None:
    f = NameFilter(include=(r"^app\d+@",), exclude=(r"@10\.",), regex=True)
    assert f("app12@127.0.0.1")
    assert not f("app12@10.0.0.1") and not f("appx@127.0.0.1") and not f("myapp1@h")
    with pytest.raises(ValueError, match="pattern"):
        NameFilter(include=("(",), regex=True)


def test_backoff_grows_to_its_cap_with_jitter() -> None:
    b = Backoff(initial=0.5, factor=2.0, cap=8.0, jitter=0.5)
    assert [b.delay(n, lambda: 0.0) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0, 8.0]
    assert b.delay(3, lambda: 1.0) == 1.0  # at most half taken off
    assert b.delay(10**9, lambda: 0.0) == 8.0  # no overflow far past the cap
    assert b.delay(0, lambda: 0.0) == 0.5
    for bad in ({"initial": 0}, {"factor": 0.5}, {"cap": 0.1}, {"jitter": 2.0}):
        with pytest.raises(ValueError):
            Backoff(**bad)  # type: ignore[arg-type]


def test_tracker_dials_backs_off_and_redials() -> None:
    t = Tracker(Backoff(initial=1.0, factor=2.0, cap=4.0, jitter=0.0))
    assert t.observe({A: ("127.0.0.1", 1), B: None}) == ([A, B], [])
    assert t.due(0.0) == [A, B]
    t.dial_started(A)
    t.dial_started(B)
    assert t.due(0.0) == []  # not dialled twice at once
    assert t.node_up(A) is True and t.node_up(A) is False  # one Join
    t.dial_done(A)
    delays = [t.dial_failed(0.0, B)]
    assert t.next_wakeup() == 1.0 and t.due(0.5) == [] and t.due(1.0) == [B]
    for now in (1.0, 3.0, 7.0, 11.0):
        t.dial_started(B)
        delays.append(t.dial_failed(now, B))
    assert delays == [1.0, 2.0, 4.0, 4.0, 4.0]  # capped
    assert t.node_up(B) is True and t.due(100.0) == []
    assert t.next_wakeup() is None
    # a lost connection: one Leave, then a redial after the first back-off step
    assert t.node_down(20.0, A) is True and t.node_down(20.0, A) is False
    assert t.due(20.5) == [] and t.due(21.0) == [A]


def test_tracker_forgets_vanished_nodes_and_dials_returning_ones_at_once() -> None:
    t = Tracker(Backoff(initial=1.0, cap=30.0, jitter=0.0))
    t.observe({A: None, B: None})
    for _ in range(5):
        t.dial_started(A)
        t.dial_failed(0.0, A)
    assert t.due(0.0) == [B]
    assert t.observe({B: None, C: None}) == ([C], [A])
    assert t.due(0.0) == [B, C] and t.next_wakeup() is None
    assert t.observe({A: None, B: None, C: None}) == ([A], [])
    assert t.due(0.0) == [A, B, C]  # no back-off carried over from before it vanished
    assert t.node_down(0.0, C) is False  # never joined: no Leave


def test_parse_host_file() -> None:
    text = "'host1.example'.  % a comment 'not.a.host'.\n'127.0.0.1'.\n\"quoted\". 'with%percent'.\nbare.\n"
    assert parse_host_file(text) == ["host1.example", "127.0.0.1", "quoted", "with%percent", "bare"]
    assert parse_host_file("% nothing\n") == []
    for bad in ("'a'", "{a, b}.", "42.", "'a' 'b'."):
        with pytest.raises(ValueError):
            parse_host_file(bad)


def test_host_file_search_order(tmp_path: Path) -> None:
    cwd, home = tmp_path / "cwd", tmp_path / "home"
    cwd.mkdir()
    home.mkdir()
    (home / ".hosts.erlang").write_text("'from.home'.\n")
    assert host_file([cwd, home]) == ["from.home"]
    (cwd / ".hosts.erlang").write_text("'from.cwd'.\n'b'.\n")
    assert host_file([cwd, home]) == ["from.cwd", "b"]  # the first file found, as path_consult
    assert host_file([tmp_path / "none"]) == []
    (cwd / ".hosts.erlang").write_text("{broken.\n")
    with pytest.raises(ValueError, match=r"\.hosts\.erlang"):
        host_file([cwd, home])
