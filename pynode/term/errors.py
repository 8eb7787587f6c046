"""Codec exceptions."""

from __future__ import annotations


class DecodeError(ValueError):
    """Bytes that are not a valid external term; ``offset`` is where decoding stopped."""

    def __init__(self, message: str, offset: int | None = None) -> None:
        self.offset = offset
        if offset is not None:
            message = f"{message} (at offset {offset})"
        super().__init__(message)


class EncodeError(ValueError):
    """A Python object that has no external term form."""
