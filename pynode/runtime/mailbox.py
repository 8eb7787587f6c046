"""Mailboxes: a pid, an optional registered name, and a selective receive."""

from __future__ import annotations

from collections import deque
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING, Any

import anyio

from ..term import Atom, Pid

if TYPE_CHECKING:
    from .node import Node

_NO_MATCH = object()
_NORMAL = Atom("normal")


class MailboxClosed(Exception):
    """The mailbox was closed (by ``close``, an exit signal, or its node stopping)."""

    def __init__(self, reason: Any) -> None:
        self.reason = reason
        super().__init__(f"mailbox closed: {reason!r}")


class Mailbox:
    """A Python process as erl sees it: messages arrive in order, receive can be selective.

    ``receive(match=...)`` takes the first message ``match`` accepts and leaves the others
    queued in their order, like Erlang's receive with patterns.
    """

    def __init__(self, node: Node, pid: Pid, name: Atom | None = None) -> None:
        self.node = node
        self.pid = pid
        self.name = name
        self._queue: deque[Any] = deque()
        self._arrived = anyio.Event()
        self._closed_reason: Any = None
        self.trap_exit = False

    def __repr__(self) -> str:
        name = f" {self.name}" if self.name else ""
        return f"<Mailbox{name} {self.pid.node}.{self.pid.id}.{self.pid.serial}>"

    # -- delivery (called by the node, in its event loop) ----------------------------------
    def _deliver(self, message: Any) -> None:
        if self._closed_reason is not None:
            return
        self._queue.append(message)
        self._arrived.set()

    # -- receiving --------------------------------------------------------------------------
    def _take(self, match: Callable[[Any], bool] | None, start: int) -> Any:
        q = self._queue
        if match is None:
            return q.popleft() if q else _NO_MATCH
        for i in range(start, len(q)):
            m = q[i]
            if match(m):
                del q[i]
                return m
        return _NO_MATCH

    def receive_nowait(self, match: Callable[[Any], bool] | None = None) -> Any:
        """The first (matching) message; raise ``anyio.WouldBlock`` when there is none."""
        self._check_open()
        m = self._take(match, 0)
        if m is _NO_MATCH:
            raise anyio.WouldBlock
        return m

    async def receive(
        self, timeout: float | None = None, match: Callable[[Any], bool] | None = None
    ) -> Any:
        """Wait for the first message (that ``match`` accepts); TimeoutError after ``timeout``."""
        with anyio.fail_after(timeout):
            scanned = 0
            while True:
                self._check_open()
                m = self._take(match, scanned)
                if m is not _NO_MATCH:
                    return m
                scanned = len(self._queue)
                if self._arrived.is_set():
                    self._arrived = anyio.Event()
                    continue
                await self._arrived.wait()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            try:
                yield await self.receive()
            except MailboxClosed:
                return

    def __len__(self) -> int:
        return len(self._queue)

    def _check_open(self) -> None:
        if self._closed_reason is not None:
            raise MailboxClosed(self._closed_reason)

    @property
    def closed(self) -> bool:
        return self._closed_reason is not None

    # -- sending and lifetime ---------------------------------------------------------------
    async def send(self, dest: Any, message: Any) -> None:
        """Send ``message`` to a Pid, a registered name, or ``(name, node)``, from this pid."""
        await self.node.send(dest, message, sender=self.pid)

    def register(self, name: str) -> None:
        """Register this mailbox under ``name`` on its node."""
        self.node.register(name, self)

    def close(self, reason: Any = _NORMAL) -> None:
        """Close the mailbox: its pid stops existing, links and monitors fire with ``reason``."""
        if self._closed_reason is None:
            self._closed_reason = reason
            self._arrived.set()
            self.node._mailbox_closed(self, reason)

    def _closed_by_node(self, reason: Any) -> None:
        if self._closed_reason is None:
            self._closed_reason = reason
            self._arrived.set()

    async def __aenter__(self) -> Mailbox:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()
