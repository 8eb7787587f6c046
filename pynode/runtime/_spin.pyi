def wait_readable(fd: int, seconds: float, /) -> bool:
    """Poll ``fd`` without the GIL until it is readable (True) or ``seconds`` pass (False)."""

class Wakeup:
    """Linux only: a binary semaphore whose wait spins without the GIL, then sleeps."""

    def set(self) -> None: ...
    def wait(self, timeout: float, spin: float, handoff: bool = False, /) -> bool: ...
