"""TLS from the command line against erl -proto_dist inet_tls: `pynode certs` makes the files,
erl starts with the flags it prints, and the one-shot client and `pynode serve` use them."""

from __future__ import annotations

import json
import select
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from pynode.term import Atom

from .erlnode import Epmd, ErlNode, unique
from .otp import Otp
from .test_cli_erl import one_error_line, pynode
from .tls_pki import erl_tls_args, make_pki, ssl_code_path

StartErl = Callable[..., ErlNode]


def test_certs_flags_work_with_erl_and_the_cli(tmp_path: Path, otp: Otp, epmd: Epmd, erl_node: StartErl) -> None:
    erl_alive, py_alive = unique("erl"), unique("py")
    p = pynode("certs", str(tmp_path / "pki"), "--nodes", f"{erl_alive}@127.0.0.1", f"{py_alive}@127.0.0.1", "--json")
    assert p.returncode == 0, p.stderr
    made = json.loads(p.stdout)
    erl_files, py_files = made["nodes"]
    assert erl_files["node"] == f"{erl_alive}@127.0.0.1"
    # erl starts with exactly the flags `pynode certs` printed
    flags = erl_files["erl_flags"].split()
    assert flags[:2] == ["-proto_dist", "inet_tls"]
    erl = erl_node(name=erl_alive, args=[*ssl_code_path(otp), *flags])
    base = ["--epmd-port", str(epmd.port), "--cookie", erl.cookie]
    p = pynode("rpc", erl.name, "erlang:node/0", *base, *py_files["pynode_flags"].split())
    assert (p.returncode, p.stdout, p.stderr) == (0, f"'{erl.name}'\n", "")
    # the same with certificate files instead of the optfile
    files = ["--tls-cert", py_files["certfile"], "--tls-key", py_files["keyfile"], "--tls-ca", made["ca"]]
    p = pynode("eval", erl.name, "X = 20, X + 22.", *base, *files)
    assert (p.returncode, p.stdout) == (0, "42\n")
    # the connection was TLS: a plain client cannot even start the handshake
    p = pynode("ping", erl.name, *base, "--timeout", "10")
    assert (p.returncode, p.stdout) == (3, "pang\n"), (p.stdout, p.stderr)


def test_cli_tls_refusals(tmp_path: Path, otp: Otp, epmd: Epmd, erl_node: StartErl) -> None:
    pki = make_pki(tmp_path / "pki")
    erl = erl_node(args=erl_tls_args(otp, pki.optfile("good")))
    base = ["--epmd-port", str(epmd.port), "--cookie", erl.cookie, "--tls-ca", str(pki.ca)]
    p = pynode("rpc", erl.name, "erlang:node/0", *base, "--tls-cert", str(pki.cert("expired")),
               "--tls-key", str(pki.key("expired")))
    assert p.returncode == 3
    assert "refused our certificate: expired" in one_error_line(p)
    p = pynode("rpc", erl.name, "erlang:node/0", *base, "--tls-cert", str(pki.cert("rogue")),
               "--tls-key", str(pki.key("rogue")))
    assert p.returncode == 3 and "refused our certificate" in one_error_line(p)
    # a missing file is a usage error, said before any connection
    p = pynode("rpc", erl.name, "erlang:node/0", *base, "--tls-cert", str(tmp_path / "nope.pem"))
    assert p.returncode == 2 and "does not exist" in one_error_line(p)
    # a good certificate still works against the same node
    p = pynode("rpc", erl.name, "erlang:node/0", *base, "--tls-cert", str(pki.cert("good")),
               "--tls-key", str(pki.key("good")))
    assert (p.returncode, p.stdout) == (0, f"'{erl.name}'\n")


def test_serve_over_tls(tmp_path: Path, otp: Otp, epmd: Epmd, erl_node: StartErl) -> None:
    pki = make_pki(tmp_path / "pki")
    module = tmp_path / "mathy_tls.py"
    module.write_text("def add(a, b):\n    return a + b\n")
    cookie = unique("c")
    name = f"{unique('serve')}@127.0.0.1"
    proc = subprocess.Popen(
        [sys.executable, "-m", "pynode", "serve", str(module), "--name", name, "--cookie", cookie,
         "--epmd-port", str(epmd.port), "--listen-host", "127.0.0.1",
         "--ssl-dist-optfile", str(pki.optfile("good"))],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        assert ready, "serve printed nothing in 60 s"
        line = proc.stdout.readline()
        assert line.startswith("serving mathy_tls on "), line
        erl = erl_node(cookie=cookie, args=erl_tls_args(otp, pki.optfile("good")))
        assert erl.run("rpc:call(N, mathy_tls, add, [40, 2]).", N=Atom(name)) == 42
        plain = erl_node(cookie=cookie)  # a plain-TCP erl is not let in
        assert plain.run("net_adm:ping(N).", N=Atom(name)) == Atom("pang")
        assert erl.run("rpc:call(N, mathy_tls, add, [1, 2]).", N=Atom(name)) == 3
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == 0
