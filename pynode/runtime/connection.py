"""One distribution connection: handshake driving, then messages in and out, and ticks."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from functools import partial
from typing import Any

import anyio

from ..protocol._common import NEED_DATA, NO_PAYLOAD, NeedData
from ..protocol.control import ControlMessage
from ..protocol.errors import HandshakeError, ProtocolError
from ..protocol.flags import DFlag
from ..protocol.framing import (
    TICK_PACKET,
    ConnectionClosed,
    DistConnection,
    Message,
    Tick,
    encode_failure,
)
from ..protocol.handshake import HandshakeFailed
from ..term import Atom, EncodeError
from ..term import encode_dist_packet as _encode_dist_packet
from .errors import ConnectionLost
from .transport import HIGH_WATER, Buffer, Channel, ChannelClosed

# How much a read asks for. A read that empties the socket after a small pushed segment lets
# the kernel ACK at once (tcp_cleanup_rbuf); erl, streaming small messages to a receiver
# that read all it had each time, sent each message as a segment of its own and paid more
# for the segment than for the message (its CPU per message followed its segments: 3.6 us
# at 130 segments per 1000 messages, 6.3 us at 520; benchmarks/recv_wire.py). Reads of
# about READ_MESSAGES messages left bytes queued, and erl's writes joined into far fewer
# segments. Reads do not grow when they come back full: in that very workload they did, and
# growing them (even after 8 full reads in a row) brought the small segments back. A read
# does ask for what a begun packet (a big message, a fragment) still lacks, on top.
READ_MIN = 1460  # one Ethernet MSS
READ_MESSAGES = 16
READ_MAX = 1 << 18  # the pieces of a big message, at most as asyncio reads (256 KiB)

log = logging.getLogger("pynode.connection")


async def drive_handshake(
    hs: Any, stream: Channel, setup_time: float, on_event: Callable[[Any], Any]
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
                    data = await stream.receive()
            except TimeoutError:
                raise HandshakeError(
                    "timeout", f"handshake step timed out after {setup_time} s ({hs.state})"
                ) from None
            if data:
                hs.receive_data(data)
            else:
                hs.receive_eof()
            continue
        if isinstance(ev, HandshakeFailed):
            out = hs.data_to_send()
            if out:
                try:
                    await stream.send(out)
                except (anyio.BrokenResourceError, ChannelClosed, OSError):
                    pass
            raise ev.error
        if isinstance(ev, HandshakeComplete):
            out = hs.data_to_send()
            if out:
                await stream.send(out)
            return ev
        r = on_event(ev)
        if hasattr(r, "__await__"):
            await r


class Connection:
    """The connected phase with one peer, over a :class:`~pynode.runtime.transport.Channel`.

    ``send_nowait`` never blocks and messages keep their order; ``send`` also waits while
    too much is buffered for a slow peer. Received messages are dispatched as they arrive.
    """

    def __init__(
        self,
        peer: Atom,
        channel: Channel,
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
        deliver: Callable[[Any, Any], bool] | None = None,
        deliver_signal: Callable[[Connection, tuple[Any, ...], Any], bool] | None = None,
        sinks: dict[Any, tuple[Any, ...]] | None = None,
    ) -> None:
        self.peer = peer
        self.channel = channel
        self.flags = flags
        self.peer_creation = peer_creation
        self.dist = DistConnection(
            flags, max_packet=max_packet, max_message=max_message, fragment_size=fragment_size
        )
        self.dist.deliver = deliver  # plain sends skip the Message and dispatch()
        self.dist.sinks = sinks  # and most skip deliver too (ProcessTable.sinks)
        if deliver_signal is not None:  # and so may an rpc's signals
            self.dist.deliver_signal = partial(deliver_signal, self)
        self._initial = initial_data
        self.net_ticktime = net_ticktime
        self.tick_intensity = tick_intensity
        self._dispatch = dispatch
        self._on_down = on_down
        self._last_read = time.monotonic()
        self._writes_seen = channel.writes  # channel.writes when the peer last sent something
        self.alive = True
        """False once the connection is down (an attribute: read on every send)."""
        self.down_reason: Any = None
        self._scope: anyio.CancelScope | None = None
        self._retick = anyio.Event()  # set when net_ticktime changes
        self.hidden = not (flags & DFlag.PUBLISHED)
        # flags read per signal, as plain bools: an enum.Flag test costs a method call
        self.payload_exits = bool(flags & DFlag.EXIT_PAYLOAD)
        self.spawns = bool(flags & DFlag.SPAWN)
        self.send_sender = bool(flags & DFlag.SEND_SENDER)
        self.aliases = bool(flags & DFlag.ALIAS)
        # counters: plain ints on the hot path, read by pynode.runtime.status
        self.connected_at = time.time()
        self._messages_in = 0  # dispatched; those framing delivered itself are dist.delivered
        self._message_size = 0  # bytes per message in the last read that completed any
        self._read_base = READ_MIN  # a few of those messages' worth, within the limits
        self._read_size = -1  # what the channel was last asked to read at a time
        # an event another thread's read left the loop (take_in_thread): it goes first
        self._handed_event: Any = None
        self.messages_out = 0
        self.bytes_in = 0
        self.bytes_out = 0
        self.ticks_in = 0
        self.ticks_out = 0
        # other threads' sends (the blocking API): those written at once are counted by the
        # channel (Channel.thread_messages), those handed to the loop by the loop; this lock
        # guards what they handed
        self._thread_lock = threading.Lock()
        self._handed = 0  # bytes other threads handed to the loop, not yet written

    def __repr__(self) -> str:
        return f"<Connection {self.peer} {'up' if self.alive else 'down'}>"

    # -- sending ----------------------------------------------------------------------------
    def send_nowait(self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD) -> None:
        """Queue one message (never blocks; see ``send`` for backpressure)."""
        if not self.alive:
            raise ConnectionLost(f"connection to {self.peer} is down: {self.down_reason}")
        self._write_pieces(self.dist.send_pieces(control, payload, True))  # the loop: written at once

    def _write_pieces(self, pieces: list[Buffer]) -> None:
        try:
            if len(pieces) == 1:
                p = pieces[0]
                self.channel.write(p)  # type: ignore[arg-type]  # one packet: bytes
                self.bytes_out += len(p)
            else:
                self.channel.writev(pieces)
                self.bytes_out += sum(map(len, pieces))
            self.messages_out += 1
        except ChannelClosed:
            raise ConnectionLost(f"connection to {self.peer} is closing") from None

    def send_plain(self, control: Any, payload: Any) -> bool:
        """send_nowait of a plain send from the event loop (a mailbox's: ``control`` is the
        wire tuple ``Node.remote_route`` made), then whether the channel is congested (the
        caller drains). The usual packet is encoded and written from this frame: send_pieces'
        frame, the list of one piece and the congestion check's call were 0.3 us of an
        echo round trip of 14-15 us with erl on the same CPU (2026-12-05)."""
        dist = self.dist
        cache = dist.plain_cache
        if cache is None or type(control) is not tuple or not self.alive:
            self.send_nowait(control, payload)
            return self.channel.congested()
        try:
            packet = _encode_dist_packet(control, payload, NO_PAYLOAD, False, cache, True)
        except EncodeError as exc:  # (the cache is set only by a message encoded whole)
            raise encode_failure(exc) from exc
        ch = self.channel
        if type(packet) is bytes and len(packet) <= dist.plain_max:
            try:
                ch.write(packet)
            except ChannelClosed:
                raise ConnectionLost(f"connection to {self.peer} is closing") from None
            self.bytes_out += len(packet)
            self.messages_out += 1
        else:
            self._write_pieces(dist.pieces_of(packet, control, cache))
        return ch.congested()

    async def send(self, control: ControlMessage | tuple[Any, ...], payload: Any = NO_PAYLOAD) -> None:
        """Queue one message; wait while more than HIGH_WATER bytes wait for a slow peer."""
        self.send_nowait(control, payload)
        if self.channel.congested():
            await self.channel.drain()

    # -- sending from other threads (the blocking API) -------------------------------------
    def congested_for_threads(self) -> bool:
        """True when a thread should send through the loop, which waits for the peer."""
        return self._handed > HIGH_WATER or self.channel.congested()

    def send_from_thread(self, control: Any, payload: Any, call_soon_threadsafe: Callable[..., Any]) -> bool:
        """From a thread other than the loop's: send_threadsafe of a plain send (``control``
        as ``Node.remote_route`` made it), encoded here (a bad term raises here);
        False, having sent nothing, when the connection is congested (the caller goes through
        the loop, which waits for the peer). The usual packet is encoded and written from
        this frame, as ``send_plain`` does in the loop: send_pieces', send_threadsafe's and
        the congestion checks' frames and the counters' own lock were about a tenth of a
        BlockingNode echo round trip with erl on the same CPU (2026-12-05)."""
        ch = self.channel
        if self._handed > HIGH_WATER or ch.congested():
            return False
        dist = self.dist
        if type(control) is not tuple:  # a control object (AliasSend)
            self.send_threadsafe(dist.send_pieces(control, payload), call_soon_threadsafe)
            return True
        try:  # other threads' sends leave the atom cache alone (see send_pieces)
            packet = _encode_dist_packet(control, payload, NO_PAYLOAD, dist.pass_through, None, True)
        except EncodeError as exc:
            raise encode_failure(exc) from exc
        if type(packet) is not bytes or len(packet) > dist.plain_max:
            self.send_threadsafe(dist.pieces_of(packet, control, None), call_soon_threadsafe)
            return True
        size = len(packet)
        if not self._handed and self.alive and ch.write_threadsafe([packet], size):
            return True
        self._hand_over([packet], size, call_soon_threadsafe)
        return True

    def send_threadsafe(self, pieces: list[Buffer], call_soon_threadsafe: Callable[..., Any]) -> None:
        """From a thread other than the loop's: send one encoded message (``send_pieces``).
        It is written to the socket at once when nothing is queued before it; otherwise the
        loop writes it, after what a thread handed it earlier (one thread's messages keep
        their order). A message the loop gets after the connection went down is dropped,
        as erl drops what a dying connection had queued."""
        size = sum(map(len, pieces))
        if not self._handed and self.alive and self.channel.write_threadsafe(pieces, size):
            return
        self._hand_over(pieces, size, call_soon_threadsafe)

    def _hand_over(self, pieces: list[Buffer], size: int, call_soon_threadsafe: Callable[..., Any]) -> None:
        """A thread's message for the loop to write (_write_handed), after what it has."""
        with self._thread_lock:
            self._handed += size
        call_soon_threadsafe(self._write_handed, pieces, size)

    def _write_handed(self, pieces: list[Buffer], size: int) -> None:
        """In the loop: write what a thread encoded and handed over. It counts as handed
        until the channel has it: till then a later send of that thread must not write to
        the socket itself, ahead of it (the GIL may let it run in the middle of this)."""
        try:
            if not self.alive:
                log.debug("connection to %s went down: %d queued bytes dropped", self.peer, size)
                return
            if len(pieces) == 1:
                self.channel.write(pieces[0])  # type: ignore[arg-type]  # one packet: bytes
            else:
                self.channel.writev(pieces)
            self.messages_out += 1
            self.bytes_out += size
        except ChannelClosed:
            log.debug("connection to %s closing: %d queued bytes dropped", self.peer, size)
        finally:
            with self._thread_lock:
                self._handed -= size

    @property
    def messages_in(self) -> int:
        """Messages received so far."""
        return self._messages_in + self.dist.delivered

    def counters(self) -> dict[str, int]:
        """Messages, bytes and ticks in and out so far (other threads' sends included)."""
        return {
            "messages_in": self.messages_in,
            "messages_out": self.messages_out + self.channel.thread_messages,
            "bytes_in": self.bytes_in,
            "bytes_out": self.bytes_out + self.channel.thread_bytes,
            "ticks_in": self.ticks_in,
            "ticks_out": self.ticks_out,
        }

    # -- receiving --------------------------------------------------------------------------
    def _on_data(self, data: bytes) -> None:
        self._last_read = time.monotonic()
        self.bytes_in += len(data)
        dist = self.dist
        before = self._messages_in + dist.delivered
        handed = self._handed_event
        if handed is not None:  # (before what was read after it)
            self._handed_event = None
            self._process(handed)
        ev = dist.next_event(data)  # (most reads: every packet went to the hooks)
        if ev is not NEED_DATA:
            self._process(ev)
        self._writes_seen = self.channel.writes
        n = self._messages_in + dist.delivered - before
        if n and data:
            per = len(data) // n
            if per != self._message_size:
                self._message_size = per
                self._read_base = max(READ_MIN, min(per * READ_MESSAGES, READ_MAX))
        # a few messages' worth, and what a begun packet (a big message, a fragment) lacks
        wanted = dist.wanted if dist.buffer else 0
        size = min(self._read_base + wanted, READ_MAX) if wanted else self._read_base
        if size != self._read_size:
            self._read_size = size
            self.channel.read_size(size)

    def take_in_thread(self, nbytes: int) -> bool:
        """``nbytes`` bytes another thread read into ``dist.buffer`` (``Channel.read_in_thread``),
        holding the loop's idle lock: their plain sends go into the mailboxes' sinks (deque
        appends, nothing that needs the loop); the first other event (a signal, a tick, a
        send no sink took) and what follows it are left to the loop, which is woken for
        them: False then, and no such read until the loop took them up (``_on_data``)."""
        if self._handed_event is not None:  # (read_in_thread stopped at the last one)
            raise RuntimeError("take_in_thread() before the loop took up what it was left")
        self._last_read = time.monotonic()
        self.bytes_in += nbytes
        try:
            ev = self.dist.next_event(sinks_only=True)
        except Exception:  # it sticks (the connection is unusable): the loop meets it too
            self.channel.wake_handler()
            return False
        if ev is NEED_DATA:
            return True
        self._handed_event = ev
        self.channel.wake_handler()
        return False

    def thread_may_read(self) -> bool:
        """Whether another thread may read this connection now (``take_in_thread``)."""
        return self.alive and self._handed_event is None

    def thread_left_something(self) -> bool:
        """Whether another thread's read left an event the loop has not taken up yet: a
        task's own read of this connection (``rpc._take_answer``) must not pass it."""
        return self._handed_event is not None

    def taken(self, nbytes: int, messages: int) -> None:
        """Count bytes a task read and handled itself (``Channel.take_inline``), as _on_data
        counts what the connection handles."""
        self._last_read = time.monotonic()
        self.bytes_in += nbytes
        self.dist.delivered += messages
        self._writes_seen = self.channel.writes

    def _on_eof(self) -> None:
        self.dist.receive_eof()
        handed = self._handed_event
        if handed is not None:  # (as in _on_data)
            self._handed_event = None
            self._process(handed)
        self._process()

    def _process(self, first: Any = None) -> None:
        """Dispatch every complete event (from ``first``, one taken already); ConnectionLost
        when the peer closed."""
        dist = self.dist
        dispatch = self._dispatch
        while True:
            if first is None:
                ev = dist.next_event()
            else:
                ev, first = first, None
            if type(ev) is Message:
                self._messages_in += 1
                try:
                    dispatch(self, ev)
                except ProtocolError:
                    raise
                except Exception:  # a bug in a handler must not take the connection down
                    log.exception("error handling %r from %s", ev.control, self.peer)
            elif type(ev) is Tick:
                # answer a tick when we sent nothing since the peer last spoke, as ei and
                # JInterface do: a peer with a shorter net_ticktime keeps us alive; between
                # two pynodes the answer is not answered again (the answering side wrote)
                self.ticks_in += 1
                if self.channel.writes == self._writes_seen:
                    self.channel.write(TICK_PACKET)
                    self.ticks_out += 1
                    self.bytes_out += 4
                continue
            elif type(ev) is ConnectionClosed:
                raise ConnectionLost(
                    f"{self.peer} closed the connection" + ("" if ev.clean else " mid-message")
                )
            else:
                return

    def set_net_ticktime(self, seconds: float) -> None:
        """This connection's net_ticktime from now on (the next tick interval uses it)."""
        if not seconds > 0:
            raise ValueError(f"net_ticktime must be positive, not {seconds!r}")
        self.net_ticktime = seconds
        self._retick.set()

    async def _ticker(self) -> None:
        """Tick when this side wrote nothing for an interval (net_ticktime / intensity), and
        give the peer up once it sent nothing for net_ticktime."""
        # Each read stamps _last_read. Counting silent intervals here instead (no clock read
        # per read) lowered dist.py's (b): pynode's rate fell in 18 of 24 alternating pairs
        # (medians 259k -> 222k and 287k -> 261k msgs/s, 2026-12-04); the cause was not found.
        channel = self.channel
        while True:
            with anyio.move_on_after(self.net_ticktime / self.tick_intensity):
                await self._retick.wait()
            if self._retick.is_set():  # a new net_ticktime: start a new interval with it
                self._retick = anyio.Event()
                continue
            if not channel.wrote:
                channel.write(self.dist.tick())
                self.ticks_out += 1
                self.bytes_out += 4
            channel.wrote = False
            silent = time.monotonic() - self._last_read
            if silent > self.net_ticktime:
                raise ConnectionLost(
                    f"{self.peer} sent nothing for {silent:.1f} s (net_ticktime {self.net_ticktime} s)"
                )

    async def _reader(self) -> None:
        if self._initial:
            data, self._initial = self._initial, b""
            self._on_data(data)
        await self.channel.serve(self._on_data, self._on_eof)

    # -- lifetime ---------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the connection until it goes down; then report why and close the socket."""
        try:
            async with anyio.create_task_group() as tg:
                self._scope = tg.cancel_scope
                tg.start_soon(self._guard, self._ticker)
                await self._guard(self._reader)
        finally:
            self.alive = False
            if self.down_reason is None:
                self.down_reason = "connection_closed"
            with anyio.CancelScope(shield=True):
                await self.channel.aclose()
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
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, ChannelClosed, OSError) as e:
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
