"""A blocking single-connection client: erl_call's engine.

The ``pynode`` command's one-shot jobs (rpc, eval, ping, send, call, names) need one
connection to one node for well under a second, so they skip the anyio Node: a plain socket
with timeouts drives the sans-IO protocol layer (EPMD messages, the handshake with NAME_ME
dynamic names, distribution framing, control messages), as ei/erl_call do. Nothing here
imports asyncio or anyio, which keeps the command's cold start near Python's own.

While it waits for an answer the client still does what a node must: it answers ticks (the
peer's net_ticktime) and sends its own, serves io requests to its group leader (what remote
calls print), acknowledges UNLINK_ID and answers net_adm:ping. Failures raise the runtime's
exceptions (:mod:`pynode.runtime.errors`), mapped from answers by :mod:`pynode.runtime.erpc`
exactly as the anyio runtime maps them.
"""

from __future__ import annotations

import os
import sys
import time

# The socket module is a Python layer over _socket whose import (enum conversions,
# selectors) costs more than a loopback rpc; the few calls made here are all in _socket.
try:
    import _socket as _net
except ImportError:  # pragma: no cover - an implementation without _socket
    import socket as _net  # type: ignore[no-redef]


from ..protocol import control as C
from ..protocol._common import NEED_DATA, NO_PAYLOAD
from ..protocol.epmd import EpmdClient, EpmdReply, EpmdRequest, NamesRequest, PortPlease2Request
from ..protocol.errors import EpmdProtocolError, HandshakeError, ProtocolError
from ..protocol.flags import DFlag, default_flags
from ..protocol.framing import ConnectionClosed, DistConnection, Message, Tick
from ..protocol.handshake import (
    HandshakeComplete,
    HandshakeFailed,
    Initiator,
    StatusReceived,
)
from ..term import Atom, ImproperList, Pid, Reference
from .cookie import read_cookie
from .erpc import (
    ERPC,
    EXECUTE_CALL,
    REX,
    call_down_error,
    erpc_result,
    execute_call_args,
    is_rex_reply,
    rex_request,
    rex_result,
    spawn_failure,
)
from .errors import (
    AuthError,
    CallError,
    ConnectError,
    ConnectTimeout,
    EpmdError,
    NoConnection,
    RpcError,
    RpcTimeout,
    epmd_failure,
)
from .naming import EPMD_TIMEOUT, default_epmd_port, host_name, make_node_name

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable
    from socket import socket
    from typing import Any

    from .tls import TlsConfig


__all__ = ["OneShot", "names", "port_please"]

_DOWN = Atom("DOWN")
_PROCESS = Atom("process")
_MONITOR = Atom("monitor")
_NET_KERNEL = Atom("net_kernel")
_GEN_CALL = Atom("$gen_call")
_IS_AUTH = Atom("is_auth")
_YES = Atom("yes")
_ALIAS = Atom("alias")
_SPAWN_REPLY = object()  # tags our own record of a SPAWN_REPLY in the inbox


def _connect_tcp(host: str, port: int, timeout: float) -> socket:
    """socket.create_connection: the first address of ``host`` that accepts, within
    ``timeout`` each. An ASCII host is passed as bytes: a str goes through the idna codec,
    whose import costs more than the whole connection on loopback."""
    error: OSError | None = None
    infos = _net.getaddrinfo(host.encode() if host.isascii() else host, port, 0, _net.SOCK_STREAM)
    for family, kind, proto, _, address in infos:
        sock = _net.socket(family, kind, proto)
        try:
            sock.settimeout(timeout)
            sock.connect(address)
            return sock  # type: ignore[return-value]
        except OSError as e:
            sock.close()
            error = e
    raise error or OSError(f"no address for {host}")


def _log(message: str, *args: Any) -> None:
    """Log at INFO when logging is in use (``pynode -v`` loads it); else cost nothing."""
    logging = sys.modules.get("logging")
    if logging is not None:
        logging.getLogger("pynode.oneshot").info(message, *args)


def _random(bits: int) -> int:
    return int.from_bytes(os.urandom((bits + 7) // 8), "big") & ((1 << bits) - 1)


# -- EPMD ------------------------------------------------------------------------------------------


def _epmd_exchange(host: str, port: int, request: EpmdRequest, timeout: float) -> EpmdReply:
    """One request/reply with EPMD over a fresh connection, within ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    try:
        sock = _connect_tcp(host, port, timeout)
        try:
            client = EpmdClient(request, epmd_port=port)
            sock.sendall(client.data_to_send())
            for _ in range(100_000):  # each round reads at least one byte or ends
                ev = client.next_event()
                if ev is not NEED_DATA:
                    return ev  # type: ignore[return-value]
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError
                sock.settimeout(left)
                data = sock.recv(65536)
                if data:
                    client.receive_data(data)
                else:
                    client.receive_eof()
            raise EpmdProtocolError("EPMD reply never ended")  # pragma: no cover
        finally:
            sock.close()
    except (OSError, EpmdProtocolError) as e:  # TimeoutError is an OSError
        raise epmd_failure(e, host, port, timeout) from None


def port_please(name: str, host: str, port: int | None = None, timeout: float = EPMD_TIMEOUT) -> Any:
    """The EPMD registration (a NodeEntry) of ``name`` on ``host``, or None when unknown."""
    reply = _epmd_exchange(host, port or default_epmd_port(), PortPlease2Request(name), timeout)
    return reply.node if reply.found else None  # type: ignore[union-attr]


def names(host: str = "127.0.0.1", port: int | None = None, timeout: float = EPMD_TIMEOUT) -> list[tuple[str, int]]:
    """``net_adm:names/1``: the (name, port) pairs registered with EPMD on ``host``."""
    reply = _epmd_exchange(host, port or default_epmd_port(), NamesRequest(), timeout)
    return list(reply.nodes)  # type: ignore[union-attr]


# -- the client ------------------------------------------------------------------------------------


class OneShot:
    """One blocking connection from a short-lived node to ``peer``.

    ``with OneShot(cookie, "erl@127.0.0.1") as c: c.connect("erl@127.0.0.1"); c.rpc(...)``.
    Without ``name`` the peer names us when we connect (NAME_ME, like erl_call -R); we never
    register with EPMD nor accept connections. The method names and signatures follow
    :class:`~pynode.runtime.Node` (``connect``, ``rpc``, ``call``, ``send``, ``ping``) so the
    command drives either one the same way.
    """

    def __init__(
        self,
        cookie: str | None,
        peer: str,
        *,
        name: str | None = None,
        hidden: bool = True,
        longnames: bool | None = None,
        epmd_port: int | None = None,
        io_output: Callable[[str], None] | None = None,
        setup_time: float = 7.0,
        net_ticktime: float = 60.0,
        tick_intensity: int = 4,
        flags: int | None = None,
        tls: TlsConfig | None = None,
    ) -> None:
        self.peer = Atom(peer)
        self.tls = tls
        """TLS distribution (the peer runs erl -proto_dist inet_tls): the client side's setting."""
        if longnames is None:
            host = self.peer.partition("@")[2]
            longnames = "." in host or ":" in host
        self.dynamic = name is None
        if name is None:
            self.name = Atom(f"undefined@{host_name(longnames)}")
        else:
            self.name = Atom(make_node_name(name, longnames=longnames))
        self._cookie = cookie
        self.hidden = hidden
        self.epmd_port = epmd_port
        self.setup_time = setup_time
        self.net_ticktime = net_ticktime
        self.tick_interval = net_ticktime / tick_intensity
        self.flags = DFlag(flags) if flags is not None else default_flags(
            hidden=hidden, fragments=True, atom_cache=True
        )
        self.creation = _random(32) % 0xFFFFFFF0 + 1
        self.peer_flags = DFlag(0)
        self._output = io_output
        self._sock: socket | None = None
        self._dist: DistConnection | None = None
        self._inbox: list[tuple[Any, Any]] = []  # (our pid or alias, message), arrival order
        self._io: dict[Pid, Callable[[str], None]] = {}  # our group leaders and their output
        self._next_id = 1
        self._ref_counter = _random(40)
        self._last_read = self._last_write = 0.0
        self.pid: Pid
        self.group_leader: Pid

    def __repr__(self) -> str:
        return f"<OneShot {self.name} -> {self.peer} {'up' if self._sock else 'down'}>"

    def __enter__(self) -> OneShot:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection (the peer sees noconnection for our pids)."""
        sock, self._sock = self._sock, None
        if sock is not None:
            sock.close()

    @property
    def cookie(self) -> str:
        if self._cookie is None:
            self._cookie = read_cookie()
        return self._cookie

    @property
    def connected(self) -> bool:
        return self._sock is not None

    # -- identifiers --------------------------------------------------------------------------
    def _new_pid(self) -> Pid:
        i = self._next_id
        self._next_id += 1
        return Pid(self.name, i, 0, self.creation)

    def make_ref(self) -> Reference:
        """A new reference of our node (unique for the connection's life)."""
        self._ref_counter += 1
        n = self._ref_counter
        return Reference(self.name, self.creation, (n & 0x3FFFF, (n >> 18) & 0xFFFFFFFF, _random(32)))

    # -- connecting ---------------------------------------------------------------------------
    def connect(self, node: str, *, address: tuple[str, int] | None = None, timeout: float | None = None) -> None:
        """Connect to ``node`` (EPMD look-up unless ``address`` is given) within ``timeout``
        seconds (default: 4 handshake steps and then some, as Node.connect).

        Raises ConnectTimeout, AuthError (cookie refused) or ConnectError (unreachable, EPMD
        does not know the node, refused), as Node.connect does.
        """
        if self._sock is not None:
            return
        peer = Atom(node)
        if peer != self.peer:
            raise ConnectError(f"this client talks to {self.peer} only, not {peer}")
        limit = timeout if timeout is not None else self.setup_time * 4 + 10
        deadline = time.monotonic() + limit
        try:
            self._dial(peer, address, deadline)
        except _Late:
            raise ConnectTimeout(f"cannot connect to {peer}: no connection within {limit} s") from None
        except HandshakeError as e:
            cls = AuthError if e.reason == "bad_cookie" else ConnectError
            raise cls(f"cannot connect to {peer}: {e}") from e
        except (ConnectError, EpmdError, ProtocolError, OSError, ValueError) as e:
            raise ConnectError(f"cannot connect to {peer}: {e}") from e

    def _left(self, deadline: float, step: float) -> float:
        """Time for the next step: at most ``step``; _Late once the whole deadline passed."""
        left = deadline - time.monotonic()
        if left <= 0:
            raise _Late
        return min(left, step)

    def _dial(self, peer: Atom, address: tuple[str, int] | None, deadline: float) -> None:
        alive, _, host = peer.partition("@")
        if not host:
            raise ConnectError(f"bad node name {peer!r}: expected name@host")
        version = 6
        if address is None:
            step = self._left(deadline, EPMD_TIMEOUT)
            try:
                entry = port_please(alive, host, self.epmd_port, step)
            except EpmdError:
                self._left(deadline, 0)  # the overall limit, not EPMD's own, ran out?
                raise
            if entry is None:
                raise ConnectError(f"EPMD on {host} does not know {alive!r}")
            address = (host, entry.port)
            version = 6 if entry.highest >= 6 else 5
        try:
            sock = _connect_tcp(address[0], address[1], self._left(deadline, self.setup_time))
        except TimeoutError:
            self._left(deadline, 0)
            raise ConnectError(f"cannot reach {peer} at {address[0]}:{address[1]}: timed out") from None
        except OSError as e:
            raise ConnectError(f"cannot reach {peer} at {address[0]}:{address[1]}: {e}") from None
        if self.tls is not None:
            sock = self._start_tls(sock, peer, address)
        try:
            done, trailing = self._handshake(sock, peer, version, deadline)
        except BaseException as e:
            sock.close()
            if self.tls is not None and isinstance(e, OSError):
                from .tls import SSLError, tls_reason

                if isinstance(e, SSLError):  # TLS 1.3: the peer refuses our certificate late
                    raise ConnectError(f"{peer} refused the TLS connection: {tls_reason(e)}") from None
            if self.tls is not None and isinstance(e, HandshakeError) and e.reason == "closed":
                raise ConnectError(f"{e} (over TLS: did {peer} refuse our certificate?)") from None
            raise
        sock.setsockopt(_net.IPPROTO_TCP, _net.TCP_NODELAY, 1)
        if self.dynamic:
            self.name = Atom(done.this_node)
            self.creation = done.this_creation
            _log("%s named us %s", peer, self.name)
        _log("connected to %s at %s:%d as %s", peer, address[0], address[1], self.name)
        self.peer_flags = done.peer_flags
        self._dist = DistConnection(done.peer_flags)
        self._sock = sock
        self._last_read = self._last_write = time.monotonic()
        self.pid = self._new_pid()
        self.group_leader = self._new_pid()
        self._io[self.group_leader] = self._default_output
        if trailing:
            self._dist.receive_data(trailing)
            self._pump()

    def _start_tls(self, raw: Any, peer: Atom, address: tuple[str, int]) -> socket:
        """TLS from the first byte, as inet_tls_dist (the socket's timeout bounds it)."""
        import socket as socket_module

        from .tls import SSLError, tls_reason

        assert self.tls is not None
        timeout = raw.gettimeout()
        sock = socket_module.socket(raw.family, raw.type, raw.proto, fileno=raw.detach())
        sock.settimeout(timeout)
        try:
            return self.tls.client_context().wrap_socket(sock, server_hostname=address[0])
        except SSLError as e:
            sock.close()
            raise ConnectError(
                f"TLS handshake with {peer} at {address[0]}:{address[1]} failed: {tls_reason(e)}"
            ) from None
        except BaseException:
            sock.close()
            raise

    def _handshake(self, sock: socket, peer: Atom, version: int, deadline: float) -> tuple[HandshakeComplete, bytes]:
        """Drive the sans-IO Initiator over the socket; every step is bounded by setup_time."""
        hs = Initiator(
            this_node=self.name.partition("@")[2] if self.dynamic else self.name,
            peer_node=peer,
            cookie=self.cookie,
            flags=self.flags,
            creation=self.creation,
            version=version,
            name_me=self.dynamic,
            length_bytes=4 if self.tls is not None else 2,  # inet_tls_dist: {packet, 4} throughout
        )
        for _ in range(1000):  # a handshake is a handful of messages
            out = hs.data_to_send()
            if out:
                sock.sendall(out)
            ev = hs.next_event()
            if ev is NEED_DATA:
                out = hs.data_to_send()  # handling the last packet may have queued an answer
                if out:
                    sock.sendall(out)
                sock.settimeout(self._left(deadline, self.setup_time))
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    self._left(deadline, 0)
                    raise HandshakeError(
                        "timeout", f"handshake step timed out after {self.setup_time} s ({hs.state})"
                    ) from None
                except OSError as e:
                    if self.tls is not None and type(e).__name__.startswith("SSL"):
                        raise  # a TLS alert says more than "closed"
                    data = b""
                if data:
                    hs.receive_data(data)
                else:
                    hs.receive_eof()
            elif isinstance(ev, HandshakeFailed):
                error = ev.error
                out = hs.data_to_send()
                if out and error.reason != "bad_cookie":
                    try:
                        sock.sendall(out)
                    except OSError:
                        pass
                raise error
            elif isinstance(ev, HandshakeComplete):
                out = hs.data_to_send()
                if out:
                    sock.sendall(out)
                return ev, hs.trailing_data
            elif isinstance(ev, StatusReceived) and ev.status == "alive":
                hs.answer_alive(True)  # we hold no older connection to the peer
        raise HandshakeError("protocol", "the handshake did not end")  # pragma: no cover

    # -- the connected phase ----------------------------------------------------------------
    def _conn(self) -> tuple[socket, DistConnection]:
        if self._sock is None or self._dist is None:
            raise NoConnection(f"not connected to {self.peer}")
        return self._sock, self._dist

    def _write(self, data: bytes) -> None:
        sock, _ = self._conn()
        sock.settimeout(max(self.net_ticktime, 1.0))
        try:
            sock.sendall(data)
        except OSError as e:
            self.close()
            raise NoConnection(f"connection to {self.peer} lost: {e}") from None
        self._last_write = time.monotonic()

    def _send(self, control: Any, payload: Any = NO_PAYLOAD) -> None:
        _, dist = self._conn()
        self._write(dist.send(control, payload))

    def _send_to_pid(self, sender: Pid, to: Pid, message: Any) -> None:
        if self.peer_flags & DFlag.SEND_SENDER:
            self._send(C.SendSender(sender, to), message)
        else:
            self._send(C.Send(to), message)

    def _default_output(self, text: str) -> None:
        if self._output is not None:
            self._output(text)
        else:
            sys.stdout.write(text)

    def _pump(self) -> None:
        """Handle every complete event the connection holds."""
        _, dist = self._conn()
        for _ in range(1_000_000):  # bounded by the bytes received
            try:
                ev = dist.next_event()
            except ProtocolError as e:
                self.close()
                raise NoConnection(f"protocol error from {self.peer}: {e}") from None
            if ev is NEED_DATA:
                return
            if type(ev) is Message:
                self._dispatch(ev.control, ev.payload)
            elif type(ev) is Tick:
                # answer every tick (as ei does): the peer's net_ticktime may be far shorter
                # than ours, and it only needs to hear from us within its own
                self._write(dist.tick())
            elif type(ev) is ConnectionClosed:
                self.close()
                raise NoConnection(f"{self.peer} closed the connection")

    def _dispatch(self, ctl: Any, payload: Any) -> None:
        t = type(ctl)
        if t is C.Send or t is C.SendSender or t is C.SendTT or t is C.SendSenderTT:
            output = self._io.get(ctl.to_pid)
            if output is None:
                self._inbox.append((ctl.to_pid, payload))
                return
            from .iofmt import serve_io_request  # only when a call prints something

            answer = serve_io_request(payload, output)
            if answer is not None:
                self._send_to_pid(ctl.to_pid, answer[0], answer[1])
        elif t is C.RegSend or t is C.RegSendTT:
            if ctl.to_name == _NET_KERNEL:
                self._net_kernel(payload)
            else:
                self._inbox.append((ctl.to_name, payload))
        elif t is C.AliasSend or t is C.AliasSendTT:
            self._inbox.append((ctl.alias, payload))
        elif t is C.PayloadMonitorPExit:
            self._inbox.append((ctl.to_pid, (_DOWN, ctl.ref, _PROCESS, ctl.from_proc, payload)))
        elif t is C.MonitorPExit:
            self._inbox.append((ctl.to_pid, (_DOWN, ctl.ref, _PROCESS, ctl.from_proc, ctl.reason)))
        elif t is C.SpawnReply or t is C.SpawnReplyTT:
            self._inbox.append((ctl.to_pid, (_SPAWN_REPLY, ctl.req_id, ctl.flags, ctl.result)))
        elif t is C.UnlinkId:
            self._send(C.UnlinkIdAck(ctl.id, ctl.to_pid, ctl.from_pid))
        # links, exit signals and monitors of our pids need no answer: our "processes" live
        # as long as the connection, and its end tells the peer they are gone

    def _net_kernel(self, message: Any) -> None:
        """net_adm:ping from the peer: ``{'$gen_call', {From, Tag}, {is_auth, Node}}``."""
        if type(message) is tuple and len(message) == 3 and message[0] == _GEN_CALL:
            frm, request = message[1], message[2]
            if type(frm) is tuple and len(frm) == 2 and type(frm[0]) is Pid and type(request) is tuple:
                if request and request[0] == _IS_AUTH:
                    self._send(C.Send(frm[0]), (frm[1], _YES))

    def _take(self, match: Callable[[Any, Any], bool]) -> tuple[bool, Any]:
        for i, (to, message) in enumerate(self._inbox):
            if match(to, message):
                del self._inbox[i]
                return True, message
        return False, None

    def receive(self, match: Callable[[Any, Any], bool], timeout: float | None) -> Any:
        """The first message whose ``(recipient, message)`` satisfies ``match``, waiting at
        most ``timeout`` seconds (None: for ever) while ticking and serving io requests.

        Raises TimeoutError, or NoConnection when the connection goes down (closed, or the
        peer silent for net_ticktime).
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:  # bounded by the deadline, or by the peer's liveness (net_ticktime)
            found, message = self._take(match)
            if found:
                return message
            sock, dist = self._conn()
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                raise TimeoutError
            if now - self._last_read > self.net_ticktime:
                self.close()
                raise NoConnection(
                    f"{self.peer} sent nothing for {now - self._last_read:.1f} s "
                    f"(net_ticktime {self.net_ticktime} s)"
                )
            if now - self._last_write >= self.tick_interval:
                self._write(dist.tick())
                now = self._last_write
            wait = self._last_write + self.tick_interval - now
            if deadline is not None:
                wait = min(wait, deadline - now)
            sock.settimeout(max(wait, 0.001))  # never 0: that would make the socket non-blocking
            try:
                data = sock.recv(262144)
            except TimeoutError:
                continue
            except OSError as e:
                self.close()
                raise NoConnection(f"connection to {self.peer} lost: {e}") from None
            self._last_read = time.monotonic()
            if data:
                dist.receive_data(data)
            else:
                dist.receive_eof()
            self._pump()

    # -- what the command does ------------------------------------------------------------------
    def _check_peer(self, node: Any) -> None:
        if Atom(node) != self.peer:
            raise NoConnection(f"this client is connected to {self.peer}, not {node}")

    def rpc(
        self,
        node: str,
        module: str,
        function: str,
        args: Iterable[Any] = (),
        *,
        timeout: float | None = None,
        capture_output: bool = False,
    ) -> Any:
        """``erpc:call(Node, M, F, A, Timeout)``: spawn erpc:execute_call/4 on the peer with
        a monitor; peers without SPAWN get the rex protocol. Raises RemoteError, RpcTimeout,
        NoConnection or RpcError like Node.rpc. With ``capture_output`` returns
        ``(value, printed_text)``."""
        self._check_peer(node)
        args = list(args)
        if not self.peer_flags & DFlag.SPAWN:
            if capture_output:
                raise RpcError(f"{node} does not support spawn_request; cannot capture output")
            return self._rex_call(module, function, args, timeout)
        deadline = None if timeout is None else time.monotonic() + timeout
        caller = self._new_pid()
        out: list[str] = []
        gl = self.group_leader
        if capture_output:
            gl = self._new_pid()
            self._io[gl] = out.append
        try:
            res_ref, req = self.make_ref(), self.make_ref()
            self._send(
                C.SpawnRequest(req, caller, gl, ERPC, EXECUTE_CALL, 4, [_MONITOR]),
                execute_call_args(res_ref, module, function, args),
            )
            try:
                reply = self.receive(
                    lambda to, m: to == caller and type(m) is tuple and len(m) == 4 and m[0] is _SPAWN_REPLY and m[1] == req,
                    _left_of(deadline),
                )
            except TimeoutError:
                raise RpcTimeout(f"no answer from {node} within {timeout} s") from None
            pid = reply[3]
            if type(pid) is not Pid:
                raise spawn_failure(node, pid)
            try:
                down = self.receive(
                    lambda to, m: to == caller and type(m) is tuple and len(m) == 5 and m[0] == _DOWN and m[1] == req,
                    _left_of(deadline),
                )
            except TimeoutError:
                # as erpc:call: stop watching the call (it runs on) and give up
                self._send(C.DemonitorP(caller, pid, req))
                raise RpcTimeout(f"no answer from {node} within {timeout} s") from None
            value = erpc_result(down[4], res_ref)
            # io requests were answered before the process ended: the text is all here
            return (value, "".join(out)) if capture_output else value
        finally:
            if capture_output:
                self._io.pop(gl, None)

    def _rex_call(self, module: str, function: str, args: list[Any], timeout: float | None) -> Any:
        """The legacy way (ei, JInterface): ``{Self, {call, M, F, A, GL}}`` to rex."""
        caller = self._new_pid()
        self._send(C.RegSend(caller, REX), rex_request(caller, module, function, args, self.group_leader))
        try:
            reply = self.receive(lambda to, m: to == caller and is_rex_reply(m), timeout)
        except TimeoutError:
            raise RpcTimeout(f"no answer from {self.peer} within {timeout} s") from None
        return rex_result(reply[1], self.peer)

    def send(self, dest: Any, message: Any) -> None:
        """Send to a pid on the peer or to ``(name, node)``, like Erlang's ``!``."""
        if type(dest) is Pid:
            self._check_peer(dest.node)
            self._send_to_pid(self.pid, dest, message)
            return
        if type(dest) is tuple and len(dest) == 2:
            self._check_peer(dest[1])
            self._send(C.RegSend(self.pid, Atom(dest[0])), message)
            return
        raise TypeError(f"cannot send to {dest!r}")

    def call(self, dest: Any, request: Any, timeout: float | None = 5.0) -> Any:
        """``gen_server:call(Dest, Request, Timeout)`` to a pid or ``(name, node)``, with a
        monitor and (OTP 24+) an alias for the reply; raises CallError or RpcTimeout."""
        caller = self._new_pid()
        mref = self.make_ref()
        proc = dest if type(dest) is Pid else Atom(dest[0])
        self._check_peer(dest.node if type(dest) is Pid else dest[1])
        if self.peer_flags & DFlag.ALIAS:
            tag: Any = ImproperList([_ALIAS], self.make_ref())
        else:
            tag = self.make_ref()
        try:
            self._send(C.MonitorP(caller, proc, mref))
            msg = (_GEN_CALL, (caller, tag), request)
            if type(dest) is Pid:
                self._send_to_pid(caller, dest, msg)
            else:
                self._send(C.RegSend(caller, Atom(proc)), msg)
        except NoConnection as e:
            raise CallError(Atom("noproc")) from e
        alias = tag.tail if type(tag) is ImproperList else None

        def match(to: Any, m: Any) -> bool:
            if to != caller and (alias is None or to != alias) or type(m) is not tuple:
                return False
            return (len(m) == 2 and m[0] == tag) or (len(m) == 5 and m[0] == _DOWN and m[1] == mref)

        try:
            reply = self.receive(match, timeout)
        except TimeoutError:
            raise RpcTimeout(f"gen_server call to {dest!r} timed out after {timeout} s") from None
        except NoConnection:
            raise call_down_error(Atom("noconnection"), dest) from None
        if len(reply) == 5:
            raise call_down_error(reply[4], dest)
        self._send(C.DemonitorP(caller, proc, mref))
        return reply[1]

    def ping(self, node: str, timeout: float = 10.0) -> bool:
        """``net_adm:ping/1`` over the connection: True (pong) or False (pang)."""
        self._check_peer(node)
        caller = self._new_pid()
        ref = self.make_ref()
        try:
            self._send(C.RegSend(caller, _NET_KERNEL), (_GEN_CALL, (caller, ref), (_IS_AUTH, self.name)))
            reply = self.receive(
                lambda to, m: to == caller and type(m) is tuple and len(m) == 2 and m[0] == ref, timeout
            )
        except (TimeoutError, NoConnection):
            return False
        return bool(reply[1] == _YES)


class _Late(Exception):
    """The overall connect deadline passed (becomes ConnectTimeout)."""


def _left_of(deadline: float | None) -> float | None:
    return None if deadline is None else max(deadline - time.monotonic(), 0.0)
