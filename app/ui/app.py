"""The Textual application: wires the core's sources to the main screen.

The app owns what outlives a screen: the poller, the process manager and the
session record. The main screen asks for actions with the request messages of
:mod:`app.ui.requests`; the app runs each in a thread worker (group
``actions``) and says its outcome in words when the worker's state changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.worker import Worker, WorkerState

from app.core import cprograms, diag, netns
from app.core.control import ProcessControl
from app.core.interfaces import Interface, list_interfaces
from app.core.lesson import Lesson, LessonError, find_lesson, load_lesson
from app.core.lesson_run import do_step, scan_step, skip_reason
from app.core.model import SocketEvent
from app.core.netns import LabNetwork
from app.core.procs import (
    ForeignProcess,
    LineGate,
    OutputLine,
    ProcessError,
    ProcessEvent,
    ProcessExited,
    ProcessStarted,
)
from app.core.record import SessionRecorder
from app.core.scan import ScanError
from app.core.scenario import Scenario, ScenarioError, load_scenario
from app.core.scenario_start import EntryResult, start_scenario_each
from app.core.sockets import SocketSource
from app.core.watch import EventStream
from app.ui.messages import (
    LessonStepDone,
    PollFailed,
    PollResult,
    ProcessEventMessage,
    SnapshotReady,
)
from app.ui.palette import KeyCommands
from app.ui.poller import Poller
from app.ui.requests import (
    CloseRequested,
    ForeignKillConfirmed,
    KillAllRequested,
    KillRequested,
    LaunchRequested,
    LessonOpenRequested,
    QuitRequested,
    RestartRequested,
    ScenarioRequested,
)
from app.ui.screens.dialogs import ConfirmDialog, post_if_yes
from app.ui.screens.main import MainScreen
from app.ui.styles import STYLES
from app.ui.themes import DEFAULT_THEME, PROJECTOR, THEMES
from app.ui.widgets.lesson_panel import LessonStepRequested

TERM_GRACE = 3.0  # seconds after `k` (SIGTERM) before a process still running is named
ACTIONS = "actions"  # the worker group of launches, kills, restarts, closes, scenarios
# What an action's worker returns: what to do next on the UI loop (say it, ask), or None.
Then = Callable[[], None] | None


class ObservatoryApp(App[None]):
    """The dashboard. Its sources are injected, so tests can pass fakes.

    Args:
        source: takes snapshots of the machine's sockets.
        manager: the process manager (or a stand-in with the same methods).
        interval: seconds between polls.
        theme_name: a Textual theme name or ``projector``.
        scenario: a scenario file to start once the screen is up.
        interfaces: returns this machine's interfaces.
        clock: the time shown in the status line.
        poll: False for snapshot tests: no background polling; call
            :meth:`deliver` yourself.
        stream: makes the event stream (every transition the kernel reports,
            :class:`app.core.watch.EventStream`); None: polls alone.
        network: the lab network of the scenario's hosts (made and removed by the
            caller; ``source`` reads its hosts too): the tables gain a Host column.
        notes: sentences to say once the screen is up (what the start cleaned up).
        lesson: a lesson to show in the Lesson band from the start (its lab hosts, if
            any, are ``network``; ``no_network`` says why there is none).
    """

    TITLE = "Connection Observatory"
    # False in a replay of a record (app.ui.replay_app): nothing acts on the machine.
    LIVE: ClassVar[bool] = True
    CSS_PATH = [
        STYLES / "app.tcss",
        STYLES / "main.tcss",
        STYLES / "dialogs.tcss",
        STYLES / "scan.tcss",
    ]
    ENABLE_COMMAND_PALETTE = True
    COMMANDS = App.COMMANDS | {KeyCommands}
    # On the app, not only the main screen, and a priority binding: a modal dialog
    # cuts the app's ordinary bindings off, and a handout of an open dialog is saved too.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save_screen", "Screenshot", show=False, priority=True),
    ]

    def __init__(
        self,
        source: SocketSource,
        manager: ProcessControl | None = None,
        *,
        interval: float = 1.0,
        theme_name: str | None = None,
        scenario: Scenario | None = None,
        interfaces: Callable[[], list[Interface]] = list_interfaces,
        clock: Callable[[], float] = time.time,
        poll: bool = True,
        recorder: SessionRecorder | None = None,
        record_warning: str | None = None,
        notes: Sequence[str] = (),
        stream: Callable[..., EventStream] | None = None,
        network: LabNetwork | None = None,
        lesson: Lesson | None = None,
        no_network: str | None = None,
    ) -> None:
        super().__init__()
        self.lesson = lesson
        self.no_network = no_network  # why the lesson's lab hosts were not made
        self.network = network
        self.source = source
        self.manager = manager
        self.theme_name = theme_name or DEFAULT_THEME
        self.scenario = scenario
        self.clock = clock
        self._poll_enabled = poll
        self.recorder = recorder
        self.record_warning = record_warning
        self.notes = tuple(notes)  # said once the screen is up (what a start cleaned up)
        self._unsubscribe: Callable[[], None] | None = None
        # A process flooding its output reaches the screen as a few lines a second and
        # a count, not a message per line (which buried the loop: 200 MB never drew).
        self._output_gate = LineGate()
        # The main screen, made at mount; the poller's and the manager's threads post to it
        # (post_message is thread-safe; once the screen closes, it takes no more).
        self._main: MainScreen | None = None
        self.poller = Poller(
            source,
            lambda result: self._to_screen(SnapshotReady(result)),
            interval,
            processes=manager.processes if manager is not None else None,
            interfaces=interfaces,
            fail=lambda error: self._to_screen(PollFailed(error)),
            record=self._record_socket_events,
            record_snapshot=recorder.record_snapshot if recorder is not None else None,
            stream=stream,
            warn=lambda text: self.notify(text, severity="warning", timeout=10, markup=False),
        )

    # -- start and stop -------------------------------------------------------------
    def on_mount(self) -> None:
        for theme in THEMES.values():
            if theme.name not in self.available_themes:
                self.register_theme(theme)
        self.register_theme(PROJECTOR)
        self.theme = self.theme_name
        self._main = MainScreen(
            self.poller,
            clock=self.clock,
            output=self.process_output,
            recording=self.recorder.path if self.recorder is not None else None,
            hosts=self.shows_hosts(),
            live=self.LIVE,
        )
        self.push_screen(self._main)
        if self.lesson is not None:
            self._show_lesson(self.lesson)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self._on_signal, sig)
        if self.manager is not None:
            self._unsubscribe = self.manager.subscribe(self._on_process_event)
        if self._poll_enabled:
            self.poller.start()
        if self.scenario is not None:
            self._start_scenario(self.scenario)
        self._guard_sigcont()
        if self.record_warning:
            self.notify(self.record_warning, title="Not recording", severity="warning")
        for note in self.notes:
            self.notify(note, timeout=15)

    def shows_hosts(self) -> bool:
        """Whether the tables need a Host column: lab hosts' sockets are among the rows."""
        return self.network is not None

    def _on_signal(self, sig: int) -> None:
        # Textual's driver does not handle SIGTERM/SIGHUP: stop children and leave.
        self._shutdown_children()
        self.exit(return_code=128 + sig)
        # A closed terminal can leave Textual's driver blocked on its output queue
        # forever; the children are stopped by then, so make sure we end too. (A timer
        # thread, not a worker: the event loop it watches may be the one that is stuck.)
        timer = threading.Timer(3.0, self._hard_exit, args=(128 + sig,))
        timer.daemon = True
        timer.start()

    def _hard_exit(self, code: int) -> None:
        # os._exit skips on_unmount and atexit: stop what they would have (the
        # children; the tracefs instance of the event stream).
        self.poller.stop()
        if self.manager is not None:
            self.manager.shutdown()
        netns.destroy_all()  # (after the processes: one still running keeps its host)
        os._exit(code)

    def _guard_sigcont(self) -> None:
        """Ignore SIGCONT once the terminal is gone.

        Closing the terminal sends SIGHUP and SIGCONT together. Textual answers
        SIGCONT by restarting its screen on the dead terminal: a second output
        thread dies on its first write and the exit then waits for it forever.
        """
        previous = signal.getsignal(signal.SIGCONT)

        def on_cont(signum: int, frame: Any) -> None:
            try:
                alive = os.isatty(sys.__stdin__.fileno()) if sys.__stdin__ else False
            except (OSError, ValueError):
                alive = False
            if alive and callable(previous):
                previous(signum, frame)

        with contextlib.suppress(ValueError):  # not the main thread (tests)
            signal.signal(signal.SIGCONT, on_cont)

    def on_unmount(self) -> None:
        self.poller.stop()
        if self._unsubscribe is not None:
            self._unsubscribe()

    def _shutdown_children(self) -> None:
        # A plain thread, not a worker: the app's workers are cancelled as it exits,
        # and this must go on stopping the children while the loop ends.
        if self.manager is not None:
            threading.Thread(target=self.manager.shutdown, daemon=True).start()

    # -- from the poller's and the manager's threads --------------------------------------
    def _to_screen(self, message: Message) -> bool:
        """Post to the main screen, from any thread; False once it has closed."""
        return self._main is not None and self._main.post_message(message)

    def deliver(self, result: PollResult) -> None:
        """Hand a poll result to the screen as the poller does (tests, snapshots)."""
        self._to_screen(SnapshotReady(result))

    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    def _record_socket_events(self, events: list[SocketEvent]) -> None:
        """On the poller thread: socket events to the session record (a write each)."""
        if self.recorder is not None:
            self.recorder.record_events(events)

    def _on_process_event(self, event: ProcessEvent) -> None:
        """On the manager's threads: starts and exits to the session record, and every
        event to the screen."""
        if self.recorder is not None and not isinstance(event, OutputLine):
            data = {k: getattr(event, k) for k in event.__dataclass_fields__}
            kind = "started" if isinstance(event, ProcessStarted) else "exited"
            self.recorder.record_process(data, kind=kind)
        if isinstance(event, OutputLine):
            events: list[ProcessEvent] = list(self._output_gate.admit(event))
        elif isinstance(event, ProcessExited):
            events = [*self._output_gate.flush(event.name, event.pid), event]
        else:
            events = [event]
        with contextlib.suppress(RuntimeError):  # the app's loop has closed: quitting
            for each in events:
                self._to_screen(ProcessEventMessage(each))

    # -- the screen's other needs ---------------------------------------------------------
    def watch_theme(self, theme: str) -> None:
        # Lets the style sheets give the projector brighter frames than any theme variable.
        self.set_class(theme == "projector", "-projector")

    def action_toggle_theme(self) -> None:
        self.theme = DEFAULT_THEME if self.theme == "projector" else "projector"
        self.notify(f"Theme: {self.theme}")

    def action_save_screen(self) -> None:
        """Save an SVG screenshot next to the session record (or in the working folder)."""
        folder = self.recorder.path.parent if self.recorder is not None else Path.cwd()
        stamp = time.strftime("%Y%m%d-%H%M%S")
        try:
            path = self.save_screenshot(filename=f"observatory-{stamp}.svg", path=str(folder))
        except OSError as exc:
            self.notify(
                f"Could not save the screenshot in {folder}: {exc.strerror}", severity="error"
            )
            return
        # Short: the next screenshot of a handout series should not show this one's toast.
        self.notify(f"Screenshot saved: {path}", timeout=3)

    def process_output(self, name: str) -> list[str]:
        """A lab process's stored output lines (none for a name the manager forgot)."""
        if self.manager is None:
            return []
        try:
            return list(self.manager.output(name))
        except Exception:
            return []

    # -- requests: the blocking part runs in a thread worker ------------------------------
    def _background(self, work: Callable[[], Then], description: str) -> None:
        """Run ``work`` in a thread worker; ``description`` titles its error, if any."""
        self.run_worker(
            work,
            description,
            group=ACTIONS,
            description=description,
            thread=True,
            exit_on_error=False,
        )

    def _act(self, description: str, call: Callable[[], object], done: str | None = None) -> None:
        """Run a manager call in a worker; say ``done`` once it has returned."""

        def work() -> Then:
            call()
            return self._say(done) if done else None

        self._background(work, description)

    def on_worker_state_changed(self, event: Worker.StateChanged) -> None:
        """An action ended: say what went wrong in words (never a traceback), or do
        what it asked for next; then poll, so the tables show what it changed."""
        worker: Worker[Then] = event.worker
        if worker.group != ACTIONS:
            return  # (the Scan tab's workers report to the Scan tab)
        if event.state == WorkerState.ERROR:
            error = worker.error
            words = str(error) or type(error).__name__
            self.notify(words, title=worker.description, severity="error", timeout=8)
        elif event.state == WorkerState.SUCCESS:
            if worker.result is not None:
                worker.result()
        else:
            return
        self.poller.poll_now()

    def _manager(self) -> ProcessControl | None:
        if self.manager is None:
            self.notify("This dashboard runs without a process manager.", severity="error")
        return self.manager

    def _say(self, text: str) -> Then:
        return lambda: self.notify(text, timeout=8)

    def on_launch_requested(self, message: LaunchRequested) -> None:
        manager, request = self._manager(), message.request
        if manager is None:
            return
        program, args = request.program, list(request.args)
        if request.c_program is not None:
            c_program = request.c_program

            def build_and_launch() -> None:  # the compiler runs here, in the worker
                built = cprograms.build(c_program)
                manager.launch_command(request.name, [f"./{built.name}", *args], cwd=built.parent)

            self._act(f"Launch {request.name}", build_and_launch)
        elif program is not None:
            self._act(
                f"Launch {request.name}",
                lambda: manager.launch_builtin(request.name, program, args),
            )
        else:
            self._act(f"Launch {request.name}", lambda: manager.launch_command(request.name, args))

    def on_kill_requested(self, message: KillRequested) -> None:
        """Kill a lab process, or a socket's owner: directly when we started it, else
        after a confirmation (psutil reads who the pid is: in the worker)."""
        manager, target, sig = self._manager(), message.target, message.sig
        if manager is None:
            return
        if isinstance(target, str) or manager.is_managed(target):

            def kill() -> Then:
                info = manager.kill(target, sig)
                if sig != signal.SIGTERM:
                    return None
                deadline = time.monotonic() + TERM_GRACE
                while time.monotonic() < deadline:  # monotonic: a clock jump cannot stretch it
                    time.sleep(0.1)
                    with contextlib.suppress(ProcessError):
                        if manager.get(info.name).ended:
                            return None
                return self._say(
                    f"{info.name} (pid {info.pid}) still runs {TERM_GRACE:g} s after SIGTERM: "
                    "it ignores or catches it. K sends SIGKILL, which it cannot."
                )

            self._background(kill, f"Kill {target}")
            return

        def ask() -> Then:
            foreign = manager.describe_foreign(target)
            return lambda: self._confirm_foreign(foreign, sig)

        self._background(ask, f"Kill pid {target}")

    def _confirm_foreign(self, foreign: ForeignProcess, sig: int) -> None:
        """Ask before signalling a process the dashboard did not start."""
        name = "SIGKILL" if sig == signal.SIGKILL else "SIGTERM"
        body = (
            f"pid {foreign.pid} was not started by the observatory.\n\n"
            f"  user:    {foreign.user or '?'}\n  command: {foreign.command_line}\n\n"
            f"Send it {name}?"
        )
        self.push_screen(
            ConfirmDialog(f"Kill pid {foreign.pid}?", body, yes=f"Send {name}"),
            post_if_yes(self, ForeignKillConfirmed(foreign, sig)),
        )

    def on_foreign_kill_confirmed(self, message: ForeignKillConfirmed) -> None:
        """Signal the process the user confirmed (refused if its pid was reused since)."""
        manager, foreign, sig = self._manager(), message.process, message.sig
        if manager is None:
            return
        self._act(
            f"Kill pid {foreign.pid}",
            lambda: manager.kill_foreign(foreign.pid, sig, created=foreign.created),
            done=f"Signal sent to pid {foreign.pid}.",
        )

    def on_close_requested(self, message: CloseRequested) -> None:
        """End one TCP connection (SOCK_DESTROY) after the screen's confirmation."""
        sock = message.sock
        if sock.remote_addr is None or sock.remote_port is None:
            return
        local, remote = (sock.local_addr, sock.local_port), (sock.remote_addr, sock.remote_port)
        self._act(
            f"Close {sock.local} → {sock.remote}",
            lambda: diag.destroy(local, remote),
            done=f"Closed {sock.local} → {sock.remote}: its owner's recv() gets "
            "ECONNABORTED, the peer a reset.",
        )

    def on_restart_requested(self, message: RestartRequested) -> None:
        manager, name = self._manager(), message.name
        if manager is not None:
            self._act(f"Restart {name}", lambda: manager.restart(name), done=f"{name} restarted.")

    def on_kill_all_requested(self, message: KillAllRequested) -> None:
        manager = self._manager()
        if manager is not None:
            self._act("Kill all", manager.kill_all)

    def on_scenario_requested(self, message: ScenarioRequested) -> None:
        self.load_scenario(message.path)

    def load_scenario(self, path: str) -> None:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            self.notify(
                "\n".join(exc.errors[:6]), title="Scenario refused", severity="error", timeout=15
            )
            return
        self._start_scenario(scenario)

    def _start_scenario(self, scenario: Scenario) -> None:
        manager = self._manager()
        if manager is None:
            return
        self.notify(f"Starting {len(scenario.entries)} processes from {scenario.path.name}")

        def report(result: EntryResult) -> None:  # kept, renamed or failed: said in words
            if result.message:  # (on the worker's thread: notify is thread-safe)
                failed = result.outcome == "failed"
                self.notify(result.message, severity="error" if failed else "information")

        self._act(
            f"Scenario {scenario.path.name}",
            lambda: start_scenario_each(manager, scenario, on_result=report, network=self.network),
        )

    # -- the lesson -----------------------------------------------------------------------
    def on_lesson_open_requested(self, message: LessonOpenRequested) -> None:
        try:
            lesson = load_lesson(find_lesson(message.path))
        except LessonError as exc:
            self.notify(
                "\n".join(exc.errors[:6]),
                title="Lesson refused",
                severity="error",
                timeout=15,
                markup=False,  # the file's own words, [brackets] and all
            )
            return
        self.lesson = lesson
        self._show_lesson(lesson)

    def _show_lesson(self, lesson: Lesson) -> None:
        if self._main is not None:
            skips = {
                step.index: why
                for step in lesson.steps
                if (why := skip_reason(step, self.network, no_network=self.no_network))
            }
            self._main.lesson.load(lesson, skips)
            self._main.refresh_bindings()

    def on_lesson_step_requested(self, message: LessonStepRequested) -> None:
        """Do a step's stops, kills, processes and scan in a worker; the band hears back."""
        step, folder, manager = message.step, message.folder, self._manager()
        if self.recorder is not None:  # a replay of the record shows where the lesson was
            self.recorder.record_note(f"lesson step {step.index}: {step.title}")

        def work() -> Then:
            notes: list[str] = []
            scan: dict[int, str] | None = None
            # (Anything else also ends the step on the band; its toast names the error.)
            error: str | None = "it stopped on an unexpected error (the message says which)"
            try:
                if manager is not None:
                    notes = do_step(step, manager, folder=folder, network=self.network)
                if step.scan is not None:
                    scan = scan_step(step)
                error = None
            except (ProcessError, ScanError, OSError) as exc:  # each says why in words
                error = str(exc) or type(exc).__name__
            finally:
                self._to_screen(LessonStepDone(step, notes, scan, error))
            return None

        self._background(work, f"Lesson step {step.index}")

    # -- quit -----------------------------------------------------------------------------
    def on_quit_requested(self, message: QuitRequested) -> None:
        running = message.running
        if not running:
            self._quit()
            return
        names = ", ".join(running[:6]) + (" …" if len(running) > 6 else "")
        body = (
            f"{len(running)} lab process(es) still run: {names}.\n\n"
            "Quitting stops them all (nothing the observatory started outlives it)."
        )
        # q asked to quit: Enter (or y) does it; Cancel is one key away (n, Esc).
        self.push_screen(
            ConfirmDialog("Quit the observatory?", body, yes="Stop them and quit", default="yes"),
            lambda yes: self._quit() if yes else None,
        )

    def _quit(self) -> None:
        self._shutdown_children()
        self.exit()
