"""Fixtures that start real erl processes; each one is stopped by its finalizer."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .erlnode import Epmd, ErlNode, stop_nodes
from .oracle import ErlOracle
from .otp import Otp, otp25, otp28

OTP_NAMES = ["otp25", "otp28"]


def _otp(name: str) -> Otp:
    return otp25() if name == "otp25" else otp28()


@pytest.fixture(scope="session", params=OTP_NAMES)
def otp(request: pytest.FixtureRequest) -> Otp:
    """Each OTP release of the interop matrix; a missing one fails the test."""
    return _otp(request.param)


@pytest.fixture(scope="session")
def oracle(otp: Otp) -> Iterator[ErlOracle]:
    o = ErlOracle(otp)
    try:
        yield o
    finally:
        o.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """An interop test that skips proves nothing: report it as a failure."""
    outcome = yield
    report = outcome.get_result()
    if report.skipped and "/interop/" in str(item.path):
        report.outcome = "failed"
        report.longrepr = f"interop test skipped, which counts as a failure: {report.longrepr}"


@pytest.fixture
def epmd(otp: Otp) -> Iterator[Epmd]:
    """A private EPMD on a free loopback port for this test."""
    e = Epmd(otp)
    try:
        yield e
    finally:
        e.kill()


@pytest.fixture
def erl_node(otp: Otp, epmd: Epmd) -> Iterator[Callable[..., ErlNode]]:
    """Factory of erl nodes registered with this test's EPMD; all are stopped at the end."""
    started: list[ErlNode] = []

    def start(**kwargs: Any) -> ErlNode:
        node = ErlNode(otp, epmd, **kwargs)
        started.append(node)
        return node

    try:
        yield start
    finally:
        stop_nodes(started)
