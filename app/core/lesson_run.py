"""Running a lesson's steps: the actions (blocking; a UI calls them in worker threads) and
the headless runner of ``observatory lesson run``.

* :func:`do_step`: SIGTERM the step's ``stop`` names, SIGKILL its ``kill`` names, wait for
  them to end, then start its processes (as a scenario: delays, C programs, lab hosts);
* :func:`scan_step`: the step's connect scan of 127.0.0.1, port -> nmap's word;
* :func:`skip_reason`: why a step cannot run here (no lab hosts, no C compiler, no nmap);
* :func:`run_lesson`: every step in order; each expectation is polled until it holds or
  its time is up, then one line: ``✓ sentence`` or ``✗ sentence: why``. Everything it
  started is stopped, and its lab network removed, however it ends.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from app.core import netns
from app.core.control import ProcessControl
from app.core.lesson import LabHost, Lesson, Step
from app.core.lesson_check import Verdict, World, judge
from app.core.lesson_sentence import Expectation
from app.core.procs import LaunchError, ProcessError, ProcessInfo
from app.core.terminal_text import printable

if TYPE_CHECKING:
    from app.core.netns import LabNetwork
    from app.core.procs import ProcessEvent
    from app.core.scenario import ScenarioEntry
    from app.core.sockets import SocketSource

DEFAULT_TIMEOUT = 5.0  # seconds an expectation may take to hold
POLL_EVERY = 0.2  # seconds between two looks
STOP_GRACE = 5.0  # seconds a stopped or killed process may take to end
READY_WAIT = 2.0  # seconds a step's processes may take to do their first thing
HELD_MARK, FAILED_MARK, SKIPPED_MARK = "✓", "✗", "-"


# ------------------------------------------------------------------ printable text


# ------------------------------------------------------------------ the actions


def _wait_ended(
    manager: ProcessControl, names: Sequence[str], grace: float, stop: threading.Event | None
) -> list[str]:
    """Wait until each of ``names`` has ended; a note for each one that did not."""
    deadline = time.monotonic() + grace
    left = list(names)
    while left and time.monotonic() < deadline:
        still = []
        for name in left:
            try:
                if not manager.get(name).ended:
                    still.append(name)
            except ProcessError:
                continue
        left = still
        if not left:
            break
        if stop is None:
            time.sleep(0.05)
        elif stop.wait(0.05):
            break
    return [f"{name} has not ended after {grace:g} s" for name in left]


def do_step(
    step: Step,
    manager: ProcessControl,
    *,
    folder: Path,
    network: LabNetwork | None = None,
    stop: threading.Event | None = None,
    grace: float = STOP_GRACE,
    on_note: Callable[[str], None] | None = None,
) -> list[str]:
    """The step's actions: SIGTERM ``stop``, SIGKILL ``kill`` (and wait up to ``grace``
    seconds for them to end), then start its processes in order, after their delays.

    Returns notes in words (what was signalled, what started and its pid); ``on_note``
    also gets each one as it happens. Blocks for the delays and the ends: call it from a
    worker thread in a UI. Setting ``stop`` ends the waiting and starts nothing more.

    Raises:
        LaunchError: a process could not start (in words); those started before it run on.
    """
    notes: list[str] = []

    def add(note: str) -> None:
        notes.append(note)
        if on_note is not None:
            on_note(note)

    signalled = _signal(step, manager, add)
    for note in _wait_ended(manager, signalled, grace, stop):
        add(note)
    if step.processes and not (stop is not None and stop.is_set()):
        _start(step, manager, folder, network, stop, add)
    return notes


def _signal(step: Step, manager: ProcessControl, add: Callable[[str], None]) -> list[str]:
    """SIGTERM the step's ``stop`` names, SIGKILL its ``kill`` names; the names signalled."""
    signalled: list[str] = []
    for names, sig, done in (
        (step.stop, signal.SIGTERM, "stopped (SIGTERM)"),
        (step.kill, signal.SIGKILL, "killed (SIGKILL)"),
    ):
        for name in names:
            try:
                info = manager.kill(name, sig)
            except ProcessError as exc:
                add(f"{name} was not signalled: {exc}")
                continue
            signalled.append(name)
            add(f"{done} {name} (pid {info.pid})")
    return signalled


def _start(
    step: Step,
    manager: ProcessControl,
    folder: Path,
    network: LabNetwork | None,
    stop: threading.Event | None,
    add: Callable[[str], None],
) -> None:
    """Start the step's processes in order, after their delays, each said with its pid."""
    from app.core.netns import NetnsError
    from app.core.scenario import Scenario
    from app.core.scenario_start import start_scenario

    on_hosts = sorted({e.host for e in step.processes if e.host})
    if on_hosts and network is None:
        raise LaunchError(
            f"step {step.index} runs processes on lab hosts ({', '.join(on_hosts)}), and "
            "there is no lab network; nothing of it was started"
        )
    scenario = Scenario(
        path=Path(folder) / "lesson.toml",
        entries=step.processes,
        hosts=network.hosts if network is not None and on_hosts else (),
    )

    def started(entry: ScenarioEntry, info: ProcessInfo) -> None:
        where = f" on {entry.host}" if entry.host else ""
        add(f"started {info.name} (pid {info.pid}){where}: {entry.command_line}")

    try:
        start_scenario(
            manager,
            scenario,
            stop=stop,
            on_started=started,
            network=network if on_hosts else None,
        )
    except NetnsError as exc:
        raise LaunchError(f"could not start on a lab host: {exc}") from None
    except OSError as exc:  # the fork itself failed (too many processes), say
        why = exc.strerror or str(exc)
        where = f" ({exc.filename})" if exc.filename else ""
        raise LaunchError(f"could not start: {why}{where}") from None


def scan_step(step: Step, *, stop: threading.Event | None = None) -> dict[int, str]:
    """The step's connect scan of 127.0.0.1: port -> open, closed, filtered (nmap's word).

    Raises:
        NmapNotFound, ScanError: the scan cannot run or failed (the message says why).
    """
    from app.core.scan import ScanError, ScanRequest, run_scan

    if step.scan is None:
        return {}
    request = ScanRequest.create("127.0.0.1", step.scan)
    result = run_scan(request, cancel_event=stop)
    if result.status != "done":
        raise ScanError(result.error or f"the scan ended: {result.status}")
    states = {p.port: p.state for p in result.ports}
    folded = {n.state for h in result.hosts for n in h.not_shown}
    if len(folded) == 1:  # nmap folds many alike ports into one line ("Not shown: 5 closed")
        state = folded.pop()
        for port in step.scan_ports:
            states.setdefault(port, state)
    return states


def compiler_problem() -> str | None:
    """Why the lecture's C programs cannot be built here (no compiler, a cache folder this
    user cannot write), or None."""
    from app.core import cprograms

    if cprograms.compiler() is None:
        return cprograms.INSTALL_HINT
    folder = cprograms.cache_dir()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"they are compiled into {folder}, and {existing} is not writable for this user"
    return None


def skip_reason(
    step: Step, network: LabNetwork | None, *, no_network: str | None = None
) -> str | None:
    """Why ``step`` cannot run here, in words; None when it can.

    A step that needs lab hosts needs the running ``network`` (``no_network``: why there
    is none, when known); one that starts or looks at a C program needs a compiler; one
    that scans needs nmap.
    """
    if step.needs_hosts and network is None:
        hosts_why = no_network or netns.refusal() or "the lab network was not made"
        return f"it needs the lab hosts (network namespaces), and there are none: {hosts_why}"
    if step.needs_compiler:
        cc_why = compiler_problem()
        if cc_why is not None:
            return f"it needs the lecture's C programs, and {cc_why}"
    if step.needs_nmap:
        from app.core.scan import nmap_missing_reason

        nmap_why = nmap_missing_reason()
        if nmap_why is not None:
            return f"it scans with nmap, and {nmap_why}"
    return None


# ------------------------------------------------------------------ the lab network


def open_lab_network(
    hosts: Sequence[LabHost], say: Callable[[str], None]
) -> tuple[LabNetwork | None, str | None]:
    """The lab network of a lesson's ``[[host]]`` tables: (network, None) when made;
    (None, why) when it cannot be made here (not root, say): the steps that need it are
    skipped, in words; (None, None) without hosts (:func:`app.core.netns.open_lab`)."""
    try:
        return netns.open_lab(hosts, say), None
    except netns.NetnsError as exc:
        return None, str(exc)


# ------------------------------------------------------------------ the runner


@dataclass
class Tally:
    """What a run found: how many sentences held, failed, were skipped."""

    held: int = 0
    failed: list[str] = field(default_factory=list)  # "sentence: why", for the summary
    skipped: int = 0
    skipped_steps: list[int] = field(default_factory=list)
    steps_run: int = 0
    interrupted: bool = False

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


class LessonRunner:
    """Runs a lesson's steps against a process manager and a socket source, saying each
    step, its notes and one ✓/✗ line per expectation through ``say`` (thread-safe)."""

    def __init__(
        self,
        lesson: Lesson,
        manager: ProcessControl,
        source: SocketSource,
        *,
        say: Callable[[str], None],
        network: LabNetwork | None = None,
        no_network: str | None = None,
        timeout: float = DEFAULT_TIMEOUT,
        poll_every: float = POLL_EVERY,
        stop: threading.Event | None = None,
        before_step: Callable[[Step], None] | None = None,
    ) -> None:
        self.lesson = lesson
        self.manager = manager
        self.source = source
        self.say = say
        self.network = network
        self.no_network = no_network
        self.timeout = timeout
        self.poll_every = poll_every
        self.stop = stop or threading.Event()
        self.before_step = before_step
        self.tally = Tally()

    def run(self) -> Tally:
        count = len(self.lesson.steps)
        for step in self.lesson.steps:
            if self.stop.is_set():
                break
            if self.before_step is not None and step.index > 1:
                self.before_step(step)
                if self.stop.is_set():
                    break
            self.say("")
            self.say(f"Step {step.index}/{count}: {printable(step.title)}")
            for line in step.say.splitlines():
                self.say(f"  {printable(line)}")
            self._step(step)
        self.tally.interrupted = self.stop.is_set()
        return self.tally

    def _skip(self, step: Step, reason: str) -> None:
        self.say(f"  skipped: {printable(reason)}")
        for exp in step.expect:
            self.say(f"{SKIPPED_MARK} {printable(exp.text)} (skipped)")
        self.tally.skipped += len(step.expect)
        self.tally.skipped_steps.append(step.index)

    def _fail_all(self, step: Step, why: str) -> None:
        for exp in step.expect:
            self._line(exp, Verdict(False, why))

    def _step(self, step: Step) -> None:
        reason = skip_reason(step, self.network, no_network=self.no_network)
        if reason is not None:
            self._skip(step, reason)
            return
        self.tally.steps_run += 1
        try:
            do_step(
                step,
                self.manager,
                folder=self.lesson.folder,
                network=self.network,
                stop=self.stop,
                on_note=lambda note: self.say(f"  {printable(note)}"),
            )
        except LaunchError as exc:
            self.say(f"  could not start everything: {printable(str(exc))}")
            self._fail_all(step, f"the step could not start: {exc}")
            return
        if self.stop.is_set():
            return
        scan: dict[int, str] | None = None
        scan_failed: str | None = None
        if step.scan is not None:
            from app.core.scan import ScanError

            self.say(f"  scanning 127.0.0.1, ports {step.scan} (nmap -sT: connect)")
            try:
                scan = scan_step(step, stop=self.stop)
            except ImportError as exc:  # python-nmap, a dependency, is missing
                scan_failed = f"nmap's output cannot be read here ({exc})"
            except (ScanError, OSError) as exc:
                scan_failed = str(exc)
            if scan_failed is not None:
                self.say(f"  the scan failed: {printable(scan_failed)}")
            elif scan is not None:
                shown = ", ".join(f"{port} {state}" for port, state in sorted(scan.items()))
                self.say(f"  nmap: {shown or 'no ports reported'}")
        self._wait(step, scan, scan_failed)

    def _wait(self, step: Step, scan: dict[int, str] | None, scan_failed: str | None) -> None:
        """Look every ``poll_every`` s until each expectation has held or the step's time
        is up; print the lines in the file's order as soon as each is known.

        Nothing is judged before the step's processes have done their first thing (each
        has printed a line, holds a socket or has ended; at most READY_WAIT s): "no
        listen 6000" must not hold only because the server has not reached listen() yet.
        For the same reason a sentence that says what is not there (``no ...``, a count,
        ``cpu ... below``) must hold on two looks in a row.
        """
        expect = step.expect
        if not expect:
            return
        timeout = step.timeout if step.timeout is not None else self.timeout
        waiting = {e.name for e in step.processes}
        ready_by = time.monotonic() + min(READY_WAIT, timeout)
        deadline: float | None = None
        verdicts: list[Verdict | None] = [None] * len(expect)
        last: list[Verdict] = [Verdict(False, "not looked at yet")] * len(expect)
        printed = 0
        while True:
            world = World(self.source.poll(), self.manager.processes(), scan)
            if waiting:
                waiting -= _ready(world)
            if waiting and time.monotonic() < ready_by:
                if self.stop.wait(self.poll_every):
                    break
                continue
            if deadline is None:
                deadline = time.monotonic() + timeout
            _look(expect, world, verdicts, last, scan_failed)
            while printed < len(expect) and verdicts[printed] is not None:
                self._line(expect[printed], verdicts[printed])  # type: ignore[arg-type]
                printed += 1
            if printed == len(expect) or time.monotonic() >= deadline:
                break
            if self.stop.wait(self.poll_every):
                break
        if self.stop.is_set() and printed < len(expect):
            return  # interrupted: the summary says so
        for i in range(printed, len(expect)):
            self._line(expect[i], verdicts[i] or last[i])

    def _line(self, exp: Expectation, verdict: Verdict) -> None:
        if verdict.held:
            self.tally.held += 1
            self.say(f"{HELD_MARK} {printable(exp.text)}")
        else:
            self.tally.failed.append(f"{exp.text}: {verdict.why}")
            self.say(f"{FAILED_MARK} {printable(exp.text)}: {printable(verdict.why)}")


def _look(
    expect: Sequence[Expectation],
    world: World,
    verdicts: list[Verdict | None],
    last: list[Verdict],
    scan_failed: str | None,
) -> None:
    """One look: each sentence not decided yet is judged; ``verdicts[i]`` is set when it
    is decided (held: twice in a row where it may be early; a scan's: at once), ``last[i]``
    to this look's verdict."""
    for i, exp in enumerate(expect):
        if verdicts[i] is not None:
            continue
        if exp.kind == "scan" and scan_failed is not None:
            verdict = Verdict(False, f"the scan failed: {scan_failed}")
        else:
            verdict = judge(exp, world)
        twice = not _may_be_early(exp) or last[i].held
        last[i] = verdict
        if (verdict.held and twice) or exp.kind == "scan":
            verdicts[i] = verdict


def _ready(world: World) -> set[str]:
    """The lab processes that have done their first thing: printed a line, hold a socket,
    or ended."""
    holders = {s.pid for s in world.snapshot.sockets if s.pid is not None}
    return {p.name for p in world.processes if p.ended or p.output or p.pid in holders}


def _may_be_early(exp: Expectation) -> bool:
    """A sentence that may hold only because something has not happened yet."""
    return exp.negated or exp.count is not None or (exp.kind == "cpu" and not exp.above)


def _event_printer(say: Callable[[str], None]) -> Callable[[ProcessEvent], None]:
    """Each lab process's output line as ``  [name] text``, and how it ended."""
    from app.core.procs import OutputLine, ProcessExited

    def on_event(event: ProcessEvent) -> None:
        if isinstance(event, OutputLine):
            say(f"    [{printable(event.name)}] {printable(event.text)}")
        elif isinstance(event, ProcessExited):
            say(f"    [{printable(event.name)}] {printable(event.outcome)}")

    return on_event


def run_lesson(
    lesson: Lesson,
    *,
    say: Callable[[str], None],
    timeout: float = DEFAULT_TIMEOUT,
    stop: threading.Event | None = None,
    before_step: Callable[[Step], None] | None = None,
    show_output: bool = True,
) -> Tally:
    """Run every step of ``lesson`` headless, then stop everything it started and remove
    its lab network (after the processes), on every way out. ``say`` gets each line.

    Setting ``stop`` (a signal handler does) ends the run at the next look.
    """
    from app.core.procs import ProcessManager

    lock = threading.Lock()

    def out(line: str) -> None:
        with lock:
            say(line)

    stop = stop or threading.Event()
    network, no_network = open_lab_network(lesson.hosts, lambda note: out(printable(note)))
    if lesson.hosts and network is None:
        out(f"lab hosts: none here ({printable(no_network or 'not made')})")
    manager = ProcessManager()
    unsubscribe: Callable[[], None] | None = None
    try:
        if show_output:
            unsubscribe = manager.subscribe(_event_printer(out))
        runner = LessonRunner(
            lesson,
            manager,
            netns.lab_source(network),
            say=out,
            network=network,
            no_network=no_network,
            timeout=timeout,
            stop=stop,
            before_step=before_step,
        )
        return runner.run()
    finally:
        if unsubscribe is not None:
            unsubscribe()
        running = [p.name for p in manager.processes() if not p.ended]
        if running:
            out("")
            out(f"stopping what the lesson started: {', '.join(running)}")
        manager.shutdown()
        if network is not None:  # after the processes: one still running keeps its host
            network.destroy()
            out("lab hosts removed")


def summary(tally: Tally, lesson: Lesson) -> list[str]:
    """The closing lines: how many held, which did not, what was skipped."""
    total = tally.held + len(tally.failed)
    lines = [""]
    if tally.interrupted:
        lines.append(f"interrupted: {tally.held} of the {total} expectations looked at held")
    elif tally.failed:
        lines.append(f"{len(tally.failed)} of {total} expectations did not hold:")
        lines.extend(f"  {FAILED_MARK} {printable(f)}" for f in tally.failed)
    else:
        lines.append(f"all {total} expectations held")
    if tally.skipped_steps:
        steps = ", ".join(str(i) for i in tally.skipped_steps)
        noun = "step" if len(tally.skipped_steps) == 1 else "steps"
        lines.append(f"skipped here: {noun} {steps} ({tally.skipped} expectations)")
    return lines
