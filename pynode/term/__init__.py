"""The Erlang External Term Format.

One API, two implementations: a compiled twin (``pynode.term._ccodec``) when it is built,
otherwise the pure-Python codec. Set ``PYNODE_PURE_PYTHON=1`` to force pure Python.
"""

from __future__ import annotations

import os
from types import ModuleType

from . import _codec_py
from ._codec_py import ErlFloatKey
from .errors import DecodeError, EncodeError
from .types import (
    Atom,
    BitString,
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


def _load_implementations() -> dict[str, ModuleType]:
    impls: dict[str, ModuleType] = {"python": _codec_py}
    try:  # pragma: no cover - depends on the build
        from . import _ccodec  # type: ignore[attr-defined]
    except ImportError:
        pass
    else:  # pragma: no cover
        impls["c"] = _ccodec
    return impls


IMPLEMENTATIONS: dict[str, ModuleType] = _load_implementations()
"""Every codec implementation importable here, by name; the tests run against each."""

_force_pure = os.environ.get("PYNODE_PURE_PYTHON", "") not in ("", "0")
implementation: str = "python" if _force_pure or "c" not in IMPLEMENTATIONS else "c"
_impl = IMPLEMENTATIONS[implementation]

encode = _impl.encode
decode = _impl.decode
decode_from = _impl.decode_from
decode_dist_packet = _impl.decode_dist_packet
decode_dist_sends = _impl.decode_dist_sends
decode_dist_header = _impl.decode_dist_header
decode_dist_body = _impl.decode_dist_body
encode_dist_packet = _impl.encode_dist_packet

ATOM_CACHE_SIZE = _codec_py.ATOM_CACHE_SIZE

DEFAULT_MAX_DEPTH = _codec_py.DEFAULT_MAX_DEPTH
DEFAULT_MAX_UNCOMPRESSED = _codec_py.DEFAULT_MAX_UNCOMPRESSED

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
    "encode",
    "encode_dist_packet",
    "freeze",
    "implementation",
]
