"""The blocking one-shot client (pynode.runtime.oneshot, the CLI's engine) against real erl."""

from __future__ import annotations

import socket
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from pynode.protocol.flags import DFlag, default_flags
from pynode.runtime.errors import (
    AuthError,
    CallError,
    ConnectError,
    ConnectTimeout,
    NoConnection,
    RemoteError,
    RpcError,
    RpcTimeout,
)
from pynode.runtime.oneshot import OneShot, names, port_please
from pynode.term import Atom, Pid

from .erlnode import Epmd, ErlNode, free_port, unique
from .rpc_checks import SLEEPERS, SLEEPERS_GONE, check_erpc_errors

StartErl = Callable[..., ErlNode]


@contextmanager
def client(epmd: Epmd, erl: ErlNode, **kw: object) -> Iterator[OneShot]:
    kw.setdefault("epmd_port", epmd.port)
    c = OneShot(kw.pop("cookie", erl.cookie), erl.name, **kw)  # type: ignore[arg-type]
    try:
        yield c
    finally:
        c.close()


def test_rpc_values_errors_and_dynamic_name(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    with client(epmd, erl) as c:
        c.connect(erl.name, timeout=10)
        assert c.name.endswith("@127.0.0.1") and not c.name.startswith("undefined@")  # NAME_ME
        assert c.rpc(erl.name, "erlang", "node") == erl.name
        assert c.rpc(erl.name, "lists", "seq", [1, 5]) == [1, 2, 3, 4, 5]
        assert c.rpc(erl.name, "erlang", "nodes", [Atom("hidden")]) == [c.name]
        me = c.rpc(erl.name, "erlang", "self")  # a pid of erl's erpc process, not ours
        assert type(me) is Pid and me.node == erl.name
        check_erpc_errors(lambda m, f, a: c.rpc(erl.name, m, f, a))
        # the connection stays usable after failures
        assert c.rpc(erl.name, "erlang", "abs", [-3]) == 3


def test_explicit_name_visible(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    me = unique("me") + "@127.0.0.1"
    with client(epmd, erl, name=me, hidden=False) as c:
        c.connect(erl.name, timeout=10)
        assert c.name == me
        assert c.rpc(erl.name, "erlang", "nodes", []) == [Atom(me)]


def test_capture_and_print_output(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    printed: list[str] = []
    with client(epmd, erl, io_output=printed.append) as c:
        c.connect(erl.name, timeout=10)
        value, text = c.rpc(erl.name, "io", "format", [list(b"x=~p ~s~n"), [42, list(b"y")]], capture_output=True)
        assert (value, text) == (Atom("ok"), "x=42 y\n")
        assert c.rpc(erl.name, "io", "put_chars", [b"to the group leader\n"]) == Atom("ok")
        assert printed == ["to the group leader\n"]
        # a process that reads from our group leader gets eof instead of hanging
        assert c.rpc(erl.name, "io", "get_line", [list(b"> ")], timeout=10) == Atom("eof")


def test_timeout_abandons_the_call(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    with client(epmd, erl) as c:
        c.connect(erl.name, timeout=10)
        t0 = time.monotonic()
        with pytest.raises(RpcTimeout):
            c.rpc(erl.name, "timer", "sleep", [2000], timeout=0.5)
        assert time.monotonic() - t0 < 5
        # erpc:call abandons a call that timed out (it demonitors, it does not kill): the
        # call runs on in erl, then ends; the client stays usable
        assert erl.run(SLEEPERS) == 1
        assert erl.run(SLEEPERS_GONE) == Atom("none")
        assert c.rpc(erl.name, "erlang", "abs", [-3]) == 3


def test_ticks_keep_a_long_call_alive(epmd: Epmd, erl_node: StartErl) -> None:
    """erl with net_ticktime 2 s drops a peer it has not heard from for about 2 s; the
    client's own ticks are every 15 s, so only answering erl's ticks keeps it connected
    through a 3.5 s call."""
    erl = erl_node(args=["-kernel", "net_ticktime", "2"])
    with client(epmd, erl) as c:
        c.connect(erl.name, timeout=10)
        assert c.tick_interval == 15.0
        assert c.rpc(erl.name, "timer", "sleep", [3500], timeout=30) == Atom("ok")
        assert c.rpc(erl.name, "erlang", "nodes", [Atom("hidden")]) == [c.name]


def test_silent_peer_is_dropped(epmd: Epmd, erl_node: StartErl) -> None:
    """erl (net_ticktime 60 s) ticks every 15 s and sends nothing else during a 3 s call: a
    client whose own net_ticktime is 1 s declares it gone instead of waiting."""
    erl = erl_node()
    with client(epmd, erl, net_ticktime=1.0) as c:
        c.connect(erl.name, timeout=10)
        with pytest.raises(NoConnection, match="sent nothing"):
            c.rpc(erl.name, "timer", "sleep", [3000], timeout=30)


def test_rex_fallback_without_spawn(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    with client(epmd, erl, flags=default_flags(hidden=True) & ~DFlag.SPAWN) as c:
        c.connect(erl.name, timeout=10)
        assert not c.peer_flags & DFlag.SPAWN
        assert c.rpc(erl.name, "lists", "reverse", [[1, 2, 3]]) == [3, 2, 1]
        with pytest.raises(RemoteError) as info:
            c.rpc(erl.name, "erlang", "error", [Atom("x")])
        assert info.value.cls == Atom("exit")  # rex reports {'EXIT', ...}
        with pytest.raises(RpcError, match="cannot capture output"):
            c.rpc(erl.name, "io", "format", [list(b"hi")], capture_output=True)
        with pytest.raises(RpcTimeout):
            c.rpc(erl.name, "timer", "sleep", [60_000], timeout=0.3)


def test_gen_server_call_send_and_ping(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    name = unique("box")
    erl.run(
        "P = spawn(fun Loop() -> receive"
        "  {'$gen_call', From, {add, A, B}} -> gen_server:reply(From, A + B), Loop();"
        "  {'$gen_call', _From, ignore} -> Loop();"
        "  {'$gen_call', _From, stop} -> exit(stopped);"
        "  {put, X} -> put(got, X), Loop();"
        "  {'$gen_call', From, get} -> gen_server:reply(From, get(got)), Loop()"
        " end end), true = register(Name, P), ok.",
        Name=Atom(name),
    )
    with client(epmd, erl) as c:
        c.connect(erl.name, timeout=10)
        assert c.ping(erl.name)
        assert c.call((name, erl.name), (Atom("add"), 2, 3)) == 5
        c.send((name, erl.name), (Atom("put"), [1, b"x"]))
        assert c.call((name, erl.name), Atom("get")) == [1, b"x"]
        with pytest.raises(RpcTimeout):
            c.call((name, erl.name), Atom("ignore"), timeout=0.3)
        with pytest.raises(CallError) as info:
            c.call((name, erl.name), Atom("stop"), timeout=10)
        assert info.value.reason == Atom("stopped")
        with pytest.raises(CallError) as info:
            c.call((unique("nobody"), erl.name), Atom("x"), timeout=10)
        assert info.value.reason == Atom("noproc")
        children = c.call(("kernel_sup", erl.name), Atom("which_children"))
        assert any(child[0] == Atom("kernel_safe_sup") for child in children)


def test_connect_failures(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    with client(epmd, erl, cookie="not-" + erl.cookie) as c, pytest.raises(AuthError, match="cookie"):
        c.connect(erl.name, timeout=10)
    nobody = Atom(unique("nobody") + "@127.0.0.1")
    c = OneShot(erl.cookie, nobody, epmd_port=epmd.port)
    with pytest.raises(ConnectError, match="does not know"):
        c.connect(nobody, timeout=10)
    c = OneShot(erl.cookie, erl.name, epmd_port=free_port())  # no EPMD there
    with pytest.raises(ConnectError, match="EPMD"):
        c.connect(erl.name, timeout=10)
    # a listener that accepts and then says nothing: the deadline ends the handshake
    with socket.create_server(("127.0.0.1", 0)) as silent:
        c = OneShot(erl.cookie, erl.name)
        t0 = time.monotonic()
        with pytest.raises(ConnectTimeout, match="no connection within 0.5 s"):
            c.connect(erl.name, address=("127.0.0.1", silent.getsockname()[1]), timeout=0.5)
        assert time.monotonic() - t0 < 5


def test_address_without_epmd(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    port = erl.dist_port()
    with client(epmd, erl, epmd_port=free_port()) as c:  # nothing listens on that EPMD port
        c.connect(erl.name, address=("127.0.0.1", port), timeout=10)
        assert c.rpc(erl.name, "erlang", "node") == erl.name


def test_epmd_lookups(epmd: Epmd, erl_node: StartErl) -> None:
    erl = erl_node()
    assert (erl.alive, port_please(erl.alive, "127.0.0.1", epmd.port).port) in names("127.0.0.1", epmd.port)
    assert port_please(unique("nobody"), "127.0.0.1", epmd.port) is None


def test_no_event_loop_on_the_command_path() -> None:
    """The command's one-shot path imports neither asyncio nor anyio (its cold start)."""
    import subprocess

    code = (
        "import sys, pynode.cli, pynode.runtime.oneshot, pynode.runtime;"
        "from pynode.runtime import RemoteError, NoConnection;"
        "bad = [m for m in ('asyncio', 'anyio', 'dataclasses', 'logging', 'argparse') if m in sys.modules];"
        "print(','.join(bad))"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (p.returncode, p.stdout.strip()) == (0, "")
