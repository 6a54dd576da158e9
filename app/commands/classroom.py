"""``observatory class``: the teacher's view of a room of machines, each running
``observatory agent``. Every TARGET (and every line of ``--hosts-file``) is checked
before anything is asked; then either one round of answers is printed as JSON
(``--json``: a JSON array, one object per machine, exit 0 even when some are down)
or the class screen shows them live (app.ui.classroom_app).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from app.cliutil import UsageError, check_theme, interval_seconds, safe_json

if TYPE_CHECKING:
    from app.core.classroom import Classroom

HELP = "the class: each machine's agent (observatory agent), one row a machine"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("class", help=HELP, description=HELP)
    # The sub-command is `class`, a Python keyword: the CLI imports this module by this name.
    p.set_defaults(command_module="classroom")
    p.add_argument(
        "targets",
        nargs="*",
        metavar="TARGET",
        help="a machine's agent as HOST:PORT (pc07:8765, 192.168.1.7:8765, [fd00::7]:8765)",
    )
    p.add_argument(
        "--hosts-file",
        metavar="FILE",
        default=None,
        help="more TARGETs, one a line (# starts a comment)",
    )
    p.add_argument(
        "--json",
        action="store_true",
        help="ask once and print a JSON array, one object per machine",
    )
    p.add_argument(
        "--token-file",
        metavar="FILE",
        default=None,
        help="the agents' bearer token (the file each agent was started with)",
    )
    p.add_argument(
        "--interval",
        type=interval_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two questions to a machine (0.1 to 86400, default 1)",
    )
    p.add_argument(
        "--timeout",
        type=interval_seconds,
        default=None,
        metavar="SECONDS",
        help="seconds a machine may take to answer (0.1 to 86400, default 2)",
    )
    p.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme: projector (high contrast) or a Textual theme",
    )


def run(args: argparse.Namespace) -> int:
    from app.core.classroom import (
        DEFAULT_TIMEOUT,
        Classroom,
        TargetError,
        parse_targets,
        read_hosts_file,
        read_token,
    )

    try:
        texts = list(args.targets)
        if args.hosts_file is not None:
            texts += read_hosts_file(args.hosts_file)
        machines = parse_targets(texts)
        token = read_token(args.token_file) if args.token_file is not None else None
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    room = Classroom(machines, token, timeout=args.timeout or DEFAULT_TIMEOUT)
    if args.json:
        dumps = json.JSONEncoder(ensure_ascii=False).encode
        try:
            # Each machine's answer is its own words (a host name, an error): terminal-safe.
            lines = [safe_json(dumps(row.to_json())) for row in room.poll_all()]
        finally:
            room.close()
        sys.stdout.write("[\n" + ",\n".join(lines) + "\n]\n")
        sys.stdout.flush()
        return 0
    return _show(room, args)


def _show(room: Classroom, args: argparse.Namespace) -> int:
    check_theme(args.theme)
    if not sys.stdout.isatty():
        raise UsageError(
            "the class view needs a terminal; for one printout use `observatory class --json`"
        )
    from app.ui.classroom_app import ClassroomApp

    app = ClassroomApp(room, interval=args.interval, theme_name=args.theme)
    app.run()
    return app.return_code or 0
