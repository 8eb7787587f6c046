"""A cluster of real erl nodes and pynode nodes behind the partition proxy, driven from
plain (blocking) test code, and always stopped.

    with Cluster(erl=3, py=2, net_ticktime=4) as c:
        c.connect_all(); c.wait_full_mesh()
        c.partition(c.nodes[:2], c.nodes[2:])
        c.wait_split(c.nodes[:2], c.nodes[2:])
        c.heal(); c.connect_all(); c.wait_full_mesh()

Each cluster has private node names (a random prefix) and its own cookie; its nodes register
with its own :class:`~pynode.epmd.proxy.PartitionProxy` (or a plain EPMD server with
``proxy=False``), which runs in a thread of this process.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from anyio.from_thread import BlockingPortal, start_blocking_portal

from ..blocking import BlockingNode
from ..epmd.proxy import PartitionProxy
from ..epmd.server import EpmdServer
from ..term import Atom
from .erlnode import ErlNode
from .otp import Otp, find_otp

__all__ = [
    "Cluster",
    "ClusterNode",
    "ErlClusterNode",
    "PyClusterNode",
    "ProxyThread",
    "wait_for",
]

log = logging.getLogger("pynode.testing")

T = TypeVar("T")

#: How often wait_for polls its condition (seconds).
POLL_INTERVAL = 0.05


def wait_for(
    condition: Callable[[], T], timeout: float = 30.0, what: str = "the condition"
) -> T:
    """Poll ``condition`` until it returns something true (returned); TimeoutError after
    ``timeout`` seconds. Bounded in time; an exception in the condition propagates."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(POLL_INTERVAL)


class ProxyThread:
    """A :class:`PartitionProxy` (or plain :class:`EpmdServer`) served by a thread of ours.

    Its methods are the proxy's, called thread-safely: cut, heal, shape, unshape, status.
    """

    def __init__(self, *, proxy: bool = True, control: bool = True, **kwargs: Any) -> None:
        self._portal_cm: AbstractContextManager[BlockingPortal] = start_blocking_portal()
        self._portal = self._portal_cm.__enter__()
        try:
            if proxy:
                server: EpmdServer = PartitionProxy(
                    port=0, control_port=0 if control else None, **kwargs
                )
            else:
                server = EpmdServer(port=0, **kwargs)
            self._server_cm = self._portal.wrap_async_context_manager(server)
            self.server = self._server_cm.__enter__()
        except BaseException:
            self._portal_cm.__exit__(None, None, None)
            raise
        self.port = self.server.port

    @property
    def proxy(self) -> PartitionProxy:
        if not isinstance(self.server, PartitionProxy):
            raise RuntimeError("this cluster runs a plain EPMD, not the partition proxy")
        return self.server

    @property
    def control_port(self) -> int | None:
        return self.proxy.control_port

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn`` in the proxy's event loop."""
        return self._portal.call(lambda: fn(*args, **kwargs))

    def cut(self, a: Iterable[Any], b: Iterable[Any], *, one_way: bool = False) -> None:
        self.call(self.proxy.cut, [str(x) for x in a], [str(x) for x in b], one_way=one_way)

    def heal(self, a: Iterable[Any] | None = None, b: Iterable[Any] | None = None) -> None:
        self.call(
            self.proxy.heal,
            None if a is None else [str(x) for x in a],
            None if b is None else [str(x) for x in b],
        )

    def shape(self, a: Iterable[Any], b: Iterable[Any], **kwargs: Any) -> None:
        self.call(self.proxy.shape, [str(x) for x in a], [str(x) for x in b], **kwargs)

    def unshape(self, a: Iterable[Any] | None = None, b: Iterable[Any] | None = None) -> None:
        self.call(
            self.proxy.unshape,
            None if a is None else [str(x) for x in a],
            None if b is None else [str(x) for x in b],
        )

    def status(self) -> dict[str, Any]:
        return self.call(self.proxy.status)

    def names(self) -> list[tuple[str, int]]:
        return self.call(self.server.names)

    def close(self) -> None:
        try:
            self._server_cm.__exit__(None, None, None)
        finally:
            self._portal_cm.__exit__(None, None, None)


class ClusterNode:
    """One node of a cluster: its name, what it sees, and the node events it saw."""

    name: Atom
    kind: str

    def nodes(self) -> set[str]:
        """The visible nodes it is connected to now (erl's ``nodes()``)."""
        raise NotImplementedError

    def connect(self, other: ClusterNode | str, timeout: float = 10.0) -> bool:
        """Connect to ``other`` (net_kernel:connect_node); True when connected."""
        raise NotImplementedError

    def events(self) -> list[tuple[str, str, float]]:
        """Every ``("nodeup" | "nodedown", node, monotonic time)`` seen since it started."""
        raise NotImplementedError

    def downs(self, since: float = 0.0) -> set[str]:
        """Nodes it saw go down since the monotonic time ``since``."""
        return {n for kind, n, t in self.events() if kind == "nodedown" and t >= since}

    def stop(self) -> None:
        raise NotImplementedError

    def __str__(self) -> str:
        return str(self.name)

    def __repr__(self) -> str:
        return f"<{self.kind} node {self.name}>"


# The watcher keeps node events in the erl node with erlang:monotonic_time in ms; the
# oracle reports the node's own monotonic clock so times can be mapped to ours.
_WATCH = r"""
Watch = fun Loop(Acc) ->
    receive
        {nodeup, N, _} -> Loop([{nodeup, N, erlang:monotonic_time(millisecond)} | Acc]);
        {nodedown, N, _} -> Loop([{nodedown, N, erlang:monotonic_time(millisecond)} | Acc]);
        {get, From, Ref} -> From ! {Ref, lists:reverse(Acc)}, Loop(Acc)
    end
end,
Pid = spawn(fun() ->
    ok = net_kernel:monitor_nodes(true, [{node_type, visible}]),
    Watch([])
end),
register(pynode_watch, Pid),
ok.
"""

_EVENTS = r"""
Ref = make_ref(),
pynode_watch ! {get, self(), Ref},
receive {Ref, L} -> {erlang:monotonic_time(millisecond), L} after 10000 -> timeout end.
"""


class _EpmdEnv:
    """What ErlNode needs of an EPMD: the environment that points erl at it."""

    def __init__(self, port: int) -> None:
        import os

        self.port = port
        self.env = {**os.environ, "ERL_EPMD_PORT": str(port)}


class ErlClusterNode(ClusterNode):
    """A real ``erl`` node of the cluster; ``run("Erlang expression.")`` evaluates there."""

    kind = "erl"

    def __init__(
        self,
        otp: Otp,
        epmd_port: int,
        *,
        name: str,
        cookie: str,
        args: Sequence[str],
        host: str = "127.0.0.1",
    ):
        self.erl = ErlNode(
            otp, _EpmdEnv(epmd_port), name=name, cookie=cookie, args=list(args), host=host  # type: ignore[arg-type]
        )
        self.name = self.erl.name
        try:
            self.erl.run(_WATCH)
        except BaseException:
            self.stop()
            raise

    def run(self, text: str, **bindings: Any) -> Any:
        return self.erl.run(text, **bindings)

    def nodes(self) -> set[str]:
        return {str(n) for n in self.erl.run("nodes().")}

    def connect(self, other: ClusterNode | str, timeout: float = 10.0) -> bool:
        return bool(self.erl.run("net_kernel:connect_node(N).", N=Atom(str(other))))

    def events(self) -> list[tuple[str, str, float]]:
        reply = self.erl.run(_EVENTS)
        if reply == "timeout":
            raise TimeoutError(f"{self.name}: the node event watcher did not answer")
        now_ms, events = reply
        # map the node's monotonic clock onto ours (the call took a moment: good enough)
        offset = time.monotonic() - now_ms / 1000.0
        return [(str(kind), str(node), t / 1000.0 + offset) for kind, node, t in events]

    def stop(self) -> None:
        try:
            self.erl.kill()
        finally:
            self.erl.close()


class PyClusterNode(ClusterNode):
    """A pynode node of the cluster (visible, so erl's ``nodes()`` lists it); ``node`` is
    its :class:`~pynode.blocking.BlockingNode`."""

    kind = "py"

    def __init__(self, epmd_port: int, *, name: str, cookie: str, net_ticktime: float):
        self.node = BlockingNode(
            name,
            cookie,
            hidden=False,
            epmd_port=epmd_port,
            net_ticktime=net_ticktime,
        ).start()
        self.name = self.node.name
        self._events: list[tuple[str, str, float]] = []
        node = self.node.node
        assert node is not None
        started: list[bool] = []

        async def watch() -> None:
            async with node.node_events() as events:
                started.append(True)
                async for event in events:
                    self._events.append((str(event[0]), str(event[1]), time.monotonic()))

        try:
            self.node.run(lambda: node.start_soon(watch))
            wait_for(lambda: started, 10.0, "the node event watcher")
        except BaseException:
            self.stop()
            raise

    def nodes(self) -> set[str]:
        return {str(n) for n in self.node.nodes()}

    def connect(self, other: ClusterNode | str, timeout: float = 10.0) -> bool:
        return self.node.ping(str(other), timeout)

    def events(self) -> list[tuple[str, str, float]]:
        return list(self._events)

    def stop(self) -> None:
        self.node.stop()


class Cluster:
    """``erl`` real erl nodes and ``py`` pynode nodes on one proxy, private names and cookie.

    ``otp``: an :class:`Otp`, a path to ``erl``, or None (``$PYNODE_ERL``, else PATH).
    ``net_ticktime``: for every node (erl's ``-kernel net_ticktime``). ``erl_args`` are added
    to every erl. ``prevent_overlapping_partitions``: set it on the erl nodes (None: the
    release's default, false on OTP 25, true from OTP 26). ``proxy=False`` uses a plain
    EPMD server (no partitions); ``proxy_options`` go to PartitionProxy (pending_timeout...).
    """

    def __init__(
        self,
        erl: int = 0,
        py: int = 0,
        *,
        otp: Otp | str | None = None,
        net_ticktime: int = 60,
        prevent_overlapping_partitions: bool | None = None,
        erl_args: Sequence[str] = (),
        cookie: str | None = None,
        prefix: str | None = None,
        proxy: bool = True,
        proxy_options: dict[str, Any] | None = None,
        host: str = "127.0.0.1",
    ) -> None:
        self.cookie = cookie or secrets.token_hex(12)
        self.prefix = prefix or f"c{secrets.token_hex(3)}"
        self.net_ticktime = net_ticktime
        self.host = host
        self.nodes: list[ClusterNode] = []
        self._otp_spec = otp
        self._erl_args = list(erl_args)
        if prevent_overlapping_partitions is not None:
            value = "true" if prevent_overlapping_partitions else "false"
            self._erl_args += ["-kernel", "prevent_overlapping_partitions", value]
        self.epmd = ProxyThread(proxy=proxy, **(proxy_options or {}))
        try:
            for _ in range(erl):
                self.add_erl()
            for _ in range(py):
                self.add_py()
        except BaseException:
            self.close()
            raise

    @property
    def otp(self) -> Otp:
        if not isinstance(self._otp_spec, Otp):
            self._otp_spec = find_otp(self._otp_spec)
        return self._otp_spec

    @property
    def proxy(self) -> ProxyThread:
        return self.epmd

    def _name(self, kind: str) -> str:
        return f"{self.prefix}{kind}{len(self.nodes) + 1}"

    def add_erl(self, args: Sequence[str] = ()) -> ErlClusterNode:
        """Start one more erl node (extra ``args`` for it alone)."""
        node = ErlClusterNode(
            self.otp,
            self.epmd.port,
            name=self._name("erl"),
            cookie=self.cookie,
            args=["-kernel", "net_ticktime", str(self.net_ticktime), *self._erl_args, *args],
            host=self.host,
        )
        self.nodes.append(node)
        return node

    def add_py(self) -> PyClusterNode:
        """Start one more pynode node (visible)."""
        node = PyClusterNode(
            self.epmd.port,
            name=f"{self._name('py')}@{self.host}",
            cookie=self.cookie,
            net_ticktime=self.net_ticktime,
        )
        self.nodes.append(node)
        return node

    @property
    def erl_nodes(self) -> list[ErlClusterNode]:
        return [n for n in self.nodes if isinstance(n, ErlClusterNode)]

    @property
    def py_nodes(self) -> list[PyClusterNode]:
        return [n for n in self.nodes if isinstance(n, PyClusterNode)]

    def node(self, name: str) -> ClusterNode:
        for n in self.nodes:
            if str(n.name) == name or str(n.name).partition("@")[0] == name:
                return n
        raise KeyError(name)

    # -- the mesh --------------------------------------------------------------------------
    def connect_all(self, timeout: float = 30.0) -> None:
        """Every node connects to every other one it does not see (bounded in time)."""
        deadline = time.monotonic() + timeout
        for a in self.nodes:
            for b in self.nodes:
                if a is b or str(b.name) in a.nodes():
                    continue
                left = max(1.0, deadline - time.monotonic())
                a.connect(b, timeout=min(10.0, left))

    def full_mesh(self) -> bool:
        """Whether every node sees every other one."""
        names = {str(n.name) for n in self.nodes}
        return all(n.nodes() >= names - {str(n.name)} for n in self.nodes)

    def wait_full_mesh(self, timeout: float = 60.0, reconnect: bool = True) -> None:
        """Wait until every node sees every other (connecting the missing pairs again and
        again when ``reconnect``)."""

        def check() -> bool:
            if self.full_mesh():
                return True
            if reconnect:
                try:
                    self.connect_all(timeout=10.0)
                except Exception as e:  # a peer still setting up: try again
                    log.info("connect_all: %s", e)
            return self.full_mesh()

        wait_for(check, timeout, "a full mesh")

    def views(self) -> dict[str, set[str]]:
        """What each node sees now."""
        return {str(n.name): n.nodes() for n in self.nodes}

    def split(self, a: Iterable[ClusterNode], b: Iterable[ClusterNode]) -> bool:
        """Whether no node of ``a`` sees a node of ``b`` and no node of ``b`` one of ``a``."""
        a, b = list(a), list(b)
        an, bn = {str(n.name) for n in a}, {str(n.name) for n in b}
        return all(not (n.nodes() & bn) for n in a) and all(not (n.nodes() & an) for n in b)

    def wait_split(
        self, a: Iterable[ClusterNode], b: Iterable[ClusterNode], timeout: float = 60.0
    ) -> float:
        """Wait until the islands no longer see each other; the seconds it took."""
        a, b = list(a), list(b)
        t0 = time.monotonic()
        wait_for(lambda: self.split(a, b), timeout, f"the split of {a} and {b}")
        return time.monotonic() - t0

    # -- the proxy -------------------------------------------------------------------------
    def partition(
        self, a: Iterable[ClusterNode | str], b: Iterable[ClusterNode | str], *, one_way: bool = False
    ) -> float:
        """Cut the islands apart at the proxy; the monotonic time of the cut."""
        t = time.monotonic()
        self.epmd.cut(a, b, one_way=one_way)
        return t

    def heal(
        self, a: Iterable[ClusterNode | str] | None = None, b: Iterable[ClusterNode | str] | None = None
    ) -> None:
        """Undo cuts (all of them when no islands are given)."""
        self.epmd.heal(a, b)

    def shape(self, a: Iterable[ClusterNode | str], b: Iterable[ClusterNode | str], **kwargs: Any) -> None:
        """Latency / jitter / bandwidth between islands (see PartitionProxy.shape)."""
        self.epmd.shape(a, b, **kwargs)

    def status(self) -> dict[str, Any]:
        return self.epmd.status()

    # -- lifetime --------------------------------------------------------------------------
    def close(self) -> None:
        """Stop every node, then the proxy; errors are logged, never raised half-way."""
        for n in reversed(self.nodes):
            try:
                n.stop()
            except Exception as e:
                log.warning("stopping %s: %s", n.name, e)
        self.nodes.clear()
        try:
            self.epmd.close()
        except Exception as e:
            log.warning("stopping the proxy: %s", e)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
