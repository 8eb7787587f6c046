"""A blocking API for plain scripts and threads: the node runs in its own event-loop thread.

    with BlockingNode("py@127.0.0.1", cookie="secret") as node:
        node.ping("erl@127.0.0.1")
        box = node.mailbox("inbox")
        box.send(("shell", "erl@127.0.0.1"), "hello")
        print(box.receive(timeout=5))

Every call is thread-safe: it is carried out in the node's event loop.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

from anyio.from_thread import BlockingPortal, start_blocking_portal

from .runtime.mailbox import Mailbox
from .runtime.node import Node
from .term import Atom, Pid


class BlockingMailbox:
    """The blocking face of a :class:`~pynode.runtime.Mailbox`."""

    def __init__(self, portal: BlockingPortal, mailbox: Mailbox) -> None:
        self._portal = portal
        self.async_mailbox = mailbox

    @property
    def pid(self) -> Pid:
        return self.async_mailbox.pid

    @property
    def name(self) -> Atom | None:
        return self.async_mailbox.name

    def send(self, dest: Any, message: Any) -> None:
        self._portal.call(self.async_mailbox.send, dest, message)

    def receive(self, timeout: float | None = None, match: Callable[[Any], bool] | None = None) -> Any:
        """Block until a (matching) message arrives; TimeoutError after ``timeout`` seconds."""
        return self._portal.call(self.async_mailbox.receive, timeout, match)

    def close(self, reason: Any = None) -> None:
        if reason is None:
            self._portal.call(self.async_mailbox.close)
        else:
            self._portal.call(self.async_mailbox.close, reason)

    def __enter__(self) -> BlockingMailbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class BlockingNode:
    """A :class:`~pynode.runtime.Node` driven from synchronous code (any thread).

    Arguments are those of ``Node``; ``backend`` picks the event loop ("asyncio" or "trio").
    """

    def __init__(self, *args: Any, backend: str = "asyncio", **kwargs: Any) -> None:
        self._args = args
        self._kwargs = kwargs
        self._backend = backend
        self._portal_cm: AbstractContextManager[BlockingPortal] | None = None
        self._portal: BlockingPortal | None = None
        self.node: Node | None = None
        self._node_cm: AbstractContextManager[Node]

    def start(self) -> BlockingNode:
        self._portal_cm = start_blocking_portal(self._backend)
        self._portal = self._portal_cm.__enter__()
        try:
            # entered and exited in one task of the loop, as the node's task group requires
            self._node_cm = self._portal.wrap_async_context_manager(Node(*self._args, **self._kwargs))
            self.node = self._node_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            self._portal = None
            raise
        return self

    def stop(self) -> None:
        if self._portal is None or self.node is None:
            return
        try:
            self._node_cm.__exit__(None, None, None)
        finally:
            assert self._portal_cm is not None
            self._portal_cm.__exit__(None, None, None)
            self._portal = None

    def __enter__(self) -> BlockingNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._portal is None:
            raise RuntimeError("the node is not started")
        return self._portal.call(fn, *args)

    @property
    def name(self) -> Atom:
        assert self.node is not None
        return self.node.name

    def mailbox(self, name: str | None = None) -> BlockingMailbox:
        assert self.node is not None and self._portal is not None
        return BlockingMailbox(self._portal, self._call(self.node.mailbox, name))

    def ping(self, node: str, timeout: float = 10.0) -> bool:
        assert self.node is not None
        return bool(self._call(self.node.ping, node, timeout))

    def send(self, dest: Any, message: Any) -> None:
        assert self.node is not None
        self._call(self.node.send, dest, message)

    def nodes(self) -> list[Atom]:
        assert self.node is not None
        return list(self._call(self.node.nodes))

    def connect(self, node: str, address: tuple[str, int] | None = None) -> None:
        assert self.node is not None
        self._call(lambda: self.node.connect(node, address=address))  # type: ignore[union-attr]

    def rpc(
        self, node: str, module: str, function: str, args: list[Any] | tuple[Any, ...] = (),
        timeout: float | None = None,
    ) -> Any:
        """``erpc:call``; raises RemoteError, RpcTimeout or NoConnection like ``Node.rpc``."""
        assert self.node is not None
        n = self.node
        return self._call(lambda: n.rpc(node, module, function, args, timeout=timeout))

    def gen_call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
        """``gen_server:call``."""
        assert self.node is not None
        return self._call(self.node.call, dest, request, timeout)

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run any function or coroutine function of the async API in the node's loop."""
        return self._call(fn, *args)
