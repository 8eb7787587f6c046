"""``pynode proxy``: run the partition proxy, and talk to a running one over its control port.

    pynode proxy serve [--epmd-port 4369] [--control-port PORT]
    pynode proxy status [--json]
    pynode proxy cut a,b c,d,e [--one-way]      pynode proxy heal [a,b c,d,e]
    pynode proxy shape a b --latency 0.2 --jitter 0.05 --bandwidth 100000
    pynode proxy unshape [a b]

The control port defaults to the EPMD port + 1, on loopback. Only argparse is imported at
module level: the heavy parts load inside the command.
"""

from __future__ import annotations

import json
import sys
from typing import Any

__all__ = ["add_arguments", "run", "format_status"]

ACTIONS = ("serve", "status", "cut", "heal", "shape", "unshape")


def add_arguments(p: Any) -> None:
    """The arguments of ``pynode proxy`` (``p`` is its argparse sub-parser)."""
    p.add_argument("action", choices=ACTIONS, help="what to do")
    p.add_argument("islands", nargs="*", metavar="ISLAND",
                   help="comma-separated node names (name@host, or the name alone)")
    p.add_argument("--control-port", type=int, default=None, metavar="PORT",
                   help="the proxy's JSON control port (default: the EPMD port + 1)")
    p.add_argument("--control-host", default="127.0.0.1", metavar="HOST",
                   help="where the control port listens (default 127.0.0.1)")
    p.add_argument("--one-way", action="store_true",
                   help="cut/shape only traffic from the first island to the second")
    p.add_argument("--latency", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--jitter", type=float, default=0.0, metavar="SECONDS")
    p.add_argument("--bandwidth", type=float, default=0.0, metavar="BYTES_PER_SECOND")
    p.add_argument("--listen", action="append", default=None, metavar="ADDRESS",
                   help="serve: EPMD addresses (repeatable; default 127.0.0.1)")
    p.add_argument("--proxy-host", default=None, metavar="ADDRESS",
                   help="serve: bind proxy listeners here (default: where the look-up came in)")
    p.add_argument("--pending-timeout", type=float, default=None, metavar="SECONDS",
                   help="serve: close a look-up's listener unused this long (default 10)")
    p.add_argument("--max-pending", type=int, default=None, metavar="N",
                   help="serve: look-ups waiting for their connect at once (default 256)")
    p.add_argument("--allow-remote-register", action="store_true",
                   help="serve: accept registrations from other hosts (trusted networks only)")


def _islands(opts: Any, need: int) -> list[list[str]]:
    from .cli import UsageError

    islands = [[n for n in text.split(",") if n] for text in opts.islands]
    if len(islands) != need or any(not i for i in islands):
        raise UsageError(f"proxy {opts.action} takes {need} islands (comma-separated node names)")
    return islands


def _control_port(opts: Any, epmd_port: int) -> int:
    port = opts.control_port if opts.control_port is not None else epmd_port + 1
    if not 0 <= port <= 0xFFFF:
        from .cli import UsageError

        raise UsageError(f"control port {port} is out of range")
    return int(port)


def format_status(status: dict[str, Any]) -> str:
    """The status as a few readable lines."""
    lines = [
        f"EPMD port {status['epmd_port']}, control port {status['control_port']}; "
        f"{len(status['nodes'])} nodes, {len(status['links'])} links, "
        f"{len(status['pending'])} pending look-ups "
        f"({status['expired_lookups']} expired, {status['refused_lookups']} refused)"
    ]
    for c in status["cuts"]:
        lines.append(f"cut {c[0]} -> {c[1]}")
    for s in status["shapes"]:
        lines.append(
            f"shape {s['from']} -> {s['to']}: latency {s['latency']} s, jitter {s['jitter']} s, "
            f"bandwidth {s['bandwidth'] or 'unlimited'} B/s"
        )
    for link in status["links"]:
        lines.append(
            f"link {link['id']}: {link['dialer'] or '?'} -> {link['acceptor']}: {link['state']}, "
            f"{link['bytes_to_acceptor']} B -> / {link['bytes_to_dialer']} B <-, "
            f"up {link['age']} s"
        )
    return "\n".join(lines)


def run(opts: Any, epmd_port: int) -> int:
    """Carry out ``pynode proxy ACTION``; the exit code."""
    from .epmd.proxy import ProxyError, control_request

    if opts.action == "serve":
        return _serve(opts, epmd_port)
    control = _control_port(opts, epmd_port)
    request: dict[str, Any] = {"op": opts.action}
    if opts.action == "status":
        _islands(opts, 0)
    elif opts.action in ("cut", "shape"):
        request["a"], request["b"] = _islands(opts, 2)
        request["one_way"] = opts.one_way
        if opts.action == "shape":
            request.update(latency=opts.latency, jitter=opts.jitter, bandwidth=opts.bandwidth)
    elif opts.islands:  # heal / unshape with islands
        request["a"], request["b"] = _islands(opts, 2)
    try:
        result = control_request(request, control, opts.control_host, timeout=opts.timeout or 10.0)
    except ProxyError as e:
        from .cli import ConnectFailure

        raise ConnectFailure(str(e)) from None
    if opts.action == "status":
        if opts.json:
            sys.stdout.write(json.dumps(result, indent=2) + "\n")
        else:
            sys.stdout.write(format_status(result) + "\n")
    else:
        sys.stdout.write("ok\n")
    return 0


def _serve(opts: Any, epmd_port: int) -> int:
    import logging
    import signal

    import anyio

    from .epmd.proxy import DEFAULT_MAX_PENDING, DEFAULT_PENDING_TIMEOUT, PartitionProxy
    from .epmd.server import EpmdServerError

    if not opts.debug and not opts.verbose:
        logging.getLogger("pynode").setLevel(logging.WARNING)
    hosts = [a for text in (opts.listen or ["127.0.0.1"]) for a in text.split(",") if a]
    proxy = PartitionProxy(
        hosts,
        epmd_port,
        proxy_host=opts.proxy_host,
        control_port=_control_port(opts, epmd_port) if epmd_port else (opts.control_port or 0),
        pending_timeout=(
            DEFAULT_PENDING_TIMEOUT if opts.pending_timeout is None else opts.pending_timeout
        ),
        max_pending=DEFAULT_MAX_PENDING if opts.max_pending is None else opts.max_pending,
        allow_remote_register=opts.allow_remote_register,
    )

    async def main() -> None:
        with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with proxy:
                info = {
                    "epmd_port": proxy.port,
                    "control_port": proxy.control_port,
                    "addresses": [f"{a}:{p}" for a, p in proxy.addresses],
                }
                if opts.json:
                    sys.stdout.write(json.dumps(info) + "\n")
                else:
                    sys.stdout.write(
                        f"partition proxy: EPMD on port {proxy.port}, "
                        f"control on {proxy.control_host}:{proxy.control_port}\n"
                    )
                sys.stdout.flush()
                async with anyio.create_task_group() as tg:

                    async def stop_on_signal() -> None:
                        async for _ in signals:
                            proxy.close()
                            return

                    tg.start_soon(stop_on_signal)
                    await proxy.serve_forever()
                    tg.cancel_scope.cancel()

    try:
        anyio.run(main)
    except EpmdServerError as e:
        from .cli import ConnectFailure

        raise ConnectFailure(str(e)) from None
    return 0
