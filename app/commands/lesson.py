"""``observatory lesson``: a lecture as steps, each checked against what the kernel shows.

* ``lesson check FILE``                 check a lesson file, start nothing;
* ``lesson run FILE [--auto] [--timeout S]``
                                        run its steps in order, one ``✓``/``✗`` line per
                                        expectation; without ``--auto`` Enter goes on to
                                        the next step.

FILE is a path, or the name of a lesson that comes with the observatory (``session4``).
Exit: 0 every expectation held (steps that cannot run here are skipped, in words); 1 some
did not; 2 the file does not check; 128+N after signal N (Ctrl+C: 130).
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

from app.cliutil import OneLineParser, UsageError, seconds_type

if TYPE_CHECKING:
    from app.core.lesson import Lesson, Step

    _Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None

PROG = "observatory lesson"
MAX_TIMEOUT = 120.0  # = app.core.lesson.MAX_TIMEOUT (not imported: it is slow to import)


def add_parser(subparsers: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = subparsers.add_parser(
        "lesson",
        help="run a lecture's steps and check each expectation (✓/✗)",
        description="Run a lesson file: steps that start the lecture's programs, scan, "
        "kill, and sentences (listen 6000, established 6000 count 1, ...) that must then "
        "hold. FILE is a path or the name of a lesson that comes with the observatory "
        "(session4).",
    )
    sub = parser.add_subparsers(dest="lesson_command", metavar="ACTION", parser_class=OneLineParser)
    run = sub.add_parser(
        "run",
        help="run every step; one ✓ or ✗ line per expectation",
        description="Run a lesson's steps in order and check each expectation; exit 0 only "
        "if every one held. Everything it started is stopped at the end (and on Ctrl+C, "
        "SIGTERM, SIGHUP).",
    )
    run.add_argument("file", metavar="FILE", help="a lesson file (TOML), or a name: session4")
    run.add_argument(
        "--auto", action="store_true", help="go on to the next step at once (no Enter)"
    )
    run.add_argument(
        "--timeout",
        # At most a lesson file's own limit for a step (app.core.lesson.MAX_TIMEOUT).
        type=seconds_type(most=MAX_TIMEOUT),
        default=None,
        metavar="SECONDS",
        help="how long each expectation may take to hold (more than 0, at most "
        f"{MAX_TIMEOUT:g}; default 5; a step's own timeout wins)",
    )
    run.add_argument("--quiet", action="store_true", help="do not show the lab processes' output")
    check = sub.add_parser("check", help="check a lesson file without starting anything")
    check.add_argument("file", metavar="FILE", help="a lesson file (TOML), or a name: session4")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "lesson_command", None)
    if action == "check":
        return check(args.file)
    if action == "run":
        return run_file(args.file, auto=args.auto, timeout=args.timeout, quiet=args.quiet)
    raise UsageError("choose what to do: run FILE [--auto] or check FILE")


# ------------------------------------------------------------------ output


class _Out:
    """Lines to stdout, whole, one writer at a time; a reader that left ends nothing."""

    def __init__(self) -> None:
        self.lock = threading.Lock()

    def __call__(self, line: str) -> None:
        with self.lock:
            try:
                try:
                    sys.stdout.write(line + "\n")
                except UnicodeEncodeError:  # a terminal that cannot show ✓: ? instead
                    encoding = sys.stdout.encoding or "ascii"
                    sys.stdout.write(line.encode(encoding, "replace").decode(encoding) + "\n")
                sys.stdout.flush()
            except (OSError, ValueError):
                pass  # a closed pipe: keep stopping cleanly


def load_or_say(file: str) -> Lesson | None:
    """The lesson ``file`` names; or None, after its mistakes (each naming file, step and
    sentence or key) and a count are written to stderr."""
    from app.core.lesson import LessonError, find_lesson, load_lesson
    from app.core.scenario import ScenarioError
    from app.core.terminal_text import printable

    path = find_lesson(file)
    try:
        return load_lesson(path)
    except (LessonError, ScenarioError) as exc:
        text = "".join(printable(line) + "\n" for line in exc.errors)
        count = len(exc.errors)
        text += f"{PROG}: {file}: {count} mistake{'s' if count != 1 else ''}, nothing was started\n"
        sys.stderr.write(text)
        return None


# ------------------------------------------------------------------ check


def check(file: str) -> int:
    from app.core.terminal_text import printable

    lesson = load_or_say(file)
    if lesson is None:
        return 2
    steps = len(lesson.steps)
    lines = [
        f"{printable(str(lesson.path))}: {printable(lesson.title)}: {steps} "
        f"step{'s' if steps != 1 else ''}, {lesson.expectation_count} expectations, "
        "ready to run"
    ]
    for host in lesson.hosts:
        lines.append(f"  host {host.name}: {', '.join(host.addresses)}")
    for step in lesson.steps:
        lines.append(f"  {step.index}. {printable(step.title)}{_needs(step)}")
        for entry in step.processes:
            where = f" (on {entry.host})" if entry.host else ""
            lines.append(f"       start {entry.name}: {printable(entry.command_line)}{where}")
        for name in step.stop:
            lines.append(f"       stop {name}")
        for name in step.kill:
            lines.append(f"       kill {name}")
        if step.scan:
            lines.append(f"       scan 127.0.0.1 -p {step.scan}")
        for exp in step.expect:
            lines.append(f"       expect {printable(exp.text)}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


def _needs(step: Step) -> str:
    needs = []
    if step.needs_hosts:
        needs.append("lab hosts: root")
    if step.needs_compiler:
        needs.append("a C compiler")
    if step.needs_nmap:
        needs.append("nmap")
    return f"  (needs {', '.join(needs)})" if needs else ""


# ------------------------------------------------------------------ run


def _catch_stop_signals(stop: threading.Event, seen: list[int]) -> dict[int, _Handler]:
    """SIGINT, SIGTERM and SIGHUP set ``stop`` (the run ends at its next look and cleans
    up); the handlers they replace are returned, to be put back."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        stop.set()

    return {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }


def _restore(handlers: dict[int, _Handler]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _enter_waiter(say: Callable[[str], None], stop: threading.Event) -> Callable[[Step], None]:
    """Before each step after the first: wait for Enter on stdin (end of input: go on)."""

    def wait(step: Step) -> None:
        from app.core.terminal_text import printable

        say("")
        say(f"Press Enter for step {step.index}: {printable(step.title)}  (Ctrl+C ends)")
        try:
            fd = sys.stdin.fileno()
        except (AttributeError, OSError, ValueError):
            return  # no stdin to wait on: go on
        while not stop.is_set():
            try:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    os.read(fd, 4096)  # Enter (any line), or b"" at the end of input: go on
                    return
            except OSError:
                return

    return wait


def run_file(file: str, *, auto: bool, timeout: float | None, quiet: bool) -> int:
    from app.core.lesson_run import DEFAULT_TIMEOUT, run_lesson, summary
    from app.core.netns import NetnsError
    from app.core.terminal_text import printable

    lesson = load_or_say(file)
    if lesson is None:
        return 2
    out = _Out()
    stop = threading.Event()
    seen: list[int] = []
    previous = _catch_stop_signals(stop, seen)  # before the lab network: a SIGTERM cleans up
    try:
        steps = len(lesson.steps)
        out(f"Lesson: {printable(lesson.title)} ({steps} step{'s' if steps != 1 else ''})")
        try:
            tally = run_lesson(
                lesson,
                say=out,
                timeout=timeout if timeout is not None else DEFAULT_TIMEOUT,
                stop=stop,
                before_step=None if auto else _enter_waiter(out, stop),
                show_output=not quiet,
            )
        except (OSError, NetnsError) as exc:  # the sockets could not be read (everything
            # the lesson started is stopped already)
            why = getattr(exc, "strerror", None) or str(exc)
            sys.stderr.write(f"{PROG}: cannot read the sockets: {printable(why)}\n")
            return 1
    finally:
        _restore(previous)
    if seen:
        out(f"got {signal.Signals(seen[0]).name}: stopped")
    for line in summary(tally, lesson):
        out(line)
    if seen:
        return 128 + seen[0]
    return 0 if tally.ok else 1
