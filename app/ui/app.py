"""The Textual application: wires the core's sources to the main screen."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import shlex
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, ClassVar

from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import TabPane

from app.core import diag
from app.core.interfaces import Interface, list_interfaces
from app.core.model import Socket, SocketEvent
from app.core.procs import OutputLine, ProcessStarted
from app.core.scenario import EntryResult, ScenarioError, load_scenario, start_scenario_each
from app.core.sockets import SocketSource
from app.core.watch import EventStream
from app.ui.messages import PollFailed, PollResult, ProcessEventMessage, SnapshotReady
from app.ui.poller import Poller
from app.ui.screens.dialogs import ConfirmDialog
from app.ui.screens.launch import LaunchRequest
from app.ui.screens.main import TAB_KEYS, MainScreen
from app.ui.themes import DEFAULT_THEME, PROJECTOR, THEMES
from app.ui.widgets.backlog import BacklogPanel
from app.ui.widgets.bytes_panel import BytesPanel
from app.ui.widgets.scan_panel import ScanPanel
from app.ui.widgets.tcp_machine import StateMachinePanel


def styles_dir() -> Path:
    """``app/styles`` inside an installed wheel, else ``styles/`` of the source tree."""
    here = Path(__file__).resolve().parent.parent
    packaged = here / "styles"
    return packaged if packaged.is_dir() else here.parent / "styles"


STYLES = styles_dir()

# Instrument panels (app.ui.widgets.instrument.InstrumentPanel): (tab id, widget class);
# titles and keys are MainScreen's TAB_KEYS.
PANELS: tuple[tuple[str, type[Widget]], ...] = (
    ("tab-scan", ScanPanel),
    ("tab-bytes", BytesPanel),
    ("tab-machine", StateMachinePanel),
    ("tab-backlog", BacklogPanel),
)


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
    """

    TITLE = "Connection Observatory"
    CSS_PATH = [
        STYLES / "app.tcss",
        STYLES / "main.tcss",
        STYLES / "dialogs.tcss",
        STYLES / "scan.tcss",
    ]
    ENABLE_COMMAND_PALETTE = True
    # On the app, not only the main screen, and a priority binding: a modal dialog
    # cuts the app's ordinary bindings off, and a handout of an open dialog is saved too.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+s", "save_screen", "Screenshot", show=False, priority=True),
    ]

    def __init__(
        self,
        source: SocketSource,
        manager: Any = None,
        *,
        interval: float = 1.0,
        theme_name: str | None = None,
        scenario: Any = None,
        interfaces: Callable[[], list[Interface]] = list_interfaces,
        clock: Callable[[], float] = time.time,
        poll: bool = True,
        recorder: Any = None,
        record_warning: str | None = None,
        stream: Callable[..., EventStream] | None = None,
    ) -> None:
        super().__init__()
        self.source = source
        self.manager = manager
        self.interval = interval
        self.theme_name = theme_name or DEFAULT_THEME
        self.scenario = scenario
        self._interfaces_fn = interfaces
        self._interfaces: list[Interface] = []
        self.clock = clock
        self._poll_enabled = poll
        self.recorder = recorder
        self.record_warning = record_warning
        self._unsubscribe: Callable[[], None] | None = None
        self._observatory_loop: asyncio.AbstractEventLoop | None = None
        self.poller = Poller(
            source,
            self._deliver_from_thread,
            interval,
            processes=(lambda: list(manager.processes())) if manager is not None else None,
            interfaces=self._read_interfaces,
            fail=lambda error: self._post_from_thread(PollFailed(error)),
            record=self._record_socket_events,
            stream=stream,
        )

    # -- start and stop -------------------------------------------------------------
    def on_mount(self) -> None:
        self._observatory_loop = asyncio.get_running_loop()
        for theme in THEMES.values():
            if theme.name not in self.available_themes:
                self.register_theme(theme)
        self.register_theme(PROJECTOR)
        self.theme = self.theme_name
        self.push_screen(MainScreen())
        loop = self._observatory_loop
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

    def _on_signal(self, sig: int) -> None:
        # Textual's driver does not handle SIGTERM/SIGHUP: stop children and leave.
        self._shutdown_children()
        self.exit(return_code=128 + sig)
        # A closed terminal can leave Textual's driver blocked on its output queue
        # forever; the children are stopped by then, so make sure we end too.
        timer = threading.Timer(3.0, self._hard_exit, args=(128 + sig,))
        timer.daemon = True
        timer.start()

    def _hard_exit(self, code: int) -> None:
        # os._exit skips on_unmount and atexit: stop what they would have (the
        # children; the tracefs instance of the event stream).
        self.poller.stop()
        if self.manager is not None:
            self.manager.shutdown()
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
        if self.manager is not None:
            threading.Thread(target=self.manager.shutdown, daemon=True).start()

    # -- from threads -----------------------------------------------------------------
    def _post_from_thread(self, message: Any) -> None:
        """Hand a message from a worker thread to the main screen, on the UI loop."""
        loop = self._observatory_loop
        if loop is None or loop.is_closed():
            raise RuntimeError("the dashboard is not running")
        loop.call_soon_threadsafe(self._dispatch, message)

    def _dispatch(self, message: Any) -> None:
        if isinstance(message, SnapshotReady):
            for note in message.result.notes:
                self.notify(note, title="Cleaned up", timeout=10)
        main = self.main_screen()
        if main is not None:
            main.post_message(message)
        elif isinstance(message, SnapshotReady):
            self.poller.consumed()

    def _deliver_from_thread(self, result: PollResult) -> None:
        self._post_from_thread(SnapshotReady(result))

    def _read_interfaces(self) -> list[Interface]:
        self._interfaces = self._interfaces_fn()
        return self._interfaces

    def deliver(self, result: PollResult) -> None:
        """Hand a poll result to the screen directly (tests, snapshots)."""
        if result.interfaces is not None:
            self._interfaces = result.interfaces
        self._dispatch(SnapshotReady(result))

    def main_screen(self) -> MainScreen | None:
        for screen in self.screen_stack:
            if isinstance(screen, MainScreen):
                return screen
        return None

    # -- used by the main screen ------------------------------------------------------
    def extra_tabs(self) -> Iterable[Widget]:
        """The side column's instrument tabs: scan, bytes, TCP states, backlog."""
        titles = {tab_id: title for _key, tab_id, title in TAB_KEYS}
        for tab_id, panel in PANELS:
            yield TabPane(titles[tab_id], panel(), id=tab_id)

    def last_poll_duration(self) -> float:
        return self.poller.last_duration

    def poll_now(self) -> None:
        self.poller.poll_now()

    def set_paused(self, paused: bool) -> None:
        self.poller.set_paused(paused)

    def set_poll_interval(self, seconds: float) -> None:
        self.interval = seconds
        self.poller.set_interval(seconds)

    def interfaces_now(self) -> list[Interface]:
        """The interfaces the poller read last (never read here: psutil is off the loop)."""
        return list(self._interfaces)

    def watch_theme(self, theme: str) -> None:
        # Lets the style sheets give the projector brighter frames than any theme variable.
        self.set_class(theme == "projector", "-projector")

    def toggle_theme(self) -> None:
        self.theme = DEFAULT_THEME if self.theme == "projector" else "projector"
        self.notify(f"Theme: {self.theme}")

    def _record_socket_events(self, events: list[SocketEvent]) -> None:
        """On the poller thread: socket events to the session record (a write each)."""
        if self.recorder is not None:
            self.recorder.record_events(events)

    def _record_process_event(self, event: Any) -> None:
        """On the manager's threads: starts and exits to the session record."""
        if self.recorder is not None and not isinstance(event, OutputLine):
            data = {k: getattr(event, k) for k in event.__dataclass_fields__}
            kind = "started" if isinstance(event, ProcessStarted) else "exited"
            self.recorder.record_process(data, kind=kind)

    def _on_process_event(self, event: Any) -> None:
        self._record_process_event(event)
        self._post_from_thread(ProcessEventMessage(event))

    def action_save_screen(self) -> None:
        self.save_screen()

    def save_screen(self) -> None:
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
        if self.manager is None:
            return []
        try:
            return list(self.manager.output(name))
        except Exception:
            return []

    @staticmethod
    def command_of(event: Any) -> str:
        """What a student would type for a started process (not ``python -m ...``)."""
        argv = list(event.argv)
        if event.program is not None and "-m" in argv:  # python -m app.labs.X ARGS
            argv = [event.program, *argv[argv.index("-m") + 2 :]]
        return shlex.join(argv)

    def lab_pids(self) -> frozenset[int]:
        screen = self.main_screen()
        procs = screen.processes if screen is not None else []
        # Ended ones too: the lab-only view keeps showing what a kill left behind.
        return frozenset(p.pid for p in procs if p.pid is not None)

    # -- process control: blocking calls run on daemon threads ---------------------------
    def _background(self, work: Callable[[], Any], done: str | None = None) -> None:
        def run() -> None:
            try:
                work()
            except Exception as exc:  # a refusal in words, never a traceback
                self._notify_from_thread(str(exc), "error")
            else:
                if done:
                    self._notify_from_thread(done, "information")
            self.poller.poll_now()

        threading.Thread(target=run, daemon=True, name="observatory-action").start()

    def _notify_from_thread(self, text: str, severity: str) -> None:
        with contextlib.suppress(RuntimeError):  # the app has ended meanwhile
            self.call_from_thread(
                lambda: self.notify(text, severity=severity, timeout=8)  # type: ignore[arg-type]
            )

    def _need_manager(self) -> bool:
        if self.manager is None:
            self.notify("This dashboard runs without a process manager.", severity="error")
            return False
        return True

    def launch(self, request: LaunchRequest) -> None:
        if not self._need_manager():
            return
        if request.program is not None:
            self._background(
                lambda: self.manager.launch_builtin(
                    request.name, request.program, list(request.args)
                )
            )
        else:
            self._background(lambda: self.manager.launch_command(request.name, list(request.args)))

    def kill_process(self, name: str, sig: int) -> None:
        if self._need_manager():
            self._background(lambda: self.manager.kill(name, sig))

    def kill_pid(self, pid: int, sig: int) -> None:
        """Kill a socket's owner: directly when we started it, else after a confirmation."""
        if not self._need_manager():
            return
        if self.manager.is_managed(pid):
            self._background(lambda: self.manager.kill(pid, sig))
            return

        def ask() -> None:  # psutil reads who the pid is: off the UI loop
            describe = self.manager.describe_foreign(pid)
            with contextlib.suppress(RuntimeError):  # quitting meanwhile
                self.call_from_thread(self._confirm_foreign, describe, sig)

        self._background(ask)

    def _confirm_foreign(self, describe: Any, sig: int) -> None:
        screen = self.main_screen()
        if screen is not None:
            screen.confirm_foreign_kill(describe, sig)

    def kill_foreign(self, describe: Any, sig: int) -> None:
        """Signal the process the user confirmed (refused if its pid was reused since)."""
        self._background(
            lambda: self.manager.kill_foreign(describe.pid, sig, created=describe.created),
            done=f"Signal sent to pid {describe.pid}.",
        )

    def close_connection(self, sock: Socket) -> None:
        """End one TCP connection (SOCK_DESTROY) after the screen's confirmation."""
        if sock.remote_addr is None or sock.remote_port is None:
            return
        local, remote = (sock.local_addr, sock.local_port), (sock.remote_addr, sock.remote_port)
        self._background(
            lambda: diag.destroy(local, remote),
            done=f"Closed {sock.local} → {sock.remote}: its owner's recv() gets "
            "ECONNABORTED, the peer a reset.",
        )

    def restart_process(self, name: str) -> None:
        if self._need_manager():
            self._background(lambda: self.manager.restart(name), done=f"{name} restarted.")

    def kill_all(self) -> None:
        if self._need_manager():
            self._background(lambda: self.manager.kill_all())

    def load_scenario(self, path: str) -> None:
        try:
            scenario = load_scenario(path)
        except ScenarioError as exc:
            self.notify(
                "\n".join(exc.errors[:6]), title="Scenario refused", severity="error", timeout=15
            )
            return
        self._start_scenario(scenario)

    def _start_scenario(self, scenario: Any) -> None:
        if not self._need_manager():
            return
        self.notify(f"Starting {len(scenario.entries)} processes from {scenario.path.name}")

        def report(result: EntryResult) -> None:  # kept, renamed or failed: said in words
            if result.message:
                self._notify_from_thread(
                    result.message, "error" if result.outcome == "failed" else "information"
                )

        self._background(lambda: start_scenario_each(self.manager, scenario, on_result=report))

    # -- quit -----------------------------------------------------------------------------
    def request_quit(self) -> None:
        running = []
        if self.manager is not None:
            screen = self.main_screen()
            running = [p.name for p in (screen.processes if screen else []) if p.running]
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

    def get_system_commands(self, screen: Screen[Any]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        main = self.main_screen()
        if main is None:
            return
        for b in MainScreen.BINDINGS:
            assert isinstance(b, Binding)
            name, _, argument = b.action.partition("(")  # tab('tab-scan')
            argument = argument.strip("')\"")
            action = getattr(main, f"action_{name}", None)
            if action is None or name == "quit" or not main.check_action(name, (argument,)):
                continue
            if argument:
                action = functools.partial(action, argument)
            key = b.key.split(",")[0]
            yield SystemCommand(f"{b.description} ({key})", b.tooltip or b.description, action)
