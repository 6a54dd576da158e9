"""``observatory lab``: run the lecture's programs from the command line.

* ``lab run PROGRAM ARGS...``  one built-in in the foreground (``tcp-server 6000``);
* ``lab up FILE``              every process of a scenario file, output prefixed by name;
* ``lab check FILE``           check a scenario file without starting anything.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
import time
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING, TextIO

from app.cliutil import OneLineParser, UsageError
from app.core.terminal_text import printable

if TYPE_CHECKING:
    from app.core.procs import ProcessEvent, ProcessManager
    from app.core.scenario import Scenario

    # What signal.signal() returns and takes back.
    _Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None

# After a stop request, processes get this long to end before SIGKILL.
STOP_GRACE = 5.0


def add_parser(subparsers: argparse._SubParsersAction[OneLineParser]) -> None:
    parser = subparsers.add_parser(
        "lab",
        help="run the lecture's lab programs (one, or a whole scenario file)",
        description="Run built-in lab programs, alone or from a scenario file.",
    )
    sub = parser.add_subparsers(dest="lab_command", metavar="ACTION", parser_class=OneLineParser)
    run = sub.add_parser(
        "run",
        help="run one built-in program in the foreground",
        description="Run one built-in lab program in the foreground, e.g. "
        "`observatory lab run tcp-server 6000 --bind 0.0.0.0`.",
    )
    run.add_argument(
        "program", metavar="PROGRAM", nargs="?", help="tcp-server, tcp-client, udp-server, ..."
    )
    run.add_argument(
        "args", metavar="ARGS", nargs=argparse.REMAINDER, help="the program's own arguments"
    )
    up = sub.add_parser(
        "up",
        help="start every process of a scenario file; Ctrl+C stops them all",
        description="Check a scenario file, start every process it lists, show their "
        "output prefixed by name, and stop them all on Ctrl+C (SIGINT), SIGTERM or SIGHUP.",
    )
    up.add_argument(
        "file", metavar="FILE", help="a scenario file (TOML), e.g. scenarios/session4.toml"
    )
    check = sub.add_parser(
        "check",
        help="check a scenario file without starting anything",
    )
    check.add_argument("file", metavar="FILE", help="a scenario file (TOML)")


def run(args: argparse.Namespace) -> int:
    action = getattr(args, "lab_command", None)
    if action == "run":
        return run_program(args.program, list(args.args))
    if action == "up":
        return up(args.file)
    if action == "check":
        return check(args.file)
    raise UsageError("choose what to do: run PROGRAM ARGS..., up FILE or check FILE")


# ----------------------------------------------------------------------- run


def run_program(program: str | None, program_args: list[str]) -> int:
    """Run a built-in in this process (same pid, so ps shows what you started)."""
    import importlib

    from app.labs import PROGRAMS, LabUsageError, validate

    if program is None or program.startswith("-"):
        raise UsageError(f"give a PROGRAM first ({', '.join(PROGRAMS)}), then its arguments")
    if program in PROGRAMS and ("-h" in program_args or "--help" in program_args):
        return int(importlib.import_module(PROGRAMS[program]).main(program_args))  # its help
    try:
        validate(program, program_args)
    except LabUsageError as exc:
        raise UsageError(str(exc)) from None
    module = importlib.import_module(PROGRAMS[program])
    return int(module.main(program_args))


# --------------------------------------------------------------------- check


def load_or_say(path: str, prog: str = "observatory lab") -> Scenario | None:
    """The scenario at ``path``; or None, after its mistakes (each naming file, table and
    key) and a count are written to stderr. For ``lab check``, ``lab up`` and the
    dashboard's ``--scenario``."""
    from app.core.scenario import ScenarioError, load_scenario

    try:
        return load_scenario(path)
    except ScenarioError as exc:
        # A mistake quotes the file (a name, a command): never a raw control character.
        for line in exc.errors:
            sys.stderr.write(printable(line) + "\n")
        count = len(exc.errors)
        sys.stderr.write(
            f"{prog}: {printable(path)}: {count} mistake{'s' if count != 1 else ''}, "
            "nothing was started\n"
        )
        return None


def check(path: str) -> int:
    scenario = load_or_say(path)
    if scenario is None:
        return 2
    count = len(scenario.entries)
    lines = [f"{printable(path)}: {count} process{'es' if count != 1 else ''}, ready to start"]
    for host in scenario.hosts:
        lines.append(f"  host {host.name}: {', '.join(host.addresses)}")
    for entry in scenario.entries:
        delay = f"  (after {entry.delay:g} s)" if entry.delay else ""
        where = f"  (on {entry.host})" if entry.host else ""
        # A command's words are the file's: an argument may hold ESC.
        lines.append(f"  {entry.name}: {printable(entry.command_line)}{where}{delay}")
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# ------------------------------------------------------------------------ up


class _Printer:
    """Writes ``[name] text`` lines, names padded to one width; thread-safe.

    Everything it writes is :func:`printable`: a child's output (or a name, a command, a
    file's words in a note) holding ``ESC[2J`` shows as ``\\x1b[2J``, and cannot clear
    or move anything on the terminal."""

    def __init__(self, names: list[str]) -> None:
        self.width = max((len(printable(n)) for n in names), default=0) + 2
        self.lock = threading.Lock()

    def line(self, name: str, text: str) -> None:
        label = "[" + printable(name) + "]"
        self._write(sys.stdout, f"{label:<{self.width}} {printable(text)}\n")

    def note(self, text: str) -> None:
        self._write(sys.stderr, f"observatory lab up: {printable(text)}\n")

    def _write(self, stream: TextIO, text: str) -> None:
        with self.lock:
            try:
                stream.write(text)
                stream.flush()
            except (OSError, ValueError):
                pass  # our reader went away (a closed pipe): keep stopping cleanly


def up(path: str) -> int:
    """Check, start, stream, stop. Exit 0 when every process ended well."""
    from app.core.netns import NetnsError, open_lab
    from app.core.procs import LaunchError, ProcessManager
    from app.core.scenario_start import start_scenario

    scenario = load_or_say(path)
    if scenario is None:
        return 2

    printer = _Printer(scenario.names)
    # The exit event of a process comes from the manager's waiter thread after it
    # is reaped (and after its last output): wait_all() can return first.
    exit_printed = threading.Semaphore(0)
    stop = threading.Event()
    signals_seen: list[int] = []
    previous = _catch_stop_signals(stop, signals_seen)  # before the network: SIGTERM cleans up
    try:
        network = open_lab(scenario.hosts, printer.note)
    except NetnsError as exc:
        _restore(previous)
        sys.stderr.write(f"observatory lab up: {printable(path)}: {printable(str(exc))}\n")
        return 2
    manager = ProcessManager()
    manager.subscribe(_event_printer(printer, scenario, exit_printed))
    launch_failed = False
    try:
        try:
            start_scenario(manager, scenario, stop=stop, network=network)
        except LaunchError as exc:
            printer.note(f"could not start everything: {exc}; stopping the others")
            launch_failed = True
            stop.set()
        _wait_stopping(manager, printer, stop, signals_seen)
        for _ in manager.processes():  # every exit line printed before we end
            exit_printed.acquire(timeout=2.0)
    finally:
        manager.shutdown()
        if network is not None:  # after the processes: one still running keeps its host
            network.destroy()
        _restore(previous)
    ended_badly = _note_who_ended_badly(manager, printer)
    return 1 if ended_badly or launch_failed else 0


def _restore(handlers: dict[int, _Handler]) -> None:
    for sig, handler in handlers.items():
        signal.signal(sig, handler)


def _event_printer(
    printer: _Printer, scenario: Scenario, exit_printed: threading.Semaphore
) -> Callable[[ProcessEvent], None]:
    """What prints each process's output, start and end (releasing ``exit_printed``)."""
    from app.core.procs import OutputLine, ProcessExited, ProcessStarted

    commands = {e.name: e.command_line for e in scenario.entries}

    def on_event(event: ProcessEvent) -> None:
        if isinstance(event, OutputLine):
            printer.line(event.name, event.text)
        elif isinstance(event, ProcessStarted):
            printer.line(event.name, f"started (pid {event.pid}): {commands.get(event.name, '')}")
        elif isinstance(event, ProcessExited):
            printer.line(event.name, event.outcome)  # the state, and why it failed
            exit_printed.release()

    return on_event


def _catch_stop_signals(stop: threading.Event, seen: list[int]) -> dict[int, _Handler]:
    """SIGINT, SIGTERM and SIGHUP set ``stop`` and are noted in ``seen``.

    Returns the handlers they replace, to be put back.
    """

    def on_signal(signum: int, frame: FrameType | None) -> None:
        seen.append(signum)
        stop.set()

    return {
        sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    }


def _wait_stopping(
    manager: ProcessManager, printer: _Printer, stop: threading.Event, signals_seen: list[int]
) -> None:
    """Wait until every process has ended. Once ``stop`` is set, SIGTERM them all; SIGKILL
    those left after STOP_GRACE seconds, or at once when another signal comes."""
    stopping_since: float | None = None
    killed = False
    signals_at_stop = 0
    while not manager.wait_all(timeout=0.1):
        now = time.monotonic()
        if stop.is_set() and stopping_since is None:
            why = f"got {signal.Signals(signals_seen[-1]).name}" if signals_seen else "stopping"
            printer.note(f"{why}: stopping every process (SIGTERM)")
            manager.kill_all(signal.SIGTERM)
            stopping_since = now
            signals_at_stop = len(signals_seen)
        elif (
            stopping_since is not None
            and not killed
            and (now - stopping_since > STOP_GRACE or len(signals_seen) > signals_at_stop)
        ):
            printer.note("some did not stop: SIGKILL")
            manager.kill_all(signal.SIGKILL)
            killed = True


def _note_who_ended_badly(manager: ProcessManager, printer: _Printer) -> bool:
    """Names the processes that did not end well, if any; whether there were any."""
    bad = [i for i in manager.processes() if not i.ended_well]
    if bad:
        listed = ", ".join(f"{i.name} ({i.state})" for i in bad)
        printer.note(f"did not end well: {listed}")
    return bool(bad)
