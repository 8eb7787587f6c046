"""Against a real Elixir node (Debian's Elixir 1.14 on OTP 25; OTP 28 here has no Elixir):
rpc both ways, structs byte for byte, strings and keyword lists, GenServer calls both ways, and
the Elixir-syntax printer read back by Elixir itself."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import pynode.term as term
from pynode.runtime import GenServer, Node
from pynode.term import Atom, ImproperList, Struct, decode, encode, freeze
from pynode.term.elixir import charlist, keyword, keyword_dict, string
from pynode.term.elixir_syntax import format_elixir
from tests.strategies import atoms, binaries, floats, ints

from .elixirnode import ElixirNode, elixir_otp
from .erlnode import Epmd, stop_nodes, unique

pytestmark = pytest.mark.anyio
StartElixir = Callable[..., ElixirNode]


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def ex_epmd() -> Iterator[Epmd]:
    e = Epmd(elixir_otp())
    try:
        yield e
    finally:
        e.kill()


@pytest.fixture
def elixir_node(ex_epmd: Epmd) -> Iterator[StartElixir]:
    started: list[ElixirNode] = []

    def start(**kwargs: Any) -> ElixirNode:
        node = ElixirNode(elixir_otp(), ex_epmd, **kwargs)
        started.append(node)
        return node

    try:
        yield start
    finally:
        stop_nodes(started)


@pytest.fixture(scope="module")
def ex_oracle() -> Iterator[ElixirNode]:
    """One Elixir node (not distributed) for the printer tests."""
    e = Epmd(elixir_otp())
    node = ElixirNode(elixir_otp(), e)
    try:
        yield node
    finally:
        node.kill()
        node.close()
        e.kill()


def py_node(epmd: Epmd, cookie: str) -> Node:
    return Node(unique("py") + "@127.0.0.1", cookie, epmd_port=epmd.port, listen_host="127.0.0.1")


async def ex_run(ex: ElixirNode, code: str, **bindings: Any) -> Any:
    return await anyio.to_thread.run_sync(lambda: ex.elixir(code, **bindings))


URI_TEXT = 'URI.parse("http://u@example.org:8080/p/a?q=1#frag")'
DATE_TEXT = "~D[2024-02-29]"


async def test_rpc_into_elixir(ex_epmd: Epmd, elixir_node: StartElixir) -> None:
    ex = elixir_node()
    async with py_node(ex_epmd, ex.cookie) as node:
        assert await node.rpc(ex.name, "Elixir.Enum", "sum", [[1, 2, 3]]) == 6
        assert await node.rpc(ex.name, "Elixir.String", "upcase", ["héllo"]) == "HÉLLO".encode()
        assert await node.rpc(ex.name, "Elixir.String", "split", ["a,b", ","]) == [b"a", b"b"]
        # a struct comes back as Struct, keeps its module, and Elixir takes ours as a struct
        uri = await node.rpc(ex.name, "Elixir.URI", "parse", ["http://u@example.org:8080/p/a?q=1#frag"])
        assert type(uri) is Struct and uri.module == Atom("Elixir.URI") and uri.alias == "URI"
        assert uri["host"] == b"example.org" and uri["port"] == 8080 and uri["fragment"] == b"frag"
        assert await node.rpc(ex.name, "Elixir.URI", "to_string", [uri]) == b"http://u@example.org:8080/p/a?q=1#frag"
        changed = uri.replace(host=b"example.com")
        assert await node.rpc(ex.name, "Elixir.URI", "to_string", [changed]) == b"http://u@example.com:8080/p/a?q=1#frag"
        date = await node.rpc(ex.name, "Elixir.Date", "new!", [2024, 2, 29])
        assert date == Struct("Date", year=2024, month=2, day=29, calendar=Atom("Elixir.Calendar.ISO"))
        assert await node.rpc(ex.name, "Elixir.Date", "add", [date, 1]) == date.replace(month=3, day=1)
        assert await node.rpc(ex.name, "Elixir.Date", "to_iso8601", [date]) == b"2024-02-29"
        assert await node.rpc(ex.name, "Elixir.Map", "get", [date, Atom("__struct__")]) == Atom("Elixir.Date")
        # what erts wrote for the struct, and what we write back, byte for byte (both codecs)
        for text, received in ((URI_TEXT, uri), (DATE_TEXT, date)):
            erl_bytes = await anyio.to_thread.run_sync(lambda t=text: ex.elixir_bytes(t))  # type: ignore[misc]
            assert encode(received) == erl_bytes
            for codec in term.IMPLEMENTATIONS.values():
                back = codec.decode(erl_bytes)
                assert type(back) is Struct and codec.encode(back) == erl_bytes


async def test_structs_as_map_keys_and_in_collections_round_trip(ex_epmd: Epmd, elixir_node: StartElixir) -> None:
    ex = elixir_node()
    code = "%{~D[2024-01-01] => [URI.parse(\"http://a\")], {:k, ~D[2020-05-05]} => %{nested: ~T[10:00:00]}}"
    erl_bytes = await anyio.to_thread.run_sync(lambda: ex.elixir_bytes(code))
    for codec in term.IMPLEMENTATIONS.values():
        value = codec.decode(erl_bytes)
        assert Struct("Date", year=2024, month=1, day=1, calendar=Atom("Elixir.Calendar.ISO")) in value
        assert codec.encode(value) == erl_bytes
    # and Elixir sees what we send as equal to its own term
    async with py_node(ex_epmd, ex.cookie) as node:
        value = decode(erl_bytes)
        same = await node.rpc(ex.name, "erlang", "=:=", [value, await node.rpc(ex.name, "erlang", "binary_to_term", [erl_bytes])])
        assert same is True


def greet(name: bytes, opts: list[Any]) -> str:
    o = keyword_dict(opts)
    return " ".join([f"{string(o[Atom('greeting')])} {string(name)}"] * o.get(Atom("times"), 1))


def shout(chars: list[int]) -> list[int]:
    return charlist("".join(map(chr, chars)).upper())


def options() -> list[tuple[Atom, Any]]:
    return keyword(mode=Atom("fast"), retries=3, name="py")


async def test_elixir_calls_served_python_module(ex_epmd: Epmd, elixir_node: StartElixir) -> None:
    ex = elixir_node()
    async with py_node(ex_epmd, ex.cookie) as node:
        import sys

        node.expose_module(sys.modules[__name__], "py_elixir")
        n = node.name
        got = await ex_run(ex, ':erpc.call(n, :py_elixir, :greet, ["wörld", [greeting: "hi", times: 2]])', n=n)
        assert got == "hi wörld hi wörld".encode()
        assert await ex_run(ex, ':rpc.call(n, :py_elixir, :shout, [~c"abc"])', n=n) == list(b"ABC")
        assert await ex_run(ex, "Keyword.keyword?(:erpc.call(n, :py_elixir, :options, []))", n=n) is True
        assert await ex_run(ex, ':erpc.call(n, :py_elixir, :options, [])[:name] <> "!"', n=n) == b"py!"
        assert await ex_run(ex, "is_binary(:erpc.call(n, :py_elixir, :greet, [\"x\", [greeting: \"yo\"]]))", n=n) is True


class Counter(GenServer):
    def __init__(self) -> None:
        self.items: list[Any] = []

    async def handle_call(self, request: Any, from_: Any) -> Any:
        if request == Atom("get"):
            return self.items
        if type(request) is tuple and request[0] == Atom("push"):
            self.items.append(request[1])
            return (Atom("ok"), len(self.items))
        return (Atom("error"), Atom("unknown"))


ELIXIR_STACK = """
defmodule PynodeTestStack do
  use GenServer
  def init(items), do: {:ok, items}
  def handle_call(:pop, _from, [h | t]), do: {:reply, h, t}
  def handle_call(:pop, _from, []), do: {:reply, nil, []}
  def handle_call({:push, x}, _from, items), do: {:reply, :ok, [x | items]}
  def handle_call(:items, _from, items), do: {:reply, items, items}
end
{:ok, pid} = GenServer.start(PynodeTestStack, [], name: :pynode_stack)
pid
"""


async def test_genserver_call_both_ways(ex_epmd: Epmd, elixir_node: StartElixir) -> None:
    ex = elixir_node()
    async with py_node(ex_epmd, ex.cookie) as node:
        await ex_run(ex, ELIXIR_STACK)
        stack = (Atom("pynode_stack"), ex.name)
        assert await node.call(stack, (Atom("push"), "élan")) == Atom("ok")
        assert await node.call(stack, (Atom("push"), Struct("Date", year=2000, month=1, day=1,
                                                             calendar=Atom("Elixir.Calendar.ISO")))) == Atom("ok")
        assert await ex_run(ex, "GenServer.call(:pynode_stack, :items) |> Enum.map(&inspect/1)") == [
            b"~D[2000-01-01]", b'"\xc3\xa9lan"']
        popped = await node.call(stack, Atom("pop"))
        assert type(popped) is Struct and popped.alias == "Date"
        assert await node.call(stack, Atom("pop")) == "élan".encode()
        assert await node.call(stack, Atom("pop")) == Atom("nil")

        node.start_server(Counter(), "py_counter")
        n = node.name
        assert await ex_run(ex, 'GenServer.call({:py_counter, n}, {:push, "a"})', n=n) == (Atom("ok"), 1)
        assert await ex_run(ex, "GenServer.call({:py_counter, n}, {:push, URI.parse(\"http://x\")})", n=n) == (Atom("ok"), 2)
        assert await ex_run(ex, "GenServer.call({:py_counter, n}, :get) |> Enum.map(&inspect/1)", n=n) == [
            b'"a"', b'%URI{scheme: "http", authority: "x", userinfo: nil, host: "x", port: 80, path: nil, '
                    b'query: nil, fragment: nil}']


# -- the Elixir-syntax printer, read back by Elixir ------------------------------------------

PRINTER_CORPUS: list[Any] = [
    Atom("ok"), Atom("Elixir.Enum"), Atom("Elixir.Foo.Bar"), Atom("nil"), True, False, Atom("a b"),
    Atom("foo?"), Atom("Elixir"), Atom("Foo"), Atom(""), Atom("é"), 0, -5, 2**100, 1.5, -0.0, 1e300,
    b"", b"text", "héllo wörld".encode(), b'q"\\#{x}\n\t\x07', b"\xff\x00", list(b"abc"), list(b"a\nb"),
    [], [1, 2], [0], (), (1, Atom("two"), b"3"), [(Atom("a"), 1), (Atom("b c"), [2])],
    [(Atom("Elixir.Enum"), 1)], {}, {Atom("a"): 1, Atom("b"): b"x"}, {1: 2, b"k": Atom("v")},
    {Atom("a"): 1, b"b": 2}, ImproperList([1, 2], 3),
    Struct("URI", {"host": b"x", "port": 80, "scheme": b"http", "path": None, "query": None,
                   "fragment": None, "userinfo": None, "authority": b"x"}),
    Struct("Date", year=2024, month=2, day=29, calendar=Atom("Elixir.Calendar.ISO")),
    {Atom("__struct__"): Atom("mod"), Atom("a"): 1},
]


def _same(ex: ElixirNode, value: Any) -> None:
    text = format_elixir(value)
    got = ex.run(
        "binary_to_term(V) =:= element(1, 'Elixir.Code':eval_string(T)).", V=encode(value), T=text.encode()
    )
    assert got is True, text


@pytest.mark.parametrize("value", PRINTER_CORPUS, ids=lambda v: format_elixir(v)[:40])
def test_printer_output_reads_back_in_elixir(ex_oracle: ElixirNode, value: Any) -> None:
    _same(ex_oracle, value)


INSPECT_SAME = [
    Atom("ok"), Atom("Elixir.Enum"), Atom("a b"), 2**70, 1.5, b"text", "é".encode(), b"\xff", [1, [2]],
    (1, b"x"), [(Atom("a"), 1)], {Atom("a"): 1}, {1: 2, b"k": Atom("v")}, ImproperList([1], 2),
    Struct("Date", year=2024, month=2, day=29, calendar=Atom("Elixir.Calendar.ISO")),
]


@pytest.mark.parametrize("value", INSPECT_SAME, ids=lambda v: format_elixir(v)[:40])
def test_printer_matches_elixir_inspect(ex_oracle: ElixirNode, value: Any) -> None:
    assert ex_oracle.run("'Elixir.Kernel':inspect(binary_to_term(V)).", V=encode(value)).decode() == format_elixir(value)


def test_charlist_form_is_modern_and_read_by_elixir_114(ex_oracle: ElixirNode) -> None:
    assert format_elixir(list(b"abc")) == '~c"abc"'
    assert ex_oracle.run("'Elixir.Kernel':inspect(\"abc\").") == b"'abc'"  # 1.14's own form
    _same(ex_oracle, list(b"abc"))


_plain = st.one_of(ints, floats, atoms, binaries, st.booleans())
_elixir_terms = st.recursive(
    _plain,
    lambda c: st.one_of(
        st.lists(c, max_size=5),
        st.lists(c, max_size=4).map(tuple),
        st.dictionaries(c.map(freeze), c, max_size=4),
        st.lists(st.tuples(atoms, c), max_size=3),
        # no structs: %Mod{...} reads back only with the fields Mod defines (the corpus has some)
    ),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=list(HealthCheck))
@given(_elixir_terms)
def test_printer_hypothesis_reads_back_in_elixir(ex_oracle: ElixirNode, value: Any) -> None:
    _same(ex_oracle, value)


# -- the pynode command against an Elixir node -----------------------------------------------


def _pynode(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pynode", *args], capture_output=True, text=True, timeout=60)


def test_cli_rpc_elixir_spellings_and_format(ex_epmd: Epmd, elixir_node: StartElixir) -> None:
    ex = elixir_node()
    o = ["--epmd-port", str(ex_epmd.port), "--cookie", ex.cookie]
    for spec in ("Elixir.Enum:sum/1", "Enum.sum/1", "Elixir.Enum.sum/1"):
        p = _pynode("rpc", ex.name, spec, "[1,2,3]", *o)
        assert (p.returncode, p.stdout, p.stderr) == (0, "6\n", ""), spec
    p = _pynode("rpc", ex.name, "String.upcase(<<\"abc\">>)", "--format", "elixir", *o)
    assert (p.returncode, p.stdout) == (0, '"ABC"\n')
    p = _pynode("rpc", ex.name, "URI.parse/1", '<<"http://x.org/p">>', "--format", "elixir", *o)
    assert p.returncode == 0
    assert p.stdout == ('%URI{authority: "x.org", fragment: nil, host: "x.org", path: "/p", port: 80, '
                        'query: nil, scheme: "http", userinfo: nil}\n')
    # what we print, Elixir reads back as the same struct
    assert ex.elixir(f'{p.stdout.strip()} == URI.parse("http://x.org/p")') is True
    p = _pynode("rpc", ex.name, "Date.new!/3", "2024", "2", "29", "--format=elixir", *o)
    assert (p.returncode, p.stdout) == (0, "~D[2024-02-29]\n")
    p = _pynode("rpc", ex.name, "Keyword.merge/2", "[{a,1}]", "[{b,\"x\"}]", "--format", "elixir", *o)
    assert (p.returncode, p.stdout) == (0, "[a: 1, b: ~c\"x\"]\n")
    p = _pynode("rpc", ex.name, ":lists.seq/2", "1", "3", *o)
    assert (p.returncode, p.stdout) == (0, "[1,2,3]\n")
    p = _pynode("rpc", ex.name, "Enum.nope/0", *o)
    assert p.returncode == 1 and "'Elixir.Enum':nope/0" in p.stderr
    p = _pynode("rpc", ex.name, "Enum.sum/1", "[1]", "--format", "python", *o)
    assert p.returncode == 2 and "--format" in p.stderr
    p = _pynode("rpc", "--json", ex.name, "Date.new!/3", "2024", "2", "29", *o)
    assert json.loads(p.stdout) == {"__struct__": "Elixir.Date", "calendar": "Elixir.Calendar.ISO",
                                    "day": 29, "month": 2, "year": 2024}


def test_shell_on_an_elixir_node_prints_elixir(ex_epmd: Epmd, elixir_node: StartElixir, tmp_path: Any) -> None:
    import os

    from .test_shell_erl import WAIT, Pty

    ex = elixir_node()
    env = {**os.environ, "HOME": str(tmp_path), "TERM": "dumb", "INPUTRC": "/dev/null"}
    sh = Pty([sys.executable, "-m", "pynode", "shell", str(ex.name), "--cookie", ex.cookie, "--epmd-port",
              str(ex_epmd.port), "--history", "", "--format", "elixir"], env)
    try:
        sh.expect(r"1> ")
        sh.send('rpc URI.parse(<<"http://x.org">>)\r')
        sh.expect(r'%URI\{authority: "x\.org", fragment: nil, host: "x\.org", path: nil, port: 80')
        sh.send("rpc Enum.sum/1 [1,2,3]\r")
        sh.expect(r"\r\n6\r\n")
        sh.send("'Elixir.Keyword':merge([{a, 1}], [{b, <<\"x\">>}]).\r")
        sh.expect(r'\[a: 1, b: "x"\]')
        sh.send("quit\r")
        assert sh.proc.wait(timeout=WAIT) == 0
    finally:
        sh.close()
