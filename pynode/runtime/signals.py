"""Process signals between mailboxes and remote processes: messages, links, monitors, exit
signals, spawn requests and aliases, with OTP 26+ semantics (UNLINK_ID, EXIT_PAYLOAD).

:class:`Signals` belongs to a node (its ``host``, of which it needs only what
:class:`SignalHost` lists); it dispatches every incoming control message and carries out the
local side of every signal, over the node's :class:`~pynode.runtime.processes.ProcessTable`.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

import anyio

from ..protocol import control as C
from ..protocol._common import NO_PAYLOAD
from ..protocol.errors import ProtocolError
from ..protocol.framing import Message
from ..term import Atom, Pid, Reference
from ..term.errors import EncodeError
from .connection import Connection
from .errors import ConnectionLost, ProcessExit, SpawnError
from .processes import ProcessTable

if TYPE_CHECKING:
    from .mailbox import Mailbox

log = logging.getLogger("pynode.signals")

NORMAL = Atom("normal")
KILL = Atom("kill")
KILLED = Atom("killed")
NOPROC = Atom("noproc")
NOCONNECTION = Atom("noconnection")
EXIT_TAG = Atom("EXIT")
DOWN = Atom("DOWN")
PROCESS = Atom("process")
NODEDOWN = Atom("nodedown")
UNDEF = Atom("undef")
LINK_OPT = Atom("link")
MONITOR_OPT = Atom("monitor")
REPLY_OPT = Atom("reply")
_YES = Atom("yes")
_MONITOR_ONLY = [MONITOR_OPT]  # spawn_async's options; never changed (encoded, not kept)
_REPORT: Any = object()  # spawn_async's wait: a failure reported to the mailbox
_SUCCESS_ONLY = Atom("success_only")

SpawnHandler = Callable[..., Awaitable[Any]]


SPAWN_ERROR = Atom("$pynode_spawn_error")
"""Tag of ``(SPAWN_ERROR, ReqId, Reason)``, what :meth:`Signals.spawn_async` delivers to the
requesting mailbox when the spawn failed (erpc's ``{reply, error_only}``)."""

#: What a spawn handler's ``now`` part returns when the process must run as a task after all.
RUN_AS_TASK: Any = object()


class Later:
    """What a spawn handler's ``now`` part returns when its work goes on: the process lives
    until ``finish()`` (awaited in a task) returns its exit reason."""

    __slots__ = ("finish",)

    def __init__(self, finish: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        self.finish = finish


SpawnNow = Callable[..., Any]

# control tuples the hot paths build themselves (the classes' to_term gives the same)
_SPAWN_REQUEST = C.SpawnRequest.OP
_SPAWN_REPLY = C.SpawnReply.OP
_MONITOR_P_EXIT = C.MonitorPExit.OP
_PAYLOAD_MONITOR_P_EXIT = C.PayloadMonitorPExit.OP


class _SpawnWait:
    __slots__ = ("mailbox", "node", "done", "result", "flags")

    def __init__(self, mailbox: Mailbox, node: Atom, done: anyio.Event | None) -> None:
        self.mailbox = mailbox
        self.node = node
        self.done = done  # None: report only an error, as a SPAWN_ERROR message
        self.result: Any = None
        self.flags = 0

    def finish(self, result: Any) -> None:
        self.result = result
        assert self.done is not None
        self.done.set()


class SignalHost(Protocol):
    """What Signals needs of its node."""

    processes: ProcessTable
    pid: Pid
    group_leader: Pid

    def make_ref(self) -> Reference: ...
    def mailbox(self, name: str | None = None) -> Mailbox: ...
    def mailbox_for(self, pid: Pid) -> Mailbox: ...
    def connection(self, node: Atom) -> Connection | None: ...
    async def connect(self, node: str) -> Connection: ...
    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None: ...


class Signals:
    """The signal machinery of a node: links, monitors, exits, spawn requests, aliases."""

    def __init__(self, host: SignalHost) -> None:
        self.host = host
        self.procs = host.processes
        self.reg_send_handlers: dict[Atom, Callable[[Connection, Pid, Any], None]] = {}
        self._spawn_waits: dict[Reference, _SpawnWait] = {}
        self._spawn_handlers: dict[tuple[Atom, Atom], tuple[SpawnHandler, SpawnNow | None]] = {}
        self._unlink_id = 0

    def serve_name(self, name: str, handler: Callable[[Connection, Pid, Any], None]) -> None:
        """Answer messages to the registered ``name`` with ``handler`` (net_kernel, rex)."""
        a = Atom(name)
        self.reg_send_handlers[a] = handler
        self.procs.reserved.add(a)

    # -- helpers ----------------------------------------------------------------------------
    def _conn_for(self, pid: Pid) -> Connection | None:
        return self.host.connection(pid.node)

    @staticmethod
    def _signal(conn: Connection, control: Any, payload: Any = NO_PAYLOAD) -> EncodeError | None:
        """Send a signal that needs no answer. Over a connection that is closing it is
        dropped, as erts drops it: the peer sees the connection go instead (and this runs
        where an exception would hurt: a process dying, a cancelled call cleaning up).
        The EncodeError when a term in it (a Python exit reason) has no external form: then
        nothing went."""
        try:
            conn.send_nowait(control, payload)
        except ConnectionLost:
            pass
        except ProtocolError as e:
            if isinstance(e.__cause__, EncodeError):
                return e.__cause__
            raise
        return None

    # -- outgoing signals -------------------------------------------------------------------
    def _send_exit(self, from_pid: Pid, to: Pid, reason: Any, *, link: bool) -> None:
        """An exit signal (from a broken link, or exit/2) to a local or remote process."""
        mb = self.procs.local(to)
        if mb is not None:
            if link:
                if mb.links.get(from_pid) != 0:
                    return  # not linked (or unlinking): a link exit is dropped
                del mb.links[from_pid]
            self._exit_signal(mb, from_pid, reason, link=link)
            return
        if to.node == self.procs.name:
            return
        conn = self._conn_for(to)
        if conn is None:
            return
        if not link:
            if conn.payload_exits:
                err = self._signal(conn, C.PayloadExit2(from_pid, to), reason)
            else:
                err = self._signal(conn, C.Exit2(from_pid, to, reason))
            if err is not None:
                raise err  # exit/2's caller hears of a reason that cannot go
            return
        err = self._link_exit_over(conn, from_pid, to, reason)
        if err is not None:
            # a dying process's reason with no Erlang form: its links still hear of its death
            self._link_exit_over(conn, from_pid, to, _no_form(err))

    def _link_exit_over(self, conn: Connection, from_pid: Pid, to: Pid, reason: Any) -> EncodeError | None:
        if conn.payload_exits:
            return self._signal(conn, C.PayloadExit(from_pid, to), reason)
        return self._signal(conn, C.Exit(from_pid, to, reason))

    def _send_down(self, watcher: Pid, ref: Reference, proc: Any, reason: Any) -> None:
        """Tell ``watcher`` that the process it monitored as ``proc`` (pid or name) is gone."""
        mb = self.procs.local(watcher)
        if mb is not None:
            target = mb.monitors.pop(ref, None)
            if target is not None:
                mb._deliver((DOWN, ref, PROCESS, target, reason))
            return
        conn = self._conn_for(watcher)
        if conn is not None:
            self._down_to(conn, watcher, ref, proc, reason)

    def _down_to(self, conn: Connection, watcher: Pid, ref: Reference, proc: Any, reason: Any) -> None:
        """The 'DOWN' of ``proc`` to the remote ``watcher``, over ``conn``."""
        err = self._down_over(conn, watcher, ref, proc, reason)
        if err is not None:
            # a reason with no Erlang form (a served function's Python value): the watcher
            # still hears of the death, and why
            self._down_over(conn, watcher, ref, proc, _no_form(err))

    def _down_over(self, conn: Connection, watcher: Pid, ref: Reference, proc: Any, reason: Any) -> EncodeError | None:
        # the control tuples of PayloadMonitorPExit and MonitorPExit (each erpc call served
        # ends here: no objects)
        if conn.payload_exits:
            return self._signal(conn, (_PAYLOAD_MONITOR_P_EXIT, proc, watcher, ref), reason)
        return self._signal(conn, (_MONITOR_P_EXIT, proc, watcher, ref, reason))

    # -- the local side of exit signals -----------------------------------------------------
    def _exit_signal(self, mb: Mailbox, from_pid: Pid, reason: Any, *, link: bool) -> None:
        """Apply an exit signal to a mailbox as erts applies it to a process."""
        if mb.closed:
            return
        if not link and reason == KILL and type(reason) is Atom:
            self._close_mailbox(mb, KILLED)  # exit(Pid, kill) cannot be trapped
        elif mb.trap_exit:
            mb._deliver((EXIT_TAG, from_pid, reason))
        elif reason == NORMAL and type(reason) is Atom:
            if from_pid == mb.pid:
                self._close_mailbox(mb, NORMAL)
        else:
            self._close_mailbox(mb, reason)

    def _close_mailbox(self, mb: Mailbox, reason: Any) -> None:
        """A mailbox dies: its links get exit signals, its watchers 'DOWN' messages."""
        if mb._closed_reason is not None:
            return
        mb._closed_by_node(reason)
        self.procs.remove(mb)
        links, mb.links = mb.links, {}
        for pid, state in links.items():
            if state == 0:
                self._send_exit(mb.pid, pid, reason, link=True)
        watchers, mb.monitored_by = mb.monitored_by, {}
        for ref, (watcher, proc) in watchers.items():
            self.procs.monitored.pop(ref, None)
            self._send_down(watcher, ref, proc, reason)
        monitors, mb.monitors = mb.monitors, {}
        for ref, target in monitors.items():
            self._demonitor_remote(mb.pid, ref, target)
        mb.aliases.clear()

    def _demonitor_remote(self, watcher: Pid, ref: Reference, target: Any) -> None:
        pid_or_name, node = self._target_parts(target)
        local = self.procs.resolve(pid_or_name) if node == self.procs.name else None
        if local is not None:
            local.monitored_by.pop(ref, None)
            self.procs.monitored.pop(ref, None)
            return
        conn = self.host.connection(node)
        if conn is not None:
            self._signal(conn, C.DemonitorP(watcher, pid_or_name, ref))

    @staticmethod
    def _target_parts(target: Any) -> tuple[Any, Atom]:
        if type(target) is Pid:
            return target, target.node
        name, node = target
        return Atom(name), Atom(node)

    # -- the public operations, used by Mailbox ---------------------------------------------
    async def link(self, mb: Mailbox, pid: Pid) -> None:
        if pid == mb.pid or mb.links.get(pid) == 0:
            return
        other = self.procs.local(pid)
        if other is not None:
            mb.links[pid] = 0
            other.links[mb.pid] = 0
            return
        if pid.node == self.procs.name:
            self._exit_signal(mb, pid, NOPROC, link=True)
            return
        try:
            conn = await self.host.connect(pid.node)
        except Exception:
            self._exit_signal(mb, pid, NOCONNECTION, link=True)
            return
        mb.links[pid] = 0
        conn.send_nowait(C.Link(mb.pid, pid))

    async def unlink(self, mb: Mailbox, pid: Pid) -> None:
        state = mb.links.get(pid)
        if state is None:
            return
        other = self.procs.local(pid)
        if other is not None:
            del mb.links[pid]
            other.links.pop(mb.pid, None)
            return
        conn = self._conn_for(pid)
        if conn is None:
            del mb.links[pid]
            return
        self._unlink_id = (self._unlink_id + 1) & 0xFFFFFFFFFFFFFFFF or 1
        mb.links[pid] = self._unlink_id  # unlinking: exits from pid are dropped until the ack
        conn.send_nowait(C.UnlinkId(self._unlink_id, mb.pid, pid))

    async def monitor(self, mb: Mailbox, target: Any) -> Reference:
        """Monitor a pid, a local name, or (name, node); 'DOWN' arrives in ``mb``."""
        ref: Reference = self.host.make_ref()
        if isinstance(target, str):
            target = (Atom(target), self.procs.name)
        proc, node = self._target_parts(target)
        obj = target if type(target) is Pid else (proc, node)
        mb.monitors[ref] = obj
        if node == self.procs.name:
            other = self.procs.resolve(proc)
            if other is None or other.closed:
                self._send_down(mb.pid, ref, proc, NOPROC)
            else:
                other.monitored_by[ref] = (mb.pid, proc)
                self.procs.monitored[ref] = other
            return ref
        try:
            conn = await self.host.connect(node)
        except Exception:
            self._send_down(mb.pid, ref, proc, NOCONNECTION)
            return ref
        conn.send_nowait(C.MonitorP(mb.pid, proc, ref))
        return ref

    async def demonitor(self, mb: Mailbox, ref: Reference, *, flush: bool = False) -> bool:
        target = mb.monitors.pop(ref, None)
        if target is not None:
            self._demonitor_remote(mb.pid, ref, target)
        if flush:
            mb._remove_where(
                lambda m: type(m) is tuple and len(m) == 5 and m[0] == DOWN and m[1] == ref
            )
        return target is not None

    async def exit(self, mb: Mailbox | None, pid: Pid, reason: Any) -> None:
        """exit(Pid, Reason) from ``mb`` (or from the node itself)."""
        from_pid = mb.pid if mb is not None else self.host.pid
        if pid.node != self.procs.name:
            await self.host.connect(pid.node)
        self._send_exit(from_pid, pid, reason, link=False)

    def alias(self, mb: Mailbox) -> Reference:
        ref: Reference = self.host.make_ref()
        self.procs.aliases[ref] = mb
        mb.aliases.add(ref)
        return ref

    def unalias(self, mb: Mailbox, ref: Reference) -> bool:
        if self.procs.aliases.get(ref) is mb:
            del self.procs.aliases[ref]
            mb.aliases.discard(ref)
            return True
        return False

    async def monitor_node(self, mb: Mailbox, node: str) -> None:
        """erlang:monitor_node(Node, true): ``{nodedown, Node}`` arrives when it goes down."""
        peer = Atom(node)
        self.procs.node_monitors.setdefault(peer, []).append(mb)
        try:
            await self.host.connect(peer)
        except Exception:
            lst = self.procs.node_monitors.get(peer, [])
            if mb in lst:
                lst.remove(mb)
            mb._deliver((NODEDOWN, peer))

    async def spawn_request(
        self,
        mb: Mailbox,
        node: str,
        module: str,
        function: str,
        args: list[Any],
        *,
        link: bool = False,
        monitor: bool = False,
        timeout: float | None = None,
        group_leader: Pid | None = None,
        reply: bool = True,
    ) -> tuple[Pid | None, Reference]:
        """erlang:spawn_request/5 and wait for the reply: the new pid and the request ref
        (which is also the monitor reference when ``monitor`` is set)."""
        peer = Atom(node)
        conn = await self.host.connect(peer)
        if not conn.spawns:
            raise SpawnError(Atom("notsup"))
        wait = _SpawnWait(mb, peer, anyio.Event())
        # {reply, ...} is the requester's own option: erts always sends SPAWN_REPLY, and
        # with reply=False we just do not wait for it (it is dropped when it comes)
        opts = [opt for opt, on in ((LINK_OPT, link), (MONITOR_OPT, monitor)) if on]
        req = self.spawn_async(
            conn, mb, module, function, args, group_leader=group_leader, opts=opts, wait=wait if reply else None
        )
        if not reply:
            return None, req
        try:
            with anyio.fail_after(timeout):
                await wait.done.wait()  # type: ignore[union-attr]
        finally:
            self._spawn_waits.pop(req, None)
        if type(wait.result) is not Pid:
            raise SpawnError(wait.result)
        return wait.result, req

    def spawn_async(
        self,
        conn: Connection,
        mb: Mailbox,
        module: str,
        function: str,
        args: list[Any],
        *,
        group_leader: Pid | None = None,
        send: Callable[[Any, Any], None] | None = None,
        opts: list[Any] = _MONITOR_ONLY,
        wait: _SpawnWait | None = _REPORT,
    ) -> Reference:
        """spawn_monitor without waiting for the reply, as erpc:call does (``{reply,
        error_only}``): the request ref, which is the monitor's; a failure arrives in ``mb``
        as ``(SPAWN_ERROR, Ref, Reason)``, the result as the monitor's 'DOWN'.

        ``send(control, payload)`` replaces ``conn.send_nowait``, and must encode at once
        (``opts`` goes into the request as it is): with a thread-safe one this may be called
        from a thread other than the loop's (it only adds to dicts). ``opts`` and ``wait``
        are spawn_request's: its options, and what waits for the SPAWN_REPLY (None: nothing).

        Each erpc call comes here: one frame, the control tuple built in place."""
        req: Reference = self.host.make_ref()
        if wait is not None:
            self._spawn_waits[req] = _SpawnWait(mb, conn.peer, None) if wait is _REPORT else wait
        try:
            (send or conn.send_nowait)(
                (_SPAWN_REQUEST, req, mb.pid, group_leader or self.host.group_leader,
                 (module if type(module) is Atom else Atom(module),
                  function if type(function) is Atom else Atom(function), len(args)), opts),
                args if type(args) is list else list(args),  # encoded now: never kept
            )
        except BaseException:
            self._spawn_waits.pop(req, None)
            raise
        return req

    def report_spawn(self, req: Reference, mb: Mailbox, peer: Atom) -> None:
        """What spawn_async's default ``wait`` registers, later: for a request sent with
        ``wait=None`` whose reply its sender did not read itself after all."""
        self._spawn_waits[req] = _SpawnWait(mb, peer, None)

    def forget_spawn(self, req: Reference) -> None:
        """The requester of ``req`` no longer waits for its SPAWN_REPLY."""
        self._spawn_waits.pop(req, None)

    def spawn_handler(
        self, module: str, function: str, handler: SpawnHandler, now: SpawnNow | None = None
    ) -> None:
        """Serve spawn requests for ``module:function``: ``handler(mailbox, *args)`` runs as
        the new process; returning ends it with reason normal, ProcessExit with its reason.

        ``now(*args)``, if given, is tried first, at once, without a task or a mailbox (both
        cost more than a short call): it returns the exit reason, RUN_AS_TASK (then nothing
        ran), or :class:`Later` when the process goes on."""
        self._spawn_handlers[(Atom(module), Atom(function))] = (handler, now)

    # -- incoming control messages ----------------------------------------------------------
    def deliver_send(self, to: Any, payload: Any) -> bool:
        """A plain send's payload to the local mailbox of pid or name ``to``, straight from
        the framing (see ``DistConnection.deliver``); False leaves it to :meth:`dispatch`."""
        mb = self.procs.local(to) if type(to) is Pid else self.procs.names.get(to)
        if mb is None:
            return False
        mb._deliver(payload)
        return True

    def dispatch(self, conn: Connection, msg: Message) -> None:
        ctl: Any = msg.control
        handler = _HANDLERS.get(type(ctl))
        if handler is None:
            log.debug("ignored %r from %s", ctl, conn.peer)
        else:
            handler(self, conn, ctl, msg.payload)

    # plain sends the framing did not deliver itself (see deliver_send)
    def _on_send(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.local(ctl.to_pid)
        if mb is not None:
            mb._deliver(payload)

    def _on_reg_send(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.names.get(ctl.to_name)  # an Atom already: no whereis()
        if mb is not None:
            mb._deliver(payload)
        else:
            handler = self.reg_send_handlers.get(ctl.to_name)
            if handler is not None:
                handler(conn, ctl.from_pid, payload)

    def _on_link(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.local(ctl.to_pid)
        if mb is None or mb.closed:
            # erts answers a link to a dead process with a link exit 'noproc'
            self._send_exit(ctl.to_pid, ctl.from_pid, NOPROC, link=True)
            return
        mb.links[ctl.from_pid] = 0

    def _on_unlink_id(self, conn: Connection, ctl: Any, payload: Any) -> None:
        # the ack goes out before any other signal from us to the sender: send it right now
        conn.send_nowait(C.UnlinkIdAck(ctl.id, ctl.to_pid, ctl.from_pid))
        mb = self.procs.local(ctl.to_pid)
        if mb is not None and mb.links.get(ctl.from_pid) == 0:
            del mb.links[ctl.from_pid]

    def _on_unlink_id_ack(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.local(ctl.to_pid)
        if mb is not None and mb.links.get(ctl.from_pid) == ctl.id:
            del mb.links[ctl.from_pid]

    def _on_unlink(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.local(ctl.to_pid)
        if mb is not None:
            mb.links.pop(ctl.from_pid, None)

    def _on_exit(self, conn: Connection, ctl: Any, payload: Any) -> None:
        reason = payload if type(ctl) in (C.PayloadExit, C.PayloadExitTT) else ctl.reason
        mb = self.procs.local(ctl.to_pid)
        if mb is not None and mb.links.get(ctl.from_pid) == 0:
            del mb.links[ctl.from_pid]
            self._exit_signal(mb, ctl.from_pid, reason, link=True)

    def _on_exit2(self, conn: Connection, ctl: Any, payload: Any) -> None:
        reason = payload if type(ctl) in (C.PayloadExit2, C.PayloadExit2TT) else ctl.reason
        mb = self.procs.local(ctl.to_pid)
        if mb is not None:
            self._exit_signal(mb, ctl.from_pid, reason, link=False)

    def _on_monitor(self, conn: Connection, ctl: Any, payload: Any) -> None:
        target = ctl.to_proc
        if type(target) is Atom and target in self.reg_send_handlers:
            return  # a built-in service (net_kernel, rex) never goes down
        mb = self.procs.resolve(target)
        if mb is None or mb.closed:
            self._send_down(ctl.from_pid, ctl.ref, target, NOPROC)
            return
        mb.monitored_by[ctl.ref] = (ctl.from_pid, target)
        self.procs.monitored[ctl.ref] = mb

    def _on_demonitor(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.monitored.pop(ctl.ref, None)
        if mb is not None:
            mb.monitored_by.pop(ctl.ref, None)

    def _on_monitor_exit(self, conn: Connection, ctl: Any, payload: Any) -> None:
        self._monitor_exit(ctl.to_pid, ctl.ref, payload if type(ctl) is C.PayloadMonitorPExit else ctl.reason)

    def _monitor_exit(self, to_pid: Pid, ref: Reference, reason: Any) -> None:
        mb = self.procs.local(to_pid)
        if mb is not None:
            target = mb.monitors.pop(ref, None)
            if target is not None:
                mb._deliver((DOWN, ref, PROCESS, target, reason))

    def _on_spawn_reply(self, conn: Connection, ctl: Any, payload: Any) -> None:
        self._spawn_reply(ctl.req_id, ctl.to_pid, ctl.flags, ctl.result)

    def _spawn_reply(self, req_id: Reference, to_pid: Pid, flags: int, result: Pid | Atom) -> None:
        wait = self._spawn_waits.get(req_id)
        if wait is None or wait.mailbox.closed:
            self._spawn_waits.pop(req_id, None)  # the requester gave up
            if type(result) is Pid and flags & C.SPAWN_REPLY_FLAG_LINK:
                self._send_exit(to_pid, result, NOPROC if wait is None else KILLED, link=True)
            return
        mb = wait.mailbox
        if type(result) is Pid:
            if flags & C.SPAWN_REPLY_FLAG_LINK:
                mb.links[result] = 0
            if flags & C.SPAWN_REPLY_FLAG_MONITOR:
                mb.monitors[req_id] = result
        if wait.done is None:
            del self._spawn_waits[req_id]
            if type(result) is not Pid:
                mb._deliver((SPAWN_ERROR, req_id, result))
            return
        wait.flags = flags
        wait.finish(result)

    def deliver_signal(self, conn: Connection, control: tuple[Any, ...], payload: Any) -> bool:
        """An rpc's signals (SPAWN_REQUEST; the answer: SPAWN_REPLY, MONITOR_P_EXIT) handled
        from their control tuples, straight from ``conn``'s framing (see
        ``DistConnection.deliver_signal``). False, for any other packet and for one whose
        fields are not what its class's check wants, leaves it to :meth:`dispatch` (which
        raises ProtocolError for a malformed one)."""
        if type(control) is not tuple or not control or type(control[0]) is not int:
            return False  # from_term's to reject
        op = control[0]
        n = len(control)
        try:
            if op == _OP_SPAWN_REQUEST:
                if n != 6 or payload is NO_PAYLOAD:
                    return False
                _, req_id, from_pid, group_leader, mfa, opts = control
                if (type(req_id) is not Reference or type(from_pid) is not Pid
                        or type(group_leader) is not Pid or type(mfa) is not tuple or len(mfa) != 3
                        or type(opts) is not list):
                    return False
                module, function, arity = mfa
                if type(module) is not Atom or type(function) is not Atom or type(arity) is not int:
                    return False
                self._spawn_request(conn, req_id, from_pid, module, function, arity, opts, payload)
            elif op == _OP_SPAWN_REPLY:
                if n != 5 or payload is not NO_PAYLOAD:
                    return False
                _, req_id, to_pid, flags, result = control
                if (type(req_id) is not Reference or type(to_pid) is not Pid or type(flags) is not int
                        or (type(result) is not Pid and type(result) is not Atom)):
                    return False
                self._spawn_reply(req_id, to_pid, flags, result)
            elif op == _OP_PAYLOAD_MONITOR_P_EXIT:
                if n != 4 or payload is NO_PAYLOAD:
                    return False
                _, from_proc, to_pid, ref = control
                if (type(to_pid) is not Pid or type(ref) is not Reference
                        or (type(from_proc) is not Pid and type(from_proc) is not Atom)):
                    return False
                self._monitor_exit(to_pid, ref, payload)
            elif op == _OP_MONITOR_P_EXIT:
                if n != 5 or payload is not NO_PAYLOAD:
                    return False
                _, from_proc, to_pid, ref, reason = control
                if (type(to_pid) is not Pid or type(ref) is not Reference
                        or (type(from_proc) is not Pid and type(from_proc) is not Atom)):
                    return False
                self._monitor_exit(to_pid, ref, reason)
            else:
                return False
        except ProtocolError:  # as from dispatch: the connection is unusable
            raise
        except Exception:  # a bug in a handler must not take the connection down
            log.exception("error handling %r from %s", control, conn.peer)
        return True

    def _on_spawn_request(self, conn: Connection, ctl: Any, payload: Any) -> None:
        self._spawn_request(conn, ctl.req_id, ctl.from_pid, ctl.module, ctl.function, ctl.arity, ctl.opts, payload)

    def _spawn_request(
        self, conn: Connection, req_id: Reference, from_pid: Pid, module: Atom, function: Atom,
        arity: int, opts: list[Any], payload: Any,
    ) -> None:
        args = payload if type(payload) is list else []
        link = monitor = False
        reply = _YES
        for opt in opts:
            if opt == LINK_OPT:
                link = True
            elif opt == MONITOR_OPT:
                monitor = True
            elif type(opt) is tuple and len(opt) == 2 and opt[0] == REPLY_OPT:
                reply = opt[1]
        flags = (C.SPAWN_REPLY_FLAG_LINK if link else 0) | (C.SPAWN_REPLY_FLAG_MONITOR if monitor else 0)
        pid = self.procs.new_pid()
        if reply in (_YES, _SUCCESS_ONLY):
            conn.send_nowait((_SPAWN_REPLY, req_id, from_pid, flags, pid))  # SpawnReply's
        served = self._spawn_handlers.get((module, function))
        if served is None or len(args) != arity:
            # what erl does: the process starts and dies with undef
            mb = self._new_process(pid, req_id, from_pid, link, monitor)
            self._close_mailbox(mb, (UNDEF, [(module, function, args, [])]))
            return
        handler, now = served
        if now is not None:
            try:
                reason = now(*args)
            except Exception as e:
                log.exception("spawned handler %r failed", now)
                reason = python_error_reason(e)
            if type(reason) is Later:
                mb = self._new_process(pid, req_id, from_pid, link, monitor)
                self.host.start_soon(self._run_later, mb, reason.finish)
                return
            if reason is not RUN_AS_TASK:
                # done before it needed a mailbox: it dies as a process that just ran would
                if link:
                    self._close_mailbox(self._new_process(pid, req_id, from_pid, link, monitor), reason)
                elif monitor:
                    if from_pid.node == conn.peer:  # erpc:call's case: the DOWN goes back on conn
                        self._down_to(conn, from_pid, req_id, pid, reason)
                    else:
                        self._send_down(from_pid, req_id, pid, reason)
                return
        mb = self._new_process(pid, req_id, from_pid, link, monitor)
        self.host.start_soon(self._run_process, mb, handler, args)

    def _new_process(self, pid: Pid, req_id: Reference, from_pid: Pid, link: bool, monitor: bool) -> Mailbox:
        """The mailbox of a process spawned for SPAWN_REQUEST ``req_id`` from ``from_pid``,
        linked and monitored as it asked."""
        mb: Mailbox = self.host.mailbox_for(pid)
        if link:
            mb.links[from_pid] = 0
        if monitor:
            mb.monitored_by[req_id] = (from_pid, pid)
            self.procs.monitored[req_id] = mb
        return mb

    async def _run_later(self, mb: Mailbox, finish: Callable[[], Coroutine[Any, Any, Any]]) -> None:
        try:
            reason = await finish()
        except Exception as e:
            log.exception("spawned handler %r failed", finish)
            reason = python_error_reason(e)
        self._close_mailbox(mb, reason)

    async def _run_process(self, mb: Mailbox, handler: SpawnHandler, args: list[Any]) -> None:
        reason: Any = NORMAL
        try:
            await handler(mb, *args)
        except ProcessExit as e:
            reason = e.reason
        except Exception as e:
            log.exception("spawned handler %r failed", handler)
            reason = python_error_reason(e)
        self._close_mailbox(mb, reason)

    def _on_alias_send(self, conn: Connection, ctl: Any, payload: Any) -> None:
        mb = self.procs.aliases.get(ctl.alias)
        if mb is not None:
            mb._deliver(payload)

    def _on_altact(self, conn: Connection, ctl: Any, payload: Any) -> None:
        to = ctl.to
        if ctl.flags & C.ALTACT_FLAG_EXIT:
            mb = self.procs.aliases.get(to) if type(to) is Reference else self.procs.resolve(to)
            if mb is not None:
                self._exit_signal(mb, ctl.sender, payload, link=False)
            return
        if type(to) is Reference:
            mb = self.procs.aliases.get(to)
        else:
            mb = self.procs.resolve(to)
        if mb is not None:
            mb._deliver(payload)

    def connection_down(self, peer: Atom) -> None:
        """Fire every link and monitor over the lost connection with ``noconnection``."""
        for mb in self.procs.mailboxes():
            for pid in [p for p in mb.links if p.node == peer]:
                state = mb.links.pop(pid)
                if state == 0:
                    self._exit_signal(mb, pid, NOCONNECTION, link=True)
            for ref, target in list(mb.monitors.items()):
                if (target.node if type(target) is Pid else target[1]) == peer:
                    del mb.monitors[ref]
                    mb._deliver((DOWN, ref, PROCESS, target, NOCONNECTION))
            for ref, (watcher, _proc) in list(mb.monitored_by.items()):
                if watcher.node == peer:
                    del mb.monitored_by[ref]
                    self.procs.monitored.pop(ref, None)
        for req, wait in list(self._spawn_waits.items()):
            if wait.node == peer:
                self._spawn_waits.pop(req, None)
                if wait.done is not None:
                    wait.finish(NOCONNECTION)
                else:
                    wait.mailbox._deliver((SPAWN_ERROR, req, NOCONNECTION))
        for mb in self.procs.node_monitors.pop(peer, []):
            mb._deliver((NODEDOWN, peer))


def _no_form(err: EncodeError) -> Any:
    """What goes instead of an exit reason that cannot be encoded."""
    log.warning("an exit reason has no Erlang form; sent as python_error: %s", err)
    return python_error_reason(err)


def python_error_reason(exc: BaseException) -> Any:
    """An Erlang-shaped reason for a Python exception: {python_error, Type, Message}."""
    return (Atom("python_error"), type(exc).__name__.encode(), str(exc).encode("utf-8", "replace"))


_OP_SPAWN_REQUEST = int(C.DOP.SPAWN_REQUEST)
_OP_SPAWN_REPLY = int(C.DOP.SPAWN_REPLY)
_OP_MONITOR_P_EXIT = int(C.DOP.MONITOR_P_EXIT)
_OP_PAYLOAD_MONITOR_P_EXIT = int(C.DOP.PAYLOAD_MONITOR_P_EXIT)

_HANDLERS: dict[type, Callable[[Any, Connection, Any, Any], None]] = {
    C.Send: Signals._on_send,
    C.SendSender: Signals._on_send,
    C.SendTT: Signals._on_send,
    C.SendSenderTT: Signals._on_send,
    C.RegSend: Signals._on_reg_send,
    C.RegSendTT: Signals._on_reg_send,
    C.Link: Signals._on_link,
    C.UnlinkId: Signals._on_unlink_id,
    C.UnlinkIdAck: Signals._on_unlink_id_ack,
    C.Unlink: Signals._on_unlink,
    C.Exit: Signals._on_exit,
    C.ExitTT: Signals._on_exit,
    C.PayloadExit: Signals._on_exit,
    C.PayloadExitTT: Signals._on_exit,
    C.Exit2: Signals._on_exit2,
    C.Exit2TT: Signals._on_exit2,
    C.PayloadExit2: Signals._on_exit2,
    C.PayloadExit2TT: Signals._on_exit2,
    C.MonitorP: Signals._on_monitor,
    C.DemonitorP: Signals._on_demonitor,
    C.MonitorPExit: Signals._on_monitor_exit,
    C.PayloadMonitorPExit: Signals._on_monitor_exit,
    C.SpawnReply: Signals._on_spawn_reply,
    C.SpawnReplyTT: Signals._on_spawn_reply,
    C.SpawnRequest: Signals._on_spawn_request,
    C.SpawnRequestTT: Signals._on_spawn_request,
    C.AliasSend: Signals._on_alias_send,
    C.AliasSendTT: Signals._on_alias_send,
    C.AltactSigSend: Signals._on_altact,
}
