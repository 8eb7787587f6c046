"""A real ``erl`` used as a codec oracle over a port ({packet,4} on a pair of pipes).

No distribution is involved: erl decodes what Python sent, re-encodes it, compares terms,
prints them with ~p and parses Erlang literals, so the codec is checked against erts itself.
"""

from __future__ import annotations

import os
import struct
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from typing import Any

from pynode.term import Atom, decode, encode

from .otp import Otp

# The oracle loop, evaluated by erl_eval (no compiler needed: the OTP 28 runtime has none).
_LOOP = r"""
Port = open_port({fd, %(rfd)d, %(wfd)d}, [binary, {packet, 4}, eof]),
T2B = fun(T) -> term_to_binary(T, [{minor_version, 2}]) end,
Parse = fun(Text) ->
    {ok, Toks, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Term} = erl_parse:parse_term(Toks),
    Term
end,
Eval = fun(Text, Bs) ->
    {ok, Toks, _} = erl_scan:string(unicode:characters_to_list(Text)),
    {ok, Exprs} = erl_parse:parse_exprs(Toks),
    B0 = lists:foldl(fun({K, V}, Acc) -> erl_eval:add_binding(K, V, Acc) end,
                     erl_eval:new_bindings(), Bs),
    {value, V, _} = erl_eval:exprs(Exprs, B0),
    V
end,
Handle = fun
    ({reencode, Bin}) -> T2B(binary_to_term(Bin));
    ({reencode, Bin, Opts}) -> term_to_binary(binary_to_term(Bin), Opts);
    ({equal, A, B}) -> binary_to_term(A) =:= binary_to_term(B);
    ({equal_literal, Bin, Text}) -> binary_to_term(Bin) =:= Parse(Text);
    ({print, Bin}) -> unicode:characters_to_binary(io_lib:format("~p", [binary_to_term(Bin)]));
    ({print_literal, Text}) -> unicode:characters_to_binary(io_lib:format("~p", [Parse(Text)]));
    ({parse, Text}) -> T2B(Parse(Text));
    ({eval, Text}) -> T2B(Eval(Text, []));
    ({eval, Text, Bindings}) -> T2B(Eval(Text, Bindings));
    ({encode_literal, Text, Opts}) -> term_to_binary(Parse(Text), Opts);
    (otp_release) -> list_to_binary(erlang:system_info(otp_release))
end,
Run = fun(Req) ->
    try {ok, Handle(binary_to_term(Req))}
    catch C:R -> {error, unicode:characters_to_binary(io_lib:format("~p:~p", [C, R]))}
    end
end,
Loop = fun Loop() ->
    receive
        {Port, {data, Req}} ->
            Port ! {self(), {command, term_to_binary(Run(Req))}},
            Loop();
        {Port, eof} -> halt(0);
        _ -> Loop()
    end
end,
Loop().
"""


class OracleError(Exception):
    """erl raised while handling a request; the message is erl's Class:Reason."""


class ErlOracle:
    """One long-lived ``erl`` process answering codec questions (and evaluating code).

    ``args`` are extra erl arguments (a node name and cookie make it a distributed node).
    """

    def __init__(
        self,
        otp: Otp,
        timeout: float = 60.0,
        args: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> None:
        self.otp = otp
        self.timeout = timeout
        self._log = tempfile.TemporaryFile()
        to_erl_r, to_erl_w = os.pipe()
        from_erl_r, from_erl_w = os.pipe()
        code = _LOOP % {"rfd": to_erl_r, "wfd": from_erl_w}
        self.proc = subprocess.Popen(
            [otp.erl, "-noshell", "-noinput", *(args or ["-start_epmd", "false"]), "-eval", code],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            pass_fds=(to_erl_r, from_erl_w),
        )
        os.close(to_erl_r)
        os.close(from_erl_w)
        self._w = os.fdopen(to_erl_w, "wb", buffering=0)
        self._r = os.fdopen(from_erl_r, "rb", buffering=0)
        self._lock = threading.Lock()
        self.release = self.call(Atom("otp_release")).decode()

    def _read_exact(self, n: int) -> bytes:
        chunks = []
        while n:
            b = self._r.read(n)
            if not b:
                try:  # the port closes just before erl exits: wait for the exit to show why
                    self.proc.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
                err = self.log_tail() if self.proc.poll() is not None else "(erl still running)"
                raise OracleError(f"erl oracle closed its port: {err.strip()[:2000]}")
            chunks.append(b)
            n -= len(b)
        return b"".join(chunks)

    def call(self, request: Any) -> Any:
        """Send one request term, return erl's answer (raise OracleError on an erl exception)."""
        data = encode(request)
        with self._lock:
            timer = threading.Timer(self.timeout, self.proc.kill)
            timer.start()
            try:
                self._w.write(struct.pack(">I", len(data)) + data)
                (n,) = struct.unpack(">I", self._read_exact(4))
                reply = decode(self._read_exact(n))
            finally:
                timer.cancel()
        if reply[0] == "ok":
            return reply[1]
        raise OracleError(reply[1].decode("utf-8", "replace"))

    # conveniences -------------------------------------------------------------------------
    def reencode(self, data: bytes, opts: list[Any] | None = None) -> bytes:
        """binary_to_term then term_to_binary in erl (minor_version 2 unless opts given)."""
        if opts is None:
            return self.call((Atom("reencode"), data))
        return self.call((Atom("reencode"), data, opts))

    def equal(self, a: bytes, b: bytes) -> bool:
        return self.call((Atom("equal"), a, b))

    def equal_literal(self, data: bytes, text: str) -> bool:
        return self.call((Atom("equal_literal"), data, text))

    def print(self, data: bytes) -> str:
        return self.call((Atom("print"), data)).decode("utf-8")

    def print_literal(self, text: str) -> str:
        return self.call((Atom("print_literal"), text)).decode("utf-8")

    def parse(self, text: str) -> bytes:
        return self.call((Atom("parse"), text))

    def eval(self, text: str, **bindings: Any) -> bytes:
        """Evaluate Erlang expressions in erl; return term_to_binary of the value.

        ``bindings`` become Erlang variables (``Pid=...`` binds ``Pid``).
        """
        if bindings:
            bs = [(Atom(k), v) for k, v in bindings.items()]
            return self.call((Atom("eval"), text, bs))
        return self.call((Atom("eval"), text))

    def run(self, text: str, **bindings: Any) -> Any:
        """Evaluate and decode the value."""
        return decode(self.eval(text, **bindings))

    def close(self) -> None:
        try:
            self._w.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self._r.close()
        self._log.close()

    def log_tail(self, n: int = 4000) -> str:
        """The end of what erl wrote to stderr (for failure messages)."""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - n))
        return self._log.read().decode("utf-8", "replace")
