"""The control-message hot path: what every received and every sent message pays.

    .venv/bin/python benchmarks/control.py [--against GIT_REV]

Prints ns per operation (best of many interleaved timeit rounds, so a busy machine hurts
both columns alike) for: from_term of a SEND and a REG_SEND tuple (every received message),
constructing Send / RegSend and their to_term() (every sent message), and Message(...)
(every received event). With ``--against`` the same cases run on pynode/protocol/control.py
as it was at GIT_REV (e.g. the commit before a change), side by side.
"""

from __future__ import annotations

import argparse
import importlib.util
import subprocess
import sys
import tempfile
import timeit
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pynode.protocol import control as C  # noqa: E402
from pynode.protocol.framing import Message  # noqa: E402
from pynode.term import Atom, Pid  # noqa: E402

PID = Pid("a@127.0.0.1", 85, 0, 1)
FROM = Pid("b@127.0.0.1", 86, 0, 2)
NAME = Atom("logger")
CASES = {
    "from_term(SEND tuple)": "C.from_term(SEND_T, 1)",
    "from_term(REG_SEND tuple)": "C.from_term(REG_SEND_T, 1)",
    "Send(pid)": "C.Send(PID)",
    "Send(pid).to_term()": "C.Send(PID).to_term()",
    "RegSend(pid, name).to_term()": "C.RegSend(FROM, NAME).to_term()",
    "SendSender(a, b).to_term()": "C.SendSender(FROM, PID).to_term()",
}
ENV = {
    "PID": PID, "FROM": FROM, "NAME": NAME, "Message": Message,
    "SEND_T": (2, Atom(""), PID), "REG_SEND_T": (6, FROM, Atom(""), NAME),
}


def control_at(rev: str) -> ModuleType:
    """pynode/protocol/control.py as it was at ``rev``, importable beside today's."""
    text = subprocess.run(
        ["git", "-C", str(ROOT), "show", f"{rev}:pynode/protocol/control.py"],
        capture_output=True, text=True, check=True,
    ).stdout
    text = text.replace("from ._common", "from pynode.protocol._common")
    text = text.replace("from .errors", "from pynode.protocol.errors")
    path = Path(tempfile.mkdtemp()) / "control_then.py"
    path.write_text(text)
    spec = importlib.util.spec_from_file_location("control_then", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["control_then"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def best_ns(timers: dict[str, timeit.Timer], rounds: int = 40, number: int = 20000) -> dict[str, float]:
    best = dict.fromkeys(timers, float("inf"))
    for _ in range(rounds):
        for key, t in timers.items():
            best[key] = min(best[key], t.timeit(number) / number * 1e9)
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--against", metavar="GIT_REV", help="also time control.py as it was at this revision")
    opts = ap.parse_args()
    modules = {"now": C}
    if opts.against:
        modules = {opts.against: control_at(opts.against), "now": C}
    cases = dict(CASES)
    cases["Message(Send(pid), payload)"] = "Message(C.Send(PID), 1)"
    w = max(map(len, cases))
    print(f"{'operation':<{w}}  " + "  ".join(f"{k:>10}" for k in modules) + "   (ns, best of 40 rounds)")
    for name, stmt in cases.items():
        if name.startswith("Message") and len(modules) > 1:
            timers = {"now": timeit.Timer(stmt, globals={**ENV, "C": C})}
        else:
            timers = {k: timeit.Timer(stmt, globals={**ENV, "C": m}) for k, m in modules.items()}
        best = best_ns(timers)
        print(f"{name:<{w}}  " + "  ".join(f"{best[k]:10.0f}" if k in best else f"{'-':>10}" for k in modules))


if __name__ == "__main__":
    main()
