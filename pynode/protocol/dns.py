"""DNS queries and answers (RFC 1035, SRV from RFC 2782, AAAA from RFC 3596), without I/O.

Just enough for discovery: one question per query, answers of type A, AAAA and SRV read
from a reply; everything else in a reply is skipped. The standard library has no SRV
resolver, and this is small enough not to need a dependency.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

from .errors import ProtocolError

__all__ = [
    "A",
    "AAAA",
    "SRV",
    "DnsError",
    "SrvRecord",
    "AddressRecord",
    "encode_query",
    "parse_response",
]

A = 1
AAAA = 28
SRV = 33
_CLASS_IN = 1
_FLAG_QR = 0x8000
_FLAG_TC = 0x0200
_FLAG_RD = 0x0100

# RFC 1035 2.3.4: a name is at most 255 octets, a label at most 63.
MAX_NAME = 255
MAX_LABEL = 63
# Compression pointers may only point backwards, so a message of N bytes can need at most
# N/2 jumps; a bound on jumps stops a pointer loop early (glibc's dn_expand gives up at a
# loop the same way: it counts the bytes it has visited).
_MAX_JUMPS = 64

RCODES = {1: "format error", 2: "server failure", 3: "no such name", 4: "not implemented", 5: "refused"}


class DnsError(ProtocolError):
    """A malformed reply, or a server that answered with an error (``rcode``)."""

    def __init__(self, message: str, rcode: int | None = None) -> None:
        super().__init__(message)
        self.rcode = rcode


@dataclass(frozen=True)
class SrvRecord:
    """One SRV answer: the host ``target`` serves on ``port``."""

    priority: int
    weight: int
    port: int
    target: str


@dataclass(frozen=True)
class AddressRecord:
    """One A or AAAA answer."""

    name: str
    address: str


def _encode_name(name: str) -> bytes:
    name = name.rstrip(".")
    out = bytearray()
    for label in name.split(".") if name else []:
        raw = label.encode("idna") if not label.isascii() else label.encode("ascii")
        if not 0 < len(raw) <= MAX_LABEL:
            raise ValueError(f"bad DNS name {name!r}: empty label or label over {MAX_LABEL} octets")
        out += bytes([len(raw)]) + raw
    out += b"\x00"
    if len(out) > MAX_NAME:
        raise ValueError(f"bad DNS name {name!r}: over {MAX_NAME} octets")
    return bytes(out)


def encode_query(ident: int, name: str, qtype: int) -> bytes:
    """A recursive query for ``name`` of ``qtype`` (A, AAAA or SRV) with id ``ident``."""
    header = struct.pack(">HHHHHH", ident & 0xFFFF, _FLAG_RD, 1, 0, 0, 0)
    return header + _encode_name(name) + struct.pack(">HH", qtype, _CLASS_IN)


def _read_name(data: bytes, pos: int) -> tuple[str, int]:
    """The (possibly compressed) name at ``pos`` and the offset just after it."""
    labels: list[str] = []
    end = -1  # where the name ends in the record, once a pointer was followed
    jumps = 0
    length = 0
    while True:
        if pos >= len(data):
            raise DnsError("truncated name")
        n = data[pos]
        if n & 0xC0 == 0xC0:
            if pos + 1 >= len(data):
                raise DnsError("truncated name pointer")
            target = ((n & 0x3F) << 8) | data[pos + 1]
            if end < 0:
                end = pos + 2
            jumps += 1
            if jumps > _MAX_JUMPS or target >= pos:
                raise DnsError("name compression loop")
            pos = target
            continue
        if n & 0xC0:
            raise DnsError(f"unsupported label type {n:#x}")
        pos += 1
        if n == 0:
            break
        if pos + n > len(data):
            raise DnsError("truncated label")
        length += n + 1
        if length > MAX_NAME:
            raise DnsError(f"name over {MAX_NAME} octets")
        labels.append(data[pos:pos + n].decode("ascii", "replace"))
        pos += n
    return ".".join(labels), (end if end >= 0 else pos)


def parse_response(data: bytes, ident: int) -> list[SrvRecord | AddressRecord]:
    """The A, AAAA and SRV answers of the reply to query ``ident``.

    Raises DnsError for a malformed or truncated reply, a reply to another query, and a
    server error (``rcode`` 3 is "no such name"); no answers is an empty list.
    """
    if len(data) < 12:
        raise DnsError("reply shorter than a DNS header")
    rid, flags, qd, an, _ns, _ar = struct.unpack_from(">HHHHHH", data)
    if rid != ident & 0xFFFF:
        raise DnsError(f"reply to another query (id {rid}, expected {ident & 0xFFFF})")
    if not flags & _FLAG_QR:
        raise DnsError("not a reply")
    if flags & _FLAG_TC:
        raise DnsError("reply truncated (TC): too many records for UDP")
    rcode = flags & 0xF
    if rcode:
        raise DnsError(f"DNS server answered: {RCODES.get(rcode, f'rcode {rcode}')}", rcode)
    pos = 12
    for _ in range(qd):
        _, pos = _read_name(data, pos)
        pos += 4
    records: list[SrvRecord | AddressRecord] = []
    for _ in range(an):
        owner, pos = _read_name(data, pos)
        if pos + 10 > len(data):
            raise DnsError("truncated answer")
        rtype, rclass, _ttl, rdlen = struct.unpack_from(">HHIH", data, pos)
        pos += 10
        rdata_end = pos + rdlen
        if rdata_end > len(data):
            raise DnsError("truncated answer data")
        if rclass == _CLASS_IN:
            if rtype == A:
                if rdlen != 4:
                    raise DnsError(f"A record of {rdlen} bytes")
                records.append(AddressRecord(owner, str(ipaddress.IPv4Address(data[pos:rdata_end]))))
            elif rtype == AAAA:
                if rdlen != 16:
                    raise DnsError(f"AAAA record of {rdlen} bytes")
                records.append(AddressRecord(owner, str(ipaddress.IPv6Address(data[pos:rdata_end]))))
            elif rtype == SRV:
                if rdlen < 7:
                    raise DnsError(f"SRV record of {rdlen} bytes")
                prio, weight, port = struct.unpack_from(">HHH", data, pos)
                target, tend = _read_name(data, pos + 6)
                if tend > rdata_end:
                    raise DnsError("SRV target runs past its record")
                records.append(SrvRecord(prio, weight, port, target))
        pos = rdata_end
    return records


def encode_response(ident: int, name: str, qtype: int, answers: list[SrvRecord | AddressRecord],
                    *, rcode: int = 0, ttl: int = 60) -> bytes:
    """A reply to ``encode_query(ident, name, qtype)`` (for fake servers in tests and tools)."""
    question = _encode_name(name) + struct.pack(">HH", qtype, _CLASS_IN)
    body = bytearray()
    for rec in answers:
        if isinstance(rec, SrvRecord):
            rdata = struct.pack(">HHH", rec.priority, rec.weight, rec.port) + _encode_name(rec.target)
            rtype, owner = SRV, name
        else:
            ip = ipaddress.ip_address(rec.address)
            rdata, rtype, owner = ip.packed, (A if ip.version == 4 else AAAA), rec.name
        body += _encode_name(owner) + struct.pack(">HHIH", rtype, _CLASS_IN, ttl, len(rdata)) + rdata
    flags = _FLAG_QR | _FLAG_RD | 0x0080 | (rcode & 0xF)
    header = struct.pack(">HHHHHH", ident & 0xFFFF, flags, 1, len(answers), 0, 0)
    return header + question + bytes(body)
