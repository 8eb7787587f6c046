"""One distribution connection: handshake driving, buffered writes, reads, ticks."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import anyio
from anyio.abc import ByteStream

from ..protocol._common import NO_PAYLOAD, NeedData
from ..protocol.control import ControlMessage
from ..protocol.errors import HandshakeError, ProtocolError
from ..protocol.flags import DFlag
from ..protocol.framing import ConnectionClosed, DistConnection, Message, Tick
from ..protocol.handshake import HandshakeFailed, handshake_failure
from ..term import Atom

log = logging.getLogger("pynode.connection")

HIGH_WATER = 1024 * 1024
"""Buffered outgoing bytes above which ``send`` waits for the writer to drain."""


class ConnectionLost(Exception):
    """The connection to a node went down (closed, timed out, or a protocol error)."""


async def drive_handshake(
    hs: Any, stream: ByteStream, setup_time: float, on_event: Callable[[Any], Any]
) -> Any:
    """Run a sans-IO handshake over ``stream`` until it completes; each step is bounded.

    ``on_event`` gets the events that need a decision (name received, status, alive...) and
    may be async. Returns the HandshakeComplete event; raises HandshakeError.
    """
    from ..protocol.handshake import HandshakeComplete

    while True:
        out = hs.data_to_send()
        if out:
            await stream.send(out)
        ev = hs.next_event()
        if isinstance(ev, NeedData):
            out = hs.data_to_send()
            if out:
                await stream.send(out)
            try:
                with anyio.fail_after(setup_time):
                    data = await stream.receive(65536)
            except TimeoutError:
                raise HandshakeError(
                    "timeout", f"handshake step timed out after {setup_time} s ({hs.state})"
                ) from None
            except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
                data = b""
            if data:
                hs.receive_data(data)
            else:
                hs.receive_eof()
            continue
        if isinstance(ev, HandshakeFailed):
            error = handshake_failure(ev)
            if error.reason != "bad_cookie":
                out = hs.data_to_send()
                if out:
                    try:
                        await stream.send(out)
                    except (anyio.BrokenResourceError, OSError):
                        pass
            raise error
        if isinstance(ev, HandshakeComplete):
            out = hs.data_to_send()
            if out:
                await stream.send(out)
            return ev
        r = on_event(ev)
        if hasattr(r, "__await__"):
            await r


class Connection:
    """The connected phase with one peer. Writes are buffered and flushed by one task, so
    ``send_nowait`` never blocks and messages keep their order."""

    def __init__(
        self,
        peer: Atom,
        stream: ByteStream,
        flags: DFlag,
        peer_creation: int,
        *,
        initial_data: bytes,
        max_packet: int,
        max_message: int,
        net_ticktime: float,
        tick_intensity: int,
        dispatch: Callable[[Connection, Message], None],
        on_down: Callable[[Connection, Any], None],
        fragment_size: int = 64 * 1024,
    ) -> None:
        self.peer = peer
        self.stream = stream
        self.flags = flags
        self.peer_creation = peer_creation
        self.dist = DistConnection(
            flags, max_packet=max_packet, max_message=max_message, fragment_size=fragment_size
        )
        self._initial = initial_data
        self.net_ticktime = net_ticktime
        self.tick_intensity = tick_intensity
        self._dispatch = dispatch
        self._on_down = on_down
        self._out: list[bytes] = []
        self._out_size = 0
        self._wake_writer = anyio.Event()
        self._drained = anyio.Event()
        self._drained.set()
        self._wrote = False
        self._busy = False  # someone is writing to the socket (the writer task or ``send``)
        self._last_read = time.monotonic()
        self._down = False
        self.down_reason: Any = None
        self._scope: anyio.CancelScope | None = None
        self.hidden = not (flags & DFlag.PUBLISHED)

    def __repr__(self) -> str:
        return f"<Connection {self.peer} {'up' if not self._down else 'down'}>"

    @property
    def alive(self) -> bool:
        return not self._down

    # -- sending ----------------------------------------------------------------------------
    def send_nowait(self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD) -> None:
        """Queue one message for the writer (never blocks; see ``send`` for backpressure)."""
        if self._down:
            raise ConnectionLost(f"connection to {self.peer} is down: {self.down_reason}")
        packets = self.dist.send_packets(control, payload)
        if len(packets) == 1:
            self._out.append(packets[0])
            self._out_size += len(packets[0])
        else:
            self._out.extend(packets)
            self._out_size += sum(map(len, packets))
        if not self._wake_writer.is_set():
            self._wake_writer.set()
        if self._out_size > HIGH_WATER and self._drained.is_set():
            self._drained = anyio.Event()

    async def send(self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD) -> None:
        """Queue one message for the writer task, which sends everything queued in one write
        (batching beats a write per message: a send syscall costs more than the encoding);
        waits while too much is buffered for a slow peer."""
        self.send_nowait(control, payload)
        if self._out_size > HIGH_WATER:
            await self._drained.wait()

    async def _writer(self) -> None:
        while True:
            if not self._out or self._busy:
                self._wake_writer = anyio.Event()
                await self._wake_writer.wait()
                continue
            self._busy = True
            try:
                chunks, self._out = self._out, []
                self._out_size = 0
                data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                await self.stream.send(data)
            finally:
                self._busy = False
            self._wrote = True
            if self._out_size <= HIGH_WATER:
                self._drained.set()

    # -- receiving --------------------------------------------------------------------------
    async def _reader(self) -> None:
        dist = self.dist
        if self._initial:
            dist.receive_data(self._initial)
            self._initial = b""
            self._process()
        while True:
            try:
                data = await self.stream.receive(262144)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError):
                data = b""
            self._last_read = time.monotonic()
            if data:
                dist.receive_data(data)
            else:
                dist.receive_eof()
            if self._process():
                return

    def _process(self) -> bool:
        """Dispatch every complete event; True when the peer closed the connection."""
        dist = self.dist
        dispatch = self._dispatch
        while True:
            ev = dist.next_event()
            if type(ev) is Message:
                try:
                    dispatch(self, ev)
                except ProtocolError:
                    raise
                except Exception:  # a bug in a handler must not take the connection down
                    log.exception("error handling %r from %s", ev.control, self.peer)
            elif type(ev) is Tick:
                continue
            elif type(ev) is ConnectionClosed:
                raise ConnectionLost(
                    f"{self.peer} closed the connection" + ("" if ev.clean else " mid-message")
                )
            else:
                return False

    async def _ticker(self) -> None:
        interval = self.net_ticktime / self.tick_intensity
        while True:
            await anyio.sleep(interval)
            if not self._wrote and not self._out:
                self._out.append(self.dist.tick())
                self._wake_writer.set()
            self._wrote = False
            silent = time.monotonic() - self._last_read
            if silent > self.net_ticktime:
                raise ConnectionLost(
                    f"{self.peer} sent nothing for {silent:.1f} s (net_ticktime {self.net_ticktime} s)"
                )

    # -- lifetime ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it goes down; then report why and close the socket."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._guard, self._writer)
                tg.start_soon(self._guard, self._ticker)
                await self._guard(self._reader)
        finally:
            self._down = True
            if self.down_reason is None:
                self.down_reason = "connection_closed"
            self._drained.set()
            with anyio.CancelScope(shield=True):
                await self.stream.aclose()
            self._on_down(self, self.down_reason)

    async def _guard(self, part: Callable[[], Any]) -> None:
        """Run one part; whatever ends it ends the whole connection, with a reason."""
        try:
            await part()
            reason: Any = None
        except ConnectionLost as e:
            reason = str(e)
            log.info("connection to %s lost: %s", self.peer, reason)
        except ProtocolError as e:
            reason = f"protocol error: {e}"
            log.warning("closing connection to %s: %s", self.peer, reason)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError) as e:
            reason = f"socket error: {e!r}"
            log.info("connection to %s lost: %s", self.peer, reason)
        if self.down_reason is None:
            self.down_reason = reason or "connection_closed"
        assert self._scope is not None
        self._scope.cancel()

    def close(self, reason: Any = "closed locally") -> None:
        """Take the connection down (the run task reports it)."""
        if self.down_reason is None:
            self.down_reason = reason
        if self._scope is not None:
            self._scope.cancel()

