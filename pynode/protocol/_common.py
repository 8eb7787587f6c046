"""Sentinels shared by the protocol state machines."""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from typing import Final


__all__ = ["NEED_DATA", "NO_PAYLOAD", "Frozen", "NeedData", "NoPayload"]


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


_set = object.__setattr__


class Frozen:
    """Base of the protocol's small immutable records (events, control messages, EPMD
    messages): plain ``__slots__`` classes that compare, hash, print and pickle by their
    fields like a frozen dataclass, without dataclass machinery on the import path (the
    ``pynode`` command starts in a few tens of milliseconds). Subclasses list their fields in
    ``__slots__`` and set them in ``__init__`` with ``object.__setattr__``; ``_FIELDS`` is
    every field, base classes' first.
    """

    __slots__ = ()
    _FIELDS: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__.get("__slots__", ())
        cls._FIELDS = (*cls._FIELDS, *((own,) if isinstance(own, str) else own))

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"cannot assign to field {name!r} of frozen {type(self).__name__}")

    def __delattr__(self, name: str) -> None:
        raise AttributeError(f"cannot delete field {name!r} of frozen {type(self).__name__}")

    def _values(self) -> tuple[object, ...]:
        return tuple([getattr(self, f) for f in self._FIELDS])

    def __eq__(self, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return self._values() == other._values()  # type: ignore[attr-defined, no-any-return]

    def __hash__(self) -> int:
        return hash(self._values())

    def __repr__(self) -> str:
        args = ", ".join(f"{f}={getattr(self, f)!r}" for f in self._FIELDS)
        return f"{type(self).__qualname__}({args})"

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), self._values())
