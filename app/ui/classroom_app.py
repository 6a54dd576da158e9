"""The class view's application: the room's screen over a :class:`Classroom` of
app.core (injected, so tests pass their own), whose threads ask the machines and
post each answer to the screen; the UI loop only draws. Quitting stops the
threads (daemons: a request still in flight never keeps the process alive).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import time
from collections.abc import Callable

from textual.app import App

from app.core.classroom import Classroom, MachineRow
from app.ui.screens.classroom import ClassroomScreen, MachineUpdated
from app.ui.styles import STYLES
from app.ui.themes import DEFAULT_THEME, PROJECTOR, THEMES


class ClassroomApp(App[None]):
    """The teacher's class view.

    Args:
        room: the machines and how to ask them.
        interval: seconds between two questions to one machine.
        theme_name: a Textual theme name or ``projector``.
        clock: the time ages are shown against.
        watch: False for tests that deliver rows themselves (:meth:`deliver`).
    """

    TITLE = "Connection Observatory: the class"
    CSS_PATH = [STYLES / "app.tcss", STYLES / "classroom.tcss"]

    def __init__(
        self,
        room: Classroom,
        *,
        interval: float = 1.0,
        theme_name: str | None = None,
        clock: Callable[[], float] = time.time,
        watch: bool = True,
    ) -> None:
        super().__init__()
        self.room = room
        self.interval = interval
        self.theme_name = theme_name or DEFAULT_THEME
        self.clock = clock
        self._watch = watch
        self._room_screen: ClassroomScreen | None = None

    def on_mount(self) -> None:
        for theme in THEMES.values():
            if theme.name not in self.available_themes:
                self.register_theme(theme)
        self.register_theme(PROJECTOR)
        self.theme = self.theme_name
        self._room_screen = ClassroomScreen(
            [m.text for m in self.room.machines], self.interval, clock=self.clock
        )
        self.push_screen(self._room_screen)
        # Textual's driver does not handle SIGTERM/SIGHUP: leave as q does, and give the
        # terminal back (its threads are daemons: nothing else to stop).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGHUP):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.exit, None, 128 + sig)
        if self._watch:
            self.room.start(self.deliver, self.interval)

    def on_unmount(self) -> None:
        self.room.stop()

    def deliver(self, row: MachineRow) -> None:
        """A machine's row to the screen, from any thread (the room's, or a test's)."""
        if self._room_screen is not None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: quitting
                self._room_screen.post_message(MachineUpdated(row))

    def action_toggle_theme(self) -> None:
        self.theme = DEFAULT_THEME if self.theme == "projector" else "projector"
        self.notify(f"Theme: {self.theme}")
