"""A partition proxy: an EPMD stand-in whose look-ups lead through a forwarder we control.

Nodes register with it unchanged (ERL_EPMD_PORT). PORT_PLEASE2 (and TRANSPORTS_REQ) answer
the port of a fresh one-shot proxy listener instead of the node's own port, as dergraf's
EPMDPXY does; the connection made to it is forwarded to the real node and known by both node
names, read off the handshake as it passes (:mod:`pynode.protocol.handshake_names`).
Between named nodes the proxy can then cut traffic both ways or one way (bytes are held, not
dropped, and sockets stay open: ticks time out and both sides see nodedown, as in a real
partition), heal, add latency, jitter and a bandwidth limit, and report every link.

Additions to EPMDPXY: one-way cuts, shaping, live status and a JSON control port, look-ups
never followed by a connect expire (bounded), registrations from other hosts (opt-in), and
new connections made during a cut are held too (their setup times out, as across a real
partition)::

    async with PartitionProxy(port=0, control_port=0) as proxy:
        ...                                  # start nodes with ERL_EPMD_PORT=proxy.port
        proxy.cut(["a", "b"], ["c", "d", "e"])
        proxy.heal()

Control port protocol: one JSON object per connection, ending with a newline, answered by
one JSON line ``{"ok": true, "result": ...}`` or ``{"ok": false, "error": "..."}``; ``op`` is
one of status, cut, heal, shape, unshape (see :meth:`PartitionProxy.control`).
"""

from __future__ import annotations

import ipaddress
import json
import logging
import random
import socket
import time
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Final

import anyio
from anyio.abc import SocketAttribute, SocketListener, SocketStream, TaskGroup
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..protocol.epmd import ALIVE2_REQ, NodeEntry, encode_port2_response, parse_request
from ..protocol.epmd import PortPlease2Request as _PortPlease2
from ..protocol.epmd_ext import TransportsRequest, encode_nodes_response, parse_ext_request
from ..protocol.errors import EpmdProtocolError
from ..protocol.handshake_names import ACCEPTOR, DIALER, NameSniffer
from .core import EpmdCore, Outcome
from .server import DEFAULT_PACKET_TIMEOUT, EpmdServer, EpmdServerError

__all__ = [
    "PartitionProxy",
    "Link",
    "Shape",
    "ProxyError",
    "DEFAULT_PENDING_TIMEOUT",
    "DEFAULT_MAX_PENDING",
    "control_request",
    "node_matches",
]

log = logging.getLogger("pynode.epmd.proxy")

#: A look-up is followed by a connect at once; OTP gives the whole connection setup
#: net_setuptime (7 s by default), so a proxy listener unused for longer than this is
#: closed (EPMDPXY keeps it forever).
DEFAULT_PENDING_TIMEOUT: Final = 10.0
#: At most this many proxy listeners wait for their connect at once (each is a descriptor;
#: epmd itself caps its connections at FD_SETSIZE - 1 = 1023). Look-ups beyond it are
#: answered "not registered" until some expire.
DEFAULT_MAX_PENDING: Final = 256
#: Bytes read from one side and not yet written to the other (held by a cut or by shaping)
#: are capped per direction; beyond it we stop reading and TCP pushes back. OTP's
#: distribution buffer busy limit is 1 MiB (+zdbbl); we hold a few times that.
MAX_HELD_CHUNKS: Final = 16
#: One read from a socket (at most); 16 of them are the 4 MiB held per direction.
CHUNK: Final = 262144
#: Connecting to the real node; OTP's net_setuptime default.
UPSTREAM_CONNECT_TIMEOUT: Final = 7.0
#: The control port reads one request line of at most this many bytes, within this time.
MAX_CONTROL_BYTES: Final = 65536
CONTROL_TIMEOUT: Final = 10.0

_CLOSED = (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError)


class ProxyError(Exception):
    """A bad proxy request (unknown op, bad island, bad shaping value) or a failed control call."""


def node_matches(spec: str, name: str | None) -> bool:
    """A spec names a node by its full name (``a@host``) or by its alive part (``a``)."""
    if not name:
        return False
    return spec == name or ("@" not in spec and name.partition("@")[0] == spec)


def _same(x: str, y: str) -> bool:
    """Whether two specs may name the same node (``a`` and ``a@host`` do)."""
    if x == y:
        return True
    if "@" in x and "@" in y:
        return False
    return x.partition("@")[0] == y.partition("@")[0]


def _island(nodes: str | Iterable[Any]) -> list[str]:
    if isinstance(nodes, str):
        nodes = [nodes]
    out = [str(n) for n in nodes]
    if not out or any(not n for n in out):
        raise ProxyError("an island is a non-empty list of node names")
    return out


@dataclass(frozen=True)
class Shape:
    """Added delay (seconds, each chunk delayed ``latency`` +- ``jitter``, order kept) and a
    bandwidth limit (bytes per second, 0 = none) for one direction of a link."""

    latency: float = 0.0
    jitter: float = 0.0
    bandwidth: float = 0.0

    def __post_init__(self) -> None:
        for what in ("latency", "jitter", "bandwidth"):
            value = getattr(self, what)
            if not isinstance(value, (int, float)) or value < 0 or value != value:
                raise ProxyError(f"{what} must be a number >= 0, not {value!r}")
        if self.latency > 3600 or self.jitter > 3600:
            raise ProxyError("latency and jitter are capped at 3600 s")

    def delay(self) -> float:
        if not self.jitter:
            return self.latency
        return max(0.0, self.latency + random.uniform(-self.jitter, self.jitter))

    def to_dict(self) -> dict[str, float]:
        return {"latency": self.latency, "jitter": self.jitter, "bandwidth": self.bandwidth}


class _Direction:
    """One way of a link: whether it flows, its shaping, and its counters."""

    def __init__(self) -> None:
        self.open = True
        self.shape: Shape | None = None
        self.bytes = 0
        self.held = 0
        self.queued = 0  # chunks queued for the writer or in its hands
        self.ended = False  # its source closed
        self._changed = anyio.Event()

    def set(self, open_: bool, shape: Shape | None) -> None:
        self.shape = shape
        if open_ != self.open:
            self.open = open_
            self._changed.set()
            self._changed = anyio.Event()

    async def wait_open(self) -> None:
        while not self.open:
            await self._changed.wait()


class Link:
    """One proxied connection: the dialing node (``dialer``) to the node looked up
    (``acceptor``). Directions are ``forward`` (dialer to acceptor) and ``back``."""

    _ids = 0

    def __init__(self, acceptor_alive: str, upstream: tuple[str, int]) -> None:
        Link._ids += 1
        self.id = Link._ids
        self.acceptor_alive = acceptor_alive
        self.acceptor: str | None = None
        self.dialer: str | None = None
        self.upstream = upstream
        self.since = time.time()
        self.state_since = self.since
        self.forward = _Direction()
        self.back = _Direction()
        self.scope: anyio.CancelScope | None = None
        self._state = "open"

    @property
    def acceptor_name(self) -> str:
        """The full name once the challenge passed, else the alive part looked up."""
        return self.acceptor or self.acceptor_alive

    @property
    def state(self) -> str:
        f, b = self.forward.open, self.back.open
        if f and b:
            return "open"
        if not f and not b:
            return "cut"
        return "one-way cut (dialer to acceptor blocked)" if not f else (
            "one-way cut (acceptor to dialer blocked)"
        )

    def refresh(self, proxy: PartitionProxy) -> None:
        """Apply the proxy's rules to this link (after a rule change or a name was learnt)."""
        a, b = self.dialer, self.acceptor_name
        self.forward.set(not proxy.blocked(a, b), proxy.shape_of(a, b))
        self.back.set(not proxy.blocked(b, a), proxy.shape_of(b, a))
        state = self.state
        if state != self._state:
            self._state = state
            self.state_since = time.time()
            log.info("link %s <-> %s: %s", a or "?", b, state)

    def to_dict(self) -> dict[str, Any]:
        now = time.time()
        return {
            "id": self.id,
            "dialer": self.dialer,
            "acceptor": self.acceptor_name,
            "state": self.state,
            "since": self.since,
            "state_since": self.state_since,
            "age": round(now - self.since, 3),
            "bytes_to_acceptor": self.forward.bytes,
            "bytes_to_dialer": self.back.bytes,
            "held_to_acceptor": self.forward.held,
            "held_to_dialer": self.back.held,
            "shape_to_acceptor": self.forward.shape.to_dict() if self.forward.shape else None,
            "shape_to_dialer": self.back.shape.to_dict() if self.back.shape else None,
            "upstream": f"{self.upstream[0]}:{self.upstream[1]}",
        }


class _ProxyCore(EpmdCore):
    """EPMD semantics, except that look-ups answer a proxy listener's port."""

    def __init__(self, proxy: PartitionProxy, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.proxy = proxy
        self._owner: Hashable | None = None

    def handle(self, body: bytes, *, local: bool, owner: Hashable, fd: int = -1) -> Outcome:
        self._owner = owner
        if body[:1] == bytes([ALIVE2_REQ]) and self.proxy.allow_remote_register:
            local = True  # a trusted test network: nodes on other hosts register here
        try:
            return super().handle(body, local=local, owner=owner, fd=fd)
        finally:
            self._owner = None

    def _port_please(self, body: bytes) -> Outcome:
        try:
            req = parse_request(body)
        except EpmdProtocolError as e:
            return Outcome(note=f"invalid node name in PORT2_REQ: {e}")
        assert isinstance(req, _PortPlease2)
        entry = self.registry.lookup(req.name)
        if entry is not None:
            entry = self.proxy._proxied(entry, self._owner)
        return Outcome(encode_port2_response(entry))

    def _extension(self, body: bytes, local: bool, owner: Hashable) -> Outcome:
        try:
            req = parse_ext_request(body)
        except EpmdProtocolError:
            req = None
        if isinstance(req, TransportsRequest):
            # Only the primary transport is proxied: the others would bypass the proxy.
            entry = self.registry.lookup(req.name)
            proxied = self.proxy._proxied(entry, owner) if entry is not None else None
            return Outcome(encode_nodes_response([proxied] if proxied is not None else []))
        return super()._extension(body, local, owner)


class PartitionProxy(EpmdServer):
    """An EPMD server whose look-ups go through controllable forwarders (see the module).

    ``proxy_host``: where proxy listeners bind; None binds each on the address the look-up
    arrived on (so peers on other hosts reach it). ``control_port``: the JSON control port
    on ``control_host`` (loopback by default; None = no control port, 0 = any free port).
    ``pending_timeout``/``max_pending``: see DEFAULT_PENDING_TIMEOUT/DEFAULT_MAX_PENDING.
    ``allow_remote_register``: accept ALIVE2 from other hosts (EPMD refuses it); the
    registrant's address is then where its connections are forwarded. Other arguments
    are :class:`EpmdServer`'s.
    """

    def __init__(
        self,
        host: str | Sequence[str] | None = "127.0.0.1",
        port: int = 0,
        *,
        proxy_host: str | None = None,
        control_host: str = "127.0.0.1",
        control_port: int | None = None,
        pending_timeout: float = DEFAULT_PENDING_TIMEOUT,
        max_pending: int = DEFAULT_MAX_PENDING,
        allow_remote_register: bool = False,
        packet_timeout: float = DEFAULT_PACKET_TIMEOUT,
        **kwargs: Any,
    ) -> None:
        super().__init__(host, port, packet_timeout=packet_timeout, **kwargs)
        base = self.core
        self.core = _ProxyCore(
            self,
            self.registry,
            epmd_port=port,
            relaxed_command_check=base.relaxed_command_check,
            extensions=base.extensions,
            is_gone=base.is_gone,
        )
        self.proxy_host = proxy_host
        self.control_host = control_host
        self._control_requested = control_port
        self.control_port: int | None = None
        self.pending_timeout = pending_timeout
        self.max_pending = max_pending
        self.allow_remote_register = allow_remote_register
        self.links: dict[int, Link] = {}
        self.pending: dict[int, tuple[str, int, float]] = {}  # port -> (name, upstream port, t)
        self.expired = 0
        self.refused = 0
        self._cuts: set[tuple[str, str]] = set()
        self._shapes: dict[tuple[str, str], Shape] = {}
        self._control: SocketListener | None = None

    # -- lifetime ----------------------------------------------------------------------
    async def __aenter__(self) -> PartitionProxy:
        if getattr(SocketListener, "from_socket", None) is None:  # pragma: no cover
            raise EpmdServerError("the partition proxy needs anyio >= 4.7")
        await super().__aenter__()
        if self._control_requested is not None:
            try:
                multi = await anyio.create_tcp_listener(
                    local_host=self.control_host, local_port=self._control_requested
                )
            except OSError as e:
                await super().__aexit__(None, None, None)
                raise EpmdServerError(
                    f"cannot listen for control on {self.control_host}:"
                    f"{self._control_requested}: {e}"
                ) from e
            self._control = multi.listeners[0]  # type: ignore[assignment]
            assert self._control is not None
            self.control_port = int(self._control.extra(SocketAttribute.local_port))
            assert self._inner is not None
            self._inner.start_soon(self._control_loop, self._control)
            log.info("proxy control on %s:%d", self.control_host, self.control_port)
        return self

    @property
    def _tasks(self) -> TaskGroup:
        if self._inner is None:
            raise EpmdServerError("the proxy is not running")
        return self._inner

    # -- rules -------------------------------------------------------------------------
    def cut(
        self, island_a: str | Iterable[Any], island_b: str | Iterable[Any], *, one_way: bool = False
    ) -> None:
        """Stop traffic between the islands (``one_way``: only from ``island_a`` to ``island_b``).

        Bytes in flight are held and sockets stay open, so ticks time out on both sides;
        connections made during the cut are held as well.
        """
        a, b = _island(island_a), _island(island_b)
        for x in a:
            for y in b:
                self._cuts.add((x, y))
                if not one_way:
                    self._cuts.add((y, x))
        log.info("cut %s %s %s", a, "->" if one_way else "<->", b)
        self._refresh()

    def heal(
        self,
        island_a: str | Iterable[Any] | None = None,
        island_b: str | Iterable[Any] | None = None,
    ) -> None:
        """Undo cuts between the islands (both ways), or every cut when none are given.

        Held bytes flow on; nodes that already saw nodedown reconnect when something sends
        (or the test connects them).
        """
        if island_a is None and island_b is None:
            self._cuts.clear()
        else:
            if island_a is None or island_b is None:
                raise ProxyError("heal takes two islands, or none to heal everything")
            a, b = _island(island_a), _island(island_b)
            self._cuts = {
                (x, y)
                for x, y in self._cuts
                if not (
                    (any(_same(x, n) for n in a) and any(_same(y, n) for n in b))
                    or (any(_same(x, n) for n in b) and any(_same(y, n) for n in a))
                )
            }
        log.info("heal %s", "everything" if island_a is None else f"{island_a} <-> {island_b}")
        self._refresh()

    def shape(
        self,
        island_a: str | Iterable[Any],
        island_b: str | Iterable[Any],
        *,
        latency: float = 0.0,
        jitter: float = 0.0,
        bandwidth: float = 0.0,
        one_way: bool = False,
    ) -> None:
        """Delay (and limit) traffic between the islands, on links open now and later."""
        a, b = _island(island_a), _island(island_b)
        spec = Shape(float(latency), float(jitter), float(bandwidth))
        for x in a:
            for y in b:
                self._shapes[(x, y)] = spec
                if not one_way:
                    self._shapes[(y, x)] = spec
        self._refresh()

    def unshape(
        self,
        island_a: str | Iterable[Any] | None = None,
        island_b: str | Iterable[Any] | None = None,
    ) -> None:
        """Remove shaping between the islands (both ways), or everywhere."""
        if island_a is None or island_b is None:
            self._shapes.clear()
        else:
            a, b = _island(island_a), _island(island_b)
            for x, y in list(self._shapes):
                if (any(_same(x, n) for n in a) and any(_same(y, n) for n in b)) or (
                    any(_same(x, n) for n in b) and any(_same(y, n) for n in a)
                ):
                    del self._shapes[(x, y)]
        self._refresh()

    def blocked(self, src: str | None, dst: str | None) -> bool:
        """Whether traffic from node ``src`` to node ``dst`` is cut now."""
        return any(node_matches(x, src) and node_matches(y, dst) for x, y in self._cuts)

    def shape_of(self, src: str | None, dst: str | None) -> Shape | None:
        for (x, y), spec in self._shapes.items():
            if node_matches(x, src) and node_matches(y, dst):
                return spec
        return None

    def _refresh(self) -> None:
        for link in list(self.links.values()):
            link.refresh(self)

    # -- status ------------------------------------------------------------------------
    def status(self) -> dict[str, Any]:
        """Every link (names, state, bytes each way, since), the rules, pending look-ups."""
        now = time.monotonic()
        return {
            "epmd_port": self.port,
            "control_port": self.control_port,
            "nodes": [{"name": n, "port": p} for n, p in self.names()],
            "links": [link.to_dict() for link in self.links.values()],
            "cuts": sorted([x, y] for x, y in self._cuts),
            "shapes": [
                {"from": x, "to": y, **s.to_dict()} for (x, y), s in sorted(self._shapes.items())
            ],
            "pending": [
                {"port": port, "node": name, "waiting": round(now - t, 3)}
                for port, (name, _up, t) in self.pending.items()
            ],
            "expired_lookups": self.expired,
            "refused_lookups": self.refused,
        }

    def link_between(self, a: str, b: str) -> list[Link]:
        """Links (either way round) between the nodes ``a`` and ``b``."""
        return [
            link
            for link in self.links.values()
            if (node_matches(a, link.dialer) and node_matches(b, link.acceptor_name))
            or (node_matches(b, link.dialer) and node_matches(a, link.acceptor_name))
        ]

    def control(self, request: dict[str, Any]) -> Any:
        """Carry out one control request (the control port's, as a Python dict)."""
        if not isinstance(request, dict):
            raise ProxyError("a control request is a JSON object")
        op = request.get("op")
        a, b = request.get("a"), request.get("b")
        one_way = bool(request.get("one_way", False))
        if op == "status":
            return self.status()
        if op == "cut":
            if a is None or b is None:
                raise ProxyError("cut needs islands 'a' and 'b'")
            self.cut(a, b, one_way=one_way)
            return None
        if op == "heal":
            self.heal(a, b)
            return None
        if op == "shape":
            if a is None or b is None:
                raise ProxyError("shape needs islands 'a' and 'b'")
            self.shape(
                a,
                b,
                latency=request.get("latency", 0.0),
                jitter=request.get("jitter", 0.0),
                bandwidth=request.get("bandwidth", 0.0),
                one_way=one_way,
            )
            return None
        if op == "unshape":
            self.unshape(a, b)
            return None
        raise ProxyError(f"unknown op {op!r} (status, cut, heal, shape, unshape)")

    async def _control_loop(self, listener: SocketListener) -> None:
        try:
            while True:
                try:
                    stream = await listener.accept()
                except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                    return
                except OSError as e:
                    log.warning("control accept: %s", e)
                    await anyio.sleep(0.1)
                    continue
                self._tasks.start_soon(self._control_conn, stream)
        finally:
            await anyio.aclose_forcefully(listener)

    async def _control_conn(self, stream: SocketStream) -> None:
        try:
            buf = b""
            with anyio.move_on_after(CONTROL_TIMEOUT):
                while b"\n" not in buf and len(buf) <= MAX_CONTROL_BYTES:
                    try:
                        data = await stream.receive(CHUNK)
                    except _CLOSED:
                        break
                    buf += data
            line = buf.split(b"\n", 1)[0]
            try:
                if len(line) > MAX_CONTROL_BYTES:
                    raise ProxyError(f"request longer than {MAX_CONTROL_BYTES} bytes")
                try:
                    request = json.loads(line.decode("utf-8"))
                except (UnicodeDecodeError, ValueError) as e:
                    raise ProxyError(f"request is not JSON: {e}") from None
                reply: dict[str, Any] = {"ok": True, "result": self.control(request)}
            except ProxyError as e:
                reply = {"ok": False, "error": str(e)}
            with anyio.move_on_after(CONTROL_TIMEOUT):
                await stream.send(json.dumps(reply).encode() + b"\n")
        except _CLOSED:
            pass
        finally:
            await anyio.aclose_forcefully(stream)

    # -- look-ups ----------------------------------------------------------------------
    def _upstream_host(self, name: str, owner_default: str = "127.0.0.1") -> str:
        record = self.registry.get(name)
        owner = record.owner if record is not None else None
        peer = getattr(owner, "peer", None)
        if isinstance(peer, str) and peer != "?":
            try:
                ip = ipaddress.ip_address(peer.split("%", 1)[0])
            except ValueError:
                return owner_default
            if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
                return str(ip.ipv4_mapped)
            return peer
        return owner_default

    def _bind_host(self, owner: Hashable | None) -> str:
        if self.proxy_host is not None:
            return self.proxy_host
        stream = getattr(owner, "stream", None)
        if stream is not None:
            try:
                here = stream.extra(SocketAttribute.local_address)
                if isinstance(here, tuple):
                    return str(here[0])
            except Exception:
                pass
        return "127.0.0.1"

    def _proxied(self, entry: NodeEntry, owner: Hashable | None) -> NodeEntry | None:
        """Open a one-shot proxy listener for a look-up of ``entry``; its entry, or None."""
        if self._inner is None:
            return None
        if len(self.pending) >= self.max_pending:
            self.refused += 1
            log.warning(
                "look-up of %r refused: %d look-ups wait for their connect (max_pending)",
                entry.name,
                len(self.pending),
            )
            return None
        host = self._bind_host(owner)
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
            family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
            sock = socket.socket(family, socket.SOCK_STREAM)
        except (ValueError, OSError) as e:
            log.warning("cannot make a proxy listener on %s: %s", host, e)
            return None
        try:
            sock.bind((host, 0))
            sock.listen(1)
            sock.setblocking(False)
        except OSError as e:
            sock.close()
            log.warning("cannot make a proxy listener on %s: %s", host, e)
            return None
        port = int(sock.getsockname()[1])
        upstream = (self._upstream_host(entry.name), entry.port)
        self.pending[port] = (entry.name, entry.port, time.monotonic())
        self._inner.start_soon(self._serve_once, sock, port, entry.name, upstream)
        log.info("look-up of %r: proxy port %d -> %s:%d", entry.name, port, *upstream)
        return NodeEntry(
            entry.name,
            port,
            entry.node_type,
            entry.protocol,
            entry.highest,
            entry.lowest,
            entry.extra,
        )

    async def _serve_once(
        self, sock: socket.socket, port: int, name: str, upstream: tuple[str, int]
    ) -> None:
        """Accept the one connection a look-up announced, within pending_timeout."""
        stream: SocketStream | None = None
        try:
            try:
                listener = await SocketListener.from_socket(sock)  # type: ignore[attr-defined]
            except BaseException:
                sock.close()
                raise
            try:
                with anyio.move_on_after(self.pending_timeout):
                    stream = await listener.accept()
            finally:
                await anyio.aclose_forcefully(listener)
        except _CLOSED as e:
            log.info("proxy listener for %r failed: %s", name, e)
        finally:
            self.pending.pop(port, None)
        if stream is None:
            self.expired += 1
            log.info(
                "look-up of %r was not followed by a connect within %.1f s; closed port %d",
                name,
                self.pending_timeout,
                port,
            )
            return
        await self._run_link(stream, name, upstream)

    # -- forwarding --------------------------------------------------------------------
    async def _run_link(self, down: SocketStream, name: str, upstream: tuple[str, int]) -> None:
        link = Link(name, upstream)
        self.links[link.id] = link
        link.refresh(self)
        try:
            try:
                with anyio.fail_after(UPSTREAM_CONNECT_TIMEOUT):
                    up = await anyio.connect_tcp(*upstream)
            except (OSError, TimeoutError) as e:
                log.info("cannot reach %r at %s:%d: %s", name, *upstream, e)
                return
            try:
                async with anyio.create_task_group() as tg:
                    link.scope = tg.cancel_scope
                    fwd_s, fwd_r = anyio.create_memory_object_stream[tuple[float, bytes]](
                        MAX_HELD_CHUNKS
                    )
                    back_s, back_r = anyio.create_memory_object_stream[tuple[float, bytes]](
                        MAX_HELD_CHUNKS
                    )
                    tg.start_soon(self._reader, link, down, up, link.forward, fwd_s, DIALER)
                    tg.start_soon(self._writer, link, up, link.forward, fwd_r)
                    tg.start_soon(self._reader, link, up, down, link.back, back_s, ACCEPTOR)
                    tg.start_soon(self._writer, link, down, link.back, back_r)
            finally:
                await anyio.aclose_forcefully(up)
        except Exception:  # one link never takes the proxy down
            log.exception("link %s failed", link.id)
        finally:
            await anyio.aclose_forcefully(down)
            self.links.pop(link.id, None)
            log.info("link %s <-> %s closed", link.dialer or "?", link.acceptor_name)

    async def _reader(
        self,
        link: Link,
        src: SocketStream,
        dst: SocketStream,
        way: _Direction,
        out: MemoryObjectSendStream[tuple[float, bytes]],
        side: str,
    ) -> None:
        sniffer: NameSniffer | None = NameSniffer(side)
        try:
            async with out:
                while True:
                    try:
                        data = await src.receive(CHUNK)
                    except _CLOSED:
                        break
                    if sniffer is not None:
                        found = sniffer.receive_data(data)
                        if found is not None:
                            if side == DIALER:
                                link.dialer = found
                            else:
                                link.acceptor = found
                            link.refresh(self)
                        if sniffer.done:
                            sniffer = None
                    if way.open and way.shape is None and not way.queued:
                        # the fast path: nothing to hold or delay, nothing queued before it
                        way.bytes += len(data)  # counted as handed over, before the await
                        try:
                            await dst.send(data)
                        except _CLOSED:
                            break
                        continue
                    way.held += len(data)
                    way.queued += 1
                    await out.send((time.monotonic(), data))
        finally:
            way.ended = True
            other = link.back if way is link.forward else link.forward
            if other.ended and link.scope is not None:
                link.scope.cancel()  # both sides closed: nothing left to hold

    async def _writer(
        self,
        link: Link,
        dst: SocketStream,
        way: _Direction,
        inbox: MemoryObjectReceiveStream[tuple[float, bytes]],
    ) -> None:
        due = 0.0
        free_at = 0.0
        async with inbox:
            async for stamp, data in inbox:
                await way.wait_open()
                shape = way.shape
                if shape is not None and (shape.latency or shape.jitter):
                    due = max(due, stamp + shape.delay())
                    wait = due - time.monotonic()
                    if wait > 0:
                        await anyio.sleep(wait)
                        await way.wait_open()
                view = memoryview(data)
                while view:
                    rate = way.shape.bandwidth if way.shape is not None else 0.0
                    piece = view if not rate else view[: max(1, int(rate / 10))]
                    if rate:
                        wait = free_at - time.monotonic()
                        if wait > 0:
                            await anyio.sleep(wait)
                    way.bytes += len(piece)
                    way.held -= len(piece)
                    try:
                        await dst.send(bytes(piece))
                    except _CLOSED:
                        assert link.scope is not None
                        link.scope.cancel()
                        return
                    if rate:
                        free_at = max(free_at, time.monotonic()) + len(piece) / rate
                    view = view[len(piece) :]
                way.queued -= 1
        # the source closed: pass the close on once this way is open again (a cut holds it)
        await way.wait_open()
        assert link.scope is not None
        link.scope.cancel()


def control_request(
    request: dict[str, Any], port: int, host: str = "127.0.0.1", timeout: float = 10.0
) -> Any:
    """Send one request to a running proxy's control port (blocking); its result.

    Raises ProxyError when the proxy refuses it or cannot be reached.
    """
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.sendall(json.dumps(request).encode() + b"\n")
            buf = b""
            deadline = time.monotonic() + timeout
            while b"\n" not in buf:
                if time.monotonic() > deadline or len(buf) > 64 * 1024 * 1024:
                    raise ProxyError("no complete answer from the proxy")
                data = s.recv(65536)
                if not data:
                    break
                buf += data
    except OSError as e:
        raise ProxyError(f"cannot reach the proxy control port {host}:{port}: {e}") from None
    try:
        reply = json.loads(buf.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise ProxyError(f"bad answer from the proxy: {buf[:200]!r}") from None
    if not isinstance(reply, dict) or not reply.get("ok"):
        raise ProxyError(str(reply.get("error") if isinstance(reply, dict) else reply))
    return reply.get("result")
