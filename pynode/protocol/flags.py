"""Distribution capability flags (lib/kernel/include/dist.hrl, erts/emulator/beam/dist.h).

The handshake exchanges 64-bit flag words; the connection uses the bitwise AND of both.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms
if TYPE_CHECKING:
    from collections.abc import Iterator
    from typing import ClassVar

__all__ = [
    "DFlag",
    "MANDATORY_25",
    "MANDATORY_26",
    "MANDATORY",
    "DEFAULT",
    "default_flags",
    "expand_mandatory_25",
    "missing_flags",
    "flag_names",
]


class DFlag(int):
    """A flag word: an int whose bits are capabilities, one constant per bit. Unknown bits a
    peer sends are kept, never rejected. ``|``, ``&`` and ``^`` keep the type and ``repr``
    names the bits, as IntFlag's would; not an IntFlag because importing enum costs the
    ``pynode`` command milliseconds."""

    __slots__ = ()

    # one constant per bit of _BITS below, which gives the values (a test checks both lists)
    PUBLISHED: ClassVar[DFlag]
    ATOM_CACHE: ClassVar[DFlag]
    EXTENDED_REFERENCES: ClassVar[DFlag]
    DIST_MONITOR: ClassVar[DFlag]
    FUN_TAGS: ClassVar[DFlag]
    DIST_MONITOR_NAME: ClassVar[DFlag]
    HIDDEN_ATOM_CACHE: ClassVar[DFlag]
    NEW_FUN_TAGS: ClassVar[DFlag]
    EXTENDED_PIDS_PORTS: ClassVar[DFlag]
    EXPORT_PTR_TAG: ClassVar[DFlag]
    BIT_BINARIES: ClassVar[DFlag]
    NEW_FLOATS: ClassVar[DFlag]
    UNICODE_IO: ClassVar[DFlag]
    DIST_HDR_ATOM_CACHE: ClassVar[DFlag]
    SMALL_ATOM_TAGS: ClassVar[DFlag]
    UTF8_ATOMS: ClassVar[DFlag]
    MAP_TAG: ClassVar[DFlag]
    BIG_CREATION: ClassVar[DFlag]
    SEND_SENDER: ClassVar[DFlag]
    BIG_SEQTRACE_LABELS: ClassVar[DFlag]
    EXIT_PAYLOAD: ClassVar[DFlag]
    FRAGMENTS: ClassVar[DFlag]
    HANDSHAKE_23: ClassVar[DFlag]
    UNLINK_ID: ClassVar[DFlag]
    MANDATORY_25_DIGEST: ClassVar[DFlag]
    SPAWN: ClassVar[DFlag]
    NAME_ME: ClassVar[DFlag]
    V4_NC: ClassVar[DFlag]
    ALIAS: ClassVar[DFlag]
    LOCAL_EXT: ClassVar[DFlag]
    ALTACT_SIG: ClassVar[DFlag]

    def __or__(self, other: int) -> DFlag:
        r = int.__or__(self, other)
        return r if r is NotImplemented else DFlag(r)

    def __and__(self, other: int) -> DFlag:
        r = int.__and__(self, other)
        return r if r is NotImplemented else DFlag(r)

    def __xor__(self, other: int) -> DFlag:
        r = int.__xor__(self, other)
        return r if r is NotImplemented else DFlag(r)

    __ror__ = __or__
    __rand__ = __and__
    __rxor__ = __xor__

    def __invert__(self) -> DFlag:
        """The other bits of the 64-bit word (a flag word is never negative)."""
        return DFlag(~int(self) & _WORD)

    def __contains__(self, other: int) -> bool:
        return int.__and__(self, other) == other

    def __iter__(self) -> Iterator[DFlag]:
        """The set bits, lowest first, each a DFlag (as iterating an IntFlag gives)."""
        value = int(self) & _WORD
        while value:
            bit = value & -value
            value ^= bit
            yield DFlag(bit)

    @property
    def name(self) -> str | None:
        """The set bits' names joined by ``|`` (None for no bits), as an IntFlag's."""
        return "|".join(flag_names(self)) or None

    def __repr__(self) -> str:
        return f"<DFlag.{self.name or 0}: {int(self):#x}>"

    __str__ = int.__repr__


_WORD = (1 << 64) - 1  # the handshake's flag words are 64 bits

#: Each capability's bit (dist.hrl).
_BITS: dict[str, int] = {
    "PUBLISHED": 0x1,
    "ATOM_CACHE": 0x2,  # obsolete
    "EXTENDED_REFERENCES": 0x4,
    "DIST_MONITOR": 0x8,
    "FUN_TAGS": 0x10,
    "DIST_MONITOR_NAME": 0x20,
    "HIDDEN_ATOM_CACHE": 0x40,  # obsolete
    "NEW_FUN_TAGS": 0x80,
    "EXTENDED_PIDS_PORTS": 0x100,
    "EXPORT_PTR_TAG": 0x200,
    "BIT_BINARIES": 0x400,
    "NEW_FLOATS": 0x800,
    "UNICODE_IO": 0x1000,
    "DIST_HDR_ATOM_CACHE": 0x2000,
    "SMALL_ATOM_TAGS": 0x4000,
    "UTF8_ATOMS": 0x10000,
    "MAP_TAG": 0x20000,
    "BIG_CREATION": 0x40000,
    "SEND_SENDER": 0x80000,
    "BIG_SEQTRACE_LABELS": 0x100000,
    "EXIT_PAYLOAD": 0x400000,
    "FRAGMENTS": 0x800000,
    "HANDSHAKE_23": 0x1000000,
    "UNLINK_ID": 0x2000000,
    "MANDATORY_25_DIGEST": 0x4000000,
    "SPAWN": 1 << 32,
    "NAME_ME": 1 << 33,
    "V4_NC": 1 << 34,
    "ALIAS": 1 << 35,
    "LOCAL_EXT": 1 << 36,  # node-local only, never offered on the wire
    "ALTACT_SIG": 1 << 37,  # OTP 28
}
for _name, _bit in _BITS.items():
    setattr(DFlag, _name, DFlag(_bit))



#: Flags an OTP 25+ node refuses to connect without (dist.hrl MANDATORY_DFLAGS_25).
MANDATORY_25: DFlag = (
    DFlag.EXTENDED_REFERENCES
    | DFlag.FUN_TAGS
    | DFlag.EXTENDED_PIDS_PORTS
    | DFlag.NEW_FUN_TAGS
    | DFlag.EXPORT_PTR_TAG
    | DFlag.BIT_BINARIES
    | DFlag.NEW_FLOATS
    | DFlag.UTF8_ATOMS
    | DFlag.MAP_TAG
    | DFlag.BIG_CREATION
    | DFlag.HANDSHAKE_23
)

#: Added to the mandatory set by OTP 26 (new link protocol, v4 node containers).
MANDATORY_26: DFlag = DFlag.V4_NC | DFlag.UNLINK_ID

#: What pynode requires from a peer: the OTP 26 mandatory set. pynode implements only the
#: UNLINK_ID link protocol, so a peer without it could not unlink.
MANDATORY: DFlag = MANDATORY_25 | MANDATORY_26

#: The flags pynode offers to a visible peer by default. No atom cache and no fragments
#: (opt-in through :func:`default_flags`); PUBLISHED is added only for visible nodes.
DEFAULT: DFlag = (
    MANDATORY
    | DFlag.MANDATORY_25_DIGEST
    | DFlag.DIST_MONITOR
    | DFlag.DIST_MONITOR_NAME
    | DFlag.SMALL_ATOM_TAGS
    | DFlag.SEND_SENDER
    | DFlag.BIG_SEQTRACE_LABELS
    | DFlag.EXIT_PAYLOAD
    | DFlag.SPAWN
    | DFlag.ALIAS
)


def default_flags(
    *, hidden: bool = False, fragments: bool = False, atom_cache: bool = False
) -> DFlag:
    """The flag word pynode offers: :data:`DEFAULT`, PUBLISHED unless hidden, opt-in extras."""
    flags = DEFAULT
    if not hidden:
        flags |= DFlag.PUBLISHED
    if fragments:
        flags |= DFlag.FRAGMENTS
    if atom_cache:
        flags |= DFlag.DIST_HDR_ATOM_CACHE
    return flags


def expand_mandatory_25(flags: int) -> DFlag:
    """OTP 25+ lets MANDATORY_25_DIGEST stand for every flag of :data:`MANDATORY_25`."""
    if flags & DFlag.MANDATORY_25_DIGEST:
        flags |= MANDATORY_25
    return DFlag(flags)


def missing_flags(flags: int, required: int = MANDATORY) -> DFlag:
    """The bits of ``required`` that ``flags`` lacks (after digest expansion)."""
    return DFlag(int(required) & ~int(expand_mandatory_25(flags)))


def flag_names(flags: int) -> list[str]:
    """Names of the set bits, lowest first; unknown bits appear as ``UNKNOWN<0x..>``."""
    names: list[str] = []
    value = int(flags) & _WORD  # a negative int has infinitely many bits set
    while value:
        bit = value & -value
        value ^= bit
        name = _KNOWN.get(bit)
        names.append(name if name is not None else f"UNKNOWN<{bit:#x}>")
    return names


_KNOWN: dict[int, str] = {bit: name for name, bit in _BITS.items()}
