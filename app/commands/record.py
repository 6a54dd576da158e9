"""``observatory record``: the session records the dashboard writes, and handouts."""

from __future__ import annotations

import argparse
import sys

from app.cliutil import UsageError
from app.core.terminal_text import printable

HELP = "list session records, or export one to Markdown or CSV for a handout"


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("record", help=HELP, description=HELP)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True, parser_class=type(p))
    actions.add_parser("list", help="the session files, newest last")
    export = actions.add_parser("export", help="write FILE.jsonl as Markdown or CSV")
    export.add_argument("file", metavar="FILE", help="a session file (.jsonl)")
    export.add_argument("--format", choices=("md", "csv"), default="md")
    export.add_argument("--out", metavar="PATH", help="where to write (default: beside FILE)")


def run(args: argparse.Namespace) -> int:
    from app.core.record import RecordError, fallback_dirs, sessions_dir
    from app.core.record_export import export_session

    if args.action == "list":
        folder = sessions_dir()
        # Where the dashboard records when the home folder cannot be written.
        folders = [folder, *fallback_dirs()]
        files = []
        for where in folders:
            try:
                files += sorted(where.glob("*.jsonl")) if where.is_dir() else []
            except OSError:
                continue
        # A file's name is anyone's to choose (ESC included): shown as \x1b.
        lines = [printable(str(f)) for f in files] or [
            f"no session records yet in {printable(str(folder))}"
        ]
        sys.stdout.write("\n".join(lines) + "\n")
        return 0
    try:
        path = export_session(args.file, args.format, args.out)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    sys.stdout.write(f"{printable(str(path))}\n")
    return 0
