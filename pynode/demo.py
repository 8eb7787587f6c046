"""The README demo: start a local erl and show pynode talking to it.

Run with ``python -m pynode.demo``. Needs ``erl`` on PATH (Debian: erlang-nox).
"""

from __future__ import annotations

import shutil
import subprocess
import sys

from .term import Atom, Pid, decode, encode

_ERL_SIDE = (
    "{ok, [Hex]} = io:fread(\"\", \"~s\"), "
    "T = binary_to_term(binary:decode_hex(list_to_binary(Hex))), "
    "io:format(\"erl decoded: ~0p~n\", [T]), "
    "Reply = {self(), erlang:system_info(otp_release), T, #{pi => math:pi()}, <<\"bin\">>}, "
    "io:format(\"~s~n\", [binary:encode_hex(term_to_binary(Reply))]), halt()."
)


def main() -> int:
    erl = shutil.which("erl")
    if erl is None:
        print("demo: erl not found; install Erlang (Debian: apt-get install -y erlang-nox)", file=sys.stderr)
        return 1
    term = (Atom("hello"), "from Python", [1, 2, 3], {Atom("big"): 2**100}, 3.25)
    print(f"python sends: {term!r}")
    proc = subprocess.run(
        [erl, "-noshell", "-start_epmd", "false", "-eval", _ERL_SIDE],
        input=encode(term).hex() + "\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lines = proc.stdout.strip().splitlines()
    print("\n".join(lines[:-1]))
    reply = decode(bytes.fromhex(lines[-1]))
    print(f"python decoded erl's reply: {reply!r}")
    assert isinstance(reply[0], Pid) and reply[2][0] == term[0]
    return 0


if __name__ == "__main__":
    sys.exit(main())
