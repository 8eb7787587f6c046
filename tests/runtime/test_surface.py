"""What a remote peer may call: exactly the functions exposed, nothing reached by name.

``expose``/``expose_module`` (and ``pynode serve``) register functions in a table keyed by
(module, function); a call looks the pair up there and never uses getattr, so private,
dunder and imported attributes, classes and other modules are out of reach. Spawn requests
run only registered handlers (erpc:execute_call); anything else dies with undef, as in erl.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import anyio
import pytest

from pynode.runtime import Node, RemoteError
from pynode.term import Atom

pytestmark = pytest.mark.anyio

MODULE = """
import os
from os.path import join
from json import dumps as imported_function

SECRET = "s3cret"

def public(x):
    return x + 1

def _private():
    return SECRET

def __dunder__():
    return SECRET

class Klass:
    def method(self):
        return SECRET

lam = lambda: SECRET  # noqa: E731
"""


@pytest.fixture
def served_module(tmp_path: Path):  # type: ignore[no-untyped-def]
    path = tmp_path / "surface_mod.py"
    path.write_text(MODULE)
    spec = importlib.util.spec_from_file_location("surface_mod", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["surface_mod"] = mod
    spec.loader.exec_module(mod)
    yield mod
    sys.modules.pop("surface_mod", None)


REFUSED = [
    "_private", "__dunder__", "__init__", "__class__", "__dict__", "__builtins__", "__loader__",
    "os", "join", "imported_function", "Klass", "SECRET", "method", "system", "eval",
]


async def test_only_public_functions_of_the_module_itself_are_callable(served_module) -> None:  # type: ignore[no-untyped-def]
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        served = a.expose_module(served_module, "m")
        # a lambda bound to a public name is a function defined in the module: served
        assert sorted(served) == ["lam", "public"]
        async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
            b.add_address(a.name, "127.0.0.1", a.port)
            with anyio.fail_after(60):
                assert await b.rpc(a.name, "m", "public", [41]) == 42
                for name in REFUSED:
                    with pytest.raises(RemoteError) as e:
                        await b.rpc(a.name, "m", name, [])
                    assert e.value.reason == Atom("undef"), name
                for module, fn in [("os", "system"), ("builtins", "eval"), ("surface_mod", "public"),
                                   ("pynode", "__import__"), ("sys", "exit")]:
                    with pytest.raises(RemoteError) as e:
                        await b.rpc(a.name, module, fn, ["x"])
                    assert e.value.reason == Atom("undef"), (module, fn)
                # the legacy rex protocol goes through the same table
                mb = b.mailbox()
                await b.send(("rex", a.name), (mb.pid, (Atom("call"), Atom("m"), Atom("_private"), [], mb.pid)))
                reply = await mb.receive(timeout=30)
                assert reply[0] == Atom("rex") and reply[1][0] == Atom("badrpc"), reply
                assert "undef" in repr(reply[1]), reply


async def test_expose_registers_exactly_one_name() -> None:
    async with Node("a@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as a:
        @a.expose("calc", "add")
        def add(x: int, y: int) -> int:
            return x + y

        assert set(a.rpc_server.functions) == {(Atom("calc"), Atom("add"))}


async def _reachable(host: str, port: int) -> bool:
    try:
        with anyio.fail_after(10):
            s = await anyio.connect_tcp(host, port)
    except OSError:
        return False
    await s.aclose()
    return True


async def test_default_listen_address_is_every_interface_like_erl() -> None:
    """erl's inet_tcp_dist listens on every interface unless told otherwise
    (inet_dist_use_interface); so does a Node without ``listen_host``. 127.0.0.2 stands for
    "an address other than 127.0.0.1" without leaving loopback."""
    async with Node("a@127.0.0.1", "c", epmd=False) as a:
        assert await _reachable("127.0.0.2", a.port)
    async with Node("b@127.0.0.1", "c", epmd=False, listen_host="127.0.0.1") as b:
        assert await _reachable("127.0.0.1", b.port)
        assert not await _reachable("127.0.0.2", b.port)
