"""Two hosts over TLS: erl (with its own EPMD) in one network namespace, pynode (with its own
EPMD) in another, joined by a veth pair on a private /30 that exists only inside them. pynode
dials erl (rpc, messages both ways), then erl dials pynode back; all TLS with certificates for
the namespaces' addresses. The namespaces are deleted in a finalizer."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pynode.certs import write_certs

from .erlnode import free_port
from .otp import Otp
from .tls_pki import ssl_code_path

ROOT = Path(__file__).resolve().parent.parent

# erl's side: answer the first message, notice pynode dropping the connection, dial pynode
# back and greet its mailbox, then wait to be stopped (every wait bounded)
ERL_SCRIPT = """
register(echo, self()),
Py = list_to_atom(os:getenv("PY_NODE")),
receive {From, first} -> monitor_node(Py, true), From ! {echoed, node(), first}
after 120000 -> halt(2) end,
receive {nodedown, Py} -> ok after 120000 -> halt(3) end,
pong = net_adm:ping(Py),
{py_inbox, Py} ! {hello_from_erl, node()},
receive stop -> halt(0) after 120000 -> halt(4) end.
"""


def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, timeout=30)


def wait_registered(prefix: list[str], otp: Otp, port: int, alive: str, proc: subprocess.Popen[bytes]) -> None:
    """Until EPMD in the namespace knows ``alive`` (bounded: 60 s, 600 looks)."""
    deadline = time.monotonic() + 60
    for _ in range(600):
        names = subprocess.run(
            [*prefix, otp.tool("epmd"), "-port", str(port), "-names"], capture_output=True, text=True, timeout=30
        ).stdout
        if f"name {alive} at port" in names:
            return
        if proc.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    raise AssertionError(f"erl did not register {alive!r} with EPMD (exit {proc.poll()})")


@dataclass
class Hosts:
    a: str  # namespace names
    b: str
    ip_a: str
    ip_b: str

    def exec(self, ns: str) -> list[str]:
        return ["ip", "netns", "exec", ns]


@pytest.fixture
def hosts() -> Iterator[Hosts]:
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.skip("needs root and iproute2 (ip netns)")
    tag = secrets.token_hex(3)
    net = f"10.213.{secrets.randbelow(250) + 1}"
    h = Hosts(f"pyn_a_{tag}", f"pyn_b_{tag}", f"{net}.1", f"{net}.2")
    veth_a, veth_b = f"pva{tag}", f"pvb{tag}"  # at most 15 characters
    made: list[str] = []
    try:
        for ns in (h.a, h.b):
            _run("ip", "netns", "add", ns)
            made.append(ns)
        _run("ip", "link", "add", veth_a, "type", "veth", "peer", "name", veth_b)
        _run("ip", "link", "set", veth_a, "netns", h.a)
        _run("ip", "link", "set", veth_b, "netns", h.b)
        for ns, dev, ip in ((h.a, veth_a, h.ip_a), (h.b, veth_b, h.ip_b)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/30", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        yield h
    finally:
        for ns in made:  # deleting a namespace deletes its end of the veth pair, and the pair
            subprocess.run(["ip", "netns", "delete", ns], capture_output=True, timeout=30)
        subprocess.run(["ip", "link", "delete", veth_a], capture_output=True, timeout=30)


def test_two_hosts_over_tls(hosts: Hosts, otp: Otp, tmp_path: Path) -> None:
    cookie = secrets.token_hex(8)
    erl_name = f"erl{secrets.token_hex(3)}@{hosts.ip_a}"
    py_name = f"py{secrets.token_hex(3)}@{hosts.ip_b}"
    made = write_certs(tmp_path / "pki", [erl_name, py_name], days=1)
    erl_files, py_files = made.nodes
    epmd_port = free_port()  # the same port in both namespaces, as every host of a cluster
    env = {**os.environ, "ERL_EPMD_PORT": str(epmd_port), "PY_NODE": py_name}
    procs: list[subprocess.Popen[bytes]] = []
    erl_log = tempfile.TemporaryFile()
    try:
        for ns in (hosts.a, hosts.b):
            procs.append(subprocess.Popen(
                [*hosts.exec(ns), otp.tool("epmd"), "-port", str(epmd_port)],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            ))
        erl = subprocess.Popen(
            [*hosts.exec(hosts.a), otp.erl, "-noshell", "-noinput", "-name", erl_name, "-setcookie", cookie,
             *ssl_code_path(otp), "-proto_dist", "inet_tls", "-ssl_dist_optfile", str(erl_files.optfile),
             "-eval", ERL_SCRIPT],
            env=env, stdout=erl_log, stderr=subprocess.STDOUT,
        )
        procs.append(erl)
        wait_registered(hosts.exec(hosts.a), otp, epmd_port, erl_name.partition("@")[0], erl)
        py = subprocess.run(
            [*hosts.exec(hosts.b), sys.executable, "-m", "interop.netns_peer", py_name, cookie, erl_name,
             str(epmd_port), str(py_files.optfile)],
            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=180,
        )
        erl_log.seek(0)
        assert py.returncode == 0, f"pynode: {py.stderr[-3000:]}\nerl: {erl_log.read()[-3000:]!r}"
        result = json.loads(py.stdout.strip().splitlines()[-1])
        assert result["rpc_node"] == erl_name
        assert result["erl_sees_protocol"] == "tls"
        assert result["echoed"] == ["echoed", erl_name, "first"]
        assert result["hello"] == ["hello_from_erl", erl_name]
        assert result["inbound_peer"].removeprefix("::ffff:") == hosts.ip_a  # over the veth, from host A
        assert result["stop"] in ("stop", "halted first")  # (erl halts on it: a race with the answer)
        assert erl.wait(timeout=60) == 0  # erl's script saw every step, 'stop' last
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        erl_log.close()
