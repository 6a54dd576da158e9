"""``observatory`` with no sub-command: the dashboard."""

from __future__ import annotations

import argparse
import functools
import sys

from app.cliutil import UsageError, positive_seconds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme: projector (high contrast) or a Textual theme",
    )
    parser.add_argument(
        "--interval",
        type=positive_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between polls (> 0, default 1)",
    )
    parser.add_argument(
        "--scenario", default=None, metavar="FILE", help="a scenario file (TOML) to start at launch"
    )


def run(args: argparse.Namespace) -> int:
    from app.ui.themes import theme_names

    if args.theme is not None and args.theme not in theme_names():
        raise UsageError(
            f"there is no theme {args.theme!r}; choose one of: projector, "
            + ", ".join(n for n in theme_names() if n != "projector")
        )
    scenario = None
    if args.scenario is not None:
        from app.commands.lab import load_or_say

        scenario = load_or_say(args.scenario, prog="observatory")
        if scenario is None:
            return 2
    if not sys.stdout.isatty() and not _served():
        raise UsageError(
            "the dashboard needs a terminal; for one printout use `observatory snapshot`"
        )

    from app.core.procs import ProcessManager
    from app.core.record import try_start
    from app.core.sockets import default_source
    from app.core.watch import EventStream
    from app.ui.app import ObservatoryApp

    recorder, warning = try_start()
    manager = ProcessManager()
    try:
        app = ObservatoryApp(
            default_source(),
            manager,
            interval=args.interval,
            stream=functools.partial(EventStream, udp=True),
            theme_name=args.theme,
            scenario=scenario,
            recorder=recorder,
            record_warning=warning,
        )
        app.run()
        return app.return_code or 0
    finally:
        manager.shutdown()
        if recorder is not None:
            recorder.close()


def _served() -> bool:
    """True under textual-serve (its driver talks over pipes, not a tty)."""
    import os

    return bool(
        os.environ.get("TEXTUAL_DRIVER")
        or os.environ.get("TEXTUAL_FPS")
        or os.environ.get("OBSERVATORY_SERVED")
    )
