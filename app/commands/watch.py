"""``observatory watch``: every socket event as it happens, like ``ss -E`` but every transition.

First, on stderr, one line saying what this user can see (as root: every
transition, from the kernel tracepoint; as another user: every close, and
once-a-second samples). Then one aligned line per event on stdout: time, proto,
local end -> remote end, OLD -> NEW state, pid/process (or -), source::

    16:02:11.374  tcp  127.0.0.1:0 -> 127.0.0.1:6000  CLOSE -> SYN_SENT  4711/tcp-client  tracepoint

or, with ``--json``, one JSON object per line (keys of :meth:`WatchEvent.to_json`).
It ends after ``--duration SECONDS``, or on Ctrl-C, SIGTERM or SIGHUP, with exit
0; the tracefs instance it made is removed on every way out.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import signal
import sys
import time
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING

from app.cliutil import port_number, positive_seconds, safe_json
from app.core.terminal_text import printable

if TYPE_CHECKING:
    from app.core.watch import WatchEvent

HELP = "print every socket event as it happens, like ss -E but every state transition"
SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "watch",
        help=HELP,
        description=HELP + ". As root every transition (the kernel tracepoint"
        " sock:inet_sock_set_state); as another user every close, and once-a-second samples.",
    )
    p.add_argument("--json", action="store_true", help="JSON Lines, one object per event")
    p.add_argument(
        "--port",
        type=port_number,
        default=None,
        help="only sockets with this port at either end (1-65535)",
    )
    p.add_argument(
        "--duration",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop after SECONDS (default: until Ctrl-C)",
    )
    p.add_argument("--udp", action="store_true", help="UDP sockets too (opened and closed)")


def _state(name: str | None, proto: str, remote_port: int | None) -> str:
    if name is None:
        return "-"
    if name == "NONE" and proto.startswith("udp"):  # as `snapshot` prints UDP
        return "UNCONN" if remote_port is None else "ESTAB"
    return name


class TextLines:
    """Aligned lines; a column widens when a wider cell comes (and stays so)."""

    def __init__(self) -> None:
        # proto, local, remote, old state, new state, owner
        self.widths = [4, 15, 15, 11, 11, 15]

    def line(self, e: WatchEvent) -> str:
        from app.core.model import format_endpoint

        clock = time.strftime("%H:%M:%S", time.localtime(e.at)) + f".{int(e.at * 1000) % 1000:03d}"
        remote = (
            format_endpoint(e.remote_addr, e.remote_port)
            if e.remote_addr is not None
            else format_endpoint("::" if e.proto.endswith("6") else "0.0.0.0", None)
        )
        # A process names itself (prctl, /proc/self/comm): its ESC is shown as \x1b.
        owner = "-" if e.pid is None else f"{e.pid}/{printable(e.process or '?')}"
        cells = [
            e.proto,
            format_endpoint(e.local_addr, e.local_port),
            remote,
            _state(e.old_state, e.proto, e.remote_port),
            _state(e.new_state, e.proto, e.remote_port),
            owner,
        ]
        for i, cell in enumerate(cells):
            self.widths[i] = max(self.widths[i], len(cell))
        w = self.widths
        return (
            f"{clock}  {cells[0]:<{w[0]}}  {cells[1]:<{w[1]}} -> {cells[2]:<{w[2]}}"
            f"  {cells[3]:<{w[3]}} -> {cells[4]:<{w[4]}}  {cells[5]:<{w[5]}}  {e.source}\n"
        )


def render(events: Sequence[WatchEvent], as_json: bool, text: TextLines) -> str:
    if as_json:
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        return "".join(safe_json(dumps(e.to_json())) + "\n" for e in events)
    return "".join(text.line(e) for e in events)


def run(args: argparse.Namespace) -> int:
    from app.core.watch import EventStream

    stream = EventStream(ports=() if args.port is None else (args.port,), udp=args.udp)
    stopped: list[int] = []

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopped.append(signum)
        stream.interrupt()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    text = TextLines()
    try:
        stream.start()
        said = f"observatory watch: {stream.seeing}"
        if stream.stale_removed:
            names = ", ".join(path.rsplit("/", 1)[-1] for path in stream.stale_removed)
            said += f"; removed tracefs instances that a killed run left ({names})"
        sys.stderr.write(said + "\n")
        sys.stderr.flush()
        deadline = None if args.duration is None else time.monotonic() + args.duration
        while not stopped:
            wait = 1.0
            if deadline is not None:
                wait = min(wait, deadline - time.monotonic())
                if wait <= 0:
                    break
            events = stream.read(wait)
            if events:
                # One write per batch: with PYTHONUNBUFFERED=1 each print() is a write().
                sys.stdout.write(render(events, args.json, text))
                sys.stdout.flush()
    except BrokenPipeError:
        raise  # `watch | head`: app.cli says nothing and exits 0
    except OSError as exc:
        if stopped:  # EIO after SIGHUP: the terminal has gone; that is the way out
            return 0
        with contextlib.suppress(OSError):
            sys.stderr.write(f"observatory watch: {exc.strerror or exc}\n")
        return 1
    finally:
        stream.close()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
