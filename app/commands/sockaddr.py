"""``observatory sockaddr ADDRESS PORT``: the bytes of sockaddr_in / sockaddr_in6.

Output contract: the FIRST line is the lecture's own dump
(``[0]=2,[1]=0,[2]=3,[3]=E8,...,``), annotations follow on lines of their own.
With ``--steps`` the first lines are the lecture's step-by-step dumps (after
memset, family, address, port), the last of which is that same line.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from typing import Any

from app.cliutil import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sockaddr",
        help="the bytes of struct sockaddr_in / sockaddr_in6 for an address and port",
        description=(
            "Show the bytes of struct sockaddr_in (IPv4, 16 bytes) or sockaddr_in6 "
            "(IPv6, 28 bytes) as the lecture's C program prints them, then explain "
            "each field and its byte order."
        ),
    )
    parser.add_argument("address", metavar="ADDRESS", help="an IPv4 or IPv6 address, not a name")
    parser.add_argument(
        "port",
        metavar="PORT",
        help="0-65535 (0 is valid in a sockaddr: bind() lets the OS choose)",
    )
    parser.add_argument(
        "--steps",
        action="store_true",
        help="dump the struct after each statement, as the lecture does",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from app.core.sockaddr import (
        SockaddrError,
        build_sockaddr,
        parse_port,
        render_lines,
        render_steps,
        steps,
    )

    try:
        port = parse_port(args.port)
        layout = build_sockaddr(args.address, port)
    except SockaddrError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        data = layout.to_json()
        if args.steps:
            data["steps"] = [s.to_json() for s in steps(layout)]
        # One write: a reader that stops early (| head) then rarely breaks the pipe.
        sys.stdout.write(json.dumps(data, indent=2) + "\n")
        return 0
    # Wrap explanations to a terminal's width (a projector has few columns);
    # piped output keeps one explanation per line, for grep and for tests.
    width = shutil.get_terminal_size().columns if sys.stdout.isatty() else None
    lines = render_steps(layout) if args.steps else render_lines(layout, width)
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
