from collections.abc import Callable

def wait_readable(fd: int, seconds: float, /) -> bool:
    """Poll ``fd`` without the GIL until it is readable (True) or ``seconds`` pass (False);
    False sooner when a yield between polls gave the CPU to another thread for a while."""

def read_ready(epfd: int, fd: int, seconds: float, size: int, /) -> bytes | None:
    """One read of up to ``size`` bytes from ``fd``; when it found nothing,
    ``wait_readable(epfd, seconds)`` and one more: None when the time ran out, b"" when
    ``fd`` had nothing or its stream ended."""

def take_into(
    buf: bytearray, epfd: int, fd: int, seconds: float, size: int, enough: Callable[[bytearray], bool], reads: int, /
) -> tuple[int, int]:
    """read_ready's reads appended to ``buf`` until ``enough(buf)``, the time is up, or
    ``reads`` reads: (outcome, reads made), busywait's ``TAKE_*`` outcomes."""

def take_own(
    buf: bytearray,
    epfd: int,
    fd: int,
    seconds: float,
    size: int,
    enough: Callable[[bytearray], bool],
    reads: int,
    mask: int,
    hidden: bool,
    /,
) -> tuple[int, int]:
    """take_into for a thread that reads ``fd`` of the loop whose epoll is ``epfd``: while it
    waits, ``fd`` is masked out of ``epfd`` (``mask``, its registered events, is put back
    before it returns; ``hidden``: it is masked out already, since the thread's request,
    and is left so: the caller shows it); ``fd`` and ``epfd`` polled together; ``epfd``
    alone ends it as TAKE_EMPTY."""

def queued(fd: int, /) -> int:
    """The bytes the socket ``fd`` holds unread (FIONREAD); OSError when it cannot say."""

def hold(fd: int, seconds: float, gap: float, enough: int, /) -> int:
    """While the socket ``fd`` holds some bytes but fewer than ``enough`` and their count grew
    within ``gap`` seconds, wait for more (``seconds`` at most), without the GIL; then the
    bytes it holds. OSError when it cannot say."""

def holds_cut() -> int:
    """Holds ended early, since import, because a yield gave the CPU away for a while."""

def given_up() -> int:
    """Spins ended early, since import, because a yield gave the CPU away for a while."""

class Wakeup:
    """Linux only: a binary semaphore whose wait spins without the GIL, then sleeps."""

    def set(self) -> None: ...
    def wait(self, timeout: float, spin: float, handoff: bool = False, /) -> bool: ...
