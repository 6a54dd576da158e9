"""``observatory agent``: this machine's sockets, lab processes and events, read-only over HTTP.

For a teacher's ``observatory class`` and for Prometheus: ``GET /api/snapshot``,
``GET /api/events`` (server-sent events) and ``GET /metrics`` on
``http://HOST:PORT`` (default 127.0.0.1:9107, see :mod:`app.core.agent`). It
prints one line saying where it listens and whether a token is needed, then
serves until SIGINT, SIGTERM or SIGHUP, which end it with exit 0: the port
released, every event stream closed, the tracefs instance (as root) removed.
A bad token file, or another host than loopback without one, is refused in
words (exit 2); a port already in use too (exit 1).
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import signal
import sys
import threading
from types import FrameType

from app.cliutil import listen_address, port_number
from app.core.terminal_text import printable

HELP = "serve this machine's sockets read-only over HTTP, for a class view or Prometheus"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
DEFAULT_HOST = "127.0.0.1"
# Not in /etc/services; Prometheus' list of exporters' ports gives it to consul's exporter,
# which a lab room does not run.
DEFAULT_PORT = 9107


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "agent",
        help=HELP,
        description=HELP + ": GET /api/snapshot (JSON), /api/events (server-sent events of"
        " watch --json), /metrics (Prometheus). Nothing can be started or stopped through it."
        " TLS is for a reverse proxy in front of it.",
    )
    p.add_argument(
        "--host",
        type=listen_address,
        default=DEFAULT_HOST,
        help=f"address to listen on (default {DEFAULT_HOST}; another than loopback needs"
        " --token-file)",
    )
    p.add_argument(
        "--port",
        type=port_number,
        default=DEFAULT_PORT,
        help=f"TCP port to listen on (default {DEFAULT_PORT})",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        default=None,
        help="a file of yours alone (chmod 600) holding the token every request must bear"
        " as Authorization: Bearer TOKEN",
    )


def run(args: argparse.Namespace) -> int:
    from app.core.agent import Agent, AgentRefused, load_token

    try:
        token = None if args.token_file is None else load_token(args.token_file)
        agent = Agent(args.host, args.port, token)
    except AgentRefused as exc:
        sys.stderr.write(f"observatory agent: {printable(str(exc))}\n")
        return 2
    except OSError as exc:
        sys.stderr.write(f"observatory agent: cannot listen on {args.host}:{args.port}: ")
        if exc.errno == errno.EADDRINUSE:
            sys.stderr.write("the port is in use (another agent?); give another with --port\n")
        else:
            sys.stderr.write(f"{exc.strerror or exc}\n")
        return 1
    _remove_stale_tracing()
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        agent.start()
        needs = "every request needs Authorization: Bearer TOKEN" if token else "no token"
        with contextlib.suppress(OSError):
            sys.stdout.write(
                f"observatory agent: listening on {agent.url}/ (/api/snapshot, /api/events,"
                f" /metrics); {needs}; Ctrl-C to stop\n"
            )
            sys.stdout.flush()
        while not stop.wait(1.0):
            pass
    finally:
        agent.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def _remove_stale_tracing() -> None:
    """What a killed run left in tracefs goes now, not when a first event client comes
    (the agent starts its event stream only then): said on stderr."""
    import os

    from app.core.tracepoint import remove_stale_instances

    if os.geteuid() != 0:
        return
    for path in remove_stale_instances():
        sys.stderr.write(f"observatory agent: removed {path}, left by a run that was killed\n")
