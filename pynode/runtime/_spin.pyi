def wait_readable(fd: int, seconds: float, /) -> bool:
    """Poll ``fd`` without the GIL until it is readable (True) or ``seconds`` pass (False)."""
