"""Playing a session record back: :class:`ReplaySource`, a socket source whose frame
moves with a clock times a speed, and can be paused, stepped and sped up; the
dashboard polls it as it polls the machine (``observatory replay``). The frames
themselves come from :mod:`app.core.replay`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from app.core.model import Snapshot
from app.core.procs import ProcessInfo
from app.core.replay import Frame, Timeline, clock_text

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0)


@dataclass(frozen=True, slots=True)
class Position:
    """Where a replay is: what the user is told."""

    index: int  # the frame shown (0-based)
    count: int  # frames in the record
    at: float  # the recorded time of the position (moves between frames while playing)
    speed: float
    paused: bool
    ended: bool  # at the last frame (playing stops there)
    frame: Frame

    def describe(self) -> str:
        """``14:03:07 · frame 12/40 · 2x · playing``."""
        state = "at the end" if self.ended else "paused" if self.paused else "playing"
        return (
            f"{clock_text(self.at)[:8]} · frame {self.index + 1}/{self.count} · "
            f"{speed_text(self.speed)} · {state}"
        )


def speed_text(speed: float) -> str:
    return f"{speed:g}x"


class ReplaySource:
    """A socket source that plays a record back (a :class:`app.core.sockets.SocketSource`).

    Args:
        timeline: what :func:`load` read.
        speed: recorded seconds per second of the clock (one of :data:`SPEEDS`).
        clock: seconds, only differences count (tests pass a hand-moved one).
        paused: start paused at the first frame.
        wall: the time each poll is stamped with (see :meth:`poll`).
    """

    def __init__(
        self,
        timeline: Timeline,
        *,
        speed: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        paused: bool = False,
        wall: Callable[[], float] = time.time,
    ) -> None:
        if speed not in SPEEDS:
            raise ValueError(f"speed {speed:g} is not one of {', '.join(map(speed_text, SPEEDS))}")
        self.timeline = timeline
        self._clock = clock
        self._wall = wall
        self._lock = threading.Lock()
        self._speed = speed
        self._paused = paused
        self._pos = timeline.start
        self._anchor = clock()
        self._index = 0
        self.polled = 0  # the frame the last poll() returned

    # -- the SocketSource protocol (the poller's thread) --------------------------------
    def poll(self) -> Snapshot:
        """The tables of the frame at the position, stamped with the time it is shown.

        The recorded time is the frame's (:meth:`position`); the stamp is the viewer's,
        as a live poll's is, so that what counts time on the screen (a row marked NEW or
        GONE for a few seconds, bytes per second) counts it as the viewer sees the
        frames, even after a step back.
        """
        with self._lock:
            self._advance()
            self.polled = self._index
        snap = self.timeline.snapshot(self.polled)
        return Snapshot(taken_at=self._wall(), sockets=snap.sockets, by_key=snap.by_key)

    def processes(self) -> list[ProcessInfo]:
        """The lab processes of the frame the last poll returned."""
        return self.timeline.processes(self.polled)

    # -- where it is ----------------------------------------------------------------------
    def _advance(self) -> None:
        now = self._clock()
        if not self._paused:
            self._pos = min(self.timeline.end, self._pos + (now - self._anchor) * self._speed)
            self._index = self.timeline.index_at(self._pos)
            if self._index == len(self.timeline) - 1:
                self._pos = self.timeline.end
                self._paused = True  # the end: playing stops here
        self._anchor = now

    def position(self) -> Position:
        with self._lock:
            self._advance()
            index = self._index
            return Position(
                index,
                len(self.timeline),
                self._pos,
                self._speed,
                self._paused,
                index == len(self.timeline) - 1,
                self.timeline.frames[index],
            )

    def now(self) -> float:
        """The recorded time of the position (the dashboard's clock in a replay)."""
        with self._lock:
            self._advance()
            return self._pos

    # -- controls (the UI's thread) --------------------------------------------------------
    def _go(self, index: int) -> int:
        self._index = max(0, min(len(self.timeline) - 1, index))
        self._pos = self.timeline.times[self._index]
        self._anchor = self._clock()
        return self._index

    def set_paused(self, paused: bool) -> None:
        with self._lock:
            self._advance()
            if not paused and self._index == len(self.timeline) - 1:
                self._go(0)  # play at the end: from the start again
            self._paused = paused

    def toggle_pause(self) -> bool:
        """Pause, or play on; returns True when paused now."""
        with self._lock:
            paused = self._paused
        self.set_paused(not paused)
        return not paused

    @property
    def paused(self) -> bool:
        with self._lock:
            return self._paused

    def step(self, frames: int) -> int:
        """Move ``frames`` frames on (back when negative) and pause; returns the index."""
        with self._lock:
            self._advance()
            self._paused = True
            return self._go(self._index + frames)

    def to_start(self) -> int:
        with self._lock:
            self._advance()
            return self._go(0)

    def to_end(self) -> int:
        with self._lock:
            self._paused = True
            return self._go(len(self.timeline) - 1)

    @property
    def speed(self) -> float:
        return self._speed

    def set_speed(self, speed: float) -> float:
        """The nearest of :data:`SPEEDS` to ``speed``; returns it."""
        chosen = min(SPEEDS, key=lambda s: abs(s - speed))
        with self._lock:
            self._advance()
            self._speed = chosen
        return chosen

    def faster(self) -> float:
        """Twice as fast (up to 16x); returns the speed."""
        return self.set_speed(SPEEDS[min(len(SPEEDS) - 1, SPEEDS.index(self._speed) + 1)])

    def slower(self) -> float:
        """Half as fast (down to 0.25x); returns the speed."""
        return self.set_speed(SPEEDS[max(0, SPEEDS.index(self._speed) - 1)])


# -- the handout: one line per frame ------------------------------------------------------
