"""`pynode certs` and the TLS options of the command line (no network)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pynode import cli
from pynode.runtime.tls import read_optfile


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_certs_writes_files_and_prints_flags(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "certs", str(tmp_path / "pki"), "--nodes", "a@127.0.0.1", "b@10.0.0.9", "--days", "3")
    assert (code, err) == (0, "")
    optfile = tmp_path / "pki" / "a@127.0.0.1.ssl_dist.conf"
    assert f"erl -name a@127.0.0.1 -proto_dist inet_tls -ssl_dist_optfile {optfile}" in out
    assert f"--ssl-dist-optfile {optfile}" in out
    sides = read_optfile(str(optfile))  # pynode reads the file it wrote for erl
    sides.server.server_context()
    sides.client.client_context()
    code, out, _ = run(capsys, "certs", str(tmp_path / "j"), "--nodes", "x@h.example", "--json")
    made = json.loads(out)
    assert code == 0 and made["nodes"][0]["node"] == "x@h.example"
    assert made["nodes"][0]["erl_flags"].startswith("-proto_dist inet_tls -ssl_dist_optfile ")
    assert Path(made["ca"]).is_file()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--nodes", "nohost"], "bad node name"),
        (["--nodes", "a@b c"], "bad node name"),
        (["--days", "0"], "--days"),
    ],
)
def test_certs_usage_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], words: str) -> None:
    code, out, err = run(capsys, "certs", str(tmp_path), *argv)
    assert code == 2 and out == "" and words in err


@pytest.mark.parametrize(
    ("tls", "words"),
    [
        (["--tls-cert", "/nonexistent/c.pem", "--tls-ca", "/nonexistent/ca.pem"], "does not exist"),
        (["--tls-cert", "/nonexistent/c.pem"], "--tls-ca"),
        (["--ssl-dist-optfile", "/nonexistent/o.conf"], "does not exist"),
        (["--ssl-dist-optfile", "/x.conf", "--tls-ca", "/ca.pem"], "not both"),
    ],
)
def test_tls_options_usage_errors(capsys: pytest.CaptureFixture[str], tls: list[str], words: str) -> None:
    # said before any connection: no EPMD or node is needed
    code, out, err = run(capsys, "rpc", "n@127.0.0.1", "erlang:node/0", "--cookie", "c", *tls)
    assert code == 2 and out == ""
    assert err.startswith("pynode: ") and words in err and "Traceback" not in err


def test_bad_optfile_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "o.conf"
    f.write_text("[{server, [{certfile, \"/c\"}]}, {client, [{verify, sometimes}]}].")
    code, _, err = run(capsys, "ping", "n@127.0.0.1", "--cookie", "c", "--ssl-dist-optfile", str(f))
    assert code == 2 and "verify must be" in err
