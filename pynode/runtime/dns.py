"""DNS look-ups for discovery: SRV over UDP (the standard library has none), A/AAAA through
the system resolver (getaddrinfo)."""

from __future__ import annotations

import secrets
import socket
from pathlib import Path

import anyio

from ..protocol.dns import SRV, AddressRecord, DnsError, SrvRecord, encode_query, parse_response

__all__ = ["DnsError", "nameservers", "resolve_srv", "resolve_addresses"]

# resolv.conf(5): RES_TIMEOUT is 5 s and RES_DFLRETRY 2 attempts per server.
DNS_TIMEOUT = 5.0
DNS_ATTEMPTS = 2
# RFC 1035 4.2.1: UDP messages are limited to 512 bytes (we send no EDNS, so servers keep to it).
_MAX_UDP = 512


def nameservers(path: str = "/etc/resolv.conf") -> list[tuple[str, int]]:
    """The ``nameserver`` lines of resolv.conf, as (address, 53); empty when unreadable."""
    try:
        text = Path(path).read_text(errors="replace")
    except OSError:
        return []
    out = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] == "nameserver":
            out.append((parts[1].split("%")[0], 53))
    return out


async def _ask(server: tuple[str, int], name: str, qtype: int, timeout: float) -> list[SrvRecord | AddressRecord]:
    ident = secrets.randbits(16)
    query = encode_query(ident, name, qtype)
    async with await anyio.create_connected_udp_socket(server[0], server[1]) as udp:
        await udp.send(query)
        with anyio.fail_after(timeout):
            while True:  # a stray datagram (another id) is skipped, not an answer
                data = await udp.receive()
                try:
                    return parse_response(data[:65535], ident)
                except DnsError as e:
                    if "another query" not in str(e):
                        raise


async def resolve_srv(
    name: str,
    servers: list[tuple[str, int]] | None = None,
    *,
    timeout: float = DNS_TIMEOUT,
    attempts: int = DNS_ATTEMPTS,
) -> list[SrvRecord]:
    """The SRV records of ``name``, by priority then weight (highest first); asks each server
    in turn, ``attempts`` rounds. "No such name" is an empty list; no answer raises DnsError."""
    servers = servers if servers is not None else nameservers()
    if not servers:
        raise DnsError("no DNS server (none given, none in /etc/resolv.conf)")
    last: Exception | None = None
    for _ in range(max(1, attempts)):
        for server in servers:
            try:
                records = await _ask(server, name, SRV, timeout)
            except DnsError as e:
                if e.rcode == 3:
                    return []
                last = e
            except (OSError, TimeoutError) as e:
                last = e
            else:
                srv = [r for r in records if isinstance(r, SrvRecord)]
                return sorted(srv, key=lambda r: (r.priority, -r.weight, r.target, r.port))
    raise DnsError(f"no answer for SRV {name}: {last or 'timeout'}")


async def resolve_addresses(host: str, port: int = 0) -> list[str]:
    """The IPv4 and IPv6 addresses of ``host`` (A and AAAA, via getaddrinfo), without repeats."""
    try:
        infos = await anyio.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        if e.errno in (socket.EAI_NONAME, getattr(socket, "EAI_NODATA", -5)):
            return []
        raise DnsError(f"cannot resolve {host}: {e}") from None
    out: list[str] = []
    for family, *_rest, sockaddr in infos:
        if family in (socket.AF_INET, socket.AF_INET6):
            addr = str(sockaddr[0])
            if addr not in out:
                out.append(addr)
    return out
