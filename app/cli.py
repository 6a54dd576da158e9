"""The ``observatory`` command: argparse sub-commands, no logic of its own."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

from app.cliutil import OneLineParser, UsageError

# Sub-command name -> module under app.commands. Each module provides
# add_parser(subparsers) and run(args) -> int.
COMMANDS = (
    "snapshot",
    "lab",
    "scan",
    "sockaddr",
    "endian",
    "record",
    "replay",
    "serve",
    "close",
    "watch",
    "agent",
    "classroom",
    "lesson",
)


def build_parser() -> OneLineParser:
    parser = OneLineParser(
        prog="observatory",
        description="Connection Observatory: watch TCP/IP sockets while you learn them.",
    )
    from app.commands import dashboard

    dashboard.add_arguments(parser)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=OneLineParser)
    for name in COMMANDS:
        importlib.import_module(f"app.commands.{name}").add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if args.command is None:
            from app.commands import dashboard

            return dashboard.run(args)
        name = getattr(args, "command_module", args.command)  # `class`: classroom.py
        module = importlib.import_module(f"app.commands.{name}")
        return int(module.run(args))
    except UsageError as exc:
        sys.stderr.write(f"observatory {args.command or ''}".rstrip() + f": {exc}\n")
        return 2
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `observatory snapshot | head`: the reader left; that is not an error.
        import os

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
