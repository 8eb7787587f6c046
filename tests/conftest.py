"""Fixtures shared by the unit tests (interop/ has its own, which start real erl)."""

from __future__ import annotations

import pytest


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    """Async tests run on both event loops pynode supports (a module may narrow this)."""
    return str(request.param)
