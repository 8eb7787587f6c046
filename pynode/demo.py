"""The README demo: start a local erl node and show pynode talking to it.

Run with ``python -m pynode.demo``. Needs ``erl`` on PATH (Debian: erlang-nox).
"""

from __future__ import annotations

import secrets
import shlex
import shutil
import subprocess
import sys
import time

import anyio

from .runtime import EpmdError, Node, names
from .term import Atom
from .term.syntax import format_term

# An erl process registered as 'echo': answers {From, Msg} with {echo, node(), Msg} and
# {From, nodes} with the nodes erl sees; it also greets whoever asks with a message of its own.
_ERL_ECHO = """
Echo = fun Loop() ->
    receive
        {From, nodes} -> From ! {nodes, nodes(), nodes(hidden)}, Loop();
        {From, greet, Name} -> {Name, node(From)} ! {hello_from_erl, self(), node()}, Loop();
        {From, Msg} -> From ! {echo, node(), Msg}, Loop();
        stop -> halt()
    end
end,
register(echo, self()),
Echo().
"""


def _cli(*args: str) -> None:
    """Run the pynode command as a user would and show it."""
    print(f"$ pynode {shlex.join(args)}")
    r = subprocess.run([sys.executable, "-m", "pynode", *args], capture_output=True, text=True, timeout=60)
    out = (r.stdout + r.stderr).rstrip()
    print(out if out else f"(exit {r.returncode})")
    if r.returncode != 0:
        print(f"(exit code {r.returncode})")


async def demo(erl: str) -> None:
    cookie = secrets.token_hex(8)
    erl_node = f"demo_erl_{secrets.token_hex(3)}@127.0.0.1"
    print(f"starting {erl_node} ...")
    proc = subprocess.Popen(
        [erl, "-name", erl_node, "-setcookie", cookie, "-noshell", "-noinput", "-eval", _ERL_ECHO],
        stdin=subprocess.DEVNULL,
    )
    try:
        # erl starts EPMD itself when none runs; our node registers there, so wait for it
        deadline = time.monotonic() + 30
        while True:
            try:
                await names("127.0.0.1")
                break
            except EpmdError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("demo: EPMD did not come up") from None
                await anyio.sleep(0.1)
        async with Node("pydemo@127.0.0.1", cookie, listen_host="127.0.0.1") as node:
            print(f"pynode is {node.name} (hidden), listening on port {node.port}")
            deadline = time.monotonic() + 30
            while not await node.ping(erl_node, timeout=2):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit("demo: the erl node did not come up")
                await anyio.sleep(0.2)
            print(f"net_adm:ping('{erl_node}') from Python -> pong")

            print("\n-- the pynode command --")
            await anyio.to_thread.run_sync(lambda: _cli("rpc", erl_node, "erlang:node/0", "--cookie", cookie))
            await anyio.to_thread.run_sync(
                lambda: _cli("rpc", erl_node, "lists:seq(1, 10)", "--cookie", cookie)
            )
            await anyio.to_thread.run_sync(
                lambda: _cli("eval", erl_node, "X = 6, {X * 7, node()}.", "--cookie", cookie)
            )
            await anyio.to_thread.run_sync(
                lambda: _cli("rpc", erl_node, "erlang:error(oops)", "--cookie", cookie)
            )
            await anyio.to_thread.run_sync(lambda: _cli("names"))

            print("\n-- the Python API --")

            box = node.mailbox("pybox")
            term = (Atom("hello"), "from Python", [1, 2, 3], {Atom("big"): 2**100}, 3.25)
            await box.send((Atom("echo"), erl_node), (box.pid, term))
            reply = await box.receive(timeout=10)
            print(f"sent {format_term(term)}")
            print(f"erl replied {format_term(reply)}")

            await box.send((Atom("echo"), erl_node), (box.pid, Atom("nodes")))
            _, visible, hidden = await box.receive(timeout=10)
            print(f"erl sees nodes() = {format_term(visible)}, nodes(hidden) = {format_term(hidden)}")

            await box.send((Atom("echo"), erl_node), (box.pid, Atom("greet"), Atom("pybox")))
            print(f"erl sent to our registered mailbox: {format_term(await box.receive(timeout=10))}")

            await box.send((Atom("echo"), erl_node), Atom("stop"))
    finally:
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    print("done: the erl node stopped")


def main() -> int:
    erl = shutil.which("erl")
    if erl is None:
        print("demo: erl not found; install Erlang (Debian: apt-get install -y erlang-nox)", file=sys.stderr)
        return 1
    anyio.run(demo, erl)
    return 0


if __name__ == "__main__":
    sys.exit(main())
