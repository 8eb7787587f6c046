#!/usr/bin/env python3
"""Distribution benchmark: pynode <-> erl against erl <-> erl on the same machine.

Run from the repository root::

    .venv/bin/python benchmarks/dist.py            # full run, under a minute
    .venv/bin/python benchmarks/dist.py --quick    # smoke run, a few seconds
    .venv/bin/python benchmarks/dist.py --tls      # every node on TLS distribution

It starts a private EPMD and two distributed erl nodes (OTP from ``erl`` on PATH), A and B,
and a hidden pynode node. B hosts the peer processes (sinks, echo, sender); the workloads run
once from pynode towards B and once from erl node A towards B, with the same message shapes
and counts. A's side is a compiled module (not erl_eval), timed with erlang:monotonic_time;
pynode's side is timed with time.perf_counter.

Workloads (small message = ``{event, 12345, <<32 bytes>>, [1,2,3]}``):

(a) send: small messages to a process registered on B (``{Name, B} ! Msg``); from the
    first send until the sink's ``{got_all, N}`` reply arrives.
(b) receive: a process on B, given ``go``, sends N small messages to ``{Name, Here}``; from
    sending ``go`` until the N-th message is received. A line under the table gives B's CPU
    per wall second in each side's runs: at 1.00 the sender, not the receiver, sets the rate.
(c) echo: ``Echo ! {self(), Msg}``, wait for ``Msg`` back, sequentially; p50 and p99 of the
    round trip (after a warm-up).
(d) 1 MiB binaries sent to a process registered on B, which counts bytes and replies when it
    has them all; MB/s (10^6 bytes).
(e) echo as (c) from a plain thread through the blocking API (``BlockingNode``, its own node
    and event-loop thread); the note gives its p50 over the async p50 of (c).
(f) echo the other way: erl node A's round trips, timed in A as in (c), to an echo mailbox
    of the pynode node; its erl->erl column is (c)'s.

With ``--tls`` every node speaks TLS distribution (erl ``-proto_dist inet_tls`` with test
certificates from pynode.certs, mutual verification, TLS 1.2 as inet_tls_dist's default):
pynode<->erl over TLS beside erl->erl over TLS.

With ``--place apart`` or ``--place shared`` each workload's callee (erl node B; pynode in
(f)) is pinned to CPU 0 and its caller (pynode, or erl node A) to CPU 1 or to CPU 0 as well,
for both sides alike (``pinning.py``); by default the kernel places them, and it can give
erl's pair a placement pynode's spinning caller does not get (both erl nodes on one CPU).

With ``--transports`` a second table runs (a) and (c) between two pynode nodes in this
process, once over TCP and once over a Unix socket (one node listens on both), beside
erl->erl over TCP from the same run.

Each workload first runs a short warm-up (not timed). The throughput sides take turns, the
median of their runs is shown; the echo series (c), (e) and (f) take turns as well (5 per
run of the throughput sides), each turn a share of the round trips with echo processes of
its own, and their percentiles are of the pooled samples. The ratio
column is pynode/erl: for throughput, below 1 means pynode is slower; for latency, above 1
means pynode is slower.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import secrets
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio  # noqa: E402
from hostload import load  # noqa: E402
from pinning import ROLES, can_place, pin  # noqa: E402

import pynode.term as pt  # noqa: E402
from interop.erlnode import Epmd, ErlNode, unique  # noqa: E402
from interop.otp import Otp, otp25  # noqa: E402
from interop.tls_pki import erl_tls_args, make_pki  # noqa: E402
from pynode.runtime import Mailbox, Node  # noqa: E402
from pynode.term import Atom, Pid  # noqa: E402

MIB = 1024 * 1024

# ---------------------------------------------------------------------------------------------
# The Erlang side: compiled and loaded into both erl nodes.

ERL_MODULE = "pynode_dist_bench"
ERL_SOURCE = r"""
-module(pynode_dist_bench).
-export([sink/3, byte_sink/3, sender/3, echo/0,
         run/2, a_send/4, a_recv/3, a_echo/4, a_echo_to/4, a_bytes/4]).

%% ---- services on node B (used by pynode and by node A alike) ----------------------------

%% A process registered as Name that takes N messages, tells Owner and ends.
sink(Name, N, Owner) ->
    Pid = spawn(fun() -> sink_loop(N, Owner) end),
    true = register(Name, Pid),
    Pid.

sink_loop(0, Owner) -> Owner ! {got_all, 0};
sink_loop(N, Owner) -> sink_count(N, N, Owner).

sink_count(0, N, Owner) -> Owner ! {got_all, N};
sink_count(K, N, Owner) -> receive _ -> sink_count(K - 1, N, Owner) end.

%% A process registered as Name that sums byte_size of binaries up to Total, then tells Owner.
byte_sink(Name, Total, Owner) ->
    Pid = spawn(fun() -> byte_loop(0, Total, Owner) end),
    true = register(Name, Pid),
    Pid.

byte_loop(Got, Total, Owner) when Got >= Total -> Owner ! {got_all, Got};
byte_loop(Got, Total, Owner) ->
    receive B when is_binary(B) -> byte_loop(Got + byte_size(B), Total, Owner) end.

%% A process that, given go, sends N copies of Msg to Dest (a pid or {Name, Node}).
sender(Dest, N, Msg) ->
    spawn(fun() -> receive go -> send_loop(N, Dest, Msg) end end).

send_loop(0, _Dest, _Msg) -> ok;
send_loop(N, Dest, Msg) -> Dest ! Msg, send_loop(N - 1, Dest, Msg).

%% {From, Msg} -> From ! Msg, until stop.
echo() -> spawn(fun echo_loop/0).

echo_loop() ->
    receive
        {From, Msg} -> From ! Msg, echo_loop();
        stop -> ok
    end.

%% ---- the measuring side on node A (pynode's role) ----------------------------------------

%% Run F(Args) in a fresh process (clean mailbox and heap) and return its value.
run(F, Args) ->
    Parent = self(),
    {Pid, Ref} = spawn_monitor(fun() -> Parent ! {self(), apply(?MODULE, F, Args)} end),
    receive
        {Pid, Result} -> erlang:demonitor(Ref, [flush]), Result;
        {'DOWN', Ref, process, Pid, Reason} -> error({bench_failed, F, Reason})
    end.

ns(T0, T1) -> erlang:convert_time_unit(T1 - T0, native, nanosecond).

%% (a) N small messages to {Name, B}; ns from the first send to B's got_all.
a_send(B, Name, N, Msg) ->
    _ = rpc:call(B, ?MODULE, sink, [Name, N, self()]),
    T0 = erlang:monotonic_time(),
    send_loop(N, {Name, B}, Msg),
    receive {got_all, N} -> ok end,
    T1 = erlang:monotonic_time(),
    ns(T0, T1).

%% (b) a sender on B sends N small messages to {Name, A}; ns from go to the N-th message.
a_recv(B, N, Msg) ->
    Name = pynode_dist_bench_inbox,
    true = register(Name, self()),
    Sender = rpc:call(B, ?MODULE, sender, [{Name, node()}, N, Msg]),
    T0 = erlang:monotonic_time(),
    Sender ! go,
    recv_loop(N),
    T1 = erlang:monotonic_time(),
    unregister(Name),
    ns(T0, T1).

recv_loop(0) -> ok;
recv_loop(N) -> receive _ -> recv_loop(N - 1) end.

%% (c) Warm sequential round trips, then Count timed ones; the list of round trips in ns.
a_echo(B, Warm, Count, Msg) ->
    Echo = rpc:call(B, ?MODULE, echo, []),
    _ = echo_times(Warm, Echo, Msg, []),
    Times = echo_times(Count, Echo, Msg, []),
    Echo ! stop,
    Times.

%% (f) as (c), to a given echo process (pynode's): the list of round trips in ns.
a_echo_to(Echo, Warm, Count, Msg) ->
    _ = echo_times(Warm, Echo, Msg, []),
    echo_times(Count, Echo, Msg, []).

echo_times(0, _Echo, _Msg, Acc) -> lists:reverse(Acc);
echo_times(K, Echo, Msg, Acc) ->
    T0 = erlang:monotonic_time(),
    Echo ! {self(), Msg},
    receive Msg -> ok end,
    T1 = erlang:monotonic_time(),
    echo_times(K - 1, Echo, Msg, [ns(T0, T1) | Acc]).

%% (d) Count binaries of Size bytes to {Name, B}; ns from the first send to B's got_all.
a_bytes(B, Name, Count, Size) ->
    Bin = binary:copy(<<7>>, Size),
    Total = Count * Size,
    _ = rpc:call(B, ?MODULE, byte_sink, [Name, Total, self()]),
    T0 = erlang:monotonic_time(),
    send_loop(Count, {Name, B}, Bin),
    receive {got_all, Total} -> ok end,
    T1 = erlang:monotonic_time(),
    ns(T0, T1).
"""


@contextmanager
def sigint_deferred() -> Iterator[None]:
    """Hold Ctrl-C while a child process starts, so it is never started without being recorded
    for the clean-up; the interrupt is raised once the block is done."""
    got: list[int] = []
    old = signal.signal(signal.SIGINT, lambda *_: got.append(1))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, old)
    if got and old is not signal.SIG_IGN:
        raise KeyboardInterrupt


def load_module(erl: ErlNode, path: str) -> None:
    erl.run(
        "F = unicode:characters_to_list(P),"
        " {ok, M, Bin} = compile:file(F, [binary, report_errors]),"
        " {module, M} = code:load_binary(M, F, Bin), ok.",
        P=path,
    )


@contextmanager
def erl_nodes(
    count: int, prefix: str, extra_args: Callable[[Path, Otp], list[str]] | None = None
) -> Iterator[tuple[Epmd, list[ErlNode]]]:
    """A private EPMD and ``count`` erl nodes (OTP 25, one cookie) with this benchmark's
    Erlang module loaded; every one of them stopped afterwards, even on Ctrl-C.
    ``extra_args(tmp, otp)`` gives more erl arguments; ``tmp`` lives as long as the nodes."""
    otp = otp25()
    cookie = secrets.token_hex(8)
    epmd: Epmd | None = None
    nodes: list[ErlNode] = []
    try:
        with tempfile.TemporaryDirectory(prefix=prefix) as tmp:
            src = os.path.join(tmp, ERL_MODULE + ".erl")
            Path(src).write_text(ERL_SOURCE)
            erl_args = extra_args(Path(tmp), otp) if extra_args is not None else []
            with sigint_deferred():
                epmd = Epmd(otp)
            for _ in range(count):
                with sigint_deferred():
                    nodes.append(ErlNode(otp, epmd, cookie=cookie, args=erl_args))
                load_module(nodes[-1], src)
            yield epmd, nodes
    finally:
        for e in nodes:
            try:
                e.kill()
            finally:
                e.close()
        if epmd is not None:
            epmd.kill()


# ---------------------------------------------------------------------------------------------
# Parameters and results


@dataclass(frozen=True)
class Counts:
    small: int  # (a) and (b)
    echo: int  # (c) timed round trips
    echo_warm: int
    big: int  # (d) number of 1 MiB binaries
    big_size: int = MIB

    def warm(self) -> Counts:
        return Counts(
            max(1, self.small // 10),
            max(1, self.echo // 10),
            1,
            max(1, self.big // 10),
            self.big_size,
        )


FULL = Counts(small=100_000, echo=5_000, echo_warm=500, big=1_000)
QUICK = Counts(small=5_000, echo=500, echo_warm=50, big=20)

SMALL_MSG = (Atom("event"), 12345, bytes(range(32)), [1, 2, 3])

# echo turns per repeat: apart, a series is fast or slow as a whole (pynode's p50 22-24 us
# in some 1,000-round-trip series, 33-38 in others, 2026-12-02), by the state erl's
# schedulers are in when it begins, presumably where its new echo process (and (f)'s new
# caller on A) runs; with 5 turns a side could draw the fast state 3 times and the other
# side none, so each turn has processes of its own, and there are more turns
ECHO_TURNS = 5

# idle time before each echo series, so that each starts from the same rest: in the kernel's
# placement a series keeps the placement it starts in (pynode's or erl A's caller on B's CPU
# or on the other), and which one depends on what ran just before. Series started right
# after one another, or 2-10 ms after (scratch, 2026-12-05, 5 series of 2,000 round trips per
# gap and side): pynode's caller shared B's CPU in 2 of 15, erl's pair in 4 of 15, and erl
# had drawn it in the runs that read pynode 2.6-2.9x erl->erl (erl 12.6-14 us, pynode 26-27
# on the other CPU). 30 and 100 ms before each: both on one CPU in all 20, pynode 13.4-14.3
# us p50 and erl 12.5-13.8
ECHO_SETTLE_S = 0.05


@dataclass
class Row:
    name: str
    unit: str
    py: float | None = None
    erl: float | None = None
    busy: dict[str, float] = field(default_factory=dict)
    """A watched erl node's CPU seconds per wall second during the runs, by side."""


def cpu_seconds(erl: ErlNode | None) -> float | None:
    """CPU time (all threads) of ``erl``'s OS process so far, where /proc tells it."""
    if erl is None or erl.proc is None:
        return None
    try:
        with open(f"/proc/{erl.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def percentile(samples: list[int], p: float) -> float:
    """Nearest-rank percentile (the same for both sides)."""
    s = sorted(samples)
    k = max(0, math.ceil(p / 100 * len(s)) - 1)
    return s[k]


async def erl_run(erl: ErlNode, text: str, **bindings: Any) -> Any:
    """Evaluate in erl from a worker thread, so the pynode node keeps serving meanwhile."""
    return await anyio.to_thread.run_sync(lambda: erl.run(text, **bindings), abandon_on_cancel=True)


# ---------------------------------------------------------------------------------------------
# pynode side


class PySide:
    def __init__(self, node: Node, b: ErlNode) -> None:
        self.node = node
        self.b = b
        self.mb: Mailbox = node.mailbox("pynode_dist_bench_inbox")
        self.timeout = 120.0

    async def send_small(self, n: int) -> float:
        """(a) msgs/s."""
        mb, b = self.mb, self.b
        name = Atom(unique("sink"))
        await erl_run(b, "pynode_dist_bench:sink(Name, N, Owner).", Name=name, N=n, Owner=mb.pid)
        dest = (name, b.name)
        msg = SMALL_MSG
        send = mb.send
        t0 = time.perf_counter()
        for _ in range(n):
            await send(dest, msg)
        reply = await mb.receive(timeout=self.timeout)
        t1 = time.perf_counter()
        assert reply == (Atom("got_all"), n), reply
        return n / (t1 - t0)

    async def recv_small(self, n: int) -> float:
        """(b) msgs/s."""
        mb, b = self.mb, self.b
        sender = await erl_run(
            b,
            "pynode_dist_bench:sender(Dest, N, Msg).",
            Dest=(mb.name, self.node.name),
            N=n,
            Msg=SMALL_MSG,
        )
        assert isinstance(sender, Pid)
        receive = mb.receive
        t0 = time.perf_counter()
        await mb.send(sender, Atom("go"))
        with anyio.fail_after(self.timeout):
            for _ in range(n):
                await receive()
        t1 = time.perf_counter()
        return n / (t1 - t0)

    async def echo(self, warm: int, count: int) -> list[int]:
        """(c) round trips in ns."""
        mb, b = self.mb, self.b
        echo = await erl_run(b, "pynode_dist_bench:echo().")
        assert isinstance(echo, Pid)
        msg = SMALL_MSG
        out = (mb.pid, msg)
        times: list[int] = []
        clock = time.perf_counter_ns
        with anyio.fail_after(self.timeout):
            for i in range(warm + count):
                t0 = clock()
                await mb.send(echo, out)
                back = await mb.receive()
                t1 = clock()
                if i >= warm:
                    times.append(t1 - t0)
        await mb.send(echo, Atom("stop"))
        assert back == msg, back
        return times

    async def send_big(self, count: int, size: int) -> float:
        """(d) MB/s."""
        mb, b = self.mb, self.b
        name = Atom(unique("bytes"))
        total = count * size
        await erl_run(
            b, "pynode_dist_bench:byte_sink(Name, T, Owner).", Name=name, T=total, Owner=mb.pid
        )
        dest = (name, b.name)
        blob = bytes([7]) * size
        t0 = time.perf_counter()
        for _ in range(count):
            await mb.send(dest, blob)
        reply = await mb.receive(timeout=self.timeout)
        t1 = time.perf_counter()
        assert reply == (Atom("got_all"), total), reply
        return total / (t1 - t0) / 1e6


def start_blocking(b: ErlNode, epmd_port: int) -> Any:
    """(e)'s BlockingNode (its own node and event-loop thread), connected to B."""
    from pynode.blocking import BlockingNode

    node = BlockingNode(
        unique("bbench") + "@127.0.0.1", b.cookie, listen_host="127.0.0.1", epmd_port=epmd_port,
        backend_options=LOOP_OPTIONS, tls=TLS, **BUSY_WAIT,
    ).start()
    try:
        if not node.ping(b.name):
            raise RuntimeError(f"the blocking node cannot reach {b.name}")
    except BaseException:
        node.stop()
        raise
    return node


def blocking_echo(node: Any, b: ErlNode, warm: int, count: int) -> list[int]:
    """(e) round trips in ns, from this (plain) thread through the BlockingNode, to a new
    echo process on B (as each (c) series has: see ECHO_TURNS)."""
    echo = b.run("pynode_dist_bench:echo().")
    assert isinstance(echo, Pid)
    mb = node.mailbox()
    out = (mb.pid, SMALL_MSG)
    times: list[int] = []
    clock = time.perf_counter_ns
    try:
        for i in range(warm + count):
            t0 = clock()
            mb.send(echo, out)
            back = mb.receive(timeout=30)
            t1 = clock()
            if i >= warm:
                times.append(t1 - t0)
    finally:
        mb.send(echo, Atom("stop"))
        mb.close()
    assert back == SMALL_MSG, back
    return times


# ---------------------------------------------------------------------------------------------
# erl A -> erl B side


class ErlSide:
    def __init__(self, a: ErlNode, b: ErlNode) -> None:
        self.a = a
        self.b = b

    async def _run(self, fun: str, *args: Any) -> Any:
        return await erl_run(
            self.a, "pynode_dist_bench:run(F, Args).", F=Atom(fun), Args=[self.b.name, *args]
        )

    async def send_small(self, n: int) -> float:
        ns = await self._run("a_send", Atom(unique("sink")), n, SMALL_MSG)
        return n / (ns / 1e9)

    async def recv_small(self, n: int) -> float:
        ns = await self._run("a_recv", n, SMALL_MSG)
        return n / (ns / 1e9)

    async def echo(self, warm: int, count: int) -> list[int]:
        return await self._run("a_echo", warm, count, SMALL_MSG)

    async def send_big(self, count: int, size: int) -> float:
        ns = await self._run("a_bytes", Atom(unique("bytes")), count, size)
        return count * size / (ns / 1e9) / 1e6


# ---------------------------------------------------------------------------------------------
# driver


def place_callers(a: ErlNode, b: ErlNode) -> None:
    """Under --place: B on the callee's CPUs, erl A and this process on the caller's."""
    if PLACE is not None:
        assert a.proc is not None and b.proc is not None
        callee, caller = ROLES[PLACE]
        pin(b.proc.pid, callee)
        pin(a.proc.pid, caller)
        pin(os.getpid(), caller)


def place_py_as_callee() -> None:
    """Under --place: this process (pynode) on the callee's CPUs, for erl A's calls to it."""
    if PLACE is not None:
        pin(os.getpid(), ROLES[PLACE][0])


def fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/a"
    if unit == "us":
        return f"{v:,.0f}" if v >= 100 else f"{v:,.1f}"
    return f"{v:,.0f}" if v >= 100 else f"{v:,.2f}"


def print_table(rows: list[Row], counts: Counts, repeat: int, elapsed: float, release: str) -> None:
    head = ("workload", "pynode", "erl->erl", "pynode/erl")
    body = []
    for r in rows:
        ratio = "n/a" if not (r.py and r.erl) else f"{r.py / r.erl:.3f}"
        body.append((f"{r.name} ({r.unit})", fmt(r.py, r.unit), fmt(r.erl, r.unit), ratio))
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(4)]

    def line(cells: tuple[str, ...]) -> str:
        return " | ".join(
            c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)
        )

    print(line(head))
    print("-+-".join("-" * w for w in widths))
    for b in body:
        print(line(b))
    print()
    if rows[5].py and rows[2].py:
        print(f"BlockingNode echo p50 / async echo p50: {rows[5].py / rows[2].py:.3f}")
    if rows[1].busy:
        print(
            "(b) erl node B, the sender, CPU seconds per wall second: "
            + ", ".join(f"{k} runs {v:.2f}" for k, v in rows[1].busy.items())
            + " (1.00: a whole core, the sender is the bottleneck)"
        )
    print(
        f"note: nproc={os.cpu_count()} ({platform.machine()}, {platform.system()} "
        f"{platform.release()}); Python {platform.python_version()}, pynode codec "
        f"{pt.implementation!r}, anyio on {LOOP}, busy_wait {BUSY_WAIT.get('busy_wait', 'default')}; "
        f"erl OTP {release}; "
        f"distribution over {'TLS 1.2 (inet_tls)' if TLS is not None else 'TCP'}; counts: "
        f"{counts.small:,} small msgs, {counts.echo:,} round trips (+{counts.echo_warm} warm), "
        f"{counts.big} x {counts.big_size // MIB} MiB; throughput = median of {repeat} run(s); "
        f"placement: {PLACE or 'the kernel'}; {load()}; "
        f"total {elapsed:.0f} s. "
        "Ratio = pynode/erl (throughput: <1 is slower; latency: >1 is slower)."
    )


async def bench(
    counts: Counts, repeat: int, a: ErlNode, b: ErlNode, epmd: Epmd, log: Callable[[str], None]
) -> list[Row]:
    rows = [
        Row("(a) small msgs py->erl", "msgs/s"),
        Row("(b) small msgs erl->py", "msgs/s"),
        Row("(c) echo round trip p50", "us"),
        Row("(c) echo round trip p99", "us"),
        Row("(d) 1 MiB binaries py->erl", "MB/s"),
        Row("(e) echo p50, BlockingNode", "us"),
        Row("(e) echo p99, BlockingNode", "us"),
        Row("(f) echo erl->py->erl p50", "us"),
        Row("(f) echo erl->py->erl p99", "us"),
    ]
    warm = counts.warm()
    async with Node(
        unique("bench") + "@127.0.0.1", b.cookie, listen_host="127.0.0.1", epmd_port=epmd.port, tls=TLS,
        **BUSY_WAIT,
    ) as node:
        if not await node.ping(b.name):
            raise RuntimeError(f"pynode cannot reach {b.name}")
        py = PySide(node, b)
        er = ErlSide(a, b)
        if await erl_run(a, "net_adm:ping(B).", B=b.name) != Atom("pong"):
            raise RuntimeError(f"{a.name} cannot reach {b.name}")
        place_callers(a, b)

        sides = ((py, "pynode", "py"), (er, "erl->erl", "erl"))

        async def throughput(
            row: Row, tag: str, run: Callable[[Any, Counts], Any], watch: ErlNode | None = None
        ) -> None:
            for side, label, _ in sides:
                log(f"{tag} {label}: warm-up")
                await run(side, warm)
            # the sides take turns, so a burst of load on this shared machine hits both
            runs: dict[str, list[float]] = {attr: [] for _, _, attr in sides}
            busy: dict[str, list[float]] = {attr: [] for _, _, attr in sides}
            for _ in range(repeat):
                for side, label, attr in sides:
                    c0, t0 = cpu_seconds(watch), time.perf_counter()
                    runs[attr].append(await run(side, counts))
                    c1, t1 = cpu_seconds(watch), time.perf_counter()
                    if c0 is not None and c1 is not None:
                        busy[attr].append((c1 - c0) / (t1 - t0))
                    log(f"{tag} {label}: {runs[attr][-1]:,.0f} {row.unit}")
            for _, _, attr in sides:
                setattr(row, attr, statistics.median(runs[attr]))
                if busy[attr]:
                    row.busy[attr] = statistics.median(busy[attr])

        await throughput(rows[0], "(a)", lambda side, c: side.send_small(c.small))
        await throughput(rows[1], "(b)", lambda side, c: side.recv_small(c.small), watch=b)
        await throughput(rows[4], "(d)", lambda side, c: side.send_big(c.big, c.big_size))
        await echoes(node, py, er, a, b, epmd, counts, repeat, rows, log)
    return rows


async def echoes(
    node: Node, py: PySide, er: ErlSide, a: ErlNode, b: ErlNode, epmd: Epmd, counts: Counts,
    repeat: int, rows: list[Row], log: Callable[[str], None],
) -> None:
    """(c), (e) and (f): the echo series take turns (``ECHO_TURNS`` per ``repeat``, the
    round trips split evenly), so a burst of load on this shared machine hits each, and
    each meets erl's fast state about as often (see ECHO_TURNS); percentiles are of
    the pooled samples."""
    turns = max(1, repeat * ECHO_TURNS)
    per = max(1, counts.echo // turns)
    warm = max(1, counts.echo_warm // repeat)  # each turn's, as with 5 turns in all
    series: dict[str, list[int]] = {"c_py": [], "c_erl": [], "e": [], "f": []}
    blocking = None
    if LOOP != "trio":
        blocking = await anyio.to_thread.run_sync(start_blocking, b, epmd.port)
    echo_mb = node.mailbox()
    try:
        async with anyio.create_task_group() as tg:  # waits for the echo to take its stop
            tg.start_soon(_py_echo, echo_mb)
            for turn in range(turns):
                got = {k: len(v) for k, v in series.items()}
                await anyio.sleep(ECHO_SETTLE_S)
                series["c_py"] += await py.echo(warm, per)
                await anyio.sleep(ECHO_SETTLE_S)
                series["c_erl"] += await er.echo(warm, per)
                if blocking is not None:
                    await anyio.sleep(ECHO_SETTLE_S)
                    series["e"] += await anyio.to_thread.run_sync(
                        blocking_echo, blocking, b, warm, per
                    )
                place_py_as_callee()  # (f): erl A calls pynode, placed as B is for A
                await anyio.sleep(ECHO_SETTLE_S)
                try:
                    series["f"] += await erl_run(
                        a, "pynode_dist_bench:run(a_echo_to, [E, W, C, M]).",
                        E=echo_mb.pid, W=warm, C=per, M=SMALL_MSG,
                    )
                finally:
                    place_callers(a, b)
                log(f"echo turn {turn + 1}/{turns}, p50 us: " + ", ".join(
                    f"{k} {percentile(v[got[k]:], 50) / 1e3:.1f}" for k, v in series.items() if v
                ))
            await node.send(echo_mb.pid, Atom("stop"))
    finally:
        if blocking is not None:
            await anyio.to_thread.run_sync(blocking.stop)

    def pcts(samples: list[int]) -> tuple[float, float]:
        return percentile(samples, 50) / 1e3, percentile(samples, 99) / 1e3

    rows[2].py, rows[3].py = pcts(series["c_py"])
    rows[2].erl, rows[3].erl = pcts(series["c_erl"])
    if series["e"]:
        rows[5].py, rows[6].py = pcts(series["e"])
        rows[5].erl, rows[6].erl = rows[2].erl, rows[3].erl
    rows[7].py, rows[8].py = pcts(series["f"])
    rows[7].erl, rows[8].erl = rows[2].erl, rows[3].erl


# ---------------------------------------------------------------------------------------------
# pynode <-> pynode over TCP and over a Unix socket (--transports)


async def _py_sink(mb: Mailbox, n: int, owner: Pid) -> None:
    for _ in range(n):
        await mb.receive()
    await mb.send(owner, (Atom("got_all"), n))


async def _py_echo(mb: Mailbox) -> None:
    while True:
        msg = await mb.receive()
        if msg == Atom("stop"):
            return
        await mb.send(msg[0], msg[1])


async def py_send_small(dialer: Node, server: Node, n: int) -> float:
    """(a) between pynodes: msgs/s from the first send to the sink's got_all."""
    mb = dialer.mailbox()
    name = unique("sink")
    sink = server.mailbox(name)
    server.start_soon(_py_sink, sink, n, mb.pid)
    dest = (name, server.name)
    t0 = time.perf_counter()
    for _ in range(n):
        await mb.send(dest, SMALL_MSG)
    reply = await mb.receive(timeout=120)
    t1 = time.perf_counter()
    assert reply == (Atom("got_all"), n), reply
    sink.close()
    mb.close()
    return n / (t1 - t0)


async def py_echo(dialer: Node, server: Node, warm: int, count: int) -> list[int]:
    """(c) between pynodes: round trips in ns."""
    mb = dialer.mailbox()
    echo = server.mailbox()
    server.start_soon(_py_echo, echo)
    out = (mb.pid, SMALL_MSG)
    times: list[int] = []
    clock = time.perf_counter_ns
    with anyio.fail_after(120):
        for i in range(warm + count):
            t0 = clock()
            await mb.send(echo.pid, out)
            back = await mb.receive()
            t1 = clock()
            if i >= warm:
                times.append(t1 - t0)
    await mb.send(echo.pid, Atom("stop"))
    assert back == SMALL_MSG, back
    mb.close()
    return times


@dataclass
class TRow:
    name: str
    unit: str
    tcp: float | None = None
    unix: float | None = None
    erl: float | None = None


async def bench_transports(
    counts: Counts, repeat: int, erl_rows: list[Row], log: Callable[[str], None]
) -> list[TRow]:
    rows = [
        TRow("(a) small msgs py->py", "msgs/s", erl=erl_rows[0].erl),
        TRow("(c) echo round trip p50", "us", erl=erl_rows[2].erl),
        TRow("(c) echo round trip p99", "us", erl=erl_rows[3].erl),
    ]
    warm = counts.warm()
    cookie = secrets.token_hex(8)
    with tempfile.TemporaryDirectory(prefix="pyt", dir="/tmp") as d:  # short: sun_path
        path = f"{d}/server.sock"
        listen = ["tcp://127.0.0.1:0", f"unix:{path}"]
        async with Node(unique("srv") + "@127.0.0.1", cookie, epmd=False, listen=listen) as server:
            for kind in ("tcp", "unix"):
                async with Node(unique(kind) + "@127.0.0.1", cookie, epmd=False) as dialer:
                    address: Any = ("127.0.0.1", server.port) if kind == "tcp" else f"unix:{path}"
                    await dialer.connect(server.name, address=address, timeout=30)
                    log(f"transports {kind}: warm-up")
                    await py_send_small(dialer, server, warm.small)
                    runs = []
                    for _ in range(repeat):
                        runs.append(await py_send_small(dialer, server, counts.small))
                        log(f"transports {kind} (a): {runs[-1]:,.0f} msgs/s")
                    setattr(rows[0], kind, statistics.median(runs))
                    times = await py_echo(dialer, server, counts.echo_warm, counts.echo)
                    setattr(rows[1], kind, percentile(times, 50) / 1e3)
                    setattr(rows[2], kind, percentile(times, 99) / 1e3)
    return rows


def print_transports(rows: list[TRow]) -> None:
    head = ("pynode<->pynode", "tcp", "unix", "unix/tcp", "erl->erl tcp")
    body = []
    for r in rows:
        ratio = "n/a" if not (r.tcp and r.unix) else f"{r.unix / r.tcp:.3f}"
        body.append(
            (f"{r.name} ({r.unit})", fmt(r.tcp, r.unit), fmt(r.unix, r.unit), ratio, fmt(r.erl, r.unit))
        )
    widths = [max(len(x[i]) for x in [head, *body]) for i in range(5)]
    for cells in [head, None, *body]:
        if cells is None:
            print("-+-".join("-" * w for w in widths))
            continue
        print(" | ".join(c.ljust(widths[i]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(cells)))
    print()
    print(
        "note: both pynode nodes run in this one process and event loop (erl->erl: two OS "
        "processes); unix/tcp: throughput >1 and latency <1 mean the Unix socket is faster. "
        f"Load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs."
    )


async def bench_all(
    counts: Counts,
    repeat: int,
    a: ErlNode,
    b: ErlNode,
    epmd: Epmd,
    log: Callable[[str], None],
    transports: bool,
) -> tuple[list[Row], list[TRow]]:
    rows = await bench(counts, repeat, a, b, epmd, log)
    trows = await bench_transports(counts, repeat, rows, log) if transports else []
    return rows, trows


LOOP = "asyncio"
LOOP_OPTIONS: dict[str, Any] = {}
TLS: Any = None  # pynode's TlsConfig under --tls
BUSY_WAIT: dict[str, float] = {}  # Node(busy_wait=...) under --busy-wait; else the default
PLACE: str | None = None  # a key of pinning.ROLES under --place; None: the kernel places


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--quick", action="store_true", help="small counts: a smoke run of a few seconds"
    )
    ap.add_argument("--small", type=int, help="small messages for (a) and (b)")
    ap.add_argument("--echo", type=int, help="timed echo round trips for (c)")
    ap.add_argument("--big", type=int, help="1 MiB binaries for (d)")
    ap.add_argument(
        "--repeat",
        type=int,
        help="timed runs per throughput workload, median kept (5; 1 with --quick)",
    )
    ap.add_argument(
        "--loop",
        choices=["asyncio", "uvloop", "trio"],
        default="asyncio",
        help="event loop for the pynode side (default: asyncio, as pynode's own default)",
    )
    ap.add_argument(
        "--transports",
        action="store_true",
        help="also pynode<->pynode over TCP and over a Unix socket, side by side",
    )
    ap.add_argument("--tls", action="store_true",
                    help="TLS distribution on every node (erl -proto_dist inet_tls, test certificates)")
    ap.add_argument("--busy-wait", type=float, metavar="SECONDS",
                    help="the pynode nodes' busy_wait (default: pynode's, 300 us on asyncio; 0: off)")
    ap.add_argument("--place", choices=["kernel", *ROLES], default="kernel",
                    help="pin each workload's callee to CPU 0 and its caller to CPU 1 (apart) or 0 "
                    "(shared), both sides alike; default: the kernel places them")
    ap.add_argument("-v", "--verbose", action="store_true", help="report progress on stderr")
    args = ap.parse_args()
    if args.busy_wait is not None:
        BUSY_WAIT["busy_wait"] = args.busy_wait
    global LOOP, LOOP_OPTIONS, PLACE
    if args.place != "kernel":
        if not can_place(args.place):
            ap.error(f"--place {args.place} needs CPUs {sorted(set().union(*ROLES[args.place]))}")
        PLACE = args.place
    LOOP = args.loop
    LOOP_OPTIONS = {"use_uvloop": True} if args.loop == "uvloop" else {}
    counts = QUICK if args.quick else FULL
    if args.repeat is None:
        args.repeat = 1 if args.quick else 5
    counts = Counts(
        small=args.small or counts.small,
        echo=args.echo or counts.echo,
        echo_warm=counts.echo_warm,
        big=args.big or counts.big,
    )

    def log(text: str) -> None:
        if args.verbose:
            print(f"[{time.monotonic() - start:6.1f} s] {text}", file=sys.stderr, flush=True)

    start = time.monotonic()

    def tls_args(tmp: Path, otp: Otp) -> list[str]:
        global TLS
        pki = make_pki(tmp / "pki")
        TLS = pki.config("good")
        return erl_tls_args(otp, pki.optfile("good"))

    with erl_nodes(2, "pynode_dist_bench", tls_args if args.tls else None) as (epmd, (a, b)):
        log(f"epmd on {epmd.port}, A={a.name}, B={b.name}, OTP {a.release}")
        backend = "trio" if args.loop == "trio" else "asyncio"
        options = {"use_uvloop": True} if args.loop == "uvloop" else {}
        rows, trows = anyio.run(
            bench_all,
            counts,
            args.repeat,
            a,
            b,
            epmd,
            log,
            args.transports,
            backend=backend,
            backend_options=options,
        )
        release = a.release
    print_table(rows, counts, args.repeat, time.monotonic() - start, release)
    if trows:
        print()
        print_transports(trows)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted; every erl node and epmd were stopped", file=sys.stderr)
        sys.exit(130)
