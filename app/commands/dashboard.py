"""``observatory`` with no sub-command: the dashboard."""

from __future__ import annotations

import argparse
import dataclasses
import functools
import signal
import sys
from typing import TYPE_CHECKING

from app.cliutil import UsageError, check_theme, interval_seconds

if TYPE_CHECKING:
    from app.core.interfaces import Interface
    from app.core.lesson import Lesson
    from app.core.netns import LabNetwork
    from app.core.scenario import Scenario


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--theme",
        default=None,
        metavar="NAME",
        help="colour theme: projector (high contrast) or a Textual theme",
    )
    parser.add_argument(
        "--interval",
        type=interval_seconds,
        default=1.0,
        metavar="SECONDS",
        help="seconds between polls (at least 0.1, default 1)",
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
    check_theme(args.theme)
    files = _read_files(args)
    if files is None:
        return 2
    scenario, lesson = files
    if not sys.stdout.isatty() and not _served():
        raise UsageError(
            "the dashboard needs a terminal; for one printout use `observatory snapshot`"
        )

    from app.core.netns import NetnsError, lab_source
    from app.core.procs import ProcessManager
    from app.core.record import try_start
    from app.core.watch import EventStream
    from app.ui.app import ObservatoryApp

    # Until the app handles SIGTERM/SIGHUP itself (and after it has): an exit that runs
    # the clean-up below, never the default death that would leave the lab network.
    _exit_on_stop_signals()
    notes: list[str] = []  # shown in the dashboard: stderr is hidden once it starts
    try:
        network, no_network = _lab_network(scenario, lesson, notes)
    except NetnsError as exc:
        sys.stderr.write(f"observatory: {args.scenario}: {exc}\n")
        return 2
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


def _read_files(args: argparse.Namespace) -> tuple[Scenario | None, Lesson | None] | None:
    """The ``--scenario`` and ``--lesson`` files, checked; None once a mistake in either
    is written to stderr (exit 2: nothing was started)."""
    scenario = lesson = None
    if args.scenario is not None:
        from app.commands.lab import load_or_say

        scenario = load_or_say(args.scenario, prog="observatory")
        if scenario is None:
            return None
    if args.lesson is not None:
        lesson = _load_lesson(args.lesson)
        if lesson is None:
            return None
    if lesson is not None and lesson.hosts and scenario is not None and scenario.hosts:
        raise UsageError("give lab hosts in one file: the scenario and the lesson both have some")
    return scenario, lesson


def _lab_network(
    scenario: Scenario | None, lesson: Lesson | None, notes: list[str]
) -> tuple[LabNetwork | None, str | None]:
    """The lab network of the scenario's hosts, or else of the lesson's, and why a
    lesson's could not be made (its steps that need it say so; the rest runs).

    Raises:
        NetnsError: the scenario's hosts cannot be made here (nothing starts then).
    """
    from app.core.lesson_run import open_lab_network
    from app.core.netns import open_lab, sweep_stale

    notes.extend(sweep_stale())  # what a killed run left: removed (root), or what to type
    if scenario is not None and scenario.hosts:
        return open_lab(scenario.hosts, notes.append), None
    if lesson is not None and lesson.hosts:
        return open_lab_network(lesson.hosts, notes.append)
    return None, None


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
