"""``observatory replay RECORD``: a recorded session played back in the dashboard."""

from __future__ import annotations

import argparse
import sys

from app.cliutil import UsageError, check_theme, shown
from app.labs import digits_hint

HELP = "play a session record back in the dashboard (pause, step, speed), or print it"


def _speed(text: str) -> float:
    from app.core.replay_source import SPEEDS, speed_text

    plain = text.strip().lower().removesuffix("x")
    try:
        # float() also reads other scripts' digits (٢) and 1_0: the digits 0-9 only.
        value = float(plain) if plain.isascii() and "_" not in plain else -1.0
    except ValueError:
        value = -1.0
    if value not in SPEEDS:
        raise argparse.ArgumentTypeError(
            f"the speed is one of {', '.join(speed_text(s) for s in SPEEDS)}, "
            f"not {shown(text, 30)}{digits_hint(text)}"
        )
    return value


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "replay",
        help=HELP,
        description=HELP + ". Keys in the dashboard: space pauses and plays, [ and ] a frame back "
        "and on, < and > slower and faster, { and } to the start and the end.",
    )
    p.add_argument(
        "record",
        metavar="RECORD",
        help="a session file (.jsonl), or `latest` for the newest (observatory record list)",
    )
    p.add_argument(
        "--speed",
        type=_speed,
        default=1.0,
        metavar="X",
        help="recorded seconds per second: 0.25, 0.5, 1 (default), 2, 4, 8 or 16",
    )
    p.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme: projector (high contrast) or a Textual theme",
    )
    p.add_argument(
        "--print",
        action="store_true",
        dest="print_frames",
        help="no dashboard: print one line per frame (time, counts, what happened)",
    )
    p.add_argument(
        "--paused", action="store_true", help="open at the first frame, paused (space plays)"
    )


def run(args: argparse.Namespace) -> int:
    from app.core.record import RecordError
    from app.core.replay import latest_record, load

    try:
        path = latest_record() if args.record == "latest" else args.record
        # Read before the app starts: a big record is never read on the UI loop.
        timeline = load(path)
    except RecordError as exc:
        raise UsageError(str(exc)) from None
    if args.print_frames:
        from app.core.replay import frame_lines

        for line in frame_lines(timeline):
            sys.stdout.write(line + "\n")
        return 0
    check_theme(args.theme)
    if not sys.stdout.isatty():
        raise UsageError(
            "the replay needs a terminal; for a printout use `observatory replay RECORD --print`"
        )
    from textual.markup import escape

    from app.core.replay_source import ReplaySource
    from app.core.terminal_text import printable
    from app.ui.replay_app import ReplayApp

    source = ReplaySource(timeline, speed=args.speed, paused=args.paused)
    said = [f"Replaying {timeline.summary()}", *(n[:1].upper() + n[1:] for n in timeline.notes)]
    # A toast reads markup: a record's name is shown as text, never as markup.
    notes = [escape(printable(n)) for n in said]
    app = ReplayApp(source, theme_name=args.theme, notes=notes)
    app.run()
    return app.return_code or 0
