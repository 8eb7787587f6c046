"""The partition proxy across hosts: the proxy and a real erl node in one network namespace,
two pynode nodes in another (registered remotely with --allow-remote-register), linked by a
veth pair; links are cut and healed through `pynode proxy` run in the proxy's namespace.
Namespaces have unique names and are always deleted; every process is killed."""

from __future__ import annotations

import json
import os
import queue
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from pynode.term import Atom
from pynode.testing import ErlNode, wait_for
from pynode.testing.otp import Otp

from .otp import otp25

ROOT = Path(__file__).resolve().parent.parent


def sh(*args: str, timeout: float = 30) -> str:
    return subprocess.run(args, check=True, capture_output=True, text=True, timeout=timeout).stdout


@pytest.fixture
def two_hosts() -> Iterator[tuple[str, str, str, str]]:
    """Two namespaces joined by a veth pair: (ns_proxy, ns_nodes, addr_proxy, addr_nodes)."""
    if os.geteuid() != 0:
        pytest.fail("network namespaces need root")
    tag = secrets.token_hex(3)
    ns_p, ns_n = f"pxp{tag}", f"pxn{tag}"
    net = secrets.randbelow(200) + 20
    addr_p, addr_n = f"10.{net}.77.1", f"10.{net}.77.2"
    made: list[str] = []
    try:
        for ns in (ns_p, ns_n):
            sh("ip", "netns", "add", ns)
            made.append(ns)
        sh("ip", "link", "add", f"vp{tag}", "netns", ns_p, "type", "veth", "peer", "name",
           f"vn{tag}", "netns", ns_n)
        for ns, dev, addr in ((ns_p, f"vp{tag}", addr_p), (ns_n, f"vn{tag}", addr_n)):
            sh("ip", "-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        yield ns_p, ns_n, addr_p, addr_n
    finally:
        for ns in made:
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)


_lines: dict[int, queue.Queue[str]] = {}


def read_json(proc: subprocess.Popen[str], key: str, timeout: float = 30.0) -> dict:
    """The next JSON line that has ``key``, waiting at most ``timeout`` seconds. A thread
    reads the process's lines into a queue: select() on the pipe would miss lines already
    read into the text buffer (two events that arrive together)."""
    assert proc.stdout is not None
    q = _lines.get(proc.pid)
    if q is None:
        q = _lines[proc.pid] = queue.Queue()
        stdout = proc.stdout

        def pump() -> None:
            for line in stdout:
                q.put(line)
            q.put("")  # the end of the output

        threading.Thread(target=pump, daemon=True).start()
    deadline = time.monotonic() + timeout
    while True:
        try:
            line = q.get(timeout=max(0.0, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError(f"no {key!r} line within {timeout} s") from None
        if not line:
            q.put("")  # later calls see the end too
            raise RuntimeError(f"the node process ended (exit {proc.poll()})")
        msg = json.loads(line)
        if key in msg:
            return msg


class _EpmdAt:
    def __init__(self, port: int) -> None:
        self.env = {**os.environ, "ERL_EPMD_PORT": str(port)}


def test_cut_and_heal_across_namespaces(
    two_hosts: tuple[str, str, str, str], tmp_path: Path
) -> None:
    ns_p, ns_n, addr_p, addr_n = two_hosts
    # erl in the proxy's namespace: a wrapper that enters it (the oracle's pipes pass through)
    wrapper = tmp_path / "erl"
    wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {ns_p} {otp25().erl} "$@"\n')
    wrapper.chmod(0o755)
    erl_otp = Otp("otp25-netns", str(wrapper))
    port = 4400 + secrets.randbelow(1000)
    py = sys.executable
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proxy = subprocess.Popen(
        ["ip", "netns", "exec", ns_p, py, "-m", "pynode", "proxy", "serve", "--epmd-port",
         str(port), "--listen", f"127.0.0.1,{addr_p}", "--allow-remote-register", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    nodes: subprocess.Popen[str] | None = None
    erl: ErlNode | None = None
    try:
        info = json.loads(proxy.stdout.readline())  # type: ignore[union-attr]
        assert info["epmd_port"] == port and info["control_port"] == port + 1
        ctl = ["ip", "netns", "exec", ns_p, py, "-m", "pynode", "proxy"]
        prefix = f"x{secrets.token_hex(3)}"
        cookie = secrets.token_hex(8)
        erl = ErlNode(erl_otp, _EpmdAt(port), name=f"{prefix}e", cookie=cookie, host=addr_p,
                      args=["-kernel", "net_ticktime", "4"])  # type: ignore[arg-type]
        nodes = subprocess.Popen(
            ["ip", "netns", "exec", ns_n, py, str(ROOT / "interop" / "netns_nodes.py"),
             addr_p, str(port), addr_n, cookie, prefix, str(erl.name)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env,
        )
        assert read_json(nodes, "ready", 60)["pong"] is True
        status = json.loads(sh(*ctl, "status", "--json", "--epmd-port", str(port)))
        names = {n["name"] for n in status["nodes"]}
        assert names == {f"{prefix}a", f"{prefix}b", f"{prefix}e"}
        a, b, e = (f"{prefix}{x}@{addr_p}" for x in "abe")
        links = {frozenset((lk["dialer"], lk["acceptor"])): lk for lk in status["links"]}
        assert set(links) == {frozenset((a, b)), frozenset((a, e))}
        assert links[frozenset((a, b))]["upstream"].startswith(addr_n)  # to the other host
        assert str(a) in [str(n) for n in erl.run("nodes().")]  # erl sees the remote node

        sh(*ctl, "cut", f"{prefix}a", f"{prefix}b,{prefix}e", "--epmd-port", str(port))
        downs = {}
        for _ in range(2):
            ev = read_json(nodes, "event", 30)
            assert ev["event"] == "nodedown"
            downs[ev["node"]] = ev["t"]
        assert set(downs) == {b, e}
        wait_for(lambda: a not in [str(n) for n in erl.run("nodes().")], 20, "erl to see a down")
        sh(*ctl, "heal", "--epmd-port", str(port))
        assert nodes.stdin is not None
        nodes.stdin.write("reconnect\n")
        nodes.stdin.flush()
        assert read_json(nodes, "pong", 40)["pong"] is True
        wait_for(lambda: a in [str(n) for n in erl.run("nodes().")], 20, "erl to see a again")
        assert erl.run("net_adm:ping(A).", A=Atom(a)) == "pong"
    finally:
        if erl is not None:
            try:
                erl.kill()
            finally:
                erl.close()
        for p in (nodes, proxy):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    assert proxy.returncode is not None
