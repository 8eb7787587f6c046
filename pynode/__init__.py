"""pynode: a Python process that is a full member of an Erlang cluster."""

from __future__ import annotations

__version__ = "0.1.0"
