"""``observatory scan``: one nmap scan, joined with this machine's own listeners.

With ``--from HOST`` nmap runs inside a running lab host (``ip netns exec``),
may scan only the addresses of that lab, and each port is explained with the
sockets of the lab host the scanned address is.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import signal
import sys
import textwrap
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.cliutil import UsageError, lab_host_name, positive_seconds
from app.core.terminal_text import printable

if TYPE_CHECKING:
    from app.core.scan import HostResult, ScanProgress, ScanRequest, ScanResult

HELP = "scan ports with nmap and show which local process answers (--json for scripts)"
TYPES = ("connect", "syn", "udp", "version")


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "scan",
        help=HELP,
        description=HELP,
        epilog="Without -p: the ports listening now plus the lecture's 6000, 16000 and 45321.",
    )
    p.add_argument(
        "target",
        metavar="TARGET",
        help="an IP address, a network of at most 256 addresses (127.0.0.0/24), or a hostname",
    )
    p.add_argument(
        "-p",
        dest="ports",
        metavar="PORTS",
        default=None,
        help="ports and ranges, like 22,80,6000-6010 (each 1-65535)",
    )
    p.add_argument(
        "--type",
        dest="scan_type",
        choices=TYPES,
        default="connect",
        help="connect (-sT, default), syn (-sS, root), udp (-sU, root), version (-sT -sV)",
    )
    p.add_argument(
        "--from",
        dest="from_host",
        metavar="HOST",
        type=lab_host_name,
        default=None,
        help="scan from this running lab host (a [[host]] of `observatory lab up FILE`; root): "
        "only its lab's addresses may be scanned",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="a JSON object: target, scanner, ports (with listeners), from",
    )
    p.add_argument(
        "--timeout",
        type=positive_seconds,
        default=None,
        metavar="SECONDS",
        help="stop nmap after this many seconds (default 60)",
    )


def _table(rows: Sequence[tuple[str, ...]], headers: tuple[str, ...]) -> list[str]:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]
    return [
        "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()
        for cells in (headers, *rows)
    ]


def _wrap(text: str, indent: str = "  ") -> list[str]:
    width = max(60, min(shutil.get_terminal_size((100, 24)).columns, 120) - 1)
    return textwrap.wrap(
        text,
        width=width,
        initial_indent=indent,
        subsequent_indent=indent + "  ",
        break_on_hyphens=False,
    )


def _whose(host: HostResult, from_host: str | None) -> str:
    """Whose listeners a report shows: this machine's, a lab host's, or none."""
    if host.lab_host is not None:
        if host.lab_host == from_host and host.address.startswith(("127.", "::1")):
            return f"lab host {host.lab_host}'s own loopback: listeners from its socket table"
        return f"lab host {host.lab_host}: listeners from its socket table"
    if host.local:
        return "this machine: listeners from its own socket table"
    return "not this machine: no listener information"


def render_text(result: ScanResult) -> str:
    """nmap's table, with a LISTENER column and explanations under the ports."""
    out = [f"Command: {shlex.join(result.full_command)}"]
    if result.from_host is not None:
        out.append(f"From: lab host {result.from_host} (nmap ran inside its network namespace)")
    with_version = result.type == "version"
    headers = ("PORT", "STATE", "SERVICE", "LISTENER") + (("VERSION",) if with_version else ())
    for host in result.hosts:
        out += ["", f"Nmap scan report for {host.address} ({_whose(host, result.from_host)})"]
        ports = [p for p in result.ports if p.address == host.address]
        if ports:
            rows: list[tuple[str, ...]] = []
            for p in ports:
                row = (
                    f"{p.port}/{p.proto}",
                    p.state,
                    printable(p.service),
                    printable(p.listener.label) if p.listener else "-",
                )
                # A version is what the far end's banner said: anything, ESC included.
                rows.append(row + ((printable(p.version or ""),) if with_version else ()))
            lines = _table(rows, headers)
            out.append(lines[0])
            for line, p in zip(lines[1:], ports, strict=True):
                out.append(line)
                if p.explanation:
                    out += _wrap(p.explanation)
        out += [group.describe() for group in host.not_shown]
    if result.error:
        out += ["", result.error]
    out += ["", f"Scanned in {result.duration:.2f} s"]
    # Names of processes, nmap's words, a lab host's: none moves the cursor.
    return "\n".join(printable(line) for line in out)


def _request(args: argparse.Namespace) -> ScanRequest:
    """The validated request: from ``--from``'s lab host, or from this machine (where a
    running lab's address is refused: no route leads into the lab).

    Raises:
        ScanError: in words (no such host runs, not root, a target outside the lab).
    """
    from app.core.scan import ScanRequest, find_origin, running_labs

    if args.from_host is not None:
        origin = find_origin(args.from_host)
        return ScanRequest.create(args.target, args.ports, args.scan_type, origin=origin)
    labs = running_labs()
    return ScanRequest.create(args.target, args.ports, args.scan_type, labs=labs)


class _ProgressLine:
    """``Scanning... 45% (3.2 s)`` on one rewritten line of a terminal's stderr."""

    def __init__(self) -> None:
        self.shown = False

    def __call__(self, progress: ScanProgress) -> None:
        task = f" {progress.task}" if progress.task else ""
        sys.stderr.write(
            f"\rScanning{task}... {progress.percent:3.0f}% ({progress.elapsed:.1f} s)   "
        )
        sys.stderr.flush()
        self.shown = True

    def clear(self) -> None:
        if self.shown:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    from app.core.scan import DEFAULT_TIMEOUT, NmapNotFound, Scan, ScanError

    try:
        request = _request(args)
    except ScanError as exc:
        raise UsageError(str(exc)) from None
    timeout = args.timeout if args.timeout is not None else DEFAULT_TIMEOUT
    progress = _ProgressLine() if (not args.json and sys.stderr.isatty()) else None
    scan = Scan(request, timeout=timeout, on_progress=progress)
    # The scan runs in its own thread; this one only waits. Ctrl-C, SIGTERM
    # and SIGHUP cancel the scan (which kills nmap) instead of killing Python
    # mid-way, which would leave nmap, in its own session, running.
    stopped: list[int] = []

    def stop(signum: int, frame: object) -> None:
        stopped.append(signum)
        scan.cancel()

    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    previous = {sig: signal.signal(sig, stop) for sig in watched}
    try:
        scan.start()
        result = None
        while result is None:
            result = scan.wait(0.2)
    except NmapNotFound as exc:
        sys.stderr.write(f"observatory scan: {printable(str(exc))}\n")
        return 1
    except ScanError as exc:  # the type needs root
        raise UsageError(str(exc)) from None
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if progress is not None:
            progress.clear()
    if stopped:
        return 128 + stopped[0]
    if args.json:
        print(json.dumps(result.to_json(), indent=2))  # ensure_ascii: nothing raw
        if result.error:
            sys.stderr.write(f"observatory scan: {printable(result.error)}\n")
    else:
        print(render_text(result))
    return 0 if result.ok else 1
