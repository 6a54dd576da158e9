"""``observatory endian [BYTES...]``: bytes read as 1-, 2- and 4-byte words, both ways."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from app.cliutil import UsageError


def add_parser(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "endian",
        help="read bytes as 1-, 2- and 4-byte words, big- and little-endian",
        description=(
            "Read a byte sequence as 1-, 2- and 4-byte words, big-endian (network byte "
            "order) and little-endian, side by side. Default: the lecture's "
            "47 EF 15 2A 89 37 B4 33."
        ),
    )
    parser.add_argument(
        "bytes",
        metavar="BYTES",
        nargs="*",
        help="hex bytes: '47 EF 15 2A', '0x47-0xEF-0x15-0x2A' or '47EF152A'",
    )
    parser.add_argument("--json", action="store_true", help="one JSON object instead of text")


def run(args: argparse.Namespace) -> int:
    from app.core.endian import DEFAULT_BYTES, EndianError, parse_bytes, read_words, render_text

    try:
        data = parse_bytes(args.bytes) if args.bytes else DEFAULT_BYTES
        report = read_words(data)
    except EndianError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        # One write: a reader that stops early (| head) then rarely breaks the pipe.
        sys.stdout.write(json.dumps(report.to_json(), indent=2) + "\n")
    else:
        sys.stdout.write(render_text(report))
    return 0
