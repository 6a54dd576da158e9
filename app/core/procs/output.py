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
from collections import deque
from collections.abc import Callable
from typing import IO

from app.core.procs.events import Stream

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
