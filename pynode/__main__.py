"""``python -m pynode``: the ``pynode`` command."""

from __future__ import annotations

from .cli import console

if __name__ == "__main__":
    console()
