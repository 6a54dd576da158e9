"""What the process manager tells its subscribers: a child started, printed a line, ended.

The three event classes (:class:`ProcessStarted`, :class:`OutputLine`,
:class:`ProcessExited`) are frozen dataclasses, safe to hand across threads;
:class:`EventHub` calls each subscriber for every event and keeps a bounded
backlog of the newest ones for headless use (``drain``). On which thread each
event is delivered is said in the package docstring (:mod:`app.core.procs`).
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

log = logging.getLogger(__name__)

Stream = Literal["stdout", "stderr"]


@dataclass(frozen=True, slots=True)
class ProcessStarted:
    """A child is running (its pid is known).

    ``replaced``: the state of an ended process of the same name that this one
    replaces (its record and output are dropped: a UI showing that name's
    output must clear it), else None.
    """

    name: str
    pid: int
    argv: tuple[str, ...]
    program: str | None  # built-in program name, or None for a command
    at: float  # time.time()
    replaced: str | None = None

    def describe(self, command: str | None = None) -> str:
        """``server1 started, pid 4242: tcp-server 6000`` (and what it replaced)."""
        text = f"{self.name} started, pid {self.pid}"
        if command:
            text += f": {command}"
        if self.replaced is not None:
            text += f" (the name of an ended process, {self.replaced}: its output was dropped)"
        return text


@dataclass(frozen=True, slots=True)
class OutputLine:
    """One line a child printed (without its newline)."""

    name: str
    pid: int
    stream: Stream
    text: str
    at: float


@dataclass(frozen=True, slots=True)
class ProcessExited:
    """A child ended and was reaped."""

    name: str
    pid: int
    returncode: int  # like Popen: negative = killed by that signal
    state: str  # "exited 0", "killed by SIGKILL", ...
    requested: bool  # we had asked it to stop (kill/stop/kill_all/shutdown)
    at: float
    # Why it failed, when it did not end well: its last line on stderr (a lab
    # program's one error line, a C program's perror()); None otherwise.
    reason: str | None = None
    # What the observatory adds to a known reason (e.g. who holds the port
    # behind "Address already in use"), one sentence, or None.
    explanation: str | None = None

    @property
    def ended_well(self) -> bool:
        """Exit status 0, or ended after we asked it to stop."""
        return self.returncode == 0 or self.requested

    @property
    def outcome(self) -> str:
        """``exited 1: tcp-server: port 6000 is already in use ...`` (the state, and why)."""
        text = self.state
        if self.reason:
            text += f": {self.reason}"
        if self.explanation:
            text += f" ({self.explanation})"
        return text

    def describe(self) -> str:
        """The event's line: ``server2 (pid 4242) exited 1: <why>``."""
        return f"{self.name} (pid {self.pid}) {self.outcome}"


ProcessEvent = ProcessStarted | OutputLine | ProcessExited
Subscriber = Callable[[ProcessEvent], None]


class EventHub:
    """The subscribers of a manager, and a bounded backlog of its newest events."""

    def __init__(self, backlog: int) -> None:
        self._lock = threading.RLock()  # RLock: a signal handler may re-enter
        self._subscribers: list[Subscriber] = []
        self._events: deque[ProcessEvent] = deque(maxlen=max(1, backlog))

    def subscribe(self, callback: Subscriber) -> Callable[[], None]:
        """Call ``callback(event)`` for every future event; returns an unsubscribe function."""
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    def drain(self) -> list[ProcessEvent]:
        """The events since the last call (at most ``backlog`` of the newest)."""
        out: list[ProcessEvent] = []
        while True:
            try:
                out.append(self._events.popleft())
            except IndexError:
                return out

    def emit(self, event: ProcessEvent) -> None:
        """Keep ``event`` in the backlog and call every subscriber (a failing one is logged)."""
        self._events.append(event)
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(event)
            except Exception:
                log.exception("process event subscriber failed")
