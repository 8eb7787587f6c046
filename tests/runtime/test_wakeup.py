"""The semaphore a BlockingNode's receiving thread waits on, in C (spins, then a futex) and
in Python (a bare lock): the same behaviour from both."""

from __future__ import annotations

import math
import signal
import socket
import sys
import threading
import time
from typing import Any

import pytest

from pynode.runtime import busywait


def c_wakeup() -> Any:
    spin = pytest.importorskip("pynode.runtime._spin")
    if sys.platform.startswith("linux"):
        assert hasattr(spin, "Wakeup"), "the compiled helper was built without Wakeup on Linux"
    else:  # pragma: no cover - Linux-only type
        pytest.skip("Wakeup is compiled on Linux only")
    return spin.Wakeup


@pytest.fixture(params=["c", "python"])
def make(request: Any) -> Any:
    return c_wakeup() if request.param == "c" else busywait._LockWakeup


@pytest.mark.parametrize("spin", [0.0, 100e-6])
def test_a_set_before_the_wait_is_taken_once(make: Any, spin: float) -> None:
    w = make()
    w.set()
    w.set()  # sets before a wait fold into one
    assert w.wait(1.0, spin) is True
    t0 = time.monotonic()
    assert w.wait(0.05, spin) is False
    assert 0.04 <= time.monotonic() - t0 < 2.0


def test_a_zero_timeout_only_looks(make: Any) -> None:
    w = make()
    assert w.wait(0.0, 0.0) is False
    w.set()
    assert w.wait(0.0, 1.0) is True


def test_the_spin_never_outlasts_the_timeout(make: Any) -> None:
    w = make()
    t0 = time.monotonic()
    assert w.wait(0.05, 1.0) is False
    assert time.monotonic() - t0 < 0.5


@pytest.mark.parametrize("timeout", [1e12, math.inf, math.nan, -1.0])
def test_a_huge_or_no_timeout_waits_for_the_set_asleep(make: Any, timeout: float) -> None:
    """Beyond what a lock or a timespec takes, a timeout means for ever, and the wait
    sleeps: no error, and no busy loop (its thread uses next to no CPU)."""
    w = make()
    got: list[Any] = []

    def waiter() -> None:
        t0 = time.thread_time()
        try:
            got.append(w.wait(timeout, 0.0))
        except Exception as e:  # reported below
            got.append(e)
        got.append(time.thread_time() - t0)

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    time.sleep(0.2)  # not synchronisation: the thread is asleep in the wait, or about to be
    w.set()
    t.join(5.0)
    assert not t.is_alive(), "the waiting thread was not woken"
    assert got[0] is True
    assert got[1] < 0.1, f"the wait used {got[1]:.3f} s of CPU in 0.2 s: it did not sleep"


@pytest.mark.parametrize("spin", [0.0, 100e-6, 0.5])
def test_another_thread_wakes_a_wait_without_timeout(make: Any, spin: float) -> None:
    """Woken while it spins (0.5 s) or while it sleeps (0 and 100 us)."""
    w = make()
    got: list[bool] = []
    done = threading.Event()

    def waiter() -> None:
        got.append(w.wait(-1, spin))
        done.set()

    t = threading.Thread(target=waiter, daemon=True)
    t.start()
    time.sleep(0.02)  # not synchronisation: the wake must come whether or not it sleeps yet
    w.set()
    assert done.wait(5.0), "the waiting thread was not woken"
    t.join(5.0)
    assert got == [True]


def test_many_wakes_reach_a_waiter_each_time(make: Any) -> None:
    """A ping-pong of 2000 turns between two threads: no wake-up is lost (a lost one hangs
    a turn until its 5 s timeout, and the test fails)."""
    ping, pong = make(), make()
    turns = 2000
    failures: list[str] = []
    deadline = time.monotonic() + 30.0

    def other() -> None:
        for i in range(turns):
            if time.monotonic() > deadline or not ping.wait(5.0, 50e-6):
                failures.append(f"ping {i} lost")
                return
            pong.set()

    t = threading.Thread(target=other, daemon=True)
    t.start()
    for i in range(turns):
        ping.set()
        if time.monotonic() > deadline or not pong.wait(5.0, 0.0 if i % 2 else 50e-6):
            failures.append(f"pong {i} lost")
            break
    t.join(10.0)
    assert not failures
    assert not t.is_alive()


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs setitimer")
@pytest.mark.parametrize("spin", [0.0, 0.2])
def test_a_signal_handler_runs_during_the_wait(make: Any, spin: float) -> None:
    """Ctrl-C must reach a thread blocked in receive: the handler's exception comes out of
    the wait at once (after the spin, if it came during one), not after the timeout."""

    class Alarm(Exception):
        pass

    def handler(signum: int, frame: Any) -> None:
        raise Alarm

    old = signal.signal(signal.SIGALRM, handler)
    try:
        signal.setitimer(signal.ITIMER_REAL, 0.05)
        t0 = time.monotonic()
        with pytest.raises(Alarm):
            make().wait(5.0, spin)
        assert time.monotonic() - t0 < 2.0
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


def test_the_c_one_takes_no_arguments() -> None:
    Wakeup = c_wakeup()
    with pytest.raises(TypeError):
        Wakeup(1)
    with pytest.raises(TypeError):
        Wakeup().wait("x", 0.0)


def test_the_blocking_api_uses_the_c_one_when_built() -> None:
    if busywait.C_SPIN and sys.platform.startswith("linux"):
        assert busywait.Wakeup is c_wakeup()
    else:
        assert busywait.Wakeup is busywait._LockWakeup


def test_wakes_while_an_event_loop_spins_reach_their_waiter() -> None:
    """Set during its spin, the C waiter waits for a loop thread to be in wait_readable
    (having let go of the GIL) before it takes the GIL: a ping-pong with such a thread
    spinning all along loses no wake-up and takes no timeout."""
    wakeup, wait_readable = c_wakeup(), pytest.importorskip("pynode.runtime._spin").wait_readable
    ping, pong = wakeup(), wakeup()
    r, w = socket.socketpair()
    stop = threading.Event()
    deadline = time.monotonic() + 30.0

    def loop() -> None:  # an idle event loop: spins on a descriptor that never gets an event
        while not stop.is_set() and time.monotonic() < deadline:
            wait_readable(r.fileno(), 0.01)

    def other() -> None:
        for i in range(500):
            if time.monotonic() > deadline or not ping.wait(5.0, 100e-6, True):
                failures.append(f"ping {i} lost")
                return
            pong.set()

    failures: list[str] = []
    spinner = threading.Thread(target=loop, daemon=True)
    t = threading.Thread(target=other, daemon=True)
    spinner.start()
    t.start()
    try:
        for i in range(500):
            ping.set()
            if time.monotonic() > deadline or not pong.wait(5.0, 100e-6, i % 2 == 0):
                failures.append(f"pong {i} lost")
                break
    finally:
        t.join(10.0)
        stop.set()
        spinner.join(10.0)
        r.close()
        w.close()
    assert not failures
    assert not t.is_alive() and not spinner.is_alive()
