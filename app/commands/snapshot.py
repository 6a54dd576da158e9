"""``observatory snapshot``: one poll, printed like ``netstat -tulpn`` / ``ss``."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

from app.cliutil import lab_host_name, port_number, safe_json
from app.core.terminal_text import printable

if TYPE_CHECKING:
    from app.core.sockets import SocketSource

HELP = "print every socket once, like netstat -tulpn / ss (--json for scripts)"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("snapshot", help=HELP, description=HELP)
    p.add_argument("--json", action="store_true", help="a JSON array, one object per socket")
    state = p.add_mutually_exclusive_group()
    state.add_argument(
        "--listen",
        dest="state",
        action="store_const",
        const="listen",
        help="only listening sockets (netstat -l)",
    )
    state.add_argument(
        "--established",
        dest="state",
        action="store_const",
        const="established",
        help="only established connections",
    )
    state.add_argument(
        "--all",
        dest="state",
        action="store_const",
        const="all",
        help="every TCP state: TIME_WAIT, SYN_SENT, CLOSE_WAIT, ...",
    )
    p.set_defaults(state="default")
    p.add_argument("--udp", action="store_true", help="include UDP sockets")
    fam = p.add_mutually_exclusive_group()
    fam.add_argument("-4", dest="family", action="store_const", const=4, help="IPv4 only")
    fam.add_argument("-6", dest="family", action="store_const", const=6, help="IPv6 only")
    p.add_argument("--numeric", "-n", action="store_true", help="no service names")
    p.add_argument(
        "--port",
        type=port_number,
        default=None,
        help="only sockets with this port at either end (1-65535)",
    )
    p.add_argument(
        "--host",
        metavar="NAME",
        type=lab_host_name,
        default=None,
        help="the sockets of a lab host of a running lab (a [[host]] of its scenario; root)",
    )


HEADERS = (
    "Proto",
    "Recv-Q",
    "Send-Q",
    "Local Address",
    "Foreign Address",
    "State",
    "PID/Program",
    "User",
    "Service",
)


def render_text(sockets: Sequence[object], numeric: bool) -> str:
    from app.core.model import Socket, owner_help

    rows: list[tuple[str, ...]] = []
    kinds: set[str] = set()
    for s in sockets:
        assert isinstance(s, Socket)
        kinds.add(s.owner)
        # As ss shows it: a listener's Send-Q is the backlog limit given to listen().
        send_q = s.backlog if s.state == "LISTEN" and s.backlog is not None else s.send_q
        rows.append(
            (
                s.proto,
                str(s.recv_q),
                str(send_q),
                s.local,
                s.remote,
                s.state if s.is_tcp else ("UNCONN" if s.remote_port is None else "ESTAB"),
                # A process's name is its own to choose (prctl, /proc/self/comm), ESC
                # included: as \x1b, it moves nothing.
                printable(s.owner_label),
                printable(s.user or "-"),
                "" if numeric else (s.service or "-"),
            )
        )
    headers = HEADERS[:-1] if numeric else HEADERS
    if numeric:
        rows = [r[:-1] for r in rows]
    widths = [
        max(len(h), max((len(c) for c in column), default=0))
        for h, column in zip(headers, zip(*rows, strict=False), strict=False)
    ]
    widths += [len(h) for h in headers[len(widths) :]]
    # Queue sizes are numbers: right-aligned, as netstat does. One format string
    # for every row: str.format does the padding in C (16,000 rows at a time).
    fmt = "  ".join(f"{{:{'>' if i in (1, 2) else '<'}{w}}}" for i, w in enumerate(widths))

    def line(cells: Sequence[str]) -> str:
        return fmt.format(*cells).rstrip()

    out = [line(headers)] + [line(r) for r in rows]
    if not rows:
        out.append("(no sockets match)")
    notes = [f"  {k}: {owner_help(k)}" for k in ("hidden", "kernel") if k in kinds]
    if notes:
        out.append("")
        out.append("Where there is no PID:")
        out.extend(notes)
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from app.core.select import Selection, select
    from app.core.sockets import default_source

    selection = Selection(state=args.state, udp=args.udp, family=args.family, port=args.port)
    if args.host is not None:
        source = host_source(args.host)
        if isinstance(source, str):
            sys.stderr.write(f"observatory snapshot: {source}\n")
            return 2
    else:
        source = default_source()
    snap = source.poll()
    chosen = select(snap.sockets, selection)
    # One write of the whole text: with PYTHONUNBUFFERED=1 (set in many images)
    # json.dump to stdout made one write() per token, 1.6 million at 16,000 sockets.
    out = render_json(chosen) if args.json else render_text(chosen, args.numeric) + "\n"
    sys.stdout.write(out)
    sys.stdout.flush()
    return 0


def host_source(name: str) -> SocketSource | str:
    """A source of the sockets of lab host ``name`` (sock_diag opened inside its
    namespace), or why there is none, in words."""
    from app.core import netns
    from app.core.sockets import DiagSource

    found = netns.find_namespaces(name)
    if not found:
        return (
            f"no lab host named {name!r} is running. Lab hosts are the [[host]] tables of a "
            "scenario, made while `observatory lab up FILE` (or the dashboard's --scenario "
            "FILE) runs, as root."
        )
    if len(found) > 1:
        return f"{len(found)} running labs have a host named {name!r}: {', '.join(found)}."
    try:
        return netns.in_namespace(found[0], lambda: DiagSource(host=name))
    except (OSError, netns.NetnsError) as exc:
        reason = netns.refusal() or getattr(exc, "strerror", None) or str(exc)
        return f"cannot read the sockets of lab host {name!r}: {reason}"


def render_json(sockets: Sequence[object]) -> str:
    """A JSON array, one socket object per line (C-encoded: no indent)."""
    from app.core.model import Socket

    dumps = json.JSONEncoder(ensure_ascii=False).encode
    lines = [safe_json(dumps(s.to_json())) for s in sockets if isinstance(s, Socket)]
    if not lines:
        return "[]\n"
    return "[\n" + ",\n".join(lines) + "\n]\n"
