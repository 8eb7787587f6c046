"""Sentinels shared by the protocol state machines."""

from __future__ import annotations

from typing import Final

__all__ = ["NEED_DATA", "NO_PAYLOAD", "NeedData", "NoPayload"]


class NeedData:
    """Returned by ``next_event()`` when more bytes must arrive before the next event."""

    __slots__ = ()
    _instance: NeedData | None = None

    def __new__(cls) -> NeedData:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NEED_DATA"

    def __reduce__(self) -> str:
        return "NEED_DATA"


class NoPayload:
    """Marks a distribution message that carries no payload term (distinct from ``None``,
    which is the atom ``undefined``)."""

    __slots__ = ()
    _instance: NoPayload | None = None

    def __new__(cls) -> NoPayload:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "NO_PAYLOAD"

    def __bool__(self) -> bool:
        return False

    def __reduce__(self) -> str:
        return "NO_PAYLOAD"


NEED_DATA: Final = NeedData()
NO_PAYLOAD: Final = NoPayload()
