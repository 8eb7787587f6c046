"""Distribution control messages (erl_dist_protocol.md, "Protocol between Connected Nodes").

Each operation is a small immutable class (plain ``__slots__``, no dataclass machinery: the
command line imports this module on every start) whose fields follow the documented names;
``to_term()`` gives the tuple that goes on the wire and :func:`from_term` (also
``ControlMessage.from_term``) checks a decoded tuple and builds the right class. Whether a
payload term follows is part of each operation (``HAS_PAYLOAD``), and :func:`from_term`
refuses a message whose payload presence does not match.
"""

from __future__ import annotations

from pynode.term.types import Atom, Pid, Reference

from ._common import NO_PAYLOAD, Frozen
from .errors import ProtocolError

TYPE_CHECKING = False  # typing is not imported at run time: it costs the CLI ms (typing, re, contextlib)
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, Final


__all__ = [
    "DOP",
    "ABSENT",
    "ControlMessage",
    "from_term",
    "Link",
    "Send",
    "Exit",
    "Unlink",
    "NodeLink",
    "RegSend",
    "GroupLeader",
    "Exit2",
    "SendTT",
    "ExitTT",
    "RegSendTT",
    "Exit2TT",
    "MonitorP",
    "DemonitorP",
    "MonitorPExit",
    "SendSender",
    "SendSenderTT",
    "PayloadExit",
    "PayloadExitTT",
    "PayloadExit2",
    "PayloadExit2TT",
    "PayloadMonitorPExit",
    "SpawnRequest",
    "SpawnRequestTT",
    "SpawnReply",
    "SpawnReplyTT",
    "AliasSend",
    "AliasSendTT",
    "UnlinkId",
    "UnlinkIdAck",
    "AltactSigSend",
    "SPAWN_REPLY_FLAG_LINK",
    "SPAWN_REPLY_FLAG_MONITOR",
    "ALTACT_FLAG_PRIO",
    "ALTACT_FLAG_TOKEN",
    "ALTACT_FLAG_ALIAS",
    "ALTACT_FLAG_NAME",
    "ALTACT_FLAG_EXIT",
]


class DOP:
    """Operation codes, the first element of every control tuple (erts dist.h). Plain ints,
    not an IntEnum: importing enum costs the ``pynode`` command milliseconds."""

    LINK: Final = 1
    SEND: Final = 2
    EXIT: Final = 3
    UNLINK: Final = 4
    NODE_LINK: Final = 5
    REG_SEND: Final = 6
    GROUP_LEADER: Final = 7
    EXIT2: Final = 8
    SEND_TT: Final = 12
    EXIT_TT: Final = 13
    REG_SEND_TT: Final = 16
    EXIT2_TT: Final = 18
    MONITOR_P: Final = 19
    DEMONITOR_P: Final = 20
    MONITOR_P_EXIT: Final = 21
    SEND_SENDER: Final = 22
    SEND_SENDER_TT: Final = 23
    PAYLOAD_EXIT: Final = 24
    PAYLOAD_EXIT_TT: Final = 25
    PAYLOAD_EXIT2: Final = 26
    PAYLOAD_EXIT2_TT: Final = 27
    PAYLOAD_MONITOR_P_EXIT: Final = 28
    SPAWN_REQUEST: Final = 29
    SPAWN_REQUEST_TT: Final = 30
    SPAWN_REPLY: Final = 31
    SPAWN_REPLY_TT: Final = 32
    ALIAS_SEND: Final = 33
    ALIAS_SEND_TT: Final = 34
    UNLINK_ID: Final = 35
    UNLINK_ID_ACK: Final = 36
    ALTACT_SIG_SEND: Final = 37


SPAWN_REPLY_FLAG_LINK: Final = 1
SPAWN_REPLY_FLAG_MONITOR: Final = 2
ALTACT_FLAG_PRIO: Final = 1
ALTACT_FLAG_TOKEN: Final = 2
ALTACT_FLAG_ALIAS: Final = 4
ALTACT_FLAG_NAME: Final = 8
ALTACT_FLAG_EXIT: Final = 16

_EMPTY: Final = Atom("")
_set = object.__setattr__


class _Absent:
    __slots__ = ()

    def __repr__(self) -> str:
        return "ABSENT"

    def __reduce__(self) -> str:
        return "ABSENT"


#: An optional element that is not in the tuple (ALTACT_SIG_SEND without a trace token).
ABSENT: Final = _Absent()


# Element checks: each returns the (possibly normalised) value or raises ValueError.
def _any(x: Any) -> Any:
    return x


def _pid(x: Any) -> Pid:
    if type(x) is Pid:
        return x
    raise ValueError("a pid")


def _ref(x: Any) -> Reference:
    if type(x) is Reference:
        return x
    raise ValueError("a reference")


def _atom(x: Any) -> Atom:
    if type(x) is Atom:
        return x
    if type(x) is bool:  # the codec turns the atoms true/false into bools
        return Atom("true" if x else "false")
    raise ValueError("an atom")


def _proc(x: Any) -> Any:
    if type(x) is Pid or type(x) is Atom:
        return x
    if type(x) is bool:
        return _atom(x)
    raise ValueError("a pid or a registered name")


def _dest(x: Any) -> Any:
    if type(x) is Pid or type(x) is Atom or type(x) is Reference:
        return x
    if type(x) is bool:
        return _atom(x)
    raise ValueError("a pid, a name or an alias")


def _int(x: Any) -> int:
    if type(x) is int:
        return x
    raise ValueError("an integer")


def _list(x: Any) -> list[Any]:
    if type(x) is list:
        return x
    raise ValueError("a proper list")


def _pid_or_atom(x: Any) -> Any:
    if type(x) is Pid or type(x) is Atom:
        return x
    if type(x) is bool:
        return _atom(x)
    raise ValueError("a pid or an atom")


if TYPE_CHECKING:
    _Check = Callable[[Any], Any]


class ControlMessage(Frozen):
    """Base of the control message classes.

    ``OP`` is the operation code; ``HAS_PAYLOAD`` says a payload term (message, exit reason
    or argument list) follows the control tuple; ``LAYOUT`` names the fields in tuple order.
    Instances are immutable and compare, hash and print by their fields.
    """

    __slots__ = ()
    OP: ClassVar[int]
    HAS_PAYLOAD: ClassVar[bool] = False
    LAYOUT: ClassVar[tuple[str, ...]] = ()
    _CHECKS: ClassVar[tuple[_Check, ...]] = ()
    _ORDER: ClassVar[tuple[int, ...]] = ()  # tuple position of each constructor field

    def to_term(self) -> tuple[Any, ...]:
        """The control tuple as it goes on the wire."""
        return (self.OP, *[getattr(self, name) for name in self.LAYOUT])

    @classmethod
    def _from_elements(cls, t: tuple[Any, ...]) -> ControlMessage:
        # The first tuple of an operation generates its checking builder, which then
        # replaces this method on the class: start-up pays only for the operations it sees.
        build = _make_builder(cls, cls._CHECKS, cls._ORDER)
        cls._from_elements = staticmethod(build)  # type: ignore[method-assign, assignment]
        return build(t)  # type: ignore[no-any-return]

    @staticmethod
    def from_term(term: Any, payload: Any = NO_PAYLOAD) -> ControlMessage:
        """Build the control message for a decoded control tuple; see :func:`from_term`."""
        return from_term(term, payload)


_BY_OP: dict[int, type[ControlMessage]] = {}

# For each element check, a cheap test that is true when the value needs the full check
# (which may normalise it, e.g. a bool back to an atom, or reject it). The builders below
# inline these tests: the control tuple of every received message goes through them.
_GUARDS: dict[Any, str] = {
    _pid: "type({v}) is not Pid",
    _ref: "type({v}) is not Reference",
    _atom: "type({v}) is not Atom",
    _proc: "type({v}) is not Pid and type({v}) is not Atom",
    _pid_or_atom: "type({v}) is not Pid and type({v}) is not Atom",
    _dest: "type({v}) is not Pid and type({v}) is not Atom and type({v}) is not Reference",
    _int: "type({v}) is not int",
    _list: "type({v}) is not list",
}


def _arity(cls: type[Any], t: tuple[Any, ...], n: int) -> None:
    raise ProtocolError(f"{cls.__name__} control tuple has {len(t)} elements, expected {n}: {t!r}")


def _fix(cls: type[Any], t: tuple[Any, ...], check: _Check, value: Any) -> Any:
    try:
        return check(value)
    except ValueError as exc:
        raise ProtocolError(f"malformed {cls.__name__} control tuple {t!r}: {exc}") from None


def _make_builder(
    cls: type[Any], checks: tuple[_Check, ...], order: tuple[int, ...]
) -> Callable[[tuple[Any, ...]], Any]:
    """Generate ``build(t)`` that checks a control tuple and constructs ``cls``."""
    n = len(checks) + 1
    lines = ["def build(t):", f"    if len(t) != {n}: _arity(cls, t, {n})"]
    env: dict[str, Any] = {
        "cls": cls,
        "Pid": Pid,
        "Atom": Atom,
        "Reference": Reference,
        "_arity": _arity,
        "_fix": _fix,
    }
    for i, check in enumerate(checks, 1):
        lines.append(f"    e{i} = t[{i}]")
        guard = _GUARDS.get(check)
        if guard is not None:
            env[f"check{i}"] = check
            lines.append(f"    if {guard.format(v=f'e{i}')}: e{i} = _fix(cls, t, check{i}, e{i})")
    setters = _slot_setters(cls)
    if setters is None:
        lines.append(f"    return cls({', '.join(f'e{k + 1}' for k in order)})")
    else:
        # __init__ sets each field through object.__setattr__, which costs three times what
        # the slots' own descriptors do; the result is the same.
        env["_new"] = object.__new__
        lines.append("    o = _new(cls)")
        for j, (k, setter) in enumerate(zip(order, setters, strict=True)):
            env[f"set{j}"] = setter
            lines.append(f"    set{j}(o, e{k + 1})")
        lines.append("    return o")
    exec("\n".join(lines), env)  # generated only from the constants above
    return env["build"]  # type: ignore[no-any-return]


def _make_to_term(op: int, layout: tuple[str, ...]) -> Callable[[Any], tuple[Any, ...]]:
    """Generate ``to_term(self)`` spelling out the tuple: the generic one's list and getattr
    calls cost each message sent (a spawn reply, an exit) more than the encoding."""
    fields = "".join(f", self.{name}" for name in layout) or ","
    env: dict[str, Any] = {}
    exec(f"def to_term(self):\n    return ({op}{fields})", env)  # names are the class's slots
    return env["to_term"]  # type: ignore[no-any-return]


def _slot_setters(cls: type[Any]) -> list[Callable[[Any, Any], None]] | None:
    """The ``__set__`` of each field's slot, in field order, when constructing ``cls`` is
    nothing more than setting them (else None: the builder calls the class)."""
    if "__init__" not in cls.__dict__:
        return None
    setters = []
    for name in cls._FIELDS:
        slot: Any = getattr(cls, name, None)
        if type(slot).__name__ != "member_descriptor":
            return None
        setters.append(slot.__set__)
    return setters


def _op(
    op: int, *checks: _Check, layout: tuple[str, ...] | None = None, payload: bool = False
) -> Callable[[type[Any]], type[Any]]:
    """Register a control message class for ``op`` with element checks in tuple order."""

    def wrap(cls: type[Any]) -> type[Any]:
        cls.OP = int(op)
        cls.HAS_PAYLOAD = payload
        names = cls._FIELDS
        cls.LAYOUT = names if layout is None else layout
        cls._CHECKS = tuple(checks)
        if len(cls.LAYOUT) != len(checks) or sorted(cls.LAYOUT) != sorted(names):
            raise TypeError(f"bad layout for {cls.__name__}")  # pragma: no cover
        cls._ORDER = tuple(cls.LAYOUT.index(n) for n in names)
        if "to_term" not in cls.__dict__:
            cls.to_term = _make_to_term(cls.OP, cls.LAYOUT)
        _BY_OP[int(op)] = cls
        return cls

    return wrap


@_op(DOP.LINK, _pid, _pid)
class Link(ControlMessage):
    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.SEND, _any, _pid, layout=("unused", "to_pid"), payload=True)
class Send(ControlMessage):
    __slots__ = ("to_pid", "unused")
    to_pid: Pid
    unused: Any

    def __init__(self, to_pid: Pid, unused: Any = _EMPTY) -> None:
        _set(self, "to_pid", to_pid)
        _set(self, "unused", unused)

    def to_term(self) -> tuple[Any, ...]:
        return (2, self.unused, self.to_pid)


@_op(DOP.EXIT, _pid, _pid, _any)
class Exit(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "reason")
    from_pid: Pid
    to_pid: Pid
    reason: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "reason", reason)


@_op(DOP.UNLINK, _pid, _pid)
class Unlink(ControlMessage):
    """The old unlink (gone in OTP 26; UNLINK_ID replaces it)."""

    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.NODE_LINK)
class NodeLink(ControlMessage):
    """Obsolete; kept so it decodes."""

    __slots__ = ()


@_op(DOP.REG_SEND, _pid, _any, _atom, layout=("from_pid", "unused", "to_name"), payload=True)
class RegSend(ControlMessage):
    __slots__ = ("from_pid", "to_name", "unused")
    from_pid: Pid
    to_name: Atom
    unused: Any

    def __init__(self, from_pid: Pid, to_name: Atom, unused: Any = _EMPTY) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_name", to_name)
        _set(self, "unused", unused)

    def to_term(self) -> tuple[Any, ...]:
        return (6, self.from_pid, self.unused, self.to_name)


@_op(DOP.GROUP_LEADER, _pid, _pid)
class GroupLeader(ControlMessage):
    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.EXIT2, _pid, _pid, _any)
class Exit2(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "reason")
    from_pid: Pid
    to_pid: Pid
    reason: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, reason: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "reason", reason)


@_op(DOP.SEND_TT, _any, _pid, _any, layout=("unused", "to_pid", "token"), payload=True)
class SendTT(ControlMessage):
    __slots__ = ("to_pid", "token", "unused")
    to_pid: Pid
    token: Any
    unused: Any

    def __init__(self, to_pid: Pid, token: Any, unused: Any = _EMPTY) -> None:
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)
        _set(self, "unused", unused)


@_op(DOP.EXIT_TT, _pid, _pid, _any, _any, layout=("from_pid", "to_pid", "token", "reason"))
class ExitTT(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "token", "reason")
    from_pid: Pid
    to_pid: Pid
    token: Any
    reason: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, token: Any, reason: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)
        _set(self, "reason", reason)


@_op(DOP.REG_SEND_TT, _pid, _any, _atom, _any, layout=("from_pid", "unused", "to_name", "token"), payload=True)
class RegSendTT(ControlMessage):
    __slots__ = ("from_pid", "to_name", "token", "unused")
    from_pid: Pid
    to_name: Atom
    token: Any
    unused: Any

    def __init__(self, from_pid: Pid, to_name: Atom, token: Any, unused: Any = _EMPTY) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_name", to_name)
        _set(self, "token", token)
        _set(self, "unused", unused)


@_op(DOP.EXIT2_TT, _pid, _pid, _any, _any, layout=("from_pid", "to_pid", "token", "reason"))
class Exit2TT(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "token", "reason")
    from_pid: Pid
    to_pid: Pid
    token: Any
    reason: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, token: Any, reason: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)
        _set(self, "reason", reason)


@_op(DOP.MONITOR_P, _pid, _proc, _ref)
class MonitorP(ControlMessage):
    """``from_pid`` monitors ``to_proc`` (a pid or a registered name)."""

    __slots__ = ("from_pid", "to_proc", "ref")
    from_pid: Pid
    to_proc: Pid | Atom
    ref: Reference

    def __init__(self, from_pid: Pid, to_proc: Pid | Atom, ref: Reference) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_proc", to_proc)
        _set(self, "ref", ref)


@_op(DOP.DEMONITOR_P, _pid, _proc, _ref)
class DemonitorP(ControlMessage):
    __slots__ = ("from_pid", "to_proc", "ref")
    from_pid: Pid
    to_proc: Pid | Atom
    ref: Reference

    def __init__(self, from_pid: Pid, to_proc: Pid | Atom, ref: Reference) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_proc", to_proc)
        _set(self, "ref", ref)


@_op(DOP.MONITOR_P_EXIT, _proc, _pid, _ref, _any)
class MonitorPExit(ControlMessage):
    """The monitored ``from_proc`` died: 'DOWN' for ``to_pid``."""

    __slots__ = ("from_proc", "to_pid", "ref", "reason")
    from_proc: Pid | Atom
    to_pid: Pid
    ref: Reference
    reason: Any

    def __init__(self, from_proc: Pid | Atom, to_pid: Pid, ref: Reference, reason: Any) -> None:
        _set(self, "from_proc", from_proc)
        _set(self, "to_pid", to_pid)
        _set(self, "ref", ref)
        _set(self, "reason", reason)


@_op(DOP.SEND_SENDER, _pid, _pid, payload=True)
class SendSender(ControlMessage):
    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)

    def to_term(self) -> tuple[Any, ...]:
        return (22, self.from_pid, self.to_pid)


@_op(DOP.SEND_SENDER_TT, _pid, _pid, _any, payload=True)
class SendSenderTT(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "token")
    from_pid: Pid
    to_pid: Pid
    token: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, token: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)


@_op(DOP.PAYLOAD_EXIT, _pid, _pid, payload=True)
class PayloadExit(ControlMessage):
    """EXIT whose reason is the payload."""

    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.PAYLOAD_EXIT_TT, _pid, _pid, _any, payload=True)
class PayloadExitTT(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "token")
    from_pid: Pid
    to_pid: Pid
    token: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, token: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)


@_op(DOP.PAYLOAD_EXIT2, _pid, _pid, payload=True)
class PayloadExit2(ControlMessage):
    """EXIT2 (exit/2) whose reason is the payload."""

    __slots__ = ("from_pid", "to_pid")
    from_pid: Pid
    to_pid: Pid

    def __init__(self, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.PAYLOAD_EXIT2_TT, _pid, _pid, _any, payload=True)
class PayloadExit2TT(ControlMessage):
    __slots__ = ("from_pid", "to_pid", "token")
    from_pid: Pid
    to_pid: Pid
    token: Any

    def __init__(self, from_pid: Pid, to_pid: Pid, token: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)
        _set(self, "token", token)


@_op(DOP.PAYLOAD_MONITOR_P_EXIT, _proc, _pid, _ref, payload=True)
class PayloadMonitorPExit(ControlMessage):
    """MONITOR_P_EXIT whose reason is the payload."""

    __slots__ = ("from_proc", "to_pid", "ref")
    from_proc: Pid | Atom
    to_pid: Pid
    ref: Reference

    def __init__(self, from_proc: Pid | Atom, to_pid: Pid, ref: Reference) -> None:
        _set(self, "from_proc", from_proc)
        _set(self, "to_pid", to_pid)
        _set(self, "ref", ref)


def _mfa(x: Any) -> tuple[Atom, Atom, int]:
    if type(x) is tuple and len(x) == 3:
        return (_atom(x[0]), _atom(x[1]), _int(x[2]))
    raise ValueError("{Module, Function, Arity}")


class SpawnRequest(ControlMessage):
    """spawn_request/5 from ``from_pid``; the payload is the argument list."""

    __slots__ = ("req_id", "from_pid", "group_leader", "module", "function", "arity", "opts")
    req_id: Reference
    from_pid: Pid
    group_leader: Pid
    module: Atom
    function: Atom
    arity: int
    opts: list[Any]

    OP: ClassVar[int] = DOP.SPAWN_REQUEST
    HAS_PAYLOAD: ClassVar[bool] = True
    LAYOUT: ClassVar[tuple[str, ...]] = (
        "req_id",
        "from_pid",
        "group_leader",
        "mfa",
        "opts",
    )
    _CHECKS: ClassVar[tuple[_Check, ...]] = (_ref, _pid, _pid, _mfa, _list)

    def __init__(
        self,
        req_id: Reference,
        from_pid: Pid,
        group_leader: Pid,
        module: Atom,
        function: Atom,
        arity: int,
        opts: list[Any],
    ) -> None:
        _set(self, "req_id", req_id)
        _set(self, "from_pid", from_pid)
        _set(self, "group_leader", group_leader)
        _set(self, "module", module)
        _set(self, "function", function)
        _set(self, "arity", arity)
        _set(self, "opts", opts)

    @property
    def mfa(self) -> tuple[Atom, Atom, int]:
        return (self.module, self.function, self.arity)

    def to_term(self) -> tuple[Any, ...]:
        return (
            self.OP,
            self.req_id,
            self.from_pid,
            self.group_leader,
            (self.module, self.function, self.arity),
            self.opts,
        )

    @classmethod
    def _from_elements(cls, t: tuple[Any, ...]) -> ControlMessage:
        n = 6 if cls is SpawnRequest else 7
        if len(t) != n:
            raise ProtocolError(
                f"{cls.__name__} control tuple has {len(t)} elements, expected {n}: {t!r}"
            )
        try:
            req_id, from_pid, gl = _ref(t[1]), _pid(t[2]), _pid(t[3])
            module, function, arity = _mfa(t[4])
            opts = _list(t[5])
        except ValueError as exc:
            raise ProtocolError(f"malformed {cls.__name__} control tuple {t!r}: {exc}") from None
        if n == 7:
            return SpawnRequestTT(req_id, from_pid, gl, module, function, arity, opts, t[6])
        return SpawnRequest(req_id, from_pid, gl, module, function, arity, opts)


class SpawnRequestTT(SpawnRequest):
    __slots__ = ("token",)
    token: Any

    OP: ClassVar[int] = DOP.SPAWN_REQUEST_TT

    def __init__(
        self,
        req_id: Reference,
        from_pid: Pid,
        group_leader: Pid,
        module: Atom,
        function: Atom,
        arity: int,
        opts: list[Any],
        token: Any = None,
    ) -> None:
        SpawnRequest.__init__(self, req_id, from_pid, group_leader, module, function, arity, opts)
        _set(self, "token", token)

    def to_term(self) -> tuple[Any, ...]:
        return (*SpawnRequest.to_term(self), self.token)


_BY_OP[DOP.SPAWN_REQUEST] = SpawnRequest
_BY_OP[DOP.SPAWN_REQUEST_TT] = SpawnRequestTT


@_op(DOP.SPAWN_REPLY, _ref, _pid, _int, _pid_or_atom)
class SpawnReply(ControlMessage):
    """``result`` is the new pid, or an atom naming the error; ``flags`` 1 link, 2 monitor."""

    __slots__ = ("req_id", "to_pid", "flags", "result")
    req_id: Reference
    to_pid: Pid
    flags: int
    result: Pid | Atom

    def __init__(self, req_id: Reference, to_pid: Pid, flags: int, result: Pid | Atom) -> None:
        _set(self, "req_id", req_id)
        _set(self, "to_pid", to_pid)
        _set(self, "flags", flags)
        _set(self, "result", result)


@_op(DOP.SPAWN_REPLY_TT, _ref, _pid, _int, _pid_or_atom, _any)
class SpawnReplyTT(ControlMessage):
    __slots__ = ("req_id", "to_pid", "flags", "result", "token")
    req_id: Reference
    to_pid: Pid
    flags: int
    result: Pid | Atom
    token: Any

    def __init__(self, req_id: Reference, to_pid: Pid, flags: int, result: Pid | Atom, token: Any) -> None:
        _set(self, "req_id", req_id)
        _set(self, "to_pid", to_pid)
        _set(self, "flags", flags)
        _set(self, "result", result)
        _set(self, "token", token)


@_op(DOP.ALIAS_SEND, _pid, _ref, payload=True)
class AliasSend(ControlMessage):
    __slots__ = ("from_pid", "alias")
    from_pid: Pid
    alias: Reference

    def __init__(self, from_pid: Pid, alias: Reference) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "alias", alias)


@_op(DOP.ALIAS_SEND_TT, _pid, _ref, _any, payload=True)
class AliasSendTT(ControlMessage):
    __slots__ = ("from_pid", "alias", "token")
    from_pid: Pid
    alias: Reference
    token: Any

    def __init__(self, from_pid: Pid, alias: Reference, token: Any) -> None:
        _set(self, "from_pid", from_pid)
        _set(self, "alias", alias)
        _set(self, "token", token)


@_op(DOP.UNLINK_ID, _int, _pid, _pid)
class UnlinkId(ControlMessage):
    __slots__ = ("id", "from_pid", "to_pid")
    id: int
    from_pid: Pid
    to_pid: Pid

    def __init__(self, id: int, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "id", id)
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


@_op(DOP.UNLINK_ID_ACK, _int, _pid, _pid)
class UnlinkIdAck(ControlMessage):
    __slots__ = ("id", "from_pid", "to_pid")
    id: int
    from_pid: Pid
    to_pid: Pid

    def __init__(self, id: int, from_pid: Pid, to_pid: Pid) -> None:
        _set(self, "id", id)
        _set(self, "from_pid", from_pid)
        _set(self, "to_pid", to_pid)


class AltactSigSend(ControlMessage):
    """OTP 28 alternative-action signal; ``token`` is ABSENT when the tuple has 4 elements.

    Unknown ``flags`` bits are kept and must be ignored by the receiver.
    """

    __slots__ = ("flags", "sender", "to", "token")
    flags: int
    sender: Pid
    to: Pid | Atom | Reference
    token: Any

    OP: ClassVar[int] = DOP.ALTACT_SIG_SEND
    HAS_PAYLOAD: ClassVar[bool] = True
    LAYOUT: ClassVar[tuple[str, ...]] = ("flags", "sender", "to", "token")

    def __init__(self, flags: int, sender: Pid, to: Pid | Atom | Reference, token: Any = ABSENT) -> None:
        _set(self, "flags", flags)
        _set(self, "sender", sender)
        _set(self, "to", to)
        _set(self, "token", token)

    def to_term(self) -> tuple[Any, ...]:
        if self.token is ABSENT:
            return (self.OP, self.flags, self.sender, self.to)
        return (self.OP, self.flags, self.sender, self.to, self.token)

    @classmethod
    def _from_elements(cls, t: tuple[Any, ...]) -> ControlMessage:
        if len(t) not in (4, 5):
            raise ProtocolError(
                f"AltactSigSend control tuple has {len(t)} elements, expected 4 or 5: {t!r}"
            )
        try:
            flags, sender, to = _int(t[1]), _pid(t[2]), _dest(t[3])
        except ValueError as exc:
            raise ProtocolError(f"malformed AltactSigSend control tuple {t!r}: {exc}") from None
        return AltactSigSend(flags, sender, to, t[4] if len(t) == 5 else ABSENT)


_BY_OP[DOP.ALTACT_SIG_SEND] = AltactSigSend


def from_term(term: Any, payload: Any = NO_PAYLOAD) -> ControlMessage:
    """Check a decoded control tuple and build its class.

    ``payload`` is the decoded payload term, or NO_PAYLOAD if none followed; it is only
    checked for presence. Raises :class:`ProtocolError` for unknown operations, malformed
    tuples and a payload where none belongs (or none where one must be).
    """
    if type(term) is not tuple or not term:
        raise ProtocolError(f"control message is not a non-empty tuple: {term!r}")
    op = term[0]
    cls = _BY_OP.get(op) if type(op) is int else None
    if cls is None:
        raise ProtocolError(f"unknown distribution operation {op!r} in {term!r}")
    msg = cls._from_elements(term)
    if cls.HAS_PAYLOAD:
        if payload is NO_PAYLOAD:
            raise ProtocolError(f"{cls.__name__} needs a payload term and none followed")
    elif payload is not NO_PAYLOAD:
        raise ProtocolError(f"{cls.__name__} takes no payload but one followed")
    return msg
