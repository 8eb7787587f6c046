"""The ``pynode certs`` command: write a test CA and node certificates, print the flags."""

from __future__ import annotations

import argparse
import shlex


def cmd_certs(opts: argparse.Namespace) -> int:
    from .certs import write_certs
    from .cli import EXIT_OK, UsageError, _emit_text

    for node in opts.nodes:
        alive, _, host = node.partition("@")
        if not alive or not host or any(c.isspace() for c in node):
            raise UsageError(f"bad node name {node!r}: expected name@host")
    if opts.days < 1:
        raise UsageError("--days must be at least 1")
    try:
        made = write_certs(opts.dir, opts.nodes, days=opts.days)
    except OSError as e:
        raise UsageError(f"cannot write certificates to {opts.dir!r}: {e}") from None
    lines = [f"wrote a CA ({made.cafile}) and certificates for {len(made.nodes)} node(s) in {made.directory}", ""]
    listing = []
    for f in made.nodes:
        q = shlex.quote
        erl = f"-proto_dist inet_tls -ssl_dist_optfile {q(str(f.optfile))}"
        py = f"--ssl-dist-optfile {q(str(f.optfile))}"
        lines += [
            f"{f.node}:",
            f"  erl:    erl -name {q(f.node)} {erl}",
            f"  pynode: pynode ... {py}",
            f"          (or --tls-cert {q(str(f.certfile))} --tls-key {q(str(f.keyfile))} --tls-ca {q(str(made.cafile))})",
            f"  Python: Node({f.node!r}, tls=pynode.runtime.read_optfile({str(f.optfile)!r}))",
        ]
        listing.append({
            "node": f.node, "certfile": str(f.certfile), "keyfile": str(f.keyfile),
            "optfile": str(f.optfile), "erl_flags": erl, "pynode_flags": py,
        })
    lines += [
        "",
        "Both sides verify each other against the CA; the dialling side also checks the host",
        "part of the node name against the server's certificate (as erl's inet_tls_dist does).",
    ]
    _emit_text(opts, "\n".join(lines), {"ca": str(made.cafile), "nodes": listing})
    return EXIT_OK
