"""``observatory`` with no sub-command: the dashboard."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import signal
import sys
from typing import TYPE_CHECKING

from app.cliutil import UsageError, positive_seconds

if TYPE_CHECKING:
    from app.core.interfaces import Interface
    from app.core.lesson import Lesson
    from app.core.netns import LabNetwork


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
    parser.add_argument(
        "--lesson",
        default=None,
        metavar="FILE",
        help="a lesson file (TOML), or session4 (the lecture's), shown step by step "
        "(n next, p back, L hide)",
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
    lesson = None if args.lesson is None else _load_lesson(args.lesson)
    if lesson is None and args.lesson is not None:
        return 2
    if lesson is not None and lesson.hosts and scenario is not None and scenario.hosts:
        raise UsageError("give lab hosts in one file: the scenario and the lesson both have some")
    if not sys.stdout.isatty() and not _served():
        raise UsageError(
            "the dashboard needs a terminal; for one printout use `observatory snapshot`"
        )

    from app.core.netns import NetnsError, lab_source, open_lab
    from app.core.procs import ProcessManager
    from app.core.record import try_start
    from app.core.watch import EventStream
    from app.ui.app import ObservatoryApp

    # Until the app handles SIGTERM/SIGHUP itself (and after it has): an exit that runs
    # the clean-up below, never the default death that would leave the lab network.
    _exit_on_stop_signals()
    notes: list[str] = []  # shown in the dashboard: stderr is hidden once it starts
    try:
        network = None if scenario is None else open_lab(scenario.hosts, notes.append)
    except NetnsError as exc:
        sys.stderr.write(f"observatory: {args.scenario}: {exc}\n")
        return 2
    no_network = None  # why a lesson's lab hosts were not made: its steps say it
    if network is None and lesson is not None and lesson.hosts:
        from app.core.lesson_run import open_lab_network

        network, no_network = open_lab_network(lesson.hosts, notes.append)
    recorder, warning = try_start()
    manager = ProcessManager()
    try:
        try:
            source = lab_source(network)
        except (NetnsError, OSError) as exc:
            sys.stderr.write(f"observatory: cannot read the lab hosts' sockets: {exc}\n")
            return 2
        app = ObservatoryApp(
            source,
            manager,
            interval=args.interval,
            stream=functools.partial(EventStream, udp=True),
            theme_name=args.theme,
            scenario=scenario,
            recorder=recorder,
            record_warning=warning,
            notes=notes,
            network=network,
            interfaces=functools.partial(_interfaces, network),
            lesson=lesson,
            no_network=no_network,
        )
        app.run()
        return app.return_code or 0
    finally:
        # The clean-up runs to its end: a second SIGTERM or the terminal's SIGHUP now
        # (a child slow to stop takes seconds) must not cut it short.
        for sig in (signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        manager.shutdown()
        if network is not None:  # after the processes: one still running keeps its host
            network.destroy()
        if recorder is not None:
            recorder.close()


def _load_lesson(path: str) -> Lesson | None:
    """The lesson at ``path``; None after its mistakes are written to stderr."""
    from app.core.lesson import LessonError, find_lesson, load_lesson

    try:
        return load_lesson(find_lesson(path))
    except LessonError as exc:
        for line in exc.errors:
            sys.stderr.write(line + "\n")
        sys.stderr.write(f"observatory: {path}: the lesson does not check, nothing was started\n")
        return None


def _exit_on_stop_signals() -> None:
    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)


def _interfaces(network: LabNetwork | None) -> list[Interface]:
    """This machine's interfaces, and each lab host's as ``host/eth0`` (on the poller's
    thread: psutil and ip are never run on the UI loop)."""
    from app.core import netns
    from app.core.interfaces import list_interfaces

    found = list_interfaces()
    if network is None:
        return found
    for host in network.hosts:
        for iface in netns.interfaces_in(network.namespace(host.name)):
            found.append(dataclasses.replace(iface, name=f"{host.name}/{iface.name}"))
    return found


def _served() -> bool:
    """True under textual-serve (its driver talks over pipes, not a tty)."""
    import os

    return bool(
        os.environ.get("TEXTUAL_DRIVER")
        or os.environ.get("TEXTUAL_FPS")
        or os.environ.get("OBSERVATORY_SERVED")
    )
