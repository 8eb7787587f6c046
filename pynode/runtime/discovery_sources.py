"""Where discovery looks for nodes: the local EPMD, a list of hosts (``.hosts.erlang``), DNS
(A/AAAA and SRV), pynode EPMD's prefix look-up, and fixed seed names.

A source answers one question, "which nodes are there now?", as ``{node: address}`` where
the address is the (host, port) the node listens on, when the source knows it (EPMD told
it), or None (then connecting asks EPMD on the node's host).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import anyio

from ..protocol.epmd_ext import ExtensionUnsupported
from ..term import Atom
from . import dns
from . import epmd as epmd_client
from .errors import EpmdError
from .naming import EPMD_TIMEOUT, default_epmd_port

__all__ = [
    "Address",
    "Dns",
    "EpmdPrefix",
    "Found",
    "Hosts",
    "LocalEpmd",
    "Nodes",
    "Source",
    "SourceContext",
    "host_file",
    "parse_host_file",
]

log = logging.getLogger("pynode.discovery")

Address = tuple[str, int]
Found = dict[Atom, Address | None]

# EPMD hosts asked at once by one source (net_adm:world_list/2 asks them one after another;
# a bound keeps a long host list from opening hundreds of sockets at once).
MAX_PARALLEL_HOSTS = 16


@dataclass
class SourceContext:
    """What a source needs to know of the discovering node."""

    node_host: str
    """The host part of our own node name (LocalEpmd names nodes on it)."""
    epmd_host: str = "127.0.0.1"
    epmd_port: int | None = None
    timeout: float = EPMD_TIMEOUT

    def port(self, explicit: int | None) -> int:
        return explicit or self.epmd_port or default_epmd_port()


class Source(Protocol):
    """A discovery strategy."""

    async def find(self, ctx: SourceContext) -> Found: ...


async def _names_at(host: str, port: int, node_host: str, timeout: float) -> Found:
    entries = await _names_timed(host, port, timeout)
    return {Atom(f"{name}@{node_host}"): (host, p) for name, p in entries}


async def _names_timed(host: str, port: int, timeout: float) -> list[tuple[str, int]]:
    try:
        with anyio.fail_after(timeout):
            return await epmd_client.names(host, port)
    except TimeoutError:
        raise EpmdError(f"EPMD at {host}:{port} did not answer within {timeout} s") from None


async def names_of_hosts(hosts: Iterable[tuple[str, int, str]], timeout: float) -> Found:
    """EPMD NAMES on every (epmd host, epmd port, node host), a few at a time; a host that
    does not answer is logged and skipped (the others still count)."""
    found: Found = {}
    limiter = anyio.CapacityLimiter(MAX_PARALLEL_HOSTS)

    async def one(host: str, port: int, node_host: str) -> None:
        async with limiter:
            try:
                found.update(await _names_at(host, port, node_host, timeout))
            except (EpmdError, OSError) as e:
                log.debug("discovery: no names from EPMD at %s:%d: %s", host, port, e)

    async with anyio.create_task_group() as tg:
        for h, p, nh in dict.fromkeys(hosts):
            tg.start_soon(one, h, p, nh)
    return found


@dataclass
class LocalEpmd:
    """Every node registered with the EPMD this node uses, named on our own host (as
    libcluster's LocalEpmd; unlike it, asked again every round)."""

    host: str | None = None
    port: int | None = None
    node_host: str | None = None

    async def find(self, ctx: SourceContext) -> Found:
        host = self.host or ctx.epmd_host
        return await _names_at(host, ctx.port(self.port), self.node_host or ctx.node_host, ctx.timeout)


def parse_host_file(text: str) -> list[str]:
    """Host names from a ``.hosts.erlang`` text: Erlang terms ending in ``.`` (atoms or
    strings, as file:consult/1 reads them), ``%`` comments."""
    from ..term.syntax import TermSyntaxError, parse_term

    hosts: list[str] = []
    for term_text in _terms(text):
        try:
            term = parse_term(term_text)
        except TermSyntaxError as e:
            raise ValueError(f"bad .hosts.erlang entry {term_text!r}: {e}") from None
        if isinstance(term, str):  # an Atom is a str
            hosts.append(str(term))
        elif isinstance(term, list) and term and all(isinstance(c, int) and 0 < c < 0x110000 for c in term):
            hosts.append("".join(map(chr, term)))
        else:
            raise ValueError(f"bad .hosts.erlang entry {term_text!r}: not a host name")
    return hosts


def _terms(text: str) -> list[str]:
    """The texts of the terms in ``text``, each ended by a '.' followed by white space or the
    end (erl_scan's end of form), with comments outside quotes removed."""
    out: list[str] = []
    cur: list[str] = []
    quote = ""
    i = 0
    while i < len(text):
        c = text[i]
        if quote:
            cur.append(c)
            if c == "\\" and i + 1 < len(text):
                cur.append(text[i + 1])
                i += 1
            elif c == quote:
                quote = ""
        elif c == "%":
            nl = text.find("\n", i)
            i = len(text) if nl < 0 else nl
            continue
        elif c in "'\"":
            quote = c
            cur.append(c)
        elif c == "." and (i + 1 == len(text) or text[i + 1].isspace()):
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(c)
        i += 1
    if "".join(cur).strip():
        raise ValueError(f"bad .hosts.erlang: no '.' after {''.join(cur).strip()[:40]!r}")
    return out


def host_file(search: Sequence[str | os.PathLike[str]] | None = None) -> list[str]:
    """The hosts of the first ``.hosts.erlang`` found in ``search`` (default: the current
    directory, then $HOME, as net_adm:host_file/0; OTP also looks in code:root_dir(), which a
    Python process does not have). An empty list when there is none."""
    dirs = list(search) if search is not None else [".", *([os.environ["HOME"]] if os.environ.get("HOME") else [])]
    for d in dirs:
        path = Path(d) / ".hosts.erlang"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        try:
            return parse_host_file(text)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None
    return []


@dataclass
class Hosts:
    """Every node registered with EPMD on each of ``hosts`` (net_adm:world_list/2); a host is
    ``"name"`` or ``("name", epmd_port)``. None reads ``.hosts.erlang`` (see :func:`host_file`)
    every round, so edits to it take effect."""

    hosts: Sequence[str | Address] | None = None
    port: int | None = None

    async def find(self, ctx: SourceContext) -> Found:
        hosts = self.hosts if self.hosts is not None else host_file()
        targets = []
        for h in hosts:
            host, port = (h, None) if isinstance(h, str) else h
            targets.append((host, port or ctx.port(self.port), host))
        return await names_of_hosts(targets, ctx.timeout)


@dataclass
class EpmdPrefix:
    """The nodes whose name starts with ``prefix``, by pynode EPMD's PREFIX_REQ (one reply of
    only the matching nodes); on another EPMD (epmd answers the request by closing) NAMES
    filtered here."""

    prefix: str
    host: str | None = None
    port: int | None = None
    node_host: str | None = None
    supported: bool | None = field(default=None, repr=False)  # learnt on the first round

    async def find(self, ctx: SourceContext) -> Found:
        host = self.host or ctx.epmd_host
        port = ctx.port(self.port)
        node_host = self.node_host or (self.host or ctx.node_host)
        if self.supported is not False:
            try:
                with anyio.fail_after(ctx.timeout):
                    entries = await epmd_client.lookup_prefix(self.prefix, host, port, timeout=ctx.timeout)
                self.supported = True
                return {Atom(f"{e.name}@{node_host}"): (host, e.port) for e in entries}
            except ExtensionUnsupported:
                log.info("EPMD at %s:%d has no prefix look-up; using NAMES", host, port)
                self.supported = False
            except TimeoutError:
                raise EpmdError(f"EPMD at {host}:{port} did not answer within {ctx.timeout} s") from None
        found = await _names_at(host, port, node_host, ctx.timeout)
        return {n: a for n, a in found.items() if n.startswith(self.prefix)}


@dataclass
class Dns:
    """Hosts from DNS, then their nodes.

    ``kind="A"``: the addresses of ``name`` (A and AAAA); ``kind="SRV"``: the targets of the
    SRV records of ``name``, whose port is taken as that host's EPMD port. With ``basename``
    the node on each host is ``basename@host`` (libcluster's DNSPoll); without it every node
    EPMD on the host lists. ``servers`` overrides resolv.conf's name servers (SRV only).
    """

    name: str
    kind: str = "A"
    basename: str | None = None
    servers: list[Address] | None = None
    port: int | None = None

    def __post_init__(self) -> None:
        self.kind = self.kind.upper()
        if self.kind not in ("A", "SRV"):
            raise ValueError(f"DNS discovery kind must be 'A' or 'SRV', not {self.kind!r}")

    async def find(self, ctx: SourceContext) -> Found:
        targets: list[tuple[str, int, str]] = []
        with anyio.fail_after(ctx.timeout * (dns.DNS_ATTEMPTS + 1)):
            if self.kind == "SRV":
                for r in await dns.resolve_srv(self.name, self.servers, timeout=ctx.timeout):
                    targets.append((r.target, r.port or ctx.port(self.port), r.target))
            else:
                for addr in await dns.resolve_addresses(self.name):
                    targets.append((addr, ctx.port(self.port), addr))
        if self.basename is not None:
            return {Atom(f"{self.basename}@{nh}"): None for _h, _p, nh in targets}
        return await names_of_hosts(targets, ctx.timeout)


@dataclass
class Nodes:
    """Fixed node names (seeds): libcluster's Epmd strategy, net_adm:ping_list/1."""

    names: Sequence[str]

    async def find(self, ctx: SourceContext) -> Found:
        return {Atom(n): None for n in self.names}
