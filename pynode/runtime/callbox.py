"""One process shared by many concurrent calls, each answer handed straight to its caller.

erpc:call's answer (the spawned process's 'DOWN', or a spawn error) names the request ref, so
one pid can make any number of calls at once, as one erl process can. A call then costs no
mailbox of its own (a pid, its registration, its teardown) and no selective receive: the
answer goes from the connection to the waiting task.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import anyio

from ..term import Pid, Reference
from .errors import MailboxClosed
from .mailbox import Mailbox
from .signals import DOWN, SPAWN_ERROR

if TYPE_CHECKING:
    from .node import Node


class _Slot:
    """A call's waiter where there are no asyncio futures (trio): an event and the answer."""

    __slots__ = ("event", "answer")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.answer: Any = None

    def done(self) -> bool:
        return self.event.is_set()

    def set_result(self, answer: Any) -> None:
        self.answer = answer
        self.event.set()

    def set_exception(self, exc: BaseException) -> None:
        self.answer = exc
        self.event.set()


class CallBox(Mailbox):
    """A mailbox whose messages are answers to calls, routed by their ref (the second element
    of ``('DOWN', Ref, process, Pid, Reason)`` and ``(SPAWN_ERROR, Ref, Reason)``). Anything
    else, or the answer to a call given up, is dropped: nobody waits for it.

    It traps exits, as rex does: a link exit or exit/2 (but kill) from any peer would
    otherwise fail every call of the node in flight, not just one caller's."""

    def __init__(self, node: Node, pid: Pid, *, loop: asyncio.AbstractEventLoop | None = None) -> None:
        super().__init__(node, pid, loop=loop)
        self._calls: dict[Reference, Any] = {}
        self.trap_exit = True  # ('EXIT', From, Reason) names no call: dropped

    def expect(self, ref: Reference) -> Any:
        """Wait for the answer naming ``ref`` (call before the request can be answered)."""
        self._check_open()
        w = self._loop.create_future() if self._loop is not None else _Slot()
        self._calls[ref] = w
        return w

    async def answer(self, ref: Reference, waiter: Any, timeout: float | None) -> Any:
        """The answer ``waiter`` (from :meth:`expect`) gets; TimeoutError after ``timeout``.
        The call is forgotten either way: a later answer is dropped."""
        try:
            if timeout is None:
                return await self._wait(waiter)
            with anyio.fail_after(timeout):
                return await self._wait(waiter)
        finally:
            self._calls.pop(ref, None)

    def answered(self, ref: Reference, waiter: Any) -> Any:
        """The answer a done ``waiter`` holds, as :meth:`answer` would return it: for a call
        answered while its task read the socket, without an await (two coroutines fewer)."""
        self._calls.pop(ref, None)
        if type(waiter) is _Slot:
            if isinstance(waiter.answer, BaseException):
                raise waiter.answer
            return waiter.answer
        return waiter.result()

    @staticmethod
    async def _wait(waiter: Any) -> Any:
        if type(waiter) is _Slot:
            await waiter.event.wait()
            if isinstance(waiter.answer, BaseException):
                raise waiter.answer
            return waiter.answer
        return await waiter

    def forget(self, ref: Reference) -> None:
        """Nobody waits for ``ref`` any more."""
        self._calls.pop(ref, None)

    def _deliver(self, message: Any) -> None:
        # only an answer ends a call: a peer may send the box anything, even naming a call
        if type(message) is tuple and (
            (len(message) == 5 and message[0] == DOWN) or (len(message) == 3 and message[0] is SPAWN_ERROR)
        ) and type(message[1]) is Reference:
            w = self._calls.pop(message[1], None)
            if w is not None and not w.done():
                w.set_result(message)

    def _closed_by_node(self, reason: Any) -> None:
        super()._closed_by_node(reason)
        calls, self._calls = self._calls, {}
        for w in calls.values():
            if not w.done():
                w.set_exception(MailboxClosed(reason))
