"""Poll briefly before the event loop sleeps, as erl's schedulers do (``+sbwt``).

A reply from a peer on this host comes tens of microseconds after the request. A loop that
blocks in epoll at once is put to sleep and woken again for it, which costs more than the
reply's own work (on a virtual machine, more than the whole erl->erl round trip). erl's
schedulers spin a little before they sleep; so does an asyncio loop with this selector
wrapped around its own, only when it has nothing else to do.

With the compiled helper (``pynode.runtime._spin``) the spin polls the selector's descriptor
without the GIL, so threads (a BlockingNode's callers) run meanwhile; a spin in Python holds
the GIL between polls and a thread the loop has just woken waits for it. A thread blocked in
a BlockingNode receive spins the same way before it sleeps (:data:`Wakeup`).
"""

from __future__ import annotations

import asyncio
import os
import select
import selectors
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

DEFAULT_SPIN = 300e-6
"""Seconds of polling before the loop blocks. A round trip to a local erl takes 40-100 us on
an idle host, and 150-250 us when the hypervisor takes CPU away (steal, 5-15% on the 2-core
test VM). In benchmarks/rpc.py runs on 2026-12-03, a 100 us spin gave rpc p50 1.5-2.0x
erl->erl in all 5 runs at 11-15% steal, where 300 us held 1.2x in 4 of 6 at 9-13%; below 9%
both mostly held. Echo p99 (benchmarks/dist.py) looked higher with 300 us in paired runs
(1.2-1.8x against 0.7-1.4x): still open. erl's schedulers spin before they sleep too (+sbwt
medium; +sbwt none is 0). Where spins do not pay (sparse traffic) SpinGate stops them:
benchmarks/idle_cpu.py."""

# Whether spinning pays is learnt from its outcomes (SpinGate): a spin that ends with an event
# saved a sleep and a wake-up; one that runs out burnt its CPU for nothing (a node that gets a
# message every few milliseconds would spin through every gap). Below HIT_FLOOR of recent
# spins ending with an event, only one wait in PROBE_EVERY spins, so that a better rate is
# seen when it comes back. The floor is low: a spin that catches one answer in five still
# saves that one a wake-up (on a VM, 50-300 us of latency), and sparse traffic, whose spins
# all run out, falls below it within about 25 waits. (erl's schedulers spin a fixed count;
# ei and JInterface never spin.)
HIT_FLOOR = 0.2
HIT_WEIGHT = 1 / 16  # of the latest outcome in the running rate: about the last 16 spins
PROBE_EVERY = 8

AT_ONCE = 5e-6  # a wait that ends sooner found its event at the first poll (one syscall)

# A spin is for an otherwise idle CPU, as erl's is. A yield between two polls that took
# YIELD_TAKEN or more gave the CPU to another thread for a time slice (a yield with nobody
# else runnable returns in about a microsecond, and 2 in 100,000 took 50 us or more on an
# idle 2-core VM; an erl node's turn at a request on the same CPU takes 15-20 us, a turn
# that answers, which the spin waits for; a sender's slice hundreds): the spin ends as one
# that ran out, the loop sleeps, and its gate learns. A spin that went on took turns with that thread: with an
# erl node streaming small messages to pynode on one CPU, pynode then read in step with the
# sender, which sent each message in a TCP segment of its own and paid 4.4-5.5 us of CPU per
# message instead of 2.2-2.8 (benchmarks/recv_place.py's shared placement, 2026-12-04).
# The compiled spin (_spin.c) has the same rule.
YIELD_TAKEN = 50e-6

# A closed gate's probe that such a yield ended doubles the gate's probe interval, up to
# PROBE_EVERY_MAX waits (with erl streaming to pynode on one CPU, 1,000-2,000 waits a second:
# a probe every second or so); a probe that hits, or runs out by itself, sets it back to
# PROBE_EVERY. Each such probe handed the other thread a whole time slice. With erl streaming
# small messages to pynode on one CPU (benchmarks/recv_place.py's shared placement,
# 2026-12-04) the probes did so about once per 1000 messages, and after each long turn erl's
# sender (under BBR) sent the next messages one TCP segment each, at about twice its CPU per
# message: 105k-122k msgs/s in 6 runs without the back-off, 185k-220k in 6 with it. An open
# gate's spins are not probes: an erl node's long turn at a request on the same CPU leaves
# them be. (A hold of 0.1 s on every gate after such a spin slowed rpc.py's erl -> pynode p50
# from 89-98 to 141-155 us; the back-off left it at 89-94 against 89-98, in turns.)
PROBE_EVERY_MAX = 1024

# A descriptor a thread hid from the loop's poll ahead of the answer it is about to read
# (SpinningSelector.hide: a BlockingNode caller's send) stays hidden while that thread asks
# and reads (its reads take what else comes and hand it to the loop): taken down at each
# read and set again at each request, it cost two epoll_ctl calls and a lock a round trip,
# enough for erl on another CPU to fall asleep between two (BlockingNode echo 42 us
# against 22-25 kept hidden, 2026-12-05). A read that leaves the answer to the loop shows
# it, as does a thread that waits for the loop's delivery (show_hidden); else the loop
# shows it HIDE_BOUND seconds after the last request, its sleeps that short while any is
# hidden: until then the loop reads nothing of that connection itself (an async task
# waiting on it meanwhile included). No precedent in erl, whose schedulers read their own
# sockets. The loop wakes 1/HIDE_BOUND times a second while threads ask, each wake a turn
# at the GIL: with 5 ms, 1 of 3 dist.py runs with the processes apart read the
# BlockingNode echo at 1.70x the async one (p99 79-88 us), with 50 ms 1.06-1.12x in 3
# (p99 67-72 us), 2026-12-05.
HIDE_BOUND = 0.05
# A thread may hide a descriptor only while the loop sleeps no longer than HIDE_BOUND: the
# loop does so while any is hidden and for ASK_LINGER after a thread last asked to (the
# first ask wakes a loop that sleeps longer, and goes unhidden): asks a little apart (up to
# a few HIDE_BOUNDs) hide without that wake.
ASK_LINGER = 0.25

_sched_yield = getattr(os, "sched_yield", None)
_py_given_up = 0  # spins in Python ended by YIELD_TAKEN (SpinningSelector.select)
_EPOLLIN = getattr(select, "EPOLLIN", 1)
_EPOLLOUT = getattr(select, "EPOLLOUT", 4)
_INF = float("inf")


class SpinGate:
    """Whether the next wait of one kind should spin, from how the recent ones ended."""

    __slots__ = ("hits", "_skipped", "probe_every", "_probe_seen")

    def __init__(self) -> None:
        self.hits = 1.0
        """The running rate of spins that ended with an event (1: all of them)."""
        self._skipped = 0
        self.probe_every = PROBE_EVERY
        """While closed, one wait in this many spins (see PROBE_EVERY_MAX)."""
        self._probe_seen = -1  # spins_given_up() when the latest probe began; -1: none since

    def allow(self) -> bool:
        """True to spin this time: while at least HIT_FLOOR of recent spins ended with an
        event, and else for one wait in ``probe_every``."""
        if self.hits >= HIT_FLOOR:
            return True
        self._skipped += 1
        if self._skipped < self.probe_every:
            return False
        self._skipped = 0
        self._probe_seen = spins_given_up()
        return True

    @property
    def open(self) -> bool:
        """Whether recent spins paid (a spin a timer cuts short asks this: it is no probe)."""
        return self.hits >= HIT_FLOOR

    def outcome(self, hit: bool) -> None:
        """A whole spin ended: with an event (``hit``) or run out. A probe that ran out while
        a spin of this process gave its CPU away (:func:`spins_given_up` moved since the
        probe began: this probe's spin, as a rule) doubles ``probe_every``; a probe's other
        outcomes set it back."""
        self.hits += ((1.0 if hit else 0.0) - self.hits) * HIT_WEIGHT
        seen = self._probe_seen
        if seen < 0:  # an open gate's spin, not a probe
            return
        self._probe_seen = -1
        if not hit and spins_given_up() != seen:
            self.probe_every = min(self.probe_every * 2, PROBE_EVERY_MAX)
        else:
            self.probe_every = PROBE_EVERY


def _load_c_spin() -> Callable[[int, float], bool] | None:
    if os.environ.get("PYNODE_PURE_PYTHON", "") not in ("", "0"):  # no compiled code at all
        return None
    try:
        from ._spin import wait_readable
    except ImportError:  # not built (no compiler at install, or not CPython on POSIX)
        return None
    return wait_readable


_wait_readable = _load_c_spin()
wait_readable: Callable[[int, float], bool] | None = _wait_readable
"""``wait_readable(fd, seconds)``: spin without the GIL until ``fd`` is readable (True) or the
time is up (False); None without the compiled helper."""
C_SPIN: bool = _wait_readable is not None
"""Whether the spin runs in C without the GIL (else in Python, holding it between polls)."""


def _load_c_given_up() -> Callable[[], int] | None:
    if _wait_readable is None:
        return None
    from . import _spin

    # a _spin built before it had one: None, and its spins' give-ups go uncounted (no back-off)
    return getattr(_spin, "given_up", None)


_c_given_up = _load_c_given_up()


def spins_given_up() -> int:
    """Spins of this process, in C and in Python, that a yield taken by another thread ended
    (YIELD_TAKEN), so far."""
    return _py_given_up + (_c_given_up() if _c_given_up is not None else 0)


def _read_composed(epfd: int, fd: int, seconds: float, size: int) -> bytes | None:
    """read_ready of a _spin built before it had one."""
    assert _wait_readable is not None
    if not _wait_readable(epfd, seconds):
        return None
    try:
        return os.read(fd, size)
    except (BlockingIOError, InterruptedError):
        return b""


def _load_c_read() -> Callable[[int, int, float, int], bytes | None] | None:
    if _wait_readable is None:
        return None
    try:
        from ._spin import read_ready
    except ImportError:
        return _read_composed
    return read_ready


read_ready = _load_c_read()
"""``read_ready(epfd, fd, seconds, size)``: one read of ``fd`` and, when it found nothing,
:func:`wait_readable` on ``epfd`` and one more, in one call without the GIL: None when the time
ran out, b"" when ``fd`` had nothing (another descriptor's event) or its stream ended; None as a
whole without the compiled helper."""


TAKE_SPENT, TAKE_ENOUGH, TAKE_LATE, TAKE_EMPTY, TAKE_STREAK = range(5)
"""take_into's outcomes: a spin ran out; ``enough``; the time was up between reads; a read
found nothing (another descriptor's event, or the stream's end); ``reads`` reads made."""


def _take_composed(
    buf: bytearray, epfd: int, fd: int, seconds: float, size: int, enough: Callable[[bytearray], bool], reads: int
) -> tuple[int, int]:
    """take_into of a _spin built before it had one (read_ready's reads, looped here), with
    the same checks and outcomes."""
    assert read_ready is not None
    if not isinstance(buf, bytearray):
        raise TypeError("take_into: buf must be a bytearray")
    if size <= 0 or reads <= 0:
        raise ValueError("take_into: size and reads must be positive")
    # as the C spin's window: at most a second, and none for a negative or NaN time
    end = time.monotonic() + (min(seconds, 1.0) if seconds >= 0.0 else 0.0)
    made = 0
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return TAKE_LATE, made
        buf.append(0)  # a buf that cannot grow (an export) fails here, before a read takes bytes
        del buf[-1]
        data = read_ready(epfd, fd, left, size)
        if data is None:
            return TAKE_SPENT, made
        if not data:
            return TAKE_EMPTY, made
        buf += data
        made += 1
        if enough(buf):
            return TAKE_ENOUGH, made
        if made >= reads:
            return TAKE_STREAK, made


def _load_c_take() -> Callable[..., tuple[int, int]] | None:
    if read_ready is None:
        return None
    try:
        from ._spin import take_into
    except ImportError:
        return _take_composed
    return take_into


take_into = _load_c_take()
"""``take_into(buf, epfd, fd, seconds, size, enough, reads)``: :func:`read_ready`'s reads
appended to the bytearray ``buf`` until ``enough(buf)``, the time is up, or ``reads`` reads;
``(outcome, reads made)``, one of the ``TAKE_*`` outcomes. A task's reads of its answer, in
one call (the loop in Python cost 1.6-2.0 us of an rpc round trip with erl on the same CPU).
None without the compiled helper."""


def _c_function(name: str) -> Any:
    """``_spin``'s function ``name``; None without the compiled helper, or with one built
    before it had that function."""
    if read_ready is None:
        return None
    from . import _spin

    return getattr(_spin, name, None)


queued: Callable[[int], int] | None = _c_function("queued")
"""``queued(fd)``: the bytes the socket ``fd`` holds unread (FIONREAD); None without the
compiled helper (or with one built before it had it)."""


hold: Callable[[int, float, float, int], int] | None = _c_function("hold")
"""``hold(fd, seconds, gap, enough)``: while the socket ``fd`` holds some bytes but fewer than
``enough`` and their count grew within ``gap`` seconds, wait for more (``seconds`` at most),
without the GIL; then the bytes it holds. None without the compiled helper (or with one
built before it had it)."""


def _load_c_take_own() -> Callable[..., tuple[int, int]] | None:
    if read_ready is None:
        return None
    try:
        from ._spin import take_own
    except ImportError:  # a _spin built before it had one: threads do not read (blocking.py)
        return None
    if "hidden" not in (take_own.__doc__ or ""):  # built before it took it: as if it had none
        return None
    return take_own


take_own = _load_c_take_own()
"""``take_own(buf, epfd, fd, seconds, size, enough, reads, mask, hidden)``: :func:`take_into`
for a thread that reads ``fd`` of the loop whose epoll is ``epfd`` (holding
:attr:`SpinningSelector.idle`). An answer there at once is read; else ``fd`` is masked out of
``epfd`` while it waits (the loop is not woken for it; ``hidden``: it is already,
:meth:`SpinningSelector.hide`) and given ``mask``, its registered events
(:meth:`SpinningSelector.mask_of`), back before the call returns. ``fd`` and ``epfd``
are polled together, ``epfd`` alone (another event for the loop) ends it as ``TAKE_EMPTY``.
The bytes are in ``buf`` even when an exception (a KeyboardInterrupt) comes as the call
returns. None without the compiled helper."""


class _LockWakeup:
    """A binary semaphore: ``set`` by the loop thread on each delivery, ``wait``ed on by a
    receiving thread (a bare lock: one futex operation each way, where threading.Event
    takes two locks and a condition). It cannot spin: a spin in Python holds the GIL."""

    __slots__ = ("_lock",)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._lock.acquire()

    def set(self) -> None:
        try:
            self._lock.release()
        except RuntimeError:  # already set: deliveries before the next wait fold into one
            pass

    def wait(self, timeout: float, spin: float, handoff: bool = False) -> bool:
        """True when set (and unset again), False after ``timeout`` seconds (negative, NaN
        or beyond what a lock takes: forever); ``spin`` and ``handoff`` are the C one's."""
        return self._lock.acquire(timeout=timeout if 0 <= timeout <= threading.TIMEOUT_MAX else -1)


def _wakeup_class() -> Callable[[], Any]:
    if C_SPIN:
        try:
            from ._spin import Wakeup  # Linux: spins without the GIL, then a futex
        except ImportError:  # another POSIX system, or a _spin built before it had one
            return _LockWakeup
        return Wakeup
    return _LockWakeup


Wakeup: Callable[[], Any] = _wakeup_class()
"""What a thread blocked in a receive waits on: ``set()``, ``wait(timeout, spin, handoff=False)
-> bool`` (handoff: the setter is a loop spinning in C, see ``_spin.c``)."""


class SpinningSelector(selectors.BaseSelector):
    """The loop's selector, whose ``select`` polls (yielding the CPU between polls, as erl
    does) for up to ``spin`` seconds before it blocks; the rest is the wrapped selector's."""

    def __init__(self, inner: selectors.BaseSelector, spin: float = DEFAULT_SPIN) -> None:
        self.inner = inner
        self.spin = spin
        self.users = 0  # nodes that asked for it (install/uninstall)
        self.polls = 0
        """Calls of :meth:`select`, one per loop iteration: whether the loop ran meanwhile."""
        self.spent = -1
        """A task spun for this loop until its spin ran out (Channel.read_inline) when
        ``polls`` was this: the next select sleeps at once, one spin per idle moment."""
        self.gate = SpinGate()
        """Whether the loop's idle moments spin (a task's wait for an answer has its own)."""
        self.given_up = 0
        """Spins in Python that another thread's turn on this CPU ended (YIELD_TAKEN); the
        compiled spin counts its own (``_spin.given_up()``)."""
        self.idle = threading.Lock()
        """Held by the loop's thread except while it waits in :meth:`select` (from its first
        one, or from :func:`install`): another thread that takes it, never blocking, may
        act for the idle loop for a moment (a BlockingNode receive that reads its answer
        itself: ``Connection.take_in_thread``); the loop's select returns once it is free."""
        self._idle_owned = False  # the loop's thread holds ``idle``
        # the epoll object under an EpollSelector, to ask what is ready without taking it
        # (level-triggered: the loop's next poll finds the same events)
        epoll_type = getattr(selectors, "EpollSelector", None)
        raw = getattr(inner, "_selector", None) if epoll_type and isinstance(inner, epoll_type) else None
        self._ready_now: Callable[[float], list[tuple[int, int]]] | None = getattr(raw, "poll", None)
        self._epoll: Any = raw  # (and to hide a descriptor from the loop's poll: hide, show)
        # the selector's keys by descriptor (a plain dict in the stdlib's selectors: one
        # lookup where get_map().get takes four Python calls), read while the loop waits
        self._keys: Any = getattr(inner, "_fd_to_key", None)
        if not isinstance(self._keys, dict):
            self._keys = inner.get_map()
        fileno: Callable[[], int] | None = getattr(inner, "fileno", None)
        # epoll, kqueue and devpoll selectors have a descriptor, readable when events are ready
        self.hidden: dict[int, float] = {}
        """Descriptors a thread hid from the loop's poll (:meth:`hide`), with when."""
        self.wake: Callable[[], None] | None = None
        """Wakes the loop from its select (its self-pipe's write: :func:`install`)."""
        self._wakes_by = _INF  # when the loop's current select ends at the latest
        self._asked = -_INF  # when a thread last asked to hide a descriptor
        self._show_all = False  # a thread asked the loop to show all it hid (show_hidden)
        self._c_wait = _wait_readable if fileno is not None else None
        self.spin_fd = fileno() if fileno is not None and self._c_wait is not None else -1
        """The descriptor :func:`wait_readable` may spin on for this loop's events (readable
        when any is ready); -1 without the compiled helper or a selector descriptor. (An
        attribute, not a property: every inline read looks it up.)"""

    def others_ready(self, fd: int) -> bool:
        """Whether the loop has an event to handle now other than ``fd`` being readable
        (another descriptor's, or ``fd`` writable for its transport's buffer): asked by a
        reader that has read ``fd`` on its own for a while, for one system call where the
        loop's turn costs a whole iteration. True when the selector cannot say."""
        ready_now = self._ready_now
        if ready_now is None:
            return True
        for f, events in ready_now(0):
            if f != fd or events != _EPOLLIN:
                return True
        return False

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self.inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        key = self.inner.unregister(fileobj)
        self.hidden.pop(key.fd, None)
        return key

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        key = self.inner.modify(fileobj, events, data)
        if self.hidden:  # (the loop's change of a hidden one shows it: events may be as before)
            self.show(key.fd)
        return key

    def hide(self, fd: int) -> bool:
        """Holding :attr:`idle`, in another thread: mask ``fd`` out of the loop's epoll
        until :meth:`show` (that thread reads the answer it is about to ask for; the loop,
        on another CPU, would be woken for it and take the GIL from the thread at every
        answer). False when it cannot (no epoll, ``fd`` not registered)."""
        mask = self.mask_of(fd)
        if mask < 0 or mask & _EPOLLOUT:  # (a writer of the loop's waits for it: not hidden)
            return False
        now = time.monotonic()
        self._asked = now
        if fd not in self.hidden:
            if self._wakes_by - now > HIDE_BOUND:
                # the loop sleeps longer than a hidden descriptor may wait: not this time;
                # woken, it sleeps no longer than that while threads ask (select)
                if self.wake is not None:
                    self.wake()
                return False
            self.hidden[fd] = now  # (first: an interrupt between the two leaves it shown later)
            try:
                self._epoll.modify(fd, 0)
            except OSError:
                del self.hidden[fd]
                return False
        self.hidden[fd] = now
        return True

    def show(self, fd: int) -> None:
        """Holding :attr:`idle` (or in the loop): give a hidden ``fd`` its registered events
        back. A descriptor the loop no longer has is only forgotten."""
        if fd not in self.hidden:
            return
        mask = self.mask_of(fd)
        if mask >= 0:
            try:
                self._epoll.modify(fd, mask)
            except OSError:  # (closed under the selector: the loop's own poll meets that)
                pass
        self.hidden.pop(fd, None)  # (last: an interrupt before it leaves it shown again later)

    def show_hidden(self) -> None:
        """From a thread about to wait for the loop's delivery: whatever threads hid goes
        back to the loop's poll, at once when the loop is idle, else as it next selects."""
        if not self.hidden:
            return
        self._show_all = True
        if self.idle.acquire(False):
            try:
                self._show_stale()
            finally:
                self.idle.release()
        elif self.wake is not None:  # the loop at work, or another thread for it: the loop,
            self.wake()  # once it has the lock

    def _show_stale(self) -> None:
        """Holding :attr:`idle`: show what stayed hidden for HIDE_BOUND (nobody came back
        for it), or all of it when a thread asked (:meth:`show_hidden`)."""
        if self._show_all:
            self._show_all = False
            limit = _INF
        else:
            limit = time.monotonic() - HIDE_BOUND
        for fd, since in list(self.hidden.items()):
            if since <= limit:
                self.show(fd)

    def get_key(self, fileobj: Any) -> selectors.SelectorKey:
        return self.inner.get_key(fileobj)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self.inner.get_map()

    def close(self) -> None:
        self.inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        idle = self.idle
        if self._show_all:
            self._show_stale()
        now = time.monotonic()
        if (timeout is None or timeout > HIDE_BOUND) and (self.hidden or now - self._asked < ASK_LINGER):
            timeout = HIDE_BOUND  # (a thread's hide is undone within HIDE_BOUND or two)
        # (a thread that would hide while this sleeps longer wakes it instead: hide; set
        # before the idle lock goes, which such a thread holds while it looks)
        self._wakes_by = _INF if timeout is None else now + timeout
        if self._idle_owned:
            self._idle_owned = False
            idle.release()
        try:
            return self._select(timeout)
        finally:
            idle.acquire()  # (another thread that acts for the loop has let go)
            self._idle_owned = True
            if self.hidden:
                self._show_stale()

    def mask_of(self, fd: int) -> int:
        """The epoll events the loop has ``fd`` registered with, for a thread that holds
        :attr:`idle` and reads ``fd`` itself (``take_own`` masks it out while it waits, so
        that the loop is not woken for those bytes, and puts this back; unchanged
        meanwhile: the loop waits for :attr:`idle` to change it). -1 when it cannot (no
        epoll, or ``fd`` is not registered)."""
        key = self._keys.get(fd) if self._epoll is not None else None
        if key is None:
            return -1
        return (_EPOLLIN if key.events & selectors.EVENT_READ else 0) | (
            _EPOLLOUT if key.events & selectors.EVENT_WRITE else 0
        )

    def own_idle(self) -> None:
        """In the loop's thread, running: hold :attr:`idle` (see there) from now on."""
        if not self._idle_owned:
            self.idle.acquire()
            self._idle_owned = True

    def _select(self, timeout: float | None) -> list[tuple[selectors.SelectorKey, int]]:
        global _py_given_up
        polls = self.polls
        self.polls = polls + 1
        poll = self.inner.select
        if timeout is not None and timeout <= 0:
            return poll(0)
        if self.spent == polls:  # spun already, on a task: sleep now
            return poll(timeout)
        spin = self.spin
        gate = self.gate
        # a spin that a timer cuts short says nothing of whether spins pay, nor is it a probe
        whole = timeout is None or spin <= timeout
        if not (gate.allow() if whole else gate.open):
            return poll(timeout)
        if not whole:
            spin = timeout  # type: ignore[assignment]
        if self._c_wait is not None:
            return self._select_c(self._c_wait, spin, timeout, whole)
        now = time.perf_counter
        start = now()
        end = start + spin
        first = True
        while True:
            ready = poll(0)
            if ready:
                if whole and not first:  # an event there at once needed no spin: no outcome
                    gate.outcome(True)
                return ready
            first = False
            t = now()
            if t >= end:
                if whole:
                    gate.outcome(False)
                break
            if _sched_yield is not None:
                _sched_yield()  # another runnable process (say, the erl we wait for) goes first
                if now() - t >= YIELD_TAKEN:  # it did, for a while: this CPU is busy
                    _py_given_up += 1
                    self.given_up += 1
                    if whole:
                        gate.outcome(False)
                    break
        if timeout is None:
            return poll(None)
        left = timeout - (t - start)
        return poll(left) if left > 0 else []

    def _select_c(
        self, wait: Callable[[int, float], bool], spin: float, timeout: float | None, whole: bool
    ) -> list[tuple[selectors.SelectorKey, int]]:
        poll, fd = self.inner.select, self.spin_fd
        clock = time.perf_counter
        start = clock()
        hit = wait(fd, spin)
        # an event there at once (the first poll, within AT_ONCE) needed no spin: no outcome
        if whole and (not hit or clock() - start > AT_ONCE):
            self.gate.outcome(hit)
        if hit:
            return poll(0)
        if timeout is None:
            return poll(None)
        left = timeout - (clock() - start)
        return poll(left) if left > 0 else []


def install(loop: asyncio.AbstractEventLoop | None, spin: float = DEFAULT_SPIN) -> SpinningSelector | None:
    """Wrap ``loop``'s selector (a selector-based asyncio loop only: uvloop and trio have
    none) so it spins before it sleeps; returns the wrapper, to :func:`uninstall` later, or
    None when the loop cannot take one or ``spin`` is 0."""
    if loop is None or spin <= 0:
        return None
    sel = getattr(loop, "_selector", None)
    if isinstance(sel, SpinningSelector):
        sel.users += 1
        sel.spin = max(sel.spin, spin)
        sel.own_idle()
        return sel
    if not isinstance(sel, selectors.BaseSelector):
        return None
    wrapper = SpinningSelector(sel, spin)
    wrapper.users = 1
    wrapper.wake = getattr(loop, "_write_to_self", None)
    wrapper.own_idle()  # (called in the loop, which runs)
    loop._selector = wrapper  # type: ignore[attr-defined]
    return wrapper


def uninstall(loop: asyncio.AbstractEventLoop | None, wrapper: SpinningSelector | None) -> None:
    """Undo one :func:`install`; the last one puts the loop's own selector back."""
    if loop is None or wrapper is None:
        return
    wrapper.users -= 1
    own, show, hidden = wrapper.inner, wrapper.show, list(wrapper.hidden)
    if wrapper.users <= 0 and getattr(loop, "_selector", None) is wrapper:
        for fd in hidden:  # (the loop's own selector does not know of them)
            show(fd)
        loop._selector = own  # type: ignore[attr-defined]  # asyncio's own attribute


def new_event_loop(spin: float = DEFAULT_SPIN) -> asyncio.AbstractEventLoop:
    """An asyncio loop whose selector spins for ``spin`` seconds before it sleeps (for
    ``asyncio.Runner(loop_factory=...)`` or anyio's ``backend_options``)."""
    wrapper = SpinningSelector(selectors.DefaultSelector(), spin)
    wrapper.users = 1  # the loop's own: the last node to leave does not take it away
    loop = asyncio.SelectorEventLoop(wrapper)
    wrapper.wake = getattr(loop, "_write_to_self", None)
    return loop
