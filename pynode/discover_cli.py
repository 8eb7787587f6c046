"""``pynode discover``: find the nodes of a cluster (EPMD, host lists, DNS), connect to them,
print them; with ``--watch`` stay up and print joins and leaves."""

from __future__ import annotations

import argparse
import signal
import sys
from typing import Any

from .cli import ConnectFailure, UsageError, own_name, resolve_cookie, to_json
from .term import Atom
from .term.syntax import format_term

__all__ = ["add_arguments", "run"]


def add_arguments(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("where to look (default: --epmd)")
    g.add_argument("--epmd", action="store_true", help="the local EPMD (every node it lists)")
    g.add_argument("--host", action="append", default=[], metavar="HOST[:EPMDPORT]",
                   help="EPMD on HOST; repeat for several (net_adm:world_list)")
    g.add_argument("--hosts-file", action="store_true",
                   help="the hosts of .hosts.erlang (current directory, then $HOME)")
    g.add_argument("--dns", action="append", default=[], metavar="NAME",
                   help="the addresses of NAME (A/AAAA), then EPMD on each")
    g.add_argument("--srv", action="append", default=[], metavar="NAME",
                   help="the targets of NAME's SRV records (their port is EPMD's), then EPMD on each")
    g.add_argument("--dns-server", action="append", default=[], metavar="HOST:PORT",
                   help="ask this DNS server for SRV records (default: /etc/resolv.conf's)")
    g.add_argument("--basename", metavar="NAME",
                   help="with --dns/--srv: the node on each host is NAME@host (no EPMD NAMES)")
    g.add_argument("--prefix", action="append", default=[], metavar="PREFIX",
                   help="nodes of the local EPMD whose name starts with PREFIX (pynode EPMD's "
                        "prefix look-up; NAMES on another EPMD)")
    g.add_argument("--seed", action="append", default=[], metavar="NODE", help="this node name")
    g.add_argument("--node-host", metavar="HOST",
                   help="the host part of the names of the local EPMD's nodes (default: ours)")
    f = p.add_argument_group("what to connect")
    f.add_argument("--include", action="append", default=[], metavar="PATTERN",
                   help="only nodes matching a PATTERN (glob on name@host; repeatable)")
    f.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                   help="never nodes matching PATTERN (repeatable)")
    f.add_argument("--regex", action="store_true", help="PATTERNs are regular expressions (searched)")
    f.add_argument("--no-connect", dest="connect", action="store_false",
                   help="only list what the sources find; connect nothing")
    f.add_argument("--transitive", dest="transitive", action="store_true", default=None,
                   help="also connect the nodes our visible peers are connected to (the default "
                        "for --visible, as erl's global)")
    f.add_argument("--no-transitive", dest="transitive", action="store_false")
    w = p.add_argument_group("watching")
    w.add_argument("--watch", action="store_true",
                   help="stay up (until SIGINT/SIGTERM), printing {join, Node} and {leave, Node, Reason}")
    w.add_argument("--interval", type=float, default=5.0, metavar="SECONDS",
                   help="seconds between rounds, +-20%% jitter (default 5)")


def _host_port(text: str, what: str) -> tuple[str, int | None]:
    host, sep, port = text.rpartition(":")
    if not sep or "]" in port or (host.count(":") and not host.startswith("[")):
        return text.strip("[]"), None
    try:
        value = int(port)
    except ValueError:
        raise UsageError(f"bad {what} {text!r}: expected HOST or HOST:PORT") from None
    if not 0 < value < 65536:
        raise UsageError(f"bad {what} {text!r}: port out of range")
    return host.strip("[]"), value


def _sources(opts: argparse.Namespace) -> list[Any]:
    from .runtime.discovery_sources import Dns, EpmdPrefix, Hosts, LocalEpmd, Nodes

    servers: list[tuple[str, int]] = []
    for s in opts.dns_server:
        h, port = _host_port(s, "--dns-server")
        servers.append((h, port or 53))
    sources: list[Any] = []
    if opts.epmd:
        sources.append(LocalEpmd(node_host=opts.node_host))
    if opts.host:
        hosts: list[Any] = []
        for text in opts.host:
            h, port = _host_port(text, "--host")
            hosts.append(h if port is None else (h, port))
        sources.append(Hosts(hosts))
    if opts.hosts_file:
        sources.append(Hosts(None))
    for name in opts.dns:
        sources.append(Dns(name, "A", basename=opts.basename))
    for name in opts.srv:
        sources.append(Dns(name, "SRV", basename=opts.basename, servers=servers or None))
    for prefix in opts.prefix:
        sources.append(EpmdPrefix(prefix, node_host=opts.node_host))
    if opts.seed:
        sources.append(Nodes(opts.seed))
    return sources or [LocalEpmd(node_host=opts.node_host)]


def _print_event(opts: argparse.Namespace, event: Any) -> None:
    from .runtime.discovery import Join

    if opts.json:
        import json

        doc: dict[str, Any] = {"event": "join" if isinstance(event, Join) else "leave", "node": str(event.node)}
        if not isinstance(event, Join):
            try:
                doc["reason"] = to_json(event.reason)
            except Exception:  # a reason with no JSON form: its text
                doc["reason"] = str(event.reason)
        sys.stdout.write(json.dumps(doc, ensure_ascii=False) + "\n")
    else:
        try:
            text = format_term(event.to_term())
        except Exception:  # a reason with no Erlang form: its text
            text = format_term((*event.to_term()[:2], str(event.reason)))
        sys.stdout.write(text + "\n")
    sys.stdout.flush()


async def run(opts: argparse.Namespace) -> int:
    """The command: one round (print the nodes), or --watch (print events until a signal)."""
    import anyio

    from .runtime.discovery import Backoff
    from .runtime.naming import make_node_name
    from .runtime.node import Node

    if not opts.interval > 0:
        raise UsageError(f"--interval must be positive, not {opts.interval}")
    if opts.address is not None:
        raise UsageError("discover does not take --address (use --host or --seed)")
    sources = _sources(opts)
    cookie = resolve_cookie(opts.cookie)
    import secrets

    name = own_name(opts, None) or make_node_name(f"pynode_discover_{secrets.token_hex(3)}", longnames=True)
    timeout = opts.timeout if opts.timeout is not None else 3600.0
    node = Node(name, cookie, hidden=opts.hidden, epmd=False, epmd_port=opts.epmd_port,
                listen_host="127.0.0.1")
    options: dict[str, Any] = dict(
        interval=opts.interval, include=opts.include, exclude=opts.exclude, regex=opts.regex,
        transitive=opts.transitive, connect=opts.connect, timeout=min(timeout, 10.0),
        backoff=Backoff(initial=0.5, cap=max(0.5, min(30.0, opts.interval * 6))),
    )
    async with node:
        try:
            service = node.discover(*sources, **options)
        except ValueError as e:
            raise UsageError(str(e)) from None
        if opts.watch:
            with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                async with service, anyio.create_task_group() as tg:

                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            tg.cancel_scope.cancel()
                            return

                    tg.start_soon(stop_on_signal)
                    async for event in service:
                        _print_event(opts, event)
            return 0
        async with service:
            with anyio.move_on_after(timeout):
                await service.settled()
            found = sorted(service.found)
            connected = sorted(n for n in found if node.is_connected(n)) if opts.connect else found
    missing = [n for n in found if n not in connected]
    if opts.json:
        import json

        doc = [{"node": str(n), "connected": n in connected} for n in found] if opts.connect else [str(n) for n in found]
        sys.stdout.write(json.dumps(doc) + "\n")
    else:
        sys.stdout.write(format_term([Atom(n) for n in connected]) + "\n")
    sys.stdout.flush()
    if missing:
        raise ConnectFailure("found but could not connect: " + ", ".join(missing))
    return 0
