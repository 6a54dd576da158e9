"""The bounded output buffer: a child's pipe read into lines, kept few and short.

A child printing without end must never grow the observatory's memory. So
:func:`read_lines` cuts what a pipe carries into lines of at most a given
number of bytes (:class:`LineSplitter`: the rest of a longer line is dropped,
and a line without its newline is shown once nothing follows for half a
second), and an :class:`OutputBuffer` keeps only the most recent lines of a
process, each one marked when it was cut, and its last line on stderr (why it
failed, when it did).
"""

from __future__ import annotations

import contextlib
import os
import select
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import IO

from app.core.procs.events import OutputLine, Stream

# One line, as bytes, and whether it was cut at the length limit.
LineCallback = Callable[[bytes, bool], None]


class LineSplitter:
    """Splits bytes into lines of at most ``limit`` bytes and hands each to ``on_line``."""

    def __init__(self, limit: int, on_line: LineCallback) -> None:
        self._limit = limit
        self._on_line = on_line
        self._pending = bytearray()  # the start of a line whose newline is not read yet
        self._skipping = False  # inside a line already cut: drop until its newline

    @property
    def pending(self) -> bool:
        """A line has begun and not ended yet."""
        return bool(self._pending)

    def feed(self, data: bytes) -> None:
        """Hand on every line that ``data`` ends; keep the start of the next."""
        start = 0
        while True:
            newline = data.find(b"\n", start)
            if newline < 0:
                self._begin(data[start:])
                return
            self._end(data[start:newline])
            start = newline + 1

    def flush(self) -> None:
        """Hand on a line begun and not ended (a prompt, or the last line of a pipe)."""
        if self._pending:
            self._on_line(bytes(self._pending), False)
            self._pending.clear()

    def _begin(self, piece: bytes) -> None:
        if self._skipping:
            return
        room = self._limit - len(self._pending)
        if len(piece) > room:
            self._pending += piece[:room]
            self._on_line(bytes(self._pending), True)
            self._pending.clear()
            self._skipping = True
        else:
            self._pending += piece

    def _end(self, piece: bytes) -> None:
        if self._skipping:
            self._skipping = False
            return
        if len(self._pending) + len(piece) > self._limit:
            self._on_line(bytes(self._pending + piece[: self._limit - len(self._pending)]), True)
        else:
            self._on_line(bytes(self._pending + piece), False)
        self._pending.clear()


def read_lines(pipe: IO[bytes], limit: int, on_line: LineCallback) -> None:
    """Read ``pipe`` to its end in lines (see :class:`LineSplitter`); then close it."""
    fd = pipe.fileno()
    lines = LineSplitter(limit, on_line)
    poller = select.poll()  # not select(): descriptors may be numbered above 1024
    poller.register(fd, select.POLLIN | select.POLLHUP | select.POLLERR)
    try:
        while True:
            # A prompt without a newline: show it if nothing follows soon.
            if lines.pending and not poller.poll(500):
                lines.flush()
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:
                break
            if not data:
                break
            lines.feed(data)
        lines.flush()
    finally:
        with contextlib.suppress(OSError):
            pipe.close()


class OutputBuffer:
    """The most recent lines of one process (stdout and stderr), and its last error line."""

    def __init__(self, max_lines: int, max_line_bytes: int) -> None:
        self._max_line_bytes = max_line_bytes
        self._lock = threading.Lock()
        self._lines: deque[str] = deque(maxlen=max_lines)
        self._last_stderr: str | None = None

    def read(self, stream: Stream, pipe: IO[bytes], on_text: Callable[[str], None]) -> None:
        """Read ``pipe`` to its end: keep each line, then hand its text to ``on_text``."""

        def add(raw: bytes, cut: bool) -> None:
            on_text(self.add(stream, raw, cut=cut))

        read_lines(pipe, self._max_line_bytes, add)

    def add(self, stream: Stream, raw: bytes, *, cut: bool) -> str:
        """Keep one line (the oldest goes when full); returns its text."""
        text = raw.decode("utf-8", "replace").rstrip("\r")
        if cut:
            text += f" [... line cut at {self._max_line_bytes} bytes]"
        with self._lock:
            self._lines.append(text)
            if stream == "stderr" and text.strip():
                self._last_stderr = text
        return text

    def lines(self) -> tuple[str, ...]:
        """The lines kept, oldest first."""
        with self._lock:
            return tuple(self._lines)

    @property
    def last_stderr(self) -> str | None:
        """The last line on stderr that was not blank, or None."""
        with self._lock:
            return self._last_stderr


class LineGate:
    """At most ``rate`` output lines a second per process reach a screen; the rest are said.

    A process that floods its output (``yes``, a loop printing without end) must not
    bury the screen's event loop under a message per line: the lines still reach the
    process's buffer (its last lines are kept), but beyond ``rate`` a second only a
    count goes on, as one line of words, when the second is over or the process ends
    (:meth:`flush`). Thread-safe (a child's stdout and stderr are read by two threads).
    Intervals are measured on ``clock`` (monotonic); a clock that went back starts a
    new second.
    """

    def __init__(self, rate: int = 200, clock: Callable[[], float] = time.monotonic) -> None:
        if rate < 1:
            raise ValueError("rate must be at least 1 line a second")
        self.rate = rate
        self._clock = clock
        self._lock = threading.Lock()
        # name -> [start of its second, lines let through in it, lines held back]
        self._windows: dict[str, list[float]] = {}
        self.held_back = 0  # lines held back in all (for tests and the curious)

    def admit(self, line: OutputLine) -> list[OutputLine]:
        """What goes on for ``line``: itself, a count of the lines held back, both, or none."""
        now = self._clock()
        with self._lock:
            window = self._windows.get(line.name)
            out: list[OutputLine] = []
            if window is None or not 0 <= now - window[0] < 1.0:
                if window is not None and window[2]:
                    out.append(self._summary(line.name, line.pid, line.stream, int(window[2])))
                window = self._windows[line.name] = [now, 0, 0]
            if window[1] < self.rate:
                window[1] += 1
                out.append(line)
            else:
                window[2] += 1
                self.held_back += 1
            return out

    def flush(self, name: str, pid: int) -> list[OutputLine]:
        """The count of ``name``'s lines still held back (it ended), as a line; forgets it."""
        with self._lock:
            window = self._windows.pop(name, None)
        if window is None or not window[2]:
            return []
        return [self._summary(name, pid, "stdout", int(window[2]))]

    def _summary(self, name: str, pid: int, stream: Stream, held: int) -> OutputLine:
        text = (
            f"[... {held:,} more lines not shown here: {name} printed more than "
            f"{self.rate} lines a second; its last lines are kept, select it again to see them]"
        )
        return OutputLine(name, pid, stream, text, time.time())
