"""``python -m pynode.epmd``: run the EPMD server until SIGINT/SIGTERM (or KILL_REQ).

Options follow the ``epmd`` program (its single-dash spellings work too). Without
``--address`` it listens on every IPv4 and IPv6 address, as epmd does; with it, on those
addresses plus the loopback ones. ERL_EPMD_PORT, ERL_EPMD_ADDRESS and
ERL_EPMD_RELAXED_COMMAND_CHECK are honoured like epmd.
"""

from __future__ import annotations

import argparse
import errno
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

import anyio

from ..protocol.epmd import DEFAULT_EPMD_PORT
from .registry import MAX_UNREGISTERED
from .server import (
    DEFAULT_MAX_CONNECTIONS,
    DEFAULT_PACKET_TIMEOUT,
    EpmdServer,
    EpmdServerError,
    split_addresses,
)

log = logging.getLogger("pynode.epmd")


def _env_port() -> int:
    value = os.environ.get("ERL_EPMD_PORT")
    try:
        return int(value) if value else DEFAULT_EPMD_PORT
    except ValueError:
        return DEFAULT_EPMD_PORT


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m pynode.epmd",
        description="Erlang Port Mapper Daemon in Python (drop-in for epmd).",
        allow_abbrev=False,
    )
    p.add_argument(
        "--port",
        "-port",
        type=int,
        default=None,
        help=f"TCP port (default ERL_EPMD_PORT or {DEFAULT_EPMD_PORT}; 0 = any free)",
    )
    p.add_argument(
        "--address",
        "-address",
        action="append",
        default=None,
        help="listen on these addresses (comma separated; repeatable) "
        "plus loopback (default: every address, or ERL_EPMD_ADDRESS)",
    )
    p.add_argument(
        "--relaxed-command-check",
        "-relaxed_command_check",
        action="store_true",
        help="allow KILL with nodes registered, and STOP",
    )
    p.add_argument(
        "-d", "--debug", "-debug", action="count", default=0, help="log more (-d info, -dd debug)"
    )
    p.add_argument(
        "--packet-timeout",
        "-packet_timeout",
        type=float,
        default=DEFAULT_PACKET_TIMEOUT,
        help="seconds before an idle non-registration connection is closed",
    )
    p.add_argument(
        "--max-connections",
        type=int,
        default=DEFAULT_MAX_CONNECTIONS,
        help="connections beyond this are refused",
    )
    p.add_argument(
        "--linger",
        type=float,
        default=0.0,
        help="seconds a dropped registration still answers PORT_PLEASE2 (extension; 0 = epmd)",
    )
    p.add_argument(
        "--no-extensions",
        action="store_true",
        help="treat pynode's extension requests as garbage, as epmd does",
    )
    return p


def make_server(args: argparse.Namespace) -> EpmdServer:
    """The server the command line describes (epmd's address rules)."""
    port = _env_port() if args.port is None else args.port
    text = ",".join(args.address) if args.address else os.environ.get("ERL_EPMD_ADDRESS", "")
    addresses = split_addresses(text)
    relaxed = args.relaxed_command_check or "ERL_EPMD_RELAXED_COMMAND_CHECK" in os.environ
    common: dict[str, Any] = dict(
        port=port,
        relaxed_command_check=relaxed,
        packet_timeout=args.packet_timeout,
        max_connections=args.max_connections,
        linger=args.linger,
        extensions=not args.no_extensions,
        max_unregistered=5 if args.debug else MAX_UNREGISTERED,  # as epmd -d
    )
    if addresses:
        loopback = [a for a in ("127.0.0.1", "::1") if a not in addresses]
        return EpmdServer(addresses, optional_hosts=loopback, **common)
    return EpmdServer(None, **common)


async def _serve(server: EpmdServer) -> None:
    async with server:
        print(f"EPMD listening on port {server.port}", file=sys.stderr, flush=True)
        async with anyio.create_task_group() as tg:

            async def on_signals() -> None:
                with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
                    async for signum in signals:
                        log.info("got signal %d; stopping", signum)
                        server.close()
                        return

            tg.start_soon(on_signals)
            await server.serve_forever()
            tg.cancel_scope.cancel()


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    level = (
        logging.WARNING if args.debug == 0 else logging.INFO if args.debug == 1 else logging.DEBUG
    )
    logging.basicConfig(level=level, format="epmd: %(asctime)s: %(message)s", stream=sys.stderr)
    server = make_server(args)
    try:
        anyio.run(_serve, server)
    except EpmdServerError as e:
        cause = e.__cause__
        if isinstance(cause, OSError) and cause.errno == errno.EADDRINUSE:
            # epmd exits 0 here: an EPMD is already serving that port
            print(
                f"there is already an EPMD running at port {server._requested_port}",
                file=sys.stderr,
            )
            return 0
        print(f"epmd: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # pragma: no cover - a signal before the receiver was set up
        return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
