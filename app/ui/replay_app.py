"""The dashboard playing a session record back (``observatory replay RECORD``).

It is the real dashboard (:class:`app.ui.app.ObservatoryApp`) on a
:class:`app.core.replay_source.ReplaySource`, with no process manager and no recorder:
nothing can be launched, killed or closed (those keys and the Lab tab's buttons
are hidden, and a request that comes anyway is refused in words). The app's own
keys move the replay: space pauses and plays (the dashboard's freeze is hidden),
``[`` and ``]`` go a frame back and on, ``<`` and ``>`` play slower and faster,
``{`` and ``}`` go to the start and the end.
A bar under the status line says where it is: the recorded time, the frame, the
speed, and what happened at that frame.

The Events tab shows the record's own events up to the frame shown: played
forward they are added as the frames pass; after a step back it is rebuilt.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.binding import Binding, BindingType
from textual.message import Message
from textual.widgets import Static

from app.core.replay_source import Position, ReplaySource, speed_text
from app.core.terminal_text import printable
from app.ui.app import ObservatoryApp
from app.ui.messages import PollResult, ProcessEventMessage, SnapshotReady
from app.ui.requests import (
    CloseRequested,
    ForeignKillConfirmed,
    KillAllRequested,
    KillRequested,
    LaunchRequested,
    QuitRequested,
    RestartRequested,
    ScenarioRequested,
)
from app.ui.widgets.events import MAX_EVENTS, TimelineEntry

REFUSAL = "This is a replay of a record: nothing can be started, killed or closed from it."
BAR_EVERY = 0.2  # seconds between updates of the replay bar


class ReplayBar(Static):
    """One line under the status line: where the replay is."""

    DEFAULT_CSS = """
    ReplayBar {
        height: 1;
        padding: 0 1;
        background: $accent 35%;
        color: $foreground;
    }
    """


class ReplayApp(ObservatoryApp):
    """The dashboard on a replay source.

    Args:
        source: the record being played.
        theme_name: a Textual theme name or ``projector``.
        interval: seconds between polls of the source (its frames are cheap).
        notes: sentences to say once the screen is up (what the record lacks).
        poll: False for tests that deliver polls themselves.
    """

    LIVE = False  # the main screen hides the keys and buttons that act on the machine
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("space,P", "replay_pause", "Play/pause", tooltip="Pause the replay, or play on"),
        Binding(
            "left_square_bracket",
            "replay_step(-1)",
            "Back",
            tooltip="One frame back (one change)",
        ),
        Binding(
            "right_square_bracket",
            "replay_step(1)",
            "On",
            tooltip="One frame on (one change)",
        ),
        Binding("less_than_sign", "replay_slower", "Slower", tooltip="Play half as fast"),
        Binding("greater_than_sign", "replay_faster", "Faster", tooltip="Play twice as fast"),
        Binding("left_curly_bracket", "replay_start", "Start", tooltip="To the first frame"),
        Binding("right_curly_bracket", "replay_end", "End", tooltip="To the last frame"),
    ]

    def __init__(
        self,
        source: ReplaySource,
        *,
        theme_name: str | None = None,
        interval: float = 0.25,
        notes: Sequence[str] = (),
        poll: bool = True,
    ) -> None:
        super().__init__(
            source,
            None,
            interval=interval,
            theme_name=theme_name,
            interfaces=list,  # the live machine's interfaces are not the record's
            clock=source.now,  # the status line's time is the recorded one
            poll=poll,
            notes=notes,
        )
        self.replay = source
        self.sub_title = f"replay of {source.timeline.path.name}"
        # The record's lab processes, as of the frame polled; and every poll's events
        # are the record's own (see _deliver).
        self.poller.processes = source.processes
        self.poller.deliver = self._deliver
        self._delivered = -1  # the frame the screen was last handed
        self._bar: ReplayBar | None = None

    # -- start -------------------------------------------------------------------------
    def on_mount(self) -> None:
        # (Runs before ObservatoryApp.on_mount, which makes the main screen: the bar is
        # added once that screen is up, by the first tick.)
        self.set_interval(BAR_EVERY, self._tick)

    def _tick(self) -> None:
        screen = self._main
        if self._bar is None and screen is not None and screen.is_mounted:
            self._bar = ReplayBar(id="replay-bar")
            with contextlib.suppress(Exception):  # (a screen without a status line)
                screen.mount(self._bar, after=screen.query_one("#status"))
        self._show_position()

    # -- the bar -----------------------------------------------------------------------
    def _show_position(self, position: Position | None = None) -> None:
        if self._bar is None:
            return
        pos = position or self.replay.position()
        line = Text(no_wrap=True, overflow="ellipsis")
        line.append("REPLAY ", style="bold reverse")
        line.append(f" {pos.describe()}", style="bold")
        what = "; ".join(pos.frame.texts)
        line.append(f" · {printable(what)}")
        self._bar.update(line)

    # -- keys ----------------------------------------------------------------------------
    def _moved(self, words: str | None = None) -> None:
        self.poller.poll_now()
        self._show_position()
        if words:
            self.notify(words, timeout=2)

    def action_replay_pause(self) -> None:
        paused = self.replay.toggle_pause()
        self._moved("Paused" if paused else f"Playing at {speed_text(self.replay.speed)}")

    def action_replay_step(self, frames: int) -> None:
        self.replay.step(frames)
        self._moved()

    def action_replay_slower(self) -> None:
        self._moved(f"Speed {speed_text(self.replay.slower())}")

    def action_replay_faster(self) -> None:
        self._moved(f"Speed {speed_text(self.replay.faster())}")

    def action_replay_start(self) -> None:
        self.replay.to_start()
        self._moved()

    def action_replay_end(self) -> None:
        self.replay.to_end()
        self._moved()

    # -- polls: the record's own events (the poller's thread) ----------------------------
    def _deliver(self, result: PollResult) -> None:
        index, before = self.replay.polled, self._delivered
        self._delivered = index
        frames = self.replay.timeline.frames
        if index < before:
            # Back: the Events tab is rebuilt up to this frame (on the UI loop, before the
            # tables are shown); the diff of a step back is no event of the record.
            self.call_from_thread(self._rebuild_events, index)
            result.events = []
        elif index > before:
            passed = frames[before + 1 : index + 1]
            result.events = [ev for f in passed for ev in f.events][-MAX_EVENTS:]
            for frame in passed[-MAX_EVENTS:]:
                for event in frame.process_events:
                    self._to_screen(ProcessEventMessage(event))
        else:
            result.events = []
        self._to_screen(SnapshotReady(result))

    def _rebuild_events(self, index: int) -> None:
        if self._main is None:
            return
        entries: list[TimelineEntry] = []
        for frame in self.replay.timeline.frames[: index + 1]:
            entries += [TimelineEntry.of(ev) for ev in frame.events]
            for pe in frame.process_events:
                text = frame.texts[0]
                entries.append(TimelineEntry(pe.at, "!", text, pe.pid, lab=True))
        with contextlib.suppress(Exception):  # (the screen is closing)
            self._main.show_timeline(entries)

    def shows_hosts(self) -> bool:
        """A Host column when the record has lab hosts' sockets."""
        timeline = self.replay.timeline
        first = timeline.snapshot(0).sockets if len(timeline) else ()
        return any(s.host for s in first) or any(
            ev.socket.host for frame in timeline.frames for ev in frame.events
        )

    # -- what a replay cannot do ---------------------------------------------------------
    def _refuse(self, message: Message) -> None:
        message.prevent_default()  # (ObservatoryApp's handler would act on the machine)
        self.notify(REFUSAL, severity="warning", timeout=6)

    def on_launch_requested(self, message: LaunchRequested) -> None:
        self._refuse(message)

    def on_kill_requested(self, message: KillRequested) -> None:
        self._refuse(message)

    def on_foreign_kill_confirmed(self, message: ForeignKillConfirmed) -> None:
        self._refuse(message)

    def on_close_requested(self, message: CloseRequested) -> None:
        self._refuse(message)

    def on_restart_requested(self, message: RestartRequested) -> None:
        self._refuse(message)

    def on_kill_all_requested(self, message: KillAllRequested) -> None:
        self._refuse(message)

    def on_scenario_requested(self, message: ScenarioRequested) -> None:
        self._refuse(message)

    def on_quit_requested(self, message: QuitRequested) -> None:
        # The record's processes "running" are not ours to stop: quit at once.
        message.prevent_default()
        self.exit()
