"""The Erlang External Term Format.

One API, two implementations: a compiled twin (``pynode.term._ccodec``) when it is built,
otherwise the pure-Python codec. Set ``PYNODE_PURE_PYTHON=1`` to force pure Python.
"""

from __future__ import annotations

import os

from .errors import DecodeError, EncodeError
from .types import (
    Atom,
    BitString,
    ErlFloatKey,
    ExportFun,
    FrozenList,
    FrozenMap,
    Fun,
    ImproperList,
    Pid,
    Port,
    Reference,
    Struct,
    freeze,
)

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms
if TYPE_CHECKING:
    from types import ModuleType

    IMPLEMENTATIONS: dict[str, ModuleType]
    """Every codec implementation importable here, by name; the tests run against each."""


def _load_implementations() -> dict[str, ModuleType]:
    from . import _codec_py

    impls: dict[str, ModuleType] = {"python": _codec_py}
    try:  # pragma: no cover - depends on the build
        from . import _ccodec  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:  # pragma: no cover
        impls["c"] = _ccodec
    return impls


if not TYPE_CHECKING:  # the type checker sees IMPLEMENTATIONS above and no other name

    def __getattr__(name: str) -> object:
        """IMPLEMENTATIONS on first use: with the C twin in use, the pure codec is not
        imported (it costs the ``pynode`` command milliseconds)."""
        if name == "IMPLEMENTATIONS":
            impls = globals()["IMPLEMENTATIONS"] = _load_implementations()
            return impls
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _pick() -> tuple[str, ModuleType]:
    """The C twin unless PYNODE_PURE_PYTHON is set or it was not built."""
    if os.environ.get("PYNODE_PURE_PYTHON", "") in ("", "0"):
        try:  # pragma: no cover - depends on the build
            from . import _ccodec  # type: ignore[attr-defined]
        except ImportError:
            pass
        else:
            # else built from older sources (without a function the package binds): not used
            if all(hasattr(_ccodec, name) for name in ("ATOM_CACHE_SIZE", "peek_spawn_answer", "make_ref")):
                # Pid and Reference key the runtime's tables: their hash and == in C too
                type_slots = getattr(_ccodec, "type_slots", None)
                if type_slots is not None:
                    type_slots(True)
                return "c", _ccodec  # type: ignore[return-value]
    from . import _codec_py

    return "python", _codec_py


implementation: str
implementation, _impl = _pick()

encode = _impl.encode
decode = _impl.decode
decode_from = _impl.decode_from
decode_dist_packet = _impl.decode_dist_packet
decode_dist_sends = _impl.decode_dist_sends
peek_dist_packets = _impl.peek_dist_packets
peek_spawn_answer = _impl.peek_spawn_answer
make_pid = _impl.make_pid
make_ref = _impl.make_ref
decode_dist_header = _impl.decode_dist_header
decode_dist_body = _impl.decode_dist_body
encode_dist_packet = _impl.encode_dist_packet

ATOM_CACHE_SIZE: int = _impl.ATOM_CACHE_SIZE

DEFAULT_MAX_DEPTH: int = _impl.DEFAULT_MAX_DEPTH
DEFAULT_MAX_UNCOMPRESSED: int = _impl.DEFAULT_MAX_UNCOMPRESSED

__all__ = [
    "ATOM_CACHE_SIZE",
    "Atom",
    "BitString",
    "DecodeError",
    "EncodeError",
    "ErlFloatKey",
    "ExportFun",
    "FrozenList",
    "FrozenMap",
    "Fun",
    "IMPLEMENTATIONS",
    "ImproperList",
    "Pid",
    "Port",
    "Reference",
    "Struct",
    "decode",
    "decode_dist_body",
    "decode_dist_header",
    "decode_dist_packet",
    "decode_dist_sends",
    "decode_from",
    "peek_dist_packets",
    "peek_spawn_answer",
    "encode",
    "encode_dist_packet",
    "freeze",
    "implementation",
    "make_pid",
    "make_ref",
]
